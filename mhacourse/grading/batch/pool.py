"""Grading many submissions, ``--jobs`` at a time; each report is handed on as it finishes.
"""

import secrets
import sys
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context

from .report import _failed_report, grade_submission


def grade_many(paths, *, jobs=1, timeout=60, lesson=None, progress=None, secret=None, sandbox=True,
               on_report=None, done=None):
    """Grade several notebooks, ``jobs`` at a time, in the order given.

    Args:
        paths (list): the notebooks.
        jobs (int): worker processes. Default: ``1``.
        timeout (float): seconds per cell. Default: ``60``.
        lesson (str, optional): grade every notebook as this lesson.
        progress (bool, optional): show a progress bar; None shows it on a terminal.
        secret (str, optional): the run's secret; default: a fresh one for this call.
        sandbox (bool): see :func:`grade_submission`.
        on_report (callable, optional): ``(index, report)``, called as each
            notebook finishes (the command line writes results as they come).
        done (dict, optional): ``{index: report}`` already graded (``--resume``).

    Returns:
        list(dict): one report per notebook, in the order of ``paths``; on
        Ctrl-C, ``None`` for those not graded (then :class:`Interrupted` is raised
        with the list).

    Raises:
        ValueError: for bad arguments.
        RuntimeError: when ``sandbox`` is true and bwrap cannot run here.
    """
    from tqdm import tqdm

    from mhacourse.grading.batch import isolation

    if not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a positive integer, got {jobs!r}")
    if not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    if sandbox and not isolation.bwrap_available():
        raise RuntimeError(isolation.NO_BWRAP)
    options = {"timeout": timeout, "lesson": lesson, "secret": secret or secrets.token_hex(16), "sandbox": sandbox}
    reports = [None] * len(paths)
    for index, report in (done or {}).items():
        reports[index] = report
    todo = [index for index in range(len(paths)) if reports[index] is None]

    def finished(index, report):
        reports[index] = report
        bar.update()
        if on_report is not None:
            on_report(index, report)

    bar = tqdm(
        total=len(todo),
        unit="nb",
        desc="grading",
        disable=(not sys.stderr.isatty()) if progress is None else not progress,
    )
    try:
        with bar:
            if jobs == 1 or len(todo) <= 1:
                for index in todo:
                    finished(index, _grade_safely(paths[index], options))
            else:
                _grade_in_pool(paths, todo, options, jobs, finished)
    except KeyboardInterrupt:
        raise Interrupted(reports) from None
    return reports


class Interrupted(KeyboardInterrupt):
    """Grading was stopped (Ctrl-C); ``reports`` holds what finished (``None`` elsewhere)."""

    def __init__(self, reports):
        super().__init__("interrupted")
        self.reports = reports


def _grade_in_pool(paths, todo, options, jobs, finished):
    """Grade in worker processes; if a worker dies, the rest is graded again in a fresh pool."""
    broken = Counter()
    todo = list(todo)
    while todo:
        with ProcessPoolExecutor(max_workers=min(jobs, len(todo)), mp_context=get_context("spawn")) as pool:
            futures = {pool.submit(_grade_safely, paths[index], options): index for index in todo}
            lost = []
            for future in as_completed(futures):
                index = futures[future]
                try:
                    report = future.result()
                except BrokenProcessPool as error:
                    broken[index] += 1
                    if broken[index] < 2:
                        lost.append(index)
                        continue
                    report = _failed_report(paths[index], error)
                except Exception as error:  # noqa: BLE001
                    report = _failed_report(paths[index], error)
                finished(index, report)
        todo = sorted(lost)


def _grade_safely(path, options):
    try:
        return grade_submission(path, **options)
    except Exception as error:  # noqa: BLE001
        return _failed_report(path, error)
