"""The opset an ONNX file declares, read from its bytes with a minimal protobuf reader.

onnxruntime's InferenceSession exposes the graph's inputs and outputs (names, shapes) but not
the model's ``opset_import`` (its ``get_modelmeta()`` has producer, graph name, domain,
description, version and custom metadata only), and the runtime must run with numpy and
onnxruntime alone, without the onnx package; so the opset check reads the one field it needs
here.
"""

from __future__ import annotations

OPSET_IMPORT_FIELD = 8  # ModelProto.opset_import (OperatorSetIdProto: 1 domain, 2 version)


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _fields(data: bytes):
    """(field number, wire type, value) of one protobuf message's top-level fields."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 1:
            value, pos = data[pos : pos + 8], pos + 8
        elif wire == 2:
            size, pos = _varint(data, pos)
            value, pos = data[pos : pos + size], pos + size
        elif wire == 5:
            value, pos = data[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        if pos > len(data):
            raise ValueError("truncated protobuf field")
        yield number, wire, value


def onnx_opsets(data: bytes) -> dict[str, int]:
    """``{domain: version}`` from an ONNX file's ``opset_import`` ('' is the default ONNX
    domain); ValueError if the bytes are not a protobuf message."""
    opsets = {}
    for number, wire, value in _fields(data):
        if number == OPSET_IMPORT_FIELD and wire == 2:
            entry = {n: v for n, _, v in _fields(value)}
            domain = entry.get(1, b"").decode() if isinstance(entry.get(1, b""), bytes) else ""
            opsets[domain] = int(entry.get(2, 0))
    return opsets
