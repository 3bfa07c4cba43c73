SELECT count() FROM laion;
