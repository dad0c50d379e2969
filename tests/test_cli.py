"""The ``mhacourse`` command line: -v/--verbose and -q/--quiet set what ``logging`` shows on stderr."""

import logging

import pytest

from mhacourse import cli, start

TINY_BENCH = ["bench", "--lengths", "8", "--heads", "2", "--head-dim", "8", "--repeats", "1", "--warmup", "0",
              "--matmul-size", "32", "--impls", "fused"]


@pytest.fixture(autouse=True)
def _restore_logging():
    logger = logging.getLogger("mhacourse")
    level, handlers = logger.level, list(logger.handlers)
    yield
    logger.setLevel(level)
    logger.handlers[:] = handlers


def test_levels():
    assert cli.log_level() == logging.WARNING
    assert cli.log_level(verbose=1) == logging.INFO
    assert cli.log_level(verbose=2) == logging.DEBUG
    assert cli.log_level(quiet=True) == logging.ERROR


def test_verbose_shows_progress_that_the_default_hides_and_the_output_stays(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert cli.main([*TINY_BENCH, "--json", str(out)]) == 0
    default = capsys.readouterr()
    assert "median ms" in default.out and out.is_file()
    assert "wrote" not in default.err and "benchmark took" not in default.err

    for argv in (["-v", *TINY_BENCH, "--json", str(out)], [*TINY_BENCH, "--json", str(out), "--verbose"]):
        assert cli.main(argv) == 0
        verbose = capsys.readouterr()
        assert "median ms" in verbose.out                     # the table is output, not logging
        assert f"mhacourse: wrote {out}" in verbose.err.splitlines()
        assert "mhacourse: benchmark took " in verbose.err


def test_quiet_keeps_errors_and_the_output(tmp_path, capsys):
    work = tmp_path / "work"
    work.mkdir()
    (work / start.MANIFEST).write_text("{not json")
    assert cli.main(["-q", "start", str(work), "--no-kernel"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mhacourse: error: ") and "not a manifest" in err

    assert cli.main([*TINY_BENCH, "-q"]) == 0
    quiet = capsys.readouterr()
    assert "median ms" in quiet.out and quiet.err == ""


def test_quiet_hides_warnings_that_the_default_shows(capsys):
    log = logging.getLogger("mhacourse.test")
    for level, shown in ((cli.log_level(), True), (cli.log_level(quiet=True), False)):
        cli.configure_logging(level)
        log.warning("a slow BLAS")
        log.info("progress")
        err = capsys.readouterr().err
        assert ("mhacourse: warning: a slow BLAS" in err) == shown
        assert "progress" not in err
    cli.configure_logging(logging.INFO)
    cli.configure_logging(logging.INFO)                      # again: one handler, one line per record
    log.info("once")
    assert capsys.readouterr().err == "mhacourse: once\n"


def test_verbose_and_quiet_together_are_refused(capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["-v", "-q", "doctor"])
    assert stop.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
