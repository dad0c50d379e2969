"""The course's layer where real MLX programs put mlx.nn.MultiHeadAttention, compared bit for bit.

Each test gives both layers the same weights (``update``) and the same inputs,
applies what MLX programs apply to the layer (quantization, shapeless compile
and export, a LoRA-style wrapper, vmap, checkpoints, dtypes, a training run)
and asserts that the two results are identical, not merely close.
"""

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
import pytest
from mlx.utils import tree_flatten

import mhacourse
from tests.conftest import assert_close

DIMS, HEADS = 64, 4


def make_pair(dims=DIMS, num_heads=HEADS, **kwargs):
    """(ours, theirs) with MLX's randomly initialised weights copied into ours."""
    theirs = nn.MultiHeadAttention(dims, num_heads, **kwargs)
    ours = mhacourse.MultiHeadAttention(dims, num_heads, **kwargs)
    ours.update(theirs.parameters())
    # Evaluated now: a compiled or exported function captures them as constants.
    mx.eval(ours.parameters(), theirs.parameters())
    return ours, theirs


def normal(shape, seed, dtype=mx.float32):
    return mx.random.normal(shape, key=mx.random.key(seed)).astype(dtype)


def assert_identical(actual, expected):
    assert actual.shape == expected.shape, f"shape {actual.shape} != {expected.shape}"
    assert actual.dtype == expected.dtype, f"dtype {actual.dtype} != {expected.dtype}"
    assert mx.array_equal(actual, expected, equal_nan=True).item(), (
        f"max |difference| {mx.abs(actual.astype(mx.float32) - expected.astype(mx.float32)).max().item()}")


# assert_close_to_eager: the two layers are compared bit for bit under the same transform.
# Against the *eager* call only closeness is asserted: an optimised BLAS (OpenBLAS, which
# `make test` preloads) may round a compiled, exported or vmapped graph differently from the
# eager one, for mlx.nn's layer exactly as for ours.


def assert_same_tree(ours, theirs):
    ours, theirs = dict(tree_flatten(ours)), dict(tree_flatten(theirs))
    assert ours.keys() == theirs.keys()
    for name in ours:
        assert_identical(ours[name], theirs[name])


# ------------------------------------------------------------------ quantization

QUANTIZATIONS = {
    "affine-4bit": dict(),
    "affine-8bit-group32": dict(bits=8, group_size=32),
    "mxfp4": dict(mode="mxfp4"),
    "mxfp8": dict(mode="mxfp8"),
    "nvfp4": dict(mode="nvfp4"),
}


@pytest.mark.parametrize("options", QUANTIZATIONS.values(), ids=QUANTIZATIONS.keys())
def test_quantized_layers_agree(options):
    # Input sizes differ from dims so that a check reading the packed width would fail.
    ours, theirs = make_pair(query_input_dims=128, key_input_dims=192, value_dims=128)
    nn.quantize(ours, **options)
    nn.quantize(theirs, **options)
    assert isinstance(ours.query_proj, nn.QuantizedLinear)
    assert_same_tree(ours.parameters(), theirs.parameters())
    q, kv = normal((2, 5, 128), 1), normal((2, 9, 192), 2)
    for mask in (None, "causal"):
        assert_identical(ours(q, kv, kv, mask=mask), theirs(q, kv, kv, mask=mask))
    # The explicit path (with weights) runs too, and the input check still reads the true sizes.
    out, weights = ours(q, kv, kv, return_weights=True)
    assert weights.shape == (2, HEADS, 5, 9)
    assert_close(out, theirs(q, kv, kv), scale=4)  # the explicit path: close, not identical
    with pytest.raises(ValueError, match="query_input_dims = 128"):
        ours(normal((2, 5, 32), 3), kv, kv)


def test_quantize_input_layers_agree():
    ours, theirs = make_pair()
    for layer in (ours, theirs):
        nn.quantize(layer, mode="nvfp4", quantize_input=True,
                    class_predicate=lambda _, module: isinstance(module, nn.Linear))
    assert isinstance(ours.query_proj, nn.QQLinear)
    x = normal((2, 6, DIMS), 4)
    with pytest.raises(ValueError, match=f"query_input_dims = {DIMS}"):
        ours(normal((2, 6, 32), 5), x, x)
    try:
        expected = theirs(x, x, x, mask="causal")
        mx.eval(expected)
    except RuntimeError as error:  # MLX 0.32.4's CPU backend: "[QQMatmul] NYI for the general case"
        pytest.skip(f"mlx.nn's own layer cannot run quantized inputs here: {error}")
    assert_identical(ours(x, x, x, mask="causal"), expected)


# ------------------------------------------------------------------ compile and export

LENGTHS = (3, 8, 13)


def self_attention(layer):
    return lambda x, mask: layer(x, x, x, mask=mask)


def causal(length):
    # An array, not the string "causal": with MLX 0.32.4, mx.fast's mask="causal" inside a
    # shapeless compile keeps the traced length on the CPU (mlx.nn's layer and ours alike).
    return nn.MultiHeadAttention.create_additive_causal_mask(length)


def cross_attention(layer):
    return lambda queries, memory, mask: layer(queries, memory, memory, mask=mask)


def test_shapeless_compile_runs_at_new_lengths():
    ours, theirs = make_pair()
    compiled_ours = mx.compile(self_attention(ours), shapeless=True)
    compiled_theirs = mx.compile(self_attention(theirs), shapeless=True)
    for length in LENGTHS:
        x, mask = normal((2, length, DIMS), length), causal(length)
        out = compiled_ours(x, mask)
        assert_identical(out, compiled_theirs(x, mask))
        assert_close(out, theirs(x, x, x, mask=mask))  # see assert_close_to_eager


def test_shapeless_compile_with_an_array_mask_and_other_lengths():
    ours, theirs = make_pair(key_input_dims=24)
    compiled_ours = mx.compile(cross_attention(ours), shapeless=True)
    compiled_theirs = mx.compile(cross_attention(theirs), shapeless=True)
    for n_queries, n_keys in ((2, 5), (6, 3), (4, 11)):
        q, memory = normal((3, n_queries, DIMS), n_queries), normal((3, n_keys, 24), n_keys)
        mask = normal((n_queries, n_keys), 7)  # an additive bias
        assert_identical(compiled_ours(q, memory, mask), compiled_theirs(q, memory, mask))


def test_shapeless_compile_of_a_quantized_layer():
    ours, theirs = make_pair()
    nn.quantize(ours, bits=8, group_size=32)
    nn.quantize(theirs, bits=8, group_size=32)
    compiled_ours = mx.compile(self_attention(ours), shapeless=True)
    for length in LENGTHS:
        x, mask = normal((1, length, DIMS), length), causal(length)
        assert_identical(compiled_ours(x, mask), theirs(x, x, x, mask=mask))


def test_shapeless_export_and_import(tmp_path):
    ours, theirs = make_pair()
    # No mask: with MLX 0.32.4 an exported shapeless function keeps the traced shape of a
    # mask, whichever layer it calls (mask="causal" and an array mask alike).
    example = normal((2, LENGTHS[0], DIMS), 0)
    paths = {name: str(tmp_path / f"{name}.mlxfn") for name in ("ours", "theirs")}
    mx.export_function(paths["ours"], lambda x: ours(x, x, x), example, shapeless=True)
    mx.export_function(paths["theirs"], lambda x: theirs(x, x, x), example, shapeless=True)
    imported_ours, imported_theirs = (mx.import_function(path) for path in paths.values())
    for length in LENGTHS:
        x = normal((2, length, DIMS), length)
        (out,) = imported_ours(x)
        assert_identical(out, imported_theirs(x)[0])
        assert_close(out, theirs(x, x, x))  # see assert_close_to_eager


# ------------------------------------------------------------------ wrapped projections

class LowRankAdapter(nn.Module):
    """A frozen projection plus a trainable low-rank update: ``base(x) + alpha · x A B``.

    It keeps the wrapped layer as ``base`` and has no ``weight`` of its own,
    like the adapters that fine-tuning code puts around attention projections.
    """

    def __init__(self, base, rank, seed, alpha=0.5):
        super().__init__()
        output_dims, input_dims = base.weight.shape
        self.base = base
        self.down = normal((input_dims, rank), seed) * input_dims**-0.5
        self.up = normal((rank, output_dims), seed + 1) * 0.1  # not zero, so it shows in the output
        self.alpha = alpha

    def __call__(self, x):
        return self.base(x) + self.alpha * ((x @ self.down) @ self.up)


def adapt(layer):
    """Wrap query_proj and value_proj and make only the adapters trainable."""
    layer.query_proj = LowRankAdapter(layer.query_proj, rank=4, seed=10)
    layer.value_proj = LowRankAdapter(layer.value_proj, rank=4, seed=20)
    layer.freeze()
    for adapter in (layer.query_proj, layer.value_proj):
        adapter.unfreeze(keys=["down", "up"], recurse=False)
    mx.eval(layer.parameters())
    return layer


def test_lora_style_wrappers_with_gradients():
    ours, theirs = (adapt(layer) for layer in make_pair(value_dims=32, key_input_dims=48))
    q, kv = normal((2, 6, DIMS), 1), normal((2, 7, 48), 2)
    assert_identical(ours(q, kv, kv, mask="causal"), theirs(q, kv, kv, mask="causal"))

    def loss(layer, q, kv):
        return (layer(q, kv, kv, mask="causal") ** 2).mean()

    loss_ours, grads_ours = nn.value_and_grad(ours, loss)(ours, q, kv)
    loss_theirs, grads_theirs = nn.value_and_grad(theirs, loss)(theirs, q, kv)
    assert_identical(loss_ours, loss_theirs)
    assert_same_tree(grads_ours, grads_theirs)
    trained = sorted(name for name, _ in tree_flatten(grads_ours))
    assert trained == ["query_proj.down", "query_proj.up", "value_proj.down", "value_proj.up"]
    assert all(mx.abs(g).max().item() > 0 for _, g in tree_flatten(grads_ours))


def test_wrapped_projection_errors_name_the_input():
    ours, _ = make_pair()
    adapt(ours)
    x = normal((2, 6, DIMS), 1)
    with pytest.raises(ValueError, match=r"queries of shape \(2, 6, 40\) do not fit"):
        ours(normal((2, 6, 40), 2), x, x)
    ours.key_proj = nn.Linear(DIMS, 30)  # 30 features cannot be shared by 4 heads
    with pytest.raises(ValueError, match=r"projected keys features \(30\) must be divisible by num_heads \(4\)"):
        ours(x, x, x)


# ------------------------------------------------------------------ transforms, checkpoints, dtypes

def test_vmap_over_an_extra_leading_axis():
    ours, theirs = make_pair()
    x = normal((3, 2, 5, DIMS), 5)  # (N, B, L, dims): vmap hands each layer (B, L, dims)
    out = mx.vmap(lambda x: ours(x, x, x, mask="causal"))(x)
    assert_identical(out, mx.vmap(lambda x: theirs(x, x, x, mask="causal"))(x))
    assert_close(out[1], theirs(x[1], x[1], x[1], mask="causal"))  # see assert_close_to_eager
    # Mapping over the heads' mask too: one additive mask per slice.
    masks = normal((3, 5, 5), 6)
    out = mx.vmap(self_attention(ours))(x, masks)
    assert_identical(out, mx.vmap(self_attention(theirs))(x, masks))


@pytest.mark.parametrize("extension", ["safetensors", "npz"])
def test_checkpoints_load_across_the_two_classes(tmp_path, extension):
    kwargs = dict(key_input_dims=40, value_dims=96, value_output_dims=24, bias=True)
    ours, theirs = make_pair(**kwargs)
    ours_path, theirs_path = tmp_path / f"ours.{extension}", tmp_path / f"theirs.{extension}"
    ours.save_weights(str(ours_path))
    theirs.save_weights(str(theirs_path))
    fresh_ours = mhacourse.MultiHeadAttention(DIMS, HEADS, **kwargs).load_weights(str(theirs_path))
    fresh_theirs = nn.MultiHeadAttention(DIMS, HEADS, **kwargs).load_weights(str(ours_path))
    q, kv = normal((2, 4, DIMS), 1), normal((2, 6, 40), 2)
    expected = theirs(q, kv, kv)
    assert_identical(fresh_ours(q, kv, kv), expected)
    assert_identical(fresh_theirs(q, kv, kv), expected)
    assert_same_tree(fresh_ours.parameters(), theirs.parameters())


@pytest.mark.parametrize("dtype", [mx.bfloat16, mx.float16], ids=str)
def test_set_dtype(dtype):
    ours, theirs = make_pair(bias=True)
    ours.set_dtype(dtype)
    theirs.set_dtype(dtype)
    assert {p.dtype for _, p in tree_flatten(ours.parameters())} == {dtype}
    assert_same_tree(ours.parameters(), theirs.parameters())
    x = normal((2, 7, DIMS), 3, dtype)
    mask = nn.MultiHeadAttention.create_additive_causal_mask(7, dtype)
    for m in (None, "causal", mask):
        assert_identical(ours(x, x, x, mask=m), theirs(x, x, x, mask=m))


# ------------------------------------------------------------------ training

class TinyLanguageModel(nn.Module):
    """Embedding, ``nn.TransformerEncoder`` (causal), and a linear read-out."""

    def __init__(self, vocab_size, dims, num_heads, num_layers):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, dims)
        self.encoder = nn.TransformerEncoder(num_layers, dims, num_heads, mlp_dims=2 * dims)
        self.readout = nn.Linear(dims, vocab_size)

    def __call__(self, tokens):
        mask = nn.MultiHeadAttention.create_additive_causal_mask(tokens.shape[1])
        return self.readout(self.encoder(self.embedding(tokens), mask))


def train(model, batches):
    optimizer = optim.Adam(learning_rate=3e-3)

    def loss_fn(model, inputs, targets):
        return nn.losses.cross_entropy(model(inputs), targets, reduction="mean")

    step = nn.value_and_grad(model, loss_fn)
    losses = []
    for inputs, targets in batches:
        loss, grads = step(model, inputs, targets)
        optimizer.update(model, grads)
        mx.eval(model.parameters(), optimizer.state, loss)
        losses.append(loss.item())
    return losses


def test_training_a_transformer_gives_the_same_loss_at_every_step():
    vocab, dims, num_heads, length = 16, 32, 4, 12
    mx.random.seed(3)
    theirs = TinyLanguageModel(vocab, dims, num_heads, num_layers=2)
    ours = TinyLanguageModel(vocab, dims, num_heads, num_layers=2)
    for layer in ours.encoder.layers:
        layer.attention = mhacourse.MultiHeadAttention(dims, num_heads)
    ours.update(theirs.parameters())
    mx.eval(ours.parameters(), theirs.parameters())
    assert_same_tree(ours.parameters(), theirs.parameters())

    # A task with structure to learn: each sequence counts up from a random start, modulo vocab.
    rng = np.random.default_rng(0)
    batches = []
    for _ in range(100):
        start = rng.integers(0, vocab, size=(8, 1))
        sequence = mx.array((start + np.arange(length + 1)) % vocab)
        batches.append((sequence[:, :-1], sequence[:, 1:]))
    losses_ours, losses_theirs = train(ours, batches), train(theirs, batches)
    assert len(losses_ours) == 100
    assert losses_ours == losses_theirs  # every step, exactly
    assert losses_ours[-1] < 0.5 * losses_ours[0]  # and the model did learn
    assert_same_tree(ours.parameters(), theirs.parameters())


# ------------------------------------------------------------------ subclasses and attributes
#
# Code written for mlx.nn.MultiHeadAttention subclasses it, stores its own attributes on it and
# defines its own helpers. Each case builds the same subclass on both classes, copies the weights
# with update and asserts the same bits (or the same exception type).

BASES = {"mlx": nn.MultiHeadAttention, "course": mhacourse.MultiHeadAttention}


def subclass_pair(make_subclass, *args, **kwargs):
    """(on MLX's class, on the course's class), the second with the first's parameters."""
    theirs = make_subclass(nn.MultiHeadAttention)(*args, **kwargs)
    ours = make_subclass(mhacourse.MultiHeadAttention)(*args, **kwargs)
    ours.update(theirs.parameters())
    mx.eval(ours.parameters(), theirs.parameters())
    assert_same_tree(ours.parameters(), theirs.parameters())
    return theirs, ours


def with_temperature(base):
    class Temperature(base):
        """Its own temperature in ``self.scale``, and ``head_dim``/``head_dims`` of its own."""

        def __init__(self, dims, num_heads, temperature):
            self.head_dims = "set before the base's __init__"  # the base must leave it alone
            super().__init__(dims, num_heads)
            self.scale = temperature
            self.head_dim = dims // num_heads

        def sharpened(self, queries, keys, values, mask=None):
            # (B, H, L_q, D_h)
            q = mx.unflatten(self.query_proj(queries), -1, (self.num_heads, -1)).transpose(0, 2, 1, 3)
            k = mx.unflatten(self.key_proj(keys), -1, (self.num_heads, -1)).transpose(0, 2, 1, 3)  # (B, H, L_k, D_h)
            # (B, H, L_k, D_v/H)
            v = mx.unflatten(self.value_proj(values), -1, (self.num_heads, -1)).transpose(0, 2, 1, 3)
            out = mx.fast.scaled_dot_product_attention(q, k, v, scale=self.scale, mask=mask)  # (B, H, L_q, D_v/H)
            return self.out_proj(out.transpose(0, 2, 1, 3).flatten(-2, -1))  # (B, L_q, value_output_dims)

    return Temperature


def test_a_subclass_may_set_scale_and_head_dim():
    theirs, ours = subclass_pair(with_temperature, DIMS, HEADS, temperature=0.125)
    for layer in (theirs, ours):
        assert (layer.scale, layer.head_dim, layer.head_dims) == (0.125, DIMS // HEADS,
                                                                  "set before the base's __init__")
    x = normal((2, 6, DIMS), 1)
    # __call__ ignores the subclass's attributes, on both classes; its own method uses them.
    plain = theirs(x, x, x, mask="causal")
    assert_identical(ours(x, x, x, mask="causal"), plain)
    plain_mlx = nn.MultiHeadAttention(DIMS, HEADS)
    plain_mlx.update(theirs.parameters())
    assert_identical(plain, plain_mlx(x, x, x, mask="causal"))
    sharpened = ours.sharpened(x, x, x, mask="causal")
    assert_identical(sharpened, theirs.sharpened(x, x, x, mask="causal"))
    assert not mx.allclose(sharpened, plain).item()  # 0.125 is not sqrt(1 / 16): the subclass's own scale is used


def test_a_subclass_may_store_an_array_as_scale():
    # An array goes into the module's dictionary (a parameter); a class attribute named scale
    # would hide it from self.scale, or refuse it.
    def make(base):
        class Learned(base):
            def __init__(self, dims, num_heads):
                super().__init__(dims, num_heads)
                self.scale = mx.array(0.3)

            def __call__(self, queries, keys, values, mask=None):
                return self.scale * super().__call__(queries, keys, values, mask)

        return Learned

    theirs, ours = subclass_pair(make, DIMS, HEADS)
    assert dict(tree_flatten(ours.parameters()))["scale"].item() == pytest.approx(0.3)
    x = normal((2, 5, DIMS), 2)
    assert_identical(ours(x, x, x), theirs(x, x, x))
    loss = lambda layer, x: (layer(x, x, x) ** 2).mean()
    grads_ours = nn.value_and_grad(ours, loss)(ours, x)[1]
    grads_theirs = nn.value_and_grad(theirs, loss)(theirs, x)[1]
    assert_same_tree(grads_ours, grads_theirs)
    assert grads_ours["scale"].item() != 0


def with_helpers(base):
    class Helpers(base):
        """Helpers named ``project``, ``split``, ``attend``, ``merge``, ``forward`` of its own."""

        def project(self, x):
            return self.query_proj(x)

        def split(self, x):
            return mx.unflatten(x, -1, (self.num_heads, -1)).transpose(0, 2, 1, 3)  # (B, H, L, D_h)

        def attend(self, q, k, v, mask):
            return mx.fast.scaled_dot_product_attention(q, k, v, scale=1.0, mask=mask)

        def merge(self, x):
            return x.transpose(0, 2, 1, 3).flatten(-2, -1)  # (B, L, H * D_h)

        def forward(self, x):
            q = self.split(self.project(x))  # (B, H, L, D_h)
            return self.merge(self.attend(q, q, q, None))  # (B, L, dims)

    return Helpers


def test_a_subclass_may_define_helpers_of_its_own():
    theirs, ours = subclass_pair(with_helpers, DIMS, HEADS, key_input_dims=24)
    q, kv = normal((2, 5, DIMS), 3), normal((2, 7, 24), 4)
    for mask in (None, "causal"):
        assert_identical(ours(q, kv, kv, mask=mask), theirs(q, kv, kv, mask=mask))
    assert_identical(ours.forward(q), theirs.forward(q))
    out, weights = ours(q, kv, kv, return_weights=True)  # the course's extension still works
    assert weights.shape == (2, HEADS, 5, 7)
    assert_close(out, theirs(q, kv, kv))


def test_a_subclass_may_hold_modules_under_names_the_course_uses():
    # Modules, like arrays, live in the module's dictionary: any class attribute of the same name
    # (a method "project" or "attend") would shadow them.
    def make(base):
        class Gated(base):
            def __init__(self, dims, num_heads):
                super().__init__(dims, num_heads)
                self.project = nn.Linear(dims, dims)
                self.attend = nn.Linear(dims, 1)

            def __call__(self, x, mask=None):
                y = super().__call__(x, x, x, mask)
                return self.project(y) * mx.sigmoid(self.attend(x))

        return Gated

    theirs, ours = subclass_pair(make, DIMS, HEADS)
    assert {"project.weight", "attend.bias"} <= {name for name, _ in tree_flatten(ours.parameters())}
    x = normal((2, 6, DIMS), 5)
    assert_identical(ours(x, mask="causal"), theirs(x, mask="causal"))


def with_residual(base):
    class Residual(base):
        """Self-attention with a residual connection, through ``super().__call__``."""

        def __call__(self, x, mask=None):
            return x + super().__call__(x, x, x, mask=mask)

    return Residual


def test_a_subclass_may_override_call_and_call_super():
    theirs, ours = subclass_pair(with_residual, DIMS, HEADS)
    x = normal((2, 6, DIMS), 6)
    mask = nn.MultiHeadAttention.create_additive_causal_mask(6)
    for m in (None, "causal", mask):
        assert_identical(ours(x, mask=m), theirs(x, mask=m))
    loss = lambda layer, x: (layer(x, mask="causal") ** 2).mean()
    value_ours, grads_ours = nn.value_and_grad(ours, loss)(ours, x)
    value_theirs, grads_theirs = nn.value_and_grad(theirs, loss)(theirs, x)
    assert_identical(value_ours, value_theirs)
    assert_same_tree(grads_ours, grads_theirs)
    compiled_ours = mx.compile(lambda x, mask: ours(x, mask=mask), shapeless=True)
    compiled_theirs = mx.compile(lambda x, mask: theirs(x, mask=mask), shapeless=True)
    for length in LENGTHS:
        x, mask = normal((1, length, DIMS), length), causal(length)
        assert_identical(compiled_ours(x, mask), compiled_theirs(x, mask))


def with_extra_parameters(base):
    class Biased(base):
        """A learned gate per feature and a learned bias on the scores."""

        def __init__(self, dims, num_heads, length):
            super().__init__(dims, num_heads, bias=True)
            self.gate = mx.random.uniform(shape=(dims,), key=mx.random.key(7))
            self.score_bias = mx.random.normal((num_heads, length, length), key=mx.random.key(8))
            self.norm = nn.LayerNorm(dims)

        def __call__(self, queries, keys, values, mask=None):
            return self.gate * super().__call__(self.norm(queries), keys, values, mask=self.score_bias)

    return Biased


def test_a_subclass_may_add_parameters():
    theirs, ours = subclass_pair(with_extra_parameters, DIMS, HEADS, length=5)
    names = sorted(name for name, _ in tree_flatten(ours.trainable_parameters()))
    assert names == sorted(name for name, _ in tree_flatten(theirs.trainable_parameters()))
    assert {"gate", "score_bias", "norm.weight", "norm.bias", "out_proj.bias"} <= set(names)
    x = normal((2, 5, DIMS), 9)
    assert_identical(ours(x, x, x), theirs(x, x, x))
    loss = lambda layer, x: (layer(x, x, x) ** 2).mean()
    grads_ours = nn.value_and_grad(ours, loss)(ours, x)[1]
    assert_same_tree(grads_ours, nn.value_and_grad(theirs, loss)(theirs, x)[1])
    assert mx.abs(grads_ours["score_bias"]).max().item() > 0
    nn.quantize(ours, bits=8, group_size=32)
    nn.quantize(theirs, bits=8, group_size=32)
    assert_identical(ours(x, x, x), theirs(x, x, x))


# Attributes MLX's layer does not have, and the course's old or internal names among them.
# Setting any of them changes nothing the layer computes.
SET_AFTERWARDS = {
    "scale": 0.125, "head_dim": 3, "head_dims": 5, "dims": 7, "project": "not a method",
    "attend": None, "split": print, "forward": 1, "return_weights": True, "mask": "causal",
    "temperature": mx.array(2.0), "cache": [mx.zeros((1,))], "extras": {"a": mx.ones((2,))},
}


@pytest.mark.parametrize("name", SET_AFTERWARDS)
def test_attributes_set_after_construction_change_nothing(name):
    ours, theirs = make_pair(value_dims=32, bias=True)
    q, kv = normal((2, 4, DIMS), 10), normal((2, 6, DIMS), 11)
    before = theirs(q, kv, kv)
    for layer in (ours, theirs):
        setattr(layer, name, SET_AFTERWARDS[name])
    assert getattr(ours, name) is getattr(theirs, name) is SET_AFTERWARDS[name]
    assert vars(ours).keys() == vars(theirs).keys() and ours.keys() == theirs.keys()
    assert_same_tree(ours.parameters(), theirs.parameters())
    for mask in (None, "causal"):
        out = ours(q, kv, kv, mask=mask)
        assert_identical(out, theirs(q, kv, kv, mask=mask))
    assert_identical(ours(q, kv, kv), before)


@pytest.mark.parametrize("kind", ["list", "tuple", "numpy", "numpy-float64", "float", "None"])
@pytest.mark.parametrize("position", [0, 1, 2], ids=["queries", "keys", "values"])
def test_non_array_inputs_raise_mlxs_exception_type(kind, position):
    ours, theirs = make_pair()
    x = normal((1, 3, DIMS), 12)
    converted = {"list": x.tolist(), "tuple": tuple(tuple(map(tuple, b)) for b in x.tolist()),
                 "numpy": np.array(x), "numpy-float64": np.array(x, dtype=np.float64),
                 "float": 1.0, "None": None}[kind]
    args = [x, x, x]
    args[position] = converted
    errors = []
    for layer in (theirs, ours):
        with pytest.raises(Exception) as caught:
            mx.eval(layer(*args))
        errors.append(caught)
    assert errors[0].type is TypeError  # MLX's own behaviour, so the comparison below means something
    assert errors[1].type is errors[0].type
    name = ("queries", "keys", "values")[position]
    assert str(errors[1].value).startswith(f"{name} must be an mlx.core.array, got a ")
    assert f"mx.array({name})" in str(errors[1].value)


@pytest.mark.parametrize("kind", ["list", "numpy", "float"])
def test_non_array_masks_raise_mlxs_exception_type(kind):
    ours, theirs = make_pair()
    x = normal((1, 3, DIMS), 13)
    mask = nn.MultiHeadAttention.create_additive_causal_mask(3)
    mask = {"list": mask.tolist(), "numpy": np.array(mask), "float": 0.0}[kind]
    with pytest.raises(TypeError):
        theirs(x, x, x, mask=mask)
    with pytest.raises(TypeError, match="mask must be 'causal', an mx.array or None"):
        ours(x, x, x, mask=mask)


# ------------------------------------------------------------------ the type

def test_the_layer_is_an_mlx_multi_head_attention_by_type():
    layer = mhacourse.MultiHeadAttention(DIMS, HEADS)
    assert isinstance(layer, nn.MultiHeadAttention)
    # Code that walks a model to find its attention layers by type finds the course's.
    model = nn.TransformerEncoder(2, DIMS, HEADS)
    for block in model.layers:
        block.attention = mhacourse.MultiHeadAttention(DIMS, HEADS)
    found = [m for _, m in model.named_modules() if isinstance(m, nn.MultiHeadAttention)]
    assert len(found) == 2 and all(type(m) is mhacourse.MultiHeadAttention for m in found)


def test_the_layer_has_exactly_mlxs_names_and_state():
    theirs = nn.MultiHeadAttention(DIMS, HEADS)
    ours = mhacourse.MultiHeadAttention(DIMS, HEADS)
    assert set(dir(ours)) == set(dir(theirs))  # no method or attribute MLX's layer lacks
    assert vars(ours) == vars(theirs)  # num_heads and Module's bookkeeping, nothing else
    assert ours.keys() == theirs.keys()


def test_everything_mlxs_class_computes_is_overridden(monkeypatch):
    # The course builds every step itself: with MLX's methods broken, its layer still works.
    def broken(*args, **kwargs):
        raise AssertionError("mlx.nn.MultiHeadAttention's own code ran")

    mlx_methods = {name for name, value in vars(nn.MultiHeadAttention).items()
                   if callable(value) or isinstance(value, staticmethod)}
    assert mlx_methods == {"__init__", "__call__", "create_additive_causal_mask"}
    theirs = nn.MultiHeadAttention(DIMS, HEADS, bias=True)
    q = normal((2, 5, DIMS), 14)
    mask = nn.MultiHeadAttention.create_additive_causal_mask(5)
    expected = theirs(q, q, q, mask=mask)
    for name in mlx_methods:
        monkeypatch.setattr(nn.MultiHeadAttention, name, broken)
    ours = mhacourse.MultiHeadAttention(DIMS, HEADS, bias=True)
    ours.update(theirs.parameters())
    assert_identical(ours.create_additive_causal_mask(5), mask)
    assert_identical(ours(q, q, q, mask=mask), expected)
    assert ours(q, q, q, return_weights=True)[1].shape == (2, HEADS, 5, 5)
