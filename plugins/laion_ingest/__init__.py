"""Load LAION-400M CLIP embeddings into ClickHouse: a plain package the laion_ingest DAG calls."""
