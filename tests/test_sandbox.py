"""Plain data out of the sandbox (the codec) and the grader's hidden inputs."""

import json

import mlx.core as mx
import numpy as np
import pytest

from mhacourse.grading import codec, get_exercise, hidden
from mhacourse.grading.compare import matches
from mhacourse.grading.registry import calls_for


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
    with pytest.raises(Exception):
        codec.decode(tree, tmp_path)


def test_object_arrays_never_load(tmp_path):
    np.save(tmp_path / "v-1.npy", np.array([object()], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError):
        codec.decode({"t": "np", "file": "v-1.npy"}, tmp_path)


def test_hidden_cases_depend_on_the_secret_and_differ_from_the_visible_sizes():
    hidden.install()
    exercise = get_exercise("split_heads")
    visible = {tuple(case.inputs()[0][0].shape) for case in exercise.cases}

    def shapes(seed):
        calls = [c for c in calls_for(exercise, np.random.default_rng(seed)) if c.name.startswith("hidden case")]
        return [tuple(c.case.inputs()[0][0].shape) for c in calls]

    assert shapes(1) == shapes(1) and shapes(1)
    assert not set(shapes(1)) & visible
    assert any(shapes(seed) != shapes(1) for seed in range(2, 6))
