"""Lesson 05: online softmax over tiles, grouped-query attention, a KV cache, decoding, timing lazy code."""

import math
import time

import mlx.core as mx

import mhacourse
from mhacourse.attention.online import online_attention

from .. import properties as props
from ..exercise import Exercise, Mistake
from . import _hidden
from ._common import HINTS, attention_bug, case, explicit_attention, rand

EXERCISES = []  # this lesson's exercises, declared whole, in notebook order; the registry collects them

# ---------------------------------------------------------------------------
# online_softmax_attention(queries, keys, values, *, scale, tile_size): the tile loop


def _online_reference(queries, keys, values, *, scale, tile_size):
    return online_attention(queries, keys, values, scale=scale, tile_size=tile_size)


def _online_bug(bug):
    """The tile loop with one deliberate bug."""

    def wrong(queries, keys, values, *, scale, tile_size):
        B, H, L_q, _ = queries.shape
        L_k = keys.shape[2]
        if bug != "missing_scale":
            queries = queries * scale
        running_max = mx.full((B, H, L_q, 1), -mx.inf)
        running_sum = mx.zeros((B, H, L_q, 1))
        output = mx.zeros((B, H, L_q, values.shape[-1]))
        for start in range(0, L_k, tile_size):
            scores = queries @ keys[:, :, start:start + tile_size].swapaxes(-1, -2)  # (B, H, L_q, tile)
            new_max = mx.maximum(running_max, scores.max(axis=-1, keepdims=True))
            if bug == "online_no_max":
                new_max = mx.zeros_like(new_max)
            correction = mx.exp(running_max - new_max)
            if bug in ("online_no_rescale", "online_last_tile_only"):
                correction = mx.zeros_like(correction) if bug == "online_last_tile_only" else mx.ones_like(correction)
            weights = mx.exp(scores - new_max)  # (B, H, L_q, tile)
            kept = running_sum if bug == "online_sum_not_rescaled" else running_sum * correction
            running_sum = kept + weights.sum(axis=-1, keepdims=True)
            output = output * correction + weights @ values[:, :, start:start + tile_size]
            running_max = new_max
        return output if bug == "online_no_normalise" else output / running_sum

    return wrong


def _online_case(name, seed, B, H, L_q, L_k, D_h, tile_size, scale=None, spread=1.0, memory_cap=None):
    return case(name, lambda: spread * rand(seed, B, H, L_q, D_h), lambda: rand(seed + 1, B, H, L_k, D_h),
                lambda: rand(seed + 2, B, H, L_k, D_h), scale=scale or 1 / math.sqrt(D_h), tile_size=tile_size,
                memory_cap=memory_cap)


def _long_case(name, seed, L_q, L_k, tile_size):
    """One head, ``L_q`` queries over ``L_k`` keys: the answer may hold at most half of the full
    ``(L_q, L_k)`` float32 score matrix at once (tiles of 256 need about a sixth of it)."""
    return _online_case(name, seed, 1, 1, L_q, L_k, 8, tile_size, memory_cap=L_q * L_k * 4 // 2)



def _hidden_grouped_query_attention(rng):
    B, _, L_q, L_k, D, D_v = _hidden.sizes(rng)
    kv_heads = int(rng.choice([2, 3]))
    H = kv_heads * int(rng.choice([2, 3]))
    return [_hidden.fixed_case((_hidden.normal(rng, B, H, L_q, D), _hidden.normal(rng, B, kv_heads, L_k, D),
                     _hidden.normal(rng, B, kv_heads, L_k, D_v)),
                    {"scale": float(D) ** -0.5})]



def _hidden_online_softmax_attention(rng):
    B, H, L_q, L_k, D, _ = _hidden.sizes(rng)
    tile = int(rng.choice([3, 5]))
    return [_online_case("hidden", _hidden.seed(rng), B, H, L_q, L_k, D, tile),
            _online_case("hidden", _hidden.seed(rng), 1, H, L_q, 2 * L_k + 1, D, tile + 4, scale=1.0, spread=60.0),
            _long_case("hidden", _hidden.seed(rng), int(rng.choice([768, 896])), int(rng.choice([20480, 24576])),
                                int(rng.choice([192, 320])))]



def _hidden_kv_cache_attention(rng):
    B, H, L_q, L_k, D, _ = _hidden.sizes(rng)
    return [_kv_case("hidden", _hidden.seed(rng), B, H, 1, L_k, D),
            _kv_case("hidden", _hidden.seed(rng), B, H, int(rng.integers(5, 8)), L_q, D)]



def _hidden_decode_step(rng):
    B, _, L_q, _, D, _ = _hidden.sizes(rng)
    kv_heads = int(rng.choice([2, 3]))
    H = kv_heads * int(rng.choice([2, 3]))
    return [_cache_case("hidden", _hidden.seed(rng), B, H, kv_heads, int(rng.integers(5, 7)), L_q, D),
            _cache_case("hidden", _hidden.seed(rng), B, H, 1, int(rng.integers(3, 5)), 0, D)]



def _hidden_time_per_call(rng):
    B, H, _, _, D, _ = _hidden.sizes(rng)
    return [_timing_case("hidden", _hidden.seed(rng), int(rng.integers(3, 5)), B, H, int(rng.choice([80, 96])), D),
            _timing_case("hidden", _hidden.seed(rng), 3, 1, 2, int(rng.choice([24, 32])), 8, "slow attention")]


EXERCISES.append(Exercise(
    id="online_softmax_attention",
    hidden_cases=_hidden_online_softmax_attention,
    forbidden=("mx.softmax", "nn.softmax", "nn.Softmax", "mx.fast.*"),
    lesson="05",
    title="Attention over key tiles with an online softmax",
    answer_name="online_softmax_attention",
    signature="online_softmax_attention(queries, keys, values, *, scale, tile_size)",
    reference=_online_reference,
    cases=[
        _online_case("1 head, 3 queries, 7 keys in tiles of 2 (the last tile has 1 key)", 120, 1, 1, 3, 7, 4, 2),
        _online_case("batch 2, 2 heads, 4 queries, 8 keys in tiles of 4", 123, 2, 2, 4, 8, 8, 4),
        _online_case("batch 2, 3 heads, 5 queries, 6 keys in one tile of 16", 126, 2, 3, 5, 6, 4, 16),
        _online_case("scores in the hundreds, 9 keys in tiles of 3", 129, 1, 2, 3, 9, 4, 3, scale=1.0,
                     spread=60.0),
        _long_case("1024 queries, 16384 keys in tiles of 256: at most half the full score matrix at once",
                   132, 1024, 16384, 256),
    ],
    mistakes=[
        Mistake("online_no_rescale",
                "When a tile raises the running maximum from m_old to m_new, the sum and the output "
                "accumulated so far were computed with exp(score - m_old): multiply both by "
                "exp(m_old - m_new) before adding the new tile.", _online_bug("online_no_rescale")),
        Mistake("online_sum_not_rescaled",
                "You rescale the accumulated output by exp(m_old - m_new) but not the running sum: both were "
                "computed with the old maximum, so multiply the sum by the same factor before adding the tile's.",
                _online_bug("online_sum_not_rescaled")),
        Mistake("online_no_normalise",
                "The loop accumulates the *unnormalised* output Σ exp(score - m)·value: divide it by the "
                "running sum Σ exp(score - m) at the end.", _online_bug("online_no_normalise")),
        Mistake("online_last_tile_only",
                "Keep what the earlier tiles contributed: rescale the running sum and output by "
                "exp(m_old - m_new), don't reset them for each tile.", _online_bug("online_last_tile_only")),
        Mistake("softmax_unstable",
                "Subtract the running maximum before exp: exp of scores in the hundreds overflows to inf "
                "(and inf/inf = NaN). Track m = max(m, tile max) and use exp(score - m).",
                _online_bug("online_no_max")),
        Mistake("missing_scale", HINTS["missing_scale"] + " In the tile loop, scale the queries once before it.",
                _online_bug("missing_scale")),
    ],
    properties=[props.weights_sum_to_one(
    lambda rng: {"queries": props.normal(rng, 2, 2, 3, 4), "keys": props.normal(rng, 2, 2, 7, 4),
                 "values": props.normal(rng, 2, 2, 7, 3)},
    props.function_call(("queries", "keys", "values"), scale=0.5, tile_size=3),
    hint_id="online_no_normalise",
    hint="Divide the accumulated output by the running sum of exp(score - m) at the end, so that each "
         "query's weights sum to 1.")],
))

# ---------------------------------------------------------------------------
# grouped_query_attention(queries, keys, values, *, scale): fewer key/value heads

EXERCISES.append(Exercise(
    id="grouped_query_attention",
    hidden_cases=_hidden_grouped_query_attention,
    lesson="05",
    title="Grouped-query attention",
    answer_name="grouped_query_attention",
    signature="grouped_query_attention(queries, keys, values, *, scale)",
    reference=mhacourse.scaled_dot_product_attention,
    forbidden=("mx.fast.*",),
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
        Mistake("softmax_axis", HINTS["softmax_axis"] + " On (B, H, L_q, L_k) scores, axis=1 is the heads.",
                attention_bug("softmax_heads")),
    ],
))

# ---------------------------------------------------------------------------
# kv_cache_attention(queries, new_keys, new_values, cached_keys, cached_values, *, scale)


def _kv_step(queries, new_keys, new_values, cached_keys, cached_values, *, scale,
             order=("cache", "new"), axis=2, mask="causal"):
    parts_k = {"cache": cached_keys, "new": new_keys}
    parts_v = {"cache": cached_values, "new": new_values}
    keys = mx.concatenate([parts_k[o] for o in order], axis=axis)  # (B, H, L_cache + L_new, D_h)
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


def _cache_case(name, seed, B, H_q, H_kv, n_new, n_cached, D_h):
    """Queries of ``n_new`` tokens, their keys and values, and a cache of ``n_cached``."""
    return case(name, lambda: rand(seed, B, H_q, n_new, D_h), lambda: rand(seed + 1, B, H_kv, n_new, D_h),
                lambda: rand(seed + 2, B, H_kv, n_new, D_h), lambda: rand(seed + 3, B, H_kv, n_cached, D_h),
                lambda: rand(seed + 4, B, H_kv, n_cached, D_h), scale=1 / math.sqrt(D_h))


def _kv_case(name, seed, B, H, n_new, n_cached, D_h):
    return _cache_case(name, seed, B, H, H, n_new, n_cached, D_h)


EXERCISES.append(Exercise(
    id="kv_cache_attention",
    hidden_cases=_hidden_kv_cache_attention,
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

# ---------------------------------------------------------------------------
# decode_step(query, new_key, new_value, cached_keys, cached_values, *, scale): GQA + KV cache


class DecodeExercise(Exercise):
    """``answer`` is one decoding step; the check runs it once per new token.

    A case's inputs are the queries, keys and values of ``T`` new tokens and
    the cache before them. The step is called ``T`` times, each time on one
    token and the cache the previous step returned (the ``"decode"`` driver);
    the outputs, stacked, and the final cache are compared. The reference
    step gives exactly the full causal recomputation over the cache and the
    ``T`` tokens (asserted in ``tests/test_checks.py``).
    """

    driver = "decode"


def _decode_step(query, new_key, new_value, cached_keys, cached_values, *, scale, bug=None):
    keys = mx.concatenate([cached_keys, new_key], axis=2)  # (B, H_kv, L + 1, D_h)
    values = mx.concatenate([cached_values, new_value], axis=2)
    if bug == "kv_order":
        keys = mx.concatenate([new_key, cached_keys], axis=2)
        values = mx.concatenate([new_value, cached_values], axis=2)
    attend_k, attend_v = (new_key, new_value) if bug == "decode_no_cache" else (keys, values)
    # explicit_attention repeats each key/value head for its group of query heads (mx.tile for "gqa_tile").
    shared_bug = bug if bug in ("gqa_tile", "missing_scale") else None
    output = explicit_attention(query, attend_k, attend_v, scale, bug=shared_bug)  # (B, H_q, 1, D_h)
    if bug == "kv_cache_not_grown":
        return output, cached_keys, cached_values
    return output, keys, values


def _decode_bug(bug):
    def wrong(query, new_key, new_value, cached_keys, cached_values, *, scale):
        return _decode_step(query, new_key, new_value, cached_keys, cached_values, scale=scale, bug=bug)

    return wrong


EXERCISES.append(DecodeExercise(
    id="decode_step",
    hidden_cases=_hidden_decode_step,
    lesson="05",
    title="A decoding step with grouped-query attention and a KV cache",
    answer_name="decode_step",
    signature="decode_step(query, new_key, new_value, cached_keys, cached_values, *, scale)",
    reference=_decode_bug(None),
    cases=[
        _cache_case("4 query heads, 2 key/value heads, 3 steps after a cache of 4", 180, 2, 4, 2, 3, 4, 8),
        _cache_case("6 query heads, 3 key/value heads, 4 steps from an empty cache", 190, 1, 6, 3, 4, 0, 4),
        _cache_case("4 query heads, 1 key/value head (multi-query), 2 steps after 5", 200, 2, 4, 1, 2, 5, 4),
    ],
    mistakes=[
        Mistake("gqa_tile", HINTS["gqa_tile"], _decode_bug("gqa_tile")),
        Mistake("kv_cache_not_grown",
                "Return the grown cache, mx.concatenate([cached_keys, new_key], axis=2) (and the values): "
                "the next step must see this token too.", _decode_bug("kv_cache_not_grown")),
        Mistake("decode_no_cache",
                "The new token attends to every cached key *and* itself: attend over the concatenated keys "
                "and values, not only the new ones.", _decode_bug("decode_no_cache")),
        Mistake("kv_order", "Append the new key and value *after* the cache: mx.concatenate([cached, new], "
                "axis=2), so that position i of the cache stays token i.", _decode_bug("kv_order")),
        Mistake("missing_scale", HINTS["missing_scale"], _decode_bug("missing_scale")),
    ],
))

# ---------------------------------------------------------------------------
# time_per_call(fn, inputs, repeats): timing lazy MLX code


class TimingExercise(Exercise):
    """``answer(fn, inputs, repeats)`` must time ``fn(*inputs)`` with every timed result evaluated.

    The ``"timing"`` driver counts the calls of ``fn`` (a workload named in the
    case) and records which of its results go through ``mx.eval``. The output
    compared is what the answer did, not the (machine-dependent) seconds: how
    many calls, how many of the timed results were evaluated, and whether the
    number returned is a mean per call measured with a clock (within a range
    around the timed loop's length per call, so a constant or a total fails).
    """

    driver = "timing"


def _time_per_call(fn, inputs, repeats, *, bug=None):
    if bug != "timing_no_warmup":
        mx.eval(fn(*inputs))  # warm-up, not timed
    start = time.perf_counter()
    last = None
    for _ in range(repeats):
        last = fn(*inputs)
        if bug not in ("eval_forgotten", "eval_once"):
            mx.eval(last)
    if bug == "eval_once":
        mx.eval(last)
    total = time.perf_counter() - start
    if bug == "timing_constant":
        return 1e-12
    return total if bug == "timing_total" else total / repeats


def _timing_bug(bug):
    def wrong(fn, inputs, repeats):
        return _time_per_call(fn, inputs, repeats, bug=bug)

    return wrong


def _timing_case(name, seed, repeats, B, H, L, D_h, workload="explicit attention"):
    """``(workload name, (queries, keys, values), repeats)``: the driver turns the name into ``fn``."""
    return case(name, workload,
                lambda: (rand(seed, B, H, L, D_h), rand(seed + 1, B, H, L, D_h), rand(seed + 2, B, H, L, D_h)),
                repeats)


EXERCISES.append(TimingExercise(
    id="time_per_call",
    hidden_cases=_hidden_time_per_call,
    lesson="05",
    title="Time lazy code: evaluate what you time",
    answer_name="time_per_call",
    signature="time_per_call(fn, inputs, repeats)",
    reference=_timing_bug(None),
    cases=[
        _timing_case("explicit attention, B 2, H 4, L 64, 5 repeats", 210, 5, 2, 4, 64, 16),
        _timing_case("explicit attention, B 1, H 2, L 128, 8 repeats", 213, 8, 1, 2, 128, 32),
        _timing_case("a function that takes 20 ms per call, 3 repeats", 216, 3, 1, 2, 16, 8, "slow attention"),
    ],
    mistakes=[
        Mistake("eval_forgotten",
                "MLX is lazy: fn(*inputs) only builds a graph, and nothing is computed until the result is "
                "evaluated. Call mx.eval(result) inside the timed loop, or you time the graph building.",
                _timing_bug("eval_forgotten")),
        Mistake("eval_once",
                "mx.eval(last) after the loop computes only the last result: the other calls' graphs are "
                "never evaluated. Evaluate each result inside the loop.", _timing_bug("eval_once")),
        Mistake("timing_no_warmup",
                "Call fn(*inputs) once before the timed loop (and evaluate it): the first call pays for "
                "one-time work such as compiling kernels and allocating memory.", _timing_bug("timing_no_warmup")),
        Mistake("timing_total", "Return the mean per call: the total time of the loop divided by repeats.",
                _timing_bug("timing_total")),
        Mistake("timing_constant",
                "Return a time you measured: read time.perf_counter() just before and just after the timed "
                "loop, and divide the difference by repeats.", _timing_bug("timing_constant")),
    ],
))
