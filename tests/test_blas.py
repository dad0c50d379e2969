"""The BLAS finder: which library MLX calls, and the switch that preloads a fast one."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mhacourse import blas

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="LD_PRELOAD is Linux-only")

REPORT = "import json, mhacourse.blas as b; print(json.dumps([b.current_blas().as_dict(), b.mapped_libraries()]))"


def child_report(env):
    """Run a fresh Python with ``env`` and return (current_blas dict, mapped libraries)."""
    done = subprocess.run([sys.executable, "-c", REPORT], env=env, capture_output=True, text=True,
                          timeout=120, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", blas.ENV_VAR)}
    env.update(extra)
    return env


def bundled_blas():
    """The reference BLAS that the mlx-cpu wheel ships (what MLX uses by default)."""
    info = child_report(clean_env(**{blas.ENV_VAR: "off"}))[0]
    return info["path"]


def test_setting_reads_the_environment_variable():
    assert blas.setting({}) == "auto"
    assert blas.setting({blas.ENV_VAR: "auto"}) == "auto"
    for off in ("off", "OFF", "0", "no", "false", "none"):
        assert blas.setting({blas.ENV_VAR: off}) == "off"
    assert blas.setting({blas.ENV_VAR: "/some/lib.so"}) == "/some/lib.so"


@linux_only
def test_find_honours_off_path_and_auto(tmp_path):
    assert blas.find_optimised_blas({blas.ENV_VAR: "off"}) is None
    fake = tmp_path / "libblas.so.3"
    fake.write_bytes(b"")
    assert blas.find_optimised_blas({blas.ENV_VAR: str(fake)}) == str(fake)
    with pytest.raises(ValueError, match=blas.ENV_VAR):
        blas.find_optimised_blas({blas.ENV_VAR: str(tmp_path / "missing.so")})
    found = blas.candidates()
    assert blas.find_optimised_blas({}) == (found[0] if found else None)
    assert all(Path(path).is_file() for path in found)


def test_candidates_prefer_mkl_from_the_environment(tmp_path):
    (tmp_path / "lib").mkdir()
    mkl = tmp_path / "lib" / "libmkl_rt.so.2"
    mkl.write_bytes(b"")
    assert blas.candidates(prefix=str(tmp_path))[0] == str(mkl)


@linux_only
def test_preload_env_adds_once_and_off_removes(tmp_path):
    fake = str(tmp_path / "libopenblas.so.0")
    Path(fake).write_bytes(b"")
    env = blas.preload_env({blas.ENV_VAR: fake, "LD_PRELOAD": "/other.so"})
    assert env["LD_PRELOAD"] == f"{fake}:/other.so"
    again = blas.preload_env(env)
    assert again["LD_PRELOAD"] == env["LD_PRELOAD"]

    library = blas.find_optimised_blas({})
    if library is None:
        pytest.skip("no optimised BLAS installed here")
    off = blas.preload_env({blas.ENV_VAR: "off", "LD_PRELOAD": f"{library}:/other.so"})
    assert off["LD_PRELOAD"] == "/other.so"
    assert "LD_PRELOAD" not in blas.preload_env({blas.ENV_VAR: "off", "LD_PRELOAD": library})


def test_classify_names_the_implementations():
    assert blas.classify("/x/site-packages/mlx_cpu.libs/libblas-bd8a282c.so.3.10.0") == "reference"
    assert blas.classify("/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3") == "OpenBLAS"
    assert blas.classify("/venv/lib/libmkl_rt.so.2") == "MKL"
    assert blas.classify("/usr/lib/libblis.so.4") == "BLIS"
    assert blas.classify("/opt/libfoo.so") == "unknown"


@linux_only
def test_reports_the_bundled_reference_blas_without_preload():
    info, mapped = child_report(clean_env(**{blas.ENV_VAR: "off"}))
    assert info["name"] == "reference" and not info["optimised"] and not info["preloaded"]
    assert Path(info["path"]).resolve() in {Path(path).resolve() for path in mapped}


@linux_only
def test_reports_whatever_ld_preload_puts_first():
    # Preloading MLX's own BLAS needs nothing installed and must be reported as preloaded.
    library = bundled_blas()
    info, _ = child_report(clean_env(LD_PRELOAD=library))
    assert info["preloaded"] and os.path.samefile(info["path"], library)


@linux_only
def test_reports_the_optimised_blas_when_preloaded_and_not_when_off():
    library = blas.find_optimised_blas({})
    if library is None:
        pytest.skip("no optimised BLAS installed here (apt-get install libopenblas0-pthread)")
    info, mapped = child_report(blas.preload_env(clean_env()))
    assert info["optimised"] and info["preloaded"] and info["path"] == library
    assert library in mapped
    # The exec wrapper with MHACOURSE_BLAS=off takes it out again, even when inherited.
    done = subprocess.run(
        [sys.executable, blas.__file__, "exec", "--", sys.executable, "-c", REPORT],
        env=clean_env(LD_PRELOAD=library, **{blas.ENV_VAR: "off"}),
        capture_output=True, text=True, timeout=120, check=True)
    info_off, mapped_off = json.loads(done.stdout.strip().splitlines()[-1])
    assert info_off["name"] == "reference" and library not in mapped_off


@linux_only
def test_script_commands(tmp_path):
    run = lambda *args, **env: subprocess.run(
        [sys.executable, blas.__file__, *args], env=clean_env(**env),
        capture_output=True, text=True, timeout=60)
    assert run("path", **{blas.ENV_VAR: "off"}).stdout == ""
    library = blas.find_optimised_blas({})
    assert run("path").stdout.strip() == (library or "")
    assert run("exec").returncode != 0
    assert run("bogus").returncode == 2

    kernel = tmp_path / "kernel.json"
    kernel.write_text(json.dumps({"argv": ["/py", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                                  "display_name": "x", "language": "python"}))
    assert run("kernelspec", str(tmp_path)).returncode == 0
    argv = json.loads(kernel.read_text())["argv"]
    assert argv[:4] == ["/py", blas.__file__, "exec", "--"]
    assert argv[4:] == ["/py", "-m", "ipykernel_launcher", "-f", "{connection_file}"]


COURSE_ROOT = Path(__file__).resolve().parents[1]
FIRST_CELL_NOTEBOOKS = sorted(
    [*COURSE_ROOT.glob("notebooks/0*.ipynb"), COURSE_ROOT / "notebooks" / "demo_attention_explorer.ipynb",
     *COURSE_ROOT.glob("exercise_sources/*.ipynb"), *COURSE_ROOT.glob("exercises/*.ipynb"),
     *COURSE_ROOT.glob("solutions/*.ipynb")])


@pytest.mark.parametrize(
    "path", FIRST_CELL_NOTEBOOKS, ids=[str(p.relative_to(COURSE_ROOT)) for p in FIRST_CELL_NOTEBOOKS]
)
def test_every_notebooks_first_code_cell_gives_the_fast_path_note(path):
    import ast

    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    first = "".join(next(c for c in cells if c["cell_type"] == "code")["source"])
    tree = ast.parse(first)
    assert any(isinstance(n, ast.ImportFrom) and n.module == "mhacourse.blas" and n.names[0].name == "advise"
               for n in tree.body), first[:200]
    assert any(isinstance(n, ast.Expr) and ast.unparse(n.value) == "advise()" for n in tree.body), first[:200]


def test_the_graders_sandbox_can_import_advise():
    """The exercises' first cell imports mhacourse.blas: the graded view of every lesson holds it."""
    from mhacourse.grading.batch.view import bound_modules

    for lesson in ("01", "05", "08"):
        assert "mhacourse.blas" in bound_modules(lesson)
