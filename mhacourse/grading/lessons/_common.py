"""Inputs and deliberately wrong attention variants shared by the lesson checks."""

import math

import mlx.core as mx
import mlx.nn as nn

from .. import properties as props
from ..exercise import Case


def rand(seed, *shape, dtype=mx.float32):
    """Seeded standard-normal inputs of ``shape``."""
    return mx.random.normal(shape, key=mx.random.key(seed)).astype(dtype)


def case(name, *args, check_dtype=True, memory_cap=None, **kwargs):
    """A :class:`Case` whose inputs are rebuilt by calling each callable argument.

    Arguments that are callables (``lambda: rand(...)``) are called on every
    run, so the learner never sees arrays the reference already used.
    """

    def inputs():
        built = [a() if callable(a) and not isinstance(a, type) else a for a in args]
        built_kwargs = {k: (v() if callable(v) and not isinstance(v, type) else v) for k, v in kwargs.items()}
        return tuple(built), built_kwargs

    return Case(name, inputs, check_dtype, memory_cap)


def predicted_wrong(reference, change):
    """A wrong prediction: the dict of shapes ``reference`` returns, updated with ``change(*args, **kwargs)``."""

    def wrong(*args, **kwargs):
        return {**reference(*args, **kwargs), **change(*args, **kwargs)}

    return wrong


def layer_properties(constructor, causal=False):
    """Properties of a self-attention layer built with ``constructor``, called as ``layer(x, x, x)``.

    Without a mask: permutation equivariance and the batch order; with
    ``causal=True`` (``mask="causal"``): causality and the batch order.
    """
    dims = constructor.get("query_input_dims") or constructor["dims"]

    def make(rng):
        return {"x": props.normal(rng, 3, 6, dims)}

    to_call = props.module_call(constructor, ("x", "x", "x"), **({"mask": "causal"} if causal else {}))
    first = (props.causal(make, to_call) if causal else
             props.permutation_equivariant(make, to_call, queries=("x",), keys=()))
    return [first, props.batch_order_invariant(make, to_call)]


def blocked_pattern(seed, n_queries, n_keys):
    """A random boolean mask (True = attend) where every row keeps at least one key."""
    keep = mx.random.uniform(shape=(n_queries, n_keys), key=mx.random.key(seed)) > 0.4
    first = mx.arange(n_keys)[None] == (mx.arange(n_queries)[:, None] % n_keys)  # (L_q, L_k)
    return keep | first


def additive_mask(seed, n_queries, n_keys, dtype=mx.float32):
    """A float mask with small biases and some ``-inf`` entries (each row keeps a key)."""
    bias = -mx.abs(rand(seed + 1, n_queries, n_keys))
    return mx.where(blocked_pattern(seed, n_queries, n_keys), bias, -mx.inf).astype(dtype)


def upper_left_causal(n_queries, n_keys):
    """The causal pattern aligned to the upper left (PyTorch's ``is_causal``)."""
    return mx.arange(n_keys)[None] <= mx.arange(n_queries)[:, None]  # (L_q, L_k)


def lower_right_causal(n_queries, n_keys):
    return mx.arange(n_keys)[None] <= mx.arange(n_queries)[:, None] + (n_keys - n_queries)


def explicit_attention(queries, keys, values, scale, mask=None, *, bug=None):
    """``softmax(q kᵀ · scale + mask) v``, optionally with one deliberate bug.

    Args:
        bug (str, optional): One of ``"missing_scale"``, ``"divide_by_scale"``,
            ``"softmax_axis"``, ``"mask_after_softmax"``, ``"mask_multiplied"``,
            ``"mask_ignored"``, ``"no_softmax"``, ``"inverted_boolean"``,
            ``"boolean_added"``, ``"causal_upper_left"``, ``"neg_inf"``,
            ``"gqa_tile"``, ``"softmax_heads"`` (softmax over axis 1),
            ``"mask_scaled"`` (mask added before the scale), ``"mask_fill_zero"``
            (blocked scores set to 0), ``"no_values"`` (returns the weights),
            ``"times_keys"`` (weights @ keys), ``"scale_on_output"`` (the
            output multiplied by the scale instead of the scores).
    """
    n_q_heads = queries.shape[1]
    if keys.shape[1] != n_q_heads:
        group = n_q_heads // keys.shape[1]
        if bug == "gqa_tile":
            keys, values = mx.tile(keys, (1, group, 1, 1)), mx.tile(values, (1, group, 1, 1))
        else:
            keys, values = mx.repeat(keys, group, axis=1), mx.repeat(values, group, axis=1)
    if bug in ("missing_scale", "scale_on_output"):
        output_scale, scale = scale, 1.0
    elif bug == "divide_by_scale":
        scale = 1.0 / scale
    scores = (queries * (1.0 if bug == "mask_scaled" else scale)) @ keys.swapaxes(-1, -2)  # (B, H, L_q, L_k)
    L_q, L_k = scores.shape[-2:]
    if isinstance(mask, str):
        mask = upper_left_causal(L_q, L_k) if bug == "causal_upper_left" else lower_right_causal(L_q, L_k)
    if mask is not None and bug == "mask_ignored":
        mask = None
    if mask is not None and mask.dtype == mx.bool_:
        if bug == "inverted_boolean":
            mask = ~mask
        if bug == "boolean_added":
            mask = mask.astype(scores.dtype)
        elif bug == "mask_fill_zero":
            scores, mask = mx.where(mask, scores, mx.array(0, scores.dtype)), None
        elif bug != "mask_after_softmax":
            fill = -mx.inf if bug == "neg_inf" else mx.finfo(scores.dtype).min
            mask = mx.where(mask, mx.array(0, scores.dtype), mx.array(fill, scores.dtype))
    if mask is not None and bug not in ("mask_after_softmax", "mask_multiplied"):
        scores = scores + mask
    if mask is not None and bug == "mask_multiplied":
        scores = scores * mask
    if bug == "mask_scaled":
        scores = scores * scale
    if bug == "no_softmax":
        weights = scores
    else:
        axis = {"softmax_axis": -2, "softmax_heads": 1}.get(bug, -1)
        weights = mx.softmax(scores, axis=axis, precise=True)
    if mask is not None and bug == "mask_after_softmax":
        weights = mx.where(mask, weights, 0) if mask.dtype == mx.bool_ else weights + mask
    if bug == "no_values":
        return weights  # (B, H, L_q, L_k)
    output = weights @ (keys if bug == "times_keys" else values)  # (B, H, L_q, D_v)
    return output * output_scale if bug == "scale_on_output" else output


def attention_bug(bug):
    """An answer with the signature ``fn(queries, keys, values, *, scale, mask=None)`` and ``bug``."""

    def wrong(queries, keys, values, *, scale, mask=None):
        return explicit_attention(queries, keys, values, scale, mask, bug=bug)

    wrong.__name__ = f"attention_with_{bug}"
    return wrong


class BuggyMultiHeadAttention(nn.Module):
    """``mlx.nn.MultiHeadAttention``'s constructor and parameters with deliberate bugs.

    Subclasses set ``bugs`` to a tuple (at most one bug of the split, one of
    the merge, one of the scale and one other), each one of
    ``"missing_scale"``, ``"scale_full_dims"``,
    ``"split_no_transpose"``, ``"merge_no_transpose"``, ``"no_out_proj"``,
    ``"softmax_axis"``, ``"swap_key_value_proj"``, ``"mask_ignored"``,
    ``"scale_not_sqrt"``, ``"split_interleaved"``, ``"merge_interleaved"``,
    ``"mask_after_softmax"``, ``"boolean_added"``, ``"softmax_heads"``,
    ``"scale_full_dims_not_sqrt"`` (1/dims), ``"scale_from_value_dims"``.
    """

    bugs = ()

    def __init__(self, dims, num_heads, query_input_dims=None, key_input_dims=None,
                 value_input_dims=None, value_dims=None, value_output_dims=None, bias=False):
        super().__init__()
        query_input_dims = query_input_dims or dims
        key_input_dims = key_input_dims or dims
        value_input_dims = value_input_dims or key_input_dims
        value_dims = value_dims or dims
        value_output_dims = value_output_dims or dims
        self.num_heads = num_heads
        self.query_proj = nn.Linear(query_input_dims, dims, bias=bias)
        self.key_proj = nn.Linear(key_input_dims, dims, bias=bias)
        self.value_proj = nn.Linear(value_input_dims, value_dims, bias=bias)
        self.out_proj = nn.Linear(value_dims, value_output_dims, bias=bias)

    def _split(self, x):
        B, L, dims = x.shape
        H = self.num_heads
        if "split_no_transpose" in self.bugs:
            return x.reshape(B, H, L, dims // H)
        if "split_interleaved" in self.bugs:
            return x.reshape(B, L, dims // H, H).transpose(0, 3, 1, 2)  # (B, H, L, D_h)
        return x.reshape(B, L, H, dims // H).transpose(0, 2, 1, 3)  # (B, H, L, D_h)

    def _merge(self, x):
        B, H, L, D_h = x.shape
        if "merge_no_transpose" in self.bugs:
            return x.reshape(B, L, H * D_h)
        if "merge_interleaved" in self.bugs:
            return x.transpose(0, 2, 3, 1).reshape(B, L, H * D_h)  # (B, L, D_h * H)
        return x.transpose(0, 2, 1, 3).reshape(B, L, H * D_h)  # (B, L, H * D_h)

    def __call__(self, queries, keys, values, mask=None):
        if "swap_key_value_proj" in self.bugs:
            keys, values = self.key_proj(values), self.value_proj(keys)
        else:
            keys, values = self.key_proj(keys), self.value_proj(values)
        queries = self._split(self.query_proj(queries))
        keys, values = self._split(keys), self._split(values)
        head_dims = queries.shape[-1]
        scales = {"missing_scale": 1.0, "scale_full_dims": 1 / math.sqrt(head_dims * self.num_heads),
                  "scale_not_sqrt": 1 / head_dims, "scale_full_dims_not_sqrt": 1 / (head_dims * self.num_heads),
                  "scale_from_value_dims": 1 / math.sqrt(values.shape[-1])}
        explicit_bugs = ("softmax_axis", "mask_ignored", "mask_after_softmax", "boolean_added", "softmax_heads")
        bug = next((b for b in self.bugs if b in explicit_bugs), None)
        scale = next((scales[b] for b in self.bugs if b in scales), 1 / math.sqrt(head_dims))
        output = explicit_attention(queries, keys, values, scale, mask, bug=bug)
        output = self._merge(output)
        return output if "no_out_proj" in self.bugs else self.out_proj(output)


def buggy_layer(*bugs):
    """A :class:`BuggyMultiHeadAttention` subclass with ``bugs``."""
    return type(f"MultiHeadAttention_{'_'.join(bugs)}", (BuggyMultiHeadAttention,), {"bugs": bugs})


# The layer bugs every multi-head layer exercise recognises (hint id = bug), most specific first.
LAYER_BUGS = ("scale_full_dims", "scale_full_dims_not_sqrt", "scale_not_sqrt", "missing_scale", "split_no_transpose",
              "split_interleaved", "merge_no_transpose", "merge_interleaved", "no_out_proj",
              "swap_key_value_proj", "softmax_axis", "mask_ignored", "mask_after_softmax")

# Hints shared by several exercises.
HINTS = {
    "missing_scale": "Multiply the scores q·kᵀ by `scale` before the softmax; without it the "
                     "softmax saturates as the head size grows.",
    "divide_by_scale": "`scale` is already 1/sqrt(d): multiply the scores by it, don't divide.",
    "softmax_axis": "Take the softmax over the keys, the last axis (axis=-1): each query's "
                    "weights must sum to 1.",
    "mask_after_softmax": "Apply the mask to the scores *before* the softmax; masking the weights "
                          "afterwards leaves rows that no longer sum to 1.",
    "mask_multiplied": "An additive mask is added to the scores (0 = keep, very negative = block), "
                       "not multiplied.",
    "mask_ignored": "The mask argument was ignored: apply it to the scores before the softmax.",
    "no_softmax": "Turn the scores into weights with a softmax over the keys before multiplying "
                  "by the values.",
    "inverted_boolean_mask": "In MLX a boolean mask's True means *attend* (PyTorch's "
                             "nn.MultiheadAttention uses True = blocked): you inverted it.",
    "boolean_added": "A boolean mask is not additive: adding True/False adds 1/0 to the scores. "
                     "Use mx.where(mask, scores, mx.finfo(scores.dtype).min).",
    "causal_upper_left": "MLX's causal mask is aligned to the lower right: with L_q < L_k, "
                         "query i sees keys up to i + L_k - L_q (the queries are the newest "
                         "tokens). You aligned it to the upper left, like PyTorch's is_causal.",
    "neg_inf_fully_masked": "A row with every key masked gives NaN when the blocked scores are -inf "
                            "(0/0 in the softmax). Fill with mx.finfo(dtype).min as MLX does: the "
                            "row then averages the values.",
    "gqa_tile": "With grouped-query attention query head h uses key/value head "
                "h // (n_q_heads // n_kv_heads): mx.repeat(keys, group, axis=1), not mx.tile.",
    "scale_full_dims": "The scale is 1/sqrt(head_dims) = 1/sqrt(dims // num_heads), not "
                       "1/sqrt(dims): each head works in its own smaller space.",
    "split_no_transpose": "Split the heads with reshape(B, L, num_heads, head_dims) and then "
                          "transpose(0, 2, 1, 3); reshaping straight to (B, num_heads, L, "
                          "head_dims) mixes positions and features.",
    "merge_no_transpose": "Merge the heads with transpose(0, 2, 1, 3) back to (B, L, H, head_dims) "
                          "before reshape(B, L, H * head_dims); reshaping straight from (B, H, L, "
                          "head_dims) mixes positions and heads.",
    "scale_not_sqrt": "The scale is 1/sqrt(head_dims), the square root: head_dims ** -0.5, "
                      "not 1/head_dims.",
    "split_interleaved": "Head h takes the features h*head_dims ... (h+1)*head_dims - 1, a "
                         "contiguous slice: reshape to (B, L, num_heads, head_dims), not "
                         "(B, L, head_dims, num_heads).",
    "merge_interleaved": "Transpose with (0, 2, 1, 3) to (B, L, H, head_dims) so that each head's "
                         "features stay together; (0, 2, 3, 1) interleaves the heads.",
    "mask_scaled": "Scale the scores first, then add the mask: softmax(q·kᵀ · scale + mask). "
                   "Adding the mask before the scale scales the mask's biases too.",
    "mask_fill_zero": "A blocked key's score must become very negative (mx.finfo(dtype).min), "
                      "not 0: exp(0) = 1, so a zeroed score still gets weight.",
    "no_values": "The weights are not the output: multiply them by the values, "
                 "softmax(scores) @ values.",
    "times_keys": "Multiply the weights by the *values*, not the keys: weights @ values.",
    "scale_on_output": "Scale the scores, not the output: softmax(q·kᵀ · scale + mask) @ values. Multiplying "
                       "the output by the scale leaves the softmax unscaled and shrinks the result.",
    "scale_full_dims_not_sqrt": "The scale is 1/sqrt(head_dims) with head_dims = dims // num_heads: a square "
                                "root, and of one head's width. 1/dims is neither.",
    "scale_from_value_dims": "The scale comes from the width of the queries and keys in a head, "
                             "D_h = dims // num_heads, not from the values' width value_dims // num_heads.",
    "softmax_global_max": "Subtract each row's own maximum, x.max(axis=-1, keepdims=True): with the maximum of "
                          "the whole array, a row far below it underflows to exp(...) = 0 everywhere and "
                          "gives 0/0 = NaN.",
    "no_out_proj": "Apply out_proj to the merged heads: the output projection mixes the heads.",
    "swap_key_value_proj": "The keys go through key_proj and the values through value_proj: you "
                           "swapped them.",
}
