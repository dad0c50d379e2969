"""Sphinx configuration of the course website (``make site`` -> ``site/``).

Sphinx + MyST-NB + sphinx-book-theme, all from PyPI, nothing fetched at build
time or in the reader's browser (``tests/test_site.py`` blocks every request
outside the site). ``docs/notebooks`` and ``docs/exercises`` are links to the
repository's folders, so the notebooks have one source. Lessons are executed
through a jupyter-cache in ``build/site-cache``: a rebuild reruns only the
notebooks whose code changed.
"""

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE / "_ext"))

project = "mhacourse"
author = "the mhacourse authors"
copyright = "the mhacourse authors, MIT licence"
language = "en"

extensions = ["myst_nb", "mha_site"]
root_doc = "index"
exclude_patterns = ["_build", "_ext", "**/.ipynb_checkpoints", "Thumbs.db", ".DS_Store"]
# MHACOURSE_SITE_ONLY=doc1,doc2: build only these pages (and the index); make test builds a subset.
_only = [d for d in os.environ.get("MHACOURSE_SITE_ONLY", "").split(",") if d]
if _only:
    include_patterns = ["index.md", "install.md", "_static/**"] + [
        d if "." in d else d + ".*" for d in _only
    ]
suppress_warnings = ["mystnb.unknown_mime_type"]
nitpicky = False

# -- MyST and MyST-NB ------------------------------------------------------------------------------
myst_enable_extensions = ["colon_fence", "dollarmath", "deflist"]
myst_heading_anchors = 3
nb_execution_mode = os.environ.get("MHACOURSE_SITE_EXECUTE", "cache")
nb_execution_cache_path = str(ROOT / "build" / "site-cache")
nb_execution_excludepatterns = ["exercises/*"]   # exercise notebooks are shown unsolved, not run
nb_execution_timeout = 600
nb_execution_raise_on_error = True               # a lesson that fails fails the build
nb_execution_show_tb = True
nb_ipywidgets_js = {}                            # no require.js / html-manager from a CDN
nb_merge_streams = True

# -- HTML ---------------------------------------------------------------------------------------
html_theme = "sphinx_book_theme"
html_title = "mhacourse: multi-head attention, the MLX way"
html_static_path = ["_static"]
html_css_files = ["site.css"]
html_sourcelink_suffix = ""          # _sources/…/x.ipynb is the notebook itself: "download"
html_copy_source = True
html_last_updated_fmt = None
html_permalinks_icon = "#"
html_theme_options = {
    "use_download_button": True,
    "use_fullscreen_button": False,
    "use_repository_button": False,
    "show_toc_level": 2,
    "navigation_with_keys": True,
    "home_page_in_toc": True,
    "show_prev_next": True,
    "search_bar_text": "Search the course…",
}
html_context = {"default_mode": "light"}
