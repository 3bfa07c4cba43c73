-- The share of rows a search filter keeps, estimated on up to 100,000 rows. search.py writes the
-- filter in place of {condition}: fixed fragments such as NSFW IN {nsfw:Array(String)}.
SELECT avg(kept) FROM (SELECT {condition} AS kept FROM {search_table:Identifier} LIMIT 100000);
