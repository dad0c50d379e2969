"""`mhacourse doctor`: it reports the BLAS MLX really uses, and gives advice that fits."""

import json
import os
import sys

import pytest

from mhacourse import blas, doctor

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux BLAS story")


def report(**changes):
    base = {"device": "cpu", "setting": "auto", "found": None,
            "blas": {"name": "reference", "path": "/x/mlx_cpu.libs/libblas.so", "optimised": False,
                     "preloaded": False}}
    base.update(changes)
    return base


@linux_only
def test_advice_fits_the_situation():
    found = "/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3"
    text = "\n".join(doctor.advice(report(found=found)))
    assert "reference" in text and f"export LD_PRELOAD={found}" in text

    text = "\n".join(doctor.advice(report()))
    assert "apt-get install libopenblas0-pthread" in text and "fastblas" in text

    text = "\n".join(doctor.advice(report(setting="off", found=found)))
    assert "MHACOURSE_BLAS=off" in text and "export LD_PRELOAD" not in text

    fast = {"name": "OpenBLAS", "path": found, "optimised": True, "preloaded": True}
    text = "\n".join(doctor.advice(report(blas=fast)))
    assert "runs on OpenBLAS" in text and "Nothing to do" in text


def test_doctor_json_describes_this_process(tmp_path, capsys):
    path = tmp_path / "doctor.json"
    assert doctor.main(["--no-compare", "--size", "64", "--repeats", "1", "--json", str(path)]) == 0
    data = json.loads(path.read_text())
    assert data["blas"] == blas.current_blas().as_dict()
    assert data["gflops"] > 0 and data["size"] == 64 and data["comparison"] is None
    assert data["mlx"] and data["device"] in ("cpu", "gpu") and data["advice"]
    out = capsys.readouterr().out
    assert f"blas       {data['blas']['name']}" in out and "GFLOP/s" in out


@linux_only
def test_probe_in_a_child_follows_the_switch():
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", blas.ENV_VAR)}
    off = doctor.probe_in_subprocess(blas.preload_env({**env, blas.ENV_VAR: "off"}), size=32, repeats=1)
    assert off["blas"]["name"] == "reference" and off["gflops"] > 0
    library = blas.find_optimised_blas({})
    if library is None:
        pytest.skip("no optimised BLAS installed here")
    on = doctor.probe_in_subprocess(blas.preload_env(env), size=32, repeats=1)
    assert on["blas"]["path"] == library and on["blas"]["optimised"]


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="--size"):
        doctor.main(["--size", "0", "--no-compare"])
