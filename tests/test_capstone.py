"""The capstone model: data, shapes, weights per layer, and that training learns."""

import mlx.core as mx
import pytest
from mlx.utils import tree_flatten

import mhacourse
from mhacourse import capstone


def test_sequences_are_digits_sep_then_reversed_digits():
    digits = mx.array([[3, 1, 4, 1], [5, 9, 2, 6]])
    inputs, targets = capstone.make_sequences(digits)
    assert inputs.tolist() == [[3, 1, 4, 1, capstone.SEP, 1, 4, 1], [5, 9, 2, 6, capstone.SEP, 6, 2, 9]]
    assert targets.tolist() == [[1, 4, 1, capstone.SEP, 1, 4, 1, 3], [9, 2, 6, capstone.SEP, 6, 2, 9, 5]]


def test_make_digits_is_seeded_and_in_range():
    a = capstone.make_digits(64, 6, key=mx.random.key(3))
    b = capstone.make_digits(64, 6, key=mx.random.key(3))
    c = capstone.make_digits(64, 6, key=mx.random.key(4))
    assert a.shape == (64, 6)
    assert mx.array_equal(a, b) and not mx.array_equal(a, c)
    assert a.min().item() >= 0 and a.max().item() <= 9


def test_model_uses_the_course_layer_and_returns_weights_per_layer():
    mx.random.seed(0)
    model = capstone.TinyTransformer(seq_len=5, dims=16, num_heads=2, num_layers=3)
    assert all(isinstance(b.attention, mhacourse.MultiHeadAttention) for b in model.blocks)
    inputs, _ = capstone.make_sequences(capstone.make_digits(4, 5, key=mx.random.key(0)))
    logits = model(inputs)
    assert logits.shape == (4, 10, capstone.VOCAB_SIZE)
    logits_too, weights = model(inputs, return_weights=True)
    assert mx.allclose(logits, logits_too, atol=1e-5)
    assert len(weights) == 3
    for w in weights:
        assert w.shape == (4, 2, 10, 10)
        assert mx.allclose(w.sum(-1), mx.ones((4, 2, 10)), atol=1e-5)
        # causal: nothing above the diagonal
        assert mx.all(mx.triu(w, k=1) == 0).item()


def test_model_rejects_sequences_longer_than_built_for():
    model = capstone.TinyTransformer(seq_len=3, dims=8, num_heads=2, num_layers=1)
    with pytest.raises(ValueError, match="seq_len"):
        model(mx.zeros((1, 7), dtype=mx.int32))
    with pytest.raises(ValueError, match="seq_len"):
        capstone.generate(model, mx.zeros((1, 4), dtype=mx.int32))
    with pytest.raises(ValueError, match="num_layers"):
        capstone.TinyTransformer(seq_len=3, num_layers=0)


def test_a_few_steps_reduce_the_loss():
    mx.random.seed(0)
    model = capstone.TinyTransformer(seq_len=4, dims=16, num_heads=2, num_layers=1)
    losses = capstone.train(model, steps=30, batch_size=16, learning_rate=1e-2, seed=1)
    assert len(losses) == 30
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5


def test_generate_and_accuracy_shapes():
    mx.random.seed(0)
    model = capstone.TinyTransformer(seq_len=4, dims=16, num_heads=2, num_layers=1)
    digits = capstone.make_digits(10, 4, key=mx.random.key(7))
    answer = capstone.generate(model, digits)
    assert answer.shape == (10, 4)
    accuracy = capstone.token_accuracy(model, digits)
    assert 0.0 <= accuracy <= 1.0
    assert accuracy == pytest.approx((answer == digits[:, ::-1]).mean().item())


def test_mirror_score_counts_the_antidiagonal():
    L = 3
    assert capstone.mirror_positions(L).tolist() == [2, 1, 0]
    # head 0 looks at the mirrored digit, head 1 at the separator
    perfect = mx.zeros((2 * L, 2 * L))
    for q, k in zip(range(L, 2 * L), [2, 1, 0]):
        perfect[q, k] = 1.0
    sep = mx.zeros((2 * L, 2 * L))
    sep[:, L] = 1.0
    w = mx.stack([perfect, sep])[None]  # (1, 2, 2L, 2L)
    assert capstone.mirror_score(w, L).tolist() == [1.0, 0.0]


def test_positions_switch_removes_the_position_embedding():
    with_positions = capstone.TinyTransformer(seq_len=3, dims=8, num_heads=2, num_layers=1)
    without = capstone.TinyTransformer(seq_len=3, dims=8, num_heads=2, num_layers=1, positions=False)
    names = {name for name, _ in tree_flatten(with_positions.parameters())}
    names_without = {name for name, _ in tree_flatten(without.parameters())}
    assert names - names_without == {"position_embedding.weight"}
    assert names_without < names
    with pytest.raises(ValueError, match="positions"):
        capstone.TinyTransformer(seq_len=3, positions="learned")


def test_without_positions_one_layer_cannot_see_the_order_of_the_earlier_tokens():
    # With one causal layer and no positions, the last position sees the *set* of tokens before it:
    # reordering them leaves its logits unchanged. With positions they change.
    digits = mx.array([[3, 1, 4, 1, 5]])
    shuffled = mx.array([[1, 5, 3, 4, 1]])
    for positions in (False, True):
        mx.random.seed(0)
        model = capstone.TinyTransformer(seq_len=5, dims=16, num_heads=2, num_layers=1, positions=positions)
        last = [model(capstone.make_sequences(d)[0][:, :6])[:, -1] for d in (digits, shuffled)]  # at SEP
        assert mx.allclose(last[0], last[1], atol=1e-5).item() is (not positions)
