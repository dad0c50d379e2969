"""Lesson 05: the fused kernel, grouped-query attention and a KV cache."""

import math

import mlx.core as mx

import mhacourse

from ..compare import matches
from ..registry import Exercise, Mistake, register
from ..runner import AnswerProblem, evaluate
from ._common import HINTS, attention_bug, blocked_pattern, case, explicit_attention, rand

# ---------------------------------------------------------------------------
# fused_attention(queries, keys, values, mask=None): mx.fast with scale 1/sqrt(D)


def _scaled(scale_of):
    def wrong(queries, keys, values, mask=None):
        return explicit_attention(queries, keys, values, scale_of(queries.shape[-1]), mask)

    return wrong


class FusedExercise(Exercise):
    """An exercise whose answer must call ``mx.fast.scaled_dot_product_attention``.

    The call is detected by wrapping ``mx.fast.scaled_dot_product_attention``
    while the answer runs. An answer with the right values that never calls the
    fused kernel fails with its own hint.
    """

    def run_case(self, answer, case):
        fast = mx.fast
        original = fast.scaled_dot_product_attention
        calls = []

        def counted(*args, **kwargs):
            calls.append(1)
            return original(*args, **kwargs)

        fast.scaled_dot_product_attention = counted
        try:
            output = evaluate(super().run_case(answer, case))
        finally:
            fast.scaled_dot_product_attention = original
        if not calls and answer is not self.reference:
            expected = evaluate(super().run_case(self.reference, case))
            if matches(output, expected):
                raise AnswerProblem(
                    "the values are right, but the answer never called mx.fast.scaled_dot_product_attention.",
                    "not_fused",
                    "This exercise is about the fused kernel: call mx.fast.scaled_dot_product_attention("
                    "queries, keys, values, scale=..., mask=mask) (written with the mx.fast prefix).",
                )
        return output


def _fused_call(queries, keys, values, mask=None):
    return mx.fast.scaled_dot_product_attention(
        queries, keys, values, scale=1 / math.sqrt(queries.shape[-1]), mask=mask)


register(FusedExercise(
    id="fused_attention",
    lesson="05",
    title="Call the fused kernel",
    answer_name="fused_attention",
    signature="fused_attention(queries, keys, values, mask=None)",
    reference=_fused_call,
    cases=[
        case("batch 2, 4 heads, 3 queries, 5 keys, dims 8, value dims 6",
             lambda: rand(120, 2, 4, 3, 8), lambda: rand(121, 2, 4, 5, 8), lambda: rand(122, 2, 4, 5, 6)),
        case('"causal", 1 sequence, 2 heads, 4 positions, dims 16',
             lambda: rand(123, 1, 2, 4, 16), lambda: rand(124, 1, 2, 4, 16), lambda: rand(125, 1, 2, 4, 16),
             mask="causal"),
        case("boolean mask (3, 6), float16",
             lambda: rand(126, 2, 2, 3, 4, dtype=mx.float16), lambda: rand(127, 2, 2, 6, 4, dtype=mx.float16),
             lambda: rand(128, 2, 2, 6, 4, dtype=mx.float16), mask=lambda: blocked_pattern(129, 3, 6)),
    ],
    mistakes=[
        Mistake("missing_scale", HINTS["missing_scale"] + " Here scale = 1 / sqrt(head dims).",
                _scaled(lambda d: 1.0)),
        Mistake("scale_not_sqrt", "The scale is 1 / sqrt(d), the square root of the head dims, not 1 / d.",
                _scaled(lambda d: 1.0 / d)),
        Mistake("divide_by_scale", "The scale multiplies the scores: pass scale=1 / sqrt(d), not sqrt(d).",
                _scaled(lambda d: math.sqrt(d))),
    ],
))

# ---------------------------------------------------------------------------
# grouped_query_attention(queries, keys, values, *, scale): fewer key/value heads

register(Exercise(
    id="grouped_query_attention",
    lesson="05",
    title="Grouped-query attention",
    answer_name="grouped_query_attention",
    signature="grouped_query_attention(queries, keys, values, *, scale)",
    reference=mhacourse.scaled_dot_product_attention,
    cases=[
        case("4 query heads, 2 key/value heads, 3 queries, 5 keys",
             lambda: rand(130, 2, 4, 3, 8), lambda: rand(131, 2, 2, 5, 8), lambda: rand(132, 2, 2, 5, 6),
             scale=1 / math.sqrt(8)),
        case("6 query heads, 3 key/value heads, batch 1",
             lambda: rand(133, 1, 6, 4, 4), lambda: rand(134, 1, 3, 4, 4), lambda: rand(135, 1, 3, 4, 4),
             scale=0.5),
        case("4 query heads, 1 key/value head (multi-query)",
             lambda: rand(136, 2, 4, 2, 4), lambda: rand(137, 2, 1, 6, 4), lambda: rand(138, 2, 1, 6, 4),
             scale=0.5),
        case("2 query heads, 2 key/value heads (plain multi-head)",
             lambda: rand(139, 1, 2, 3, 4), lambda: rand(140, 1, 2, 3, 4), lambda: rand(141, 1, 2, 3, 4),
             scale=0.5),
    ],
    mistakes=[
        Mistake("gqa_tile", HINTS["gqa_tile"], attention_bug("gqa_tile")),
        Mistake("missing_scale", HINTS["missing_scale"], attention_bug("missing_scale")),
        Mistake("softmax_axis", HINTS["softmax_axis"], attention_bug("softmax_axis")),
        Mistake("softmax_axis", HINTS["softmax_axis"] + " On (B, H, Lq, Lk) scores, axis=1 is the heads.",
                attention_bug("softmax_heads")),
    ],
))

# ---------------------------------------------------------------------------
# kv_cache_attention(queries, new_keys, new_values, cached_keys, cached_values, *, scale)


def _kv_step(queries, new_keys, new_values, cached_keys, cached_values, *, scale,
             order=("cache", "new"), axis=2, mask="causal"):
    parts_k = {"cache": cached_keys, "new": new_keys}
    parts_v = {"cache": cached_values, "new": new_values}
    keys = mx.concatenate([parts_k[o] for o in order], axis=axis)  # (B, H, L_cache + L_new, D)
    values = mx.concatenate([parts_v[o] for o in order], axis=axis)
    if mask == "upper_left":
        output = explicit_attention(queries, keys, values, scale, "causal", bug="causal_upper_left")
    else:
        output = mhacourse.scaled_dot_product_attention(queries, keys, values, scale=scale, mask=mask)
    return output, keys, values


def _kv_bug(**kwargs):
    def wrong(queries, new_keys, new_values, cached_keys, cached_values, *, scale):
        return _kv_step(queries, new_keys, new_values, cached_keys, cached_values, scale=scale, **kwargs)

    return wrong


def _kv_case(name, seed, B, H, n_new, n_cached, D):
    return case(name, lambda: rand(seed, B, H, n_new, D), lambda: rand(seed + 1, B, H, n_new, D),
                lambda: rand(seed + 2, B, H, n_new, D), lambda: rand(seed + 3, B, H, n_cached, D),
                lambda: rand(seed + 4, B, H, n_cached, D), scale=1 / math.sqrt(D))


register(Exercise(
    id="kv_cache_attention",
    lesson="05",
    title="One decoding step with a KV cache",
    answer_name="kv_cache_attention",
    signature="kv_cache_attention(queries, new_keys, new_values, cached_keys, cached_values, *, scale)",
    reference=_kv_bug(),
    cases=[
        _kv_case("1 new token, 4 cached, batch 2, 2 heads", 150, 2, 2, 1, 4, 8),
        _kv_case("3 new tokens, 5 cached", 160, 1, 2, 3, 5, 4),
        _kv_case("4 new tokens, 2 cached, 3 heads", 170, 2, 3, 4, 2, 4),
    ],
    mistakes=[
        Mistake("kv_no_causal",
                "With several new tokens, each may only see the cache and the new tokens up to "
                "itself: pass mask=\"causal\" (aligned to the lower right, as the new tokens are the "
                "newest).", _kv_bug(mask=None)),
        Mistake("causal_upper_left", HINTS["causal_upper_left"], _kv_bug(mask="upper_left")),
        Mistake("kv_order", "Append the new keys and values *after* the cache: "
                "mx.concatenate([cached, new], axis=2).", _kv_bug(order=("new", "cache"))),
    ],
))
