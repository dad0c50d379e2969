"""Positions for attention: sinusoidal encodings and rotary embeddings (RoPE).

Attention compares queries with keys by content alone: without help it cannot
tell the first token from the last (lesson 07 asserts it). There are two
common ways to tell it where each token is:

- add a position vector to each token's embedding before the first layer,
  for example the fixed sinusoidal table of *Attention Is All You Need*
  (:func:`sinusoidal_encoding`);
- rotate the queries and keys of every attention layer by an angle that grows
  with their position (RoPE, :func:`rope`), so that the score of a query and a
  key depends on how far apart they are, not on where they are.

Both are written out here in a few array operations; :func:`rope` equals
``mlx.nn.RoPE`` (which calls ``mx.fast.rope``).

Example::

    import mlx.core as mx
    from mhacourse import positions

    table = positions.sinusoidal_encoding(16, 8)           # (16, 8)
    q = mx.random.normal((1, 2, 16, 8))                    # (B, H, L, D_h)
    q_rotated = positions.rope(q)                          # same shape
"""

from __future__ import annotations

__lesson__ = "07"  # the lesson that teaches this module: the grader binds it only for later lessons

import mlx.core as mx

from .attention.scaled_dot_product import head_scale, scaled_dot_product_attention
from .attention.validation import check_size

__all__ = ["frequencies", "sinusoidal_encoding", "rope", "rope_attention", "unshuffle"]


def _check_even(name, value):
    check_size(name, value)
    if value % 2:
        raise ValueError(f"{name} must be even (features come in sin/cos pairs), got {value}.")


def frequencies(dims: int, base: float = 10000.0) -> mx.array:
    """The angular frequency of each feature pair: ``base ** (-2i / dims)``.

    Args:
        dims (int): The number of features; even.
        base (float, optional): The wavelength scale. Default: ``10000``.

    Returns:
        array: ``(dims // 2,)`` float32 frequencies, from ``1`` down to
        ``base ** (-(dims - 2) / dims)``.
    """
    _check_even("dims", dims)
    return mx.power(base, -mx.arange(0, dims, 2, dtype=mx.float32) / dims)  # (dims / 2,)


def sinusoidal_encoding(num_positions: int, dims: int, base: float = 10000.0) -> mx.array:
    """The sinusoidal position table of *Attention Is All You Need*.

    Row ``p`` holds ``sin(p·w_i)`` in column ``2i`` and ``cos(p·w_i)`` in
    column ``2i + 1``, with ``w_i = base ** (-2i / dims)``.

    (``mlx.nn.SinusoidalPositionalEncoding`` builds a related table with the
    sines in the first half of the columns and the cosines in the second, its
    own frequencies and a scale of ``sqrt(2 / dims)``.)

    Args:
        num_positions (int): Rows, one per position ``0 .. num_positions - 1``.
        dims (int): Columns; even.
        base (float, optional): The wavelength scale. Default: ``10000``.

    Returns:
        array: ``(num_positions, dims)`` float32.
    """
    check_size("num_positions", num_positions)
    angles = mx.arange(num_positions, dtype=mx.float32)[:, None] * frequencies(dims, base)  # (L, dims / 2)
    table = mx.stack([mx.sin(angles), mx.cos(angles)], axis=-1)  # (L, dims / 2, 2)
    return table.reshape(num_positions, dims)  # (L, dims): sin, cos, sin, cos, ...


def rope(x: mx.array, offset: int = 0, *, base: float = 10000.0, traditional: bool = False) -> mx.array:
    """Rotary position embedding of ``x``, as ``mlx.nn.RoPE(x.shape[-1])(x, offset)``.

    The feature pairs of the token at position ``p`` (``offset`` plus its
    index along axis ``-2``) are rotated by the angles ``p·w_i`` with
    ``w_i = base ** (-2i / D_h)``. By default pair ``i`` is features
    ``(i, i + D_h / 2)``; with ``traditional=True`` it is ``(2i, 2i + 1)``.

    Args:
        x (array): ``(..., L, D_h)`` queries or keys, ``D_h`` even.
        offset (int, optional): The position of the first row. Default: ``0``.
        base (float, optional): The wavelength scale. Default: ``10000``.
        traditional (bool, optional): Rotate neighbouring features instead
            of the two halves. Default: ``False``.

    Returns:
        array: ``x`` rotated, same shape and dtype.
    """
    if x.ndim < 2:
        raise ValueError(f"x must have shape (..., L, D_h); got {tuple(x.shape)}.")
    L, head_dims = x.shape[-2:]
    _check_even("x.shape[-1] (D_h)", head_dims)
    angles = (offset + mx.arange(L, dtype=mx.float32))[:, None] * frequencies(head_dims, base)  # (L, D_h / 2)
    cos, sin = mx.cos(angles), mx.sin(angles)
    if traditional:
        pairs = x.reshape(*x.shape[:-1], head_dims // 2, 2)  # (..., L, D_h / 2, 2)
        first, second = pairs[..., 0], pairs[..., 1]
    else:
        first, second = x[..., : head_dims // 2], x[..., head_dims // 2 :]  # (..., L, D_h / 2) each
    rotated = (first * cos - second * sin, first * sin + second * cos)
    if traditional:
        out = mx.stack(rotated, axis=-1).reshape(x.shape)  # (..., L, D_h)
    else:
        out = mx.concatenate(rotated, axis=-1)  # (..., L, D_h)
    return out.astype(x.dtype)


def rope_attention(queries: mx.array, keys: mx.array, values: mx.array, *, base: float = 10000.0) -> mx.array:
    """Attention whose queries and keys are rotated by RoPE; the values are not.

    The keys sit at positions ``0 .. L_k - 1`` and the queries are the last
    ``L_q`` of them (``L_k - L_q .. L_k - 1``), as when a decoder with a cache
    of ``L_k - L_q`` earlier tokens reads ``L_q`` new ones.

    Args:
        queries (array): ``(B, H, L_q, D_h)``.
        keys (array): ``(B, H, L_k, D_h)`` with ``L_k >= L_q``.
        values (array): ``(B, H, L_k, D_v)``.
        base (float, optional): RoPE's wavelength scale. Default: ``10000``.

    Returns:
        array: ``(B, H, L_q, D_v)``.
    """
    L_q, L_k = queries.shape[-2], keys.shape[-2]
    if L_k < L_q:
        raise ValueError(f"keys must cover the queries' positions: L_k ({L_k}) < L_q ({L_q}).")
    queries = rope(queries, offset=L_k - L_q, base=base)  # (B, H, L_q, D_h)
    keys = rope(keys, base=base)  # (B, H, L_k, D_h)
    return scaled_dot_product_attention(queries, keys, values, scale=head_scale(queries))  # (B, H, L_q, D_v)


def unshuffle(outputs: mx.array, perm: mx.array) -> mx.array:
    """Put rows computed on shuffled tokens back into the original order.

    If ``outputs = f(x[:, perm])`` for a permutation-equivariant ``f`` (such
    as attention without positions or mask), ``unshuffle(outputs, perm)``
    equals ``f(x)``.

    Args:
        outputs (array): ``(B, L, ...)`` rows in the shuffled order.
        perm (array): ``(L,)`` the permutation the tokens were shuffled with.

    Returns:
        array: ``outputs`` with row ``perm[j]`` moved back to position ``perm[j]``.
    """
    if perm.ndim != 1 or perm.shape[0] != outputs.shape[1]:
        raise ValueError(f"perm must have shape ({outputs.shape[1]},) to reorder axis 1 of outputs "
                         f"{tuple(outputs.shape)}; got {tuple(perm.shape)}.")
    return outputs[:, mx.argsort(perm)]  # (B, L, ...)
