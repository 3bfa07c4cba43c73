-- The stored vector of the row with an id, e.g. laion_5b_100m's id 9999, as the ClickHouse docs query it.
SELECT {column:Identifier} FROM {search_table:Identifier} WHERE id = {id:UInt64};
