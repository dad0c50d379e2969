"""The catalogue of typical mistakes: each is rejected with the hint that names it.

Every wrong answer below is written the way a learner would write it (not
taken from the checks' own variants); every correct variant must pass.
"""

import math
import time
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import nbformat
import numpy as np
import pytest

import mhacourse
from mhacourse.grading import check
from mhacourse.grading.hints import match_error

ROOT = Path(__file__).resolve().parents[1]


def _notebook_class(path, cell_id, name):
    """A class defined in a cell of an exercise source notebook, exactly as the learner sees it."""
    cell = next(c for c in nbformat.read(ROOT / path, as_version=4).cells if c.get("id") == cell_id)
    namespace = {"mx": mx, "nn": nn, "math": math}
    exec(compile(cell.source, str(path), "exec"), namespace)
    return namespace[name]


BuggyAttention = _notebook_class("exercise_sources/06_drop_in_parity.ipynb", "ex06-03", "BuggyAttention")

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
    scores = (queries * scale) @ keys.swapaxes(-1, -2)
    if mask is not None:
        scores = mx.where(mask, scores, -mx.inf) if mask.dtype == mx.bool_ else scores + mask
    return mx.softmax(scores, axis=-1) @ values


def gqa_with_tile(queries, keys, values, *, scale):
    group = queries.shape[1] // keys.shape[1]
    keys, values = mx.tile(keys, (1, group, 1, 1)), mx.tile(values, (1, group, 1, 1))
    return mx.softmax(scale * queries @ keys.swapaxes(-1, -2), axis=-1) @ values


def kv_cache_no_mask(queries, new_keys, new_values, cached_keys, cached_values, *, scale):
    keys = mx.concatenate([cached_keys, new_keys], axis=2)
    values = mx.concatenate([cached_values, new_values], axis=2)
    return mx.fast.scaled_dot_product_attention(queries, keys, values, scale=scale), keys, values


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


# ---------------------------------------------------------------------------
# PyTorch habits and other mistakes recognised from the error they raise.


def split_heads_torch_transpose(x, num_heads):
    B, L, dims = x.shape
    return x.reshape(B, L, num_heads, -1).transpose(1, 2)


def split_heads_torch_view(x, num_heads):
    B, L, dims = x.shape
    return x.view(B, L, num_heads, dims // num_heads).swapaxes(1, 2)


def split_heads_torch_size(x, num_heads):
    B, L = x.shape[:2]
    head_dims = x.size(-1) // num_heads
    return x.reshape(B, L, num_heads, head_dims).swapaxes(1, 2)


def split_heads_torch_permute(x, num_heads):
    B, L, dims = x.shape
    return x.reshape(B, L, num_heads, -1).permute(0, 2, 1, 3)


def split_heads_full_dims(x, num_heads):
    B, L, dims = x.shape
    return x.reshape(B, L, num_heads, dims).transpose(0, 2, 1, 3)


def merge_heads_torch_contiguous(x):
    B, H, L, D_h = x.shape
    return x.transpose(0, 2, 1, 3).contiguous().reshape(B, L, H * D_h)


def scores_with_dot_T(queries, keys, *, scale):
    return queries @ keys.T * scale


def scores_without_transpose(queries, keys, *, scale):
    return queries @ keys * scale


def sdpa_torch_transpose(queries, keys, values, *, scale, mask=None):
    scores = queries @ keys.transpose(-2, -1) * scale
    if mask is not None:
        scores = scores + mask
    return mx.softmax(scores, axis=-1) @ values


def softmax_torch_keepdim(x):
    e = mx.exp(x - x.max(axis=-1, keepdim=True))
    return e / e.sum(axis=-1, keepdim=True)


def softmax_torch_dim(x):
    e = mx.exp(x - mx.max(x, axis=-1, keepdims=True))
    return e / mx.sum(e, dim=-1, keepdims=True)


def softmax_with_torch(x):
    return torch.softmax(x, dim=-1)  # noqa: F821 - the learner's habit


def masked_attention_masked_fill(queries, keys, values, *, scale, mask=None):
    scores = scale * queries @ keys.swapaxes(-1, -2)
    if isinstance(mask, str):
        Lq, Lk = scores.shape[-2:]
        mask = mx.tril(mx.ones((Lq, Lk)), k=Lk - Lq).astype(mx.bool_)
    if mask is not None and mask.dtype == mx.bool_:
        scores = scores.masked_fill(~mask, mx.finfo(scores.dtype).min)
    elif mask is not None:
        scores = scores + mask
    return mx.softmax(scores, axis=-1) @ values


def masked_attention_finfo_of_mask(queries, keys, values, *, scale, mask=None):
    scores = scale * queries @ keys.swapaxes(-1, -2)
    if isinstance(mask, str):
        Lq, Lk = scores.shape[-2:]
        mask = mx.tril(mx.ones((Lq, Lk)), k=Lk - Lq).astype(mx.bool_)
    if mask is not None and mask.dtype == mx.bool_:
        scores = mx.where(mask, scores, mx.finfo(mask.dtype).min)
    elif mask is not None:
        scores = scores + mask
    return mx.softmax(scores, axis=-1) @ values


def padding_mask_unsqueeze(lengths, n_keys):
    keep = mx.arange(n_keys)[None] < mx.array(lengths)[:, None]
    return keep.unsqueeze(1).unsqueeze(2)


def kv_cache_is_causal(queries, new_keys, new_values, cached_keys, cached_values, *, scale):
    keys = mx.concatenate([cached_keys, new_keys], axis=2)
    values = mx.concatenate([cached_values, new_values], axis=2)
    out = mx.fast.scaled_dot_product_attention(queries, keys, values, scale=scale, is_causal=True)
    return out, keys, values


def kv_cache_torch_cat(queries, new_keys, new_values, cached_keys, cached_values, *, scale):
    keys = mx.cat([cached_keys, new_keys], axis=2)
    values = mx.cat([cached_values, new_values], axis=2)
    return mx.fast.scaled_dot_product_attention(queries, keys, values, scale=scale, mask="causal"), keys, values


def causal_boolean_torch_bool(n_queries, n_keys):
    return mx.tril(mx.ones((n_queries, n_keys), dtype=mx.bool), k=n_keys - n_queries)


def causal_mask_torch_diagonal(n, dtype):
    return mx.triu(mx.full((n, n), mx.finfo(dtype).min, dtype=dtype), diagonal=1)


def causal_mask_shape_not_tuple(n, dtype):
    return mx.triu(mx.ones(n, n), k=1).astype(dtype) * mx.finfo(dtype).min


def gqa_repeat_interleave(queries, keys, values, *, scale):
    group = queries.shape[1] // keys.shape[1]
    keys, values = keys.repeat_interleave(group, dim=1), values.repeat_interleave(group, dim=1)
    return mx.softmax(scale * queries @ keys.swapaxes(-1, -2), axis=-1) @ values


def boolean_to_additive_torch_float(mask, dtype):
    return (1.0 - mask.float()) * mx.finfo(dtype).min


def torch_masks_inverting_floats(attn_mask, key_padding_mask):
    attn = mx.array(attn_mask).astype(mx.float32)  # (L, S)
    padding = mx.array(key_padding_mask).astype(mx.float32)[:, None, None, :]  # (B, 1, 1, S)
    return ~attn & ~padding


def cross_attention_2d_mask(layer, decoder_states, encoder_states, encoder_lengths):
    keep = mx.arange(encoder_states.shape[1])[None] < mx.array(encoder_lengths)[:, None]  # (B, L_k)
    return layer(decoder_states, encoder_states, encoder_states, mask=keep)


def decode_fast_without_scale(query, new_key, new_value, cached_keys, cached_values, *, scale):
    keys = mx.concatenate([cached_keys, new_key], axis=2)
    values = mx.concatenate([cached_values, new_value], axis=2)
    return mx.fast.scaled_dot_product_attention(query, keys, values), keys, values


# ---------------------------------------------------------------------------
# Wrong outputs of the harder exercises and the newly recognised mistakes.


def sdpa_scale_on_output(queries, keys, values, *, scale, mask=None):
    scores = queries @ keys.swapaxes(-1, -2)
    if mask is not None:
        scores = scores + mask
    return scale * (mx.softmax(scores, axis=-1) @ values)


def softmax_global_max(x):
    e = mx.exp(x - x.max())
    return e / e.sum(axis=-1, keepdims=True)


class HeadScaleOverDims(nn.Module):
    def __init__(self, dims):
        super().__init__()
        self.query_proj = nn.Linear(dims, dims, bias=False)
        self.key_proj = nn.Linear(dims, dims, bias=False)
        self.value_proj = nn.Linear(dims, dims, bias=False)

    def __call__(self, queries, keys, values, mask=None):
        q, k, v = self.query_proj(queries), self.key_proj(keys), self.value_proj(values)
        scores = q @ k.swapaxes(-1, -2) / q.shape[-1]
        if mask is not None:
            scores = scores + mask
        return mx.softmax(scores, axis=-1) @ v


class BasicProjections(nn.Module):
    """The four bias-free projections of a basic layer; subclasses write ``__call__``."""

    def __init__(self, dims, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.query_proj = nn.Linear(dims, dims, bias=False)
        self.key_proj = nn.Linear(dims, dims, bias=False)
        self.value_proj = nn.Linear(dims, dims, bias=False)
        self.out_proj = nn.Linear(dims, dims, bias=False)


class BasicScaleOverDims(BasicProjections):
    def __call__(self, queries, keys, values, mask=None):
        B, L_q, dims = queries.shape
        q = self.query_proj(queries).reshape(B, L_q, self.num_heads, -1).swapaxes(1, 2)
        k = self.key_proj(keys).reshape(B, keys.shape[1], self.num_heads, -1).swapaxes(1, 2)
        v = self.value_proj(values).reshape(B, values.shape[1], self.num_heads, -1).swapaxes(1, 2)
        out = mx.fast.scaled_dot_product_attention(q, k, v, scale=1 / dims, mask=mask)
        return self.out_proj(out.swapaxes(1, 2).reshape(B, L_q, dims))


class LayerScaleFromValueDims(FullLayer):
    def attend(self, q, k, v, mask):
        return mx.fast.scaled_dot_product_attention(q, k, v, scale=v.shape[-1] ** -0.5, mask=mask)


def count_value_input_from_dims(dims, num_heads, query_input_dims=None, key_input_dims=None,
                                value_input_dims=None, value_dims=None, value_output_dims=None, bias=False):
    value_dims = value_dims or dims
    out = value_output_dims or dims
    inputs = [query_input_dims or dims, key_input_dims or dims, value_input_dims or dims, value_dims]
    outputs = [dims, dims, value_dims, out]
    return sum(i * o for i, o in zip(inputs, outputs)) + (sum(outputs) if bias else 0)


def count_biases_by_input(dims, num_heads, query_input_dims=None, key_input_dims=None,
                          value_input_dims=None, value_dims=None, value_output_dims=None, bias=False):
    key_input_dims = key_input_dims or dims
    value_dims = value_dims or dims
    inputs = [query_input_dims or dims, key_input_dims, value_input_dims or key_input_dims, value_dims]
    outputs = [dims, dims, value_dims, value_output_dims or dims]
    return sum(i * o for i, o in zip(inputs, outputs)) + (sum(inputs) if bias else 0)


def attention_shapes_transposed_scores(B, L_q, L_k, dims, value_dims):
    return {"scores": (B, L_k, L_q), "weights": (B, L_k, L_q), "output": (B, L_q, value_dims)}


def head_shapes_before_transpose(B, L_q, L_k, dims, num_heads):
    D_h = dims // num_heads
    return {"queries": (B, L_q, num_heads, D_h), "scores": (B, num_heads, L_q, L_k),
            "heads_output": (B, L_q, num_heads, D_h), "merged": (B, L_q, dims)}


def mask_shapes_2d_padding(B, H, L_q, L_k):
    return {"padding": (B, L_k), "causal": (L_q, L_k), "padding_and_causal": (B, 1, L_q, L_k),
            "masked_scores": (B, H, L_q, L_k)}


def layer_shapes_values_like_keys(B, L_q, L_k, dims, num_heads, query_input_dims=None, key_input_dims=None,
                                  value_input_dims=None, value_dims=None, value_output_dims=None):
    H, D_h = num_heads, dims // num_heads
    return {"queries": (B, H, L_q, D_h), "keys": (B, H, L_k, D_h), "values": (B, H, L_k, D_h),
            "scores": (B, H, L_q, L_k), "heads_output": (B, H, L_q, D_h), "merged": (B, L_q, dims),
            "output": (B, L_q, value_output_dims or dims)}


def online_without_rescaling(queries, keys, values, *, scale, tile_size):
    B, H, L_q, _ = queries.shape
    m = mx.full((B, H, L_q, 1), -mx.inf)
    total = mx.zeros((B, H, L_q, 1))
    acc = mx.zeros((B, H, L_q, values.shape[-1]))
    for start in range(0, keys.shape[2], tile_size):
        s = (queries * scale) @ keys[:, :, start:start + tile_size].swapaxes(-1, -2)
        m = mx.maximum(m, s.max(axis=-1, keepdims=True))
        p = mx.exp(s - m)
        total = total + p.sum(axis=-1, keepdims=True)  # the old sum was under the old maximum
        acc = acc + p @ values[:, :, start:start + tile_size]
    return acc / total


def online_without_dividing(queries, keys, values, *, scale, tile_size):
    B, H, L_q, _ = queries.shape
    m = mx.full((B, H, L_q, 1), -mx.inf)
    acc = mx.zeros((B, H, L_q, values.shape[-1]))
    for start in range(0, keys.shape[2], tile_size):
        s = (queries * scale) @ keys[:, :, start:start + tile_size].swapaxes(-1, -2)
        new_m = mx.maximum(m, s.max(axis=-1, keepdims=True))
        acc = acc * mx.exp(m - new_m) + mx.exp(s - new_m) @ values[:, :, start:start + tile_size]
        m = new_m
    return acc


def decode_forgets_to_grow_cache(query, new_key, new_value, cached_keys, cached_values, *, scale):
    keys = mx.concatenate([cached_keys, new_key], axis=2)
    values = mx.concatenate([cached_values, new_value], axis=2)
    out = mx.fast.scaled_dot_product_attention(query, keys, values, scale=scale)
    return out, cached_keys, cached_values


def decode_tiles_the_heads(query, new_key, new_value, cached_keys, cached_values, *, scale):
    keys = mx.concatenate([cached_keys, new_key], axis=2)
    values = mx.concatenate([cached_values, new_value], axis=2)
    group = query.shape[1] // keys.shape[1]
    k, v = mx.tile(keys, (1, group, 1, 1)), mx.tile(values, (1, group, 1, 1))
    return mx.softmax(scale * query @ k.swapaxes(-1, -2), axis=-1) @ v, keys, values


def decode_only_new_token(query, new_key, new_value, cached_keys, cached_values, *, scale):
    keys = mx.concatenate([cached_keys, new_key], axis=2)
    values = mx.concatenate([cached_values, new_value], axis=2)
    out = mx.fast.scaled_dot_product_attention(query, new_key, new_value, scale=scale)
    return out, keys, values


def time_without_eval(fn, inputs, repeats):
    fn(*inputs)
    start = time.perf_counter()
    for _ in range(repeats):
        out = fn(*inputs)  # noqa: F841 - lazy: nothing is computed
    return (time.perf_counter() - start) / repeats


def time_the_total(fn, inputs, repeats):
    mx.eval(fn(*inputs))
    start = time.perf_counter()
    for _ in range(repeats):
        mx.eval(fn(*inputs))
    return time.perf_counter() - start


class DebugScaleFixedOnly(BuggyAttention):
    def __call__(self, queries, keys, values, mask=None):
        B, L_q, dims = queries.shape
        q = self._split(self.query_proj(queries))
        k = self._split(self.key_proj(keys))
        v = self._split(self.value_proj(values))
        scores = (q @ k.swapaxes(-1, -2)) * q.shape[-1] ** -0.5
        if mask is not None:
            scores = scores + mask
        out = mx.softmax(scores, axis=-1) @ v
        return self.out_proj(out.transpose(0, 2, 1, 3).reshape(B, L_q, -1))


class DebugSplitFixedOnly(BuggyAttention):
    def _split(self, x):
        B, L, dims = x.shape
        return x.reshape(B, L, self.num_heads, -1).transpose(0, 2, 1, 3)



# ---------------------------------------------------------------------------
# Mistakes whose hints pointed the wrong way, or were missing (issue: lessons v3)


class BasicKeysFromQueries(BasicProjections):
    def __call__(self, queries, keys, values, mask=None):
        B, L_q, dims = queries.shape
        q = self.query_proj(queries).reshape(B, L_q, self.num_heads, -1).swapaxes(1, 2)
        k = self.key_proj(queries).reshape(B, L_q, self.num_heads, -1).swapaxes(1, 2)  # the bug: queries
        v = self.value_proj(values).reshape(B, values.shape[1], self.num_heads, -1).swapaxes(1, 2)
        scores = (q * q.shape[-1] ** -0.5) @ k.swapaxes(-1, -2)
        if mask is not None:
            scores = scores + mask
        out = (mx.softmax(scores, axis=-1) @ v).swapaxes(1, 2).reshape(B, L_q, dims)
        return self.out_proj(out)


class LayerKeysSplitWithQueryLength(FullLayer):
    def __call__(self, queries, keys, values, mask=None):
        B, L_q, _ = queries.shape
        q = self.split(self.query_proj(queries))
        k = self.key_proj(keys).reshape(B, L_q, self.num_heads, -1).transpose(0, 2, 1, 3)  # the bug: L_q
        v = self.split(self.value_proj(values))
        return self.out_proj(self.merge(self.attend(q, k, v, mask)))


def cross_attention_roles_swapped(layer, decoder_states, encoder_states, encoder_lengths):
    keep = mx.arange(encoder_states.shape[1])[None] < mx.array(encoder_lengths)[:, None]  # (B, L_k)
    return layer(encoder_states, decoder_states, decoder_states, mask=keep[:, None, None, :])


def online_sum_not_rescaled(queries, keys, values, *, scale, tile_size):
    queries = queries * scale
    m = mx.full((*queries.shape[:3], 1), -mx.inf)
    total = mx.zeros_like(m)
    acc = mx.zeros((*queries.shape[:3], values.shape[-1]))
    for start in range(0, keys.shape[2], tile_size):
        scores = queries @ keys[:, :, start:start + tile_size].swapaxes(-1, -2)
        new_m = mx.maximum(m, scores.max(axis=-1, keepdims=True))
        weights = mx.exp(scores - new_m)
        acc = acc * mx.exp(m - new_m) + weights @ values[:, :, start:start + tile_size]
        total = total + weights.sum(axis=-1, keepdims=True)  # the bug: the old sum is not rescaled
        m = new_m
    return acc / total


def decode_caches_repeated_heads(query, new_key, new_value, cached_keys, cached_values, *, scale):
    group = query.shape[1] // new_key.shape[1]
    keys = mx.concatenate([cached_keys, new_key], axis=2)
    values = mx.concatenate([cached_values, new_value], axis=2)
    keys, values = mx.repeat(keys, group, axis=1), mx.repeat(values, group, axis=1)
    weights = mx.softmax((query * scale) @ keys.swapaxes(-1, -2), axis=-1)
    return weights @ values, keys, values  # the bug: the cache comes back with H_q heads


def count_bias_as_four_dims(dims, num_heads, query_input_dims=None, key_input_dims=None, value_input_dims=None,
                            value_dims=None, value_output_dims=None, bias=False):
    q_in, k_in = query_input_dims or dims, key_input_dims or dims
    v_in, v_dims, out = value_input_dims or k_in, value_dims or dims, value_output_dims or dims
    weights = q_in * dims + k_in * dims + v_in * v_dims + v_dims * out
    return weights + (4 * dims if bias else 0)


def torch_split_on_axis_1(in_proj_weight, in_proj_bias, out_proj_weight, out_proj_bias):
    w_q, w_k, w_v = np.split(np.asarray(in_proj_weight), 3, axis=1)
    b_q, b_k, b_v = np.split(np.asarray(in_proj_bias), 3)
    return {name: {"weight": mx.array(w), "bias": mx.array(b)} for name, w, b in (
        ("query_proj", w_q, b_q), ("key_proj", w_k, b_k), ("value_proj", w_v, b_v),
        ("out_proj", np.asarray(out_proj_weight), np.asarray(out_proj_bias)))}


class BlockWithOneNorm(BlockWithoutCausalMask):
    def __call__(self, x):
        h = self.attention_norm(x)
        x = x + self.attention(h, h, h, mask="causal")
        return x + self.mlp(self.attention_norm(x))  # the bug: the attention's norm again


def softmax_with_mx(x):
    return mx.softmax(x, axis=-1)


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
    ("projection_shapes", projection_shapes_value_default_dims, "value_input_default"),
    ("multi_head_attention", LayerForgotBias, "forgot_bias"),
    ("multi_head_attention", LayerValueInputFromDims, "value_input_default"),
    ("multi_head_attention", LayerScaleFromDims, "scale_full_dims"),
    ("multi_head_attention", LayerSplitWithoutTranspose, "split_no_transpose"),
    ("transformer_block", BlockWithoutCausalMask, "block_not_causal"),
    ("torch_in_proj_to_mlx", torch_weights_transposed, "torch_transposed"),
    ("torch_mask_to_mlx", torch_masks_not_inverted, "inverted_boolean_mask"),
    ("reversal_batch", reversal_without_shift, "reversal_no_shift"),
    # PyTorch habits and other errors, recognised from the exception
    ("split_heads", split_heads_torch_transpose, "torch_transpose"),
    ("split_heads", split_heads_torch_view, "torch_view"),
    ("split_heads", split_heads_torch_size, "torch_size"),
    ("split_heads", split_heads_torch_permute, "torch_permute"),
    ("split_heads", split_heads_full_dims, "split_reshape_size"),
    ("merge_heads", merge_heads_torch_contiguous, "torch_contiguous"),
    ("attention_scores", scores_with_dot_T, "dot_T_reverses_axes"),
    ("attention_scores", scores_without_transpose, "matmul_shapes"),
    ("scaled_dot_product_attention", sdpa_torch_transpose, "torch_transpose"),
    ("softmax", softmax_torch_keepdim, "torch_keyword_keepdim"),
    ("softmax", softmax_torch_dim, "torch_keyword_dim"),
    ("softmax", softmax_with_torch, "no_torch"),
    ("masked_attention", masked_attention_masked_fill, "torch_masked_fill"),
    ("masked_attention", masked_attention_finfo_of_mask, "finfo_not_float"),
    ("padding_mask", padding_mask_unsqueeze, "torch_unsqueeze"),
    ("kv_cache_attention", kv_cache_is_causal, "torch_is_causal"),
    ("kv_cache_attention", kv_cache_torch_cat, "torch_cat"),
    ("causal_boolean_mask", causal_boolean_torch_bool, "torch_bool_dtype"),
    ("causal_mask", causal_mask_torch_diagonal, "torch_tril_diagonal"),
    ("causal_mask", causal_mask_shape_not_tuple, "shape_as_tuple"),
    ("grouped_query_attention", gqa_repeat_interleave, "torch_repeat_interleave"),
    ("boolean_to_additive", boolean_to_additive_torch_float, "torch_cast"),
    ("torch_mask_to_mlx", torch_masks_inverting_floats, "invert_float_mask"),
    ("cross_attention", cross_attention_2d_mask, "padding_shape"),
    ("decode_step", decode_fast_without_scale, "fast_scale_required"),
    # wrong outputs
    ("scaled_dot_product_attention", sdpa_scale_on_output, "scale_on_output"),
    ("softmax", softmax_global_max, "softmax_global_max"),
    ("single_head_attention", HeadScaleOverDims, "scale_not_sqrt"),
    ("multi_head_attention_basic", BasicScaleOverDims, "scale_full_dims_not_sqrt"),
    ("multi_head_attention", LayerScaleFromValueDims, "scale_from_value_dims"),
    ("parameter_count", count_value_input_from_dims, "count_value_input_default"),
    ("parameter_count", count_biases_by_input, "count_bias_sizes"),
    ("attention_shapes", attention_shapes_transposed_scores, "shape_scores"),
    ("head_shapes", head_shapes_before_transpose, "shape_heads"),
    ("mask_shapes", mask_shapes_2d_padding, "padding_shape"),
    ("layer_shapes", layer_shapes_values_like_keys, "shape_value_dims"),
    ("online_softmax_attention", online_without_rescaling, "online_no_rescale"),
    ("online_softmax_attention", online_without_dividing, "online_no_normalise"),
    ("online_softmax_attention", online_sum_not_rescaled, "online_sum_not_rescaled"),
    ("multi_head_attention_basic", BasicKeysFromQueries, "keys_from_queries"),
    ("multi_head_attention", LayerKeysSplitWithQueryLength, "split_with_query_length"),
    ("cross_attention", cross_attention_roles_swapped, "cross_roles_swapped"),
    ("decode_step", decode_caches_repeated_heads, "decode_cache_repeated"),
    ("parameter_count", count_bias_as_four_dims, "count_bias_4dims"),
    ("torch_in_proj_to_mlx", torch_split_on_axis_1, "torch_split_axis"),
    ("transformer_block", BlockWithOneNorm, "block_shared_norm"),
    ("softmax", softmax_with_mx, "policy"),
    ("decode_step", decode_forgets_to_grow_cache, "kv_cache_not_grown"),
    ("decode_step", decode_tiles_the_heads, "gqa_tile"),
    ("decode_step", decode_only_new_token, "decode_no_cache"),
    ("debug_layer", BuggyAttention, "debug_both"),
    ("debug_layer", DebugScaleFixedOnly, "debug_split"),
    ("debug_layer", DebugSplitFixedOnly, "debug_scale"),
    ("time_per_call", time_without_eval, "eval_forgotten"),
    ("time_per_call", time_the_total, "timing_total"),
]


def test_the_catalogue_is_large():
    assert len(MISTAKES) >= 60 and len(CORRECT) >= 20


@pytest.mark.parametrize("exercise_id, answer, hint_id", MISTAKES,
                         ids=[f"{e}-{h}" for e, _, h in MISTAKES])
def test_mistake_gets_its_hint_at_both_tiers(exercise_id, answer, hint_id):
    first = check(exercise_id, answer)
    assert not first.passed and first.points == 0
    assert first.hint_id == hint_id, first.report()
    text = first.report()
    assert first.nudge and f"Hint: {first.nudge}" in text  # tier 1: where to look
    assert first.hint not in text and f"check({exercise_id!r}" in text and "hint=2)" in text

    second = check(exercise_id, answer, hint=2)
    assert second.hint_id == hint_id
    text = second.report()
    assert f"Hint: {second.hint}" in text and "hint=2)" not in text  # tier 2: the fix


def test_hint_text_points_at_the_mistake():
    def fix(exercise_id, answer):
        return check(exercise_id, answer, hint=2).hint

    assert "scale" in fix("scaled_dot_product_attention", sdpa_no_scale)
    assert "finfo" in fix("causal_mask", causal_mask_neg_inf)
    assert "lower right" in fix("causal_boolean_mask", causal_boolean_upper_left)
    assert "mx.repeat" in fix("grouped_query_attention", gqa_with_tile)
    assert "key_input_dims" in fix("multi_head_attention", LayerValueInputFromDims)
    assert "swapaxes(1, 2)" in fix("split_heads", split_heads_torch_transpose)
    assert "swapaxes(-1, -2)" in fix("attention_scores", scores_with_dot_T)
    assert "mask[:, None, None, :]" in fix("cross_attention", cross_attention_2d_mask)
    assert "dims // num_heads" in fix("multi_head_attention", LayerScaleFromValueDims)
    assert "each row's own maximum" in fix("softmax", softmax_global_max)


def test_debugging_exercise_names_the_bugs_that_remain():
    both = check("debug_layer", BuggyAttention, hint=2)
    assert both.hint.startswith("Both bugs remain") and "reshape" in both.hint and "scale" in both.hint
    one = check("debug_layer", DebugScaleFixedOnly, hint=2).hint
    assert one.startswith("One bug remains (the scale is fixed)") and "transpose(0, 2, 1, 3)" in one


@pytest.mark.parametrize("type_name, message, code, hint_id", [
    ("ValueError", "[transpose] Received 2 axes for array with 4 dimensions.", "", "torch_transpose"),
    ("ValueError", "[matmul] Last dimension of first input with shape (1,4,8) must match second to last "
                   "dimension of second input with shape (8,4,1).", "", "dot_T_reverses_axes"),
    ("ValueError", "[matmul] Last dimension of first input with shape (1,4,8) must match second to last "
                   "dimension of second input with shape (1,4,8).", "", "matmul_shapes"),
    ("AttributeError", "'array' object has no attribute 'masked_fill'", "", "torch_masked_fill"),
    ("TypeError", "'int' object is not callable", "d = x.size(-1)", "torch_size"),
    ("TypeError", "softmax(): incompatible function arguments. ...\nInvoked with types: mlx.core.array, "
                  "kwargs = { dim: int }", "", "torch_keyword_dim"),
])
def test_error_hints_work_from_the_type_name_and_message(type_name, message, code, hint_id):
    """Errors come back from the grader's sandbox as text: (type name, message)."""
    found = match_error(type_name, message, code=code)
    assert found is not None and found.hint_id == hint_id
    assert found.nudge and found.hint and found.nudge != found.hint
    assert match_error("KeyError", message) is None


def test_padding_shape_error_hint_only_where_a_mask_is_built():
    message = "[broadcast_shapes] Shapes (2,5) and (2,2,3,5) cannot be broadcast."
    assert match_error("ValueError", message, exercise_id="cross_attention").hint_id == "padding_shape"
    assert match_error("ValueError", message, exercise_id="split_heads") is None


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


def parameter_count_from_layer(dims, num_heads, query_input_dims=None, key_input_dims=None,
                               value_input_dims=None, value_dims=None, value_output_dims=None, bias=False):
    from mlx.utils import tree_flatten

    layer = nn.MultiHeadAttention(dims, num_heads, query_input_dims, key_input_dims, value_input_dims,
                                  value_dims, value_output_dims, bias=bias)
    return sum(p.size for _, p in tree_flatten(layer.parameters()))


# The PyTorch way, still correct in MLX.


def split_heads_torch_way(x, num_heads):
    B, L, dims = x.shape
    return x.reshape(B, L, num_heads, dims // num_heads).swapaxes(1, 2)  # PyTorch's .transpose(1, 2)


def merge_heads_torch_way(x):
    B, H, L, D_h = x.shape
    return x.swapaxes(1, 2).reshape(B, L, -1)  # PyTorch's .transpose(1, 2).contiguous().view(B, L, -1)


def sdpa_torch_way(queries, keys, values, *, scale, mask=None):
    scores = mx.matmul(queries, keys.swapaxes(-2, -1)) * scale  # PyTorch's keys.transpose(-2, -1)
    if mask is not None:
        scores = scores + mask
    return mx.matmul(mx.softmax(scores, axis=-1), values)


def masked_attention_torch_way(queries, keys, values, *, scale, mask=None):
    scores = mx.matmul(queries, keys.swapaxes(-2, -1)) * scale
    if isinstance(mask, str):
        L_q, L_k = scores.shape[-2:]
        mask = mx.tril(mx.ones((L_q, L_k), dtype=mx.bool_), k=L_k - L_q)
    if mask is not None and mask.dtype == mx.bool_:
        scores = mx.where(~mask, mx.finfo(scores.dtype).min, scores)  # PyTorch's masked_fill(~mask, min)
    elif mask is not None:
        scores = scores + mask
    return mx.softmax(scores, axis=-1) @ values


def padding_mask_expand_dims(lengths, n_keys):
    keep = mx.arange(n_keys)[None] < mx.array(lengths)[:, None]  # (B, L_k)
    return mx.expand_dims(keep, (1, 2))  # PyTorch's unsqueeze(1).unsqueeze(2)


def softmax_logsumexp(x):
    return mx.exp(x - mx.logsumexp(x, axis=-1, keepdims=True))


def online_with_tile_list(queries, keys, values, *, scale, tile_size):
    starts = list(range(0, keys.shape[2], tile_size))
    m, total, acc = None, None, None
    for start in starts:
        s = (queries * scale) @ keys[:, :, start:start + tile_size].swapaxes(-1, -2)
        tile_max = s.max(axis=-1, keepdims=True)
        new_m = tile_max if m is None else mx.maximum(m, tile_max)
        p = mx.exp(s - new_m)
        part = p @ values[:, :, start:start + tile_size]
        if m is None:
            total, acc = p.sum(axis=-1, keepdims=True), part
        else:
            c = mx.exp(m - new_m)
            total, acc = c * total + p.sum(axis=-1, keepdims=True), c * acc + part
        m = new_m
    return acc / total


def decode_with_fast(query, new_key, new_value, cached_keys, cached_values, *, scale):
    keys = mx.concatenate([cached_keys, new_key], axis=2)
    values = mx.concatenate([cached_values, new_value], axis=2)
    return mx.fast.scaled_dot_product_attention(query, keys, values, scale=scale), keys, values  # GQA built in


class DebugRewritten(nn.Module):
    def __init__(self, dims, num_heads, bias=False):
        super().__init__()
        self.num_heads = num_heads
        for name in ("query_proj", "key_proj", "value_proj", "out_proj"):
            setattr(self, name, nn.Linear(dims, dims, bias=bias))

    def __call__(self, queries, keys, values, mask=None):
        B, L_q, dims = queries.shape
        q, k, v = (mx.unflatten(proj(x), -1, (self.num_heads, -1)).swapaxes(1, 2)
                   for proj, x in ((self.query_proj, queries), (self.key_proj, keys), (self.value_proj, values)))
        out = mx.fast.scaled_dot_product_attention(q, k, v, scale=q.shape[-1] ** -0.5, mask=mask)
        return self.out_proj(out.swapaxes(1, 2).reshape(B, L_q, dims))


def head_shapes_by_running(B, L_q, L_k, dims, num_heads):
    q = mx.zeros((B, L_q, dims)).reshape(B, L_q, num_heads, -1).swapaxes(1, 2)
    k = mx.zeros((B, L_k, dims)).reshape(B, L_k, num_heads, -1).swapaxes(1, 2)
    scores = q @ k.swapaxes(-1, -2)
    out = scores @ k
    return {"queries": q.shape, "scores": scores.shape, "heads_output": out.shape,
            "merged": out.swapaxes(1, 2).reshape(B, L_q, -1).shape}


def time_with_eval_of_a_list(fn, inputs, repeats):
    mx.eval(fn(*inputs))
    start = time.perf_counter()
    for _ in range(repeats):
        mx.eval([fn(*inputs)])
    return (time.perf_counter() - start) / repeats


def attention_shapes_as_lists(B, L_q, L_k, dims, value_dims):
    return {"scores": [B, L_q, L_k], "weights": [B, L_q, L_k], "output": [B, L_q, value_dims]}


CORRECT = [
    ("scaled_dot_product_attention", sdpa_einsum),
    ("scaled_dot_product_attention", sdpa_numpy_style),
    ("masked_attention", masked_attention_large_negative),
    ("split_heads", split_heads_unflatten),
    ("split_heads", split_heads_numpy_roundtrip_free),
    ("merge_heads", merge_heads_concatenate),
    ("causal_mask", causal_mask_from_mlx),
    ("causal_mask", causal_mask_triu),
    ("grouped_query_attention", gqa_via_reshape),
    ("multi_head_attention", FullLayer),
    ("multi_head_attention", mhacourse.MultiHeadAttention),
    ("parameter_count", parameter_count_from_layer),
    ("split_heads", split_heads_torch_way),
    ("merge_heads", merge_heads_torch_way),
    ("scaled_dot_product_attention", sdpa_torch_way),
    ("masked_attention", masked_attention_torch_way),
    ("padding_mask", padding_mask_expand_dims),
    ("softmax", softmax_logsumexp),
    ("online_softmax_attention", online_with_tile_list),
    ("decode_step", decode_with_fast),
    ("debug_layer", DebugRewritten),
    ("head_shapes", head_shapes_by_running),
    ("attention_shapes", attention_shapes_as_lists),
    ("time_per_call", time_with_eval_of_a_list),
]


@pytest.mark.parametrize("exercise_id, answer", CORRECT, ids=[f"{e}-{a.__name__}" for e, a in CORRECT])
def test_correct_variant_is_accepted(exercise_id, answer):
    result = check(exercise_id, answer)
    assert result.passed, result.report()
    assert result.points == result.max_points > 0
    assert result.hint_id is None


@pytest.mark.parametrize("exercise_id, answer", [("scaled_dot_product_attention", sdpa_fused),
                                                ("masked_attention", masked_attention_fused)])
def test_the_fused_kernel_is_forbidden_where_attention_is_written_by_hand(exercise_id, answer):
    result = check(exercise_id, answer)
    assert (result.passed, result.status, result.hint_id) == (False, "invalid", "policy")
    assert f"uses mx.fast.scaled_dot_product_attention (forbidden in {exercise_id})" in result.message


def test_numpy_answer_is_rejected_with_a_clear_message():
    def numpy_split(x, num_heads):
        B, L, D = x.shape
        return np.array(x).reshape(B, L, num_heads, -1).transpose(0, 2, 1, 3)

    result = check("split_heads", numpy_split)
    assert not result.passed
    assert "NumPy" in result.report()


def test_the_tier_a_notebook_asked_for_is_readable_from_its_cells():
    from mhacourse.grading.hints import tiers_shown

    cells = ['check("split_heads", split_heads)', 'result = check("softmax", softmax, hint=2)',
             "check('merge_heads', merge_heads, hint=1)\ncheck('merge_heads', merge_heads)", "def broken(:"]
    assert tiers_shown(cells) == {"split_heads": 1, "softmax": 2, "merge_heads": 1}
