"""Compare a learner's output with the expected one, like Karpathy's ``cmp()``.

Every comparison says whether the values are *exact*, *close* (within the
tolerance of the expected dtype) and how far apart they are at worst. Values
are compared as numbers, never as printed text.
"""

from dataclasses import dataclass

import mlx.core as mx
import numpy as np

__all__ = ["Comparison", "Mismatch", "compare", "describe", "tolerance", "matches"]

# Per-dtype tolerances, those of MLX's own test_fast_sdpa.py (atol = rtol).
_TOLERANCE = {
    mx.float32: 1e-5,
    mx.float16: 3e-4,
    mx.bfloat16: 5e-3,
}


def tolerance(dtype):
    """The ``(atol, rtol)`` used to call values of ``dtype`` close."""
    if dtype in _TOLERANCE:
        tol = _TOLERANCE[dtype]
        return tol, tol
    return 0.0, 0.0  # integers and booleans compare exactly


@dataclass
class Comparison:
    """How one output array compares with the expected one.

    Attributes:
        path (str): Which output, e.g. ``"output"`` or ``"output[1]"``.
        exact (bool): Every element is equal.
        close (bool): Every element is within the tolerance.
        max_abs_diff (float): The largest absolute difference (NaN = NaN).
        where (tuple): The index of the largest difference.
        first (tuple or None): The first index (in row-major order) outside the tolerance.
        first_got (float): The answer's value there.
        first_expected (float): The expected value there.
    """

    path: str
    exact: bool
    close: bool
    max_abs_diff: float
    where: tuple = ()
    first: tuple = None
    first_got: float = float("nan")
    first_expected: float = float("nan")

    def summary(self):
        verdict = "exact" if self.exact else ("close" if self.close else "DIFFERENT")
        text = f"{self.path}: {verdict}, max abs diff {self.max_abs_diff:.3g}"
        if not self.close and self.where:
            text += f" at index {self.where}"
        return text


@dataclass
class Mismatch:
    """A structural difference: wrong type, shape, dtype, or NaNs.

    Attributes:
        kind (str): ``"type"``, ``"shape"``, ``"dtype"``, ``"nan"`` or ``"values"``.
        message (str): A sentence for the learner.
    """

    kind: str
    message: str


def describe(x):
    """A short description: ``array (2, 3) float32``, ``tuple of 2``, ``int 7``."""
    try:
        return _describe(x)
    except Exception:  # noqa: BLE001 - a learner's object whose repr or len fails
        return f"an object of type {type(x).__name__}"


def _describe(x):
    if isinstance(x, mx.array):
        return f"array {tuple(x.shape)} {_dtype_name(x.dtype)}"
    if isinstance(x, np.ndarray):
        return f"numpy array {x.shape} {x.dtype}"
    if isinstance(x, (tuple, list)):
        return f"{type(x).__name__} of {len(x)}"
    if isinstance(x, dict):
        return f"dict with keys {sorted(map(str, x))}"
    return type(x).__name__ if x is None else f"{type(x).__name__} {x!r}"[:80]


def _dtype_name(dtype):
    return str(dtype).replace("mlx.core.", "")


def _to_numpy(x):
    if x.dtype == mx.bfloat16:
        x = x.astype(mx.float32)
    return np.array(x)


def _array_comparison(path, actual, expected):
    a, e = _to_numpy(actual), _to_numpy(expected)
    if a.dtype == np.bool_ or e.dtype == np.bool_:
        a, e = a.astype(np.int64), e.astype(np.int64)
    a64, e64 = a.astype(np.float64), e.astype(np.float64)
    both_nan = np.isnan(a64) & np.isnan(e64)
    same = (a64 == e64) | both_nan
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.where(same, 0.0, np.abs(a64 - e64))
    diff = np.where(np.isnan(diff), np.inf, diff)  # NaN vs number, inf vs -inf
    atol, rtol = tolerance(expected.dtype)
    finite_e = np.where(np.isfinite(e64), np.abs(e64), 0.0)
    close = bool(np.all(same | (diff <= atol + rtol * finite_e)))
    max_diff = float(diff.max()) if diff.size else 0.0
    where = tuple(int(i) for i in np.unravel_index(int(diff.argmax()), diff.shape)) if diff.size else ()
    comparison = Comparison(path, bool(same.all()), close, max_diff, where)
    if not close:
        outside = np.argwhere(~(same | (diff <= atol + rtol * finite_e)))
        if len(outside):
            first = tuple(int(i) for i in outside[0])
            comparison.first = first
            comparison.first_got, comparison.first_expected = float(a64[first]), float(e64[first])
    return comparison


def compare(actual, expected, *, path="output", check_dtype=True):
    """Compare ``actual`` with ``expected`` structurally, then by value.

    Args:
        actual: What the learner's code returned.
        expected: What the reference returned: an ``mx.array``, a number, or
            a tuple/list/dict of those.
        path (str, optional): A name for the output in messages.
        check_dtype (bool, optional): Whether a different dtype is a mismatch.

    Returns:
        tuple(list[Comparison], Mismatch or None): The per-array comparisons
        and the first mismatch found (``None`` when everything is close).
    """
    comparisons = []
    mismatch = _compare(actual, expected, path, check_dtype, comparisons)
    if mismatch is None:
        bad = [c for c in comparisons if not c.close]
        if bad:
            mismatch = Mismatch("values", "; ".join(c.summary() for c in bad))
    return comparisons, mismatch


def matches(actual, expected, check_dtype=True):
    """Whether ``actual`` equals ``expected`` within tolerance (NaN equals NaN)."""
    try:
        return compare(actual, expected, check_dtype=check_dtype)[1] is None
    except Exception:  # a broken variant never matches
        return False


def _compare(actual, expected, path, check_dtype, out):
    if isinstance(expected, mx.array):
        return _compare_array(actual, expected, path, check_dtype, out)
    if _is_shape(expected):
        return _compare_shape(actual, expected, path, out)
    if isinstance(expected, (tuple, list)):
        if not isinstance(actual, (tuple, list)):
            return Mismatch("type", f"{path} should be a {type(expected).__name__} of "
                                    f"{len(expected)}, got {describe(actual)}.")
        if len(actual) != len(expected):
            return Mismatch("type", f"{path} should have {len(expected)} items, got {len(actual)}.")
        for i, (a, e) in enumerate(zip(actual, expected)):
            found = _compare(a, e, f"{path}[{i}]", check_dtype, out)
            if found:
                return found
        return None
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return Mismatch("type", f"{path} should be a dict, got {describe(actual)}.")
        if set(actual) != set(expected):
            missing = sorted(set(map(str, expected)) - set(map(str, actual)))
            extra = sorted(set(map(str, actual)) - set(map(str, expected)))
            return Mismatch("type", f"{path} has the wrong keys (missing {missing}, unexpected {extra}).")
        for key in expected:
            found = _compare(actual[key], expected[key], f"{path}[{key!r}]", check_dtype, out)
            if found:
                return found
        return None
    if isinstance(expected, (bool, int, float)):
        value = actual
        if isinstance(actual, mx.array) and actual.size == 1:
            value = actual.item()
        if isinstance(value, (np.integer, np.floating)):
            value = value.item()
        if not isinstance(value, (bool, int, float)):
            return Mismatch("type", f"{path} should be a number, got {describe(actual)}.")
        diff = abs(float(value) - float(expected))
        exact = value == expected
        close = exact or (isinstance(expected, float) and diff <= 1e-6 + 1e-6 * abs(expected))
        out.append(Comparison(path, exact, close, diff))
        if not close:
            return Mismatch("values", f"{path} is {value!r} but should be {expected!r}.")
        return None
    if actual != expected:
        return Mismatch("values", f"{path} is {actual!r} but should be {expected!r}.")
    return None


def _compare_array(actual, expected, path, check_dtype, out):
    if isinstance(actual, np.ndarray):
        return Mismatch("type", f"{path} is a NumPy array; return an mx.array "
                                f"(wrap it in mx.array(...) or stay in mlx.core).")
    if not isinstance(actual, mx.array):
        return Mismatch("type", f"{path} should be an mx.array "
                                f"{tuple(expected.shape)}, got {describe(actual)}.")
    if actual.shape != expected.shape:
        return Mismatch("shape", f"{path}: expected shape {tuple(expected.shape)}, got {tuple(actual.shape)}.")
    if check_dtype and actual.dtype != expected.dtype:
        return Mismatch("dtype", f"{path} has dtype {_dtype_name(actual.dtype)} but should be "
                                 f"{_dtype_name(expected.dtype)}.")
    comparison = _array_comparison(path, actual, expected)
    out.append(comparison)
    if mx.issubdtype(actual.dtype, mx.inexact) and not comparison.close:
        a, e = _to_numpy(actual), _to_numpy(expected)
        new_nan = np.isnan(a) & ~np.isnan(e)
        if new_nan.any():
            first = tuple(int(i) for i in np.argwhere(new_nan)[0])
            return Mismatch("nan", f"{path} has {int(new_nan.sum())} NaN value(s) where the "
                                   f"reference has numbers (first at index {first}).")
    return None


def _is_shape(x):
    """A tuple of ints (not bools) is a shape and is compared as one."""
    return isinstance(x, tuple) and bool(x) and all(isinstance(n, int) and not isinstance(n, bool) for n in x)


def _compare_shape(actual, expected, path, out):
    if isinstance(actual, (tuple, list)):  # a list, or NumPy integers, are fine
        actual = tuple(int(n) if isinstance(n, np.integer) else n for n in actual)
    if not _is_shape(actual):
        return Mismatch("type", f"{path} should be a shape, a tuple of {len(expected)} ints such as "
                                f"{expected}, got {describe(actual)}.")
    if actual != expected:
        return Mismatch("shape", f"{path}: expected {expected}, got {actual}.")
    out.append(Comparison(path, True, True, 0.0))
    return None
