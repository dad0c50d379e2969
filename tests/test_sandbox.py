"""Plain data out of the sandbox (the codec) and the grader's hidden inputs."""

import json

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx.utils import tree_flatten

from mhacourse.grading import exercise_ids, get_exercise
from mhacourse.grading.compare import matches
from mhacourse.grading.compute import calls_for, compute
from mhacourse.grading.exercise import ModuleExercise
from mhacourse.grading.judge import judge
from mhacourse.grading.sandbox import codec


def roundtrip(value, folder):
    tree = json.loads(codec.dumps(codec.encode(value, folder, "v")))
    return codec.decode(tree, folder)


@pytest.mark.parametrize("dtype", [mx.float32, mx.float16, mx.bfloat16, mx.int32, mx.bool_])
def test_arrays_come_back_exactly_with_their_dtype(tmp_path, dtype):
    value = (mx.random.normal((2, 3), key=mx.random.key(0)) * 100).astype(dtype)
    back = roundtrip(value, tmp_path)
    assert isinstance(back, mx.array) and back.dtype == dtype and back.shape == (2, 3)
    assert mx.array_equal(back, value).item()


def test_structures_scalars_and_zero_dim_arrays(tmp_path):
    value = (mx.array(1.5), [1, 2.5, True, None, "x"], {"a": np.arange(3)}, float("inf"))
    back = roundtrip(value, tmp_path)
    assert back[0].shape == () and back[0].item() == 1.5
    assert back[1] == [1, 2.5, True, None, "x"] and back[3] == float("inf")
    assert isinstance(back[2]["a"], np.ndarray) and back[2]["a"].tolist() == [0, 1, 2]
    assert matches(back[:2], value[:2])


def test_other_objects_come_back_as_never_matching(tmp_path):
    back = roundtrip(object(), tmp_path)
    assert isinstance(back, codec.Opaque) and back != back and "object" in repr(back)


@pytest.mark.parametrize("tree", [
    {"t": "mx", "dtype": "float32", "file": "../x.npy"},
    {"t": "mx", "dtype": "float32", "file": "missing.npy"},
    {"t": "mx", "dtype": "no-such-dtype", "file": "v-1.npy"},
    {"t": "pickle", "v": "cos\nsystem\n"},
    {"t": "tuple", "items": "not a list"},
    ["not", "a", "dict"],
])
def test_malformed_or_unsafe_data_is_refused(tmp_path, tree):
    codec.encode(mx.zeros((2,)), tmp_path, "v")  # writes v-1.npy
    with pytest.raises(Exception):  # noqa: B017 - any refusal will do: each tree fails its own way
        codec.decode(tree, tmp_path)


def test_object_arrays_never_load(tmp_path):
    np.save(tmp_path / "v-1.npy", np.array([object()], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError):
        codec.decode({"t": "np", "file": "v-1.npy"}, tmp_path)


def test_hidden_cases_depend_on_the_secret_and_differ_from_the_visible_sizes():
    exercise = get_exercise("split_heads")
    visible = {tuple(case.inputs()[0][0].shape) for case in exercise.cases}

    def shapes(seed):
        calls = [c for c in calls_for(exercise, np.random.default_rng(seed)) if c.name.startswith("hidden case")]
        return [tuple(c.case.inputs()[0][0].shape) for c in calls]

    assert shapes(1) == shapes(1) and shapes(1)
    assert not set(shapes(1)) & visible
    assert any(shapes(seed) != shapes(1) for seed in range(2, 6))


NO_HIDDEN_CASES = set()
"""Exercises whose answer takes no input that could vary (none so far; see hidden.py's docstring)."""


def _hidden_calls(exercise, seed):
    return [c for c in calls_for(exercise, np.random.default_rng(seed)) if c.name.startswith("hidden case")]


def _call_args(exercise, inputs):
    args, _ = inputs
    return args[1] if isinstance(exercise, ModuleExercise) else args


def _first_array(value):
    if isinstance(value, (mx.array, np.ndarray)):
        return value
    if isinstance(value, (tuple, list)):
        for item in value:
            found = _first_array(item)
            if found is not None:
                return found
    return None


def _size(exercise, inputs):
    """The shape of the first array input, or (for answers on sizes) the integers and list lengths."""
    args = _call_args(exercise, inputs)
    array = _first_array(args)
    if array is not None:
        return tuple(array.shape)
    return tuple(len(a) if isinstance(a, list) else a for a in args if isinstance(a, (int, list)))


def _values(value):
    """Everything an input holds, as plain comparable data (layers by their parameters)."""
    if isinstance(value, (mx.array, np.ndarray)):
        return (tuple(value.shape), np.asarray(value).tolist())
    if isinstance(value, nn.Module):
        return [_values(v) for _, v in tree_flatten(value.parameters())]
    if isinstance(value, dict):
        return {k: _values(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_values(v) for v in value]
    return value if isinstance(value, (int, float, str, bool, type(None))) else type(value).__name__


@pytest.fixture(scope="module")
def installed():
    """(Hidden cases are declared with their exercises: nothing to install.)"""


@pytest.mark.parametrize("exercise_id", exercise_ids())
def test_every_exercise_has_hidden_cases_the_reference_passes_and_each_known_mistake_fails(installed, exercise_id):
    exercise = get_exercise(exercise_id)
    if exercise_id in NO_HIDDEN_CASES:
        assert exercise.hidden_cases is None
        return
    assert exercise.hidden_cases is not None
    calls = _hidden_calls(exercise, 11)
    assert calls
    result = judge(exercise, calls, compute(exercise, exercise.reference, calls, 10.0))
    assert result.passed, [(case.name, case.status, case.message) for case in result.cases if case.status != "passed"]
    assert len(result.cases) == len(calls)
    passing = [m.hint_id for m in exercise.mistakes
               if judge(exercise, calls, compute(exercise, m.answer, calls, 10.0)).passed]
    assert passing == []


@pytest.mark.parametrize("exercise_id", sorted(set(exercise_ids()) - NO_HIDDEN_CASES))
def test_hidden_sizes_differ_from_the_visible_ones_and_follow_the_seed(installed, exercise_id):
    exercise = get_exercise(exercise_id)
    visible = {_size(exercise, case.inputs()) for case in exercise.cases}

    def drawn(seed):
        return [call.case.inputs() for call in _hidden_calls(exercise, seed)]

    for seed in range(8):
        assert not {_size(exercise, inputs) for inputs in drawn(seed)} & visible, seed
    first = drawn(1)
    assert _values(drawn(1)) == _values(first)
    assert any(_values(drawn(seed)) != _values(first) for seed in range(2, 6))
    for call in _hidden_calls(exercise, 1):  # fresh arrays on every call
        once, again = _first_array(_call_args(exercise, call.case.inputs())), \
            _first_array(_call_args(exercise, call.case.inputs()))
        assert once is None or once is not again


# ------------------------------------------------------------------ the sandbox's file system

@pytest.mark.skipif(not __import__("mhacourse.grading.batch.isolation", fromlist=["x"]).bwrap_available(),
                    reason="bwrap cannot run here")
def test_an_environment_installed_under_tmp_is_visible_inside(tmp_path):
    """The sandbox has its own /tmp; the course view, and an environment installed below /tmp (a fresh
    clone in CI), must still be bound into it, while the rest of the host's /tmp stays out of sight."""
    import subprocess

    from mhacourse.grading.batch import isolation

    view = tmp_path / "view"
    (view / "mhacourse").mkdir(parents=True)
    (view / "mhacourse" / "marker.txt").write_text("course")
    for path in (view, view / "mhacourse", view / "mhacourse" / "marker.txt"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    (tmp_path / "other-submission.ipynb").write_text("{}")
    script = (f"import os, sys; print(open({isolation.COURSE + '/mhacourse/marker.txt'!r}).read(), "
              f"os.path.exists({str(tmp_path / 'other-submission.ipynb')!r}), os.path.exists(sys.prefix))")
    args = (isolation._bwrap_args(view, isolation.Limits()) + ["--"] + isolation._drop_privileges()
            + [isolation.sys.executable, "-c", script])
    done = subprocess.run(args, capture_output=True, text=True, env=isolation._bwrap_env(), timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["course", "False", "True"]
