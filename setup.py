"""Build hook: the wheel carries the course's notebooks as package data.

The committed folders (``notebooks/``, ``exercises/``, ``solutions/``,
``exercise_sources/``) stay the only source. ``build_py`` copies them into the
build as ``mhacourse/_course/<folder>/``, where ``mhacourse.course_files`` finds
them in an installed wheel. An editable install reads the checkout's folders
directly, so nothing is copied for it. ``MANIFEST.in`` puts the folders in the
sdist, so a wheel built from the sdist carries them too.

Everything else about the package is in ``pyproject.toml``.
"""

import os

from setuptools import setup
from setuptools.command.build_py import build_py

COURSE_FOLDERS = ("notebooks", "exercises", "solutions", "exercise_sources")
BUNDLE = os.path.join("mhacourse", "_course")
HERE = os.path.dirname(os.path.abspath(__file__))


def course_files(root=HERE):
    """(source, relative target) for every file the wheel carries; hidden files and checkpoints left out."""
    pairs = []
    for folder in COURSE_FOLDERS:
        source = os.path.join(root, folder)
        if not os.path.isdir(source):
            raise SystemExit(f"setup.py: the course folder {folder}/ is missing from {root}")
        for directory, subdirs, files in os.walk(source):
            subdirs[:] = sorted(d for d in subdirs if not d.startswith((".", "__pycache__")))
            for name in sorted(files):
                if name.startswith(".") or name.endswith((".pyc", ".pyo")):
                    continue
                path = os.path.join(directory, name)
                pairs.append((path, os.path.join(BUNDLE, os.path.relpath(path, root))))
    return pairs


class build_py_with_course(build_py):
    """``build_py`` that also copies the course's notebook folders into the package."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads the checkout's folders
        for source, target in course_files():
            target = os.path.join(self.build_lib, target)
            self.mkpath(os.path.dirname(target))
            self.copy_file(source, target, preserve_mode=False)

    def get_outputs(self, include_bytecode=True):
        outputs = super().get_outputs(include_bytecode)
        if getattr(self, "editable_mode", False):
            return outputs
        return outputs + [os.path.join(self.build_lib, target) for _, target in course_files()]


setup(cmdclass={"build_py": build_py_with_course})
