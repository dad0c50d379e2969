"""Attention weights as compact integer codes for the browser.

The explorer's colour scale is a square-root ramp (0 to 1), so a weight is
sent as ``round(sqrt(w) · top)``: ``top = 65535`` in 16 bits (the weight comes
back within 2e-5) or ``top = 255`` in 8 bits (within 0.004, and still exactly
one of the colour map's 256 colours). The browser decodes ``(code / top)²``.

:func:`softmax_sqrt_codes` goes from scores to codes without forming the
weights: ``sqrt(softmax(z)) = exp(z / 2) / sqrt(Σ exp(z))``, so the division
and the square root fold into one multiplication per row. On a 2-core CPU it
turns 12 heads × 512 × 512 scores into codes in about 30 ms.
"""

import numpy as np

__all__ = ["LEVELS", "bits_for", "sqrt_codes", "decode", "centred_scores", "softmax_sqrt_codes", "MAX_16_BIT"]

LEVELS = {8: 255, 16: 65535}
DTYPES = {8: np.uint8, 16: np.uint16}
MAX_16_BIT = 32 * 1024 * 1024  # weights; above this many, 8-bit codes halve what is sent


def bits_for(n_weights):
    """16-bit codes up to :data:`MAX_16_BIT` weights (64 MB), 8-bit above."""
    return 16 if n_weights <= MAX_16_BIT else 8


def sqrt_codes(weights, bits=16):
    """Weights in ``[0, 1]`` -> ``round(sqrt(w) · top)`` as unsigned integers (NaN -> 0)."""
    weights = np.ascontiguousarray(weights, dtype=np.float32)
    codes = np.empty(weights.shape, DTYPES[bits])
    flat_w, flat_c = weights.reshape(-1, weights.shape[-1]), codes.reshape(-1, weights.shape[-1])

    def job(rows):
        roots = np.nan_to_num(flat_w[rows], nan=0.0)
        np.clip(roots, 0.0, 1.0, out=roots)
        np.sqrt(roots, out=roots)
        roots *= np.float32(LEVELS[bits])
        roots += np.float32(0.5)
        flat_c[rows] = roots  # truncates: with the 0.5 above, rounds

    _run_rows(job, flat_w.shape[0])
    return codes


def decode(codes, bits=16):
    """Codes -> weights ``(code / top)²`` as float32."""
    return np.square(np.asarray(codes, dtype=np.float32) / LEVELS[bits])


def centred_scores(scores, keep=None, out=None):
    """Scores with blocked keys at the most negative float32, minus each row's maximum.

    ``softmax(scale · centred)`` equals ``softmax(scale · scores)`` over the
    kept keys for any ``scale > 0``: a scale change then skips the mask and
    the row maxima (see ``centred`` in :func:`softmax_sqrt_codes`).
    """
    low = np.float32(np.finfo(np.float32).min)
    centred = np.empty(scores.shape, np.float32) if out is None else out
    width = scores.shape[-1]
    flat_s, flat_z = scores.reshape(-1, width), centred.reshape(-1, width)
    flat_k = None if keep is None else np.broadcast_to(keep, scores.shape).reshape(-1, width)

    def job(rows):
        z = flat_z[rows]
        z[...] = flat_s[rows]
        if flat_k is not None:
            np.copyto(z, low, where=~flat_k[rows])
        with np.errstate(over="ignore"):
            z -= z.max(axis=-1, keepdims=True)  # blocked keys may reach -inf: weight 0 either way

    _run_rows(job, flat_s.shape[0])
    return centred


def softmax_sqrt_codes(scores, scale, keep=None, additive=None, bits=16, work=None, centred=False):
    """Codes of ``softmax(scores · scale + mask)`` over the last axis.

    Args:
        scores (np.ndarray): float32 ``(..., L_q, L_k)``, before scaling.
        scale (float): Multiplies the scores.
        keep (np.ndarray, optional): Booleans broadcastable to ``scores``
            (True = attend); blocked scores become the most negative float32,
            so a row with no allowed key is uniform, as in MLX's kernel.
        additive (np.ndarray, optional): Added after scaling.
        bits (int): 16 or 8.
        work (np.ndarray, optional): A float32 buffer shaped like ``scores``
            to compute in (saves an allocation per call).
        centred (bool): ``scores`` come from :func:`centred_scores` (mask
            applied, row maxima 0) and ``scale > 0``: two passes fewer.

    Returns:
        np.ndarray: Codes shaped like ``scores``; a row that is all ``-inf``
        (an additive mask blocking every key) is all zeros.
    """
    work = np.empty(scores.shape, np.float32) if work is None else work
    codes = np.empty(scores.shape, DTYPES[bits])
    keep = None if keep is None else np.broadcast_to(keep, scores.shape)
    additive = None if additive is None else np.broadcast_to(additive, scores.shape)
    rows = scores.reshape(-1, scores.shape[-1]).shape[0]
    flat = [a.reshape(-1, scores.shape[-1]) if a is not None else None
            for a in (scores, work, codes, keep, additive)]
    _run_rows(lambda rows: _codes_rows(*(a[rows] if a is not None else None for a in flat), scale, bits,
                                       centred), rows)
    return codes


def _run_rows(job, rows):
    """``job(slice)`` over ``rows`` rows in chunks; NumPy releases the GIL, so two threads use both cores."""
    chunks = [slice(start, min(rows, start + CHUNK_ROWS)) for start in range(0, rows, CHUNK_ROWS)]
    if len(chunks) == 1:
        job(chunks[0])
    else:
        list(_pool().map(job, chunks))


CHUNK_ROWS = 2048  # rows of scores per task: big enough to amortise, small enough to balance


def _pool():
    global _POOL
    if _POOL is None:
        from concurrent.futures import ThreadPoolExecutor

        _POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="mhacourse-codes")
    return _POOL


_POOL = None


def _codes_rows(scores, z, codes, keep, additive, scale, bits, centred):
    """:func:`softmax_sqrt_codes` on ``(rows, L_k)``, writing ``codes``; ``z`` is scratch."""
    if centred:
        np.multiply(scores, np.float32(0.5 * scale), out=z)
    else:
        np.multiply(scores, np.float32(scale), out=z)
        if additive is not None:
            z += additive
        if keep is not None:
            np.copyto(z, np.finfo(np.float32).min, where=~keep)
        top = z.max(axis=-1, keepdims=True)
        top[~np.isfinite(top)] = 0.0
        z -= top
        z *= np.float32(0.5)
    np.exp(z, out=z)  # sqrt of the unnormalised weights
    norms = np.sqrt(np.einsum("rk,rk->r", z, z))[:, None]  # sqrt of each row's sum
    with np.errstate(divide="ignore", invalid="ignore"):
        z *= np.where(norms > 0, np.float32(LEVELS[bits]) / norms, np.float32(0.0))
    z += np.float32(0.5)
    codes[...] = z  # truncates: with the 0.5 above, rounds
