"""The compute half of checking: call the answer on every call's inputs and keep what came back.

Nothing is decided here: each call gives an :class:`~.exercise.Outcome`, an
output or an error descriptor. ``check()`` computes in the notebook's
process; ``mhacourse grade`` computes inside the sandbox through the same
drivers and reads the outcomes back as plain data.
"""

import copy
import os

import mlx.core as mx
import numpy as np

from .exercise import AnswerProblem, Call, Case, Outcome, _descriptor, error_descriptor
from .runner import run_with_time_limit

__all__ = ["calls_for", "compute", "compute_call", "validation_problem", "DEFAULT_TIME_LIMIT", "PROPERTY_SEED"]

PROPERTY_SEED = 0
"""Seed of the properties' inputs in ``check()`` (the grader draws its own)."""

DEFAULT_TIME_LIMIT = float(os.environ.get("MHACOURSE_CHECK_TIME_LIMIT", 10.0))
"""Seconds each case may run before it fails as too slow."""


def calls_for(exercise, rng=None):
    """The calls the answer gets: the visible cases, then (given ``rng``) hidden ones and properties.

    Args:
        exercise (Exercise): The exercise.
        rng (numpy.random.Generator, optional): The grader's secret-seeded
            generator; ``None`` (``check()``) gives the visible cases and the
            properties on inputs of a fixed seed.
    """
    calls = [Call(case.name, case) for case in exercise.cases]
    if rng is not None and exercise.hidden_cases is not None:
        for number, case in enumerate(exercise.hidden_cases(rng), 1):
            calls.append(Call(f"hidden case {number}", case, hidden=True))
    for prop in exercise.properties or []:
        prop_rng = rng if rng is not None else np.random.default_rng(PROPERTY_SEED)
        for number, inputs in enumerate(prop.calls(prop_rng), 1):
            calls.append(Call(f"{prop.name} {number}", Case(f"{prop.name} {number}", _frozen(inputs)),
                              hidden=True, group=prop.name))
    return calls


def _frozen(inputs):
    """A ``Case.inputs`` that rebuilds ``inputs`` (a fresh copy each time)."""
    return lambda: copy.deepcopy(inputs) if not callable(inputs) else inputs()


def compute_call(exercise, answer, make_inputs, time_limit, prepare=None):
    """Call ``answer`` once on fresh inputs; never raises.

    Args:
        make_inputs (callable): Returns the inputs (as ``Case.inputs()``); it is
            called in the thread that runs the answer (MLX streams are per thread).
        prepare (callable, optional): ``inputs -> extra``; default ``exercise.prepare``.

    Returns:
        Outcome: the evaluated output, or an error descriptor.
    """
    prepare = prepare or exercise.prepare

    def call():
        inputs = make_inputs()
        return exercise.run_given(answer, inputs, prepare(inputs))

    mx.reset_peak_memory()
    base = mx.get_active_memory()
    run = run_with_time_limit(call, time_limit)
    if run.timed_out:
        return Outcome(error=error_descriptor("timeout"), seconds=run.seconds)
    if run.error is not None:
        return Outcome(error=_descriptor(run.error), seconds=run.seconds)
    return Outcome(value=run.value, seconds=run.seconds, peak=max(0, int(mx.get_peak_memory() - base)))


def validation_problem(exercise, answer):
    """The descriptor of why ``answer`` is not an answer at all, or ``None``."""
    try:
        exercise.validate(answer)
    except AnswerProblem as problem:
        return _descriptor(problem)
    return None


def compute(exercise, answer, calls, time_limit, prepare=None):
    """The compute half: call ``answer`` on every call's inputs.

    Stops a group's remaining calls after a timeout or ``NotImplementedError``
    (a timed-out call may still be running in the background).

    Args:
        prepare (callable, optional): ``inputs -> extra``; default
            ``exercise.prepare``.

    Returns:
        list[Outcome or None]: per call (``None`` where it was skipped).
    """
    outcomes, stopped = [], set()
    for call in calls:
        if call.group in stopped or "*" in stopped:
            outcomes.append(None)
            continue
        outcome = compute_call(exercise, answer, call.case.inputs, time_limit, prepare)
        outcomes.append(outcome)
        if outcome.error and outcome.error["kind"] in ("timeout", "killed"):
            stopped.add("*")
        elif outcome.error and outcome.error["kind"] == "not_implemented":
            stopped.add(call.group)
    return outcomes
