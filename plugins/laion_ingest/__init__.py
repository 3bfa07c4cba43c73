"""Airflow plugin package: load LAION-400M CLIP embeddings into ClickHouse."""
