"""Where the course's notebooks are: the checkout's folders, or the copies inside the wheel.

The committed folders ``notebooks/``, ``exercises/``, ``solutions/`` and
``exercise_sources/`` are the only source of the course's notebooks. Building a
wheel (or an sdist, then a wheel from it) copies them into the package as
``mhacourse/_course/<kind>/`` (see ``setup.py``), so an installed wheel carries
the whole course. Everything in the package that needs a course folder asks
:func:`course_dir`; nothing looks in the current folder.

>>> from mhacourse.course_files import course_dir
>>> sorted(p.name for p in course_dir("exercises").glob("*.ipynb"))[:1]   # doctest: +SKIP
['01_attention_one_head.ipynb']
"""

from pathlib import Path

__all__ = ["KINDS", "BUNDLE_DIR", "course_dir", "checkout_root", "bundle_root"]

#: The course folders, as named in the checkout and inside the wheel.
KINDS = ("notebooks", "exercises", "solutions", "exercise_sources")

#: The folder, inside the package, that holds the wheel's copies.
BUNDLE_DIR = "_course"

_PACKAGE = Path(__file__).resolve().parent


def checkout_root():
    """The source checkout this package was imported from, or None.

    A checkout (or an editable install of one) is recognised by the
    ``pyproject.toml`` beside the ``mhacourse`` package; an installed wheel
    has none there.
    """
    root = _PACKAGE.parent
    return root if (root / "pyproject.toml").is_file() and (root / "mhacourse").resolve() == _PACKAGE else None


def bundle_root():
    """The folder holding the wheel's copies of the course (it may not exist)."""
    return _PACKAGE / BUNDLE_DIR


def course_dir(kind: str) -> Path:
    """The folder that holds one kind of course notebook.

    From a checkout (or an editable install) it is the checkout's own folder,
    so edits to the committed notebooks show at once; from an installed wheel
    it is the copy bundled in the package.

    Args:
        kind (str): ``"notebooks"`` (the lessons), ``"exercises"``,
            ``"solutions"`` or ``"exercise_sources"``.

    Returns:
        pathlib.Path: an existing folder (absolute).

    Raises:
        ValueError: for any other ``kind``.
        FileNotFoundError: when neither the checkout nor the package holds it.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(map(repr, KINDS))}, got {kind!r}")
    tried = []
    root = checkout_root()
    if root is not None:
        tried.append(root / kind)
    tried.append(bundle_root() / kind)
    for folder in tried:
        if folder.is_dir():
            return folder
    raise FileNotFoundError(
        f"the course's {kind}/ folder is missing: looked in {' and '.join(str(p) for p in tried)}. "
        "Install mhacourse from a wheel built with its notebooks (`pip wheel .` in a checkout), "
        "or run it from a full checkout."
    )
