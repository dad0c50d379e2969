"""Helpers for hidden cases: inputs of other sizes than ``check()`` shows, drawn from the grader's secret.

Only ``mhacourse grade`` runs hidden cases; their names in a report are "hidden
case 1", "hidden case 2", ... and their messages never show the inputs. Sizes
are drawn from ranges the visible cases do not use (longer sequences, more
heads, odd sizes), so an answer that special-cases the shown shapes fails.
Each lesson file declares its exercises' hidden-case builders next to them;
the builders several lessons share live here.
"""

import mlx.core as mx

from mhacourse import masks

from ..exercise import Case

__all__ = [
    "normal",
    "fixed_case",
    "sizes",
    "sparse_additive_mask",
    "attention_calls",
    "layer_case",
    "layer_calls",
    "seed",
    "other_dims",
]


def normal(rng, *shape):
    return mx.array(rng.standard_normal(shape).astype("float32"))


def fixed_case(args, kwargs=None, check_dtype=True):
    """A case whose inputs are fixed arrays (fresh copies on every call)."""
    kwargs = kwargs or {}

    def inputs():
        copy = [mx.array(a) if isinstance(a, mx.array) else a for a in args]
        return tuple(copy), {k: mx.array(v) if isinstance(v, mx.array) else v for k, v in kwargs.items()}

    return Case("hidden", inputs, check_dtype)


def sizes(rng):
    """B, H, L_q, L_k, D_h, D_v: every size different from the others and from the visible cases."""
    B = int(rng.integers(3, 5))
    H = int(rng.choice([3, 5]))
    L_q = int(rng.integers(9, 12))
    L_k = L_q + int(rng.integers(1, 4))
    return B, H, L_q, L_k, int(rng.choice([6, 10])), int(rng.choice([7, 9]))


def sparse_additive_mask(rng, L_q, L_k):
    """Small negative biases and some ``-inf`` entries; every row keeps a key."""
    keep = rng.random((L_q, L_k)) > 0.3
    keep[list(range(L_q)), [i % L_k for i in range(L_q)]] = True
    bias = -abs(rng.standard_normal((L_q, L_k))).astype("float32")
    return mx.where(mx.array(keep), mx.array(bias), -mx.inf)


def attention_calls(rng):
    B, H, L_q, L_k, D, D_v = sizes(rng)
    q, k, v = normal(rng, B, H, L_q, D), normal(rng, B, H, L_k, D), normal(rng, B, H, L_k, D_v)
    return [fixed_case((q, k, v), {"scale": float(D) ** -0.5}),
            fixed_case((q, k, v), {"scale": 0.25, "mask": sparse_additive_mask(rng, L_q, L_k)})]


def layer_case(constructor, call, call_kwargs=None):
    """A layer case: ``((constructor, call_args), call_kwargs)`` with fresh arrays on every call."""
    call_kwargs = call_kwargs or {}
    return Case(
        "hidden",
        lambda: (
            (dict(constructor), tuple(mx.array(a) for a in call)),
            {k: mx.array(v) if isinstance(v, mx.array) else v for k, v in call_kwargs.items()},
        ),
    )


def layer_calls(rng, boolean_masks=False):
    """A cross-attention call, then one with an additive mask (and, given ``boolean_masks``, a key-padding
    one on a layer with biases and its own value_dims)."""
    B, H, L_q, L_k, D, D_v = sizes(rng)
    dims = H * D
    call = (normal(rng, B, L_q, dims), normal(rng, B, L_k, dims), normal(rng, B, L_k, dims))
    constructor = {"dims": dims, "num_heads": H}
    cases = [
        layer_case(constructor, call),
        layer_case(constructor, call, {"mask": sparse_additive_mask(rng, L_q, L_k)}),
    ]
    if boolean_masks:
        lengths = rng.integers(1, L_k + 1, size=B).tolist()
        cases.append(layer_case({**constructor, "bias": True, "value_dims": H * D_v}, call,
                                 {"mask": masks.padding_mask(lengths, L_k)}))
    return cases


def seed(rng):
    return int(rng.integers(10**6))


def other_dims(rng):
    """Projection sizes of a layer: every input and output size its own."""
    _, H, _, _, D, D_v = sizes(rng)
    return H * D, H, {"query_input_dims": int(rng.integers(11, 16)), "key_input_dims": int(rng.integers(17, 22)),
                      "value_input_dims": int(rng.integers(23, 28)), "value_dims": H * D_v,
                      "value_output_dims": int(rng.integers(13, 17))}
