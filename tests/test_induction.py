"""mhacourse.induction: the data, the scores and the ablation, checked on cases worked out by hand.

(Training itself is not tested here: the recipe does not yet form an induction head reliably
for every seed; see the module docstring.)
"""

import mlx.core as mx
import pytest

from mhacourse import MultiHeadAttention, induction


def test_batches_end_with_a_repeated_segment_of_varying_length():
    tokens, seg_lens = induction.make_batch(64, 16, 32, key=mx.random.key(0), min_seg=3, max_seg=8)
    assert tokens.shape == (64, 16) and tokens.dtype == mx.int32 and seg_lens.shape == (64,)
    assert 3 <= seg_lens.min().item() and seg_lens.max().item() <= 8
    assert len(set(seg_lens.tolist())) > 1                       # the offset changes: no positional shortcut
    for b in range(64):
        n = seg_lens[b].item()
        assert tokens[b, 16 - n:].tolist() == tokens[b, 16 - 2 * n:16 - n].tolist()
    again, _ = induction.make_batch(64, 16, 32, key=mx.random.key(0), min_seg=3, max_seg=8)
    assert mx.array_equal(tokens, again)                          # same key, same batch
    with pytest.raises(ValueError, match="max_seg"):
        induction.make_batch(4, 16, 32, key=mx.random.key(0), max_seg=9)


def test_repeated_positions_are_those_whose_next_token_is_a_copy_with_an_earlier_copy():
    mask = induction.repeated_positions(mx.array([3, 5]), 10)
    assert mask[0].tolist() == [False] * 7 + [True] * 2           # t = 7, 8 predict tokens 8, 9
    assert mask[1].tolist() == [False] * 5 + [True] * 4


def test_attend_is_the_course_layer_with_a_causal_mask():
    layer = MultiHeadAttention(16, 4)
    x = mx.random.normal((2, 7, 16), key=mx.random.key(1))
    out, weights = induction.attend(layer, x)
    expected, expected_weights = layer(x, x, x, mask="causal", return_weights=True)
    assert mx.allclose(out, expected, atol=1e-5) and mx.allclose(weights, expected_weights, atol=1e-5)
    off, _ = induction.attend(layer, x, keep=mx.array([1.0, 0.0, 1.0, 1.0]))
    assert not mx.allclose(off, out, atol=1e-4)                   # switching a head off changes the output


def test_scores_on_hand_made_weights():
    L, n = 8, 3
    previous = mx.zeros((1, 2, L, L))
    previous[0, 0, 0, 0] = 1.0
    for t in range(1, L):
        previous[0, 0, t, t - 1] = 1.0                            # head 0: the previous token, exactly
        previous[0, 1, t, :t + 1] = 1.0 / (t + 1)                 # head 1: uniform over the past
    scores = induction.previous_token_score(previous).tolist()
    assert scores[0] == pytest.approx(1.0) and scores[1] < 0.5

    stripe = mx.zeros((1, 2, L, L))
    for t in range(L):
        stripe[0, 0, t, t - n + 1 if t >= L - n else t] = 1.0     # head 0: one step after the earlier copy
        stripe[0, 1, t, t] = 1.0                                  # head 1: itself
    scores = induction.induction_score(stripe, mx.array([n])).tolist()
    assert scores == pytest.approx([1.0, 0.0])
    assert induction.find_head([previous, stripe], mx.array([n]), "induction")[:2] == (1, 0)
    assert induction.find_head([previous, stripe], mx.array([n]), "previous")[:2] == (0, 0)


def test_model_shapes_and_ablation_keys():
    model = induction.InductionModel(vocab_size=12, seq_len=10, dims=16, num_heads=2)
    batch = induction.make_batch(8, 10, 12, key=mx.random.key(2), max_seg=4)
    logits, weights = model(batch[0], return_weights=True)
    assert logits.shape == (8, 10, 12) and [w.shape for w in weights] == [(8, 2, 10, 10)] * 2
    effects = induction.ablation_effects(model, batch)
    assert set(effects) == {"none", (0, 0), (0, 1), (1, 0), (1, 1)}
    history = induction.train(model, steps=3, batch_size=4, record_every=1)
    assert history["step"] == [0, 1, 2, 3] and len(history["repeated"]) == 4
