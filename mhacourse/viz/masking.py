"""One rule for turning any mask into NumPy, shared by the explorer, the stepper and the plots.

A mask reaches the viz code as ``None``, ``"causal"``, an ``mx.array`` or a
NumPy array, boolean (True = attend) or additive (added to the scores). The
rule is the one of :func:`mhacourse.masks.to_boolean`: an additive entry at or
below :data:`BLOCKED` (``-inf``, ``finfo.min``, ``-1e9``...) blocks its key,
because ``exp`` of anything that negative is 0 in float32; ``0`` lets it
through; any other value is a bias and is kept as a number.
"""

import mlx.core as mx
import numpy as np

__all__ = ["BLOCKED", "mask_to_numpy", "keep_of"]

BLOCKED = -1e4  # additive values at or below this block a key


def mask_to_numpy(mask, n_queries=None, n_keys=None, *, first_example=False, as_boolean=True):
    """A mask as NumPy: booleans (True = attend) where it only blocks, else additive float32.

    Args:
        mask (str or array): ``"causal"`` (aligned to the lower right, as in
            MLX), a boolean mask, or an additive one.
        n_queries (int, optional): Needed for ``"causal"``.
        n_keys (int, optional): For ``"causal"``. Default: ``n_queries``.
        first_example (bool): Drop leading axes until at most 3 are left
            (batch 0 of a ``(B, H, L_q, L_k)`` mask: ``(H or 1, L_q or 1, L_k)``).
        as_boolean (bool): Turn an additive mask of only 0 and blocked entries
            into booleans. ``False`` keeps it additive (an all ``-inf`` row
            then stays NaN, as in MLX).

    Returns:
        np.ndarray: Booleans when the mask is boolean or (with ``as_boolean``)
        every entry is 0 or blocked; else the additive values as float32.
    """
    if isinstance(mask, str):
        if mask != "causal":
            raise ValueError(f"mask must be 'causal', a boolean or an additive array; got {mask!r}.")
        if n_queries is None:
            raise ValueError("the 'causal' mask needs n_queries (and n_keys) to be known.")
        from mhacourse.masks import causal

        return np.array(causal(n_queries, n_queries if n_keys is None else n_keys))
    if isinstance(mask, mx.array):
        array = np.array(mask) if mask.dtype == mx.bool_ else np.array(mask.astype(mx.float32))
    else:
        array = np.asarray(mask)
        if array.dtype != np.bool_:
            array = array.astype(np.float32)
    if first_example:
        while array.ndim > 3:
            array = array[0]
    if as_boolean and array.dtype != np.bool_:
        blocked = array <= BLOCKED
        if np.all(blocked | (array == 0)):
            return ~blocked
    return array


def keep_of(mask, n_queries, n_keys, *, first_example=True):
    """``(…, L_q, L_k)`` booleans, True where a key may be attended (a bias attends everywhere).

    ``None`` gives ``None``. Leading axes are those of the mask (batch 0 when
    ``first_example``), broadcast to ``(L_q, L_k)`` in the last two.
    """
    if mask is None:
        return None
    array = mask_to_numpy(mask, n_queries, n_keys, first_example=first_example)
    keep = array if array.dtype == np.bool_ else array > BLOCKED
    return np.broadcast_to(keep, keep.shape[:-2] + (n_queries, n_keys)) if keep.ndim >= 2 else \
        np.broadcast_to(keep, (n_queries, n_keys))
