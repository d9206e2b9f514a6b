"""fastact.optim.save/load: a checkpoint format that cannot run code on load.

The file layout is restated here from the module's docstring (a forged file is built from
it, independently of the module's code), so these tests also pin the documented format.
"""

from __future__ import annotations

import collections
import hashlib
import json
import math
import os
import pickle
import random
import struct
import sys
import tracemalloc
import warnings

import ml_dtypes
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastact.nn as N
import fastact.optim as O
import fastact.optim.checkpoint as C
from fastact.optim import lr_scheduler as L

MAGIC = b"FASTACT-CKPT\x02\x00\x00\x00"
PREAMBLE = struct.Struct("<16sQQ32s32s")
BLOCK = 8 << 20


def _align(n: int) -> int:
    return -(-n // 64) * 64


def _data_digest(data: bytes) -> bytes:
    blocks = [hashlib.sha256(data[i : i + BLOCK]).digest() for i in range(0, len(data), BLOCK)]
    return hashlib.sha256(b"".join(blocks)).digest()


def _build(header: bytes, data: bytes, *, hlen: int | None = None, dlen: int | None = None):
    """A file in the documented layout with correct digests (what anyone can forge)."""
    hlen = len(header) if hlen is None else hlen
    dlen = len(data) if dlen is None else dlen
    pre = PREAMBLE.pack(MAGIC, hlen, dlen, hashlib.sha256(header).digest(), _data_digest(data))
    start = _align(PREAMBLE.size + len(header))
    return pre + header + bytes(start - PREAMBLE.size - len(header)) + data


def _split(blob: bytes) -> tuple[dict, bytes]:
    """(header document, data section) of a valid file."""
    _, hlen, dlen, _, _ = PREAMBLE.unpack_from(blob)
    header = blob[PREAMBLE.size : PREAMBLE.size + hlen]
    start = _align(PREAMBLE.size + hlen)
    assert len(blob) == start + dlen
    return json.loads(header), blob[start:]


def _forge(doc: object, data: bytes) -> bytes:
    return _build(json.dumps(doc, separators=(",", ":")).encode(), data)


def _same(a: object, b: object) -> None:
    """Exact equality: types, values (floats bit for bit), dtypes, shapes, memory order."""
    assert type(a) is type(b), (type(a), type(b))
    if isinstance(a, float):
        assert struct.pack("<d", a) == struct.pack("<d", b)
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.dtype.str == b.dtype.str and a.shape == b.shape
        assert np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes()
        if a.ndim > 1 and a.flags.f_contiguous and not a.flags.c_contiguous:
            assert b.flags.f_contiguous
        else:
            assert b.flags.c_contiguous
        assert b.flags.writeable and b.flags.owndata
    elif isinstance(a, np.generic):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and a.requires_grad == b.requires_grad
        ab = a.detach().resolve_conj().contiguous().reshape(-1).view(torch.uint8)
        bb = b.detach().resolve_conj().contiguous().reshape(-1).view(torch.uint8)
        assert torch.equal(ab, bb)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _same(x, y)
    elif isinstance(a, dict):
        assert list(a.keys()) == list(b.keys())
        for (ka, va), (kb, vb) in zip(a.items(), b.items(), strict=True):
            _same(ka, kb)
            _same(va, vb)
        assert getattr(a, "_metadata", None) == getattr(b, "_metadata", None)
    else:
        assert a == b


def _round_trip(obj: object, tmp_path) -> object:
    path = tmp_path / "rt.ckpt"
    O.save(obj, path)
    out = O.load(path)
    _same(obj, out)
    return out


def _rich() -> dict:
    """A structure with every kind of node (a small file for the fuzz tests)."""
    rng = np.random.default_rng(0)
    return {
        "state": {
            0: {"step": 3.0, "exp_avg": rng.standard_normal((4, 3)).astype(np.float32)},
            1: {"step": torch.tensor(3.0), "exp_avg": torch.randn(5, dtype=torch.float64)},
        },
        "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "params": [0, 1], "foreach": None}],
        "codes": np.arange(100, dtype=np.uint8),
        "bf16": torch.tensor([1.5, -2.0], dtype=torch.bfloat16),
        "f": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
        ("t", 1): [True, 2**70, -math.inf, "é", b"\x00\x01", np.int16(-7)],
    }


def _rich_file(tmp_path) -> bytes:
    path = tmp_path / "rich.ckpt"
    O.save(_rich(), path)
    return path.read_bytes()


def _load_bytes(blob: bytes, tmp_path, name: str = "x.ckpt", **kw) -> object:
    path = tmp_path / name
    path.write_bytes(blob)
    return O.load(path, **kw)


# ------------------------------------------------------------------------------ security


class _Evil:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _legacy(payload: bytes) -> bytes:
    """The version-1 layout: magic, payload length, SHA-256 of the payload, payload."""
    return (
        b"FASTACT-CKPT\x01"
        + struct.pack("<Q32s", len(payload), hashlib.sha256(payload).digest())
        + payload
    )


def test_crafted_pickle_with_a_valid_header_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"state": _Evil(str(marker))})
    assert b"system" in payload
    # the version-1 layout with a correct length and digest: refused without allow_pickle
    with pytest.raises(ValueError, match="version-1.*pickle.*allow_pickle=True"):
        _load_bytes(_legacy(payload), tmp_path)
    # the payload as a plain pickle file, and behind the version-2 magic with valid digests
    with pytest.raises(ValueError, match="looks like a pickle"):
        _load_bytes(payload, tmp_path)
    with pytest.raises(ValueError, match="invalid header"):
        _load_bytes(_build(payload, b""), tmp_path)
    doc = {"format": "fastact-checkpoint", "version": 2, "entries": [], "root": None}
    doc["entries"] = [{"kind": "bytes", "dtype": "|u1", "shape": [len(payload)]}]
    doc["root"] = {"pickle": {"data": 0}}
    with pytest.raises(ValueError, match="invalid node 'pickle'"):
        _load_bytes(_forge(doc, payload), tmp_path)
    torch.save({"x": _Evil(str(marker))}, tmp_path / "t.pt")
    with pytest.raises(ValueError, match="torch.save"):
        O.load(tmp_path / "t.pt")
    assert not marker.exists()
    # a benign payload in that file with the flag (documented as unsafe) still loads
    x = np.arange(3.0)
    out = _load_bytes(_legacy(pickle.dumps({"x": x})), tmp_path, allow_pickle=True)
    np.testing.assert_array_equal(out["x"], x)
    with pytest.raises(ValueError, match="truncated"):
        _load_bytes(_legacy(pickle.dumps({"x": x}))[:-3], tmp_path, allow_pickle=True)
    with pytest.raises(TypeError, match="allow_pickle"):
        O.load(tmp_path / "x.ckpt", allow_pickle=1)


def test_load_uses_neither_pickle_nor_torch_load(tmp_path, monkeypatch):
    path = tmp_path / "c.ckpt"
    obj = _rich()
    O.save(obj, path)

    def banned(*a, **k):
        raise AssertionError("load called pickle or torch.load")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, banned)
    monkeypatch.setattr(torch, "load", banned)
    monkeypatch.setattr(np, "load", banned)
    _same(obj, O.load(path))


# ---------------------------------------------------------------------------- fuzz tests


def _only_value_errors(blob: bytes, tmp_path, must_fail: bool) -> None:
    try:
        _load_bytes(blob, tmp_path)
    except ValueError:
        return
    assert not must_fail, "a damaged file loaded"


def test_every_truncation_and_padding_is_a_value_error(tmp_path):
    blob = _rich_file(tmp_path)
    for n in range(len(blob)):
        with pytest.raises(ValueError):
            _load_bytes(blob[:n], tmp_path)
    for extra in (b"\x00", b"\x00" * 64, b"junk"):
        with pytest.raises(ValueError, match="padded"):
            _load_bytes(blob + extra, tmp_path)


def test_every_flipped_byte_is_a_value_error(tmp_path):
    blob = _rich_file(tmp_path)
    for i in range(len(blob)):
        for bit in (0x01, 0x80):
            bad = bytearray(blob)
            bad[i] ^= bit
            with pytest.raises(ValueError):
                _load_bytes(bytes(bad), tmp_path)


def test_random_byte_mutations_are_value_errors(tmp_path):
    blob = _rich_file(tmp_path)
    rng = random.Random(1234)
    for _ in range(1500):
        bad = bytearray(blob)
        for _ in range(rng.randint(1, 8)):
            op = rng.random()
            i = rng.randrange(len(bad))
            if op < 0.5:
                bad[i] = rng.randrange(256)
            elif op < 0.75:
                del bad[i : i + rng.randint(1, 100)]
            else:
                bad[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 100)))
        if bytes(bad) != blob:
            with pytest.raises(ValueError):
                _load_bytes(bytes(bad), tmp_path)


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.sampled_from([2**62, 2**63, -(2**63), 10**19, 10**25, 0, -1, 1 << 40])
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
    | st.sampled_from(["<f4", ">f8", "|O", "<f16", "|V2", "bfloat16", "tensor", "F", "C"]),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["data", "dict", "tuple", "int", "float", "odict", "counter", "x"]),
            inner,
            max_size=2,
        )
    ),
    max_leaves=12,
)


def _paths(node: object, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


def _replace(doc: object, path: tuple, value: object) -> object:
    if not path:
        return value
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    parent[path[-1]] = value
    return doc


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_forged_headers_load_or_raise_value_error(tmp_path_factory, data):
    """Edits of the structure and the entry table, re-signed (no secret protects the
    digests): each file loads (when the edit is still valid) or raises ValueError, and never
    allocates much more than the file holds."""
    tmp_path = tmp_path_factory.mktemp("forge")
    blob = _FORGE_BASE.get("blob")
    if blob is None:
        blob = _FORGE_BASE["blob"] = _rich_file(tmp_path)
    doc, section = _split(blob)
    paths = _paths(doc)
    for _ in range(data.draw(st.integers(1, 3))):
        where = data.draw(st.sampled_from(paths))
        doc = _replace(doc, where, data.draw(_json))
        paths = _paths(doc)
    forged = _forge(doc, section)
    tracemalloc.start()
    try:
        _only_value_errors(forged, tmp_path, must_fail=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * len(forged) + (2 << 20)


_FORGE_BASE: dict = {}


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=300), st.binary(max_size=300))
def test_arbitrary_signed_headers_are_value_errors(tmp_path_factory, header, data):
    tmp_path = tmp_path_factory.mktemp("bin")
    _only_value_errors(_build(header, data), tmp_path, must_fail=True)


def _doc(entries: list, root: object) -> dict:
    return {"format": "fastact-checkpoint", "version": 2, "entries": entries, "root": root}


def _entry(dtype: str = "<f4", shape: object = (2,), kind: str = "ndarray", **kw) -> dict:
    shape = list(shape) if isinstance(shape, tuple) else shape
    return {"kind": kind, "dtype": dtype, "shape": shape, **kw}


BAD_DOCS = {
    "object dtype": _doc([_entry("|O8")], {"data": 0}),
    "dtype name": _doc([_entry("float32")], {"data": 0}),
    "long double": _doc([_entry("<f16", (1,))], {"data": 0}),
    "void dtype": _doc([_entry("|V8", (1,))], {"data": 0}),
    "unicode dtype": _doc([_entry("<U2", (1,))], {"data": 0}),
    "datetime dtype": _doc([_entry("<M8[s]", (1,))], {"data": 0}),
    "dtype not str": _doc([_entry(["<f4"])], {"data": 0}),
    "negative extent": _doc([_entry("<f4", (-2,))], {"data": 0}),
    "float extent": _doc([_entry("<f4", [2.0])], {"data": 0}),
    "bool extent": _doc([_entry("<f4", [True, True])], {"data": 0}),
    "shape not list": _doc([_entry("<f4", 2)], {"data": 0}),
    "too many dims": _doc([_entry("<f4", (1,) * 40)], {"data": 0}),
    "wrong shape": _doc([_entry("<f4", (3,))], {"data": 0}),
    "wrong dtype": _doc([_entry("<f8", (2,))], {"data": 0}),
    "short dtype": _doc([_entry("<f2", (2,))], {"data": 0}),
    "huge 1-d": _doc([_entry("<f4", (1 << 40,))], {"data": 0}),
    "huge 2-d": _doc([_entry("<f8", (1 << 40, 1 << 40))], {"data": 0}),
    "huge empty": _doc([_entry("<f8", (0, 1 << 62, 1 << 62))], {"data": 0}),
    "past int64": _doc([_entry("<f4", (1 << 64,))], {"data": 0}),
    "huge tensor": _doc([_entry("<f4", (1 << 40,), kind="tensor")], {"data": 0}),
    "big-endian tensor": _doc([_entry(">f4", kind="tensor")], {"data": 0}),
    "big-endian bf16 tensor": _doc([_entry(">bfloat16", (4,), kind="tensor")], {"data": 0}),
    "unknown kind": _doc([_entry(kind="pickle")], {"data": 0}),
    "unknown entry key": _doc([_entry(module="os")], {"data": 0}),
    "order": _doc([_entry(order="K")], {"data": 0}),
    "F bytes": _doc([_entry("|u1", kind="bytes", order="F")], {"data": 0}),
    "flag on array": _doc([_entry(requires_grad=True)], {"data": 0}),
    "parameter scalar": _doc([_entry("<f8", (), kind="scalar", parameter=True)], {"data": 0}),
    "parameter bytes": _doc([_entry("|u1", (8,), kind="bytes", parameter=True)], {"data": 0}),
    "flag not bool": _doc([_entry(kind="tensor", requires_grad=1)], {"data": 0}),
    "grad on int": _doc([_entry("<i4", kind="tensor", requires_grad=True)], {"data": 0}),
    "grad on bool": _doc(
        [_entry("|b1", (8,), kind="tensor", requires_grad=True, parameter=True)], {"data": 0}
    ),
    "scalar shape": _doc([_entry(kind="scalar")], {"data": 0}),
    "bytes dtype": _doc([_entry(kind="bytes")], {"data": 0}),
    "entry not dict": _doc([["<f4", [2]]], {"data": 0}),
    "entries not list": _doc({"0": _entry()}, {"data": 0}),
    "index past end": _doc([_entry()], {"data": 1}),
    "negative index": _doc([_entry()], {"data": -1}),
    "index not int": _doc([_entry()], {"data": "0"}),
    "unknown tag": _doc([_entry()], {"eval": "os.system('x')"}),
    "two tags": _doc([_entry()], {"tuple": [], "data": 0}),
    "empty object": _doc([_entry()], [{"data": 0}, {}]),
    "array as key": _doc([_entry()], {"dict": [[{"data": 0}, 1]]}),
    "list as key": _doc([_entry()], [{"data": 0}, {"dict": [[[1], 1]]}]),
    "dict as key": _doc([_entry()], [{"data": 0}, {"dict": [[{"dict": []}, 1]]}]),
    "pair of three": _doc([_entry()], [{"data": 0}, {"dict": [[1, 2, 3]]}]),
    "pair not list": _doc([_entry()], [{"data": 0}, {"dict": [{"k": 1}]}]),
    "repeated key": _doc([_entry()], [{"data": 0}, {"dict": [["a", 1], ["a", 2]]}]),
    "repeated int key": _doc([_entry()], [{"data": 0}, {"dict": [[1, 1], [{"int": "1"}, 2]]}]),
    "bad hex int": _doc([_entry()], [{"data": 0}, {"int": "0x1f"}]),
    "hex int not str": _doc([_entry()], [{"data": 0}, {"int": 31}]),
    "bad float bits": _doc([_entry()], [{"data": 0}, {"float": "7ff8"}]),
    "bad str hex": _doc([_entry()], [{"data": 0}, {"str": "0000d83"}]),
    "str past unicode": _doc([_entry()], [{"data": 0}, {"str": "00110000"}]),
    "str not hex": _doc([_entry()], [{"data": 0}, {"str": "0000d83X"}]),
    "str of int": _doc([_entry()], [{"data": 0}, {"str": 55357}]),
    "metadata on dict": _doc([_entry()], [{"data": 0}, {"dict": [], "_metadata": {}}]),
    "tuple of non-list": _doc([_entry()], [{"data": 0}, {"tuple": 3}]),
    "wrong format": {**_doc([_entry()], {"data": 0}), "format": "pickle"},
    "wrong version": {**_doc([_entry()], {"data": 0}), "version": 3},
    "bool version": {**_doc([_entry()], {"data": 0}), "version": True},
    "extra field": {**_doc([_entry()], {"data": 0}), "code": "x"},
    "missing root": {k: v for k, v in _doc([_entry()], 0).items() if k != "root"},
    "header is a list": [_doc([_entry()], {"data": 0})],
    "deep lists": _doc([_entry()], [{"data": 0}, json.loads("[" * 65 + "]" * 65)]),
    "deep tuples": _doc([_entry()], [{"data": 0}, json.loads('{"tuple":[' * 65 + "]}" * 65)]),
}


@pytest.mark.parametrize("name", list(BAD_DOCS))
def test_invalid_signed_headers_are_value_errors(tmp_path, name):
    """Each file has correct digests and an 8-byte data section: only validation stops it,
    before any allocation of a declared size."""
    blob = _forge(BAD_DOCS[name], np.arange(2, dtype=np.float32).tobytes())
    tracemalloc.start()
    try:
        with pytest.raises(ValueError):
            _load_bytes(blob, tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_the_forged_reference_file_is_valid(tmp_path):
    """The BAD_DOCS files differ from this valid one in one respect each."""
    doc = _doc([_entry()], [{"data": 0}, {"dict": [[1, {"tuple": [{"int": "-1f"}]}]]}])
    out = _load_bytes(_forge(doc, np.arange(2, dtype=np.float32).tobytes()), tmp_path)
    _same(out, [np.arange(2, dtype=np.float32), {1: (-31,)}])


def _raw_json(text: bytes) -> bytes:
    return _build(text, b"")


RAW_HEADERS = {
    "deep brackets": b"[" * 100_000 + b"]" * 100_000,
    "deep objects": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    "non-ascii": '{"format":"fastact-checkpoint","version":2,"entries":[],"root":"é"}'.encode(),
    "NaN": b'{"format":"fastact-checkpoint","version":2,"entries":[],"root":NaN}',
    "Infinity": b'{"format":"fastact-checkpoint","version":2,"entries":[],"root":-Infinity}',
    "overflowing float": b'{"format":"fastact-checkpoint","version":2,"entries":[],"root":1e999}',
    "long int": b'{"format":"fastact-checkpoint","version":2,"entries":[],"root":'
    + b"9" * 5000
    + b"}",
    "int past 2**63": b'{"format":"fastact-checkpoint","version":2,"entries":[],"root":'
    + str(2**63).encode()
    + b"}",
    "duplicate field": b'{"format":"fastact-checkpoint","version":2,"version":2,'
    b'"entries":[],"root":1}',
    "truncated json": b'{"format":"fastact-checkpoint","version":2,"entries":[],"root":[',
    "utf-16": '{"format":"fastact-checkpoint","version":2,"entries":[],"root":1}'.encode("utf-16"),
    "empty": b"",
}


@pytest.mark.parametrize("name", list(RAW_HEADERS))
def test_invalid_signed_json_is_a_value_error(tmp_path, name):
    with pytest.raises(ValueError):
        _load_bytes(_raw_json(RAW_HEADERS[name]), tmp_path)


def test_declared_sizes_are_checked_against_the_file_before_anything_is_read(tmp_path):
    header = json.dumps(_doc([], None)).encode()
    cases = {
        "header length": dict(hlen=1 << 62),
        "header over the cap": dict(hlen=C.MAX_HEADER_BYTES + 1),
        "data length": dict(dlen=1 << 62),
        "data length + 1": dict(dlen=1),
        "both": dict(hlen=(1 << 64) - 1, dlen=(1 << 64) - 1),
    }
    for name, kw in cases.items():
        tracemalloc.start()
        try:
            with pytest.raises(ValueError, match="header|truncated"):
                _load_bytes(_build(header, b"", **kw), tmp_path)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 1 << 20, name
    assert _load_bytes(_build(header, b""), tmp_path) is None


def test_nonzero_padding_is_a_value_error(tmp_path):
    blob = bytearray(_rich_file(tmp_path))
    _, hlen, dlen, _, ddig = PREAMBLE.unpack_from(blob)
    start = _align(PREAMBLE.size + hlen)
    if start > PREAMBLE.size + hlen:  # padding after the header, re-signed (not covered)
        bad = bytearray(blob)
        bad[start - 1] = 1
        with pytest.raises(ValueError, match="padding"):
            _load_bytes(bytes(bad), tmp_path)
    doc, data = _split(bytes(blob))
    first = C._Plan(0, doc["entries"][0]).nbytes()
    assert first % 64, "the first entry should leave padding before the second"
    data = bytearray(data)
    data[first] = 1  # the first padding byte between entries, data digest recomputed
    with pytest.raises(ValueError, match="padding"):
        _load_bytes(_forge(doc, bytes(data)), tmp_path)


def test_other_versions_and_files_are_named(tmp_path):
    blob = _rich_file(tmp_path)
    with pytest.raises(ValueError, match="unsupported format version"):
        _load_bytes(b"FASTACT-CKPT\x03" + blob[13:], tmp_path)
    with pytest.raises(ValueError, match="not a fastact checkpoint"):
        _load_bytes(b"", tmp_path)
    for n in (12, 13, 15, 16, 40):  # inside the magic too: truncated, not a newer version
        with pytest.raises(ValueError, match=rf"is truncated \({n} bytes\)"):
            _load_bytes(blob[:n], tmp_path)


# --------------------------------------------------------------------------- round trips

NP_DTYPES = sorted(d for d in C._DTYPES if "bfloat16" not in d)


@pytest.mark.parametrize("dtype", NP_DTYPES)
def test_numpy_arrays_of_every_dtype_and_layout_round_trip(tmp_path, dtype):
    rng = np.random.default_rng(3)
    raw = rng.integers(0, 256, size=4 * 6 * 5 * np.dtype(dtype).itemsize, dtype=np.uint8)
    base = raw.view(dtype).reshape(4, 6, 5)
    if np.dtype(dtype).kind == "b":
        base = raw.reshape(4, 6, 5 * np.dtype(dtype).itemsize)[..., :5] > 127
    arrays = {
        "c": base,
        "f": np.asfortranarray(base),
        "strided": base[::2, 1::3],
        "transposed": base.transpose(2, 0, 1),
        "reversed": base[::-1],
        "0-d": base[1, 2, 3].reshape(()),
        "empty": base[:0],
        "empty middle": base[:, :0, :],
        "1-d": base.reshape(-1),
        "row": base.reshape(1, -1),
    }
    out = _round_trip(arrays, tmp_path)
    assert out["f"].flags.f_contiguous and not out["f"].flags.c_contiguous
    scalar = base.reshape(-1)[7]
    _round_trip([scalar, {scalar: "as key"}], tmp_path)


TORCH_DTYPES = [
    torch.bool,
    torch.uint8,
    torch.int8,
    torch.int16,
    torch.int32,
    torch.int64,
    torch.uint16,
    torch.uint32,
    torch.uint64,
    torch.float16,
    torch.bfloat16,
    torch.float32,
    torch.float64,
    torch.complex64,
    torch.complex128,
]


@pytest.mark.parametrize("dtype", TORCH_DTYPES, ids=str)
def test_torch_tensors_of_every_dtype_round_trip(tmp_path, dtype):
    g = torch.Generator().manual_seed(0)
    size = torch.empty((), dtype=dtype).element_size()
    bits = torch.randint(0, 256, (4, 6, 8 * size), dtype=torch.uint8, generator=g)
    base = bits.view(dtype) if dtype is not torch.bool else bits > 127
    tensors = {
        "t": base,
        "transposed": base.transpose(0, 2),
        "strided": base[::2, 1::2],
        "0-d": base.reshape(-1)[3].clone(),
        "empty": base[:0],
    }
    if dtype.is_floating_point or dtype.is_complex:
        tensors["grad"] = base.clone().requires_grad_(True)
        tensors["param"] = torch.nn.Parameter(base.clone())
        tensors["frozen"] = torch.nn.Parameter(base.clone(), requires_grad=False)
    if dtype.is_complex:
        tensors["conj"] = base.conj()
    out = _round_trip(tensors, tmp_path)
    assert type(out["t"]) is torch.Tensor and out["t"].is_contiguous()
    if "param" in out:
        assert type(out["param"]) is torch.nn.Parameter and out["param"].requires_grad
        assert not out["frozen"].requires_grad
    if "conj" in out:
        assert not out["conj"].is_conj()
    out["t"].zero_()  # a plain writable tensor with a resizable storage
    out["t"].resize_(0)


def test_bfloat16_numpy_arrays_round_trip_with_ml_dtypes(tmp_path):
    a = np.array([[1.5, -2.0, np.inf], [np.nan, 3e38, 1e-40]], dtype=ml_dtypes.bfloat16)
    big = a.astype(np.dtype(ml_dtypes.bfloat16).newbyteorder(">"))  # kept in its byte order
    obj = {"a": a, "f": np.asfortranarray(a), "s": a[0, 0], "big": big}
    obj["big f"] = np.asfortranarray(big)
    out = _round_trip(obj, tmp_path)
    assert out["a"].dtype == np.dtype(ml_dtypes.bfloat16)
    assert out["big"].dtype.byteorder == ">" and out["big f"].dtype.byteorder == ">"
    for name in ("big", "big f"):
        np.testing.assert_array_equal(out[name].astype(np.float32), a.astype(np.float32))


def test_without_torch_or_ml_dtypes_entries_come_back_as_documented(tmp_path, monkeypatch):
    """No torch: tensors as NumPy arrays (warning); no ml_dtypes either: bfloat16 as float32
    holding exactly the same numbers (warning), never as raw bits."""
    vals = [1.5, -2.0, float("inf"), 3.0e38, 1.0e-40, -0.0]
    t = torch.tensor(vals, dtype=torch.bfloat16)
    obj = {"bf": t, "f": torch.arange(4, dtype=torch.float32), "b": torch.tensor([True])}
    obj["big"] = np.array(vals, np.dtype(ml_dtypes.bfloat16).newbyteorder(">"))
    path = tmp_path / "c.ckpt"
    O.save(obj, path)
    expect_bf = t.float().numpy()
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now fails
    monkeypatch.setitem(sys.modules, "ml_dtypes", None)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        out = O.load(path)
    msgs = " | ".join(str(x.message) for x in w)
    assert "torch is not installed" in msgs and "float32" in msgs, msgs
    assert out["bf"].dtype == np.float32
    np.testing.assert_array_equal(out["bf"], expect_bf)
    assert np.signbit(out["bf"][-1])
    assert out["big"].dtype == np.float32  # the numbers of a big-endian array too
    np.testing.assert_array_equal(out["big"], expect_bf)
    _same(out["f"], np.arange(4, dtype=np.float32))
    _same(out["b"], np.array([True]))


def test_python_values_round_trip_exactly(tmp_path):
    nan_payload = struct.unpack("<d", bytes.fromhex("0100000000f8ff7f"))[0]
    obj = {
        "ints": [0, -1, 2**63 - 1, -(2**63) + 1, 2**63, -(2**63), 2**200, -(3**300), True, False],
        "floats": [0.0, -0.0, 1.0, 0.1, 5e-324, 1.7976931348623157e308, math.inf, -math.inf],
        "nans": [math.nan, -math.nan, nan_payload],
        "tuples": ((), (1,), ((1, 2), [3, (4,)]), ([],)),
        "strings": ["", "é", "\x00", '"]}[{\\', "\ud7ff", "\ud800", "🙂"],
        "bytes": [b"", b"\x00\xff", bytes(range(256))],
        "none": None,
        "np scalars": [np.float32(1.5), np.float64(-0.0), np.int8(-3), np.uint64(2**64 - 1)],
        "np bool": np.bool_(True),
        "nested": [[[[]]], {}, {"a": {"b": {"c": []}}}],
    }
    out = _round_trip(obj, tmp_path)
    assert [struct.pack("<d", x) for x in out["nans"]] == [
        struct.pack("<d", x) for x in obj["nans"]
    ]


def test_strings_with_surrogate_code_points_round_trip_exactly(tmp_path):
    """A high surrogate followed by a low one is two code points (e.g. text decoded with
    "surrogatepass"): as JSON escapes they would load as one character."""
    pair = "\ud83d\ude00"
    strings = [pair, "a" + pair + "é", "\udbff\udfff", "\udcff\ud800", "\ud800", "😀" + pair]
    obj = {"values": strings, "keys": {s: i for i, s in enumerate(strings)}, (pair, 1): pair}
    out = _round_trip(obj, tmp_path)
    assert [len(s) for s in out["values"]] == [2, 4, 2, 2, 1, 3]
    assert out[(pair, 1)] == pair and "😀" not in out[(pair, 1)]


def test_dict_keys_and_dict_types_round_trip(tmp_path):
    keys = {
        0: "int",
        7: "int",
        -(2**70): "big int",
        "0": "str",
        1.5: "float",
        -0.5: "float",
        True: "bool",
        None: "none",
        (1, "a", (2.5, None)): "tuple",
        b"k": "bytes",
        np.int64(9): "np scalar",
        math.inf: "inf",
    }
    od = collections.OrderedDict([("z", 1), ("a", 2)])
    od._metadata = collections.OrderedDict([("", {"version": 1})])
    obj = {
        "keys": keys,
        "odict": od,
        "counter": collections.Counter({2: 1, 4: 2}),
        "state": {3: {"step": 1.0}, 1: {"step": 2.0}},  # int keys, insertion order kept
    }
    out = _round_trip(obj, tmp_path)
    assert type(out["odict"]) is collections.OrderedDict
    assert type(out["counter"]) is collections.Counter
    assert list(out["state"]) == [3, 1]
    assert type(next(iter(out["keys"]))) is int


def test_an_object_stored_twice_loads_as_one(tmp_path):
    a = np.arange(4.0)
    t = torch.ones(3)
    out = _round_trip({"a": a, "b": a, "t": [t, t], "x": [1], "y": [1]}, tmp_path)
    assert out["a"] is out["b"] and out["t"][0] is out["t"][1]
    assert out["x"] is not out["y"]


def test_fastact_parameters_round_trip_as_parameters(tmp_path):
    """Like torch.nn.Parameter (torch.save keeps the type): named_parameters() saves and
    loads as fastact.nn.Parameter, without its .grad (torch stores none either)."""
    model = N.Linear(3, 2, dtype=np.float64)
    params = dict(model.named_parameters())
    params["weight"].grad = np.ones((2, 3))
    fortran = np.asfortranarray(np.arange(6.0, dtype=np.float32).reshape(2, 3)).view(N.Parameter)
    obj = {**params, "tied": params["bias"], "f": fortran, "0-d": N.Parameter(2.5)}
    out = _round_trip(obj, tmp_path)
    assert all(type(out[k]) is N.Parameter and out[k].grad is None for k in obj)
    assert out["tied"] is out["bias"] and out["f"].flags.f_contiguous
    out["weight"].accumulate_grad(np.ones((2, 3)))  # a working parameter
    opt = O.SGD([out["weight"]], lr=0.5)
    opt.step([out["weight"].grad])
    np.testing.assert_array_equal(out["weight"], params["weight"] - 0.5)


def test_torch_module_state_dict_round_trips_with_its_metadata(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    net(torch.randn(8, 4))
    sd = net.state_dict()
    out = _round_trip(sd, tmp_path)
    assert out._metadata == sd._metadata
    net2 = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    net2.load_state_dict(out)
    for a, b in zip(net.state_dict().values(), net2.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_low_precision_optimizer_states_round_trip(tmp_path):
    """The layouts of the 8-bit and bfloat16 optimizers (uint8 codes and float32 block
    scales; bfloat16 moments), as NumPy arrays and as torch tensors."""
    rng = np.random.default_rng(5)
    np_state = {
        "state": {
            0: {
                "step": 10.0,
                "exp_avg_codes": rng.integers(0, 256, 4096, dtype=np.uint8),
                "exp_avg_f8absmax": rng.random(16, dtype=np.float32),
                "exp_avg_sq_codes": rng.integers(0, 256, 4096, dtype=np.uint8),
                "exp_avg_sq_f8absmax": rng.random(16, dtype=np.float32),
                "signed_codes": rng.integers(-128, 128, 100, dtype=np.int8),
                "bf16_bits": rng.integers(0, 2**16, 300, dtype=np.uint16),
            }
        },
        "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "block_size": 256, "params": [0]}],
    }
    _round_trip(np_state, tmp_path)
    t_state = {
        "state": {
            0: {
                "step": torch.tensor(10.0),
                "exp_avg": torch.randn(64, 32).to(torch.bfloat16),
                "exp_avg_sq": torch.rand(64, 32).to(torch.bfloat16),
                "codes": torch.randint(0, 256, (2048,), dtype=torch.uint8),
                "absmax": torch.rand(8),
            }
        },
        "param_groups": [{"lr": torch.tensor(1e-3), "betas": (0.9, 0.999), "params": [0]}],
    }
    _round_trip(t_state, tmp_path)


# --------------------------------------------------------------------------- save errors


class _Thing:
    pass


@pytest.mark.parametrize(
    "obj, where",
    [
        ({"state": {3: {"foo": _Thing()}}}, r"obj\['state'\]\[3\]\['foo'\]"),
        ({"f": lambda: 0}, r"obj\['f'\]"),
        ([1, {2, 3}], r"obj\[1\]"),
        ({"a": [0, (1, np.array([None], dtype=object))]}, r"obj\['a'\]\[1\]\[1\].*dtype object"),
        ({"s": np.array(["x"])}, r"obj\['s'\].*dtype <U1"),
        ({"l": np.zeros(2, dtype=np.longdouble)}, r"obj\['l'\].*dtype float128"),
        ({"d": np.datetime64("2020-01-01")}, r"obj\['d'\].*dtype datetime64"),
        ({"dd": collections.defaultdict(int)}, r"obj\['dd'\].*defaultdict"),
        ({"q": torch.empty(2, device="meta")}, r"obj\['q'\].*meta"),
        ({"sp": torch.ones(2).to_sparse()}, r"obj\['sp'\].*sparse"),
        ({"k": {(1, frozenset()): 0}}, r"obj\['k'\] \(the key \(1, frozenset\(\)\)\)\[1\]"),
        ({"k": {np.float16(1): {frozenset(): 1}}}, r"obj\['k'\]\[np.float16\(1.0\)\]"),
        ({"m": np.ma.masked_array([1, 2])}, r"obj\['m'\].*MaskedArray"),
        ({"c": 1j}, r"obj\['c'\].*complex"),
    ],
    ids=lambda x: x if isinstance(x, str) else None,
)
def test_unsupported_objects_raise_type_error_naming_the_path(tmp_path, obj, where):
    path = tmp_path / "c.ckpt"
    O.save({"old": 1}, path)
    old = path.read_bytes()
    with pytest.raises(TypeError, match=where):
        O.save(obj, path)
    assert path.read_bytes() == old
    assert [f.name for f in tmp_path.iterdir()] == ["c.ckpt"]


def test_cycles_and_too_deep_nesting_raise_value_error_before_writing(tmp_path):
    a: list = [1]
    a.append({"again": a})
    with pytest.raises(ValueError, match=r"obj\[1\]\['again'\].*cycle"):
        O.save(a, tmp_path / "c.ckpt")
    deep: list = []
    node = deep
    for _ in range(C.MAX_DEPTH):
        node.append([])
        node = node[0]
    with pytest.raises(ValueError, match="nested deeper than 64"):
        O.save(deep, tmp_path / "c.ckpt")
    _round_trip(deep[0], tmp_path)  # MAX_DEPTH levels are fine
    assert sorted(f.name for f in tmp_path.iterdir()) == ["rt.ckpt"]


# --------------------------------------------------------------------------------- files


def test_save_writes_through_a_symlink_like_open(tmp_path):
    """torch.save and open(path, "wb") write the file a symlink points to and keep the link;
    a dangling link gets its target created; a link loop is an OSError, nothing written."""
    runs = tmp_path / "runs"
    runs.mkdir()
    target = runs / "step100.ckpt"
    O.save({"step": 100}, target)
    link = tmp_path / "latest.ckpt"
    link.symlink_to(os.path.join("runs", "step100.ckpt"))  # relative, from another folder
    O.save({"step": 200}, link)
    assert link.is_symlink() and O.load(target) == {"step": 200}
    assert sorted(f.name for f in runs.iterdir()) == ["step100.ckpt"]  # no temporary left
    dangling = tmp_path / "next.ckpt"
    dangling.symlink_to(runs / "step300.ckpt")
    O.save({"step": 300}, dangling)
    assert dangling.is_symlink() and O.load(runs / "step300.ckpt") == {"step": 300}
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    with pytest.raises(OSError):
        O.save({}, tmp_path / "loop")
    assert (tmp_path / "loop").is_symlink()
    with pytest.raises(IsADirectoryError):  # open(path, "wb")'s errors, nothing written
        O.save({}, os.path.join(tmp_path, "new.ckpt") + os.sep)
    with pytest.raises(FileNotFoundError):
        O.save({}, "")
    assert sorted(f.name for f in tmp_path.iterdir()) == [
        "latest.ckpt",
        "loop",
        "next.ckpt",
        "runs",
    ]


def test_new_files_get_the_umask_bits_like_open_and_existing_files_keep_theirs(tmp_path):
    """torch.save's open() creates a file with 0o666 less the umask."""
    old_umask = os.umask(0o022)
    try:
        for umask in (0o077, 0o022, 0o002, 0o027):
            os.umask(umask)
            with open(tmp_path / f"open-{umask:o}", "wb"):
                pass
            O.save({"x": 1}, tmp_path / f"new-{umask:o}.ckpt")
            expect = os.stat(tmp_path / f"open-{umask:o}").st_mode & 0o7777
            assert expect == 0o666 & ~umask
            assert os.stat(tmp_path / f"new-{umask:o}.ckpt").st_mode & 0o7777 == expect
        os.umask(0o077)
        existing = tmp_path / "new-22.ckpt"
        os.chmod(existing, 0o640)
        O.save({"x": 2}, existing)
        assert os.stat(existing).st_mode & 0o7777 == 0o640 and O.load(existing) == {"x": 2}
    finally:
        os.umask(old_umask)


def test_file_names_up_to_the_longest_the_file_system_takes_can_be_saved(tmp_path):
    """open() and torch.save take any valid name; the temporary name is cut short to fit."""
    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    names = ["x" * (limit - 4) + ".bin", "é" * ((limit - 1) // 2) + "x", "y" * 241]
    for name in names:
        assert len(os.fsencode(name)) <= limit
        O.save({"name": name}, tmp_path / name)
        assert O.load(tmp_path / name) == {"name": name}
        O.save({"again": name}, tmp_path / name)  # over the existing file
        assert O.load(tmp_path / name) == {"again": name}
    assert sorted(f.name for f in tmp_path.iterdir()) == sorted(names)


# -------------------------------------------------------------------------------- memory


def test_load_holds_one_copy_of_the_arrays(tmp_path):
    """Peak traced memory during load is the arrays themselves (read into preallocated
    arrays: no file-sized buffer); version 1 needed about three copies."""
    arrays = [np.random.default_rng(i).random(300_000) for i in range(8)]  # 19.2 MB
    nbytes = sum(a.nbytes for a in arrays)
    path = tmp_path / "c.ckpt"
    O.save({"a": arrays}, path)
    tracemalloc.start()
    try:
        out = O.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert nbytes <= peak < 1.05 * nbytes + (1 << 20)
    _same({"a": arrays}, out)


# ------------------------------------------------------------- optimizers and schedulers


def _opt_kwargs(name: str) -> list[dict]:
    """Two param groups with options that create every state key of the optimizer."""
    extra = {
        "SGD": [dict(lr=0.05, momentum=0.9, nesterov=True), dict(lr=0.02, momentum=0.5)],
        "Adam": [dict(lr=1e-2, amsgrad=True), dict(lr=3e-3, weight_decay=0.1)],
        "AdamW": [dict(lr=1e-2, amsgrad=True), dict(lr=3e-3)],
        "Adamax": [dict(lr=1e-2), dict(lr=5e-3, weight_decay=0.01)],
        "RMSprop": [dict(lr=1e-2, momentum=0.9, centered=True), dict(lr=5e-3)],
        "Rprop": [dict(lr=1e-2), dict(lr=2e-3, etas=(0.4, 1.3))],
        "Adagrad": [dict(lr=1e-2, lr_decay=0.01), dict(lr=5e-2)],
        "Adadelta": [dict(lr=1.0, rho=0.8), dict(lr=0.5)],
    }
    return extra[name]


def _params(kind: str, dtype: str, seed: int) -> list:
    rng = np.random.default_rng(seed)
    shapes = [(6, 5), (7,), (3, 4), (2,)]
    ps = [rng.standard_normal(s).astype(dtype) for s in shapes]
    if kind == "numpy":
        ps[0] = np.asfortranarray(ps[0])
        return ps
    return [torch.from_numpy(p) for p in ps]


def _make_opt(cls, params: list, name: str):
    kw = _opt_kwargs(name)
    return cls([{"params": params[:2], **kw[0]}, {"params": params[2:], **kw[1]}])


def _grads(params: list, rng) -> list:
    return [
        rng.standard_normal(tuple(p.shape)).astype(np.dtype(str(p.dtype).split(".")[-1]))
        for p in params
    ]


def _step(opt, params: list, grads: list) -> None:
    if isinstance(params[0], torch.Tensor):
        for p, g in zip(params, grads, strict=True):
            p.grad = torch.from_numpy(g.copy())
        opt.step()
    else:
        opt.step([g.copy() for g in grads])


def _param_copy(p):
    return p.clone() if isinstance(p, torch.Tensor) else p.copy(order="K")


@pytest.mark.parametrize(
    "kind, dtype",
    [("numpy", "float32"), ("numpy", "float64"), ("torch", "float32"), ("torch", "float64")],
)
@pytest.mark.parametrize("name", list(O.OPTIMIZERS))
def test_every_optimizer_resumes_bit_identically(tmp_path, name, kind, dtype):
    cls = O.OPTIMIZERS[name]
    params = _params(kind, dtype, 0)
    opt = _make_opt(cls, params, name)
    rng = np.random.default_rng(1)
    for _ in range(3):
        _step(opt, params, _grads(params, rng))
    path = tmp_path / "opt.ckpt"
    O.save({"params": params, "opt": opt.state_dict()}, path)
    ck = O.load(path)
    params2 = ck["params"]
    assert all(type(a) is type(b) for a, b in zip(params, params2, strict=True))
    _same(opt.state_dict(), ck["opt"])
    opt2 = _make_opt(cls, params2, name)
    opt2.load_state_dict(ck["opt"])
    for _ in range(4):
        g = _grads(params, rng)
        _step(opt, params, g)
        _step(opt2, params2, g)
    for a, b in zip(params, params2, strict=True):
        _same(np.asarray(a), np.asarray(b)) if kind == "numpy" else _same(a, b)
    _same(opt.state_dict(), opt2.state_dict())


def _lowp_cases() -> dict:
    """The low-precision layouts an optimizer can hold: each 8-bit class (uint8 codes and
    float32 block scales; min_8bit_size=1 so these small tensors are quantized, blocks of 64
    so several blocks per tensor), bfloat16 states, and bfloat16 parameters with stochastic
    rounding."""
    q8 = dict(block_size=64, min_8bit_size=1)
    return {
        **{name: (lambda p, c=cls: c(p, lr=1e-2, **q8)) for name, cls in O.OPTIMIZERS_8BIT.items()},
        "AdamW-bf16-states": lambda p: O.AdamW(p, lr=1e-2, state_dtype="bfloat16"),
        "SGD-bf16-states": lambda p: O.SGD(p, lr=1e-2, momentum=0.9, state_dtype="bfloat16"),
        "AdamW-bf16-params-sr": lambda p: O.AdamW(
            p, lr=1e-2, state_dtype="bfloat16", stochastic_rounding=True, seed=7
        ),
    }


@pytest.mark.parametrize("kind", ["numpy", "torch"])
@pytest.mark.parametrize("case", list(_lowp_cases()))
def test_low_precision_optimizers_resume_bit_identically(tmp_path, case, kind):
    """8-bit and bfloat16 optimizer states (and bfloat16 parameters) saved mid-run resume
    bit-identically: the step after loading is the step the original run takes."""
    make = _lowp_cases()[case]
    rng = np.random.default_rng(3)
    shapes = [(40, 9), (130,), (5,)]
    arrays = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    if case.endswith("params-sr"):
        if kind == "numpy":
            arrays = [a.astype(ml_dtypes.bfloat16) for a in arrays]
            params = arrays
        else:
            params = [torch.from_numpy(a).to(torch.bfloat16) for a in arrays]
    else:
        params = arrays if kind == "numpy" else [torch.from_numpy(a) for a in arrays]
    opt = make(params)

    def grads():
        return [rng.standard_normal(s).astype(np.float32) for s in shapes]

    def step(o, ps, gs):
        if kind == "torch":
            for p, g in zip(ps, gs, strict=True):
                p.grad = torch.from_numpy(g.copy()).to(p.dtype)
            o.step()
        elif case.endswith("params-sr"):
            o.step([g.astype(ml_dtypes.bfloat16) for g in gs])
        else:
            o.step([g.copy() for g in gs])

    for _ in range(3):
        step(opt, params, grads())
    path = tmp_path / "lowp.ckpt"
    O.save({"params": params, "opt": opt.state_dict()}, path)
    ck = O.load(path)
    _same(opt.state_dict(), ck["opt"])
    params2 = ck["params"]
    opt2 = make(params2)
    opt2.load_state_dict(ck["opt"])
    for _ in range(4):
        g = grads()
        step(opt, params, g)
        step(opt2, params2, g)
    for a, b in zip(params, params2, strict=True):
        _same(a, b)
    _same(opt.state_dict(), opt2.state_dict())


def _sched_cases() -> dict:
    return {
        "LambdaLR": lambda o: L.LambdaLR(o, lambda e: 0.95**e),
        "MultiplicativeLR": lambda o: L.MultiplicativeLR(o, lambda e: 0.9),
        "StepLR": lambda o: L.StepLR(o, 2, gamma=0.5),
        "MultiStepLR": lambda o: L.MultiStepLR(o, [2, 4, 4], gamma=0.3),
        "ConstantLR": lambda o: L.ConstantLR(o, factor=0.5, total_iters=3),
        "LinearLR": lambda o: L.LinearLR(o, total_iters=5),
        "ExponentialLR": lambda o: L.ExponentialLR(o, 0.9),
        "PolynomialLR": lambda o: L.PolynomialLR(o, total_iters=8, power=2.0),
        "CosineAnnealingLR": lambda o: L.CosineAnnealingLR(o, 5, eta_min=1e-4),
        "CosineAnnealingWarmRestarts": lambda o: L.CosineAnnealingWarmRestarts(o, 3, T_mult=2),
        "CyclicLR": lambda o: L.CyclicLR(o, 0.01, 0.1, step_size_up=3, mode="exp_range"),
        "OneCycleLR": lambda o: L.OneCycleLR(o, 0.1, total_steps=20),
        "SequentialLR": lambda o: L.SequentialLR(
            o, [L.ConstantLR(o, factor=0.5, total_iters=2), L.ExponentialLR(o, 0.9)], [3]
        ),
        "ChainedScheduler": lambda o: L.ChainedScheduler(
            [L.ConstantLR(o, total_iters=4), L.ExponentialLR(o, 0.9)]
        ),
        "ReduceLROnPlateau": lambda o: L.ReduceLROnPlateau(o, patience=1, factor=0.5),
    }


@pytest.mark.parametrize("name", list(_sched_cases()))
def test_every_scheduler_resumes_identically(tmp_path, name):
    make = _sched_cases()[name]
    metrics = [1.0, 0.9, 0.95, 0.97, 0.99, 0.8, 0.85, 0.9, 0.91, 0.92, 0.93, 0.94]

    def run(opt, sched, steps, params, rng, start):
        for i in range(steps):
            _step(opt, params, _grads(params, rng))
            if name == "ReduceLROnPlateau":
                sched.step(metrics[start + i])
            else:
                sched.step()

    params = _params("numpy", "float64", 0)
    opt = O.SGD(params, lr=0.1, momentum=0.9)
    sched = make(opt)
    rng = np.random.default_rng(2)
    run(opt, sched, 5, params, rng, 0)
    path = tmp_path / "s.ckpt"
    O.save({"params": params, "opt": opt.state_dict(), "sched": sched.state_dict()}, path)
    ck = O.load(path)
    _same(sched.state_dict(), ck["sched"])
    params2 = ck["params"]
    opt2 = O.SGD(params2, lr=0.1, momentum=0.9)
    sched2 = make(opt2)
    opt2.load_state_dict(ck["opt"])
    sched2.load_state_dict(ck["sched"])
    rng2 = np.random.default_rng(3)
    rng1 = np.random.default_rng(3)
    run(opt, sched, 6, params, rng1, 5)
    run(opt2, sched2, 6, params2, rng2, 5)
    assert sched.get_last_lr() == sched2.get_last_lr()
    assert [g["lr"] for g in opt.param_groups] == [g["lr"] for g in opt2.param_groups]
    assert [g.get("momentum") for g in opt.param_groups] == [
        g.get("momentum") for g in opt2.param_groups
    ]
    for a, b in zip(params, params2, strict=True):
        _same(a, b)


class _FakeDeviceArray:
    """The parts of a numba/cupy device array that save uses (no GPU on the test machine):
    ``__cuda_array_interface__``, shape, dtype and a copy to the host."""

    def __init__(self, a: np.ndarray) -> None:
        self._a = a
        self.shape = a.shape
        self.dtype = a.dtype

    @property
    def __cuda_array_interface__(self) -> dict:
        strides = None if self._a.flags.c_contiguous else self._a.strides
        return {"shape": self.shape, "typestr": self.dtype.str, "strides": strides, "version": 3}

    def copy_to_host(self) -> np.ndarray:
        return self._a.copy(order="K")


def test_device_arrays_are_saved_from_the_host_and_load_as_numpy(tmp_path):
    c = np.arange(12.0, dtype=np.float32).reshape(3, 4)
    f = np.asfortranarray(c)
    path = tmp_path / "d.ckpt"
    O.save({"state": {0: {"exp_avg": _FakeDeviceArray(c), "f": _FakeDeviceArray(f)}}}, path)
    out = O.load(path)["state"][0]
    _same(c, out["exp_avg"])
    _same(f, out["f"])
    assert out["f"].flags.f_contiguous


def test_the_digests_are_as_documented_and_cover_every_block(tmp_path):
    """Header digest = SHA-256 of the header; data digest = SHA-256 of the SHA-256 of each
    8 MiB block (computed here independently); a flipped bit in any block is caught."""
    arrays = [np.full(1_500_000, i, dtype=np.float64) for i in range(2)]  # 24 MB: 3 blocks
    path = tmp_path / "c.ckpt"
    O.save(arrays, path)
    blob = path.read_bytes()
    _, hlen, dlen, hdig, ddig = PREAMBLE.unpack_from(blob)
    assert hdig == hashlib.sha256(blob[PREAMBLE.size : PREAMBLE.size + hlen]).digest()
    doc, data = _split(blob)
    assert len(data) == dlen > 2 * BLOCK and ddig == _data_digest(data)
    start = len(blob) - dlen
    for offset in (0, BLOCK - 1, BLOCK, 2 * BLOCK + 5, dlen - 1):
        bad = bytearray(blob)
        bad[start + offset] ^= 0x10
        with pytest.raises(ValueError, match="SHA-256 mismatch of the data"):
            _load_bytes(bytes(bad), tmp_path)
