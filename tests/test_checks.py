"""check() itself: it never raises, its reports, the registry and the exercise notebooks."""

import time
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import nbformat
import numpy as np
import pytest

from mhacourse.grading import CheckResult, check, exercise_ids, get_exercise

ROOT = Path(__file__).resolve().parents[1]
REQUIRED = ["scaled_dot_product_attention", "split_heads", "merge_heads", "causal_mask", "multi_head_attention"]


def good_split(x, num_heads):
    B, L, D = x.shape
    return x.reshape(B, L, num_heads, D // num_heads).transpose(0, 2, 1, 3)


# ---------------------------------------------------------------------------
# The registry


def test_required_ids_exist_with_grader_fields():
    ids = exercise_ids()
    for exercise_id in REQUIRED:
        assert exercise_id in ids
    assert get_exercise("split_heads").answer_name == "split_heads"
    assert get_exercise("multi_head_attention").answer_name == "MultiHeadAttention"
    assert get_exercise("split_heads").lesson == "02"


def test_at_least_30_exercises_across_lessons_01_to_08():
    ids = exercise_ids()
    assert len(ids) == len(set(ids)) >= 30
    assert sum(get_exercise(i).lesson <= "06" for i in ids) >= 28
    lessons = {get_exercise(i).lesson for i in ids}
    assert {f"{n:02d}" for n in range(1, 9)} <= lessons
    for exercise_id in ids:
        exercise = get_exercise(exercise_id)
        assert exercise.points > 0 and exercise.title and exercise.answer_name.isidentifier()


def test_unknown_id_is_a_result_not_an_error():
    result = check("no_such_exercise", good_split)
    assert not result.passed and result.status == "invalid"
    assert "split_heads" in result.report()
    with pytest.raises(KeyError):
        get_exercise("no_such_exercise")


@pytest.mark.parametrize("exercise_id", exercise_ids())
def test_reference_passes_its_own_check(exercise_id):
    exercise = get_exercise(exercise_id)
    result = check(exercise_id, exercise.reference)
    assert result.passed, result.report()
    assert result.points == exercise.points
    assert len(result.cases) == len(exercise.cases) + len(exercise.properties) >= 2
    assert "hint=2" not in result.report() and "Hint:" not in result.report()


@pytest.mark.parametrize("exercise_id", exercise_ids())
def test_every_catalogued_mistake_is_recognised(exercise_id):
    exercise = get_exercise(exercise_id)
    for mistake in exercise.mistakes:
        result = check(exercise_id, mistake.answer)
        assert not result.passed, f"{mistake.hint_id} passed"
        assert result.hint_id == mistake.hint_id, result.report()


def test_cases_cover_asymmetric_shapes():
    names = " ".join(c.name for c in get_exercise("scaled_dot_product_attention").cases)
    assert "batch 2" in names and "3 heads" in names and "5 queries, 7 keys" in names
    layer_cases = get_exercise("multi_head_attention").cases
    constructors = [c.inputs()[0][0] for c in layer_cases]
    used = set().union(*constructors)
    assert used >= {"dims", "num_heads", "query_input_dims", "key_input_dims", "value_input_dims",
                    "value_dims", "value_output_dims", "bias"}


@pytest.mark.parametrize("bad_id", [None, 3, ["split_heads"], {"id": 1}])
def test_non_string_id_is_a_result_listing_the_ids(bad_id):
    result = check(bad_id, good_split)
    assert not result.passed and result.status == "invalid"
    assert "string" in result.message and "split_heads" in result.message


# ---------------------------------------------------------------------------
# check() never raises


def test_not_implemented():
    def split_heads(x, num_heads):
        raise NotImplementedError()

    result = check("split_heads", split_heads)
    assert not result.passed and result.points == 0
    assert result.status == "not implemented"
    assert "not implemented yet" in result.report()
    assert len(result.cases) == 1  # stops at the first case


def test_exception_reports_the_learners_line():
    def split_heads(x, num_heads):
        B, L, D = x.shape
        return x.reshape(B, num_heads, D)  # a wrong reshape

    result = check("split_heads", split_heads)
    assert result.status == "error" and not result.passed
    text = result.report()
    assert "ValueError" in text
    assert "return x.reshape(B, num_heads, D)" in text


@pytest.mark.parametrize("returned, words", [
    (None, "should be an mx.array"),
    ("a string", "should be an mx.array"),
    (np.zeros((1, 2, 4, 4), np.float32), "NumPy"),
    ((mx.zeros((1, 2, 4, 4)),), "should be an mx.array"),
])
def test_wrong_return_type(returned, words):
    result = check("split_heads", lambda x, num_heads: returned)
    assert not result.passed and result.status == "failed"
    assert words in result.report()


def test_wrong_dtype_is_reported():
    result = check("split_heads", lambda x, num_heads: good_split(x, num_heads).astype(mx.float16))
    assert not result.passed
    assert result.hint_id == "wrong_dtype"
    assert "float16" in result.report()


def test_nan_output_is_a_failure():
    def split_heads(x, num_heads):
        out = good_split(x, num_heads)
        return mx.where(out > 1.0, mx.nan, out)

    result = check("split_heads", split_heads)
    assert not result.passed
    assert "NaN" in result.report()


def test_slow_answer_times_out_without_blocking():
    def split_heads(x, num_heads):
        time.sleep(3)
        return good_split(x, num_heads)

    start = time.perf_counter()
    result = check("split_heads", split_heads, time_limit=0.2)
    assert time.perf_counter() - start < 2
    assert result.status == "timeout" and not result.passed
    assert len(result.cases) == 1
    assert "0.2 s" in result.report()


def test_wrong_kind_of_answer():
    assert check("split_heads", 42).status == "invalid"
    assert check("split_heads", nn.Linear).status == "invalid"
    instance = check("multi_head_attention", nn.MultiHeadAttention(8, 2))
    assert instance.status == "invalid" and instance.hint_id == "instance_not_class"
    assert check("multi_head_attention", good_split).status == "invalid"


def test_wrong_signature_gets_a_hint():
    result = check("split_heads", lambda x: x)
    assert not result.passed and result.hint_id == "signature"
    assert "split_heads(x, num_heads)" in result.report()


def test_returned_object_whose_repr_fails_is_a_failure():
    class Unprintable:
        def __repr__(self):
            raise RuntimeError("no repr")

    for exercise_id, answer in [("split_heads", lambda x, num_heads: Unprintable()),
                                ("parameter_count", lambda dims, num_heads, bias=False: Unprintable())]:
        result = check(exercise_id, answer)
        assert result.status == "failed", result.report()
        assert "Unprintable" in result.report()


def test_class_with_wrong_constructor_or_call_signature_gets_a_hint():
    import mhacourse.attention.custom_dims

    # (mlx.nn.MultiHeadAttention itself is forbidden in this exercise: build on the course's stage 4)
    class TwoArguments(mhacourse.attention.custom_dims.MultiHeadAttention):
        def __init__(self, dims, num_heads):
            super().__init__(dims, num_heads)

    class CallWithOneInput(mhacourse.attention.custom_dims.MultiHeadAttention):
        def __call__(self, x):
            return x

    for answer in (TwoArguments, CallWithOneInput):
        result = check("multi_head_attention", answer)
        assert not result.passed and result.hint_id == "signature", result.report()
        assert "query_input_dims" in result.hint


def test_system_exit_in_the_answer_is_caught():
    def split_heads(x, num_heads):
        raise SystemExit(3)

    assert check("split_heads", split_heads).status == "error"


def test_answer_using_a_lazy_array_from_the_notebook_thread():
    offset = mx.zeros((1,)) + 0.0  # built here, not evaluated

    def split_heads(x, num_heads):
        return good_split(x, num_heads) + offset

    assert check("split_heads", split_heads).passed


def test_check_does_not_change_the_default_stream():
    before = mx.default_stream(mx.default_device())
    check("split_heads", good_split)
    assert mx.default_stream(mx.default_device()) == before


# ---------------------------------------------------------------------------
# Reports


def test_text_report_is_like_cmp():
    passed = check("split_heads", good_split)
    assert isinstance(passed, CheckResult)
    text = str(passed)
    assert text.startswith("[PASSED] split_heads")
    assert "exact" in text and "1/1 points" in text
    assert "(2, 3, 5, 4)" in text  # the asymmetric case's output shape

    failed = check("split_heads", lambda x, num_heads: good_split(x, num_heads) * 1.5)
    text = failed.report()
    assert "[FAILED]" in text and "DIFFERENT" in text and "max abs diff" in text and "at index" in text


def test_html_report():
    failed = check("causal_mask", lambda n, dtype: mx.triu(mx.full((n, n), -mx.inf, dtype=dtype), k=1))
    html = failed._repr_html_()
    assert html.startswith("<div") and "<table>" in html
    assert "FAILED" in html and "Hint:" in html and "-inf" in html and "hint=2" in html
    fix = check("causal_mask", lambda n, dtype: mx.triu(mx.full((n, n), -mx.inf, dtype=dtype), k=1), hint=2)
    assert "finfo" in fix._repr_html_() and "hint=2" not in fix._repr_html_()
    weird = check("split_heads", lambda x, num_heads: "<script>")
    assert "<script>" not in weird._repr_html_()
    assert "&lt;script&gt;" in weird._repr_html_()


def test_passing_report_is_one_line_per_case():
    result = check("projection_shapes", get_exercise("projection_shapes").reference)
    lines = result.report().splitlines()
    assert len(lines) == 2 + len(result.cases)
    assert all(line.endswith(": exact") for line in lines[2:])


def test_shapes_are_reported_as_shapes():
    def projection_shapes(dims, num_heads, query_input_dims=None, key_input_dims=None,
                          value_input_dims=None, value_dims=None, value_output_dims=None):
        value_dims = value_dims or dims
        return {"query_proj": (dims, query_input_dims or dims), "key_proj": (dims, key_input_dims or dims),
                "value_proj": (value_dims, dims), "out_proj": (value_output_dims or dims, value_dims)}

    text = check("projection_shapes", projection_shapes).report()
    assert "output['value_proj']: expected (8, 6), got (8, 8)" in text
    assert "max abs diff" not in text
    wrong_shape = check("split_heads", lambda x, num_heads: x)
    assert "expected shape (1, 2, 4, 4), got (1, 4, 8)" in wrong_shape.report()


def test_close_but_not_exact_passes():
    result = check("split_heads", lambda x, num_heads: good_split(x, num_heads) + 1e-7)
    assert result.passed
    assert "close" in result.report()


# ---------------------------------------------------------------------------
# The exercise notebooks


SOURCES = sorted((ROOT / "exercise_sources").glob("*.ipynb"))


def _run_cells(path):
    """Execute a notebook's code cells in one namespace; return the check results."""
    nb = nbformat.read(path, as_version=4)
    namespace, results = {}, []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if cell.source.startswith("check("):
            results.append(eval(cell.source, namespace))
        else:
            exec(compile(cell.source, str(path), "exec"), namespace)
    return nb, results


def test_every_exercise_has_a_source_notebook():
    listed = []
    for path in SOURCES:
        nb = nbformat.read(path, as_version=4)
        meta = nb.metadata["mhacourse"]
        assert path.name.startswith(meta["lesson"] + "_")
        assert all(get_exercise(i).lesson == meta["lesson"] for i in meta["exercises"])
        listed += meta["exercises"]
    assert sorted(listed) == sorted(exercise_ids())


@pytest.mark.parametrize("path", SOURCES, ids=[p.name for p in SOURCES])
def test_source_solutions_pass_every_check(path):
    nb, results = _run_cells(path)
    assert [r.exercise_id for r in results] == nb.metadata["mhacourse"]["exercises"]
    for result in results:
        assert result.passed, result.report()
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.source.startswith("check("):
            assert "\n" not in cell.source.strip()  # the check is the cell's (displayed) last expression


EXERCISES = sorted((ROOT / "exercises").glob("*.ipynb"))


@pytest.mark.parametrize("path", EXERCISES, ids=[p.name for p in EXERCISES])
def test_untouched_exercises_fail_every_check(path):
    _, results = _run_cells(path)
    assert results
    for result in results:
        assert result.status == "not implemented" and result.points == 0, result.report()


def test_the_reference_and_mistakes_run_once_per_case_for_a_whole_class(monkeypatch):
    """Their outputs are kept with each case: the next learner's check runs neither on the cases again.

    (A property's inputs are made afresh for every check, so those calls are run again.)
    """
    exercise = get_exercise("attention_scores")
    mistake = exercise.mistakes[0]
    assert mistake.hint_id == "missing_scale"

    def learner(queries, keys, *, scale):  # forgets the scale
        return queries @ keys.swapaxes(-1, -2)

    runs = []

    def counted(name, answer):
        def run(*args, **kwargs):
            runs.append(name)
            return answer(*args, **kwargs)
        return run

    monkeypatch.setattr(exercise, "reference", counted("reference", exercise.reference))
    monkeypatch.setattr(mistake, "answer", counted("mistake", mistake.answer))
    first = check("attention_scores", learner)
    assert first.hint_id == mistake.hint_id
    first_runs = {name: runs.count(name) for name in ("reference", "mistake")}
    assert first_runs["reference"] >= len(exercise.cases) and first_runs["mistake"] >= len(exercise.cases)
    runs.clear()
    second = check("attention_scores", learner)  # the next learner, the same mistake
    assert second.hint_id == mistake.hint_id and second.report() == first.report()
    assert {name: runs.count(name) for name in ("reference", "mistake")} == {
        name: count - len(exercise.cases) for name, count in first_runs.items()}


def test_each_lesson_file_declares_exercises_of_its_own_lesson():
    """``lesson="NN"`` repeats what the file's name says: a copied declaration cannot land in another lesson."""
    import importlib

    from mhacourse.grading import registry

    for name in registry._LESSONS:
        module = importlib.import_module(f"mhacourse.grading.lessons.{name}")
        assert module.EXERCISES, name
        assert {exercise.lesson for exercise in module.EXERCISES} == {name.removeprefix("lesson")}, name
