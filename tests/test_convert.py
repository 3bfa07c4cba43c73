"""convert: the staged Parquet's shape, and clear errors for bad input naming shard and file."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from laion_ingest import datasets
from laion_ingest.convert import ID_BASE, convert_shard
from laion_ingest.errors import ShardFileError
from laion_ingest.sample.mirror import generate_shard

LAION400M = datasets.get("laion400m")


@pytest.fixture
def shard_files(mirror_dir, tmp_path):
    """A private copy of shard 1's three files, to break."""
    for sub in ("img_emb", "text_emb", "metadata"):
        (tmp_path / sub).mkdir()
    for name in ("img_emb/img_emb_1.npy", "text_emb/text_emb_1.npy", "metadata/metadata_1.parquet"):
        shutil.copy(mirror_dir / name, tmp_path / name)
    return tmp_path


def expected_table(src, shard: int) -> pa.Table:
    """What convert must stage, built with pyarrow alone from the source files."""
    img, text, metadata = LAION400M.files(shard)
    meta = pq.read_table(src / metadata, columns=LAION400M.metadata.names).cast(LAION400M.metadata)
    rows = np.arange(meta.num_rows, dtype=np.uint32)
    vector = pa.list_(pa.field("element", pa.float16(), nullable=False), 512)
    schema = pa.schema([("id", pa.uint64()), ("shard", pa.uint16()), ("row", pa.uint32()), *LAION400M.metadata,
                        pa.field("image_embedding", vector, nullable=False),
                        pa.field("text_embedding", vector, nullable=False)])
    embeddings = [pa.FixedSizeListArray.from_arrays(pa.array(np.load(src / name).reshape(-1)), type=vector)
                  for name in (img, text)]
    return pa.table([rows.astype(np.uint64) + np.uint64(shard * ID_BASE),
                     np.full(meta.num_rows, shard, dtype=np.uint16), rows, *meta.columns, *embeddings],
                    schema=schema)


def test_output_is_the_table_columns_with_exact_values(shard_files, tmp_path):
    out = tmp_path / "out.parquet"
    rows = convert_shard(LAION400M, 1, shard_files, out, batch_rows=1000)
    staged = pq.ParquetFile(out)
    assert rows == staged.metadata.num_rows == pq.ParquetFile(
        shard_files / "metadata/metadata_1.parquet").metadata.num_rows
    assert staged.metadata.num_row_groups == -(-rows // 1000)  # streamed in batches
    table = staged.read()
    assert table.equals(expected_table(shard_files, 1))  # every value, and the schema
    assert table.column("id").to_pylist()[:2] == [1_000_000_000, 1_000_000_001]
    first = staged.metadata.row_group(0)
    id_column, vector_column = first.column(0), first.column(first.num_columns - 1)
    assert id_column.compression == "ZSTD" and id_column.statistics.max == 1_000_000_999
    assert vector_column.compression == "UNCOMPRESSED" and vector_column.statistics is None


@pytest.mark.parametrize("dtype", ["<f4", ">f2"])
def test_other_float_npy_are_staged_exactly(shard_files, tmp_path, dtype):
    for name in ("img_emb/img_emb_1.npy", "text_emb/text_emb_1.npy"):
        rewrite_npy(shard_files / name, np.load(shard_files / name).astype(dtype))
    out = tmp_path / "out.parquet"
    convert_shard(LAION400M, 1, shard_files, out, batch_rows=700)  # pages of 512 float32 rows: full and partial
    stored = pq.read_table(out)
    source = np.load(shard_files / "img_emb/img_emb_1.npy")
    assert stored.schema.field("image_embedding").type.value_type == pa.from_numpy_dtype(source.dtype)
    assert np.array_equal(np.array(stored.column("image_embedding").combine_chunks().flatten()).reshape(-1, 512),
                          source)


def rewrite_npy(path, array):
    np.save(path, array)


@pytest.mark.parametrize("name, make, problem", [
    ("img_emb/img_emb_1.npy", lambda a: a[:-1], "rows but metadata/metadata_1.parquet has"),
    ("text_emb/text_emb_1.npy", lambda a: a[:, :256], r"shape \(\d+, 256\), expected \(rows, 512\)"),
    ("img_emb/img_emb_1.npy", lambda a: a.astype(np.int16), "dtype int16, expected a float type"),
    ("text_emb/text_emb_1.npy", lambda a: a.astype(np.float32), "holds float32, but img_emb/img_emb_1.npy holds"),
])
def test_mismatched_npy_is_refused(shard_files, tmp_path, name, make, problem):
    rewrite_npy(shard_files / name, make(np.load(shard_files / name)))
    with pytest.raises(ShardFileError, match=f"shard 1: {name}: .*{problem}"):
        convert_shard(LAION400M, 1, shard_files, tmp_path / "out.parquet")
    assert not (tmp_path / "out.parquet").exists()


def test_truncated_npy_is_refused(shard_files, tmp_path):
    path = shard_files / "text_emb/text_emb_1.npy"
    path.write_bytes(path.read_bytes()[:-5000])
    with pytest.raises(ShardFileError,
                       match=r"shard 1: text_emb/text_emb_1.npy: ends in row \d+ of the \d+ its header"):
        convert_shard(LAION400M, 1, shard_files, tmp_path / "out.parquet")
    assert not (tmp_path / "out.parquet").exists()


def test_corrupt_npy_is_refused(shard_files, tmp_path):
    (shard_files / "img_emb/img_emb_1.npy").write_bytes(b"<html>502 Bad Gateway</html>")
    with pytest.raises(ShardFileError, match="shard 1: img_emb/img_emb_1.npy: not a valid .npy file"):
        convert_shard(LAION400M, 1, shard_files, tmp_path / "out.parquet")


def test_metadata_missing_a_column_is_refused(shard_files, tmp_path):
    path = shard_files / "metadata/metadata_1.parquet"
    pq.write_table(pq.read_table(path).drop_columns(["url"]), path)
    with pytest.raises(ShardFileError, match=r"shard 1: metadata/metadata_1.parquet: missing columns \['url'\]"):
        convert_shard(LAION400M, 1, shard_files, tmp_path / "out.parquet")


def test_a_value_that_would_change_type_is_refused(shard_files, tmp_path):
    path = shard_files / "metadata/metadata_1.parquet"
    table = pq.read_table(path)
    width = table.column("width").to_pylist()
    width[7] = -1
    pq.write_table(table.set_column(table.schema.get_field_index("width"), "width", pa.array(width)), path)
    with pytest.raises(ShardFileError, match="shard 1: metadata/metadata_1.parquet: column width"):
        convert_shard(LAION400M, 1, shard_files, tmp_path / "out.parquet")


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", ["<f2", ">f4"])
def test_a_non_finite_vector_is_refused_naming_its_row(shard_files, tmp_path, value, dtype):
    """ClickHouse cannot index NaN or Inf: refused here, naming the row, instead of failing the index
    build of every shard hours later."""
    path = shard_files / "text_emb/text_emb_1.npy"
    vectors = np.load(path).astype(dtype)
    vectors[1234, 17] = value
    rewrite_npy(path, vectors)
    img = shard_files / "img_emb/img_emb_1.npy"
    rewrite_npy(img, np.load(img).astype(dtype))
    with pytest.raises(ShardFileError, match="shard 1: text_emb/text_emb_1.npy: row 1234 holds NaN or infinite"):
        convert_shard(LAION400M, 1, shard_files, tmp_path / "out.parquet", batch_rows=1000)
    assert not (tmp_path / "out.parquet").exists()


def test_megabyte_captions_convert_in_bounded_memory(tmp_path):
    """Batches are sized in bytes, not rows: 800 captions of 1 MiB took 6 GB in batches of 16,384
    rows. The source has pages of 8 values (what a page holds is the source writer's choice, and a
    reader holds one page whole)."""
    generate_shard(tmp_path, 0, 800)
    meta_path = tmp_path / "metadata/metadata_0.parquet"
    meta = pq.read_table(meta_path)
    captions = pa.array([f"caption {i} " * (1 << 17) for i in range(meta.num_rows)])  # ~1.3 MiB each
    pq.write_table(meta.set_column(meta.schema.get_field_index("caption"), "caption", captions), meta_path,
                   write_batch_size=8)
    # VmHWM, the process's own peak: ru_maxrss would also count the peak of this test's process
    # (Linux carries it across the exec).
    code = ("import re, sys; from pathlib import Path; from laion_ingest import datasets;"
            " from laion_ingest.convert import convert_shard;"
            "convert_shard(datasets.get('laion400m'), 0, Path(sys.argv[1]), Path(sys.argv[1]) / 'out.parquet');"
            "print(int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read())[1]) // 1024)")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True,
                          env=dict(os.environ))
    assert int(done.stdout.split()[-1]) < 1000  # MB of peak RSS
    assert pq.read_table(tmp_path / "out.parquet", columns=["caption"]).column(0).combine_chunks().equals(captions)


def test_a_full_disk_names_the_file_and_leaves_no_part(shard_files):
    """Writing fails as on a full disk (a file-size limit: the write gets EFBIG instead of ENOSPC):
    the error names the shard and the file, is not permanent (a retry may find space), and the
    half-written file is deleted."""
    code = ("import resource, signal, sys; from pathlib import Path; from laion_ingest.convert import convert_shard\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
            "resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))\n"
            "from laion_ingest import datasets\n"
            "try:\n    convert_shard(datasets.get('laion400m'), 1, Path(sys.argv[1]),"
            " Path(sys.argv[1]) / 'out.parquet', batch_rows=256)\n"
            "except OSError as exc:\n    print(type(exc).__name__, exc.errno, exc)")
    done = subprocess.run([sys.executable, "-c", code, str(shard_files)], capture_output=True, text=True, check=True,
                          env=dict(os.environ))
    assert done.stdout.startswith("OSError 27 [Errno 27] shard 1: writing ") and "out.parquet.part:" in done.stdout
    assert not list(shard_files.glob("out.parquet*"))
