"""`python -m laion_ingest clip-check`: does the query model match the vectors in the table?

Text queries only find the right images if they are encoded by the model that made the stored
vectors (OpenAI's CLIP ViT-B/32 for LAION-400M). This check encodes a sample of stored captions and
compares each with the row's own `text_embedding`. The same model gives a cosine similarity of
about 1 (LAION stores float16, so not exactly 1). Another model, or the right one with the wrong
preprocessing, gives far less.
"""
from __future__ import annotations

import numpy as np

from laion_ingest import clip
from laion_ingest.clickhouse import ClickHouse
from laion_ingest.errors import PermanentError
from laion_ingest.ledger import shard_status
from laion_ingest.redaction import logger

log = logger(__name__)

MATCH = 0.95  # median cosine above which the model is taken to be the data's


def check(ch: ClickHouse, captions: int = 200) -> dict:
    """{"shard", "captions", "median", "p5", "min", "worst": (row, caption, cosine), "matches"}. It needs
    the dataset's stored text vectors, which laion2b-multi, laion1b-nolang and laion5b-100m do not have."""
    if "text_embedding" not in ch.dataset.vectors:
        raise PermanentError(f"{ch.dataset.name} has no stored text vectors to compare captions' encodings with;"
                             f" its images' vectors come from {ch.dataset.model.name}, which the search encodes"
                             " queries with")
    loaded = [s["shard"] for s in shard_status(ch) if s["loaded"]]
    if not loaded:
        raise LookupError("no shard is loaded: load one before checking the model against it")
    rows = ch.run("clip_check_sample", shard=loaded[0], n=captions)
    stored = clip.normalize(np.array([vector for _, _, vector in rows], np.float32))
    encoded = clip.text_encoder(ch.dataset.model)([caption for _, caption, _ in rows])
    cosine = np.einsum("ij,ij->i", stored, encoded)
    worst = int(np.argmin(cosine))
    result = {"shard": loaded[0], "captions": len(rows), "median": float(np.median(cosine)),
              "p5": float(np.percentile(cosine, 5)), "min": float(cosine[worst]),
              "worst": (rows[worst][0], rows[worst][1], float(cosine[worst]))}
    result["matches"] = result["median"] >= MATCH
    return result
