-- The staged shard's vectors, where no convert step checked them (a slice read in place): the
-- shortest and longest, and how many rows hold NaN or an infinity (which a vector index cannot
-- take), with the smallest such id.
SELECT min(length({column:Identifier})), max(length({column:Identifier})),
       countIf(NOT arrayAll(x -> isFinite(x), {column:Identifier})),
       minIf(id, NOT arrayAll(x -> isFinite(x), {column:Identifier}))
FROM {stage:Identifier};
