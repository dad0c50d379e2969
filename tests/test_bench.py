"""The attention benchmark: FLOP counts, row schema, memory growth, ratio checks, CLI output."""

import json
import math

import mlx.core as mx
import pytest

from mhacourse import bench

TINY = dict(lengths=(16, 64), batch=1, num_heads=2, head_dim=8, repeats=2, warmup=1, matmul_size=32)
KEYS = {"impl", "L", "median_ms", "spread_ms", "peak_mb", "gflops", "matmul_fraction", "device", "dtype"}


@pytest.fixture(scope="module")
def rows():
    return bench.benchmark_attention(**TINY)


def test_flop_counts():
    assert bench.attention_flops(2, 3, 5, 7) == 4 * 2 * 3 * 5 * 5 * 7
    assert bench.attention_flops(2, 3, 5, 8, causal=True) == 4 * 2 * 3 * 5 * 5 * 8 // 2
    assert bench.attention_flops(1, 1, 4, 2, n_keys=6) == 4 * 4 * 6 * 2
    dims = 3 * 7
    assert bench.layer_flops(2, 3, 5, 7) == bench.attention_flops(2, 3, 5, 7) + 8 * 2 * 5 * dims * dims


def test_rows_follow_the_schema(rows):
    assert [(row["impl"], row["L"]) for row in rows] == [
        (impl, length) for length in TINY["lengths"] for impl in bench.IMPLEMENTATIONS]
    for row in rows:
        assert KEYS <= set(row)
        assert row["dtype"] == "float32" and row["device"] in ("cpu", "gpu")
        assert row["median_ms"] > 0 and row["spread_ms"] >= 0 and row["peak_mb"] >= 0
        expected = (bench.attention_flops if row["impl"] in ("explicit", "fused") else bench.layer_flops)(
            1, 2, row["L"], 8)
        assert row["flops"] == expected
        assert math.isclose(row["gflops"], expected / (row["median_ms"] * 1e-3) / 1e9, rel_tol=1e-9)
        assert math.isclose(row["matmul_fraction"], row["gflops"] / row["matmul_gflops"], rel_tol=1e-9)
    json.dumps(rows)  # plain numbers only


def test_explicit_peak_memory_grows_as_l_squared():
    rows = bench.benchmark_attention(lengths=(32, 128), num_heads=2, head_dim=8, repeats=1, warmup=1,
                                     impls=("explicit",), matmul_size=32)
    small, large = (row["peak_mb"] for row in rows)
    assert large / small > 8  # 16x more scores for 4x the length


def test_time_function_reports_median_and_spread():
    timing = bench.time_function(lambda: mx.ones((8, 8)) @ mx.ones((8, 8)), repeats=4, warmup=0)
    assert len(timing["times_ms"]) == 4
    assert min(timing["times_ms"]) <= timing["median_ms"] <= max(timing["times_ms"])
    assert timing["spread_ms"] <= max(timing["times_ms"]) - min(timing["times_ms"])
    with pytest.raises(ValueError, match="repeats"):
        bench.time_function(lambda: mx.ones(1), repeats=0)
    both = bench.time_interleaved({"small": lambda: mx.ones((4, 4)) * 2, "large": lambda: mx.ones((256, 256)) * 2},
                                  repeats=3, warmup=1)
    assert all(len(result["times_ms"]) == 3 for result in both.values())
    assert both["large"]["peak_mb"] > both["small"]["peak_mb"]


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="lengths"):
        bench.benchmark_attention(lengths=())
    with pytest.raises(ValueError, match="impls"):
        bench.benchmark_attention(lengths=(8,), impls=("naive",))
    with pytest.raises(TypeError, match="dtype"):
        bench.benchmark_attention(lengths=(8,), dtype=mx.int32)
    with pytest.raises(ValueError, match="num_heads"):
        bench.benchmark_attention(lengths=(8,), num_heads=0)


def synthetic(impl, length, ms, mb, device="cpu"):
    return {"impl": impl, "L": length, "median_ms": ms, "peak_mb": mb, "dtype": "float32", "device": device}


def test_ratio_checks_decide_from_the_numbers():
    slow = [synthetic("mhacourse", n, 1.2, 1) for n in (64, 128)] + [synthetic("mlx.nn", n, 1.0, 1) for n in (64, 128)]
    (layer,) = bench.check_ratios(slow)
    assert layer["holds"] is False and math.isclose(layer["value"], 1.2)
    close = [dict(row, median_ms=1.04) if row["impl"] == "mhacourse" else row for row in slow]
    assert bench.check_ratios(close)[0]["holds"] is True
    too_slow = [dict(row, median_ms=1.07) if row["impl"] == "mhacourse" else row for row in slow]
    assert bench.check_ratios(too_slow)[0]["holds"] is False  # the target is 5%, not 10%

    # Eager and compiled are judged separately: here only the compiled pair is too slow.
    compiled = [dict(row, impl=f"{row['impl']} compiled") for row in slow]
    eager, compiled_check = bench.check_ratios(close + compiled)
    assert eager["check"] == "layer time: mhacourse / mlx.nn" and eager["holds"] is True
    assert compiled_check["check"] == "layer time: mhacourse compiled / mlx.nn compiled"
    assert compiled_check["holds"] is False and math.isclose(compiled_check["value"], 1.2)

    gpu = [synthetic("explicit", n, 1, n * n / 1e3, "gpu") for n in (256, 512, 1024)]
    gpu += [synthetic("fused", n, 1, n / 1e3, "gpu") for n in (256, 512, 1024)]
    (memory,) = bench.check_ratios(gpu)
    assert memory["holds"] is True
    assert math.isclose(memory["value"][0], 2.0) and math.isclose(memory["value"][1], 1.0)
    both_square = [dict(row, peak_mb=row["L"] ** 2 / 1e3) for row in gpu]
    assert bench.check_ratios(both_square)[0]["holds"] is False
    cpu = [dict(row, device="cpu") for row in both_square]
    assert bench.check_ratios(cpu)[0]["holds"] is None


def test_plot_has_a_line_per_implementation(rows, tmp_path):
    fig = bench.plot_benchmark(rows)
    time_ax, memory_ax = fig.axes[:2]
    assert len(time_ax.lines) >= len(bench.IMPLEMENTATIONS)
    assert len(memory_ax.lines) == len(bench.IMPLEMENTATIONS)
    assert {text.get_text() for text in time_ax.get_legend().get_texts()} == set(bench.IMPLEMENTATIONS)
    with pytest.raises(ValueError, match="rows"):
        bench.plot_benchmark([])


def test_command_line_writes_table_json_and_png(tmp_path, capsys):
    out_json, out_png = tmp_path / "bench.json", tmp_path / "bench.png"
    code = bench.main(["--lengths", "8,16", "--heads", "2", "--head-dim", "8", "--repeats", "1",
                       "--warmup", "0", "--matmul-size", "32", "--impls", "fused,mhacourse,mlx.nn",
                       "--json", str(out_json), "--plot", str(out_png)])
    assert code == 0
    data = json.loads(out_json.read_text())
    assert {"environment", "rows", "checks", "args", "seconds"} <= set(data)
    assert len(data["rows"]) == 6 and all(KEYS <= set(row) for row in data["rows"])
    assert data["environment"]["blas"]["name"]
    assert [check["check"] for check in data["checks"]] == ["layer time: mhacourse / mlx.nn"]
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert "median ms" in printed and printed.count("float32") >= 6
    with pytest.raises(ValueError, match="dtypes"):
        bench.main(["--lengths", "8", "--dtypes", "float64"])


def test_gpu_check_summarises_junit_and_names_the_backend(tmp_path):
    from mhacourse import gpu_check
    from tests.conftest import BACKEND

    report = tmp_path / "junit.xml"
    report.write_text(
        '<testsuites><testsuite name="pytest">'
        '<testcase classname="tests.test_sdpa" name="test_a"/>'
        '<testcase classname="tests.test_sdpa" name="test_b"><failure message="max diff 0.1"/></testcase>'
        '<testcase classname="tests.test_parity" name="test_c"><skipped message="no GPU"/></testcase>'
        '</testsuite></testsuites>')
    summary = gpu_check._junit_summary(report)
    assert (summary["passed"], summary["failed"], summary["skipped"], summary["errors"]) == (1, 1, 1, 0)
    assert summary["failures"] == [{"test": "tests.test_sdpa::test_b", "message": "max diff 0.1"}]
    assert gpu_check.backend() == BACKEND
