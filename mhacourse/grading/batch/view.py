"""The course as the sandbox sees it: a folder holding only what a lesson's answers may import.

For the lesson being graded, :func:`build_view` writes a package ``mhacourse``
made of:

* the course modules that earlier lessons teach (each module names its lesson
  in ``__lesson__``), copied file by file, when every course module they
  import is there too;
* for a module of this lesson or a later one that declares ``__given__``, a
  stand-in holding only those constants (lesson 08's notebook uses
  ``capstone.VOCAB_SIZE``, not the capstone's model);
* a generated ``mhacourse/__init__.py`` that exports only the names whose
  module is there;
* stand-ins for ``mhacourse.grading`` (``check`` computes nothing) and
  ``mhacourse.viz`` (nothing is drawn), and the harness itself
  (``grading/sandbox``: harness, drivers, codec).

Nothing else of the package is in the view: not the checks, the references,
the hidden cases, the policy, the solutions, nor this lesson's implementation.
What is not in the sandbox's file system cannot be imported, called, patched
around or laundered.
"""

import ast
import atexit
import shutil
import tempfile
from functools import cache
from pathlib import Path

import mhacourse

__all__ = ["build_view", "course_modules", "bound_modules", "PACKAGE_DIR"]

PACKAGE_DIR = Path(mhacourse.__file__).resolve().parent
_SANDBOX_DIR = Path(__file__).resolve().parents[1] / "sandbox"
_HARNESS_FILES = ("__init__.py", "harness.py", "drivers.py", "codec.py")
_NEVER = ("grading", "viz")  # bound as stand-ins only


def _literal(tree, name):
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            try:
                return ast.literal_eval(node.value)
            except ValueError:
                return None
    return None


def _course_imports(tree, module_name):
    """The ``mhacourse`` modules ``tree`` imports (relative imports resolved against ``module_name``)."""
    package = module_name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "mhacourse"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(base)
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if target.split(".")[0] != "mhacourse":
                continue
            found.add(target)
            found |= {f"{target}.{alias.name}" for alias in node.names}  # `from . import masks`
    return found


@cache
def course_modules():
    """``{module name: {"path", "lesson", "given", "imports"}}`` of every module that names its lesson."""
    modules = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        relative = path.relative_to(PACKAGE_DIR)
        if relative.parts[0] in _NEVER:
            continue
        name = ".".join(("mhacourse", *relative.with_suffix("").parts))
        tree = ast.parse(path.read_text(encoding="utf-8"))
        lesson = _literal(tree, "__lesson__")
        if lesson is None:
            continue
        modules[name] = {"path": path, "lesson": str(lesson), "given": tuple(_literal(tree, "__given__") or ()),
                         "imports": _course_imports(tree, name)}
    return modules


def bound_modules(lesson, excluded=frozenset()):
    """The course modules a submission of ``lesson`` may import: taught earlier, none in ``excluded``
    (those holding an implementation of this lesson's exercises), with all they import."""
    modules = course_modules()
    bound = {name for name, info in modules.items() if info["lesson"] < lesson and name not in excluded}
    packages = {"mhacourse", "mhacourse.attention"}
    while True:
        kept = {name for name in bound
                if all(dep in bound or dep in packages or dep not in modules and not _is_module(dep)
                       for dep in modules[name]["imports"])}
        if kept == bound:
            return bound
        bound = kept


def _is_module(dotted):
    relative = dotted.split(".")[1:]
    return (PACKAGE_DIR.joinpath(*relative).with_suffix(".py")).is_file()


_ROOT = []


def _root():
    if not _ROOT:
        _ROOT.append(Path(tempfile.mkdtemp(prefix="mhacourse-views-")))
        atexit.register(shutil.rmtree, _ROOT[0], ignore_errors=True)
    return _ROOT[0]


@cache
def build_view(lesson, excluded=frozenset()):
    """Write (once per process) the view of the course for ``lesson``; return the folder to put on
    ``PYTHONPATH`` (it holds the package ``mhacourse``).

    Args:
        lesson (str): Two digits.
        excluded (frozenset[str]): Modules never bound for this lesson (they implement its exercises).
    """
    folder = _root() / f"lesson-{lesson}-{len(excluded)}-{abs(hash(excluded)) % 10**8}"
    shutil.rmtree(folder, ignore_errors=True)  # what a failed earlier build left
    package = folder / "mhacourse"
    (package / "attention").mkdir(parents=True)
    (package / "grading" / "sandbox").mkdir(parents=True)
    (package / "viz").mkdir(parents=True)
    modules, bound = course_modules(), bound_modules(lesson, excluded)
    for name in sorted(bound):
        target = package.joinpath(*name.split(".")[1:]).with_suffix(".py")
        shutil.copyfile(modules[name]["path"], target)
    for name, info in sorted(modules.items()):
        if name not in bound and info["given"]:
            target = package.joinpath(*name.split(".")[1:]).with_suffix(".py")
            target.write_text(_given_stub(name, info, lesson), encoding="utf-8")
    (package / "attention" / "__init__.py").write_text(
        '"""The attention stages of the lessons before this one."""\n', encoding="utf-8")
    (package / "__init__.py").write_text(_package_init(bound, lesson), encoding="utf-8")
    for file_name in _HARNESS_FILES:
        shutil.copyfile(_SANDBOX_DIR / file_name, package / "grading" / "sandbox" / file_name)
    shutil.copyfile(_SANDBOX_DIR / "shims" / "grading.py", package / "grading" / "__init__.py")
    for target in ("__init__.py", "reference.py"):
        shutil.copyfile(_SANDBOX_DIR / "shims" / "viz.py", package / "viz" / target)
    for path in folder.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    folder.chmod(0o755)
    return folder


def _unavailable(lesson):
    return (f"is not available while a lesson {lesson} notebook is graded (only the course code of earlier "
            "lessons is)")


def _given_stub(name, info, lesson):
    import importlib

    real = importlib.import_module(name)
    lines = [f'"""{name} while lesson {lesson} is graded: only the constants its notebook may use."""', ""]
    for constant in info["given"]:
        value = getattr(real, constant)
        if not isinstance(value, (int, float, str, bool, tuple)):
            raise TypeError(f"{name}.__given__ may name constants only, not {constant} ({type(value).__name__})")
        lines.append(f"{constant} = {value!r}")
    lines += ["", "", "def __getattr__(name):",
              f"    raise AttributeError(f\"{name}.{{name}} {_unavailable(lesson)}\")", ""]
    return "\n".join(lines)


def _package_init(bound, lesson):
    exports = {}
    for export in getattr(mhacourse, "__all__", []):
        value = getattr(mhacourse, export, None)
        if value is None:
            continue
        module = value.__name__ if hasattr(value, "__path__") or type(value).__name__ == "module" else getattr(
            value, "__module__", "")
        if module in bound:
            exports[export] = module
    return "\n".join([
        f'"""mhacourse as a lesson {lesson} submission sees it while graded: the stages of earlier lessons."""',
        "",
        "import importlib",
        "",
        f"__version__ = {mhacourse.__version__!r}",
        f"_EXPORTS = {exports!r}",
        "",
        "",
        "def __getattr__(name):",
        "    if name == \"check\":",
        "        from .grading import check",
        "",
        "        return check",
        "    if name in _EXPORTS:",
        "        module = importlib.import_module(_EXPORTS[name])",
        "        return module if module.__name__.endswith('.' + name) else getattr(module, name)",
        f"    raise AttributeError(f\"mhacourse.{{name}} {_unavailable(lesson)}\")",
        "",
    ])
