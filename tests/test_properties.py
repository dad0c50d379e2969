"""Property checks: each holds for the reference, and each is broken by an answer that breaks only it."""

import math

import mlx.core as mx
import numpy as np
import pytest

import mhacourse
from mhacourse.grading import check, exercise_ids, get_exercise
from mhacourse.grading import properties as props


def _attention(queries, keys, values, scale, mask=None, change=None):
    """Explicit attention; ``change(scores)`` deforms the scores before the softmax."""
    scores = (queries @ keys.swapaxes(-1, -2)) * scale  # (B, H, L_q, L_k)
    if isinstance(mask, str):
        L_q, L_k = scores.shape[-2:]
        mask = mx.tril(mx.ones((L_q, L_k), dtype=mx.bool_), k=L_k - L_q)
    if mask is not None and mask.dtype == mx.bool_:
        scores = mx.where(mask, scores, mx.finfo(scores.dtype).min)
    elif mask is not None:
        scores = scores + mask
    if change is not None:
        scores = change(scores)
    return mx.softmax(scores, axis=-1) @ values  # (B, H, L_q, D_v)


def position_bias(scores):
    L_q, L_k = scores.shape[-2:]
    return scores - mx.abs(mx.arange(L_q)[:, None] - mx.arange(L_k)[None]).astype(scores.dtype)


def heads_mixed(scores):
    return scores + scores.mean(axis=1, keepdims=True)


def batch_mixed(scores):
    return scores + scores[:1]


def sdpa_with(change):
    def answer(queries, keys, values, *, scale, mask=None):
        return _attention(queries, keys, values, scale, mask, change)

    return answer


def sdpa_not_normalised(queries, keys, values, *, scale, mask=None):
    scores = (queries @ keys.swapaxes(-1, -2)) * scale
    return mx.exp(scores - scores.max(axis=-1, keepdims=True)) @ values


def masked_attention_causal_ignored(queries, keys, values, *, scale, mask=None):
    return _attention(queries, keys, values, scale, None if isinstance(mask, str) else mask)


class Layer(mhacourse.MultiHeadAttention):
    """The course's layer with its attention step replaced (``change`` deforms the scores)."""

    change = None
    causal_ignored = False

    def __call__(self, queries, keys, values, mask=None):
        H = self.num_heads
        q = self.query_proj(queries).reshape(*queries.shape[:2], H, -1).swapaxes(1, 2)  # (B, H, L_q, D_h)
        k = self.key_proj(keys).reshape(*keys.shape[:2], H, -1).swapaxes(1, 2)  # (B, H, L_k, D_h)
        v = self.value_proj(values).reshape(*values.shape[:2], H, -1).swapaxes(1, 2)  # (B, H, L_k, D_v)
        if self.causal_ignored and isinstance(mask, str):
            mask = None
        out = _attention(q, k, v, 1 / math.sqrt(q.shape[-1]), mask, type(self).change)
        return self.out_proj(out.swapaxes(1, 2).reshape(*queries.shape[:2], -1))  # (B, L_q, value_output_dims)


def layer_with(change=None, causal_ignored=False):
    return type("LayerVariant", (Layer,), {"change": staticmethod(change) if change else None,
                                           "causal_ignored": causal_ignored})


def online_not_divided(queries, keys, values, *, scale, tile_size):
    scores = (queries @ keys.swapaxes(-1, -2)) * scale
    return mx.exp(scores - scores.max(axis=-1, keepdims=True)) @ values


ROWS, CAUSAL = "rows of weights sum to 1", "causality: changing future tokens leaves earlier outputs unchanged"
PERMUTATION, HEADS = "permutation equivariance (no positions)", "heads are independent"
BATCH = "invariance to the batch order"

# (exercise, property) -> an answer that breaks that property and no other.
BREAKERS = {
    ("softmax", ROWS): lambda x: mx.exp(x - x.max(axis=-1, keepdims=True)),
    ("softmax", BATCH): lambda x: mx.softmax(x + x[:1], axis=-1),
    ("scaled_dot_product_attention", ROWS): sdpa_not_normalised,
    ("scaled_dot_product_attention", PERMUTATION): sdpa_with(position_bias),
    ("scaled_dot_product_attention", HEADS): sdpa_with(heads_mixed),
    ("scaled_dot_product_attention", BATCH): sdpa_with(batch_mixed),
    ("masked_attention", CAUSAL): masked_attention_causal_ignored,
    ("multi_head_attention_basic", PERMUTATION): layer_with(position_bias),
    ("multi_head_attention_basic", BATCH): layer_with(batch_mixed),
    ("multi_head_attention", CAUSAL): layer_with(causal_ignored=True),
    ("multi_head_attention", BATCH): layer_with(batch_mixed),
    ("online_softmax_attention", ROWS): online_not_divided,
}

WITH_PROPERTIES = [i for i in exercise_ids() if get_exercise(i).properties]
PAIRS = [(i, p.name) for i in WITH_PROPERTIES for p in get_exercise(i).properties]


def property_lines(result):
    """Property name -> whether it held, from the result's cases."""
    return {c.name.removeprefix("property: "): c.passed for c in result.cases if c.name.startswith("property: ")}


def test_the_five_properties_are_used():
    names = {name for _, name in PAIRS}
    assert {ROWS, CAUSAL, PERMUTATION, HEADS, BATCH} <= names


def test_every_property_check_has_a_breaker():
    assert sorted(PAIRS) == sorted(BREAKERS)


@pytest.mark.parametrize("exercise_id", WITH_PROPERTIES)
def test_reference_has_every_property_and_check_reports_them(exercise_id):
    exercise = get_exercise(exercise_id)
    result = check(exercise_id, exercise.reference)
    assert result.passed, result.report()
    assert property_lines(result) == {p.name: True for p in exercise.properties}
    for prop in exercise.properties:
        assert f"property: {prop.name}: holds" in result.report()


@pytest.mark.parametrize("exercise_id, name", PAIRS, ids=[f"{i}-{n.split(':')[0]}" for i, n in PAIRS])
def test_breaker_breaks_only_its_property(exercise_id, name):
    result = check(exercise_id, BREAKERS[exercise_id, name], hint=2)
    assert not result.passed
    lines = property_lines(result)
    assert lines == {p.name: p.name != name for p in get_exercise(exercise_id).properties}, result.report()
    prop = next(p for p in get_exercise(exercise_id).properties if p.name == name)
    failed = next(c for c in result.cases if c.name == f"property: {name}")
    assert failed.hint_id == prop.hint_id and failed.message in result.report()


def test_a_property_is_judged_only_from_outputs():
    prop = next(p for p in get_exercise("scaled_dot_product_attention").properties if p.name == HEADS)
    calls = prop.calls(np.random.default_rng(3))
    outputs = [mhacourse.scaled_dot_product_attention(*args, **kwargs) for args, kwargs in calls]
    assert prop.holds(outputs) is None
    plain = [np.array(o).tolist() for o in outputs]  # as they come back from the sandbox
    assert prop.holds([np.array(p, dtype=np.float32) for p in plain]) is None
    mixed = [o + o.mean(axis=1, keepdims=True) for o in outputs]
    mixed[0] = outputs[0]
    assert "head" in prop.holds(mixed)


def test_outputs_of_the_wrong_kind_are_not_judged():
    prop = props.causal(lambda rng: {"x": props.normal(rng, 1, 4, 2)}, props.function_call(("x",)))
    assert prop.holds([None, "text"]) is None
    assert prop.holds([mx.zeros((1, 4, 2)), mx.zeros((1, 3, 2))]) is None
    assert prop.holds([mx.zeros((1, 4, 2))]) is None


def test_decode_reference_equals_the_full_recomputation():
    exercise = get_exercise("decode_step")
    for case in exercise.cases:
        (queries, keys, values, cached_keys, cached_values), kwargs = case.inputs()
        output, grown_keys, grown_values = exercise.run_given(exercise.reference, case.inputs())
        all_keys = mx.concatenate([cached_keys, keys], axis=2)  # (B, H_kv, L + T, D_h)
        all_values = mx.concatenate([cached_values, values], axis=2)
        full = mx.fast.scaled_dot_product_attention(queries, all_keys, all_values, mask="causal", **kwargs)
        assert mx.allclose(output, full, atol=1e-5)
        assert mx.array_equal(grown_keys, all_keys) and mx.array_equal(grown_values, all_values)
