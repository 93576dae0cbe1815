"""Joining parquet files written in parts into the file one writer would have written, byte for byte.

A parquet file is "PAR1", the column chunks of its row groups one after the other, the footer (a
Thrift compact-protocol FileMetaData), the footer's length (4 bytes, little endian) and "PAR1". The
bytes of a row group depend only on its rows and the writer's settings, not on where it sits in
the file: only the footer records positions (absolute file offsets) and row group ordinals. So
files written by separate pyarrow ParquetWriters with the same schema and settings, one per run of
consecutive row groups, join into the one writer's file: their bodies in order, then the first
part's footer holding every part's row groups (offsets moved by where the part's body lands,
ordinals renumbered) and the rows summed. This lets several workers encode one detector's file
(harness.finish) and the driver join their bytes; tests/test_parquet_parts.py checks the result
against one writer, byte for byte.

The footer is decoded into a generic tree (field id, type, value) and encoded back the way Thrift's
C++ compact protocol writes it, so fields this module does not know about pass through unchanged.
"""

from __future__ import annotations

import struct
from typing import Any, BinaryIO, Sequence

MAGIC = b"PAR1"

# Thrift compact protocol type codes
_TRUE, _FALSE, _BYTE, _I16, _I32, _I64, _DOUBLE, _BINARY, _LIST, _SET, _MAP, _STRUCT = range(1, 13)

# Field ids (parquet.thrift) of the positions a part's footer records.
_FILE_NUM_ROWS, _FILE_ROW_GROUPS = 3, 4
_GROUP_COLUMNS, _GROUP_FILE_OFFSET, _GROUP_ORDINAL = 1, 5, 7
_CHUNK_FILE_OFFSET, _CHUNK_META, _CHUNK_OFFSET_INDEX, _CHUNK_COLUMN_INDEX = 2, 3, 4, 6
_META_OFFSETS = (9, 10, 11, 14)  # data, index and dictionary page offsets, bloom filter offset

Field = list  # [field id, type, value]


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    byte = data[pos]
    if byte < 0x80:  # most numbers of a footer fit in one byte
        return byte, pos + 1
    result, shift = byte & 0x7F, 7
    while True:
        pos += 1
        byte = data[pos]
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos + 1
        shift += 7


def _read_value(data: bytes, pos: int, kind: int) -> tuple[Any, int]:
    if kind in (_I16, _I32, _I64):
        n, pos = _read_varint(data, pos)
        return (n >> 1) ^ -(n & 1), pos
    if kind == _BINARY:
        size, pos = _read_varint(data, pos)
        return data[pos:pos + size], pos + size
    if kind == _STRUCT:
        return _read_struct(data, pos)
    if kind in (_TRUE, _FALSE):  # a bool inside a list or map: one byte
        return data[pos] == _TRUE, pos + 1
    if kind == _BYTE:
        return data[pos], pos + 1
    if kind == _DOUBLE:
        return data[pos:pos + 8], pos + 8
    if kind in (_LIST, _SET):
        header = data[pos]
        size, element = header >> 4, header & 0x0F
        pos += 1
        if size == 15:
            size, pos = _read_varint(data, pos)
        items = []
        for _ in range(size):
            item, pos = _read_value(data, pos, element)
            items.append(item)
        return (element, items), pos
    if kind == _MAP:
        size, pos = _read_varint(data, pos)
        if not size:
            return (None, None, []), pos
        key, val = data[pos] >> 4, data[pos] & 0x0F
        pos += 1
        pairs = []
        for _ in range(size):
            k, pos = _read_value(data, pos, key)
            v, pos = _read_value(data, pos, val)
            pairs.append((k, v))
        return (key, val, pairs), pos
    raise ValueError(f"not a Thrift compact type: {kind}")


def _read_struct(data: bytes, pos: int) -> tuple[list[Field], int]:
    fields, last = [], 0
    while True:
        header = data[pos]
        pos += 1
        if header == 0:
            return fields, pos
        delta, kind = header >> 4, header & 0x0F
        if delta:
            number = last + delta
        else:
            n, pos = _read_varint(data, pos)
            number = (n >> 1) ^ -(n & 1)
        if kind in (_TRUE, _FALSE):
            value = kind == _TRUE
        else:
            value, pos = _read_value(data, pos, kind)
        fields.append([number, kind, value])
        last = number


def _write_varint(out: bytearray, n: int) -> None:
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _write_value(out: bytearray, kind: int, value: Any) -> None:
    if kind in (_I16, _I32, _I64):
        _write_varint(out, (value << 1) ^ (value >> 63))
    elif kind == _BINARY:
        _write_varint(out, len(value))
        out += value
    elif kind == _STRUCT:
        _write_struct(out, value)
    elif kind in (_TRUE, _FALSE):
        out.append(_TRUE if value else _FALSE)
    elif kind == _BYTE:
        out.append(value)
    elif kind == _DOUBLE:
        out += value
    elif kind in (_LIST, _SET):
        element, items = value
        if len(items) < 15:
            out.append(len(items) << 4 | element)
        else:
            out.append(0xF0 | element)
            _write_varint(out, len(items))
        for item in items:
            _write_value(out, element, item)
    elif kind == _MAP:
        key, val, pairs = value
        _write_varint(out, len(pairs))
        if pairs:
            out.append(key << 4 | val)
        for k, v in pairs:
            _write_value(out, key, k)
            _write_value(out, val, v)
    else:
        raise ValueError(f"not a Thrift compact type: {kind}")


def _write_struct(out: bytearray, fields: list[Field]) -> None:
    last = 0
    for number, kind, value in fields:
        if kind in (_TRUE, _FALSE):
            kind = _TRUE if value else _FALSE
        delta = number - last
        if 0 < delta <= 15:
            out.append(delta << 4 | kind)
        else:
            out.append(kind)
            _write_varint(out, (number << 1) ^ (number >> 63))
        if kind not in (_TRUE, _FALSE):
            _write_value(out, kind, value)
        last = number
    out.append(0)


def decode_footer(footer: bytes) -> list[Field]:
    """The footer's FileMetaData as a list of [field id, type, value]."""
    return _read_struct(footer, 0)[0]


def encode_footer(fields: list[Field]) -> bytes:
    """decode_footer's inverse: the bytes Thrift's C++ compact protocol writes for `fields`."""
    out = bytearray()
    _write_struct(out, fields)
    return bytes(out)


def _field(fields: list[Field], number: int) -> Field | None:
    return next((f for f in fields if f[0] == number), None)


def _shift(fields: list[Field], numbers: Sequence[int], by: int) -> None:
    for f in fields:
        if f[0] in numbers and f[2]:  # 0 is "not set" (pyarrow leaves ColumnChunk.file_offset 0): no file
            f[2] += by                # position is 0, the magic bytes are there


def _moved_row_groups(footer: list[Field], by: int, first_ordinal: int) -> list[list[Field]]:
    """The footer's row groups with every file offset moved by `by` bytes and ordinals from `first_ordinal`."""
    groups = _field(footer, _FILE_ROW_GROUPS)
    moved = []
    for n, group in enumerate(groups[2][1] if groups else []):
        _shift(group, (_GROUP_FILE_OFFSET,), by)
        ordinal = _field(group, _GROUP_ORDINAL)
        if ordinal is not None:
            ordinal[2] = first_ordinal + n
        for chunk in _field(group, _GROUP_COLUMNS)[2][1]:
            _shift(chunk, (_CHUNK_FILE_OFFSET, _CHUNK_OFFSET_INDEX, _CHUNK_COLUMN_INDEX), by)
            meta = _field(chunk, _CHUNK_META)
            if meta is not None:
                _shift(meta[2], _META_OFFSETS, by)
        moved.append(group)
    return moved


def _read_part(data: memoryview, number: int) -> tuple[int, memoryview]:
    """(length of the body, footer) of the parquet file `data` (part `number`)."""
    size = len(data)
    footer_size = struct.unpack("<I", data[-8:-4])[0] if size >= 12 else 0
    if size < 12 or data[:4] != MAGIC or data[-4:] != MAGIC or footer_size > size - 12:
        raise ValueError(f"part {number} is not a parquet file")
    return size - 12 - footer_size, data[size - 8 - footer_size:size - 8]


def part_footer(data: Any, number: int = 0) -> tuple[int, bytes]:
    """(length of the body, footer bytes) of parquet file `data` (bytes or a pyarrow Buffer): what
    joined_tail() needs of it. Not a parquet file: ValueError naming part `number`."""
    body, footer = _read_part(memoryview(data), number)
    return body, bytes(footer)


def joined_tail(footers: Sequence[tuple[int, bytes]]) -> bytes:
    """What follows the parts' bodies in their joined file, from their part_footer()s in order: the
    first part's footer holding every part's row groups (offsets moved by where the part's body
    lands, ordinals renumbered) and the rows summed, then its length and MAGIC. The costly part of
    a join (the footers decoded and encoded in Python), and all of it that needs no body."""
    footer: list[Field] | None = None
    groups: list[list[Field]] = []
    rows, before = 0, 0  # the bytes of the bodies before this part's
    for body, part in footers:
        decoded = decode_footer(part)
        groups += _moved_row_groups(decoded, before, len(groups))
        rows += _field(decoded, _FILE_NUM_ROWS)[2]
        footer = footer or decoded
        before += body
    if footer is None:
        raise ValueError("no parts to join")
    _field(footer, _FILE_NUM_ROWS)[2] = rows
    row_groups = _field(footer, _FILE_ROW_GROUPS)
    if row_groups is not None:
        row_groups[2] = (_STRUCT, groups)
    encoded = encode_footer(footer)
    return encoded + struct.pack("<I", len(encoded)) + MAGIC


def join_parquet_parts(parts: Sequence[Any], sink: BinaryIO, tail: bytes | None = None) -> None:
    """Write to `sink` the file one ParquetWriter would have written with the row groups of `parts`
    (parquet files' bytes), in order. The parts must come from writers with the same schema and
    settings (as harness.finish's pieces write them); a part may have no row groups. Encrypted
    files and page indexes that point outside their row group's column chunks are not supported
    (pyarrow writes neither by default). A part that is not a parquet file is a ValueError, and
    nothing is written. tail: joined_tail() of these same parts, if it was computed elsewhere (a
    worker); a tail of other parts makes a broken file."""
    if not parts:
        raise ValueError("no parts to join")
    views = list(map(memoryview, parts))  # bytes or pyarrow Buffers
    footers = [_read_part(view, number) for number, view in enumerate(views)]
    if tail is None:
        tail = joined_tail([(body, bytes(footer)) for body, footer in footers])
    sink.write(MAGIC)
    for view, (body, _) in zip(views, footers):
        sink.write(view[len(MAGIC):len(MAGIC) + body])
    sink.write(tail)
