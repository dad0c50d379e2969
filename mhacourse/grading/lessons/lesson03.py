"""Lesson 03: masks."""

import math

import mlx.core as mx

import mhacourse
from mhacourse import masks

from .. import properties as props
from ..exercise import Exercise, Mistake
from . import _hidden
from ._common import (
    HINTS,
    additive_mask,
    attention_bug,
    blocked_pattern,
    case,
    predicted_wrong,
    rand,
    upper_left_causal,
)

EXERCISES = []  # this lesson's exercises, declared whole, in notebook order; the registry collects them

# ---------------------------------------------------------------------------
# causal_mask(n, dtype): additive, like create_additive_causal_mask


def _blocked(n, strict=True):
    i = mx.arange(n)
    return i[None] > i[:, None] if strict else i[None] >= i[:, None]  # (n, n)


def _fill(blocked, value, dtype):
    return mx.where(blocked, mx.array(value, dtype), mx.array(0, dtype))


_NEG_INF_HINT = ("Use mx.finfo(dtype).min, not -inf, as create_additive_causal_mask does: a row "
                 "whose keys are all -inf makes the softmax compute 0/0 = NaN.")


def _hidden_masked_attention(rng):
    """Every mask kind: additive (from :func:`_hidden.attention_calls`), boolean, ``"causal"`` and key padding."""
    B, H, L_q, L_k, D, D_v = _hidden.sizes(rng)
    q, k, v = _hidden.normal(rng, B, H, L_q, D), _hidden.normal(rng, B, H, L_k, D), _hidden.normal(rng, B, H, L_k, D_v)
    keep = mx.array(rng.random((L_q, L_k)) > 0.4) | upper_left_causal(L_q, L_k)
    lengths = rng.integers(1, L_k + 1, size=B).tolist()
    none_for_one_row = mx.where(mx.arange(L_q)[:, None] == int(rng.integers(L_q)), False, keep)  # (L_q, L_k)
    return _hidden.attention_calls(rng) + [_hidden.fixed_case((q, k, v), {"scale": 0.5, "mask": keep}),
                              _hidden.fixed_case((q, k, v), {"scale": 0.5, "mask": none_for_one_row}),
                              _hidden.fixed_case((q, k, v), {"scale": 0.5, "mask": "causal"}),
                              _hidden.fixed_case((q, k, v), {"scale": 0.5, "mask": masks.padding_mask(lengths, L_k)})]



def _hidden_causal_mask(rng):
    return [
        _hidden.fixed_case((int(rng.integers(9, 14)), mx.float16)),
        _hidden.fixed_case((int(rng.integers(9, 14)), mx.float32)),
    ]


def _hidden_causal_boolean_mask(rng):
    n = int(rng.integers(9, 12))
    return [_hidden.fixed_case((n, n + int(rng.integers(1, 4)))), _hidden.fixed_case((n + 2, n + 2))]



def _hidden_boolean_to_additive(rng):
    B, _, L_q, L_k, _, _ = _hidden.sizes(rng)
    pattern = mx.array(rng.random((L_q, L_k)) > 0.4) | upper_left_causal(L_q, L_k)
    lengths = rng.integers(1, L_k + 1, size=B).tolist()
    return [
        _hidden.fixed_case((pattern, mx.float32)),
        _hidden.fixed_case((masks.padding_mask(lengths, L_k), mx.bfloat16)),
        _hidden.fixed_case((masks.causal(L_q), mx.float16)),
    ]



def _hidden_padding_mask(rng):
    B, _, _, L_k, _, _ = _hidden.sizes(rng)
    lengths = rng.integers(1, L_k + 1, size=B).tolist()
    return [case("hidden", lambda: list(lengths), L_k),
            case("hidden", lambda: [L_k] + lengths[1:], L_k + 1)]



def _hidden_mask_shapes(rng):
    B, H, L_q, L_k, _, _ = _hidden.sizes(rng)
    return [_hidden.fixed_case((B, H, L_q, L_k)), _hidden.fixed_case((B, H + 2, L_k, L_k))]


EXERCISES.append(Exercise(
    id="causal_mask",
    hidden_cases=_hidden_causal_mask,
    lesson="03",
    title="The additive causal mask",
    answer_name="causal_mask",
    signature="causal_mask(n, dtype)",
    reference=masks.causal_mask,
    cases=[
        case("n = 4, float32", 4, mx.float32),
        case("n = 1, float32", 1, mx.float32),
        case("n = 5, float16", 5, mx.float16),
        case("n = 3, bfloat16", 3, mx.bfloat16),
    ],
    mistakes=[
        Mistake("causal_neg_inf", _NEG_INF_HINT, lambda n, dtype: _fill(_blocked(n), -mx.inf, dtype)),
        Mistake("float16_overflow",
                "mx.finfo(mx.float32).min is about -3.4e38: cast to float16 it overflows to -inf. "
                "Use mx.finfo(dtype).min of the dtype you were given.",
                lambda n, dtype: _fill(_blocked(n), mx.finfo(mx.float32).min, mx.float32).astype(dtype)),
        Mistake("causal_large_negative",
                "Use mx.finfo(dtype).min, the most negative number of the dtype, as MLX does; a "
                "constant like -1e9 is not representable in float16 (it becomes -inf).",
                lambda n, dtype: _fill(_blocked(n), -1e9, mx.float32).astype(dtype)),
        Mistake("causal_ignores_dtype", "Build the mask in the dtype you were given (dtype=...).",
                lambda n, dtype: _fill(_blocked(n), mx.finfo(mx.float32).min, mx.float32)),
        Mistake("causal_diagonal",
                "A query may attend to itself: block only the keys strictly above the diagonal "
                "(j > i), not the diagonal too.",
                lambda n, dtype: _fill(_blocked(n, strict=False), mx.finfo(dtype).min, dtype)),
        Mistake("causal_transposed",
                "Block the *future* keys, above the diagonal (key j > query i); you blocked the past.",
                lambda n, dtype: _fill(_blocked(n).T, mx.finfo(dtype).min, dtype)),
        Mistake("causal_boolean",
                "causal_mask returns an *additive* mask (0 where allowed, finfo(dtype).min where "
                "blocked), not booleans.",
                lambda n, dtype: ~_blocked(n)),
    ],
))

# ---------------------------------------------------------------------------
# boolean_to_additive(mask, dtype)

EXERCISES.append(Exercise(
    id="boolean_to_additive",
    hidden_cases=_hidden_boolean_to_additive,
    lesson="03",
    title="From a boolean mask to an additive one",
    answer_name="boolean_to_additive",
    signature="boolean_to_additive(mask, dtype)",
    reference=masks.to_additive,
    cases=[
        case("(3, 4) random pattern, float32", lambda: blocked_pattern(50, 3, 4), mx.float32),
        case("(2, 1, 1, 5) padding, float16", lambda: masks.padding_mask([5, 2], 5), mx.float16),
        case("(4, 4) causal, bfloat16", lambda: masks.causal(4), mx.bfloat16),
    ],
    mistakes=[
        Mistake("inverted_boolean_mask", HINTS["inverted_boolean_mask"],
                lambda mask, dtype: _fill(mask, mx.finfo(dtype).min, dtype)),
        Mistake("neg_inf_vs_finfo_min", _NEG_INF_HINT.replace("create_additive_causal_mask", "MLX"),
                lambda mask, dtype: _fill(~mask, -mx.inf, dtype)),
        Mistake("float16_overflow",
                "mx.finfo(mx.float32).min overflows to -inf in float16 and bfloat16... use "
                "mx.finfo(dtype).min of the dtype you were given.",
                lambda mask, dtype: _fill(~mask, mx.finfo(mx.float32).min, mx.float32).astype(dtype)),
        Mistake("boolean_as_number",
                "Casting a boolean mask gives 1 where allowed and 0 where blocked: that is not an "
                "additive mask. Map True -> 0 and False -> mx.finfo(dtype).min.",
                lambda mask, dtype: mask.astype(dtype)),
    ],
))

# ---------------------------------------------------------------------------
# causal_boolean_mask(n_queries, n_keys): True = attend, lower-right aligned

EXERCISES.append(Exercise(
    id="causal_boolean_mask",
    hidden_cases=_hidden_causal_boolean_mask,
    lesson="03",
    title="A boolean causal mask when L_q != L_k",
    answer_name="causal_boolean_mask",
    signature="causal_boolean_mask(n_queries, n_keys)",
    reference=masks.causal,
    cases=[
        case("4 queries, 4 keys", 4, 4),
        case("2 queries, 5 keys (new tokens after a cache)", 2, 5),
        case("3 queries, 7 keys", 3, 7),
        case("1 query, 6 keys", 1, 6),
    ],
    mistakes=[
        Mistake("causal_upper_left", HINTS["causal_upper_left"], upper_left_causal),
        Mistake("inverted_boolean_mask", HINTS["inverted_boolean_mask"],
                lambda n_queries, n_keys: ~masks.causal(n_queries, n_keys)),
        Mistake("causal_transposed",
                "Keep the past keys, on and below the (shifted) diagonal: mx.tril, or key j <= "
                "query i + L_k - L_q; you kept the future (mx.triu).",
                lambda n_queries, n_keys: mx.triu(mx.ones((n_queries, n_keys), dtype=mx.bool_))),
        Mistake("causal_diagonal",
                "A query may attend to its own position: use <=, not <.",
                lambda n_queries, n_keys: mx.arange(n_keys)[None] < mx.arange(n_queries)[:, None] + n_keys - n_queries),
    ],
))

# ---------------------------------------------------------------------------
# padding_mask(lengths, n_keys): (B, 1, 1, L_k) booleans


def _keep(lengths, n_keys, inclusive=False):
    lengths = mx.array(lengths)
    positions = mx.arange(n_keys)[None]  # (1, n_keys)
    return positions <= lengths[:, None] if inclusive else positions < lengths[:, None]  # (B, L_k)


EXERCISES.append(Exercise(
    id="padding_mask",
    hidden_cases=_hidden_padding_mask,
    lesson="03",
    title="A key-padding mask from lengths",
    answer_name="padding_mask",
    signature="padding_mask(lengths, n_keys)",
    reference=masks.padding_mask,
    cases=[
        case("lengths [3, 5, 1], 5 keys", [3, 5, 1], 5),
        case("lengths [2], 4 keys", [2], 4),
        case("lengths [4, 6], 6 keys", [4, 6], 6),
    ],
    mistakes=[
        Mistake("padding_inverted",
                "True means *attend* in MLX: the real tokens are True and the padding False "
                "(PyTorch's key_padding_mask is the opposite).",
                lambda lengths, n_keys: ~_keep(lengths, n_keys)[:, None, None, :]),
        Mistake("padding_shape",
                "Return (B, 1, 1, L_k) so that the mask broadcasts over the heads and the queries "
                "of (B, H, L_q, L_k): add the two middle axes, e.g. mask[:, None, None, :].",
                lambda lengths, n_keys: _keep(lengths, n_keys)),
        Mistake("padding_shape",
                "Return (B, 1, 1, L_k) so that the mask broadcasts over the heads and the queries "
                "of (B, H, L_q, L_k): with (B, 1, L_k) the batch axis lines up with the "
                "heads. Use mask[:, None, None, :].",
                lambda lengths, n_keys: _keep(lengths, n_keys)[:, None, :]),
        Mistake("padding_not_boolean",
                "padding_mask returns booleans (True = attend), not numbers: positions < lengths "
                "is already a boolean array.",
                lambda lengths, n_keys: _keep(lengths, n_keys)[:, None, None, :].astype(mx.float32)),
        Mistake("padding_not_boolean",
                "padding_mask returns a boolean mask (True = attend), not an additive one: drop the "
                "mx.where(..., 0, -inf); the attention converts booleans itself.",
                lambda lengths, n_keys: mx.where(_keep(lengths, n_keys)[:, None, None, :], 0.0, -mx.inf)),
        Mistake("padding_axis",
                "The keys are the last axis of (B, H, L_q, L_k): use mask[:, None, None, :], "
                "not a column.",
                lambda lengths, n_keys: _keep(lengths, n_keys)[:, None, :, None]),
        Mistake("padding_off_by_one",
                "Positions 0 ... length - 1 are real: use position < length.",
                lambda lengths, n_keys: _keep(lengths, n_keys, inclusive=True)[:, None, None, :]),
    ],
))

# ---------------------------------------------------------------------------
# masked_attention(queries, keys, values, *, scale, mask=None): every mask kind


def _fully_masked(seed, n_queries, n_keys):
    keep = blocked_pattern(seed, n_queries, n_keys)
    return mx.where(mx.arange(n_queries)[:, None] == 1, False, keep)  # row 1 sees no key


def _self_attention_inputs(rng):
    x = props.normal(rng, 2, 2, 6, 4)  # (B, H, L, D_h)
    return {"queries": x, "keys": props.normal(rng, 2, 2, 6, 4), "values": props.normal(rng, 2, 2, 6, 3)}


EXERCISES.append(Exercise(
    id="masked_attention",
    hidden_cases=_hidden_masked_attention,
    forbidden=("mx.fast.*",),
    lesson="03",
    title="Attention with every kind of mask",
    answer_name="masked_attention",
    signature="masked_attention(queries, keys, values, *, scale, mask=None)",
    reference=mhacourse.scaled_dot_product_attention,
    cases=[
        case("boolean mask (3, 5), batch 2, 2 heads",
             lambda: rand(60, 2, 2, 3, 4), lambda: rand(61, 2, 2, 5, 4), lambda: rand(62, 2, 2, 5, 6),
             scale=0.5, mask=lambda: blocked_pattern(63, 3, 5)),
        case('"causal", 4 queries, 4 keys',
             lambda: rand(64, 1, 2, 4, 8), lambda: rand(65, 1, 2, 4, 8), lambda: rand(66, 1, 2, 4, 8),
             scale=1 / math.sqrt(8), mask="causal"),
        case('"causal", 2 queries, 5 keys',
             lambda: rand(67, 2, 1, 2, 4), lambda: rand(68, 2, 1, 5, 4), lambda: rand(69, 2, 1, 5, 4),
             scale=0.5, mask="causal"),
        case("padding mask (3, 1, 1, 6) from lengths [6, 2, 4]",
             lambda: rand(70, 3, 2, 4, 4), lambda: rand(71, 3, 2, 6, 4), lambda: rand(72, 3, 2, 6, 4),
             scale=0.5, mask=lambda: masks.padding_mask([6, 2, 4], 6)),
        case("additive mask (3, 5) with -inf",
             lambda: rand(73, 2, 2, 3, 4), lambda: rand(74, 2, 2, 5, 4), lambda: rand(75, 2, 2, 5, 4),
             scale=0.5, mask=lambda: additive_mask(76, 3, 5)),
        case("boolean mask whose row 1 blocks every key",
             lambda: rand(77, 1, 2, 3, 4), lambda: rand(78, 1, 2, 4, 4), lambda: rand(79, 1, 2, 4, 4),
             scale=0.5, mask=lambda: _fully_masked(80, 3, 4)),
    ],
    mistakes=[
        Mistake("inverted_boolean_mask", HINTS["inverted_boolean_mask"], attention_bug("inverted_boolean")),
        Mistake("boolean_added", HINTS["boolean_added"], attention_bug("boolean_added")),
        Mistake("causal_upper_left", HINTS["causal_upper_left"], attention_bug("causal_upper_left")),
        Mistake("neg_inf_fully_masked", HINTS["neg_inf_fully_masked"], attention_bug("neg_inf")),
        Mistake("mask_fill_zero", HINTS["mask_fill_zero"], attention_bug("mask_fill_zero")),
        Mistake("mask_after_softmax", HINTS["mask_after_softmax"], attention_bug("mask_after_softmax")),
        Mistake("mask_scaled", HINTS["mask_scaled"], attention_bug("mask_scaled")),
        Mistake("mask_ignored", HINTS["mask_ignored"], attention_bug("mask_ignored")),
        Mistake("missing_scale", HINTS["missing_scale"], attention_bug("missing_scale")),
        Mistake("softmax_axis", HINTS["softmax_axis"], attention_bug("softmax_axis")),
        Mistake("softmax_axis", HINTS["softmax_axis"] + " On (B, H, L_q, L_k) scores, axis=1 is the heads.",
                attention_bug("softmax_heads")),
    ],
    properties=[props.causal(_self_attention_inputs,
                 props.function_call(("queries", "keys", "values"), scale=0.5, mask="causal"))],
))

# ---------------------------------------------------------------------------
# mask_shapes(B, H, L_q, L_k): predict the shapes of masks


def _mask_shapes(B, H, L_q, L_k):
    padding = masks.padding_mask([L_k] * B, L_k)  # (B, 1, 1, L_k)
    causal = masks.causal(L_q, L_k)  # (L_q, L_k)
    scores = mx.zeros((B, H, L_q, L_k))
    return {"padding": tuple(padding.shape), "causal": tuple(causal.shape),
            "padding_and_causal": tuple((padding & causal).shape),
            "masked_scores": tuple(mx.where(padding & causal, scores, 0).shape)}


EXERCISES.append(Exercise(
    id="mask_shapes",
    hidden_cases=_hidden_mask_shapes,
    lesson="03",
    title="Predict the shapes of masks",
    answer_name="mask_shapes",
    signature="mask_shapes(B, H, L_q, L_k)",
    reference=_mask_shapes,
    cases=[
        case("B 2, H 4, L_q 3, L_k 5", 2, 4, 3, 5),
        case("B 1, H 2, L_q 6, L_k 6", 1, 2, 6, 6),
        case("B 3, H 1, L_q 1, L_k 4", 3, 1, 1, 4),
    ],
    mistakes=[
        Mistake("padding_shape", "A padding mask from lengths is (B, 1, 1, L_k): one row per example, with "
                "axes of size 1 where it broadcasts over the heads and the queries. (B, L_k) would line "
                "the batch up with L_q.", predicted_wrong(_mask_shapes, lambda B, H, L_q, L_k: {"padding": (B, L_k)})),
        Mistake("shape_broadcast", "Broadcasting makes each axis the larger of the two sizes, and no more: "
                "(B, 1, 1, L_k) & (L_q, L_k) is (B, 1, L_q, L_k); the heads axis stays 1 until the scores "
                "(B, H, L_q, L_k) come in.", predicted_wrong(
                    _mask_shapes, lambda B, H, L_q, L_k: {"padding_and_causal": (B, H, L_q, L_k)})),
        Mistake("causal_shape", "A causal mask has one row per *query* and one column per key: (L_q, L_k), "
                "lower-right aligned when L_q < L_k.", predicted_wrong(
                    _mask_shapes, lambda B, H, L_q, L_k: {"causal": (L_k, L_k)})),
    ],
))
