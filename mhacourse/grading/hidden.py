"""Hidden cases: inputs of other sizes than ``check()`` shows, drawn by the grader from its secret.

Only ``mhacourse grade`` runs them (see :func:`install`); their names in a
report are "hidden case 1", "hidden case 2", ... and their messages never show
the inputs. Sizes are drawn from ranges the visible cases do not use (longer
sequences, more heads, odd sizes), so an answer that special-cases the shown
shapes fails here.
"""

import mlx.core as mx

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
    return [_frozen((_normal(rng, B, H, L_k),)), _frozen((50 * _normal(rng, L_q, L_k),))]


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
    return [_frozen((_normal(rng, B, H, L_q, D), _normal(rng, B, kv_heads, L_k, D), _normal(rng, B, kv_heads, L_k, D_v)),
                    {"scale": float(D) ** -0.5})]


def _layer_case(constructor, call):
    """A layer case: ``((constructor, call_args), {})`` with fresh arrays on every call."""
    return Case("hidden", lambda: ((dict(constructor), tuple(mx.array(a) for a in call)), {}))


def _single_head_layer(rng):
    B, _, L_q, L_k, _, _ = _sizes(rng)
    dims = int(rng.choice([12, 20]))
    return [_layer_case({"dims": dims}, (_normal(rng, B, L_q, dims), _normal(rng, B, L_k, dims),
                                         _normal(rng, B, L_k, dims)))]


def _layer(rng):
    B, H, L_q, L_k, D, _ = _sizes(rng)
    dims = H * D
    return [_layer_case({"dims": dims, "num_heads": H}, (_normal(rng, B, L_q, dims), _normal(rng, B, L_k, dims),
                                                         _normal(rng, B, L_k, dims)))]


HIDDEN = {
    "attention_scores": _scores,
    "softmax": _softmax,
    "scaled_dot_product_attention": _attention,
    "masked_attention": _attention,
    "single_head_attention": _single_head_layer,
    "split_heads": _split,
    "merge_heads": _merge,
    "multi_head_attention_basic": _layer,
    "multi_head_attention": _layer,
    "causal_mask": _causal,
    "causal_boolean_mask": _causal_boolean,
    "grouped_query_attention": _grouped,
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
