"""Lesson 01: attention from scratch, one head."""

import math

import mlx.core as mx

import mhacourse
from mhacourse.attention.single_head import SingleHeadAttention

from .. import properties as props
from ..exercise import Exercise, Mistake, ModuleExercise
from . import _hidden
from ._common import HINTS, additive_mask, attention_bug, case, explicit_attention, predicted_wrong, rand

EXERCISES = []  # this lesson's exercises, declared whole, in notebook order; the registry collects them

# ---------------------------------------------------------------------------
# attention_scores(queries, keys, *, scale) on (B, L, dims) inputs


def _scores(queries, keys, *, scale):
    return mhacourse.attention_scores(queries[:, None], keys[:, None], scale=scale)[:, 0]  # (B, L_q, L_k)



def _hidden_attention_scores(rng):
    B, _, L_q, L_k, D, _ = _hidden.sizes(rng)
    return [
        _hidden.fixed_case(
            (_hidden.normal(rng, B, L_q, D), _hidden.normal(rng, B, L_k, D)), {"scale": float(rng.uniform(0.1, 0.5))}
        )
    ]


def _hidden_softmax(rng):
    B, H, L_q, L_k, _, _ = _hidden.sizes(rng)
    offsets = mx.array(rng.choice([-200.0, 0.0, 200.0], size=(L_q, 1)).astype("float32"))  # rows far apart
    return [
        _hidden.fixed_case((_hidden.normal(rng, B, H, L_k),)),
        _hidden.fixed_case((50 * _hidden.normal(rng, L_q, L_k) + offsets,)),
    ]


def _hidden_single_head_attention(rng):
    B, _, L_q, L_k, _, _ = _hidden.sizes(rng)
    dims = int(rng.choice([12, 20]))
    return [_hidden.layer_case({"dims": dims}, (_hidden.normal(rng, B, L_q, dims), _hidden.normal(rng, B, L_k, dims),
                                         _hidden.normal(rng, B, L_k, dims)))]



def _hidden_attention_shapes(rng):
    B, H, L_q, L_k, D, D_v = _hidden.sizes(rng)
    return [_hidden.fixed_case((B, L_q, L_k, H * D, D_v)), _hidden.fixed_case((B, L_k, L_k, H * D, H * D))]


EXERCISES.append(
    Exercise(
        id="attention_scores",
        hidden_cases=_hidden_attention_scores,
        lesson="01",
        title="Scaled scores q·kᵀ",
        answer_name="attention_scores",
        signature="attention_scores(queries, keys, *, scale)",
        reference=_scores,
        cases=[
            case(
                "1 sequence, 4 queries, 4 keys, dims 8",
                lambda: rand(1, 1, 4, 8),
                lambda: rand(2, 1, 4, 8),
                scale=1 / math.sqrt(8),
            ),
            case(
                "batch 2, 3 queries, 5 keys, dims 6, scale 0.3",
                lambda: rand(3, 2, 3, 6),
                lambda: rand(4, 2, 5, 6),
                scale=0.3,
            ),
        ],
        mistakes=[
            Mistake(
                "missing_scale", HINTS["missing_scale"], lambda queries, keys, *, scale: queries @ keys.swapaxes(-1, -2)
            ),
            Mistake(
                "divide_by_scale",
                HINTS["divide_by_scale"],
                lambda queries, keys, *, scale: queries @ keys.swapaxes(-1, -2) / scale,
            ),
            Mistake(
                "scale_ignored",
                "Use the `scale` argument you are given rather than computing your own.",
                lambda queries, keys, *, scale: queries @ keys.swapaxes(-1, -2) / math.sqrt(queries.shape[-1]),
            ),
            Mistake(
                "keys_times_queries",
                "scores[b, i, j] = q_i · k_j: compute queries @ keysᵀ (L_q, L_k), not keys @ queriesᵀ.",
                lambda queries, keys, *, scale: (keys @ queries.swapaxes(-1, -2)) * scale,
            ),
        ],
    )
)

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


EXERCISES.append(
    Exercise(
        id="softmax",
        hidden_cases=_hidden_softmax,
        lesson="01",
        title="A numerically stable softmax",
        answer_name="softmax",
        signature="softmax(x)",
        reference=_softmax,
        forbidden=("mx.softmax", "nn.softmax", "nn.Softmax"),
        cases=[
            case("(2, 3, 5) small values", lambda: rand(5, 2, 3, 5)),
            case("(4, 4) square", lambda: rand(6, 4, 4)),
            case("(3, 6) large values (scores of 100s)", lambda: 100 * rand(7, 3, 6)),
            case("(2, 5) with -inf entries", lambda: mx.where(mx.arange(5) % 2 == 0, rand(8, 2, 5), -mx.inf)),
            case(
                "(2, 4) rows far apart (one near 500, one near -500)",
                lambda: rand(9, 2, 4) + mx.array([[500.0], [-500.0]]),
            ),
        ],
        mistakes=[
            Mistake(
                "softmax_unstable",
                "exp overflows for large scores (exp(100) = inf, inf/inf = NaN): subtract each row's "
                "maximum first, x - x.max(axis=-1, keepdims=True); the result does not change.",
                _naive_softmax,
            ),
            Mistake(
                "softmax_axis", "Normalise over the last axis (axis=-1): every row must sum to 1.", _softmax_axis(0)
            ),
            Mistake(
                "softmax_axis", "Normalise over the last axis (axis=-1): every row must sum to 1.", _softmax_axis(-2)
            ),
            Mistake(
                "softmax_keepdims",
                "Sum with keepdims=True: e / e.sum(axis=-1) divides along the wrong axis by broadcasting.",
                lambda x: (
                    mx.exp(x - x.max(axis=-1, keepdims=True)) / mx.exp(x - x.max(axis=-1, keepdims=True)).sum(axis=-1)
                ),
            ),
            Mistake(
                "softmax_not_normalised",
                "Divide by the sum over the row so that the weights sum to 1.",
                lambda x: mx.exp(x - x.max(axis=-1, keepdims=True)),
            ),
            Mistake(
                "softmax_global_sum",
                "Sum over each row (axis=-1), not over the whole array.",
                lambda x: mx.exp(x - x.max()) / mx.exp(x - x.max()).sum(),
            ),
            Mistake(
                "softmax_global_max",
                HINTS["softmax_global_max"],
                lambda x: mx.exp(x - x.max()) / mx.exp(x - x.max()).sum(axis=-1, keepdims=True),
            ),
        ],
        properties=[
            props.rows_sum_to_one(lambda rng: {"x": props.normal(rng, 2, 3, 5)}, props.function_call(("x",))),
            props.batch_order_invariant(lambda rng: {"x": props.normal(rng, 3, 2, 5)}, props.function_call(("x",))),
        ],
    )
)

# ---------------------------------------------------------------------------
# scaled_dot_product_attention(queries, keys, values, *, scale, mask=None)

def _qkv(B=2, H=3, L_q=4, L_k=5, D_h=4, D_v=3):
    def make(rng):
        return {"queries": props.normal(rng, B, H, L_q, D_h), "keys": props.normal(rng, B, H, L_k, D_h),
                "values": props.normal(rng, B, H, L_k, D_v)}

    return make


def attention_properties(**kwargs):
    """The four properties of attention without a mask, for ``fn(queries, keys, values, **kwargs)``."""
    to_call = props.function_call(("queries", "keys", "values"), **kwargs)
    return [
        props.weights_sum_to_one(_qkv(), to_call),
        props.permutation_equivariant(_qkv(), to_call),
        props.heads_independent(_qkv(), to_call),
        props.batch_order_invariant(_qkv(), to_call),
    ]


EXERCISES.append(Exercise(
    id="scaled_dot_product_attention",
    hidden_cases=_hidden.attention_calls,
    forbidden=("mx.fast.*",),
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
                    "times_keys", "scale_on_output")
    ] + [
        Mistake("softmax_axis", HINTS["softmax_axis"] + " On (B, H, L_q, L_k) scores, axis=1 is the heads.",
                attention_bug("softmax_heads")),
        Mistake("scale_ignored", "Use the `scale` argument you are given rather than 1/sqrt(d).",
                lambda queries, keys, values, *, scale, mask=None: explicit_attention(
                    queries, keys, values, 1 / math.sqrt(queries.shape[-1]), mask)),
    ],
    properties=attention_properties(scale=0.4),
))

# ---------------------------------------------------------------------------
# SingleHeadAttention(dims): one head with three projections


class _NoScaleHead(SingleHeadAttention):
    def __call__(self, queries, keys, values, mask=None):
        q, k, v = self.query_proj(queries), self.key_proj(keys), self.value_proj(values)
        return explicit_attention(q[:, None], k[:, None], v[:, None], 1.0, mask)[:, 0]


class _ScaledHead(SingleHeadAttention):
    """One head whose scale is ``scale_of(dims)``."""

    scale_of = None

    @classmethod
    def variant(cls, scale_of):
        return type("_ScaledHeadVariant", (cls,), {"scale_of": staticmethod(scale_of)})

    def __call__(self, queries, keys, values, mask=None):
        q, k, v = self.query_proj(queries), self.key_proj(keys), self.value_proj(values)
        return explicit_attention(q[:, None], k[:, None], v[:, None], self.scale_of(self.dims), mask)[:, 0]


class _ScaleOnOutputHead(SingleHeadAttention):
    def __call__(self, queries, keys, values, mask=None):
        q, k, v = self.query_proj(queries), self.key_proj(keys), self.value_proj(values)
        return explicit_attention(q[:, None], k[:, None], v[:, None], 1 / math.sqrt(self.dims), mask,
                                  bug="scale_on_output")[:, 0]


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


EXERCISES.append(ModuleExercise(
    id="single_head_attention",
    hidden_cases=_hidden_single_head_attention,
    forbidden=("nn.MultiHeadAttention",),
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
        Mistake("scale_not_sqrt", "The scale is 1/sqrt(dims), the square root (one head: head_dims = dims), "
                "not 1/dims.", _ScaledHead.variant(lambda dims: 1 / dims)),
        Mistake("scale_on_output", HINTS["scale_on_output"], _ScaleOnOutputHead),
        Mistake("swap_key_value_proj", HINTS["swap_key_value_proj"], _SwappedHead),
        Mistake("values_not_projected", "Project the values with value_proj before the weighted sum.",
                _UnprojectedValues),
    ],
))

# ---------------------------------------------------------------------------
# attention_shapes(B, L_q, L_k, dims, value_dims): predict the shapes


def _attention_shapes(B, L_q, L_k, dims, value_dims):
    queries, keys, values = mx.zeros((B, L_q, dims)), mx.zeros((B, L_k, dims)), mx.zeros((B, L_k, value_dims))
    scores = _scores(queries, keys, scale=1.0)
    weights = mx.softmax(scores, axis=-1)
    return {"scores": tuple(scores.shape), "weights": tuple(weights.shape),
            "output": tuple((weights @ values).shape)}


EXERCISES.append(Exercise(
    id="attention_shapes",
    hidden_cases=_hidden_attention_shapes,
    lesson="01",
    title="Predict the shapes of one head",
    answer_name="attention_shapes",
    signature="attention_shapes(B, L_q, L_k, dims, value_dims)",
    reference=_attention_shapes,
    cases=[
        case("B 2, L_q 3, L_k 5, dims 8, value_dims 6", 2, 3, 5, 8, 6),
        case("B 1, L_q 4, L_k 4, dims 16, value_dims 16", 1, 4, 4, 16, 16),
        case("B 3, L_q 1, L_k 7, dims 4, value_dims 2", 3, 1, 7, 4, 2),
    ],
    mistakes=[
        Mistake("shape_scores", "The scores pair each query with each key: (B, L_q, L_k), one row per query; "
                "the softmax keeps that shape.", predicted_wrong(
                    _attention_shapes, lambda B, L_q, L_k, dims, value_dims: {"scores": (B, L_k, L_q),
                                                                              "weights": (B, L_k, L_q)})),
        Mistake("shape_scores", "queries @ keysᵀ contracts the feature axis dims away: the scores are "
                "(B, L_q, L_k), not (B, L_q, dims).", predicted_wrong(
                    _attention_shapes, lambda B, L_q, L_k, dims, value_dims: {"scores": (B, L_q, dims),
                                                                              "weights": (B, L_q, dims)})),
        Mistake("shape_value_dims", "The output is a weighted average of the *values*: (B, L_q, value_dims).",
                predicted_wrong(_attention_shapes, lambda B, L_q, L_k, dims, value_dims: {"output": (B, L_q, dims)})),
        Mistake("shape_output_keys", "There is one output per *query*: weights (B, L_q, L_k) @ values "
                "(B, L_k, value_dims) gives (B, L_q, value_dims).", predicted_wrong(
                    _attention_shapes, lambda B, L_q, L_k, dims, value_dims: {"output": (B, L_k, value_dims)})),
    ],
))
