"""The capstone: a tiny decoder-only transformer that learns to reverse digits.

Every attention layer in the model is the course's own
:class:`mhacourse.MultiHeadAttention`. The task is small enough to train on a
laptop CPU in seconds, and its solution has a shape you can see: to write the
``i``-th digit of the reversed sequence, the model must look at the digit
mirrored around the separator, so a head that does the work shows an
anti-diagonal in its attention weights.

A training sequence for the digits ``3 1 4 1`` is::

    position  0 1 2 3  4    5 6 7 8
    token     3 1 4 1 SEP   1 4 1 3
              input   sep   answer (the input reversed)

The model reads ``tokens[:-1]`` and predicts ``tokens[1:]`` under a causal
mask (like a language model); only the answer positions count in the loss and
in the accuracy.

Example::

    import mlx.core as mx
    from mhacourse import capstone

    mx.random.seed(0)
    model = capstone.TinyTransformer(seq_len=8)
    losses = capstone.train(model, steps=300)
    digits = capstone.make_digits(500, 8, key=mx.random.key(1234))
    capstone.token_accuracy(model, digits)  # close to 1.0
"""

from __future__ import annotations

__lesson__ = "08"  # the lesson that teaches this module: the grader binds it only for later lessons
__given__ = ("NUM_DIGITS", "SEP", "VOCAB_SIZE")  # what lesson 08's exercise notebook may use while graded

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim

from .attention.fused import MultiHeadAttention
from .attention.validation import check_size

__all__ = [
    "NUM_DIGITS",
    "SEP",
    "VOCAB_SIZE",
    "make_digits",
    "make_sequences",
    "TransformerBlock",
    "TinyTransformer",
    "loss_fn",
    "train",
    "generate",
    "token_accuracy",
    "attention_maps",
    "mirror_positions",
    "mirror_score",
]

NUM_DIGITS = 10  # tokens 0..9 are the digits
SEP = NUM_DIGITS  # token 10 separates the input from the answer
VOCAB_SIZE = NUM_DIGITS + 1


def make_digits(num_samples: int, seq_len: int, *, key: mx.array) -> mx.array:
    """Random digit sequences.

    Args:
        num_samples (int): How many sequences.
        seq_len (int): Digits per sequence.
        key (array): A key from ``mx.random.key``; the same key gives the same digits.

    Returns:
        array: ``(num_samples, seq_len)`` int32 digits in ``0..9``.
    """
    check_size("num_samples", num_samples)
    check_size("seq_len", seq_len)
    return mx.random.randint(0, NUM_DIGITS, (num_samples, seq_len), key=key)


def make_sequences(digits: mx.array) -> tuple[mx.array, mx.array]:
    """Build the model's inputs and next-token targets for a batch of digits.

    Args:
        digits (array): ``(N, L)`` digits.

    Returns:
        tuple(array, array): ``inputs`` and ``targets``, both ``(N, 2L)``:
        the full sequence ``digits, SEP, reversed digits`` without its last
        token, and the same sequence shifted left by one.
    """
    if digits.ndim != 2:
        raise ValueError(f"digits must have shape (num_samples, seq_len); got {tuple(digits.shape)}.")
    N = digits.shape[0]
    sep = mx.full((N, 1), SEP, dtype=digits.dtype)
    tokens = mx.concatenate([digits, sep, digits[:, ::-1]], axis=1)  # (N, 2L + 1)
    return tokens[:, :-1], tokens[:, 1:]  # (N, 2L), (N, 2L)


class TransformerBlock(nn.Module):
    """A pre-norm transformer block: causal self-attention, then an MLP.

    Args:
        dims (int): The model dimensions.
        num_heads (int): The number of attention heads.
        mlp_dims (int, optional): The hidden size of the MLP. Default: ``4 * dims``.
    """

    def __init__(self, dims: int, num_heads: int, mlp_dims: int | None = None) -> None:
        super().__init__()
        mlp_dims = mlp_dims or 4 * dims
        self.attention_norm = nn.LayerNorm(dims)
        self.attention = MultiHeadAttention(dims, num_heads)
        self.mlp_norm = nn.LayerNorm(dims)
        self.mlp = nn.Sequential(nn.Linear(dims, mlp_dims), nn.GELU(), nn.Linear(mlp_dims, dims))

    def __call__(self, x: mx.array, *, return_weights: bool = False) -> tuple[mx.array, mx.array | None]:
        h = self.attention_norm(x)
        if return_weights:
            h, weights = self.attention(h, h, h, mask="causal", return_weights=True)
        else:
            h, weights = self.attention(h, h, h, mask="causal"), None
        x = x + h
        x = x + self.mlp(self.mlp_norm(x))
        return x, weights


class TinyTransformer(nn.Module):
    """A decoder-only transformer over the digit vocabulary.

    Args:
        seq_len (int): Digits per sequence; the model reads ``2 * seq_len`` tokens.
        dims (int, optional): The model dimensions. Default: ``32``.
        num_heads (int, optional): Heads per attention layer. Default: ``4``.
        num_layers (int, optional): Transformer blocks. Default: ``2``.
        positions (bool, optional): Add a learned position embedding to each
            token embedding. With ``False`` the model sees the tokens'
            order only through the causal mask (lesson 07 measures what that
            costs). Default: ``True``.
    """

    def __init__(self, seq_len: int, dims: int = 32, num_heads: int = 4, num_layers: int = 2,
                 positions: bool = True) -> None:
        super().__init__()
        self.seq_len = check_size("seq_len", seq_len)
        check_size("num_layers", num_layers)
        if not isinstance(positions, bool):
            raise ValueError(f"positions must be True or False, got {positions!r}.")
        self.positions = positions
        self.token_embedding = nn.Embedding(VOCAB_SIZE, dims)
        if positions:
            self.position_embedding = nn.Embedding(2 * seq_len, dims)
        self.blocks = [TransformerBlock(dims, num_heads) for _ in range(num_layers)]
        self.norm = nn.LayerNorm(dims)
        self.head = nn.Linear(dims, VOCAB_SIZE)

    def __call__(self, tokens: mx.array, *,
                 return_weights: bool = False) -> mx.array | tuple[mx.array, list[mx.array]]:
        """Next-token logits for ``tokens``.

        Args:
            tokens (array): ``(B, T)`` token ids with ``T <= 2 * seq_len``.
            return_weights (bool, optional): Also return every layer's attention
                weights. Default: ``False``.

        Returns:
            array: logits ``(B, T, VOCAB_SIZE)``, or ``(logits, weights)`` where
            ``weights`` is a list with one ``(B, num_heads, T, T)`` array per layer.
        """
        T = tokens.shape[1]
        if T > 2 * self.seq_len:
            raise ValueError(
                f"tokens has {T} positions but the model was built for at most "
                f"2 * seq_len = {2 * self.seq_len}."
            )
        x = self.token_embedding(tokens)  # (B, T, dims)
        if self.positions:
            x = x + self.position_embedding(mx.arange(T))  # (B, T, dims)
        all_weights = []
        for block in self.blocks:
            x, weights = block(x, return_weights=return_weights)
            all_weights.append(weights)
        logits = self.head(self.norm(x))  # (B, T, VOCAB_SIZE)
        return (logits, all_weights) if return_weights else logits


def loss_fn(model: TinyTransformer, inputs: mx.array, targets: mx.array) -> mx.array:
    """Mean cross-entropy over the answer positions (the reversed digits)."""
    L = model.seq_len
    logits = model(inputs)[:, L:]  # (B, L, VOCAB_SIZE): predictions of the answer
    return nn.losses.cross_entropy(logits, targets[:, L:], reduction="mean")


def train(model: TinyTransformer, *, steps: int = 300, batch_size: int = 32, learning_rate: float = 3e-3,
          seed: int = 0, log_every: int = 0) -> list[float]:
    """Train ``model`` with Adam on fresh random batches.

    Args:
        model (TinyTransformer): The model; trained in place.
        steps (int, optional): Optimizer steps. Default: ``300``.
        batch_size (int, optional): Sequences per step. Default: ``32``.
        learning_rate (float, optional): Adam's learning rate. Default: ``3e-3``.
        seed (int, optional): Seeds the batches (not the initial weights:
            call ``mx.random.seed`` before building the model). Default: ``0``.
        log_every (int, optional): Print the loss every this many steps;
            ``0`` prints nothing. Default: ``0``.

    Returns:
        list[float]: The loss at every step.
    """
    check_size("steps", steps)
    check_size("batch_size", batch_size)
    optimizer = optim.Adam(learning_rate=learning_rate)
    loss_and_grad = nn.value_and_grad(model, loss_fn)
    key = mx.random.key(seed)
    losses = []
    for step in range(steps):
        key, batch_key = mx.random.split(key)
        digits = make_digits(batch_size, model.seq_len, key=batch_key)
        inputs, targets = make_sequences(digits)
        loss, grads = loss_and_grad(model, inputs, targets)
        optimizer.update(model, grads)
        mx.eval(model.parameters(), optimizer.state, loss)
        losses.append(loss.item())
        if log_every and (step % log_every == 0 or step == steps - 1):
            print(f"step {step:4d}  loss {losses[-1]:.4f}")
    return losses


def generate(model: TinyTransformer, digits: mx.array) -> mx.array:
    """Reverse ``digits`` greedily, one token at a time, as at inference.

    Args:
        model (TinyTransformer): A model with ``seq_len == digits.shape[1]``.
        digits (array): ``(N, L)`` digits.

    Returns:
        array: ``(N, L)`` the model's answer.
    """
    N, L = digits.shape
    if L != model.seq_len:
        raise ValueError(f"digits has {L} digits per sequence; the model expects seq_len = {model.seq_len}.")
    tokens = mx.concatenate([digits, mx.full((N, 1), SEP, dtype=digits.dtype)], axis=1)  # (N, L + 1)
    for _ in range(L):
        logits = model(tokens)[:, -1]  # (N, VOCAB_SIZE): the next token
        next_token = logits.argmax(axis=-1, keepdims=True).astype(tokens.dtype)  # (N, 1)
        tokens = mx.concatenate([tokens, next_token], axis=1)
    return tokens[:, L + 1 :]


def token_accuracy(model: TinyTransformer, digits: mx.array) -> float:
    """The fraction of answer digits that greedy generation gets right.

    Returns:
        float: In ``[0, 1]``.
    """
    return (generate(model, digits) == digits[:, ::-1]).mean().item()


def attention_maps(model: TinyTransformer, digits: mx.array) -> list[mx.array]:
    """Every layer's attention weights on the full sequences of ``digits``.

    Returns:
        list[array]: One ``(N, num_heads, 2L, 2L)`` array per layer.
    """
    inputs, _ = make_sequences(digits)
    _, weights = model(inputs, return_weights=True)
    mx.eval(weights)
    return weights


def mirror_positions(seq_len: int) -> mx.array:
    """For each answer query position ``q`` (``L .. 2L-1``), the mirrored input position.

    The token at position ``q`` predicts answer digit ``q - L``, which is input
    digit ``L - 1 - (q - L) = 2L - 1 - q``.

    Returns:
        array: ``(L,)`` key positions ``L-1, L-2, ..., 0``.
    """
    return 2 * seq_len - 1 - mx.arange(seq_len, 2 * seq_len)


def mirror_score(weights: mx.array, seq_len: int) -> mx.array:
    """How often each head looks hardest at the mirrored input digit.

    Args:
        weights (array): One layer's weights ``(N, H, 2L, 2L)``.
        seq_len (int): Digits per sequence ``L``.

    Returns:
        array: ``(H,)``, for each head the fraction of (sequence, answer
        position) pairs whose largest weight falls on the mirrored position.
    """
    L = seq_len
    answer_rows = weights[:, :, L : 2 * L, :]  # (N, H, L, 2L)
    hits = answer_rows.argmax(axis=-1) == mirror_positions(L)  # (N, H, L)
    return hits.mean(axis=(0, 2))
