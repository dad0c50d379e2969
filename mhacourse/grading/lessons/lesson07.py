"""Lesson 07: positions (permutation equivariance, sinusoidal encodings, RoPE)."""

import math

import mlx.core as mx

from mhacourse import positions, scaled_dot_product_attention

from ..exercise import Exercise, Mistake
from ._common import case, rand

EXERCISES = []  # this lesson's exercises, declared whole, in notebook order; the registry collects them


def _random_permutation(rng, n):
    """A permutation of ``n`` items that is not its own inverse (so applying it twice is caught)."""
    while True:
        perm = rng.permutation(n)
        if (perm[perm] != range(n)).any():
            return [int(p) for p in perm]


# ---------------------------------------------------------------------------
# unshuffle(outputs, perm): undo a permutation of the token axis


def _unshuffle_case(name, seed, shape, perm):
    return case(name, lambda: rand(seed, *shape), lambda: mx.array(perm))


def _unshuffle_hidden(rng):
    cases = []
    for number in range(3):
        B, L, dims = int(rng.integers(1, 4)), int(rng.integers(6, 10)), int(rng.integers(2, 7))
        perm = _random_permutation(rng, L)
        cases.append(_unshuffle_case(f"hidden {number}", int(rng.integers(10**6)), (B, L, dims), perm))
    return cases


EXERCISES.append(Exercise(
    id="unshuffle",
    lesson="07",
    title="Undo a shuffle of the tokens",
    answer_name="unshuffle",
    signature="unshuffle(outputs, perm)",
    reference=positions.unshuffle,
    cases=[
        _unshuffle_case("batch 2, 5 tokens, dims 4", 700, (2, 5, 4), [3, 0, 4, 1, 2]),
        _unshuffle_case("batch 3, 4 tokens rotated by one, dims 6", 701, (3, 4, 6), [1, 2, 3, 0]),
        _unshuffle_case("batch 1, 7 tokens, (B, L, H, D_h) = (1, 7, 3, 2)", 702, (1, 7, 3, 2),
                        [6, 2, 5, 0, 3, 1, 4]),
    ],
    hidden_cases=_unshuffle_hidden,
    mistakes=[
        Mistake("shuffled_again",
                "outputs[:, perm] shuffles the rows a second time. Row j of the outputs belongs to "
                "token perm[j], so you need the inverse permutation: outputs[:, mx.argsort(perm)].",
                lambda outputs, perm: outputs[:, perm]),
        Mistake("sorted_values",
                "Sort the *positions*, not the values: the inverse of perm is mx.argsort(perm), and "
                "the rows move as a whole (outputs[:, mx.argsort(perm)]).",
                lambda outputs, perm: mx.sort(outputs, axis=1)),
    ],
))

# ---------------------------------------------------------------------------
# sinusoidal_encoding(num_positions, dims)


def _sinusoidal_bug(bug):
    def wrong(num_positions, dims):
        exponent = mx.arange(0, dims, 2, dtype=mx.float32) / dims  # 2i / dims
        if bug == "exponent_not_doubled":
            exponent = exponent / 2
        frequency = mx.power(10000.0, exponent if bug == "positive_exponent" else -exponent)
        start = 1 if bug == "positions_from_one" else 0
        angles = mx.arange(start, start + num_positions, dtype=mx.float32)[:, None] * frequency  # (L, dims/2)
        sin, cos = mx.sin(angles), mx.cos(angles)
        if bug == "halves":
            return mx.concatenate([sin, cos], axis=-1)  # (L, dims)
        pair = [cos, sin] if bug == "cos_first" else [sin, cos]
        return mx.stack(pair, axis=-1).reshape(num_positions, dims)  # (L, dims)

    return wrong


def _sinusoidal_hidden(rng):
    return [case(f"hidden {n}", int(rng.integers(11, 40)), 2 * int(rng.integers(1, 17))) for n in range(3)]


EXERCISES.append(Exercise(
    id="sinusoidal_encoding",
    lesson="07",
    title="The sinusoidal position table",
    answer_name="sinusoidal_encoding",
    signature="sinusoidal_encoding(num_positions, dims)",
    reference=positions.sinusoidal_encoding,
    cases=[
        case("6 positions, dims 4", 6, 4),
        case("10 positions, dims 8", 10, 8),
        case("3 positions, dims 2 (one frequency)", 3, 2),
        case("50 positions, dims 16", 50, 16),
    ],
    hidden_cases=_sinusoidal_hidden,
    mistakes=[
        Mistake("halves",
                "Interleave the columns: sin in the even columns 0, 2, 4, ... and cos in the odd "
                "ones. You put all the sines first and the cosines after them (that is "
                "nn.SinusoidalPositionalEncoding's layout, not the paper's).",
                _sinusoidal_bug("halves")),
        Mistake("cos_first", "Column 2i holds the sine and column 2i + 1 the cosine; you swapped them.",
                _sinusoidal_bug("cos_first")),
        Mistake("exponent_not_doubled",
                "Pair i uses the frequency 10000 ** (-2i / dims): i runs over the pairs, so the exponent "
                "is (0, 2, 4, ...) / dims, mx.arange(0, dims, 2) / dims.",
                _sinusoidal_bug("exponent_not_doubled")),
        Mistake("positive_exponent",
                "The frequencies must *fall* from 1 towards 1/10000: 10000 ** (-2i / dims), with the minus.",
                _sinusoidal_bug("positive_exponent")),
        Mistake("positions_from_one", "Positions start at 0: row 0 is sin(0) = 0, cos(0) = 1.",
                _sinusoidal_bug("positions_from_one")),
    ],
))

# ---------------------------------------------------------------------------
# rope(x, offset): rotary embedding, MLX's default (half-split) layout


def _rope_bug(bug):
    def wrong(x, offset):
        L, head_dims = x.shape[-2:]
        exponent = mx.arange(0, head_dims, 2, dtype=mx.float32) / head_dims
        if bug == "exponent_not_doubled":
            exponent = exponent / 2
        start = 0 if bug == "offset_ignored" else offset
        angles = (start + mx.arange(L, dtype=mx.float32))[:, None] * mx.power(10000.0, -exponent)  # (L, D_h/2)
        if bug == "reversed":
            angles = -angles
        if bug == "traditional":
            return positions.rope(x, offset, traditional=True)
        cos, sin = mx.cos(angles), mx.sin(angles)
        first, second = x[..., : head_dims // 2], x[..., head_dims // 2:]  # (..., L, D_h/2)
        return mx.concatenate([first * cos - second * sin, first * sin + second * cos], axis=-1)

    return wrong


def _rope_case(name, seed, shape, offset):
    return case(name, lambda: rand(seed, *shape), offset)


def _rope_hidden(rng):
    cases = []
    for number in range(3):
        shape = (
            int(rng.integers(1, 3)),
            int(rng.integers(1, 4)),
            int(rng.integers(7, 12)),
            2 * int(rng.integers(1, 9)),
        )
        cases.append(_rope_case(f"hidden {number}", int(rng.integers(10**6)), shape, int(rng.integers(0, 30))))
    return cases


EXERCISES.append(Exercise(
    id="rope",
    lesson="07",
    title="Rotary position embedding (RoPE) by hand",
    answer_name="rope",
    signature="rope(x, offset)",
    reference=positions.rope,
    cases=[
        _rope_case("(B, H, L, D_h) = (1, 1, 6, 4), offset 0", 710, (1, 1, 6, 4), 0),
        _rope_case("(B, H, L, D_h) = (2, 3, 5, 8), offset 3", 711, (2, 3, 5, 8), 3),
        _rope_case("(B, H, L, D_h) = (1, 2, 4, 16), offset 20", 712, (1, 2, 4, 16), 20),
    ],
    hidden_cases=_rope_hidden,
    forbidden=("mx.fast.rope", "nn.RoPE"),
    mistakes=[
        Mistake("traditional",
                "mlx.nn.RoPE's default pairs feature i with feature i + D_h / 2 (the two halves); you "
                "rotated neighbouring features (2i, 2i + 1), which is RoPE(..., traditional=True).",
                _rope_bug("traditional")),
        Mistake("reversed",
                "You rotate the wrong way: (a, b) -> (a·cos - b·sin, a·sin + b·cos), with the minus on "
                "the first half.", _rope_bug("reversed")),
        Mistake("offset_ignored",
                "Row l of x sits at position offset + l: add offset to the positions before "
                "multiplying by the frequencies.", _rope_bug("offset_ignored")),
        Mistake("exponent_not_doubled",
                "Pair i turns with the frequency 10000 ** (-2i / D_h): the exponent is "
                "mx.arange(0, D_h, 2) / D_h.", _rope_bug("exponent_not_doubled")),
    ],
))

# ---------------------------------------------------------------------------
# rope_attention(queries, keys, values): RoPE on queries and keys, the queries last


def _rope_attention_bug(bug):
    def wrong(queries, keys, values):
        L_q, L_k = queries.shape[-2], keys.shape[-2]
        offset = 0 if bug == "query_offset_zero" else L_k - L_q
        q = queries if bug == "no_rope" else positions.rope(queries, offset)
        k = keys if bug in ("no_rope", "queries_only") else positions.rope(keys)
        v = positions.rope(values) if bug == "values_rotated" else values
        return scaled_dot_product_attention(q, k, v, scale=1 / math.sqrt(queries.shape[-1]))

    return wrong


def _qkv(seed, B, H, L_q, L_k, head_dims, value_dims):
    return (lambda: rand(seed, B, H, L_q, head_dims), lambda: rand(seed + 1, B, H, L_k, head_dims),
            lambda: rand(seed + 2, B, H, L_k, value_dims))


def _rope_attention_hidden(rng):
    cases = []
    for number in range(3):
        L_k = int(rng.integers(3, 10))
        sizes = (int(rng.integers(1, 3)), int(rng.integers(1, 4)), int(rng.integers(1, L_k + 1)), L_k,
                 int(rng.choice([2, 10, 12])), 2 * int(rng.integers(1, 6)))  # D_h: not a visible one
        cases.append(case(f"hidden {number}", *_qkv(int(rng.integers(10**6)), *sizes)))
    return cases


EXERCISES.append(Exercise(
    id="rope_attention",
    lesson="07",
    title="Attention with RoPE, queries after a cache",
    answer_name="rope_attention",
    signature="rope_attention(queries, keys, values)",
    reference=positions.rope_attention,
    cases=[
        case("batch 1, 1 head, 5 queries, 5 keys, D_h 4", *_qkv(720, 1, 1, 5, 5, 4, 4)),
        case("batch 2, 3 heads, 2 queries after 4 cached keys (L_k 6), D_h 8", *_qkv(723, 2, 3, 2, 6, 8, 8)),
        case("batch 1, 2 heads, 1 query, 7 keys, D_h 6, D_v 4", *_qkv(726, 1, 2, 1, 7, 6, 4)),
    ],
    hidden_cases=_rope_attention_hidden,
    mistakes=[
        Mistake("query_offset_zero",
                "The queries are the *last* L_q tokens: query row i sits at position L_k - L_q + i. "
                "Rotate them with offset = L_k - L_q (the keys start at 0).",
                _rope_attention_bug("query_offset_zero")),
        Mistake("values_rotated",
                "RoPE rotates only the queries and the keys (it changes the scores); the values pass "
                "through unrotated.", _rope_attention_bug("values_rotated")),
        Mistake("queries_only",
                "Rotate the keys too: a score depends on the offset between two positions only when "
                "both the query and the key are rotated by their own position.",
                _rope_attention_bug("queries_only")),
        Mistake("no_rope", "Apply RoPE to the queries and the keys before computing the scores.",
                _rope_attention_bug("no_rope")),
    ],
))
