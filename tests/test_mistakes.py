"""The catalogue of typical mistakes: each is rejected with the hint that names it.

Every wrong answer below is written the way a learner would write it (not
taken from the checks' own variants); every correct variant must pass.
"""

import math

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest

import mhacourse
from mhacourse.grading import check

# ---------------------------------------------------------------------------
# Wrong answers, each with the hint its check must give.


def sdpa_no_scale(queries, keys, values, *, scale, mask=None):
    scores = queries @ keys.transpose(0, 1, 3, 2)
    if mask is not None:
        scores = scores + mask
    return mx.softmax(scores, axis=-1) @ values


def sdpa_softmax_over_queries(queries, keys, values, *, scale, mask=None):
    scores = scale * (queries @ keys.transpose(0, 1, 3, 2))
    if mask is not None:
        scores = scores + mask
    return mx.softmax(scores, axis=2) @ values


def sdpa_mask_after_softmax(queries, keys, values, *, scale, mask=None):
    weights = mx.softmax(scale * (queries @ keys.transpose(0, 1, 3, 2)), axis=-1)
    if mask is not None:
        weights = weights + mask
    return weights @ values


def softmax_without_max(x):
    return mx.exp(x) / mx.sum(mx.exp(x), axis=-1, keepdims=True)


def split_heads_direct_reshape(x, num_heads):
    B, L, D = x.shape
    return mx.reshape(x, (B, num_heads, L, D // num_heads))


def split_heads_interleaved(x, num_heads):
    B, L, D = x.shape
    return mx.transpose(mx.reshape(x, (B, L, -1, num_heads)), (0, 3, 1, 2))


def merge_heads_direct_reshape(x):
    B, H, L, Dh = x.shape
    return mx.reshape(x, (B, L, -1))


def causal_mask_neg_inf(n, dtype):
    return mx.triu(mx.full((n, n), -mx.inf, dtype=dtype), k=1)


def causal_mask_float32_min(n, dtype):
    mask = mx.triu(mx.ones((n, n)), k=1) * mx.finfo(mx.float32).min
    return mask.astype(dtype)


def causal_boolean_upper_left(n_queries, n_keys):
    return mx.tril(mx.ones((n_queries, n_keys), dtype=mx.bool_))


def padding_mask_torch_style(lengths, n_keys):
    padded = mx.arange(n_keys)[None] >= mx.array(lengths)[:, None]
    return padded[:, None, None, :]


def masked_attention_inverted(queries, keys, values, *, scale, mask=None):
    scores = (queries @ keys.swapaxes(2, 3)) * scale
    if isinstance(mask, str):
        Lq, Lk = scores.shape[-2:]
        mask = mx.tril(mx.ones((Lq, Lk)), k=Lk - Lq).astype(mx.bool_)
    if mask is not None and mask.dtype == mx.bool_:
        scores = mx.where(mask, mx.finfo(scores.dtype).min, scores)
    elif mask is not None:
        scores = scores + mask
    return mx.softmax(scores, axis=-1) @ values


def masked_attention_neg_inf(queries, keys, values, *, scale, mask=None):
    scores = (queries @ keys.swapaxes(2, 3)) * scale
    if isinstance(mask, str):
        Lq, Lk = scores.shape[-2:]
        mask = mx.tril(mx.ones((Lq, Lk)), k=Lk - Lq).astype(mx.bool_)
    if mask is not None and mask.dtype == mx.bool_:
        scores = mx.where(mask, scores, -mx.inf)
    elif mask is not None:
        scores = scores + mask
    return mx.softmax(scores, axis=-1) @ values


def masked_attention_upper_left(queries, keys, values, *, scale, mask=None):
    if isinstance(mask, str):
        Lq, Lk = queries.shape[2], keys.shape[2]
        mask = mx.tril(mx.ones((Lq, Lk))).astype(mx.bool_)
    return mx.fast.scaled_dot_product_attention(queries, keys, values, scale=scale, mask=mask)


def gqa_with_tile(queries, keys, values, *, scale):
    group = queries.shape[1] // keys.shape[1]
    keys, values = mx.tile(keys, (1, group, 1, 1)), mx.tile(values, (1, group, 1, 1))
    return mx.softmax(scale * queries @ keys.swapaxes(-1, -2), axis=-1) @ values


def kv_cache_no_mask(queries, new_keys, new_values, cached_keys, cached_values, *, scale):
    keys = mx.concatenate([cached_keys, new_keys], axis=2)
    values = mx.concatenate([cached_values, new_values], axis=2)
    return mx.fast.scaled_dot_product_attention(queries, keys, values, scale=scale), keys, values


def explicit_not_fused(queries, keys, values, mask=None):
    scale = queries.shape[-1] ** -0.5
    return mhacourse.scaled_dot_product_attention(queries, keys, values, scale=scale, mask=mask)


def projection_shapes_value_default_dims(dims, num_heads, query_input_dims=None, key_input_dims=None,
                                         value_input_dims=None, value_dims=None, value_output_dims=None):
    value_dims = value_dims or dims
    return {
        "query_proj": (dims, query_input_dims or dims),
        "key_proj": (dims, key_input_dims or dims),
        "value_proj": (value_dims, value_input_dims or dims),
        "out_proj": (value_output_dims or dims, value_dims),
    }


class FullLayer(nn.Module):
    """A correct layer with switches for typical mistakes."""

    def __init__(self, dims, num_heads, query_input_dims=None, key_input_dims=None,
                 value_input_dims=None, value_dims=None, value_output_dims=None, bias=False):
        super().__init__()
        key_input_dims = key_input_dims or dims
        value_dims = value_dims or dims
        self.num_heads = num_heads
        self.query_proj = nn.Linear(query_input_dims or dims, dims, bias=self.use_bias(bias))
        self.key_proj = nn.Linear(key_input_dims, dims, bias=self.use_bias(bias))
        self.value_proj = nn.Linear(self.value_inputs(dims, key_input_dims, value_input_dims), value_dims,
                                    bias=self.use_bias(bias))
        self.out_proj = nn.Linear(value_dims, value_output_dims or dims, bias=self.use_bias(bias))

    def use_bias(self, bias):
        return bias

    def value_inputs(self, dims, key_input_dims, value_input_dims):
        return value_input_dims or key_input_dims

    def scale(self, head_dims):
        return 1 / math.sqrt(head_dims)

    def split(self, x):
        B, L, _ = x.shape
        return x.reshape(B, L, self.num_heads, -1).transpose(0, 2, 1, 3)  # (B, H, L, Dh)

    def attend(self, q, k, v, mask):
        return mx.fast.scaled_dot_product_attention(q, k, v, scale=self.scale(q.shape[-1]), mask=mask)

    def merge(self, out):
        B, H, L, Dv = out.shape
        return out.transpose(0, 2, 1, 3).reshape(B, L, H * Dv)  # (B, L, H * Dv)

    def __call__(self, queries, keys, values, mask=None):
        q = self.split(self.query_proj(queries))
        k = self.split(self.key_proj(keys))
        v = self.split(self.value_proj(values))
        return self.out_proj(self.merge(self.attend(q, k, v, mask)))


class LayerForgotBias(FullLayer):
    def use_bias(self, bias):
        return False


class LayerValueInputFromDims(FullLayer):
    def value_inputs(self, dims, key_input_dims, value_input_dims):
        return value_input_dims or dims


class LayerScaleFromDims(FullLayer):
    def scale(self, head_dims):
        return 1 / math.sqrt(head_dims * self.num_heads)


class LayerSplitWithoutTranspose(FullLayer):
    def split(self, x):
        B, L, D = x.shape
        return x.reshape(B, self.num_heads, L, D // self.num_heads)


class BlockWithoutCausalMask(nn.Module):
    def __init__(self, dims, num_heads):
        super().__init__()
        self.attention_norm = nn.LayerNorm(dims)
        self.attention = mhacourse.MultiHeadAttention(dims, num_heads)
        self.mlp_norm = nn.LayerNorm(dims)
        self.mlp = nn.Sequential(nn.Linear(dims, 4 * dims), nn.GELU(), nn.Linear(4 * dims, dims))

    def __call__(self, x):
        h = self.attention_norm(x)
        x = x + self.attention(h, h, h)
        return x + self.mlp(self.mlp_norm(x))


def torch_weights_transposed(in_proj_weight, in_proj_bias, out_proj_weight, out_proj_bias):
    E = out_proj_weight.shape[0]
    out = {}
    for i, name in enumerate(["query_proj", "key_proj", "value_proj"]):
        out[name] = {"weight": mx.array(in_proj_weight[i * E:(i + 1) * E].T),
                     "bias": mx.array(in_proj_bias[i * E:(i + 1) * E])}
    out["out_proj"] = {"weight": mx.array(out_proj_weight.T), "bias": mx.array(out_proj_bias)}
    return out


def torch_masks_not_inverted(attn_mask, key_padding_mask):
    return mx.array(attn_mask)[None, None] & mx.array(key_padding_mask)[:, None, None, :]


def reversal_without_shift(digits):
    sep = mx.full((digits.shape[0], 1), 10, dtype=digits.dtype)
    tokens = mx.concatenate([digits, sep, digits[:, ::-1]], axis=1)
    return tokens[:, :-1], tokens[:, :-1]


def copy_weights_backwards(source, target):
    source.update(target.parameters())
    return target


def sdpa_softmax_axis_1(queries, keys, values, *, scale, mask=None):
    scores = scale * (queries @ keys.swapaxes(-1, -2))
    if mask is not None:
        scores = scores + mask
    return mx.softmax(scores, axis=1) @ values  # axis 1 is the keys in 2-D, the heads in 4-D


def sdpa_mask_before_scale(queries, keys, values, *, scale, mask=None):
    scores = queries @ keys.swapaxes(-1, -2)
    if mask is not None:
        scores = scores + mask
    return mx.softmax(scores * scale, axis=-1) @ values


def sdpa_returns_weights(queries, keys, values, *, scale, mask=None):
    scores = scale * (queries @ keys.swapaxes(-1, -2))
    if mask is not None:
        scores = scores + mask
    return mx.softmax(scores, axis=-1)


def masked_attention_fill_zero(queries, keys, values, *, scale, mask=None):
    scores = scale * (queries @ keys.swapaxes(-1, -2))
    if isinstance(mask, str):
        Lq, Lk = scores.shape[-2:]
        mask = mx.tril(mx.ones((Lq, Lk)), k=Lk - Lq).astype(mx.bool_)
    if mask is not None and mask.dtype == mx.bool_:
        scores = mx.where(mask, scores, 0.0)
    elif mask is not None:
        scores = scores + mask
    return mx.softmax(scores, axis=-1) @ values


def padding_mask_three_axes(lengths, n_keys):
    return (mx.arange(n_keys)[None] < mx.array(lengths)[:, None])[:, None, :]


def causal_boolean_triu(n_queries, n_keys):
    return mx.triu(mx.ones((n_queries, n_keys), dtype=mx.bool_))


class LayerScaleOverHeadDims(FullLayer):
    def scale(self, head_dims):
        return 1 / head_dims


class LayerMergeInterleaved(FullLayer):
    def merge(self, out):
        B, H, L, Dv = out.shape
        return out.transpose(0, 2, 3, 1).reshape(B, L, H * Dv)  # features and heads interleaved


class LayerBooleanMaskAdded(FullLayer):
    def attend(self, q, k, v, mask):
        scores = self.scale(q.shape[-1]) * (q @ k.swapaxes(-1, -2))
        if mask is not None:
            scores = scores + mask  # a boolean mask adds 1/0
        return mx.softmax(scores, axis=-1) @ v


MISTAKES = [
    ("scaled_dot_product_attention", sdpa_softmax_axis_1, "softmax_axis"),
    ("scaled_dot_product_attention", sdpa_mask_before_scale, "mask_scaled"),
    ("scaled_dot_product_attention", sdpa_returns_weights, "no_values"),
    ("masked_attention", masked_attention_fill_zero, "mask_fill_zero"),
    ("padding_mask", padding_mask_three_axes, "padding_shape"),
    ("causal_boolean_mask", causal_boolean_triu, "causal_transposed"),
    ("multi_head_attention", LayerScaleOverHeadDims, "scale_not_sqrt"),
    ("multi_head_attention", LayerMergeInterleaved, "merge_interleaved"),
    ("multi_head_attention", LayerBooleanMaskAdded, "boolean_added"),
    ("scaled_dot_product_attention", sdpa_no_scale, "missing_scale"),
    ("scaled_dot_product_attention", sdpa_softmax_over_queries, "softmax_axis"),
    ("scaled_dot_product_attention", sdpa_mask_after_softmax, "mask_after_softmax"),
    ("softmax", softmax_without_max, "softmax_unstable"),
    ("split_heads", split_heads_direct_reshape, "split_no_transpose"),
    ("split_heads", split_heads_interleaved, "split_interleaved"),
    ("merge_heads", merge_heads_direct_reshape, "merge_no_transpose"),
    ("causal_mask", causal_mask_neg_inf, "causal_neg_inf"),
    ("causal_mask", causal_mask_float32_min, "float16_overflow"),
    ("causal_boolean_mask", causal_boolean_upper_left, "causal_upper_left"),
    ("padding_mask", padding_mask_torch_style, "padding_inverted"),
    ("masked_attention", masked_attention_inverted, "inverted_boolean_mask"),
    ("masked_attention", masked_attention_neg_inf, "neg_inf_fully_masked"),
    ("masked_attention", masked_attention_upper_left, "causal_upper_left"),
    ("grouped_query_attention", gqa_with_tile, "gqa_tile"),
    ("kv_cache_attention", kv_cache_no_mask, "kv_no_causal"),
    ("fused_attention", explicit_not_fused, "not_fused"),
    ("projection_shapes", projection_shapes_value_default_dims, "value_input_default"),
    ("multi_head_attention", LayerForgotBias, "forgot_bias"),
    ("multi_head_attention", LayerValueInputFromDims, "value_input_default"),
    ("multi_head_attention", LayerScaleFromDims, "scale_full_dims"),
    ("multi_head_attention", LayerSplitWithoutTranspose, "split_no_transpose"),
    ("transformer_block", BlockWithoutCausalMask, "block_not_causal"),
    ("torch_in_proj_to_mlx", torch_weights_transposed, "torch_transposed"),
    ("torch_mask_to_mlx", torch_masks_not_inverted, "inverted_boolean_mask"),
    ("reversal_batch", reversal_without_shift, "reversal_no_shift"),
    ("copy_weights", copy_weights_backwards, "copy_reversed"),
]


@pytest.mark.parametrize("exercise_id, answer, hint_id", MISTAKES,
                         ids=[f"{e}-{h}" for e, _, h in MISTAKES])
def test_mistake_is_rejected_with_its_hint(exercise_id, answer, hint_id):
    result = check(exercise_id, answer)
    assert not result.passed
    assert result.points == 0
    assert result.hint_id == hint_id, result.report()
    assert result.hint and result.hint in result.report()


def test_hint_text_points_at_the_mistake():
    assert "scale" in check("scaled_dot_product_attention", sdpa_no_scale).hint
    assert "finfo" in check("causal_mask", causal_mask_neg_inf).hint
    assert "lower right" in check("causal_boolean_mask", causal_boolean_upper_left).hint
    assert "mx.repeat" in check("grouped_query_attention", gqa_with_tile).hint
    assert "key_input_dims" in check("multi_head_attention", LayerValueInputFromDims).hint


def test_shape_mistake_reports_both_shapes():
    def forgot_transpose(x, num_heads):
        B, L, D = x.shape
        return x.reshape(B, L, num_heads, D // num_heads)

    result = check("split_heads", forgot_transpose)
    assert result.hint_id == "split_forgot_transpose"
    text = result.report()
    assert "(1, 4, 2, 4)" in text and "(1, 2, 4, 4)" in text


# ---------------------------------------------------------------------------
# Different correct answers, all accepted.


def sdpa_einsum(queries, keys, values, *, scale, mask=None):
    scores = mx.einsum("bhqd,bhkd->bhqk", queries, keys) * scale
    if mask is not None:
        scores = scores + mask
    return mx.einsum("bhqk,bhkd->bhqd", mx.softmax(scores, axis=-1), values)


def sdpa_fused(queries, keys, values, *, scale, mask=None):
    return mx.fast.scaled_dot_product_attention(queries, keys, values, scale=scale, mask=mask)


def sdpa_numpy_style(queries, keys, values, *, scale, mask=None):
    scores = mx.matmul(queries, mx.swapaxes(keys, -1, -2)) * scale
    if mask is not None:
        scores = scores + mask
    scores = scores - mx.max(scores, axis=-1, keepdims=True)
    weights = mx.exp(scores)
    weights = weights / mx.sum(weights, axis=-1, keepdims=True)
    return mx.matmul(weights, values)


def masked_attention_large_negative(queries, keys, values, *, scale, mask=None):
    scores = (queries * scale) @ keys.swapaxes(-1, -2)
    if isinstance(mask, str):
        Lq, Lk = scores.shape[-2:]
        mask = mx.arange(Lk)[None] <= mx.arange(Lq)[:, None] + (Lk - Lq)
    if mask is not None and mask.dtype == mx.bool_:
        scores = mx.where(mask, scores, -1e9)
    elif mask is not None:
        scores = scores + mask
    return mx.softmax(scores, axis=-1) @ values


def masked_attention_fused(queries, keys, values, *, scale, mask=None):
    return mx.fast.scaled_dot_product_attention(queries, keys, values, scale=scale, mask=mask)


def split_heads_unflatten(x, num_heads):
    return mx.unflatten(x, -1, (num_heads, -1)).swapaxes(1, 2)


def split_heads_numpy_roundtrip_free(x, num_heads):
    return mx.stack(mx.split(x, num_heads, axis=-1), axis=1)


def merge_heads_concatenate(x):
    return mx.concatenate([x[:, h] for h in range(x.shape[1])], axis=-1)


def causal_mask_from_mlx(n, dtype):
    return nn.MultiHeadAttention.create_additive_causal_mask(n, dtype)


def causal_mask_triu(n, dtype):
    return mx.triu(mx.full((n, n), mx.finfo(dtype).min, dtype=dtype), k=1)


def gqa_via_reshape(queries, keys, values, *, scale):
    B, Hq, Lq, D = queries.shape
    Hkv = keys.shape[1]
    q = queries.reshape(B, Hkv, Hq // Hkv, Lq, D)  # (B, Hkv, G, Lq, D)
    scores = (q * scale) @ keys[:, :, None].swapaxes(-1, -2)  # (B, Hkv, G, Lq, Lk)
    out = mx.softmax(scores, axis=-1) @ values[:, :, None]  # (B, Hkv, G, Lq, Dv)
    return out.reshape(B, Hq, Lq, -1)


def parameter_count_from_layer(dims, num_heads, bias=False):
    from mlx.utils import tree_flatten

    return sum(p.size for _, p in tree_flatten(nn.MultiHeadAttention(dims, num_heads, bias=bias).parameters()))


CORRECT = [
    ("scaled_dot_product_attention", sdpa_einsum),
    ("scaled_dot_product_attention", sdpa_fused),
    ("scaled_dot_product_attention", sdpa_numpy_style),
    ("masked_attention", masked_attention_large_negative),
    ("masked_attention", masked_attention_fused),
    ("split_heads", split_heads_unflatten),
    ("split_heads", split_heads_numpy_roundtrip_free),
    ("merge_heads", merge_heads_concatenate),
    ("causal_mask", causal_mask_from_mlx),
    ("causal_mask", causal_mask_triu),
    ("grouped_query_attention", gqa_via_reshape),
    ("grouped_query_attention", sdpa_fused),
    ("multi_head_attention", FullLayer),
    ("multi_head_attention", mhacourse.MultiHeadAttention),
    ("parameter_count", parameter_count_from_layer),
]


@pytest.mark.parametrize("exercise_id, answer", CORRECT, ids=[f"{e}-{a.__name__}" for e, a in CORRECT])
def test_correct_variant_is_accepted(exercise_id, answer):
    result = check(exercise_id, answer)
    assert result.passed, result.report()
    assert result.points == result.max_points > 0
    assert result.hint_id is None


def test_numpy_answer_is_rejected_with_a_clear_message():
    def numpy_split(x, num_heads):
        B, L, D = x.shape
        return np.array(x).reshape(B, L, num_heads, -1).transpose(0, 2, 1, 3)

    result = check("split_heads", numpy_split)
    assert not result.passed
    assert "NumPy" in result.report()
