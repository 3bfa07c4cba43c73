"""convert: the staged Parquet's shape, and clear errors for bad input naming shard and file."""
from __future__ import annotations

import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from laion_ingest.convert import convert_shard
from laion_ingest.errors import ShardFileError


@pytest.fixture
def shard_files(mirror_dir, tmp_path):
    """A private copy of shard 1's three files, to break."""
    for sub in ("img_emb", "text_emb", "metadata"):
        (tmp_path / sub).mkdir()
    for name in ("img_emb/img_emb_1.npy", "text_emb/text_emb_1.npy", "metadata/metadata_1.parquet"):
        shutil.copy(mirror_dir / name, tmp_path / name)
    return tmp_path


def test_output_has_the_table_columns_and_exact_vectors(shard_files, tmp_path):
    out = tmp_path / "out.parquet"
    rows = convert_shard(1, shard_files, out, batch_rows=1000)
    table = pq.read_table(out)
    assert table.num_rows == rows == pq.ParquetFile(shard_files / "metadata/metadata_1.parquet").metadata.num_rows
    assert table.column_names[:3] == ["id", "shard", "row"] and table.column_names[-2:] == [
        "image_embedding", "text_embedding"]
    vector = table.schema.field("image_embedding")  # fixed-size float16 lists, no nulls anywhere
    assert vector.type == pa.list_(pa.field("element", pa.float16(), nullable=False), 512) and not vector.nullable
    assert table.column("id").to_pylist()[:2] == [1_000_000_000, 1_000_000_001]
    source = np.load(shard_files / "text_emb/text_emb_1.npy")
    stored = np.array(table.column("text_embedding").combine_chunks().flatten()).reshape(-1, 512)
    assert np.array_equal(stored, source)
    assert pq.ParquetFile(out).metadata.num_row_groups > 1  # streamed in batches


def rewrite_npy(path, array):
    np.save(path, array)


@pytest.mark.parametrize("name, make, problem", [
    ("img_emb/img_emb_1.npy", lambda a: a[:-1], "rows but metadata/metadata_1.parquet has"),
    ("text_emb/text_emb_1.npy", lambda a: a[:, :256], r"shape \(\d+, 256\), expected \(rows, 512\)"),
    ("img_emb/img_emb_1.npy", lambda a: a.astype(np.int16), "dtype int16, expected a float type"),
])
def test_mismatched_npy_is_refused(shard_files, tmp_path, name, make, problem):
    rewrite_npy(shard_files / name, make(np.load(shard_files / name)))
    with pytest.raises(ShardFileError, match=f"shard 1: {name}: .*{problem}"):
        convert_shard(1, shard_files, tmp_path / "out.parquet")
    assert not (tmp_path / "out.parquet").exists()


def test_corrupt_npy_is_refused(shard_files, tmp_path):
    (shard_files / "img_emb/img_emb_1.npy").write_bytes(b"<html>502 Bad Gateway</html>")
    with pytest.raises(ShardFileError, match="shard 1: img_emb/img_emb_1.npy: not a valid .npy file"):
        convert_shard(1, shard_files, tmp_path / "out.parquet")


def test_metadata_missing_a_column_is_refused(shard_files, tmp_path):
    path = shard_files / "metadata/metadata_1.parquet"
    pq.write_table(pq.read_table(path).drop_columns(["url"]), path)
    with pytest.raises(ShardFileError, match=r"shard 1: metadata/metadata_1.parquet: missing columns \['url'\]"):
        convert_shard(1, shard_files, tmp_path / "out.parquet")


def test_a_value_that_would_change_type_is_refused(shard_files, tmp_path):
    path = shard_files / "metadata/metadata_1.parquet"
    table = pq.read_table(path)
    width = table.column("width").to_pylist()
    width[7] = -1
    pq.write_table(table.set_column(table.schema.get_field_index("width"), "width", pa.array(width)), path)
    with pytest.raises(ShardFileError, match="shard 1: metadata/metadata_1.parquet: column width"):
        convert_shard(1, shard_files, tmp_path / "out.parquet")
