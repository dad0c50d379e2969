"""Lesson 09: what trained heads do — the scores that find a previous-token head and an induction head."""

import mlx.core as mx
import numpy as np

from mhacourse import induction

from ..exercise import Case, Exercise, Mistake

EXERCISES = []  # this lesson's exercises, declared whole, in notebook order; the registry collects them


def _weights(seed, B, H, L, seg_lens, planted=None):
    """Causal attention weights ``(B, H, L, L)``: random rows, with head ``h`` of ``planted`` pushed
    towards a pattern (``"previous"``: ``t - 1``; ``"induction"``: ``t - n + 1`` in the repeated part)."""
    rng = np.random.default_rng(seed)
    scores = rng.standard_normal((B, H, L, L)).astype(np.float32)
    causal = np.tril(np.ones((L, L), bool))
    for head, kind in (planted or {}).items():
        for b in range(B):
            n = int(seg_lens[b])
            for t in range(1, L):
                key = t - 1 if kind == "previous" else (t - n + 1 if t >= L - n else None)
                if key is not None and 0 <= key <= t:
                    scores[b, head, t, key] += 6.0
    scores = np.where(causal, scores, -np.inf)
    weights = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return weights / weights.sum(axis=-1, keepdims=True)


def _weights_case(name, seed, B, H, L, seg_lens, planted=None, with_lengths=True):
    weights = _weights(seed, B, H, L, seg_lens, planted)
    lengths = np.array(seg_lens, np.int32)
    args = (weights, lengths) if with_lengths else (weights,)
    return Case(name, lambda: (tuple(mx.array(a) for a in args), {}))


def _random_lengths(rng, B, L):
    return [int(n) for n in rng.integers(2, L // 2 + 1, size=B)]


# ---------------------------------------------------------------------------
# induction_score(weights, seg_lens): the stripe one step after the earlier copy


def _induction_bug(bug):
    def wrong(weights, seg_lens):
        L = weights.shape[-1]
        rows = mx.arange(L)[None, :]  # (1, L)
        shift = 0 if bug == "induction_copy_itself" else 1
        target = mx.clip(rows - seg_lens[:, None] + shift, 0, L - 1)  # (B, L)
        picked = mx.take_along_axis(weights, target[:, None, :, None], axis=-1)[..., 0]  # (B, H, L)
        counted = (rows >= L - seg_lens[:, None])[:, None, :]  # (B, 1, L)
        if bug == "induction_every_position":
            counted = mx.ones_like(counted)
        return (picked * counted).sum(axis=(0, 2)) / (counted.sum() * 1.0)

    return wrong


def _hidden_induction(rng):
    B, H, L = int(rng.integers(3, 5)), int(rng.choice([3, 5])), int(rng.integers(17, 23))
    lengths = _random_lengths(rng, B, L)
    return [_weights_case("hidden", int(rng.integers(10**6)), B, H, L, lengths, {int(rng.integers(H)): "induction"})]


EXERCISES.append(Exercise(
    id="induction_score",
    hidden_cases=_hidden_induction,
    lesson="09",
    title="The induction score of every head",
    answer_name="induction_score",
    signature="induction_score(weights, seg_lens)",
    reference=induction.induction_score,
    cases=[
        _weights_case("1 sequence, 2 heads, 8 tokens, a segment of 3; head 1 is an induction head", 900, 1, 2, 8,
                      [3], {1: "induction"}),
        _weights_case("batch 3, 4 heads, 12 tokens, segments of 2, 4 and 5; head 2 is an induction head", 901,
                      3, 4, 12, [2, 4, 5], {2: "induction", 0: "previous"}),
    ],
    mistakes=[
        Mistake("induction_copy_itself",
                "An induction head looks one step *after* the earlier copy: weights[b, h, t, t - n + 1]. "
                "Position t - n is the copy itself, what the current token already is.",
                _induction_bug("induction_copy_itself"),
                nudge="Which key does an induction head look at: the earlier copy, or the token after it?"),
        Mistake("induction_every_position",
                "Average over the repeated part only (t >= L - n): before it there is no earlier copy to "
                "look back to, so those rows dilute the score.", _induction_bug("induction_every_position"),
                nudge="Over which positions does the induction score average?"),
    ],
))

# ---------------------------------------------------------------------------
# previous_token_score(weights): the stripe just below the diagonal


def _previous_bug(bug):
    def wrong(weights):
        L = weights.shape[-1]
        if bug == "previous_diagonal":
            rows = mx.arange(L)
            return weights[:, :, rows, rows].mean(axis=(0, 2))
        rows = mx.arange(1, L)
        total = weights[:, :, rows, rows - 1].sum(axis=(0, 2))
        return total / (weights.shape[0] * L)  # the first query, which has no previous token, counted

    return wrong


def _hidden_previous(rng):
    B, H, L = int(rng.integers(3, 5)), int(rng.choice([3, 5])), int(rng.integers(13, 19))
    lengths = _random_lengths(rng, B, L)
    return [_weights_case("hidden", int(rng.integers(10**6)), B, H, L, lengths, {int(rng.integers(H)): "previous"},
                          with_lengths=False)]


EXERCISES.append(Exercise(
    id="previous_token_score",
    hidden_cases=_hidden_previous,
    lesson="09",
    title="The previous-token score of every head",
    answer_name="previous_token_score",
    signature="previous_token_score(weights)",
    reference=induction.previous_token_score,
    cases=[
        _weights_case("1 sequence, 2 heads, 6 tokens; head 0 looks one step back", 910, 1, 2, 6, [2],
                      {0: "previous"}, with_lengths=False),
        _weights_case("batch 2, 3 heads, 10 tokens; head 2 looks one step back", 911, 2, 3, 10, [3, 4],
                      {2: "previous"}, with_lengths=False),
    ],
    mistakes=[
        Mistake("previous_diagonal",
                "The previous token is one step left of the diagonal: weights[b, h, t, t - 1] for t >= 1, "
                "not weights[b, h, t, t].", _previous_bug("previous_diagonal"),
                nudge="Which key is the previous token of query t?"),
        Mistake("previous_counts_first",
                "Query 0 has no previous token: average over the L - 1 queries t = 1 … L - 1, not over all L.",
                _previous_bug("previous_counts_first"), nudge="How many queries have a previous token?"),
    ],
))
