"""Hints in two tiers, and hints recognised from an error's type and message.

A recognised mistake has a ``hint_id`` and two texts:

- tier 1, the *nudge*: where to look, without the answer
  ("look at which axis the softmax runs over");
- tier 2, the *hint*: the specific fix, shown by ``check(..., hint=2)``.

Errors are recognised from ``(type name, message)`` pairs, the form in which
they come back from the grader's sandbox as text; the learner's line of code
is used too when it is known (``.T``, ``.size(``).
"""

import re
from dataclasses import dataclass

__all__ = ["NUDGES", "ErrorHint", "ERROR_HINTS", "nudge_for", "match_error", "add_nudges", "at_tier",
           "tiers_shown"]

GENERIC_NUDGE = "Compare your output with the expected one case by case: which cases fail, and how?"

# Tier 1 for every hint id the checks use. Exercise-specific mistakes may
# carry their own nudge; these are the defaults.
NUDGES = {
    "scale_full_dims_not_sqrt": "Is your scale one head's, and is it a square root?",
    "shuffled_again": "Does your answer put each output back where it came from, or move it once more?",
    "sorted_values": "Are you sorting the outputs' values, or undoing the permutation of their positions?",
    "halves": "Where do the sines and the cosines go: side by side, or interleaved column by column?",
    "cos_first": "Which of sine and cosine goes in the even columns?",
    "exponent_not_doubled": "What is the exponent of 10000 for the pair of columns 2i and 2i + 1?",
    "positive_exponent": "Should the frequencies grow or shrink along the columns?",
    "positions_from_one": "What is the first position's number?",
    "traditional": "Which features does RoPE rotate together: neighbours, or the two halves?",
    "reversed": "Which way does the rotation turn for a positive angle?",
    "offset_ignored": "Where do the positions start when offset is not 0?",
    "query_offset_zero": "Where do the queries' positions start, compared with the keys'?",
    "values_rotated": "Which of queries, keys and values does RoPE rotate?",
    "queries_only": "Does your RoPE reach the keys too?",
    "no_rope": "Where in your function do the positions enter?",
    "reversal_not_reversed": "Print one row of your targets next to its digits: is the answer reversed?",
    "reversal_no_shift": "Which token should each position predict: itself, or the next one?",
    "reversal_shift_direction": "Are the targets the inputs moved one step to the left or to the right?",
    "reversal_no_sep": "Which token separates the digits from the answer?",
    "block_not_causal": "Can a position in your block see the positions after it?",
    "block_post_norm": "Where does the layer norm sit: before each sub-layer, or after the sum?",
    "block_no_residual": "What is added back to each sub-layer's output?",
    "block_unnormed_keys": "Which tensor do the keys and values come from?",
    "loss_all_positions": "Which positions can the model know the answer of?",
    "loss_sum": "Does your loss grow with the batch size?",
    "loss_off_by_one": "Print the logits' and the targets' positions you compare: are they the same positions?",
    "positions_by_token": "What does the position embedding look up: the token, or its place in the sequence?",
    "positions_never_added": "Where do the position embeddings join the token embeddings?",
    "no_final_norm": "What comes between the last block and the head?",
    "policy": "Which function does the message name? The exercise asks you to write that part yourself.",
    "online_sum_not_rescaled": "When the running maximum grows, what happens to the running sum you kept?",
    "count_bias_4dims": "How many entries does each projection's bias have when value_dims or "
                        "value_output_dims differ from dims?",
    "torch_split_axis": "Along which axis are the three weights of in_proj_weight stacked?",
    "block_shared_norm": "Which norm does each of the two sub-layers use?",
    "full_score_matrix": "How much of the score matrix does your answer hold at once?",
    # scale
    "missing_scale": "Look at what the scores are multiplied by before the softmax.",
    "divide_by_scale": "Look at how `scale` enters the scores: multiplied or divided?",
    "scale_ignored": "Where does your scale come from? Use the one you are given.",
    "scale_full_dims": "Which width is the scale computed from: the model's or one head's?",
    "scale_not_sqrt": "Check the scale's formula: is there a square root?",
    "scale_on_output": "Look at *where* the scale is applied: the scores or the output?",
    "scale_from_value_dims": "Which head width sets the scale: the queries'/keys' or the values'?",
    # softmax
    "softmax_axis": "Look at which axis the softmax runs over.",
    "softmax_unstable": "Try your softmax on scores in the hundreds: what does exp give?",
    "softmax_keepdims": "Print the shape of the sum you divide by: does it broadcast along the row?",
    "softmax_not_normalised": "Do your rows sum to 1?",
    "softmax_global_sum": "Over what do you sum: one row, or the whole array?",
    "softmax_global_max": "Whose maximum do you subtract: each row's, or the whole array's?",
    "no_softmax": "What turns scores into weights?",
    "no_values": "What do you multiply the weights by, and did you?",
    "times_keys": "Which array do the weights average?",
    "values_not_projected": "Which inputs go through a projection before attending?",
    "keys_times_queries": "Which axis of the scores is the queries', which the keys'?",
    # masks
    "mask_after_softmax": "Look at *when* the mask is applied: before or after the softmax?",
    "mask_multiplied": "How does an additive mask combine with the scores?",
    "mask_ignored": "Is the mask argument used at all?",
    "mask_scaled": "Look at the order of the scale and the mask.",
    "mask_fill_zero": "What weight does a blocked score of 0 get after the softmax?",
    "inverted_boolean_mask": "In MLX, what does True mean in a boolean mask?",
    "boolean_added": "What happens when you add a boolean array to float scores?",
    "causal_upper_left": "With fewer queries than keys, which keys may the *last* query see?",
    "neg_inf_fully_masked": "Look at the row whose keys are all blocked: what does the softmax of all -inf give?",
    "causal_neg_inf": "What does a softmax over a row of only -inf give?",
    "float16_overflow": "Which dtype's finfo().min do you use, and what happens when it is cast?",
    "causal_large_negative": "Is your fill value representable in every dtype the check tries?",
    "causal_ignores_dtype": "Look at the dtype of what you return.",
    "causal_diagonal": "May a query attend to its own position?",
    "causal_transposed": "Which side of the diagonal is the future?",
    "causal_boolean": "Is this mask additive or boolean?",
    "neg_inf_vs_finfo_min": "What fill value does MLX use for a blocked key?",
    "boolean_as_number": "What does True become when cast to a float, and is that an additive mask?",
    "padding_inverted": "In MLX, does True mean *attend* or *blocked*?",
    "padding_shape": "Print your mask's shape under the scores' shape (B, H, L_q, L_k): "
    "do they line up from the right?",
    "padding_not_boolean": "What dtype should the mask have?",
    "padding_axis": "Which axis of the scores are the keys?",
    "padding_off_by_one": "Is position `length` a real token?",
    "mask_or": "A key is attended when *both* masks allow it: which operator says that?",
    "mask_missing_head_axis": "Count your mask's axes against (B, H, L_q, L_k).",
    # heads
    "split_no_transpose": "Which axes does your reshape fill, and in which order?",
    "split_forgot_transpose": "Compare your shape with (B, H, L, D_h): which axes are swapped?",
    "split_interleaved": "Which features does head 0 get: a contiguous slice or every H-th one?",
    "split_wrong_transpose": "Check the axis order after your transpose.",
    "merge_no_transpose": "Before the reshape, which axis must come first after B?",
    "merge_interleaved": "Do each head's features stay together after your transpose?",
    "merge_forgot_reshape": "Compare your output's number of axes with (B, L, H·D_h).",
    "axis_order": "The sizes are right but in another order: check your transposes.",
    "no_out_proj": "Which projection mixes the heads at the end?",
    "swap_key_value_proj": "Which projection do the keys go through, and which the values?",
    "count_forgot_out_proj": "How many projections does the layer have?",
    "count_forgot_bias": "Does bias=True add parameters?",
    "count_per_head": "Does the count grow with num_heads?",
    "count_value_input_default": "What does value_input_dims default to?",
    "count_value_dims_ignored": "Which projections read or write value_dims features?",
    "count_bias_sizes": "How many biases has each projection: its input or its output size?",
    # layers
    "forgot_bias": "Does every projection get the bias argument?",
    "bias_always": "What is nn.Linear's default for bias?",
    "parameter_names": "Compare your submodules' names with the exercise's.",
    "value_input_default": "What does value_input_dims default to?",
    "linear_transposed": "In which order does nn.Linear store its weight's axes?",
    "wrong_projection_size": "Check each projection's input and output sizes.",
    "value_dims_ignored": "Where does value_dims appear in the layer?",
    "out_proj_from_dims": "How many features does out_proj read?",
    "cross_no_padding": "Is the encoder's padding masked?",
    "cross_causal": "May a decoder position read every real encoder position?",
    # fused, GQA, cache, online softmax
    "gqa_tile": "Which key/value head does query head h use?",
    "gqa_group_count": "How many query heads share one key/value head?",
    "kv_no_causal": "With several new tokens, what may each of them see?",
    "kv_order": "In which order do the cache and the new tokens come?",
    "kv_cache_not_grown": "What do you return as the cache for the next step?",
    "decode_no_cache": "Does the new token attend to the cached keys?",
    "decode_cache_not_repeated": "Does the grouped cache get expanded to the query heads?",
    "online_no_rescale": "When the running maximum grows, what happens to the sums you already have?",
    "online_no_normalise": "What do you divide the accumulated output by at the end?",
    "online_last_tile_only": "Does your loop keep what earlier tiles contributed?",
    "online_scale": "Where does the scale go in the tile loop?",
    "eval_forgotten": "When does MLX actually compute what you timed?",
    "eval_once": "Which of the timed calls' results are computed?",
    "timing_no_warmup": "Is the first call, which pays for one-time work, inside your timing?",
    "timing_total": "Is the number you return per call, or for the whole loop?",
    "timing_constant": "Where does the number you return come from: did a clock measure it?",
    # drop-in parity
    "copy_return_target": "What does your function return?",
    "copy_reversed": "Which layer changes: source or target?",
    "copy_partial": "Is every projection copied?",
    "torch_transposed": "How do PyTorch's and MLX's nn.Linear store weights?",
    "torch_qkv_order": "In which order are q, k, v stacked in in_proj_weight?",
    "grad_mean": "Is the loss a sum or a mean?",
    "debug_split": "Look at how the heads are split.",
    "debug_scale": "Look at the scale.",
    "debug_both": "Two bugs are planted: look at the scale and at how the heads are split.",
    # predict the shape
    "shape_scores": "The scores pair every query with every key: which two lengths?",
    "shape_heads": "After the split, which axis holds the heads?",
    "shape_value_dims": "Which width does the output of attention take: the keys' or the values'?",
    "shape_head_dims": "How many features does one head get?",
    "shape_output_keys": "How many outputs are there: one per query or one per key?",
    "causal_shape": "How many rows does a causal mask have: one per query or one per key?",
    "shape_input_dims": "What do the projections map the inputs to, before the split?",
    "shape_merge": "Merging puts the heads back next to each other along the features.",
    "shape_broadcast": "Line up the shapes from the right: where is a 1 needed?",
    "shape_output": "Which projection sets the layer's output width?",
    # properties
    "weights_not_normalised": "Do each query's weights sum to 1?",
    "not_causal": "Can a query see keys that come after it?",
    "not_permutation_equivariant": "Does anything in your code depend on a token's position?",
    "heads_not_independent": "Does anything mix the heads axis?",
    "batch_order_matters": "Does anything reduce or mix over the batch axis?",
    # answer problems raised by the checks
    "signature": "Compare your function's arguments with the exercise's signature.",
    "wrong_answer_type": "Pass the function or class itself to check.",
    "instance_not_class": "Pass the class, not a layer built from it.",
    "not_a_module": "What does your class inherit from?",
    "wrong_dtype": "Look at the dtype of what you return.",
    "nan": "Where could a NaN come from: exp of a big number, or a row of -inf?",
    "timeout": "Is there a loop that never ends, or a loop over elements?",
    "not_fused": "Is the fused kernel called?",
    "forbidden": "Which function does this exercise ask you not to use?",
}


def nudge_for(hint_id):
    """The tier-1 text for ``hint_id`` (a generic one when there is none)."""
    return NUDGES.get(hint_id, GENERIC_NUDGE)


@dataclass
class ErrorHint:
    """A mistake recognised from an exception.

    Attributes:
        hint_id (str): The mistake's name.
        types (tuple[str]): Exception type names it applies to.
        pattern (str): A regular expression searched in the message.
        nudge (str): Tier 1.
        hint (str): Tier 2, the fix.
        code (str, optional): A regular expression searched in the learner's
            line of code; when given, the hint applies only if the line is
            known and matches.
        exercises (tuple[str], optional): Only for these exercise ids.
        fits (callable, optional): ``fits(match) -> bool``, a further test of
            the message's match (e.g. on the shapes it names).
    """

    hint_id: str
    types: tuple
    pattern: str
    nudge: str
    hint: str
    code: str = None
    exercises: tuple = None
    fits: object = None

    def matches(self, type_name, message, code, exercise_id):
        if type_name not in self.types:
            return False
        if self.exercises is not None and exercise_id not in self.exercises:
            return False
        if self.code is not None and not (code and re.search(self.code, code)):
            return False
        found = re.search(self.pattern, message or "", re.DOTALL)
        return bool(found) and (self.fits is None or bool(self.fits(found)))


def _shape(text):
    return tuple(int(n) for n in text.split(",") if n.strip())


def _reversed_batch(found):
    """``a @ b.T`` on 3-D/4-D arrays: b's axes are a's batch axes, reversed."""
    first, second = _shape(found.group(1)), _shape(found.group(2))
    return len(second) >= 3 and tuple(reversed(second))[:-2] == first[:-2]


def _torch_method(name, mlx, hint_id=None):
    return ErrorHint(
        hint_id or f"torch_{name}", ("AttributeError",), rf"'array' object has no attribute '{name}'",
        f"`.{name}(...)` is PyTorch; MLX arrays spell it differently.",
        f"MLX arrays have no `.{name}`: {mlx}")


_PADDING_EXERCISES = ("cross_attention", "masked_attention", "multi_head_attention", "torch_mask_to_mlx")

ERROR_HINTS = [
    # Most specific first: the first match wins.
    ErrorHint("cross_roles_swapped", ("ValueError",), r".",
              "In cross-attention, which sequence asks (the queries) and which is looked up (keys and values)?",
              "The decoder asks and the encoder answers: layer(decoder_states, encoder_states, encoder_states, "
              "mask=...), with the padding mask over the encoder's keys.",
              code=r"layer\(\s*encoder", exercises=("cross_attention",)),
    ErrorHint("split_with_query_length", ("ValueError",), r"\[reshape\]",
              "Which length do the keys and values have: the queries' L_q, or their own L_k?",
              "Split the keys and values with their own length: keys.shape[1] (L_k), not the queries' L_q; "
              "the two differ in cross-attention.",
              code=r"\b(?:keys|k|values|v)\b[^=]*=.*reshape\(.*\bL_q\b"),
    ErrorHint("padding_shape", ("ValueError",),
              r"\[broadcast_shapes\] Shapes \((\d+),(\d+)\) and \((\d+),\d+,\d+,\2\) cannot be broadcast",
              "Print your mask's shape under the scores' shape (B, H, L_q, L_k): do they line up from the right?",
              "A (B, L_k) padding mask does not broadcast against the scores (B, H, L_q, L_k): the batch axis "
              "lines up with L_q. Add the head and query axes: mask[:, None, None, :] has shape (B, 1, 1, L_k).",
              exercises=_PADDING_EXERCISES),
    ErrorHint("torch_transpose", ("ValueError",), r"\[transpose\] Received \d+ axes for array with \d+ dimensions",
              "MLX's transpose does not swap two axes the way PyTorch's does.",
              "x.transpose(1, 2) is PyTorch's swap of two axes. In MLX, transpose takes the full new order, "
              "x.transpose(0, 2, 1, 3), or swap two axes with x.swapaxes(1, 2) (and keysᵀ is "
              "keys.swapaxes(-1, -2))."),
    ErrorHint("dot_T_reverses_axes", ("ValueError",),
              r"\[matmul\] Last dimension of first input with shape \(([\d,]*)\) must match second to last "
              r"dimension of second input with shape \(([\d,]*)\)",
              "`.T` on an array with more than two axes does not do what it does on a matrix.",
              "`.T` reverses *every* axis: on keys (B, L_k, D_h) it gives (D_h, L_k, B). Swap only the last "
              "two axes: keys.swapaxes(-1, -2).", fits=_reversed_batch),
    ErrorHint("keys_from_queries", ("ValueError",),
              r"\[matmul\] Last dimension of first input with shape \((?:\d+,)*(\d+),\1\) must match second to last "
              r"dimension of second input with shape \((?:\d+,)*(\d+),\d+\)",
              "Your weights are (L_q, L_q), square: which input did your keys come from?",
              "The keys come from the keys input: keys = self.key_proj(keys). Projected from the queries, they "
              "have L_q rows, the weights become (L_q, L_q) and no longer fit the values' L_k.",
              exercises=("multi_head_attention_basic", "multi_head_attention", "single_head_attention", "debug_layer"),
              fits=lambda match: match.group(1) != match.group(2)),
    ErrorHint("decode_cache_repeated", ("ValueError",),
              r"\[concatenate\] All the input array dimensions must match exactly.*shapes are \(\d+,(\d+),\d+,\d+\), "
              r"\(\d+,(\d+),\d+,\d+\)",
              "How many heads does the cache you return have, and how many does the next token bring?",
              "Keep the cache with the key/value heads it has (B, H_kv, L, D_h): repeat them for the query heads "
              "only to attend, and return the cache unrepeated.",
              exercises=("decode_step",), fits=lambda match: match.group(1) != match.group(2)),
    ErrorHint("matmul_shapes", ("ValueError",), r"\[matmul\] Last dimension of first input",
              "Write the two shapes of your `@` one above the other: which sizes must match?",
              "In a @ b the last axis of a must equal the second-to-last of b: (..., L_q, D_h) @ (..., D_h, L_k). "
              "Swap the keys' last two axes with keys.swapaxes(-1, -2)."),
    ErrorHint("split_reshape_size", ("ValueError",), r"\[reshape\] Cannot reshape array of size \d+ into shape",
              "How does the last axis, dims, split into heads?",
              "dims = num_heads × head_dims: reshape (B, L, dims) to (B, L, num_heads, dims // num_heads), "
              "not (B, L, num_heads, dims).",
              exercises=("split_heads", "multi_head_attention_basic", "multi_head_attention", "debug_layer")),
    ErrorHint("reshape_size", ("ValueError",), r"\[reshape\] Cannot reshape array of size \d+ into shape",
              "Multiply out the sizes of the new shape: do they equal the array's size?",
              "A reshape keeps the number of elements: the product of the new shape must equal the old one. "
              "Take the sizes from x.shape (or use -1 for one of them)."),
    ErrorHint("torch_keyword_dim", ("TypeError",), r"kwargs = \{[^}]*\bdim:",
              "MLX's functions don't take PyTorch's `dim=` keyword.",
              "MLX says axis=, not dim=: mx.softmax(x, axis=-1), x.sum(axis=-1, keepdims=True), "
              "mx.concatenate(arrays, axis=2)."),
    ErrorHint("torch_keyword_keepdim", ("TypeError",), r"kwargs = \{[^}]*\bkeepdim:",
              "Check the spelling of the keep-the-axis keyword.",
              "MLX (like NumPy) spells it keepdims=True, with an s."),
    ErrorHint("torch_tril_diagonal", ("TypeError",), r"kwargs = \{[^}]*\bdiagonal:",
              "mx.tril and mx.triu don't take PyTorch's `diagonal=`.",
              "MLX spells the diagonal offset k=: mx.tril(x, k=1)."),
    ErrorHint("torch_is_causal", ("TypeError",), r"kwargs = \{[^}]*\b(is_causal|attn_mask):",
              "mx.fast.scaled_dot_product_attention has no PyTorch keywords.",
              "MLX has one mask= argument: mask=\"causal\" instead of is_causal=True, and mask=array "
              "instead of attn_mask=array (True = attend)."),
    ErrorHint("fast_scale_required", ("TypeError",),
              r"scaled_dot_product_attention\(\): incompatible function arguments.*Invoked with types: "
              r"mlx\.core\.array, mlx\.core\.array, mlx\.core\.array(, kwargs = \{ mask: \w+ \})?$",
              "mx.fast.scaled_dot_product_attention has one required keyword you left out.",
              "The fused kernel has no default scale: pass scale=1 / math.sqrt(head_dims) as a keyword."),
    ErrorHint("torch_view", ("TypeError",), r"view\(\): incompatible function arguments",
              "`.view` means something else in MLX.",
              "In MLX x.view(dtype) reinterprets the bytes as another dtype; to change the shape use "
              "x.reshape(B, L, H, D_h)."),
    ErrorHint("shape_as_tuple", ("TypeError",),
              r"(ones|zeros|full|normal|uniform)\(\): incompatible function arguments.*Invoked with types: int, int",
              "How does MLX take a shape?",
              "Pass the shape as one tuple: mx.ones((n, n)), mx.random.normal((B, L, dims))."),
    ErrorHint("torch_size", ("TypeError",), r"'int' object is not callable",
              "Is the array's size a method in MLX?",
              "x.size is the number of elements (a number, not a method); the sizes of the axes are x.shape, "
              "e.g. x.shape[-1] for PyTorch's x.size(-1)."),
    ErrorHint("invert_float_mask", ("ValueError",), r"Floating point types not allowed with bitwise inversion",
              "`~` works on boolean masks only.",
              "~mask needs a boolean mask. Compare to get booleans (e.g. positions < lengths) or use "
              "mx.logical_not; an additive float mask is inverted by rebuilding it, not with ~."),
    ErrorHint("finfo_not_float", ("ValueError",), r"\[finfo\] dtype \w+ is not inexact",
              "Whose dtype do you pass to mx.finfo?",
              "mx.finfo needs a float dtype: use the scores' dtype (scores.dtype or the dtype you were given), "
              "not the boolean mask's."),
    ErrorHint("no_torch", ("NameError",), r"name '(torch|F|nn\.functional)' is not defined",
              "This course runs on MLX only.",
              "There is no torch here: use mlx.core as mx (mx.softmax, mx.fast.scaled_dot_product_attention) "
              "and mlx.nn as nn."),
    ErrorHint("torch_cat", ("AttributeError",), r"module 'mlx\.core' has no attribute 'cat'",
              "That is PyTorch's name for joining arrays.",
              "MLX calls it mx.concatenate(arrays, axis=...) (or mx.stack for a new axis)."),
    ErrorHint("torch_bool_dtype", ("AttributeError",), r"module 'mlx\.core' has no attribute '(bool|long|float)'",
              "Check the name of the dtype.",
              "MLX's dtypes are mx.bool_, mx.int64, mx.float32, mx.float16, mx.bfloat16."),
    _torch_method("masked_fill", "write mx.where(mask, scores, fill), keeping the scores where mask is "
                  "True (MLX masks say True = attend)."),
    _torch_method("permute", "x.transpose(0, 2, 1, 3) takes the full order, like PyTorch's permute."),
    _torch_method("unsqueeze", "add an axis by indexing, x[:, None], or with mx.expand_dims(x, 1)."),
    _torch_method("contiguous", "MLX has no .contiguous(): reshape works on any array, so drop the call."),
    _torch_method("repeat_interleave", "use mx.repeat(x, repeats, axis=1) (mx.tile repeats the whole axis)."),
    _torch_method("expand", "broadcasting does it for you; if you need the copy, mx.broadcast_to(x, shape)."),
    _torch_method("dim", "the number of axes is x.ndim."),
    _torch_method("float", "cast with x.astype(mx.float32).", "torch_cast"),
    _torch_method("bool", "cast with x.astype(mx.bool_).", "torch_cast"),
    _torch_method("long", "cast with x.astype(mx.int64).", "torch_cast"),
    _torch_method("half", "cast with x.astype(mx.float16).", "torch_cast"),
    _torch_method("numpy", "convert with np.array(x); but stay in mlx.core for the answer.", "torch_numpy"),
]


def match_error(type_name, message, *, code="", exercise_id=None):
    """The :class:`ErrorHint` for an exception, or ``None``.

    Args:
        type_name (str): The exception's type name, e.g. ``"ValueError"``.
        message (str): Its message.
        code (str, optional): The learner's line that raised it, if known.
        exercise_id (str, optional): The exercise being checked.
    """
    for error_hint in ERROR_HINTS:
        if error_hint.matches(type_name, message, code, exercise_id):
            return error_hint
    return None


def _own_nudges(exercise):
    """hint_id -> nudge given by the exercise's own mistakes and properties."""
    own = {}
    for item in list(getattr(exercise, "mistakes", None) or []) + list(getattr(exercise, "properties", None) or []):
        nudge = getattr(item, "nudge", None)
        if nudge:
            own.setdefault(item.hint_id, nudge)
    return own


def add_nudges(exercise, result):
    """Give the result and each of its cases the tier-1 text for its ``hint_id``.

    The mistake's or property's own nudge comes first, then the error hint's
    (already set on the case), then the catalogue's :data:`NUDGES`.
    """
    own = _own_nudges(exercise)
    for case in result.cases:
        if case.hint_id and not case.nudge:
            case.nudge = own.get(case.hint_id) or nudge_for(case.hint_id)
    if result.hint_id and not result.nudge:
        same = next((c.nudge for c in result.cases if c.hint_id == result.hint_id and c.nudge), None)
        result.nudge = own.get(result.hint_id) or same or nudge_for(result.hint_id)
    return result


def at_tier(result, exercise, tier):
    """``result`` shown at hint tier ``tier`` (1: the nudge and a "more help" line; 2: the fix)."""
    result.tier = 2 if tier in (2, "2") else 1
    result.answer_name = exercise.answer_name
    return add_nudges(exercise, result)


def tiers_shown(sources):
    """The hint tier a notebook asked for, per exercise: 2 where it calls ``check(id, ..., hint=2)``.

    For the batch grader, which records how much help a learner used. Only
    literal calls count: ``check("split_heads", split_heads, hint=2)``.

    Args:
        sources (iterable[str]): The notebook's code cells.

    Returns:
        dict: exercise id -> tier (1 or 2), for every exercise checked.
    """
    import ast

    tiers = {}
    for source in sources:
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "check"
                    and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
                continue
            tier = next(
                (k.value.value for k in node.keywords if k.arg == "hint" and isinstance(k.value, ast.Constant)), 1
            )
            tier = 2 if tier in (2, "2") else 1
            exercise_id = node.args[0].value
            tiers[exercise_id] = max(tiers.get(exercise_id, 1), tier)
    return tiers
