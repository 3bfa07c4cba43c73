"""The seed's ingestion method, as the ClickHouse LAION-400M page documents it: the baseline.

1. download: `wget --tries=100` each of the shard's three files, one after the other;
2. process.py: np.load both .npy, pd.read_parquet, concat, every vector to a Python list, quotes
   stripped from captions, `to_csv(header=False)` (the pandas index becomes the `id` column);
3. `CREATE TABLE laion (...) ENGINE = MergeTree ORDER BY id` and `INSERT INTO laion FROM INFILE`.

Our own code, written from the page. One change: the page's caption lambda crashes on a null
caption (`None.replace`), so nulls become '' first (`fillna('')`), the smallest fix that lets it run.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

from laion_ingest import datasets

SEED_TABLE = """CREATE TABLE laion
(
    `id` Int64,
    `url` String,
    `caption` String,
    `NSFW` String,
    `similarity` Float32,
    `image_embedding` Array(Float32),
    `text_embedding` Array(Float32)
)
ENGINE = MergeTree
ORDER BY id
SETTINGS index_granularity = 8192"""


def download(base_url: str, shard: int, dest: Path) -> int:
    """wget --tries=100, one file at a time, as the page's download.sh; returns bytes."""
    dest.mkdir(parents=True, exist_ok=True)
    total = 0
    for name in datasets.get("laion400m").files(shard):
        out = dest / Path(name).name
        subprocess.run(["wget", "--tries=100", "-q", "-O", str(out), base_url + name], check=True)
        total += out.stat().st_size
    return total


def to_csv(src: Path, shard: int, csv: Path) -> int:
    """The page's process.py, line for line (plus fillna('') on captions); returns rows."""
    import numpy as np
    import pandas as pd

    im_emb = np.load(src / f"img_emb_{shard}.npy")
    text_emb = np.load(src / f"text_emb_{shard}.npy")
    data = pd.read_parquet(src / f"metadata_{shard}.parquet")
    data = pd.concat([data, pd.DataFrame({"image_embedding": [*im_emb]}),
                      pd.DataFrame({"text_embedding": [*text_emb]})], axis=1, copy=False)
    data = data[["url", "caption", "NSFW", "similarity", "image_embedding", "text_embedding"]]
    data["image_embedding"] = data["image_embedding"].apply(lambda x: x.tolist())
    data["text_embedding"] = data["text_embedding"].apply(lambda x: x.tolist())
    data["caption"] = data["caption"].fillna("")  # the seed crashes on a null caption without it
    data["caption"] = data["caption"].apply(lambda x: x.replace("'", " ").replace('"', " "))
    data.to_csv(csv, header=False)
    return len(data)


def insert(csv: Path, chdb_path: Path) -> int:
    """The seed's table, then INSERT INTO laion FROM INFILE (chdb); returns rows in the table."""
    from chdb import session

    s = session.Session(str(chdb_path))
    try:
        s.query(SEED_TABLE)
        s.query(f"INSERT INTO laion FROM INFILE '{csv}' FORMAT CSV")
        return int(s.query("SELECT count() FROM laion", "CSV").data())
    finally:
        s.close()
