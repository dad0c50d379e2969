"""Outputs as plain data: what the sandbox writes and the grader reads back.

An answer's output (``mx.array``, NumPy arrays, tuples, lists, dicts, numbers,
strings, ``None``) becomes a JSON tree whose arrays are ``.npy`` files. The
grader reads them with ``numpy.load(..., allow_pickle=False)`` and plain
``json``: nothing the sandbox wrote can run code in the grader. ``bfloat16``
has no NumPy dtype: it travels as ``float32`` with a dtype tag (exact both
ways, every bfloat16 is a float32).
"""

import json
import math
import re
from pathlib import Path

import mlx.core as mx
import numpy as np

__all__ = ["encode", "decode", "Opaque", "MAX_ARRAYS", "MAX_BYTES", "dumps", "pickle_inputs", "dtype_named"]

# Taken at import, in the sandbox before any learner code runs: a cell that replaces
# numpy.save or json.dumps changes nothing that writes the records.
_np_save = np.save
_np_array = np.array
_encoder = json.JSONEncoder(allow_nan=False, default=str)

MAX_ARRAYS = 64  # per output
MAX_BYTES = 16 * 2**20  # per array file
_FILE = re.compile(r"^[A-Za-z0-9_.-]{1,80}\.npy$")
_MX_DTYPES = {str(d).replace("mlx.core.", ""): d for d in (
    mx.bool_, mx.uint8, mx.uint16, mx.uint32, mx.uint64, mx.int8, mx.int16, mx.int32, mx.int64,
    mx.float16, mx.bfloat16, mx.float32, getattr(mx, "float64", mx.float32), mx.complex64)}


class Opaque:
    """An output of a type that does not travel (a layer, a generator, ...): it never matches."""

    def __init__(self, type_name):
        self.type_name = str(type_name)[:80]

    def __repr__(self):
        return f"<{self.type_name} object>"

    def __eq__(self, other):
        return False

    __hash__ = object.__hash__


def encode(value, folder, prefix, _counter=None, _depth=0):
    """Write ``value``'s arrays into ``folder`` and return its JSON tree.

    Args:
        value: The output.
        folder (Path): Where the ``.npy`` files go.
        prefix (str): Their name prefix (letters, digits, ``_.-``).
    """
    counter = _counter if _counter is not None else [0]
    if _depth > 20:
        return {"t": "opaque", "type": "deep structure"}
    if isinstance(value, mx.array):
        dtype = str(value.dtype).replace("mlx.core.", "")
        data = _np_array(value.astype(mx.float32) if value.dtype == mx.bfloat16 else value)
        return {"t": "mx", "dtype": dtype, "file": _save(data, folder, prefix, counter)}
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            return {"t": "opaque", "type": "numpy object array"}
        return {"t": "np", "file": _save(value, folder, prefix, counter)}
    if value is None or isinstance(value, (bool, str)):
        return {"t": "v", "v": value if not isinstance(value, str) else value[:10000]}
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return {"t": "int", "v": str(int(value))}
    if isinstance(value, (float, np.floating)):
        return {"t": "float", "v": repr(float(value))}
    if isinstance(value, (tuple, list)) and type(value) in (tuple, list):
        return {"t": type(value).__name__, "items": [encode(v, folder, prefix, counter, _depth + 1)
                                                     for v in list(value)[:1000]]}
    if type(value) is dict:
        return {"t": "dict", "items": [[encode(k, folder, prefix, counter, _depth + 1),
                                        encode(v, folder, prefix, counter, _depth + 1)]
                                       for k, v in list(value.items())[:1000]]}
    return {"t": "opaque", "type": type(value).__name__}


def _save(array, folder, prefix, counter):
    counter[0] += 1
    if counter[0] > MAX_ARRAYS:
        raise ValueError("too many arrays in one output")
    name = f"{prefix}-{counter[0]}.npy"
    _np_save(Path(folder) / name, array if array.flags.c_contiguous else array.copy(order="C"), allow_pickle=False)
    return name


def decode(tree, folder, _depth=0):
    """Read back what :func:`encode` wrote, trusting nothing in it.

    Raises:
        ValueError: on anything malformed (a missing file, a bad name, too large).
    """
    if _depth > 20 or not isinstance(tree, dict):
        raise ValueError("malformed output")
    kind = tree.get("t")
    if kind in ("mx", "np"):
        name = tree.get("file")
        if not isinstance(name, str) or not _FILE.match(name):
            raise ValueError("bad array file name")
        path = Path(folder) / name
        if path.is_symlink() or not path.is_file() or path.stat().st_size > MAX_BYTES:
            raise ValueError("missing or oversized array file")
        array = np.load(path, allow_pickle=False)
        if kind == "np":
            return array
        dtype = _MX_DTYPES.get(tree.get("dtype"))
        if dtype is None:
            raise ValueError("unknown dtype")
        return mx.array(array).astype(dtype) if dtype == mx.bfloat16 else mx.array(array, dtype=dtype)
    if kind == "v":
        value = tree.get("v")
        if value is not None and not isinstance(value, (bool, str)):
            raise ValueError("bad value")
        return value
    if kind == "int":
        return int(str(tree.get("v"))[:400])
    if kind == "float":
        text = str(tree.get("v"))
        value = float(text) if text not in ("nan", "inf", "-inf") else float(text)
        return value if not math.isnan(value) else float("nan")
    if kind in ("tuple", "list"):
        items = tree.get("items")
        if not isinstance(items, list):
            raise ValueError("bad items")
        values = [decode(item, folder, _depth + 1) for item in items]
        return tuple(values) if kind == "tuple" else values
    if kind == "dict":
        items = tree.get("items")
        if not isinstance(items, list):
            raise ValueError("bad items")
        out = {}
        for pair in items:
            if not isinstance(pair, list) or len(pair) != 2:
                raise ValueError("bad dict item")
            key = decode(pair[0], folder, _depth + 1)
            if not isinstance(key, (str, int, float, bool, type(None), tuple)):
                raise ValueError("bad dict key")
            out[key] = decode(pair[1], folder, _depth + 1)
        return out
    if kind == "opaque":
        return Opaque(tree.get("type"))
    raise ValueError("unknown kind")


def dtype_named(name):
    """The ``mx.Dtype`` called ``name`` (how the grader's pickled inputs carry dtypes)."""
    return _MX_DTYPES[name]


def pickle_inputs(value):
    """Pickle a call's inputs (grader to sandbox only: the sandbox never sends pickles back)."""
    import copyreg
    import io
    import pickle

    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = copyreg.dispatch_table.copy()
    pickler.dispatch_table[mx.Dtype] = lambda d: (dtype_named, (str(d).replace("mlx.core.", ""),))
    pickler.dump(value)
    return buffer.getvalue()


def dumps(data):
    """JSON text for plain data (NaN written as a string)."""
    return _encoder.encode(data)
