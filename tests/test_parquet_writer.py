"""The staged file's Parquet plumbing: pyarrow's footers survive a read and write unchanged."""
from __future__ import annotations

import io
import struct

import pyarrow as pa
import pyarrow.parquet as pq

from laion_ingest import thrift_compact


def test_a_pyarrow_footer_is_written_back_byte_for_byte():
    table = pa.table({"id": pa.array([3, 1, 2], pa.uint64()), "caption": ["a", None, "ü" * 300],
                      "similarity": [0.5, float("nan"), -1.0], "flag": [True, False, None],
                      "vec": pa.array([[1.0, 2.0]] * 3, pa.list_(pa.float32(), 2))})
    buf = io.BytesIO()
    pq.write_table(table, buf, row_group_size=2, compression={"caption": "zstd"})
    data = buf.getvalue()
    size = struct.unpack("<i", data[-8:-4])[0]
    footer = data[-8 - size:-8]
    parsed, end = thrift_compact.read_struct(footer)
    assert end == len(footer)
    assert parsed.get(3) == 3 and len(parsed.get(4)[1]) == 2  # num_rows, two row groups
    assert thrift_compact.write_struct(parsed) == footer
