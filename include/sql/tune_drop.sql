DROP TABLE IF EXISTS {scratch:Identifier};
