"""Lesson 01: attention from scratch, one head."""

import math

import mlx.core as mx

import mhacourse
from mhacourse.attention.single_head import SingleHeadAttention

from ..registry import Exercise, Mistake, ModuleExercise, register
from ._common import HINTS, additive_mask, attention_bug, case, explicit_attention, rand

# ---------------------------------------------------------------------------
# attention_scores(queries, keys, *, scale) on (B, L, D) inputs


def _scores(queries, keys, *, scale):
    return mhacourse.attention_scores(queries[:, None], keys[:, None], scale=scale)[:, 0]  # (B, Lq, Lk)


register(Exercise(
    id="attention_scores",
    lesson="01",
    title="Scaled scores q·kᵀ",
    answer_name="attention_scores",
    signature="attention_scores(queries, keys, *, scale)",
    reference=_scores,
    cases=[
        case("1 sequence, 4 queries, 4 keys, dims 8", lambda: rand(1, 1, 4, 8), lambda: rand(2, 1, 4, 8),
             scale=1 / math.sqrt(8)),
        case("batch 2, 3 queries, 5 keys, dims 6, scale 0.3", lambda: rand(3, 2, 3, 6), lambda: rand(4, 2, 5, 6),
             scale=0.3),
    ],
    mistakes=[
        Mistake("missing_scale", HINTS["missing_scale"], lambda queries, keys, *, scale: queries @ keys.swapaxes(-1, -2)),
        Mistake("divide_by_scale", HINTS["divide_by_scale"],
                lambda queries, keys, *, scale: queries @ keys.swapaxes(-1, -2) / scale),
        Mistake("scale_ignored", "Use the `scale` argument you are given rather than computing your own.",
                lambda queries, keys, *, scale: queries @ keys.swapaxes(-1, -2) / math.sqrt(queries.shape[-1])),
        Mistake("keys_times_queries",
                "scores[b, i, j] = q_i · k_j: compute queries @ keysᵀ (n_queries, n_keys), not keys @ queriesᵀ.",
                lambda queries, keys, *, scale: (keys @ queries.swapaxes(-1, -2)) * scale),
    ],
))

# ---------------------------------------------------------------------------
# softmax(x) over the last axis


def _softmax(x):
    return mx.softmax(x, axis=-1, precise=True)


def _naive_softmax(x):
    e = mx.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


def _softmax_axis(axis):
    def wrong(x):
        e = mx.exp(x - x.max(axis=axis, keepdims=True))
        return e / e.sum(axis=axis, keepdims=True)

    return wrong


register(Exercise(
    id="softmax",
    lesson="01",
    title="A numerically stable softmax",
    answer_name="softmax",
    signature="softmax(x)",
    reference=_softmax,
    cases=[
        case("(2, 3, 5) small values", lambda: rand(5, 2, 3, 5)),
        case("(4, 4) square", lambda: rand(6, 4, 4)),
        case("(3, 6) large values (scores of 100s)", lambda: 100 * rand(7, 3, 6)),
        case("(2, 5) with -inf entries", lambda: mx.where(mx.arange(5) % 2 == 0, rand(8, 2, 5), -mx.inf)),
    ],
    mistakes=[
        Mistake("softmax_unstable",
                "exp overflows for large scores (exp(100) = inf, inf/inf = NaN): subtract each row's "
                "maximum first, x - x.max(axis=-1, keepdims=True); the result does not change.",
                _naive_softmax),
        Mistake("softmax_axis", "Normalise over the last axis (axis=-1): every row must sum to 1.",
                _softmax_axis(0)),
        Mistake("softmax_axis", "Normalise over the last axis (axis=-1): every row must sum to 1.",
                _softmax_axis(-2)),
        Mistake("softmax_keepdims",
                "Sum with keepdims=True: e / e.sum(axis=-1) divides along the wrong axis by broadcasting.",
                lambda x: mx.exp(x - x.max(axis=-1, keepdims=True)) / mx.exp(x - x.max(axis=-1, keepdims=True)).sum(axis=-1)),
        Mistake("softmax_not_normalised", "Divide by the sum over the row so that the weights sum to 1.",
                lambda x: mx.exp(x - x.max(axis=-1, keepdims=True))),
        Mistake("softmax_global_sum", "Sum over each row (axis=-1), not over the whole array.",
                lambda x: mx.exp(x - x.max()) / mx.exp(x - x.max()).sum()),
    ],
))

# ---------------------------------------------------------------------------
# scaled_dot_product_attention(queries, keys, values, *, scale, mask=None)

register(Exercise(
    id="scaled_dot_product_attention",
    lesson="01",
    title="Scaled dot-product attention",
    answer_name="scaled_dot_product_attention",
    signature="scaled_dot_product_attention(queries, keys, values, *, scale, mask=None)",
    reference=mhacourse.scaled_dot_product_attention,
    cases=[
        case("1 sequence, 1 head, 4 queries, 4 keys, dims 8",
             lambda: rand(10, 1, 1, 4, 8), lambda: rand(11, 1, 1, 4, 8), lambda: rand(12, 1, 1, 4, 8),
             scale=1 / math.sqrt(8)),
        case("batch 2, 3 heads, 5 queries, 7 keys, dims 4, value dims 6, scale 0.3",
             lambda: rand(13, 2, 3, 5, 4), lambda: rand(14, 2, 3, 7, 4), lambda: rand(15, 2, 3, 7, 6),
             scale=0.3),
        case("batch 2, 2 heads, 3 queries, 6 keys, additive mask (3, 6) with -inf",
             lambda: rand(16, 2, 2, 3, 8), lambda: rand(17, 2, 2, 6, 8), lambda: rand(18, 2, 2, 6, 5),
             scale=1 / math.sqrt(8), mask=lambda: additive_mask(19, 3, 6)),
    ],
    mistakes=[
        Mistake(bug, HINTS[bug], attention_bug(bug))
        for bug in ("missing_scale", "divide_by_scale", "softmax_axis", "mask_after_softmax",
                    "mask_multiplied", "mask_ignored", "no_softmax", "mask_scaled", "no_values",
                    "times_keys")
    ] + [
        Mistake("softmax_axis", HINTS["softmax_axis"] + " On (B, H, Lq, Lk) scores, axis=1 is the heads.",
                attention_bug("softmax_heads")),
        Mistake("scale_ignored", "Use the `scale` argument you are given rather than 1/sqrt(d).",
                lambda queries, keys, values, *, scale, mask=None: explicit_attention(
                    queries, keys, values, 1 / math.sqrt(queries.shape[-1]), mask)),
    ],
))

# ---------------------------------------------------------------------------
# SingleHeadAttention(dims): one head with three projections


class _NoScaleHead(SingleHeadAttention):
    def __call__(self, queries, keys, values, mask=None):
        q, k, v = self.query_proj(queries), self.key_proj(keys), self.value_proj(values)
        return explicit_attention(q[:, None], k[:, None], v[:, None], 1.0, mask)[:, 0]


class _SwappedHead(SingleHeadAttention):
    def __call__(self, queries, keys, values, mask=None):
        q, k, v = self.query_proj(queries), self.value_proj(keys), self.key_proj(values)
        return explicit_attention(q[:, None], k[:, None], v[:, None], 1 / math.sqrt(self.dims), mask)[:, 0]


class _UnprojectedValues(SingleHeadAttention):
    def __call__(self, queries, keys, values, mask=None):
        q, k = self.query_proj(queries), self.key_proj(keys)
        return explicit_attention(q[:, None], k[:, None], values[:, None], 1 / math.sqrt(self.dims), mask)[:, 0]


class _SingleHeadReference(SingleHeadAttention):
    def __call__(self, queries, keys, values, mask=None):
        return super().__call__(queries, keys, values, mask)


register(ModuleExercise(
    id="single_head_attention",
    lesson="01",
    title="One head of attention with projections",
    answer_name="SingleHeadAttention",
    signature="SingleHeadAttention(dims)(queries, keys, values, mask=None)",
    reference=_SingleHeadReference,
    cases=[
        case("dims 8, self-attention, 1 sequence of 4", {"dims": 8},
             lambda: (lambda x: (x, x, x))(rand(20, 1, 4, 8))),
        case("dims 6, batch 2, 3 queries, 5 keys", {"dims": 6},
             lambda: (rand(21, 2, 3, 6), rand(22, 2, 5, 6), rand(23, 2, 5, 6))),
        case("dims 4, batch 2, 3 queries, 3 keys, additive mask", {"dims": 4},
             lambda: (rand(24, 2, 3, 4), rand(25, 2, 3, 4), rand(26, 2, 3, 4)),
             mask=lambda: additive_mask(27, 3, 3)),
    ],
    mistakes=[
        Mistake("missing_scale", HINTS["missing_scale"] + " Here scale = 1/sqrt(dims).", _NoScaleHead),
        Mistake("swap_key_value_proj", HINTS["swap_key_value_proj"], _SwappedHead),
        Mistake("values_not_projected", "Project the values with value_proj before the weighted sum.",
                _UnprojectedValues),
    ],
))
