"""`mhacourse doctor`: can this machine run the course (each missing piece simulated, each with the
command that fixes it), the BLAS MLX really uses, and advice that fits."""

import json
import os
import subprocess
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


# --- the checks: each missing piece simulated, each with the one command that fixes it ---

GOOD_SPEC = ("/env/share/jupyter/kernels/mhacourse",
             {"argv": ["/env/bin/python", "/env/mhacourse/blas.py", "exec", "--", "/env/bin/python", "-m",
                       "ipykernel_launcher", "-f", "{connection_file}"], "display_name": "mhacourse (MLX)"})
FAST = blas.BlasInfo("OpenBLAS", "/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3", True, True)
SLOW = blas.BlasInfo("reference", "/x/mlx_cpu.libs/libblas.so", False, False)


@pytest.fixture()
def machine(monkeypatch):
    """A Linux machine with everything the course wants; each test takes one piece away."""
    import mlx.core as mx

    tools = {"bwrap": "/usr/bin/bwrap", "chromium": "/usr/bin/chromium"}
    monkeypatch.setattr(doctor, "_python_version", lambda: (3, 11, 7))
    monkeypatch.setattr(doctor, "_platform", lambda: ("linux", "x86_64"))
    monkeypatch.setattr(doctor, "_import_mlx", lambda: (mx, None))
    monkeypatch.setattr(doctor, "_which", lambda name: tools.get(name))
    monkeypatch.setattr(doctor, "_bwrap_runs", lambda path: (True, ""))
    monkeypatch.setattr(doctor, "_read_sysctl", lambda name: None)
    monkeypatch.setattr(doctor, "_kernel_spec", lambda name="mhacourse": GOOD_SPEC)
    monkeypatch.setattr(doctor, "_nvidia_gpu", lambda: None)
    monkeypatch.setattr(doctor, "_matmul_gflops", lambda mx, size: 150.0)
    monkeypatch.setattr(blas, "current_blas", lambda: FAST)
    monkeypatch.setattr(blas, "candidates", lambda prefix=None: [FAST.path])
    monkeypatch.delenv(blas.ENV_VAR, raising=False)
    if hasattr(mx, "cuda"):
        monkeypatch.setattr(mx.cuda, "is_available", lambda: False)
    return tools


def by_name(found):
    return {check.name: check for check in found}


def doctor_says(capsys, *argv):
    """Run `mhacourse doctor --no-compare`: (exit status, printed text)."""
    status = doctor.main(["--no-compare", "--size", "32", "--repeats", "1", *argv])
    return status, capsys.readouterr().out


def test_a_machine_with_everything_passes_every_check(machine, capsys):
    found = by_name(doctor.checks())
    assert list(found) == ["python", "platform", "mlx", "blas", "kernel", "sandbox", "chromium", "gpu"]
    assert all(check.status in ("ok", "info") for check in found.values()), found
    assert "150 GFLOP/s" in found["blas"].detail
    status, out = doctor_says(capsys)
    assert status == 0 and "The course can run here." in out and "fix" not in out.split("\n\n")[0]


@pytest.mark.parametrize("change, check, status, fix", [
    # the course cannot run: exit status 1
    (lambda m, mp: mp.setattr(doctor, "_python_version", lambda: (3, 9, 18)),
     "python", "fail", "sudo apt-get install python3 python3-venv"),
    (lambda m, mp: mp.setattr(doctor, "_platform", lambda: ("win32", "amd64")),
     "platform", "fail", "wsl --install -d Ubuntu"),
    (lambda m, mp: mp.setattr(doctor, "_import_mlx", lambda: (None, "ModuleNotFoundError: No module named 'mlx'")),
     "mlx", "fail", "-m pip install 'mlx[cpu]'"),
    (lambda m, mp: mp.setattr(doctor, "_import_mlx", lambda: (
        None, "ImportError: libmlx.so: cannot open shared object file: No such file or directory")),
     "mlx", "fail", "-m pip install 'mlx[cpu]'"),
    # the course runs, slower or without a part: exit status 0
    (lambda m, mp: (mp.setattr(blas, "current_blas", lambda: SLOW),
                    mp.setattr(blas, "candidates", lambda prefix=None: [])),
     "blas", "warn", "sudo apt-get install libopenblas0-pthread"),
    (lambda m, mp: mp.setattr(blas, "current_blas", lambda: SLOW),
     "blas", "warn", f"export LD_PRELOAD={FAST.path}"),
    (lambda m, mp: (mp.setattr(blas, "current_blas", lambda: SLOW), mp.setenv(blas.ENV_VAR, "off")),
     "blas", "warn", "unset MHACOURSE_BLAS"),
    (lambda m, mp: mp.setattr(doctor, "_kernel_spec", lambda name="mhacourse": (None, None)),
     "kernel", "warn", "mhacourse start"),
    (lambda m, mp: mp.setattr(doctor, "_kernel_spec", lambda name="mhacourse": (
        "/k", {"argv": ["/env/bin/python", "-m", "ipykernel_launcher"], "display_name": "mhacourse (MLX)"})),
     "kernel", "warn", "mhacourse start"),
    (lambda m, mp: m.pop("bwrap"),
     "sandbox", "warn", "sudo apt-get install bubblewrap"),
    (lambda m, mp: (mp.setattr(doctor, "_bwrap_runs",
                               lambda path: (False, "bwrap: No permissions to create new namespace")),
                    mp.setattr(doctor, "_read_sysctl",
                               lambda name: {"kernel.apparmor_restrict_unprivileged_userns": "1"}.get(name))),
     "sandbox", "warn", "sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0"),
    (lambda m, mp: (mp.setattr(doctor, "_bwrap_runs",
                               lambda path: (False, "bwrap: setting up uid map: Permission denied")),
                    mp.setattr(doctor, "_read_sysctl",
                               lambda name: {"kernel.unprivileged_userns_clone": "0"}.get(name))),
     "sandbox", "warn", "sudo sysctl -w kernel.unprivileged_userns_clone=1"),
    (lambda m, mp: (mp.setattr(doctor, "_bwrap_runs", lambda path: (False, "bwrap: No space left on device")),
                    mp.setattr(doctor, "_read_sysctl", lambda name: {"user.max_user_namespaces": "0"}.get(name))),
     "sandbox", "warn", "sudo sysctl -w user.max_user_namespaces=15000"),
    (lambda m, mp: m.pop("chromium"),
     "chromium", "info", "sudo apt-get install chromium"),
    (lambda m, mp: mp.setattr(doctor, "_nvidia_gpu", lambda: "GPU 0: NVIDIA H100 80GB HBM3"),
     "gpu", "warn", "-m pip install 'mlx[cuda13]'"),
], ids=["old-python", "windows", "no-mlx", "mlx-without-libmlx", "reference-blas", "blas-not-preloaded",
        "blas-off", "no-kernel", "kernel-without-blas", "no-bwrap", "userns-apparmor", "userns-clone",
        "userns-max-zero", "no-chromium", "gpu-without-cuda-mlx"])
def test_each_missing_piece_is_named_with_the_command_that_fixes_it(machine, monkeypatch, capsys,
                                                                     change, check, status, fix):
    change(machine, monkeypatch)
    found = by_name(doctor.checks())
    assert found[check].status == status, found[check]
    assert fix in found[check].fix
    others = [c for name, c in found.items() if name != check and c.status in ("warn", "fail")]
    assert not others, others                               # only the piece taken away is reported
    code, out = doctor_says(capsys)
    assert code == (1 if status == "fail" else 0)
    assert f"fix ({found[check].needed_for}): {found[check].fix}" in out
    assert ("cannot run here" in out) == (status == "fail")
    if status == "fail":                                     # no BLAS report for a machine that cannot run MLX
        assert "matmul" not in out


def test_mac_on_intel_cannot_run_mlx(machine, monkeypatch):
    monkeypatch.setattr(doctor, "_platform", lambda: ("darwin", "x86_64"))
    found = by_name(doctor.checks())
    assert found["platform"].status == "fail" and "Apple silicon" in found["platform"].detail
    assert found["sandbox"].status == "info" and found["blas"].status == "ok"
    assert not doctor.can_run(doctor.checks())


def test_the_json_report_holds_the_checks(machine, monkeypatch, capsys):
    monkeypatch.setattr(doctor, "_platform", lambda: ("win32", "amd64"))
    assert doctor.main(["--no-compare", "--json", "-"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["can_run"] is False
    assert {"name": "platform", "status": "fail"}.items() <= next(
        c for c in data["checks"] if c["name"] == "platform").items()


def test_the_real_checks_run_here():
    found = by_name(doctor.checks())
    assert found["python"].status == "ok" and found["mlx"].status == "ok"
    if sys.platform.startswith("linux"):
        assert "GFLOP/s" in found["blas"].detail


# --- the one-line note a lesson's first cell prints in a plain Python kernel ---

@linux_only
def test_fast_path_note_speaks_only_on_the_slow_path(monkeypatch, capsys):
    monkeypatch.delenv(blas.ENV_VAR, raising=False)
    monkeypatch.setattr(blas, "candidates", lambda prefix=None: [FAST.path])
    note = blas.fast_path_note(SLOW)
    assert "reference BLAS" in note and "'mhacourse (MLX)'" in note and "\n" not in note
    assert blas.fast_path_note(FAST) is None
    monkeypatch.setattr(blas, "candidates", lambda prefix=None: [])
    assert "sudo apt-get install libopenblas0-pthread" in blas.fast_path_note(SLOW)
    monkeypatch.setenv(blas.ENV_VAR, "off")
    assert blas.fast_path_note(SLOW) is None


@linux_only
def test_advise_prints_once_in_a_kernel_on_the_reference_blas():
    code = "import mhacourse.blas as b; b.advise(); b.advise(); print('done')"
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", blas.ENV_VAR)}
    slow = subprocess.run([sys.executable, "-c", code], env={**env, blas.ENV_VAR: "off"}, capture_output=True,
                          text=True, timeout=120, check=True).stdout
    assert slow == "done\n"                                  # turned off on purpose: nothing to say
    plain = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                           check=True).stdout
    lines = plain.splitlines()
    assert lines[-1] == "done" and len(lines) == 2 and lines[0].startswith("Slow path: MLX runs on the reference BLAS")
    if blas.find_optimised_blas({}):
        fast = subprocess.run([sys.executable, "-c", code], env=blas.preload_env(env), capture_output=True,
                              text=True, timeout=120, check=True).stdout
        assert fast == "done\n"


def test_the_doctor_runs_where_mlx_does_not_import():
    """``import mhacourse`` loads no MLX, so the doctor can say how to install it instead of crashing."""
    import subprocess
    import sys

    probe = ("import sys\n"
             "for name in ('mlx', 'mlx.core', 'mlx.nn'):\n    sys.modules[name] = None\n"
             "from mhacourse.cli import main\nsys.exit(main(['doctor']))\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "MLX does not import" in done.stdout and "pip install" in done.stdout
    assert "Traceback" not in done.stderr
