"""A layer whose heads do recognisable things, for demos and the explorer's pictures.

A randomly initialised layer attends almost uniformly, which makes a dull
picture. :func:`demo_layer` sets the query and key projections by hand so that
each head has a job a learner can name: look at the previous token, at itself,
at the next token, at earlier copies of the same word, at the first token...
The inputs are a token embedding, a sinusoidal position code and a flag for
the first position; nothing is trained.
"""

import mlx.core as mx
import numpy as np

__all__ = ["demo_layer", "HEAD_ROLES"]

HEAD_ROLES = (
    "previous token",
    "itself",
    "next token",
    "same word",
    "first token",
    "two back",
    "broad (almost uniform)",
    "random",
)

DIMS, NUM_HEADS = 128, 8
HEAD_DIMS = DIMS // NUM_HEADS
TOKEN_DIMS, POSITION_DIMS = 56, 64  # then a first-token flag, a constant 1, zeros
FLAG, ONE = TOKEN_DIMS + POSITION_DIMS, TOKEN_DIMS + POSITION_DIMS + 1


def _inputs(tokens, rng):
    """``(1, L, DIMS)``: token embedding, position code, first-token flag, constant."""
    vocabulary = {word: i for i, word in enumerate(dict.fromkeys(tokens))}
    table = rng.standard_normal((len(vocabulary), TOKEN_DIMS))
    table /= np.linalg.norm(table, axis=1, keepdims=True)
    frequencies = np.sort(rng.uniform(0.35, np.pi - 0.35, POSITION_DIMS // 2))
    positions = np.arange(len(tokens))[:, None] * frequencies[None]  # (L, F)
    x = np.zeros((len(tokens), DIMS), dtype=np.float32)
    x[:, :TOKEN_DIMS] = table[[vocabulary[t] for t in tokens]]
    x[:, TOKEN_DIMS:FLAG:2] = np.cos(positions)
    x[:, TOKEN_DIMS + 1:FLAG:2] = np.sin(positions)
    x[0, FLAG] = 1.0
    x[:, ONE] = 1.0
    return x[None], frequencies  # (1, L, DIMS)


def _offset_head(frequencies, pairs, offset, sharpness):
    """Query/key rows so that the score peaks where ``key position = query position - offset``."""
    wq = np.zeros((HEAD_DIMS, DIMS))
    wk = np.zeros((HEAD_DIMS, DIMS))
    for row, pair in enumerate(pairs):
        c, s = TOKEN_DIMS + 2 * pair, TOKEN_DIMS + 2 * pair + 1
        angle = frequencies[pair] * offset
        # The query code, rotated back by `offset` positions: cos(w(i - offset)), sin(w(i - offset)).
        wq[2 * row, c], wq[2 * row, s] = np.cos(angle), np.sin(angle)
        wq[2 * row + 1, c], wq[2 * row + 1, s] = -np.sin(angle), np.cos(angle)
        wk[2 * row, c] = wk[2 * row + 1, s] = 1.0
    return wq * sharpness, wk


def demo_layer(tokens, seed=0):
    """A ``MultiHeadAttention(128, 8)`` with hand-set heads, and inputs for ``tokens``.

    Args:
        tokens (list[str]): The sentence; repeated words give the "same word"
            head something to find.
        seed (int): Seeds the embeddings and the remaining weights.

    Returns:
        tuple(MultiHeadAttention, array): The layer (roles of its heads in
        :data:`HEAD_ROLES`) and its inputs ``(1, len(tokens), 128)``.
    """
    from mhacourse import MultiHeadAttention

    if isinstance(tokens, str) or len(tokens) < 2:
        raise ValueError("tokens must be a list of at least 2 strings.")
    rng = np.random.default_rng(seed)
    x, frequencies = _inputs(list(tokens), rng)
    n_pairs = HEAD_DIMS // 2
    heads = []
    for offset in (1, 0, -1):
        pairs = rng.choice(len(frequencies), n_pairs, replace=False)
        heads.append(_offset_head(frequencies, pairs, offset, sharpness=1.6))
    projection = rng.standard_normal((HEAD_DIMS, TOKEN_DIMS)) / np.sqrt(HEAD_DIMS)
    wq = np.zeros((HEAD_DIMS, DIMS))
    wk = np.zeros((HEAD_DIMS, DIMS))
    wq[:, :TOKEN_DIMS] = projection * 14.0
    wk[:, :TOKEN_DIMS] = projection
    heads.append((wq, wk))  # same word
    wq = np.zeros((HEAD_DIMS, DIMS))
    wk = np.zeros((HEAD_DIMS, DIMS))
    wq[0, ONE], wk[0, FLAG] = 20.0, 1.0
    heads.append((wq, wk))  # first token
    pairs = rng.choice(len(frequencies), n_pairs, replace=False)
    heads.append(_offset_head(frequencies, pairs, 2, sharpness=1.6))  # two back
    heads.append((rng.standard_normal((HEAD_DIMS, DIMS)) * 0.05,
                  rng.standard_normal((HEAD_DIMS, DIMS)) * 0.05))  # broad
    heads.append((rng.standard_normal((HEAD_DIMS, DIMS)) * 0.4,
                  rng.standard_normal((HEAD_DIMS, DIMS)) * 0.4))  # random

    layer = MultiHeadAttention(DIMS, NUM_HEADS)
    layer.query_proj.weight = mx.array(np.concatenate([q for q, _ in heads]).astype(np.float32))
    layer.key_proj.weight = mx.array(np.concatenate([k for _, k in heads]).astype(np.float32))
    mx.random.seed(seed)
    layer.value_proj.weight = mx.random.normal(layer.value_proj.weight.shape) * DIMS ** -0.5
    layer.out_proj.weight = mx.random.normal(layer.out_proj.weight.shape) * DIMS ** -0.5
    return layer, mx.array(x)
