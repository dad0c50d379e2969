"""The registry collects the exercises that lesson files declare; it declares nothing itself.

Built-in exercises come from :mod:`mhacourse.grading.lessons` (one module per
lesson, each with a list ``EXERCISES``). An instructor adds exercises without
editing the package: a *course folder* of their own holds an exercise source
notebook (the same ``### BEGIN SOLUTION`` markers as ``exercise_sources/``)
and a Python file whose ``EXERCISES`` list declares its exercises with the same
API (:mod:`mhacourse.grading.exercise`). Name the folder with
``MHACOURSE_COURSE`` (several separated by ``:``), ``mhacourse grade --course
DIR`` / ``build-exercises --course DIR``, or :func:`add_course`; or ship it in
a package with an entry point in the group ``mhacourse.exercises`` whose value
is a module with ``EXERCISES``. ``check()``, ``build-exercises``, ``grade``
and the exports then treat them like the built-in ones.
"""

import importlib
import importlib.util
import os
import sys
from pathlib import Path

__all__ = ["exercise_ids", "get_exercise", "exercises", "numbers", "number_of", "add_course", "course_folders",
           "COURSE_ENV"]

COURSE_ENV = "MHACOURSE_COURSE"
_LESSONS = ("lesson01", "lesson02", "lesson03", "lesson04", "lesson05", "lesson06", "lesson07", "lesson08",
            "lesson09")
_EXTRA_FOLDERS = []
_CACHE = {}


def add_course(folder):
    """Add an instructor's course folder (its ``*.py`` files declaring ``EXERCISES``) to the registry."""
    folder = Path(folder).resolve()
    if not folder.is_dir():
        raise ValueError(f"--course must be a folder holding exercise files (*.py), got {str(folder)!r}")
    if folder not in _EXTRA_FOLDERS:
        _EXTRA_FOLDERS.append(folder)
        _CACHE.clear()


def course_folders():
    """The instructor's course folders in use: ``MHACOURSE_COURSE``, then those added."""
    named = [Path(p).resolve() for p in os.environ.get(COURSE_ENV, "").split(os.pathsep) if p.strip()]
    return list(dict.fromkeys(named + _EXTRA_FOLDERS))


def _module_from_file(path):
    name = f"mhacourse_course_{abs(hash(str(path))) % 10**10}_{path.stem}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _declared(module, where):
    found = getattr(module, "EXERCISES", None)
    if not isinstance(found, (list, tuple)):
        raise ValueError(f"{where} declares no EXERCISES list")
    return list(found)


def _collect():
    from .exercise import Exercise

    collected = []
    for name in _LESSONS:
        module = importlib.import_module(f".lessons.{name}", __package__)
        collected += _declared(module, f"mhacourse.grading.lessons.{name}")
    for folder in course_folders():
        for path in sorted(folder.glob("*.py")):
            collected += _declared(_module_from_file(path), str(path))
    try:
        from importlib.metadata import entry_points

        for entry in entry_points(group="mhacourse.exercises"):
            collected += _declared(entry.load(), f"the entry point {entry.name}")
    except Exception as error:  # noqa: BLE001 - a broken third-party entry point names itself
        raise ValueError(f"an entry point in 'mhacourse.exercises' failed to load: {error}") from None
    registry = {}
    for exercise in collected:
        if not isinstance(exercise, Exercise):
            raise ValueError(f"EXERCISES may hold only Exercise objects, got {type(exercise).__name__}")
        if exercise.id in registry:
            raise ValueError(f"exercise id {exercise.id!r} is declared twice.")
        registry[exercise.id] = exercise
    return registry


def exercises():
    """``{id: Exercise}`` of every exercise, built-in and added, in lesson order, and within a lesson
    in the order of its exercise notebook (each exercise's ``number`` set from its heading there,
    :mod:`.numbering`)."""

    return _collected()[0]


def numbers():
    """``{exercise id: "NN.M"}``: each exercise's number, from its exercise notebook's heading."""
    return dict(_collected()[1])


def number_of(exercise_id):
    """The exercise's number (``"02.3"``), or ``None`` when no source notebook introduces it."""
    return _collected()[1].get(exercise_id)


def _collected():
    from .numbering import numbers_for, source_folders

    key = tuple(course_folders())
    if key not in _CACHE:
        _CACHE.clear()
        registry = _collect()
        found = numbers_for(registry.values(), source_folders(key))
        order = list(registry)

        def position(item):
            number = found.get(item[0]) or "99.999"
            return item[1].lesson, tuple(int(p) for p in number.split(".")), order.index(item[0])

        _CACHE[key] = (dict(sorted(registry.items(), key=position)), found)
    return _CACHE[key]


def exercise_ids():
    """Every exercise id, in lesson order (within a lesson, in the order the lesson declares them)."""
    return list(exercises())


def get_exercise(exercise_id):
    """The :class:`~mhacourse.grading.exercise.Exercise` declared as ``exercise_id`` (``KeyError`` if none)."""
    found = exercises()
    if exercise_id not in found:
        raise KeyError(f"unknown exercise id {exercise_id!r}; known ids: {', '.join(found)}")
    return found[exercise_id]
