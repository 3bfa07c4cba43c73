-- One stored vector, e.g. a row's text embedding to search the images with.
SELECT {column:Identifier} FROM laion WHERE shard = {shard:UInt16} AND row = {row:UInt32};
