"""Sphinx extension of the course website (``docs/conf.py`` loads it).

What it adds to Sphinx + MyST-NB:

- **Live explorers.** An executed notebook keeps its widgets' state (nbclient stores it, jupyter-cache
  keeps it). MyST-NB would hand that state to ipywidgets' HTML manager, loaded from a CDN; instead,
  each ``AttentionExplorer`` output becomes a ``div`` holding the same standalone state that
  ``AttentionExplorer.save_html`` inlines, drawn by ``_static/mha_explorer.js``: the package's own
  ``explorer.js`` (the ES module ``save_html`` uses) plus a few lines that mount every explorer on
  the page. Hover, views, layers, heads and zoom work without a kernel. A large explorer's data
  (over ``INLINE_LIMIT``) goes to its own file, fetched when the explorer scrolls into view, so the
  page itself stays light.
- **Run it / download it** on every notebook page, and alt text on every output image.
- **MathJax from the site itself**: the MathJax 3 files of PyPI's ``sphinx-mathjax-offline``.
- ``{course-path}``: the lessons in order with the stage each builds, read from the README's tables.
- ``{exercise-list} NN``: lesson NN's exercises from ``mhacourse.grading`` (id, title, points).
- **Page weights**: after the build, ``build/<outdir name>-weights.json`` lists every page's weight (its HTML,
  its images and explorer data); a page over ``MHACOURSE_SITE_MAX_PAGE_KB`` fails the build.
"""

import base64
import hashlib
import html
import json
import os
import re
from pathlib import Path

from docutils import nodes
from sphinx import addnodes
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

LOG = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
VIEW_RE = re.compile(r'<script type="application/vnd\.jupyter\.widget-view\+json">(.*?)</script>', re.S)
INLINE_LIMIT = 256 * 1024        # explorer data up to this many bytes sits in the page itself
MAX_PAGE_KB = int(os.environ.get("MHACOURSE_SITE_MAX_PAGE_KB", "6144"))
DROP_KEYS = {"_esm", "_css", "_anywidget_id", "_dom_classes", "layout", "tabbable", "tooltip",
             "_model_module", "_model_module_version", "_model_name", "_view_count",
             "_view_module", "_view_module_version", "_view_name"}


def _is_notebook(env, docname):
    return str(env.doc2path(docname)).endswith(".ipynb")


# -- the course path and the exercise lists ---------------------------------------------------------

def _table(text, marker):
    """Rows (lists of cells) of the first Markdown table after ``marker`` in the README."""
    rows, started = [], False
    for line in text[text.index(marker):].splitlines():
        if line.startswith("|"):
            started = True
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not set("".join(cells)) <= set("-: "):
                rows.append(cells)
        elif started:
            break
    return rows[1:]


def course_path():
    """``[(number, title, notebook, study_time, stages)]`` from the README's lesson and stage tables."""
    text = README.read_text(encoding="utf-8")
    stages = {}
    for stage, module, _adds, lessons in _table(text, "<!-- section: stages -->\n"):
        for lesson in re.findall(r"\d\d", lessons):
            stages.setdefault(lesson, []).append((stage, module.strip("`")))
    path = []
    for row in _table(text, "<!-- section: lessons -->"):
        number, link, study = row[0], row[1], row[3]
        title, target = re.fullmatch(r"\[(.*)\]\((.*)\)", link).groups()
        path.append((number, title, target, study, stages.get(number, [])))
    return path


class CoursePath(SphinxDirective):
    """The lessons in order: primer, the five stages of the layer, then positions and the capstone."""

    def run(self):
        steps = nodes.enumerated_list(classes=["mha-course-path"], start=0)
        steps["enumtype"] = "arabic"
        steps["start"] = 0
        for number, title, target, study, stages in course_path():
            item = nodes.list_item(classes=["mha-step"])
            para = nodes.paragraph()
            docname = target.removesuffix(".ipynb")
            label = nodes.strong(text=f"{number} · {title}")
            if docname in self.env.found_docs:  # a partial build (make test) leaves lessons out
                ref = nodes.reference("", "", internal=True, refuri=self._uri(docname))
                ref += label
                para += ref
            else:
                para += label
            if number == "00":
                what = "the MLX you need first"
            elif number == "08":
                what = "capstone: train a tiny transformer built from your layer"
            elif stages:
                what = "builds " + ", ".join(f"stage {s} ({Path(m).name})" for s, m in stages)
            else:
                what = "uses the finished layer"
            para += nodes.Text(f" — {what}; about {study}.")
            item += para
            steps += item
        return [steps]

    def _uri(self, docname):
        depth = self.env.docname.count("/")
        return "../" * depth + docname + ".html"


def _first_sentence(text, limit=260):
    """The text up to its first ``. `` or ``: `` outside a code span (cut at a space outside code
    past ``limit`` characters)."""
    in_code, last_space = False, None
    for i, char in enumerate(text):
        if char == "`":
            in_code = not in_code
        elif not in_code:
            if char in ".:" and (i + 1 == len(text) or text[i + 1] == " "):
                return text[:i + 1] if char == "." else text[:i] + " …"
            if char == " ":
                if i > limit and last_space is not None:
                    return text[:last_space] + " …"
                last_space = i
    return text


def exercise_sections(lesson):
    """``{check id: (heading, first sentence)}`` from lesson NN's exercise notebook, in its order:
    each ``## Exercise NN.k — …`` cell and the ``check("id", …)`` call that follows it."""
    path = next((ROOT / "exercises").glob(f"{lesson}_*.ipynb"))
    found, heading, sentence = {}, None, ""
    for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
        text = "".join(cell["source"])
        if cell["cell_type"] == "markdown" and text.startswith("## Exercise"):
            heading = text.splitlines()[0][3:].strip()
            body = " ".join(line.strip() for line in text.splitlines()[1:] if line.strip())
            sentence = _first_sentence(body)
        elif cell["cell_type"] == "code" and heading:
            for exercise_id in re.findall(r"\bcheck\(\s*[\"'](\w+)[\"']", text):
                found.setdefault(exercise_id, (heading, sentence))
    return path.stem, found


class ExerciseList(SphinxDirective):
    """A table of one lesson's exercises: the course's registry (id, title, points) and the exercise
    notebook (its heading, linked, and the first sentence of its task)."""

    required_arguments = 1

    def run(self):
        from mhacourse.grading import exercise_ids, get_exercise

        lesson = self.arguments[0]
        exercises = [get_exercise(i) for i in exercise_ids() if get_exercise(i).lesson == lesson]
        if not exercises:
            raise self.error(f"no exercise for lesson {lesson!r}")
        notebook, sections = exercise_sections(lesson)
        missing = [ex.id for ex in exercises if ex.id not in sections]
        if missing:
            raise self.error(f"exercises/{notebook}.ipynb has no check() cell for {missing}")
        order = list(sections)
        exercises.sort(key=lambda ex: order.index(ex.id))
        page = "../" * self.env.docname.count("/") + f"exercises/{notebook}.html"
        table = nodes.table(classes=["mha-exercises"])
        group = nodes.tgroup(cols=4)
        table += group
        for width in (22, 14, 50, 6):
            group += nodes.colspec(colwidth=width)
        head = nodes.thead()
        group += head
        head += self._row(["exercise", "check id", "what it practises", "points"], header=True)
        body = nodes.tbody()
        group += body
        for ex in exercises:
            heading, sentence = sections[ex.id]
            link = nodes.reference("", "", nodes.Text(heading), internal=True,
                                   refuri=f"{page}#{nodes.make_id(heading)}")
            what = nodes.inline()
            what += nodes.strong(text=ex.title)
            if sentence:
                what += nodes.Text(" — ")
                what += self.parse_inline(sentence)
            body += self._row([link, nodes.literal(text=ex.id), what, str(ex.points)])
        return [table]

    def parse_inline(self, text):
        """Markdown of one sentence (code spans, emphasis) as inline nodes."""
        parsed = self.parse_text_to_nodes(text)
        container = nodes.inline()
        for node in parsed:
            container.extend(node.children if isinstance(node, nodes.paragraph) else [node])
        return container

    @staticmethod
    def _row(cells, header=False):
        row = nodes.row()
        for cell in cells:
            entry = nodes.entry()
            para = nodes.paragraph()
            para += cell if isinstance(cell, nodes.Node) else nodes.Text(cell)
            entry += para
            row += entry
        return row


# -- notebook pages: run-it box, explorers, alt text ------------------------------------------------

def _run_it(env, docname):
    """The "run this notebook" box at the top of a notebook page."""
    source = Path(str(env.doc2path(docname))).name
    folder = docname.split("/")[0]
    download = "../" * docname.count("/") + f"_sources/{docname}.ipynb"
    box = nodes.admonition(classes=["mha-run-it", "tip"])
    box += nodes.title(text="Run this notebook")
    para = nodes.paragraph()
    para += nodes.reference("", "", nodes.Text(f"Download {source}"), refuri=download,
                            classes=["mha-download"])
    para += nodes.Text(" (the notebook without outputs), or run it yourself: in a clone of the "
                       "course's repository, ")
    para += nodes.literal(text="make lab")
    para += nodes.Text(" installs everything into .venv and opens JupyterLab; or ")
    para += nodes.literal(text="pip install .")
    para += nodes.Text(" then ")
    para += nodes.literal(text="mhacourse start")
    para += nodes.Text(". Then open ")
    para += nodes.literal(text=f"{folder}/{source}")
    para += nodes.Text(". On this page the code has already run; explorers answer to the mouse, "
                       "but their scale and mask need the Python kernel.")
    box += para
    return box


def _section_title(node):
    while node is not None:
        if isinstance(node, nodes.section) and node.children and isinstance(node[0], nodes.title):
            return node[0].astext()
        node = node.parent
    return None


def _cell_code(node):
    while node is not None:
        if isinstance(node, nodes.container) and "cell" in node.get("classes", []):
            for block in node.findall(nodes.literal_block):
                return block.astext()
        node = node.parent
    return ""


DRAWS = re.compile(r"(?:\w+\s*=\s*)?((?:[\w.]+\.)?(?:plot\w*|draw\w*|show\w*|stepper|compare|"
                   r"AttentionExplorer|imshow|subplots)\s*\(.*)")


def _alt_text(image, page_title):
    """Where the figure is and the call that drew it (a notebook image has no alt text of its own)."""
    section = (_section_title(image.parent) or page_title).replace("\\", "")
    calls = [m.group(1) for line in _cell_code(image).splitlines() if (m := DRAWS.search(line))]
    text = f"Figure in “{section}”"
    if calls:
        call = calls[-1]
        text += f", drawn by {call[:140]}{'…' if len(call) > 140 else ''}"
    return text


def _standalone(model):
    """The widget's stored state -> the ``{state, buffer_paths, buffers}`` that ``save_html`` inlines."""
    state = {k: v for k, v in model["state"].items() if k not in DROP_KEYS}
    state["_meta"] = {**state.get("_meta", {}), "offline": True}
    paths, buffers = [], []
    for buffer in model.get("buffers", []):
        data = buffer["data"]
        if buffer.get("encoding") == "hex":
            data = base64.b64encode(bytes.fromhex(data)).decode("ascii")
        paths.append(buffer["path"])
        buffers.append(data)
    return {"state": state, "buffer_paths": paths, "buffers": buffers}


def _is_explorer(model):
    state = model.get("state", {})
    return "kind" in state.get("_meta", {}) and "_weights" in state


def fix_repo_links(app, doctree):
    """Links written for the repository (the README's ``notebooks/…``, a lesson's ``../exercises/…``)
    reach the real folders behind ``docs/notebooks`` and ``docs/exercises``: point them at the pages."""
    root = str(ROOT) + "/"
    for ref in doctree.findall(addnodes.pending_xref):
        target = ref.get("reftarget", "")
        if ref.get("refdomain") == "doc" and target.startswith(root):
            relative = target[len(root):]
            if relative in app.env.found_docs:
                ref["reftarget"] = relative


def process_notebook(app, doctree):
    env = app.env
    docname = env.docname
    fix_repo_links(app, doctree)
    if not _is_notebook(env, docname):
        return
    title = next(iter(doctree.findall(nodes.title)), None)
    title = title.astext() if title is not None else docname
    # 1. run it / download it, under the page's title
    first = next(iter(doctree.findall(nodes.section)), None)
    if first is not None:
        first.insert(1, _run_it(env, docname))
    # 2. alt text on output images (MyST-NB gives them their file name)
    for image in doctree.findall(nodes.image):
        alt = image.get("alt", "")
        if not alt or alt == image.get("uri") or alt.endswith((".png", ".svg", ".jpg")):
            image["alt"] = _alt_text(image, title)
    # 3. explorers: the stored widget state, drawn by the package's ES module
    from myst_nb.sphinx_ import NbMetadataCollector

    js_files = NbMetadataCollector.get_js_files(env, docname)
    state_js = js_files.pop("ipywidgets_state", None)
    for key in [k for k in js_files if k.startswith("ipywidgets_")]:
        js_files.pop(key)
    models = json.loads(state_js[1]["body"])["state"] if state_js else {}
    count = 0
    for raw in list(doctree.findall(nodes.raw)):
        match = VIEW_RE.fullmatch(raw.astext().strip())
        if not match:
            continue
        model_id = json.loads(match.group(1))["model_id"]
        model = models.get(model_id)
        if model is None or not _is_explorer(model):
            LOG.warning(f"{docname}: widget {model_id} has no stored explorer state", location=raw)
            continue
        count += 1
        data = json.dumps(_standalone(model), separators=(",", ":"))
        label = html.escape(f"Attention explorer {count}: {model['state']['_meta'].get('kind', '')}")
        if len(data) <= INLINE_LIMIT:
            safe = data.replace("</", "<\\/")
            body = f'<script type="application/json" class="mha-data">{safe}</script>'
            attrs = ""
        else:  # large: its own file, fetched when the explorer comes into view
            name = hashlib.sha256(data.encode()).hexdigest()[:16] + ".json"
            src = "../" * docname.count("/") + "_static/explorers/" + name
            attrs = f' data-src="{src}" data-bytes="{len(data)}"'
            body = (f'<p class="mha-loading">Loading the explorer’s data ({len(data) / 1e6:.1f} MB)…</p>')
        node = nodes.raw("", f'<div class="mha-site-explorer" role="figure" aria-label="{label}"{attrs}>'
                             f'{body}<div class="mha-root"></div></div>', format="html")
        if attrs:
            node["mha_data"] = (name, data)  # written next to the page when the page is written
        raw.parent.replace(raw, node)
    if count:
        NbMetadataCollector.add_js_file(env, docname, "mha_explorer", "mha_explorer.js", {"type": "module"})


def write_explorer_data(app, doctree, docname):
    """Each large explorer's data, as ``_static/explorers/<hash>.json``, when its page is written."""
    for node in doctree.findall(nodes.raw):
        if "mha_data" in node:
            name, data = node["mha_data"]
            folder = Path(app.outdir) / "_static" / "explorers"
            folder.mkdir(parents=True, exist_ok=True)
            if not (folder / name).is_file():
                (folder / name).write_text(data, encoding="utf-8")
            del node["mha_data"]


MOUNT = """
// -- mhacourse website: mount every explorer of the page (added by docs/_ext/mha_site.py) --------
async function mhaMount(el) {
  if (el.dataset.mounted) return;
  el.dataset.mounted = "loading";
  let data;
  if (el.dataset.src) {
    const response = await fetch(el.dataset.src);
    data = await response.json();
    el.querySelector(".mha-loading")?.remove();
  } else {
    data = JSON.parse(el.querySelector("script.mha-data").textContent);
  }
  renderStandalone(data, el.querySelector(".mha-root"));
  el.dataset.mounted = "yes";
}
const mhaObserver = new IntersectionObserver((entries) => {
  for (const entry of entries) if (entry.isIntersecting) mhaMount(entry.target);
}, { rootMargin: "600px" });
for (const el of document.querySelectorAll(".mha-site-explorer")) {
  if (el.dataset.src) mhaObserver.observe(el); else mhaMount(el);
}
"""


MATHJAX_PARTS = ["tex-chtml.js", "output/chtml/fonts", "input/tex/extensions", "a11y", "sre", "ui"]


def mathjax_folder():
    """MathJax 3 as the PyPI package ``sphinx-mathjax-offline`` ships it (its files only: the site
    copies the parts ``tex-chtml.js`` loads, not the whole 24 MB)."""
    import importlib.util

    spec = importlib.util.find_spec("sphinx-mathjax-offline")
    if spec is None:
        raise RuntimeError("MathJax for offline pages: pip install -e '.[site]' (sphinx-mathjax-offline)")
    return Path(spec.origin).parent / "static" / "mathjax"


def use_local_mathjax(app, config):
    mathjax_folder()  # fail early when it is missing
    config.mathjax_path = "mathjax/tex-chtml.js"


def outputs_under_build(app):
    """MyST-NB writes its output images to ``<outdir>/../jupyter_execute``: for ``site/`` that is the
    repository's root, so move them under ``build/`` (runs after MyST-NB's own ``builder-inited``)."""
    folder = ROOT / "build" / f"{Path(app.outdir).name}-jupyter_execute"
    app.env.mystnb_config = app.env.mystnb_config.copy(output_folder=str(folder))


def write_assets(app, exception):
    if exception is not None or app.builder.format != "html":
        return
    import shutil

    source, target = mathjax_folder(), Path(app.outdir) / "_static" / "mathjax"
    for part in MATHJAX_PARTS:
        if (source / part).is_dir():
            shutil.copytree(source / part, target / part, dirs_exist_ok=True)
        else:
            (target / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / part, target / part)
    from mhacourse.viz import explorer

    static = Path(app.outdir) / "_static"
    static.mkdir(parents=True, exist_ok=True)
    package = Path(explorer.__file__).parent
    (static / "mha_explorer.js").write_text((package / "explorer.js").read_text() + MOUNT, encoding="utf-8")
    (static / "mha_explorer.css").write_text((package / "explorer.css").read_text(), encoding="utf-8")
    report_weights(app)


def page_weights(outdir):
    """Every HTML page's own weight: the page, its images and its explorers' data (shared theme files
    once, separately)."""
    outdir = Path(outdir)
    pages = {}
    for page in sorted(outdir.rglob("*.html")):
        rel = page.relative_to(outdir).as_posix()
        if rel.startswith(("_static/", "_sources/")):
            continue
        text = page.read_text(encoding="utf-8")
        total, parts = page.stat().st_size, {"html": page.stat().st_size}
        for kind, pattern in (("images", r'<img [^>]*src="([^"]+)"'), ("explorer data", r'data-src="([^"]+)"')):
            size = 0
            for src in set(re.findall(pattern, text)):
                if src.startswith("data:"):  # inline: already counted in the page's own bytes
                    continue
                target = (page.parent / html.unescape(src).split("#")[0]).resolve()
                if target.is_file():
                    size += target.stat().st_size
            parts[kind] = size
            total += size
        pages[rel] = {"bytes": total, **parts}
    shared = sum(p.stat().st_size for p in (outdir / "_static").rglob("*")
                 if p.is_file() and "explorers" not in p.parts)
    return {"pages": pages, "shared_static_bytes": shared}


def report_weights(app):
    weights = page_weights(app.outdir)
    out = ROOT / "build" / f"{Path(app.outdir).name}-weights.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(weights, indent=1) + "\n")
    pages = sorted(weights["pages"].items(), key=lambda kv: -kv[1]["bytes"])
    LOG.info(f"page weights (page + images + explorer data; theme files {weights['shared_static_bytes'] / 1e6:.1f} MB "
             f"shared) -> {out.relative_to(ROOT)}")
    for name, w in pages[:5]:
        LOG.info(f"  {w['bytes'] / 1e3:8.0f} kB  {name}")
    heavy = [name for name, w in pages if w["bytes"] > MAX_PAGE_KB * 1024]
    if heavy:
        raise RuntimeError(f"pages over {MAX_PAGE_KB} kB: {heavy}")


def setup(app):
    app.add_directive("course-path", CoursePath)
    app.add_directive("exercise-list", ExerciseList)
    app.connect("config-inited", use_local_mathjax)
    app.connect("builder-inited", outputs_under_build, priority=900)
    app.connect("doctree-read", process_notebook)
    app.connect("doctree-resolved", write_explorer_data)
    app.connect("build-finished", write_assets)
    app.add_css_file("mha_explorer.css")
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
