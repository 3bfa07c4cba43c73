SELECT count() FROM {search_table:Identifier};
