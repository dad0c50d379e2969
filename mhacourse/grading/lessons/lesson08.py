"""Lesson 08: the capstone, a tiny transformer that reverses digits."""

import mlx.core as mx
import mlx.nn as nn

from mhacourse import capstone

from ..exercise import Exercise, Mistake, ModuleExercise
from ..sandbox.drivers import FixedLogits
from . import _hidden
from ._common import case, rand

EXERCISES = []  # this lesson's exercises, declared whole, in notebook order; the registry collects them

# ---------------------------------------------------------------------------
# reversal_batch(digits) -> (inputs, targets)


def _sequence(digits, reverse=True, sep=True):
    N = digits.shape[0]
    answer = digits[:, ::-1] if reverse else digits
    parts = [digits] + ([mx.full((N, 1), capstone.SEP, dtype=digits.dtype)] if sep else []) + [answer]
    return mx.concatenate(parts, axis=1)  # (N, 2L + 1)


def _digits(seed, n, length):
    return lambda: capstone.make_digits(n, length, key=mx.random.key(seed))



def _hidden_reversal_batch(rng):
    B, _, L_q, _, _, _ = _hidden.sizes(rng)
    return [case("hidden", _digits(_hidden.seed(rng), B, L_q)),
            case("hidden", _digits(_hidden.seed(rng), 2 * B + 1, 2))]



def _hidden_transformer_block(rng):
    B, H, L_q, _, D, _ = _hidden.sizes(rng)
    return [_hidden.layer_case({"dims": H * D, "num_heads": H}, (_hidden.normal(rng, B, L_q, H * D),))]



def _hidden_answer_loss(rng):
    return [_loss_case("hidden", _hidden.seed(rng), int(rng.choice([3, 5, 6])), int(rng.choice([4, 6])))]


EXERCISES.append(Exercise(
    id="reversal_batch",
    hidden_cases=_hidden_reversal_batch,
    lesson="08",
    title="Inputs and targets for the reversal task",
    answer_name="reversal_batch",
    signature="reversal_batch(digits)",
    reference=capstone.make_sequences,
    cases=[
        case("2 sequences of 4 digits", lambda: mx.array([[3, 1, 4, 1], [5, 9, 2, 6]])),
        case("5 random sequences of 6 digits", _digits(300, 5, 6)),
        case("1 sequence of 1 digit", lambda: mx.array([[7]])),
    ],
    mistakes=[
        Mistake("reversal_not_reversed", "The answer is the digits *reversed*: digits[:, ::-1].",
                lambda digits: (lambda t: (t[:, :-1], t[:, 1:]))(_sequence(digits, reverse=False))),
        Mistake("reversal_no_shift",
                "The targets are the inputs shifted left by one (next-token prediction): "
                "inputs = tokens[:, :-1], targets = tokens[:, 1:].",
                lambda digits: (lambda t: (t[:, :-1], t[:, :-1]))(_sequence(digits))),
        Mistake("reversal_shift_direction",
                "The model reads tokens[:, :-1] and predicts tokens[:, 1:]; you swapped them.",
                lambda digits: (lambda t: (t[:, 1:], t[:, :-1]))(_sequence(digits))),
        Mistake("reversal_no_sep",
                f"Put the separator token capstone.SEP (= {capstone.SEP}) between the digits and "
                "their reversal.",
                lambda digits: (lambda t: (t[:, :-1], t[:, 1:]))(
                    mx.concatenate([_sequence(digits, sep=False), digits[:, :1]], axis=1))),
    ],
))

# ---------------------------------------------------------------------------
# TransformerBlock(dims, num_heads): pre-norm causal self-attention + MLP


class _Block(capstone.TransformerBlock):
    """The capstone's block, returning only the new hidden states."""

    def __call__(self, x):
        return super().__call__(x)[0]


class _DistinctNormsBlock(_Block):
    """The block whose weights the check copies, with two different, non-trivial layer norms: in a fresh
    block both norms are ones and zeros, so a block that used one norm twice would pass."""

    def __init__(self, dims, num_heads):
        super().__init__(dims, num_heads)
        keys = mx.random.split(mx.random.key(77), 4)
        for norm, (scale_key, shift_key) in ((self.attention_norm, keys[:2]), (self.mlp_norm, keys[2:])):
            norm.weight = 1.0 + 0.5 * mx.random.normal((dims,), key=scale_key)
            norm.bias = 0.5 * mx.random.normal((dims,), key=shift_key)


class _SharedNormBlock(capstone.TransformerBlock):
    def __call__(self, x):
        h = self.attention_norm(x)
        x = x + self.attention(h, h, h, mask="causal")
        return x + self.mlp(self.attention_norm(x))  # the bug: the attention's norm again


class _NotCausalBlock(capstone.TransformerBlock):
    def __call__(self, x):
        h = self.attention_norm(x)
        x = x + self.attention(h, h, h)
        return x + self.mlp(self.mlp_norm(x))


class _PostNormBlock(capstone.TransformerBlock):
    def __call__(self, x):
        x = self.attention_norm(x + self.attention(x, x, x, mask="causal"))
        return self.mlp_norm(x + self.mlp(x))


class _NoResidualBlock(capstone.TransformerBlock):
    def __call__(self, x):
        h = self.attention_norm(x)
        x = self.attention(h, h, h, mask="causal")
        return self.mlp(self.mlp_norm(x))


class _UnnormedAttentionBlock(capstone.TransformerBlock):
    def __call__(self, x):
        h = self.attention_norm(x)
        x = x + self.attention(h, x, x, mask="causal")
        return x + self.mlp(self.mlp_norm(x))


EXERCISES.append(ModuleExercise(
    id="transformer_block",
    hidden_cases=_hidden_transformer_block,
    lesson="08",
    title="The capstone's transformer block",
    answer_name="TransformerBlock",
    signature="TransformerBlock(dims, num_heads)(x)",
    reference=_Block,
    source_class=_DistinctNormsBlock,
    cases=[
        case("dims 8, 2 heads, batch 2, 5 positions", {"dims": 8, "num_heads": 2}, lambda: (rand(310, 2, 5, 8),)),
        case("dims 16, 4 heads, batch 1, 7 positions", {"dims": 16, "num_heads": 4}, lambda: (rand(311, 1, 7, 16),)),
    ],
    mistakes=[
        Mistake("block_shared_norm",
                "Each sub-layer has its own norm: self.attention_norm before the attention and self.mlp_norm "
                "before the MLP. Both start as ones and zeros, so reusing one only shows once they are trained.",
                _SharedNormBlock),
        Mistake("block_not_causal",
                "A language model must not see the future: call the attention with mask=\"causal\".",
                _NotCausalBlock),
        Mistake("block_post_norm",
                "This is a pre-norm block: normalise the input of each sub-layer, x + f(norm(x)), "
                "not the sum, norm(x + f(x)).", _PostNormBlock),
        Mistake("block_no_residual",
                "Add each sub-layer's output to its input (the residual connection): x = x + f(norm(x)).",
                _NoResidualBlock),
        Mistake("block_unnormed_keys",
                "Normalise once and use the normalised h as queries, keys *and* values: "
                "self.attention(h, h, h, mask=\"causal\").", _UnnormedAttentionBlock),
    ],
))

# ---------------------------------------------------------------------------
# answer_loss(model, inputs, targets): cross-entropy over the answer positions


def _tiny_model(seed, seq_len):
    mx.random.seed(seed)
    model = capstone.TinyTransformer(seq_len=seq_len, dims=8, num_heads=2, num_layers=1)
    mx.eval(model.parameters())
    return model


def _loss_case(name, seed, n, seq_len):
    """``(model, inputs, targets)``; the model is the capstone's logits on this batch
    (:class:`~mhacourse.grading.sandbox.drivers.FixedLogits`), which is all the loss needs."""

    def batch(i):
        return lambda: capstone.make_sequences(capstone.make_digits(n, seq_len, key=mx.random.key(seed)))[i]

    def model():
        inputs = batch(0)()
        logits = _tiny_model(seed, seq_len)(inputs)
        mx.eval(logits)
        return FixedLogits(seq_len, inputs, logits)

    return case(name, model, batch(0), batch(1))


def _loss_bug(bug):
    def wrong(model, inputs, targets):
        L = model.seq_len
        logits = model(inputs)
        if bug == "all_positions":
            return nn.losses.cross_entropy(logits, targets, reduction="mean")
        if bug == "sum":
            return nn.losses.cross_entropy(logits[:, L:], targets[:, L:], reduction="sum")
        if bug == "off_by_one":
            return nn.losses.cross_entropy(logits[:, L - 1:-1], targets[:, L:], reduction="mean")
        raise ValueError(bug)

    return wrong


EXERCISES.append(Exercise(
    id="answer_loss",
    hidden_cases=_hidden_answer_loss,
    lesson="08",
    title="The loss over the answer positions",
    answer_name="answer_loss",
    signature="answer_loss(model, inputs, targets)",
    reference=capstone.loss_fn,
    cases=[_loss_case("4 sequences of 3 digits", 320, 4, 3), _loss_case("2 sequences of 5 digits", 321, 2, 5)],
    mistakes=[
        Mistake("loss_all_positions",
                "Only the answer positions count: the digits before the separator are random and "
                "cannot be predicted. Slice logits[:, L:] and targets[:, L:] with L = model.seq_len.",
                _loss_bug("all_positions")),
        Mistake("loss_sum", "Average the cross-entropy (reduction=\"mean\") so that the loss does not "
                "grow with the batch size.", _loss_bug("sum")),
        Mistake("loss_off_by_one",
                "Logits and targets are already aligned (targets are the inputs shifted by one): "
                "slice both with [:, L:].", _loss_bug("off_by_one")),
    ],
))

# ---------------------------------------------------------------------------
# TinyTransformer(seq_len, dims, num_heads, num_layers, positions)(tokens): the forward pass


def _model_bug(bug):
    """The capstone model with one deliberate bug in its forward pass."""

    class Wrong(capstone.TinyTransformer):
        def __call__(self, tokens):
            x = self.token_embedding(tokens)  # (B, T, dims)
            if self.positions and bug != "positions_never_added":
                where = tokens if bug == "positions_by_token" else mx.arange(tokens.shape[1])
                x = x + self.position_embedding(where)  # (B, T, dims)
            for block in self.blocks:
                x = block(x)[0]
            return self.head(x if bug == "no_final_norm" else self.norm(x))

    Wrong.__name__ = f"TinyTransformer_{bug}"
    return Wrong


def _model_case(name, seed, n, tokens_len, **constructor):
    def tokens():
        digits = capstone.make_digits(n, constructor["seq_len"], key=mx.random.key(seed))
        return (capstone.make_sequences(digits)[0][:, :tokens_len],)  # ((n, tokens_len),)

    return case(name, constructor, tokens)


def _model_hidden(rng):
    cases = []
    for number, positions in enumerate((True, False, True)):
        seq_len = int(rng.integers(2, 7))
        num_heads = int(rng.integers(1, 4))
        cases.append(_model_case(f"hidden {number}", int(rng.integers(10**6)), int(rng.integers(4, 6)),
                                 int(rng.integers(1, 2 * seq_len + 1)), seq_len=seq_len,
                                 dims=4 * num_heads, num_heads=num_heads,
                                 num_layers=int(rng.integers(1, 3)), positions=positions))
    return cases


EXERCISES.append(ModuleExercise(
    id="tiny_transformer",
    lesson="08",
    title="The model's forward pass, with and without positions",
    answer_name="TinyTransformer",
    signature="TinyTransformer(seq_len, dims, num_heads, num_layers, positions)(tokens)",
    reference=capstone.TinyTransformer,
    cases=[
        _model_case("positions, 2 sequences of 3 digits, dims 8, 2 heads, 1 layer", 330, 2, 6,
                    seq_len=3, dims=8, num_heads=2, num_layers=1, positions=True),
        _model_case("no positions, 3 sequences of 4 digits, dims 8, 2 heads, 2 layers", 331, 3, 8,
                    seq_len=4, dims=8, num_heads=2, num_layers=2, positions=False),
        _model_case("positions, 5 of the 10 tokens (as while generating), dims 12, 3 heads", 332, 2, 5,
                    seq_len=5, dims=12, num_heads=3, num_layers=1, positions=True),
    ],
    hidden_cases=_model_hidden,
    mistakes=[
        Mistake("positions_by_token",
                "The position embedding is looked up by *position* 0, 1, ..., T - 1 "
                "(self.position_embedding(mx.arange(T))), not by the token ids: indexed by the tokens "
                "it is just a second token embedding and says nothing about order.",
                _model_bug("positions_by_token")),
        Mistake("positions_never_added",
                "With positions=True, add self.position_embedding(mx.arange(T)) to the token "
                "embeddings; without it the model cannot tell where each digit is.",
                _model_bug("positions_never_added")),
        Mistake("no_final_norm", "Apply the final layer norm before the head: self.head(self.norm(x)).",
                _model_bug("no_final_norm")),
    ],
))
