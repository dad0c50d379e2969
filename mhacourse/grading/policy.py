"""What an answer may use, enforced the same way by ``check()`` and ``mhacourse grade``.

The rules (also in the README):

* An answer may use the course's code from earlier lessons.
* It may not use the course's implementation of its own exercise or of any
  other exercise of the same lesson, nor anything of the grading package,
  whether it calls it, wraps it, ``functools.partial``\\ s it, ``mx.compile``\\ s
  it or copies its code.
* An exercise may forbid named functions (``Exercise.forbidden``), e.g.
  ``("mx.softmax",)``; ``"mx.fast.*"`` names a whole namespace.

Two kinds of evidence, both turned into violations by :func:`violations`:

* :func:`inspect_answer` walks what the answer can reach (its code, nested
  code, closures, defaults, ``functools.partial``, compiled functions, classes
  and their bases, and the globals and ``module.attribute`` chains its code
  names) and describes it as plain data: the code objects (bytecode,
  constants, names) and the dotted names of known objects. A copy of course
  code has the course's bytecode and constants, whatever it is called.
* :class:`Recorder` (in ``check()``) and the grader's stubs (installed in the
  sandbox before any student code runs) note calls into forbidden code made
  from the learner's code while the answer runs.
"""

import dis
import functools
import gc
import hashlib
import importlib
import os
import sys
import threading
import types

import mlx.core as mx

__all__ = ["inspect_answer", "violations", "Recorder", "code_digest", "describe_code", "course_code",
           "forbidden_names", "known_objects", "CALL_LOG"]

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # .../mhacourse
_GRADING_DIR = os.path.dirname(os.path.abspath(__file__))
_MLX_DIR = os.path.dirname(os.path.abspath(mx.__file__))
_MIN_CODE_BYTES = 24  # smaller code objects (one-liners) are too generic to call a copy
_NAMESPACES = {"mx": "mlx.core", "nn": "mlx.nn", "mx.fast": "mlx.core.fast", "np": "numpy"}
CALL_LOG = []  # (exercise id or None, what) appended by the sandbox's stubs
# Taken when this module is imported (in the sandbox: before any learner code runs), so that an
# answer that replaces sys.setprofile by a no-op does not switch the recorder off.
_SET_PROFILE, _GET_PROFILE, _SET_THREAD_PROFILE = sys.setprofile, sys.getprofile, threading.setprofile


# ---------------------------------------------------------------------------
# Code fingerprints


def describe_code(code):
    """A plain-data description of a code object (no file names or line numbers).

    Docstrings stay in: the course's solutions are written like the course's
    code, so only a copy that keeps the text as well as the bytecode, the names
    and the local names counts as copied (see the README's threat model).
    """
    consts = []
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            consts.append({"code": describe_code(const)})
        else:
            consts.append(_plain_const(const))
    return {"name": code.co_name, "bytes": code.co_code.hex(), "consts": consts,
            "names": list(code.co_names), "varnames": list(code.co_varnames),
            "argcount": code.co_argcount, "kwonly": code.co_kwonlyargcount}


def _plain_const(const):
    if const is None or isinstance(const, (bool, int, float, str)):
        return const if not (isinstance(const, float) and const != const) else "nan"
    if isinstance(const, (tuple, frozenset)):
        return [_plain_const(c) for c in (sorted(const, key=repr) if isinstance(const, frozenset) else const)]
    if isinstance(const, bytes):
        return const.hex()
    return repr(type(const).__name__)


def code_digest(description):
    """A digest of a :func:`describe_code` description (nested code by digest)."""
    def canonical(value):
        if isinstance(value, dict) and set(value) == {"code"}:
            return ["code", code_digest(value["code"])]
        if isinstance(value, list):
            return [canonical(v) for v in value]
        return value

    parts = [description.get("bytes"), canonical(description.get("consts")), description.get("names"),
             description.get("varnames"), description.get("argcount"), description.get("kwonly")]
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:32]


def _code_size(description):
    return len(str(description.get("bytes", ""))) // 2


def _all_codes(description):
    yield description
    for const in description.get("consts") or []:
        if isinstance(const, dict) and "code" in const:
            yield from _all_codes(const["code"])


# ---------------------------------------------------------------------------
# The course's code and named functions


def _qualname(obj):
    module = getattr(obj, "__module__", None) or ""
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None) or type(obj).__name__
    return f"{module}.{name}" if module else str(name)


def _is_course(obj):
    module = str(getattr(obj, "__module__", "") or "")
    return module == "mhacourse" or module.startswith("mhacourse.")


def _is_grading(obj):
    return str(getattr(obj, "__module__", "") or "").startswith("mhacourse.grading")


def _named_in(code_owner):
    """Course objects named by ``code_owner``'s code (globals and ``module.attr`` chains)."""
    found = []
    for value in _resolved_globals(code_owner):
        if _is_course(value) and not _is_grading(value) and not isinstance(value, types.ModuleType):
            found.append(value)
    return found


def _class_functions(cls):
    out = []
    for value in vars(cls).values():
        if isinstance(value, (staticmethod, classmethod)):
            value = value.__func__
        if isinstance(value, property):
            out += [f for f in (value.fget, value.fset) if f is not None]
        elif isinstance(value, types.FunctionType):
            out.append(value)
    return out


def _own_implementations(exercise):
    """The course objects that implement ``exercise``: its reference, or what its check wrapper calls."""
    found = []
    reference = exercise.reference
    owners = [c for c in reference.__mro__ if _is_course(c)] if isinstance(reference, type) else [reference]
    found += [o for o in owners if _is_course(o) and not _is_grading(o)]
    for owner in [o for o in owners if _is_grading(o)]:
        functions = _class_functions(owner) if isinstance(owner, type) else [owner]
        for function in functions:
            found += _named_in(function)
    return found


def _all_implementations():
    """``[(obj, exercise id, lesson)]`` for every exercise (built-in and from course folders)."""
    from .registry import course_folders

    return _implementations_of(tuple(course_folders()))


@functools.cache
def _implementations_of(folders):
    from .registry import exercises

    return [(obj, exercise.id, exercise.lesson) for exercise in list(exercises().values())
            for obj in _own_implementations(exercise)]


def _implementations(exercise):
    """What ``exercise``'s answer may not use: ``{id(obj): (obj, exercise id)}``.

    Its own implementation, and those of the other exercises of its lesson
    unless an earlier lesson already taught them (the course's
    ``scaled_dot_product_attention`` is lesson 01's, so lesson 05 may use it
    except in the exercise it implements there).
    """
    first_lesson = {}
    for obj, _, lesson in _all_implementations():
        first_lesson[id(obj)] = min(lesson, first_lesson.get(id(obj), lesson))
    found = {}
    for obj, exercise_id, lesson in _all_implementations():
        if exercise_id == exercise.id or (lesson == exercise.lesson and first_lesson[id(obj)] == lesson):
            found.setdefault(id(obj), (obj, exercise_id))
    return found


def course_code(exercise):
    """Digests of every code object of the course's implementations for ``exercise``'s lesson.

    Returns:
        dict: digest -> (what, exercise id), code objects below the size limit left out.
    """
    digests = {}
    given = _given_code(exercise.lesson)
    for obj, exercise_id in _implementations(exercise).values():
        functions = []
        if isinstance(obj, type):
            functions = _class_functions(obj)
        elif isinstance(obj, types.FunctionType):
            functions = [obj]
        for function in functions:
            for description in _all_codes(describe_code(function.__code__)):
                digest = code_digest(description)
                if _code_size(description) >= _MIN_CODE_BYTES and digest not in given:
                    digests.setdefault(digest, (_qualname(obj), exercise_id))
    return digests


@functools.cache
def _given_code(lesson):
    """Digests of the code the lesson's exercise notebook gives the learner (allowed in answers)."""
    import json

    from ..course_files import course_dir

    digests = set()
    try:
        paths = sorted(course_dir("exercises").glob(f"{lesson}_*.ipynb"))
    except FileNotFoundError:
        paths = []
    for path in paths:
        try:
            cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
        except (OSError, ValueError):
            continue
        for cell in cells:
            source = cell.get("source", "")
            source = "".join(source) if isinstance(source, list) else str(source)
            if cell.get("cell_type") != "code":
                continue
            try:
                code = compile(source, "<given>", "exec")
            except SyntaxError:
                continue
            digests |= {code_digest(d) for d in _all_codes(describe_code(code))}
    return frozenset(digests)


def _expand(pattern):
    """What a forbidden pattern names: ``{id(function): (module, attribute, function, dotted name)}``.

    ``"mx.softmax"`` gives ``mlx.core.softmax``; ``"mx.fast.*"`` every function of ``mlx.core.fast``.
    """
    namespace, _, name = pattern.rpartition(".")
    try:
        module = importlib.import_module(_NAMESPACES.get(namespace, namespace))
    except ImportError:
        return {}
    names = [n for n in dir(module) if not n.startswith("_")] if name == "*" else [name]
    out = {}
    for n in names:
        value = getattr(module, n, None)
        if callable(value):
            out[id(value)] = (module, n, value, f"{namespace}.{n}")
    return out


def forbidden_names(exercise):
    """``{id(obj): dotted name}`` of the functions ``exercise.forbidden`` names."""
    out = {}
    for pattern in exercise.forbidden or ():
        out.update({identity: dotted for identity, (_, _, _, dotted) in _expand(pattern).items()})
    return out


def known_objects(exercise):
    """``{id(obj): (obj, dotted name)}`` of the objects the inspector names when reached."""
    known = {}
    for pattern in exercise.forbidden or ():
        for identity, (_, _, function, dotted) in _expand(pattern).items():
            known[identity] = (function, dotted)
    for identity, (obj, _) in _implementations(exercise).items():
        known[identity] = (obj, _qualname(obj))
    return known


# ---------------------------------------------------------------------------
# Walking what an answer can reach


def _attribute_chains(code):
    """``[["mhacourse", "grading", "get_exercise"], ["x"], ...]``: globals and the attributes read off them."""
    chains, current = [], None
    for instruction in dis.get_instructions(code):
        if instruction.opname in ("LOAD_GLOBAL", "LOAD_NAME", "LOAD_DEREF"):
            current = [instruction.argval]
            chains.append(current)
        elif instruction.opname in ("LOAD_ATTR", "LOAD_METHOD") and current is not None:
            current.append(instruction.argval)
        elif instruction.opname not in ("PRECALL", "CACHE", "PUSH_NULL", "EXTENDED_ARG"):
            current = None
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            chains += _attribute_chains(const)
    return chains


def _resolved_globals(function):
    """Objects reached by the global names and ``name.attr.attr`` chains in ``function``'s code."""
    code = getattr(function, "__code__", None)
    namespace = getattr(function, "__globals__", None)
    if code is None or not isinstance(namespace, dict):
        return []
    out = []
    for chain in _attribute_chains(code):
        if chain[0] not in namespace:
            continue
        value = namespace[chain[0]]
        out.append(value)
        for attribute in chain[1:]:
            try:
                value = inspect_getattr(value, attribute)
            except AttributeError:
                break
            out.append(value)
    return out


def inspect_getattr(value, attribute):
    """``getattr`` without running a learner's ``__getattr__`` or properties: modules and classes only."""
    if isinstance(value, types.ModuleType):
        namespace = getattr(value, "__dict__", {})
        if attribute in namespace:
            return namespace[attribute]
    elif isinstance(value, type):
        for cls in value.__mro__:
            if attribute in vars(cls):
                return vars(cls)[attribute]
    raise AttributeError(attribute)


def inspect_answer(answer, known=None, limit=400):
    """Describe what ``answer`` can reach, as plain data.

    Args:
        answer: The learner's function or class (or anything).
        known (dict, optional): ``{id: (obj, name)}`` of objects to name when
            reached (see :func:`known_objects`).
        limit (int): At most this many objects are visited.

    Returns:
        dict: ``{"codes": [describe_code(...) ...], "names": [dotted names],
        "grading": [qualified names of grading-package objects reached]}``.
    """
    known = known or {}
    seen, codes, names, grading = set(), [], [], []
    stack = [answer]
    while stack and len(seen) < limit:
        obj = stack.pop()
        if id(obj) in seen or obj is None:
            continue
        seen.add(id(obj))
        try:
            if isinstance(obj, (str, bytes, int, float, bool, mx.array)):
                continue
            stub = _stub_name(obj)
            if stub is not None:  # the sandbox's recording stand-in for a forbidden function
                names.append(stub)
                continue
            if id(obj) in known:
                names.append(known[id(obj)][1])
            if _is_grading(obj) and isinstance(obj, (type, types.FunctionType)):
                grading.append(_qualname(obj))
            if _is_course(obj) and _course_file(obj):
                continue  # the course's own code: named above when forbidden, not walked
            stack += _children(obj, codes)
        except BaseException:  # noqa: BLE001 - a learner's object whose attributes raise: keep what was found
            continue
    return {"codes": codes, "names": sorted(set(names)), "grading": sorted(set(grading))}


def _children(obj, codes):
    if isinstance(obj, types.FunctionType):
        codes.append(describe_code(obj.__code__))
        out = [cell.cell_contents for cell in (obj.__closure__ or ()) if _cell_filled(cell)]
        out += list(obj.__defaults__ or ()) + list((obj.__kwdefaults__ or {}).values())
        out += [getattr(obj, "__wrapped__", None)]
        if not _in_library(obj):
            out += _resolved_globals(obj)
        return out
    if isinstance(obj, functools.partial):
        return [obj.func, *obj.args, *obj.keywords.values()]
    if isinstance(obj, (types.MethodType, staticmethod, classmethod)):
        return [obj.__func__, getattr(obj, "__self__", None)]
    if isinstance(obj, property):
        return [obj.fget, obj.fset]
    if isinstance(obj, type):
        if obj.__module__ in ("builtins",) or _in_library(obj):
            return []
        return [*obj.__mro__[1:], *vars(obj).values()]
    if isinstance(obj, (list, tuple, set, frozenset)):
        return list(obj)[:50]
    if isinstance(obj, dict):
        return list(obj.values())[:50]
    if isinstance(obj, types.ModuleType):
        return []
    if type(obj).__name__ == "_gc_func":  # mx.compile(fn)
        return [r for r in gc.get_referents(obj) if callable(r)]
    if callable(obj) and not isinstance(obj, types.BuiltinFunctionType):
        return [type(obj)]
    return []


def _course_file(obj):
    """Whether ``obj``'s code (or, for a class, its module) lives in the course package's files."""
    code = getattr(obj, "__code__", None)
    if code is not None:
        return os.path.abspath(code.co_filename).startswith(_PACKAGE_DIR + os.sep)
    module = sys.modules.get(str(getattr(obj, "__module__", "")))
    return module is not None and os.path.abspath(getattr(module, "__file__", "") or "").startswith(
        _PACKAGE_DIR + os.sep)


def _cell_filled(cell):
    try:
        _ = cell.cell_contents
        return True
    except ValueError:
        return False


def _in_library(obj):
    """Whether ``obj`` is MLX's, NumPy's or the standard library's (not walked further)."""
    module = str(getattr(obj, "__module__", "") or "")
    return module.split(".")[0] in ("mlx", "numpy", "builtins", "functools", "math", "typing", "abc",
                                    "collections", "itertools", "operator")


# ---------------------------------------------------------------------------
# From evidence to violations


def violations(exercise, inspection, recorded=()):
    """The rules ``exercise``'s answer broke, as sentences.

    Args:
        exercise (Exercise): The exercise.
        inspection (dict): :func:`inspect_answer`'s description (from the
            notebook's process or shipped out of the sandbox).
        recorded (iterable[str]): Dotted names of forbidden functions and
            course implementations the answer was seen calling.

    Returns:
        list[str]: e.g. ``["uses mx.softmax (forbidden in softmax)"]``.
    """
    out = []
    inspection = inspection if isinstance(inspection, dict) else {}
    named = {name for name in forbidden_names(exercise).values()}
    implementations = {_qualname(obj): ex_id for obj, ex_id in _implementations(exercise).values()}
    seen_names = [str(n) for n in list(inspection.get("names") or []) + list(recorded or [])]
    for name in sorted(set(seen_names)):
        if name in named:
            out.append(f"uses {name} (forbidden in {exercise.id})")
        elif name in implementations:
            out.append(f"uses the course's {name} (the implementation of {implementations[name]}, "
                       f"lesson {exercise.lesson})")
    grading = inspection.get("grading") or []
    if grading:
        out.append(f"uses the grading package's code ({', '.join(str(g) for g in grading[:3])})")
    digests = course_code(exercise)
    copied = set()
    for description in inspection.get("codes") or []:
        if not isinstance(description, dict):
            continue
        for code in _all_codes(description):
            try:
                if _code_size(code) < _MIN_CODE_BYTES:
                    continue
                digest = code_digest(code)
            except Exception:  # noqa: BLE001 - malformed data from the sandbox
                continue
            if digest in digests:
                copied.add(digests[digest])
    for what, exercise_id in sorted(copied):
        if not any(what in line for line in out):
            out.append(f"contains the code of the course's {what} (the implementation of {exercise_id}, "
                       f"lesson {exercise.lesson})")
    return out


class Recorder:
    """Notes calls into forbidden code while the answer runs in ``check()``.

    Named forbidden functions (C functions such as ``mx.softmax``) are
    replaced in their module for the duration; course implementations are
    noticed by a profile function (``sys.setprofile`` and
    ``threading.setprofile``) when called from the learner's code.

    Attributes:
        calls (list[str]): Dotted names of what was called.
    """

    def __init__(self, exercise):
        self.exercise = exercise
        self.calls = []
        self._patched = []

    def __enter__(self):
        for pattern in self.exercise.forbidden or ():
            for module, attribute, original, dotted in _expand(pattern).values():
                if isinstance(original, type):  # a class stays itself: note when one is built
                    self._patched.append((original, "__init__", vars(original).get("__init__", _INHERITED)))
                    original.__init__ = _recording(original.__init__, dotted, self.calls, frames=2)
                    continue
                self._patched.append((module, attribute, original))
                setattr(module, attribute, _recording(original, dotted, self.calls))
        codes = {}
        for obj, _ in _implementations(self.exercise).values():
            # A class counts when the answer builds one (methods called on layers given as inputs are fine).
            functions = [f for f in _class_functions(obj) if f.__name__ == "__init__"] if isinstance(obj, type) else (
                [obj] if isinstance(obj, types.FunctionType) else [])
            for function in functions:
                if function.__code__ is not _STUB_CODE:  # the sandbox's stubs note their own calls
                    codes[function.__code__] = _qualname(obj)
        self._codes = codes
        self._previous = _GET_PROFILE(), getattr(threading, "_profile_hook", None)
        if codes:
            _SET_PROFILE(self._profile)
            _SET_THREAD_PROFILE(self._profile)
        return self

    def _profile(self, frame, event, arg):
        if self._previous[0] is not None:  # chain a profile function that was already there
            self._previous[0](frame, event, arg)
        if event != "call":
            return
        what = self._codes.get(frame.f_code)
        if what is not None and frame.f_back is not None and _learner_frame(frame.f_back):
            self.calls.append(what)

    def __exit__(self, *exc):
        _SET_PROFILE(self._previous[0])
        _SET_THREAD_PROFILE(self._previous[1])
        for owner, attribute, original in reversed(self._patched):
            if original is _INHERITED:
                delattr(owner, attribute)
            else:
                setattr(owner, attribute, original)
        return False


_INHERITED = object()


def _stub_name(obj):
    """The dotted name a recording stand-in (see :func:`_recording`) stands for, or ``None``."""
    if getattr(obj, "__code__", None) is not _STUB_CODE:
        return None
    cells = dict(zip(obj.__code__.co_freevars, obj.__closure__ or ()))
    try:
        return str(cells["dotted"].cell_contents)
    except (KeyError, ValueError):
        return None


def _learner_frame(frame):
    """Whether ``frame`` runs the learner's code (not the course's, MLX's or the standard library's)."""
    path = os.path.abspath(frame.f_code.co_filename)
    if path.startswith(_PACKAGE_DIR + os.sep) or path.startswith(_MLX_DIR + os.sep):
        return False
    return not path.startswith(os.path.dirname(os.__file__) + os.sep)


def _recording(original, dotted, log, exercise_of=None, frames=1):
    """A stand-in for ``original`` that notes calls made from the learner's code (``frames`` up:
    2 for a class's ``__init__``, called from ``type.__call__`` or a subclass's ``super().__init__``)."""
    def recorded(*args, **kwargs):
        frame = sys._getframe(1)
        if _learner_frame(frame) or (frames > 1 and frame.f_back is not None and _learner_frame(frame.f_back)):
            log.append(dotted if exercise_of is None else (exercise_of(), dotted))
        return original(*args, **kwargs)

    recorded.__name__ = getattr(original, "__name__", "recorded")
    recorded.__doc__ = getattr(original, "__doc__", None)
    return recorded


_STUB_CODE = _recording(print, "print", []).__code__
