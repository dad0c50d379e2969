"""What trained heads do: a 2-layer attention-only model that learns induction heads (lesson 09).

The task: a sequence of random tokens (drawn uniformly, so some repeat by chance) ends with a
random segment repeated (its length changes from sequence to sequence). The random part cannot be
predicted; the repeat can, by a two-step circuit that small transformers are known to learn (Olsson et al., 2022,
"In-context learning and induction heads"):

1. a **previous-token head** in layer 1 writes, at every position, which token came just before;
2. an **induction head** in layer 2, at a position holding token ``A``, looks for the earlier
   position whose *previous* token was ``A`` — the token right after the earlier copy of ``A`` —
   and copies that token as the prediction.

The model is built from the course's layer (``mhacourse.MultiHeadAttention``) and has no MLP and no
LayerNorm, so every bit of the circuit is in the attention weights.

The recipe (the defaults of :func:`make_model` and :func:`train`): 32 token ids, sequences of 24,
segments of 3-12 tokens, ``dims=64``, two heads per layer, Adam at ``5e-3``, 1,000 steps of 64
sequences (about 10-20 s on one CPU core). Measured with MLX 0.32 on a CPU, every seed from 0 to 5
formed both heads between steps 600 and 900: a layer-1 head with a previous-token score above 0.7
and layer-2 heads with induction scores near 0.7, while the loss on the repeated part fell from
3.5 to about 0.5. At ``learning_rate=1e-2`` or with 16-token sequences the same model often found
no induction head, or spread the previous-token job over both heads. :func:`make_model` seeds the
initialisation, and :func:`train` the batches, so a run is repeatable.

>>> from mhacourse import induction
>>> model = induction.make_model(seed=0)
>>> history = induction.train(model, steps=10)
"""


from __future__ import annotations

__lesson__ = "09"  # the lesson that teaches this module: the grader binds it only for later lessons

import math
from collections.abc import Sequence

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim

from .attention.fused import MultiHeadAttention
from .attention.multi_head import merge_heads, split_heads

__all__ = [
    "make_batch",
    "repeated_positions",
    "InductionModel",
    "make_model",
    "attend",
    "train",
    "half_losses",
    "previous_token_score",
    "induction_score",
    "find_head",
    "ablation_effects",
]


def make_batch(batch_size: int, seq_len: int, vocab_size: int, *, key: mx.array, min_seg: int = 3,
               max_seg: int | None = None) -> tuple[mx.array, mx.array]:
    """Sequences that end with a random segment repeated: ``prefix, segment, segment``.

    Every sequence has ``seq_len`` tokens, drawn uniformly up to the repeat. Its segment length ``n`` is
    drawn per sequence from ``min_seg .. max_seg``, so the distance between a token and its earlier
    copy changes from sequence to sequence: a head cannot find the copy by position alone, it has to
    match content.

    Args:
        batch_size (int): The number of sequences ``B``.
        seq_len (int): The length ``L`` of every sequence.
        vocab_size (int): The number of token ids.
        key (array): The random key: the same key gives the same batch.
        min_seg (int): The shortest segment. Default: ``3``.
        max_seg (int, optional): The longest segment. Default: ``seq_len // 2``.

    Returns:
        tuple(array, array): ``(B, L)`` int32 tokens, and ``(B,)`` segment lengths ``n``, with
        ``tokens[b, L - n + j] == tokens[b, L - 2n + j]`` for ``j < n``.
    """
    max_seg = seq_len // 2 if max_seg is None else max_seg
    if not 1 <= min_seg <= max_seg <= seq_len // 2:
        raise ValueError(f"need 1 <= min_seg ({min_seg}) <= max_seg ({max_seg}) <= seq_len // 2 ({seq_len // 2}).")
    k_tokens, k_len = mx.random.split(key)
    fresh = mx.random.randint(0, vocab_size, (batch_size, seq_len), key=k_tokens).astype(mx.int32)   # (B, L)
    n = mx.random.randint(min_seg, max_seg + 1, (batch_size,), key=k_len)   # (B,)
    positions = mx.arange(seq_len)[None, :]                          # (1, L)
    start = seq_len - n[:, None]                                     # (B, 1): first repeated position
    source = mx.where(positions >= start, positions - n[:, None], positions)   # copy from n back
    return mx.take_along_axis(fresh, source, axis=1), n.astype(mx.int32)


def repeated_positions(seg_lens: mx.array, seq_len: int) -> mx.array:
    """``(B, L - 1)`` booleans: the positions ``t`` whose next token the repeat makes predictable.

    Position ``t`` predicts token ``t + 1``. That token is a copy, and the token at ``t`` has an
    earlier copy to look up, when ``t >= L - n`` (``t = L - n - 1`` predicts the first repeated token
    from the segment's last, which has no earlier copy).
    """
    return mx.arange(seq_len - 1)[None, :] >= (seq_len - seg_lens)[:, None]


class InductionModel(nn.Module):
    """Token and position embeddings, ``num_layers`` causal attention layers with residuals, unembedding.

    Args:
        vocab_size (int): The number of token ids.
        seq_len (int): The longest sequence (the number of learned positions).
        dims (int): The model width. Default: ``64``.
        num_heads (int): Heads per layer. Default: ``2``.
        num_layers (int): Attention layers. Default: ``2``.
    """

    def __init__(self, vocab_size: int, seq_len: int, dims: int = 64, num_heads: int = 2,
                 num_layers: int = 2) -> None:
        super().__init__()
        self.vocab_size, self.seq_len, self.num_heads = vocab_size, seq_len, num_heads
        self.embed = nn.Embedding(vocab_size, dims)
        self.positions = nn.Embedding(seq_len, dims)
        self.layers = [MultiHeadAttention(dims, num_heads) for _ in range(num_layers)]
        self.unembed = nn.Linear(dims, vocab_size, bias=False)

    def __call__(self, tokens: mx.array, head_mask: mx.array | None = None,
                 return_weights: bool = False) -> mx.array | tuple[mx.array, list[mx.array]]:
        """Logits for the next token at every position.

        Args:
            tokens (array): ``(B, L)`` int tokens, ``L <= seq_len``.
            head_mask (array, optional): ``(num_layers, num_heads)``; a head's output is
                multiplied by its entry (0 ablates it). Default: every head on.
            return_weights (bool): Also return every layer's ``(B, H, L, L)`` weights.

        Returns:
            array: ``(B, L, vocab_size)`` logits, or ``(logits, [weights per layer])``.
        """
        L = tokens.shape[1]
        x = self.embed(tokens) + self.positions(mx.arange(L))       # (B, L, dims)
        all_weights = []
        for index, layer in enumerate(self.layers):
            keep = None if head_mask is None else head_mask[index]
            out, weights = attend(layer, x, keep)
            x = x + out                                              # residual stream
            all_weights.append(weights)
        logits = self.unembed(x)                                     # (B, L, vocab_size)
        return (logits, all_weights) if return_weights else logits


def make_model(vocab_size: int = 32, seq_len: int = 24, dims: int = 64, num_heads: int = 2, num_layers: int = 2,
               seed: int = 0) -> InductionModel:
    """An :class:`InductionModel` whose initial parameters depend only on ``seed``.

    MLX draws initial parameters from its global random state, so the seed must be set *before*
    the layers are built: seeding inside the training loop comes too late.

    Args:
        vocab_size (int): The number of token ids. Default: ``32``.
        seq_len (int): The sequence length. Default: ``24``.
        dims (int): The model width. Default: ``64``.
        num_heads (int): Heads per layer. Default: ``2``.
        num_layers (int): Attention layers. Default: ``2``.
        seed (int): The seed of the initialisation. Default: ``0``.

    Returns:
        InductionModel: The untrained model.
    """
    mx.random.seed(seed)
    model = InductionModel(vocab_size, seq_len, dims=dims, num_heads=num_heads, num_layers=num_layers)
    mx.eval(model.parameters())
    return model


def attend(layer: nn.MultiHeadAttention, x: mx.array, keep: mx.array | None = None) -> tuple[mx.array, mx.array]:
    """Causal self-attention of one course layer, with each head's output scaled by ``keep``.

    With ``keep=None`` this is ``layer(x, x, x, mask="causal")``, computed from the layer's own
    projections so that a head can be switched off between the attention and ``out_proj``.

    Args:
        layer (MultiHeadAttention): The layer whose projections to use.
        x (array): ``(B, L, dims)``.
        keep (array, optional): ``(H,)`` factors, one per head.

    Returns:
        tuple(array, array): The output ``(B, L, dims)`` and the weights ``(B, H, L, L)``.
    """
    H = layer.num_heads
    q = split_heads(layer.query_proj(x), H)                          # (B, H, L, D_h)
    k = split_heads(layer.key_proj(x), H)                            # (B, H, L, D_h)
    v = split_heads(layer.value_proj(x), H)                          # (B, H, L, D_h)
    scale = 1 / math.sqrt(q.shape[-1])
    weights = mx.softmax(q @ k.swapaxes(-1, -2) * scale + _causal(x.shape[1]), axis=-1)   # (B, H, L, L)
    heads = weights @ v                                              # (B, H, L, D_h)
    if keep is not None:
        heads = heads * keep.reshape(1, H, 1, 1)
    return layer.out_proj(merge_heads(heads)), weights              # (B, L, dims)


def _causal(L):
    # Additive causal mask, finfo.min above the diagonal: (L, L).
    return mx.where(mx.tril(mx.ones((L, L), dtype=mx.bool_)), 0.0, mx.finfo(mx.float32).min)


def _losses(model, tokens, head_mask=None):
    # Cross-entropy of predicting token t + 1 at position t: (B, L - 1).
    logits = model(tokens[:, :-1], head_mask=head_mask)
    return nn.losses.cross_entropy(logits, tokens[:, 1:], reduction="none")


def half_losses(model: InductionModel, batch: tuple[mx.array, mx.array],
                head_mask: mx.array | None = None) -> tuple[float, float]:
    """Mean loss where the next token is random, and where it repeats an earlier one.

    Args:
        model (InductionModel): The model.
        batch (tuple(array, array)): ``(tokens, seg_lens)`` from :func:`make_batch`.
        head_mask (array, optional): As for the model.

    Returns:
        tuple(float, float): ``(random part, repeated part)``. On the random part nothing can be
        learned beyond "a token not seen yet" (about ``log(vocab_size - t)``); on the repeated
        part a model with an induction head goes towards 0.
    """
    tokens, seg_lens = batch
    losses = _losses(model, tokens, head_mask)                       # (B, L - 1)
    repeated = repeated_positions(seg_lens, tokens.shape[1])
    random_part = mx.arange(tokens.shape[1] - 1)[None, :] < (tokens.shape[1] - 2 * seg_lens)[:, None]
    first = (losses * random_part).sum() / random_part.sum()
    second = (losses * repeated).sum() / repeated.sum()
    mx.eval(first, second)
    return first.item(), second.item()


def train(model: InductionModel, steps: int = 1000, batch_size: int = 64, learning_rate: float = 5e-3,
          seed: int = 0, record_every: int = 25) -> dict[str, list]:
    """Train on fresh random batches with Adam; the batches depend only on ``seed``.

    Build the model with :func:`make_model` so that its initialisation is seeded too.

    Args:
        model (InductionModel): The model, trained in place.
        steps (int): Optimizer steps. Default: ``1000``.
        batch_size (int): Sequences per step. Default: ``64``.
        learning_rate (float): Adam's learning rate. Default: ``5e-3``.
        seed (int): The seed of the batches. Default: ``0``.
        record_every (int): Measure every this many steps. Default: ``25``.

    Returns:
        dict: Lists measured on a fixed held-out batch of 256 sequences every ``record_every``
        steps (and after the last one): ``"step"``; ``"random"`` and ``"repeated"``, the losses of
        :func:`half_losses`; ``"previous"``, the best previous-token score in the first layer; and
        ``"induction"``, the best induction score in the last layer.
    """
    optimizer = optim.Adam(learning_rate=learning_rate)
    held_out = make_batch(256, model.seq_len, model.vocab_size, key=mx.random.key(seed + 10_000))

    def loss_fn(model, tokens):
        return _losses(model, tokens).mean()

    step_fn = nn.value_and_grad(model, loss_fn)
    history = {"step": [], "random": [], "repeated": [], "previous": [], "induction": []}
    keys = mx.random.split(mx.random.key(seed), steps)
    for step in range(steps + 1):
        if step % record_every == 0 or step == steps:
            first, repeated = half_losses(model, held_out)
            _, weights = model(held_out[0], return_weights=True)
            history["step"].append(step)
            history["random"].append(first)
            history["repeated"].append(repeated)
            history["previous"].append(previous_token_score(weights[0]).max().item())
            history["induction"].append(induction_score(weights[-1], held_out[1]).max().item())
        if step == steps:
            break
        tokens, _ = make_batch(batch_size, model.seq_len, model.vocab_size, key=keys[step])
        _, grads = step_fn(model, tokens)
        optimizer.update(model, grads)
        mx.eval(model.parameters(), optimizer.state)
    return history


def previous_token_score(weights: mx.array) -> mx.array:
    """How much each head attends to the previous token: the mean of ``weights[i, i - 1]``.

    Args:
        weights (array): ``(B, H, L, L)`` weights of one layer.

    Returns:
        array: ``(H,)`` scores in ``[0, 1]``; 1 means every query looks only one step back.
    """
    L = weights.shape[-1]
    rows = mx.arange(1, L)
    return weights[:, :, rows, rows - 1].mean(axis=(0, 2))


def induction_score(weights: mx.array, seg_lens: mx.array) -> mx.array:
    """How much each head attends to the token *after* the earlier copy of the current token.

    In the repeated part of sequence ``b`` (segment length ``n``), the token at position ``t`` is a
    copy of the one at ``t - n``; an induction head looks at ``t - n + 1``, the stripe one step right
    of the copy's diagonal. The score is the mean of ``weights[b, :, t, t - n + 1]`` over the
    repeated positions ``t >= L - n`` of every sequence.

    Args:
        weights (array): ``(B, H, L, L)`` weights of one layer.
        seg_lens (array): ``(B,)`` segment lengths.

    Returns:
        array: ``(H,)`` scores in ``[0, 1]``.
    """
    L = weights.shape[-1]
    rows = mx.arange(L)[None, :]                                     # (1, L)
    target = mx.clip(rows - seg_lens[:, None] + 1, 0, L - 1)         # (B, L): t - n + 1
    picked = mx.take_along_axis(weights, target[:, None, :, None], axis=-1)[..., 0]   # (B, H, L)
    counted = (rows >= L - seg_lens[:, None])[:, None, :]            # (B, 1, L)
    return (picked * counted).sum(axis=(0, 2)) / (counted.sum() * 1.0)


def find_head(weights: Sequence[mx.array], seg_lens: mx.array, kind: str) -> tuple[int, int, float]:
    """The ``(layer, head)`` with the highest score of one kind, and that score.

    Args:
        weights (list[array]): One ``(B, H, L, L)`` array per layer.
        seg_lens (array): ``(B,)`` segment lengths.
        kind (str): ``"previous"`` or ``"induction"``.

    Returns:
        tuple(int, int, float): layer, head, score.
    """
    if kind not in ("previous", "induction"):
        raise ValueError(f"kind must be 'previous' or 'induction', got {kind!r}.")
    best = (0, 0, -1.0)
    for layer, w in enumerate(weights):
        scores = previous_token_score(w) if kind == "previous" else induction_score(w, seg_lens)
        for head, score in enumerate(scores.tolist()):
            if score > best[2]:
                best = (layer, head, score)
    return best


def ablation_effects(model: InductionModel, batch: tuple[mx.array, mx.array]) -> dict:
    """The loss on the repeated part with each head switched off in turn.

    Returns:
        dict: ``{(layer, head): repeated-part loss with that head's output set to 0}``, and
        ``"none"``: the loss with every head on.
    """
    num_layers, H = len(model.layers), model.num_heads
    effects = {"none": half_losses(model, batch)[1]}
    for layer in range(num_layers):
        for head in range(H):
            head_mask = mx.ones((num_layers, H))
            head_mask[layer, head] = 0.0
            effects[layer, head] = half_losses(model, batch, head_mask)[1]
    return effects
