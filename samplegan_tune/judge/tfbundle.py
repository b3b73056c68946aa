"""Read a TensorFlow-1 checkpoint (TensorBundle: an SSTable `.index` of BundleEntryProto
records, plus one raw `.data` shard) with numpy alone: no TensorFlow, no protobuf code.
`musicnn` reads its pretrained weights with it."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

_TABLE_MAGIC = 0xDB4775248B80FB57
_TF_DTYPES = {1: "<f4", 2: "<f8", 3: "<i4", 9: "<i8"}  # DT_FLOAT, DT_DOUBLE, DT_INT32, DT_INT64


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _proto_fields(buf: bytes) -> dict[int, list[int | bytes]]:
    """Decode one protobuf message into ``{field number: [values]}`` (no schema needed)."""
    fields: dict[int, list[int | bytes]] = {}
    pos = 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        wire = tag & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 2:
            size, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + size], pos + size
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            value, pos = int.from_bytes(buf[pos : pos + width], "little"), pos + width
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        fields.setdefault(tag >> 3, []).append(value)
    return fields


def _table_block(buf: bytes, offset: int, size: int) -> list[tuple[bytes, bytes]]:
    """The (key, value) entries of one SSTable block (prefix-compressed keys)."""
    if buf[offset + size] != 0:
        raise ValueError("compressed SSTable blocks are not supported")
    block = buf[offset : offset + size]
    (n_restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    end = len(block) - 4 - 4 * n_restarts
    entries, key, pos = [], b"", 0
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        value_size, pos = _varint(block, pos)
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        entries.append((key, block[pos : pos + value_size]))
        pos += value_size
    return entries


def _read_index(path: Path) -> dict[str, bytes]:
    """Every key of a TensorBundle ``.index`` SSTable, mapped to its raw value."""
    buf = path.read_bytes()
    if struct.unpack_from("<Q", buf, len(buf) - 8)[0] != _TABLE_MAGIC:
        raise ValueError(f"{path} is not an SSTable")
    footer = buf[-48:]
    _, pos = _varint(footer, 0)  # the metaindex handle, unused
    _, pos = _varint(footer, pos)
    index_offset, pos = _varint(footer, pos)
    index_size, _ = _varint(footer, pos)
    entries: dict[str, bytes] = {}
    for _, handle in _table_block(buf, index_offset, index_size):
        offset, pos = _varint(handle, 0)
        size, _ = _varint(handle, pos)
        entries.update((k.decode(), v) for k, v in _table_block(buf, offset, size))
    return entries


def read_tensor_bundle(prefix: str) -> dict[str, np.ndarray]:
    """Read a single-shard TF checkpoint (``prefix.index`` + ``prefix.data-00000-of-00001``).

    Args:
        prefix: the checkpoint prefix, as given to ``tf.train.Saver.restore``.

    Returns:
        Every numeric tensor by variable name (optimizer slots included); string tensors are
        skipped.
    """
    entries = _read_index(Path(prefix + ".index"))
    header = _proto_fields(entries.pop(""))
    if header.get(1, [1])[0] != 1 or header.get(2, [0])[0] != 0:
        raise ValueError("only single-shard little-endian checkpoints are supported")
    data = np.fromfile(prefix + ".data-00000-of-00001", dtype=np.uint8)
    tensors = {}
    for name, value in entries.items():
        entry = _proto_fields(value)
        dtype = _TF_DTYPES.get(int(entry.get(1, [0])[0]))
        if dtype is None or 7 in entry:  # strings, or a partitioned variable's slices
            continue
        shape_proto = entry.get(2, [b""])[0]
        dims = _proto_fields(shape_proto).get(2, []) if isinstance(shape_proto, bytes) else []
        shape = tuple(int(_proto_fields(d).get(1, [0])[0]) for d in dims if isinstance(d, bytes))
        offset, size = int(entry.get(4, [0])[0]), int(entry.get(5, [0])[0])
        array = data[offset : offset + size].view(dtype)
        tensors[name] = array.reshape(shape).copy()
    return tensors
