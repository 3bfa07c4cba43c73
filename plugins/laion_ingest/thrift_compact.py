"""Thrift's compact protocol, the encoding of Parquet's footer and page headers.

Just enough of it to read a footer pyarrow wrote, move its offsets and write it back, and to write
page headers: a struct is kept as a list of [field id, type, value] in the order read, so fields
this code never names (statistics, logical types, whatever a newer pyarrow adds) pass through as
they came.
"""
from __future__ import annotations

import struct

BOOL_TRUE, BOOL_FALSE, BYTE, I16, I32, I64, DOUBLE, BINARY, LIST, SET, MAP, STRUCT = range(1, 13)


class Struct(list):
    """[[field id, type, value], ...]; `s[id]`-style access through get/set."""

    def get(self, fid: int, default=None):
        return next((v for f, _, v in self if f == fid), default)

    def set(self, fid: int, ftype: int, value) -> None:
        for field in self:
            if field[0] == fid:
                field[1:] = [ftype, value]
                return
        self.append([fid, ftype, value])
        self.sort(key=lambda field: field[0])

    def has(self, fid: int) -> bool:
        return any(f == fid for f, _, _ in self)


def struct_of(*fields) -> Struct:
    """A struct from (field id, type, value) triples."""
    return Struct([list(f) for f in fields])


# ---------------------------------------------------------------- reading

def read_struct(buf: bytes, pos: int = 0) -> tuple[Struct, int]:
    out, last = Struct(), 0
    while True:
        head = buf[pos]
        pos += 1
        if head == 0:
            return out, pos
        ftype, delta = head & 0x0F, head >> 4
        if delta:
            fid = last + delta
        else:
            fid, pos = _read_varint(buf, pos)
            fid = _unzigzag(fid)
        if ftype in (BOOL_TRUE, BOOL_FALSE):
            value = ftype == BOOL_TRUE
        else:
            value, pos = _read_value(buf, pos, ftype)
        out.append([fid, ftype, value])
        last = fid


def _read_value(buf: bytes, pos: int, ftype: int):
    if ftype in (I16, I32, I64):
        value, pos = _read_varint(buf, pos)
        return _unzigzag(value), pos
    if ftype == BYTE:
        return buf[pos], pos + 1
    if ftype == DOUBLE:
        return struct.unpack_from("<d", buf, pos)[0], pos + 8
    if ftype == BINARY:
        size, pos = _read_varint(buf, pos)
        return bytes(buf[pos:pos + size]), pos + size
    if ftype in (LIST, SET):
        head = buf[pos]
        pos += 1
        size, etype = head >> 4, head & 0x0F
        if size == 15:
            size, pos = _read_varint(buf, pos)
        items = []
        for _ in range(size):
            if etype in (BOOL_TRUE, BOOL_FALSE):
                item, pos = buf[pos] == BOOL_TRUE, pos + 1
            else:
                item, pos = _read_value(buf, pos, etype)
            items.append(item)
        return (etype, items), pos
    if ftype == STRUCT:
        return read_struct(buf, pos)
    raise ValueError(f"thrift compact type {ftype} is not supported here")


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _unzigzag(n: int) -> int:
    return (n >> 1) ^ -(n & 1)


# ---------------------------------------------------------------- writing

def write_struct(s: Struct) -> bytes:
    out = bytearray()
    _write_struct(out, s)
    return bytes(out)


def _write_struct(out: bytearray, s: Struct) -> None:
    last = 0
    for fid, ftype, value in s:
        if ftype in (BOOL_TRUE, BOOL_FALSE):
            ftype = BOOL_TRUE if value else BOOL_FALSE
        if 0 < fid - last <= 15:
            out.append((fid - last) << 4 | ftype)
        else:
            out.append(ftype)
            _write_varint(out, _zigzag(fid))
        if ftype not in (BOOL_TRUE, BOOL_FALSE):
            _write_value(out, ftype, value)
        last = fid
    out.append(0)


def _write_value(out: bytearray, ftype: int, value) -> None:
    if ftype in (I16, I32, I64):
        _write_varint(out, _zigzag(value))
    elif ftype == BYTE:
        out.append(value & 0xFF)
    elif ftype == DOUBLE:
        out += struct.pack("<d", value)
    elif ftype == BINARY:
        _write_varint(out, len(value))
        out += value
    elif ftype in (LIST, SET):
        etype, items = value
        if len(items) < 15:
            out.append(len(items) << 4 | etype)
        else:
            out.append(0xF0 | etype)
            _write_varint(out, len(items))
        for item in items:
            if etype in (BOOL_TRUE, BOOL_FALSE):
                out.append(BOOL_TRUE if item else BOOL_FALSE)
            else:
                _write_value(out, etype, item)
    elif ftype == STRUCT:
        _write_struct(out, value)
    else:
        raise ValueError(f"thrift compact type {ftype} is not supported here")


def varint(n: int) -> bytes:
    """An unsigned LEB128 varint, which Parquet's RLE levels use too."""
    out = bytearray()
    _write_varint(out, n)
    return bytes(out)


def _write_varint(out: bytearray, n: int) -> None:
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)


def _zigzag(n: int) -> int:
    return (n << 1) ^ (n >> 63)
