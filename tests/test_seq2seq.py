"""mhacourse.seq2seq: padded batches, masks that hide padding, and a seeded training run that reverses.

The training test saves the learned cross-attention of lesson 04 under ``artifacts/lesson04/``.
"""

from pathlib import Path

import matplotlib
import mlx.core as mx
import numpy as np
import pytest

matplotlib.use("Agg")

from mhacourse import seq2seq
from mhacourse.viz import plot_heads

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "lesson04"


def test_batches_are_padded_and_answers_end_with_eos():
    source, lengths, target = seq2seq.make_batch(16, key=mx.random.key(0), min_len=3, max_len=8)
    assert source.shape == (16, 8) and target.shape == (16, 9) and lengths.shape == (16,)
    for b in range(16):
        n = lengths[b].item()
        digits = source[b, :n].tolist()
        assert all(t >= seq2seq.FIRST_DIGIT for t in digits) and source[b, n:].tolist() == [seq2seq.PAD] * (8 - n)
        assert target[b].tolist() == digits[::-1] + [seq2seq.EOS] + [seq2seq.PAD] * (8 - n)
    _, _, copied = seq2seq.make_batch(16, key=mx.random.key(0), task="copy")
    assert copied[0, :lengths[0].item()].tolist() == source[0, :lengths[0].item()].tolist()


def test_padding_is_invisible_to_the_encoder_and_the_cross_attention():
    model = seq2seq.make_model(seed=1)
    source, lengths, target = seq2seq.make_batch(4, key=mx.random.key(1))
    weights = seq2seq.cross_attention(model, source, lengths, target)
    assert weights.shape == (4, 4, 9, 8)
    for b in range(4):
        assert mx.all(weights[b, :, :, lengths[b].item():] == 0).item()      # padded keys get exactly 0
    # Changing what sits in the padding changes nothing the model computes.
    junk = mx.where(source == seq2seq.PAD, 7, source)
    assert mx.allclose(model(source, lengths, target)[0], model(junk, lengths, target)[0], atol=1e-5)


@pytest.mark.slow  # trains for ~8 s
def test_training_reverses_every_held_out_source_and_aligns_anti_diagonally():
    model = seq2seq.make_model(seed=0)
    losses = seq2seq.train(model, seed=0)
    assert losses[-1] < 0.05 * losses[0]
    source, lengths, target = seq2seq.make_batch(500, key=mx.random.key(77))
    sequences, tokens = seq2seq.accuracy(model, source, lengths, target)
    assert sequences > 0.95 and tokens > 0.98
    weights = np.array(seq2seq.cross_attention(model, source, lengths, target)).mean(axis=1)   # (B, L_tgt, L_src)
    lens = np.array(lengths)
    hits = sum((weights[b, j].argmax() == lens[b] - 1 - j) for b in range(500) for j in range(lens[b]))
    assert hits / lens.sum() > 0.75       # the heads' mean: answer j reads source n - 1 - j (83% measured on a CPU)

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    n = lengths[0].item()
    fig = plot_heads(seq2seq.cross_attention(model, source[:1], lengths[:1], target[:1]),
                     title=f"cross-attention after training (source of {n} digits)")
    fig.savefig(ARTIFACTS / "cross_attention.png", dpi=100, bbox_inches="tight")
    assert (ARTIFACTS / "cross_attention.png").stat().st_size > 10_000


@pytest.mark.parametrize("warmup", [-1, 10])
def test_train_names_a_warmup_outside_the_steps(warmup):
    with pytest.raises(ValueError, match=r"warmup must be in \[0, steps=10\)"):
        seq2seq.train(seq2seq.make_model(seed=0), steps=10, warmup=warmup)
