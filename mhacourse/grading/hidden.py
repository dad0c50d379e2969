"""Hidden cases: inputs of other sizes than ``check()`` shows, drawn by the grader from its secret.

Only ``mhacourse grade`` runs them (see :func:`install`); their names in a
report are "hidden case 1", "hidden case 2", ... and their messages never show
the inputs. Sizes are drawn from ranges the visible cases do not use (longer
sequences, more heads, odd sizes), so an answer that special-cases the shown
shapes fails here.

Every exercise has hidden cases: each answer takes inputs whose sizes can vary
(even the shape predictions, which take the sizes themselves), so no exercise
is left without. Most builders reuse the lesson checks' case helpers with a
seed and sizes drawn from the grader's generator.
"""

import mlx.core as mx
import mlx.nn as nn

from .. import masks
from .checks import _common, lesson05, lesson06, lesson08
from .registry import Case, get_exercise

__all__ = ["install", "HIDDEN"]


def _normal(rng, *shape):
    return mx.array(rng.standard_normal(shape).astype("float32"))


def _frozen(args, kwargs=None, check_dtype=True):
    """A case whose inputs are fixed arrays (fresh copies on every call)."""
    kwargs = kwargs or {}

    def inputs():
        copy = [mx.array(a) if isinstance(a, mx.array) else a for a in args]
        return tuple(copy), {k: mx.array(v) if isinstance(v, mx.array) else v for k, v in kwargs.items()}

    return Case("hidden", inputs, check_dtype)


def _sizes(rng):
    """B, H, L_q, L_k, D_h, D_v: every size different from the others and from the visible cases."""
    B = int(rng.integers(3, 5))
    H = int(rng.choice([3, 5]))
    L_q = int(rng.integers(9, 12))
    L_k = L_q + int(rng.integers(1, 4))
    return B, H, L_q, L_k, int(rng.choice([6, 10])), int(rng.choice([7, 9]))


def _scores(rng):
    B, _, L_q, L_k, D, _ = _sizes(rng)
    return [_frozen((_normal(rng, B, L_q, D), _normal(rng, B, L_k, D)), {"scale": float(rng.uniform(0.1, 0.5))})]


def _softmax(rng):
    B, H, L_q, L_k, _, _ = _sizes(rng)
    offsets = mx.array(rng.choice([-200.0, 0.0, 200.0], size=(L_q, 1)).astype("float32"))  # rows far apart
    return [_frozen((_normal(rng, B, H, L_k),)), _frozen((50 * _normal(rng, L_q, L_k) + offsets,))]


def _additive_mask(rng, L_q, L_k):
    """Small negative biases and some ``-inf`` entries; every row keeps a key."""
    keep = rng.random((L_q, L_k)) > 0.3
    keep[list(range(L_q)), [i % L_k for i in range(L_q)]] = True
    bias = -abs(rng.standard_normal((L_q, L_k))).astype("float32")
    return mx.where(mx.array(keep), mx.array(bias), -mx.inf)


def _attention(rng):
    B, H, L_q, L_k, D, D_v = _sizes(rng)
    q, k, v = _normal(rng, B, H, L_q, D), _normal(rng, B, H, L_k, D), _normal(rng, B, H, L_k, D_v)
    return [_frozen((q, k, v), {"scale": float(D) ** -0.5}),
            _frozen((q, k, v), {"scale": 0.25, "mask": _additive_mask(rng, L_q, L_k)})]


def _masked_attention(rng):
    """Every mask kind: additive (from :func:`_attention`), boolean, ``"causal"`` and key padding."""
    B, H, L_q, L_k, D, D_v = _sizes(rng)
    q, k, v = _normal(rng, B, H, L_q, D), _normal(rng, B, H, L_k, D), _normal(rng, B, H, L_k, D_v)
    keep = mx.array(rng.random((L_q, L_k)) > 0.4) | _common.upper_left_causal(L_q, L_k)
    lengths = rng.integers(1, L_k + 1, size=B).tolist()
    none_for_one_row = mx.where(mx.arange(L_q)[:, None] == int(rng.integers(L_q)), False, keep)  # (L_q, L_k)
    return _attention(rng) + [_frozen((q, k, v), {"scale": 0.5, "mask": keep}),
                              _frozen((q, k, v), {"scale": 0.5, "mask": none_for_one_row}),
                              _frozen((q, k, v), {"scale": 0.5, "mask": "causal"}),
                              _frozen((q, k, v), {"scale": 0.5, "mask": masks.padding_mask(lengths, L_k)})]


def _split(rng):
    B, H, L_q, _, D, _ = _sizes(rng)
    return [_frozen((_normal(rng, B, L_q, H * D), H))]


def _merge(rng):
    B, H, L_q, _, D, _ = _sizes(rng)
    return [_frozen((_normal(rng, B, H, L_q, D),))]


def _causal(rng):
    return [_frozen((int(rng.integers(9, 14)), mx.float16)), _frozen((int(rng.integers(9, 14)), mx.float32))]


def _causal_boolean(rng):
    n = int(rng.integers(9, 12))
    return [_frozen((n, n + int(rng.integers(1, 4)))), _frozen((n + 2, n + 2))]


def _grouped(rng):
    B, _, L_q, L_k, D, D_v = _sizes(rng)
    kv_heads = int(rng.choice([2, 3]))
    H = kv_heads * int(rng.choice([2, 3]))
    return [_frozen((_normal(rng, B, H, L_q, D), _normal(rng, B, kv_heads, L_k, D),
                     _normal(rng, B, kv_heads, L_k, D_v)),
                    {"scale": float(D) ** -0.5})]


def _layer_case(constructor, call, call_kwargs=None):
    """A layer case: ``((constructor, call_args), call_kwargs)`` with fresh arrays on every call."""
    call_kwargs = call_kwargs or {}
    return Case("hidden", lambda: ((dict(constructor), tuple(mx.array(a) for a in call)),
                                   {k: mx.array(v) if isinstance(v, mx.array) else v for k, v in call_kwargs.items()}))


def _single_head_layer(rng):
    B, _, L_q, L_k, _, _ = _sizes(rng)
    dims = int(rng.choice([12, 20]))
    return [_layer_case({"dims": dims}, (_normal(rng, B, L_q, dims), _normal(rng, B, L_k, dims),
                                         _normal(rng, B, L_k, dims)))]


def _layer(rng, boolean_masks=False):
    """A cross-attention call, then one with an additive mask (and, given ``boolean_masks``, a key-padding
    one on a layer with biases and its own value_dims)."""
    B, H, L_q, L_k, D, D_v = _sizes(rng)
    dims = H * D
    call = (_normal(rng, B, L_q, dims), _normal(rng, B, L_k, dims), _normal(rng, B, L_k, dims))
    constructor = {"dims": dims, "num_heads": H}
    cases = [_layer_case(constructor, call), _layer_case(constructor, call, {"mask": _additive_mask(rng, L_q, L_k)})]
    if boolean_masks:
        lengths = rng.integers(1, L_k + 1, size=B).tolist()
        cases.append(_layer_case({**constructor, "bias": True, "value_dims": H * D_v}, call,
                                 {"mask": masks.padding_mask(lengths, L_k)}))
    return cases


def _layer_any_mask(rng):
    return _layer(rng, boolean_masks=True)


def _seed(rng):
    return int(rng.integers(10**6))


def _attention_shapes(rng):
    B, H, L_q, L_k, D, D_v = _sizes(rng)
    return [_frozen((B, L_q, L_k, H * D, D_v)), _frozen((B, L_k, L_k, H * D, H * D))]


def _head_shapes(rng):
    B, H, L_q, L_k, D, _ = _sizes(rng)
    return [_frozen((B, L_q, L_k, H * D, H)), _frozen((B, L_k, L_k, 2 * H * D, 2 * H))]


def _mask_shapes(rng):
    B, H, L_q, L_k, _, _ = _sizes(rng)
    return [_frozen((B, H, L_q, L_k)), _frozen((B, H + 2, L_k, L_k))]


def _other_dims(rng):
    """Projection sizes of a layer: every input and output size its own."""
    _, H, _, _, D, D_v = _sizes(rng)
    return H * D, H, {"query_input_dims": int(rng.integers(11, 16)), "key_input_dims": int(rng.integers(17, 22)),
                      "value_input_dims": int(rng.integers(23, 28)), "value_dims": H * D_v,
                      "value_output_dims": int(rng.integers(13, 17))}


def _parameter_count(rng):
    dims, H, sizes = _other_dims(rng)
    return [_frozen((dims, H), {"bias": True}), _frozen((dims, H), {**sizes, "bias": True}), _frozen((dims, H), sizes),
            _frozen((dims, H), {"key_input_dims": sizes["key_input_dims"]})]


def _projection_shapes(rng):
    dims, H, sizes = _other_dims(rng)
    return [_frozen((dims, H)), _frozen((dims, H), sizes),
            _frozen((dims, H), {"key_input_dims": sizes["key_input_dims"]})]


def _layer_shapes(rng):
    B, _, L_q, L_k, _, _ = _sizes(rng)
    dims, H, sizes = _other_dims(rng)
    return [_frozen((B, L_q, L_k, dims, H)), _frozen((B, L_q, L_k, dims, H), sizes)]


def _boolean_to_additive(rng):
    B, _, L_q, L_k, _, _ = _sizes(rng)
    pattern = mx.array(rng.random((L_q, L_k)) > 0.4) | _common.upper_left_causal(L_q, L_k)
    lengths = rng.integers(1, L_k + 1, size=B).tolist()
    return [_frozen((pattern, mx.float32)), _frozen((masks.padding_mask(lengths, L_k), mx.bfloat16)),
            _frozen((masks.causal(L_q), mx.float16))]


def _padding_mask(rng):
    B, _, _, L_k, _, _ = _sizes(rng)
    lengths = rng.integers(1, L_k + 1, size=B).tolist()
    return [_common.case("hidden", lambda: list(lengths), L_k),
            _common.case("hidden", lambda: [L_k] + lengths[1:], L_k + 1)]


def _cross_attention(rng):
    B, H, L_q, L_k, D, _ = _sizes(rng)
    dims, key_input_dims, seed = H * D, int(rng.integers(11, 16)), _seed(rng)
    lengths = rng.integers(1, L_k + 1, size=B).tolist()

    def layer():
        mx.random.seed(seed)
        made = nn.MultiHeadAttention(dims, H, key_input_dims=key_input_dims)
        mx.eval(made.parameters())
        return made

    return [_common.case("hidden", layer, lambda: _common.rand(seed + 1, B, L_q, dims),
                         lambda: _common.rand(seed + 2, B, L_k, key_input_dims), lambda: list(lengths))]


def _online_softmax(rng):
    B, H, L_q, L_k, D, _ = _sizes(rng)
    tile = int(rng.choice([3, 5]))
    return [lesson05._online_case("hidden", _seed(rng), B, H, L_q, L_k, D, tile),
            lesson05._online_case("hidden", _seed(rng), 1, H, L_q, 2 * L_k + 1, D, tile + 4, scale=1.0, spread=60.0),
            lesson05._long_case("hidden", _seed(rng), int(rng.choice([768, 896])), int(rng.choice([20480, 24576])),
                                int(rng.choice([192, 320])))]


def _kv_cache(rng):
    B, H, L_q, L_k, D, _ = _sizes(rng)
    return [lesson05._kv_case("hidden", _seed(rng), B, H, 1, L_k, D),
            lesson05._kv_case("hidden", _seed(rng), B, H, int(rng.integers(5, 8)), L_q, D)]


def _decode_step(rng):
    B, _, L_q, _, D, _ = _sizes(rng)
    kv_heads = int(rng.choice([2, 3]))
    H = kv_heads * int(rng.choice([2, 3]))
    return [lesson05._cache_case("hidden", _seed(rng), B, H, kv_heads, int(rng.integers(5, 7)), L_q, D),
            lesson05._cache_case("hidden", _seed(rng), B, H, 1, int(rng.integers(3, 5)), 0, D)]


def _time_per_call(rng):
    B, H, _, _, D, _ = _sizes(rng)
    return [lesson05._timing_case("hidden", _seed(rng), int(rng.integers(3, 5)), B, H, int(rng.choice([80, 96])), D),
            lesson05._timing_case("hidden", _seed(rng), 3, 1, 2, int(rng.choice([24, 32])), 8, "slow attention")]


def _debug_layer(rng):
    B, H, L_q, L_k, D, _ = _sizes(rng)
    dims = H * D
    x = _normal(rng, B, L_q, dims)
    return [_layer_case({"dims": dims, "num_heads": H, "bias": True},
                        (_normal(rng, B, L_q, dims), _normal(rng, B, L_k, dims), _normal(rng, B, L_k, dims))),
            _layer_case({"dims": dims, "num_heads": H}, (x, x, x),
                        {"mask": nn.MultiHeadAttention.create_additive_causal_mask(L_q)})]


def _torch_in_proj(rng):
    _, H, _, _, D, _ = _sizes(rng)
    return [lesson06._torch_case("hidden", _seed(rng), H * D), lesson06._torch_case("hidden", _seed(rng), 2 * H + 1)]


def _torch_mask(rng):
    B, _, L_q, L_k, _, _ = _sizes(rng)
    cases = []
    for L, S in ((L_q, L_k), (L_k, L_k)):
        seed = _seed(rng)
        cases.append(_common.case("hidden", lambda s=seed, L=L, S=S: lesson06._torch_masks(s, B, L, S)[0],
                                  lambda s=seed, L=L, S=S: lesson06._torch_masks(s, B, L, S)[1]))
    return cases


def _parameter_gradients(rng):
    B, H, L_q, L_k, D, D_v = _sizes(rng)
    dims, seed, constructor = H * D, _seed(rng), {"bias": True, "query_input_dims": int(rng.integers(11, 16)),
                                                  "value_dims": H * D_v}
    return [_common.case("hidden", lambda: lesson06._layer("mhacourse", seed, dims, H, **constructor),
                         lambda: _common.rand(seed + 1, B, L_q, constructor["query_input_dims"]),
                         lambda: _common.rand(seed + 2, B, L_k, dims), lambda: _common.rand(seed + 3, B, L_k, dims))]


def _reversal_batch(rng):
    B, _, L_q, _, _, _ = _sizes(rng)
    return [_common.case("hidden", lesson08._digits(_seed(rng), B, L_q)),
            _common.case("hidden", lesson08._digits(_seed(rng), 2 * B + 1, 2))]


def _transformer_block(rng):
    B, H, L_q, _, D, _ = _sizes(rng)
    return [_layer_case({"dims": H * D, "num_heads": H}, (_normal(rng, B, L_q, H * D),))]


def _answer_loss(rng):
    return [lesson08._loss_case("hidden", _seed(rng), int(rng.choice([3, 5, 6])), int(rng.choice([4, 6])))]


HIDDEN = {
    "attention_scores": _scores,
    "softmax": _softmax,
    "scaled_dot_product_attention": _attention,
    "masked_attention": _masked_attention,
    "single_head_attention": _single_head_layer,
    "split_heads": _split,
    "merge_heads": _merge,
    "multi_head_attention_basic": _layer,
    "multi_head_attention": _layer_any_mask,
    "causal_mask": _causal,
    "causal_boolean_mask": _causal_boolean,
    "grouped_query_attention": _grouped,
    "attention_shapes": _attention_shapes,
    "parameter_count": _parameter_count,
    "head_shapes": _head_shapes,
    "boolean_to_additive": _boolean_to_additive,
    "padding_mask": _padding_mask,
    "mask_shapes": _mask_shapes,
    "projection_shapes": _projection_shapes,
    "layer_shapes": _layer_shapes,
    "cross_attention": _cross_attention,
    "online_softmax_attention": _online_softmax,
    "kv_cache_attention": _kv_cache,
    "decode_step": _decode_step,
    "time_per_call": _time_per_call,
    "debug_layer": _debug_layer,
    "torch_in_proj_to_mlx": _torch_in_proj,
    "torch_mask_to_mlx": _torch_mask,
    "parameter_gradients": _parameter_gradients,
    "reversal_batch": _reversal_batch,
    "transformer_block": _transformer_block,
    "answer_loss": _answer_loss,
}
"""Exercise id -> ``(rng) -> list[Case]``."""


def install():
    """Give the exercises listed in :data:`HIDDEN` their hidden cases (those that have none yet)."""
    for exercise_id, make in HIDDEN.items():
        try:
            exercise = get_exercise(exercise_id)
        except KeyError:
            continue
        if exercise.hidden_cases is None:
            exercise.hidden_cases = make
