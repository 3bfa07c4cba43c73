-- One stored vector, e.g. a row's text embedding to search the images with.
SELECT {column:Identifier} FROM {search_table:Identifier} WHERE shard = {shard:UInt16} AND row = {row:UInt32};
