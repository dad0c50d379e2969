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
