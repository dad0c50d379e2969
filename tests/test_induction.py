"""mhacourse.induction: the data, the scores and the ablation, checked on cases worked out by hand;
then one full training run (about 10-20 s) that must form both heads, whose pictures (lesson 09's)
are saved under ``artifacts/lesson09/``.
"""

from pathlib import Path

import matplotlib
import mlx.core as mx
import numpy as np
import pytest

matplotlib.use("Agg")

from mhacourse import MultiHeadAttention, induction
from mhacourse.viz import plot_heads
from mhacourse.viz.diagrams import plot_ablation, plot_induction_training

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "lesson09"


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


def test_make_model_seeds_the_initialisation():
    first, again = induction.make_model(seed=3), induction.make_model(seed=3)
    other = induction.make_model(seed=4)
    w = [m.layers[0].query_proj.weight for m in (first, again, other)]
    assert mx.array_equal(w[0], w[1]) and not mx.array_equal(w[0], w[2])


@pytest.mark.slow  # trains for ~20 s
def test_training_forms_both_heads_and_the_pictures_show_them():
    model = induction.make_model(seed=0)
    history = induction.train(model, seed=0)
    assert set(history) == {"step", "random", "repeated", "previous", "induction"}
    assert history["repeated"][0] > 3.0 and history["repeated"][-1] < 0.8      # the repeat became predictable
    assert history["previous"][-1] > 0.6 and history["induction"][-1] > 0.5

    batch = induction.make_batch(256, model.seq_len, model.vocab_size, key=mx.random.key(2024))
    _, weights = model(batch[0], return_weights=True)
    prev_layer, prev_head, _ = induction.find_head(weights, batch[1], "previous")
    ind_layer, _, _ = induction.find_head(weights, batch[1], "induction")
    assert (prev_layer, ind_layer) == (0, 1)
    effects = induction.ablation_effects(model, batch)
    cost = {k: v - effects["none"] for k, v in effects.items() if k != "none"}
    assert max(cost, key=cost.get) == (0, prev_head) and cost[0, prev_head] > 2.0

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    formed = history["step"][int(np.argmax(np.array(history["induction"]) > 0.5))]
    figures = {
        "training.png": plot_induction_training(history, threshold=formed),
        "heads.png": plot_heads([w[:1] for w in weights], title="panels count layers from 0: top = layer 1"),
        "ablation.png": plot_ablation(effects, labels={(0, prev_head): "previous token"}),
    }
    for name, fig in figures.items():
        fig.savefig(ARTIFACTS / name, dpi=100, bbox_inches="tight")
        assert (ARTIFACTS / name).stat().st_size > 10_000
    texts = [t.get_text() for t in figures["ablation.png"].findobj(matplotlib.text.Text)]
    assert f"{cost[0, prev_head]:+.2f}" in texts                                  # the bars show the measured change
