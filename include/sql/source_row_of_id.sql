-- The row number in its source file of the row with an id (to name a bad row as the file numbers it).
SELECT _row_number FROM {source} WHERE id = {id:UInt64} LIMIT 1;
