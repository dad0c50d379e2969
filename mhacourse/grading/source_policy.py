"""The policy, decided in the trusted process from the submitted source.

Nothing here runs the learner's code: the grader parses the submitted cells
(after IPython's own transforms, so magics are seen for what they run) and
decides from the syntax tree:

* **Forbidden names.** For each exercise, the answer's definition and
  everything it reaches by name in the notebook (helpers, classes, bases,
  assignments such as ``softmax = nn.softmax``, imports anywhere, even inside
  the function's body) is searched for names and attribute chains that
  resolve to what the exercise forbids (``mx.softmax``, ``nn.softmax``,
  ``mx.fast.*``, ``nn.MultiHeadAttention``, ...) or to the course's
  implementation of this lesson's exercises, whatever alias, re-export or
  ``getattr(module, "constant")`` reaches them.
* **Copies.** Each function and class the answer reaches is compared with
  the course's implementations after normalising the syntax tree: names,
  docstrings, constants and annotations abstracted. A copy with its
  docstring edited or its locals renamed is still a copy; code the exercise
  notebook gives the learner, and the course's worked solutions, are not.
* **Dynamic access** that static analysis cannot resolve (``getattr`` with a
  computed name, ``exec``, ``eval``, ``compile``, ``__import__``,
  ``importlib``, ``ctypes``, ``__closure__``, ``__globals__``, ``__code__``,
  ``sys.modules``, threads and processes, magics other than ``%time``,
  ``%timeit`` and ``%matplotlib``...) anywhere in the notebook is listed for
  the instructor as ``needs-review``: never silently passed, never a zero by
  itself.

What the sandbox records while the answers run is a second signal that can
only lower a score (:func:`mhacourse.grading.policy.violations`).
"""

import ast
import builtins
import functools
import importlib
import inspect
import re
import textwrap
import types
from dataclasses import dataclass, field

__all__ = ["Audit", "audit", "python_source", "normalised", "MIN_COPY_NODES"]

MIN_COPY_NODES = 40  # smaller functions (one-liners) are too generic to call a copy
_RESOLVABLE_ROOTS = ("mlx", "mhacourse", "numpy")
_CODE_MAGICS = {"time", "timeit", "prun"}
_HARMLESS_MAGICS = {"matplotlib", "config", "precision", "pprint", "who", "whos", "autosave", "pwd", "page"}
_DYNAMIC_CALLS = {"exec", "eval", "compile", "__import__", "globals", "vars", "locals", "breakpoint"}
_REFLECTIVE = {"getattr", "setattr", "delattr", "hasattr"}
_DUNDERS = {"__closure__", "__globals__", "__code__", "__builtins__", "__subclasses__", "__dict__", "__class__",
            "__bases__", "__mro__", "__getattribute__", "f_globals", "f_locals", "f_back", "f_code", "gi_frame",
            "tb_frame", "cr_frame", "co_code", "cell_contents"}
_MODULES = {"importlib": "the import machinery", "ctypes": "native calls", "cffi": "native calls",
            "gc": "the garbage collector's object lists", "marshal": "code objects", "builtins": "the builtins",
            "_thread": "threads", "threading": "threads", "multiprocessing": "processes",
            "subprocess": "processes", "concurrent": "threads or processes", "pickle": "pickled objects",
            "dill": "pickled objects", "types": "hand-built functions or code", "inspect": "introspection",
            "signal": "signal handlers", "resource": "resource limits", "runpy": "running other code",
            "sys": None, "os": None}
_CHAINS = {"sys.modules": "sys.modules", "sys._getframe": "frame access", "sys.settrace": "tracing",
           "sys.setprofile": "profiling hooks", "sys.meta_path": "the import machinery",
           "sys.path_hooks": "the import machinery", "os.fork": "processes", "os.system": "a shell command",
           "os.popen": "a shell command", "os.kill": "signals", "os.execv": "processes", "os.execve": "processes",
           "os.posix_spawn": "processes", "os.dup2": "file descriptors", "os.write": "file descriptors",
           "os.read": "file descriptors"}


@dataclass
class Audit:
    """What the source says.

    Attributes:
        violations (dict): ``{exercise id: [sentences]}``, e.g. ``"uses mx.softmax
            (forbidden in softmax)"``.
        copies (dict): ``{exercise id: [sentences]}`` for copies of course code.
        review (list[str]): What static analysis cannot resolve, each with its
            cell (numbered from 1 over every cell, as Jupyter shows them) and line.
    """

    violations: dict = field(default_factory=dict)
    copies: dict = field(default_factory=dict)
    review: list = field(default_factory=list)


# ---------------------------------------------------------------------------
# Cells as Python


def python_source(cell_source):
    """A cell's text as the Python IPython runs (``%``/``!`` syntax transformed)."""
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        return TransformerManager().transform_cell(cell_source)
    except Exception:  # noqa: BLE001 - what IPython cannot transform, it cannot run either
        return cell_source


def _magic_calls(tree):
    """``(node, kind, name, code)`` for ``get_ipython().run_line_magic(...)``, ``run_cell_magic`` and ``system``."""
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Call) and isinstance(node.func.value.func, ast.Name)
                and node.func.value.func.id == "get_ipython"):
            continue
        args = [a.value if isinstance(a, ast.Constant) and isinstance(a.value, str) else None for a in node.args]
        method = node.func.attr
        if method == "run_line_magic" and len(args) >= 2:
            yield node, "line", args[0], args[1]
        elif method == "run_cell_magic" and len(args) >= 3:
            yield node, "cell", args[0], args[2]
        else:
            yield node, method, None, None


def _magic_code(kind, code):
    """The Python a ``%time``/``%timeit`` line or cell runs, options removed."""
    if code is None:
        return None
    if kind == "line":
        code = re.sub(r"^\s*(?:-[a-zA-Z]+(?:\s+\d+)?\s+)*", "", code)
    try:
        return ast.parse(textwrap.dedent(code))
    except SyntaxError:
        return None


@dataclass
class _Cell:
    number: int  # from 1, over every cell of the notebook
    tree: ast.Module


def _parse_cells(cells, review):
    """Parsed code cells (magics' code included); unparsable cells are left out (they fail to run)."""
    parsed = []
    for number, source in cells:
        try:
            tree = ast.parse(python_source(source))
        except (SyntaxError, ValueError):
            continue
        extra = []
        for node, kind, name, code in list(_magic_calls(tree)):
            where = f"cell {number}, line {getattr(node, 'lineno', '?')}"
            if kind in ("line", "cell") and name in _CODE_MAGICS:
                inner = _magic_code(kind, code)
                if inner is not None:
                    extra += inner.body
            elif kind in ("line", "cell") and name in _HARMLESS_MAGICS:
                continue
            elif kind in ("system", "getoutput"):
                review.append(f"{where}: runs a shell command (!...)")
            else:
                review.append(f"{where}: uses the IPython magic %{name or kind}")
        tree.body += extra
        parsed.append(_Cell(number, tree))
    return parsed


# ---------------------------------------------------------------------------
# Names, aliases and what they resolve to


def _aliases(cells):
    """``{name: {dotted paths}}`` from every import anywhere in the notebook, and star-imported modules."""
    aliases, stars = {}, []
    for cell in cells:
        for node in ast.walk(cell.tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        aliases.setdefault(alias.asname, set()).add(alias.name)
                    else:
                        root = alias.name.split(".")[0]
                        aliases.setdefault(root, set()).add(root)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for alias in node.names:
                    if alias.name == "*":
                        stars.append(node.module)
                    else:
                        aliases.setdefault(alias.asname or alias.name, set()).add(f"{node.module}.{alias.name}")
    return aliases, stars


def _getattr_static(value, attribute):
    """``getattr`` on modules and classes only, without running properties or ``__getattr__`` hooks
    other than a module's own (course modules load their exports lazily)."""
    if isinstance(value, types.ModuleType):
        if attribute in vars(value):
            return vars(value)[attribute]
        try:
            return importlib.import_module(f"{value.__name__}.{attribute}")
        except ImportError:
            pass
        hook = vars(value).get("__getattr__")
        if hook is not None and value.__name__.split(".")[0] == "mhacourse":
            return hook(attribute)
        raise AttributeError(attribute)
    if isinstance(value, type):
        for cls in value.__mro__:
            if attribute in vars(cls):
                return vars(cls)[attribute]
    raise AttributeError(attribute)


@functools.lru_cache(maxsize=4096)
def _resolve(dotted):
    """The object ``dotted`` names (``mlx``, ``mhacourse`` and ``numpy`` only), or ``None``."""
    parts = dotted.split(".")
    if parts[0] not in _RESOLVABLE_ROOTS:
        return None
    try:
        value = importlib.import_module(parts[0])
    except ImportError:
        return None
    for part in parts[1:]:
        try:
            value = _getattr_static(value, part)
        except Exception:  # noqa: BLE001 - a name that does not exist: nothing to forbid
            return None
    return value


def _chain(node):
    """``("mx", "fast", "scaled_dot_product_attention")`` for ``mx.fast.scaled_dot_product_attention``,
    ``getattr(mx, "softmax")`` included; ``None`` when the chain does not start at a name."""
    attrs = []
    while True:
        if isinstance(node, ast.Attribute):
            attrs.append(node.attr)
            node = node.value
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr"
              and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)
              and isinstance(node.args[1].value, str)):
            attrs.append(node.args[1].value)
            node = node.args[0]
        elif isinstance(node, ast.Name):
            return (node.id, *reversed(attrs))
        else:
            return None


def _chains(nodes):
    """Every maximal name chain in ``nodes`` (a chain's prefixes are not listed again)."""
    found, inner = [], set()
    for root in nodes:
        for node in ast.walk(root):
            if id(node) in inner:
                continue
            if isinstance(node, (ast.Attribute, ast.Name, ast.Call)):
                chain = _chain(node)
                if chain is None:
                    continue
                found.append((chain, node))
                sub = node
                while True:  # the chain's own inner nodes are not chains of their own
                    sub = sub.value if isinstance(sub, ast.Attribute) else (
                        sub.args[0] if isinstance(sub, ast.Call) and sub.args else None)
                    if sub is None:
                        break
                    inner.add(id(sub))
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for alias in node.names:
                    if alias.name != "*":
                        found.append((tuple(f"{node.module}.{alias.name}".split(".")), node))
            elif isinstance(node, ast.Import):
                found += [(tuple(alias.name.split(".")), node) for alias in node.names]
    return found


def _dotted_candidates(chain, aliases, stars, local_names):
    """The dotted paths a name chain may stand for, through the notebook's imports."""
    head, rest = chain[0], list(chain[1:])
    bases = set(aliases.get(head, ()))
    if not bases and head not in local_names:
        bases = {f"{module}.{head}" for module in stars}
        if head in _RESOLVABLE_ROOTS:
            bases.add(head)
    return {".".join([base, *rest]) for base in bases}


# ---------------------------------------------------------------------------
# What an answer reaches in the notebook


def _top_level(cells):
    """``{name: [statements that bind it at top level]}`` in cell order (compound statements searched)."""
    bindings = {}

    def visit(statements):
        for node in statements:
            names = []
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names = [node.name]
            elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    names += [n.id for n in ast.walk(target) if isinstance(n, ast.Name)]
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [(a.asname or a.name).split(".")[0] for a in node.names if a.name != "*"]
            for name in names:
                bindings.setdefault(name, []).append(node)
            for attribute in ("body", "orelse", "finalbody", "handlers"):
                if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    inner = getattr(node, attribute, None)
                    if isinstance(inner, list):
                        visit([n for n in inner if isinstance(n, ast.AST)])
            if isinstance(node, ast.ExceptHandler):
                visit(node.body)

    for cell in cells:
        visit(cell.tree.body)
    return bindings


_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


def _arg_names(arguments):
    every = arguments.posonlyargs + arguments.args + arguments.kwonlyargs
    every += [a for a in (arguments.vararg, arguments.kwarg) if a is not None]
    return {a.arg for a in every}


def _scope_reads(nodes, params, enclosing, kind, out):
    """Add to ``out`` the global names read in one scope made of ``nodes`` (and in its inner scopes).

    ``kind`` is ``"module"`` (every read is global), ``"function"`` or ``"class"`` (whose names do
    not enclose its methods), following Python's scoping rules.
    """
    local, declared, loads, inner = set(params), set(), [], []
    stack = list(nodes)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            local.add(node.name)
            stack += node.decorator_list + node.args.defaults + [d for d in node.args.kw_defaults if d]
            inner.append(node)
            continue
        if isinstance(node, ast.Lambda):
            stack += node.args.defaults + [d for d in node.args.kw_defaults if d]
            inner.append(node)
            continue
        if isinstance(node, ast.ClassDef):
            local.add(node.name)
            stack += node.bases + [k.value for k in node.keywords] + node.decorator_list
            inner.append(node)
            continue
        if isinstance(node, _COMPREHENSIONS):
            stack.append(node.generators[0].iter)  # evaluated in the enclosing scope
            inner.append(node)
            continue
        if isinstance(node, ast.Name):
            (loads.append if isinstance(node.ctx, ast.Load) else local.add)(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            local |= {(a.asname or a.name).split(".")[0] for a in node.names if a.name != "*"}
        elif isinstance(node, ast.Global):
            declared |= set(node.names)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            local.add(node.name)
        stack += list(ast.iter_child_nodes(node))
    if kind == "module":
        out |= set(loads)
        visible = set()
    else:
        local -= declared
        out |= {n for n in loads if n in declared or (n not in local and n not in enclosing)}
        visible = enclosing | local if kind == "function" else enclosing
    for node in inner:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            _scope_reads(node.body, _arg_names(node.args), visible, "function", out)
        elif isinstance(node, ast.Lambda):
            _scope_reads([node.body], _arg_names(node.args), visible, "function", out)
        elif isinstance(node, ast.ClassDef):
            _scope_reads(node.body, set(), visible, "class", out)
        else:
            targets = {n.id for g in node.generators for n in ast.walk(g.target) if isinstance(n, ast.Name)}
            parts = [node.key, node.value] if isinstance(node, ast.DictComp) else [node.elt]
            parts += [cond for g in node.generators for cond in g.ifs] + [g.iter for g in node.generators[1:]]
            _scope_reads(parts, targets, visible, "function", out)


def global_reads(statement):
    """The global names a top-level statement reads (itself, its functions' and classes' bodies)."""
    out = set()
    _scope_reads([statement], set(), set(), "module", out)
    return out


def _reach(answer_name, bindings):
    """The top-level statements ``answer_name`` reaches through the global names they read."""
    seen, todo, nodes = set(), [answer_name], []
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for node in bindings.get(name, ()):
            nodes.append(node)
            todo += [n for n in global_reads(node) if n in bindings and n not in seen]
    return nodes


# ---------------------------------------------------------------------------
# Copies: syntax trees with names, docstrings, constants and annotations abstracted


class _Normaliser(ast.NodeTransformer):
    def __init__(self):
        self.names = {}

    def _name(self, name):
        return self.names.setdefault(name, f"v{len(self.names)}")

    def _strip_docstring(self, node):
        if node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant) \
                and isinstance(node.body[0].value.value, str):
            node.body = node.body[1:] or [ast.Pass()]
        return node

    def visit_FunctionDef(self, node):
        node = self._strip_docstring(node)
        node.name = self._name(node.name)
        node.returns, node.decorator_list = None, []
        if hasattr(node, "type_params"):
            node.type_params = []
        return self.generic_visit(node)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node):
        node = self._strip_docstring(node)
        node.name = self._name(node.name)
        node.decorator_list = []
        return self.generic_visit(node)

    def visit_arg(self, node):
        node.arg, node.annotation = self._name(node.arg), None
        return node

    def visit_Name(self, node):
        node.id = self._name(node.id)
        return node

    def visit_AnnAssign(self, node):
        node.annotation = ast.Constant(value=None)
        return self.generic_visit(node)

    def visit_Constant(self, node):
        return ast.Constant(value="C")

    def visit_JoinedStr(self, node):
        return ast.Constant(value="C")


def normalised(node):
    """A canonical text of a function or class: equal for copies that differ only in names,
    docstrings, constants or annotations."""
    import copy

    tree = _Normaliser().visit(copy.deepcopy(node))
    return ast.dump(tree, annotate_fields=False, include_attributes=False)


def _size(node):
    return sum(1 for _ in ast.walk(node))


def _definitions(node):
    """Every function and class inside ``node`` (itself included)."""
    return [n for n in ast.walk(node) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]


def _first_doc_line(node):
    doc = ast.get_docstring(node, clean=True) if isinstance(
        node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) else None
    return " ".join(doc.split("\n")[0].split()) if doc else None


@functools.cache
def _course_trees(qualname):
    """``{normalised text: first docstring line or None}`` of a course object's functions and classes
    (``qualname``: ``module.name``). A large one is a copy by its structure alone (``None``); a
    small one (a few lines anyone might write) only when its docstring's first line comes too."""
    module_name, _, name = qualname.rpartition(".")
    try:
        obj = getattr(importlib.import_module(module_name), name)
        tree = ast.parse(textwrap.dedent(inspect.getsource(obj)))
    except (ImportError, AttributeError, OSError, TypeError, SyntaxError):
        return {}
    found = {}
    for node in _definitions(tree):
        doc = _first_doc_line(node)
        if _size(node) >= MIN_COPY_NODES:
            found[normalised(node)] = None
        elif doc:
            found[normalised(node)] = doc
    return found


def _allowed_trees(sources):
    """Normalised texts of the code the exercise notebook gives and the course's worked solutions."""
    found = set()
    for source in sources:
        try:
            tree = ast.parse(python_source(source))
        except (SyntaxError, ValueError):
            continue
        found |= {normalised(n) for n in _definitions(tree)}
    return found


# ---------------------------------------------------------------------------
# The audit


def _review(cells, aliases):
    review = []
    for cell in cells:
        for node in ast.walk(cell.tree):
            where = f"cell {cell.number}, line {getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                if node.func.id in _DYNAMIC_CALLS:
                    review.append(f"{where}: calls {node.func.id}()")
                elif node.func.id in _REFLECTIVE and (len(node.args) < 2 or not (
                        isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str))):
                    review.append(f"{where}: {node.func.id}() with a computed name")
            elif isinstance(node, ast.Attribute) and node.attr in _DUNDERS:
                review.append(f"{where}: reads .{node.attr}")
            elif isinstance(node, ast.Name) and node.id in ("__builtins__", "__loader__", "__spec__"):
                review.append(f"{where}: uses {node.id}")
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                for module in modules:
                    what = _MODULES.get(module.split(".")[0])
                    if what:
                        review.append(f"{where}: imports {module} ({what})")
        for node in ast.walk(cell.tree):
            targets = []
            if isinstance(node, (ast.Assign, ast.Delete)):
                targets = node.targets
            elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
                targets = [node.target]
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("setattr", "delattr")
                and node.args
            ):
                targets = [node.args[0]]
            for target in targets:
                chain = _chain(target) if isinstance(target, (ast.Attribute, ast.Name)) else None
                if chain is None or (isinstance(target, ast.Name) and node.func.id not in ("setattr", "delattr")
                                     if isinstance(node, ast.Call) else isinstance(target, ast.Name)):
                    continue
                dotted = sorted(_dotted_candidates(chain, aliases, [], set()))
                if any(d.split(".")[0] == "mhacourse" for d in dotted):
                    review.append(f"cell {cell.number}, line {node.lineno}: changes the course's code "
                                  f"({next(d for d in dotted if d.startswith('mhacourse'))})")
        for chain, node in _chains([cell.tree]):
            for dotted in _dotted_candidates(chain, aliases, [], set()) | {".".join(chain)}:
                for prefix, what in _CHAINS.items():
                    if dotted == prefix or dotted.startswith(prefix + "."):
                        review.append(
                            f"cell {cell.number}, line {getattr(node, 'lineno', '?')}: uses {prefix} ({what})"
                        )
    unique = []
    for line in review:
        if line not in unique:
            unique.append(line)
    return unique


def audit(cells, exercises, *, forbidden, implementations, allowed_sources=()):
    """Decide the policy from the submitted cells.

    Args:
        cells (list): ``(number, source)`` of each code cell, numbered from 1
            over every cell of the notebook.
        exercises (list): ``(exercise id, answer name)`` of the lesson's exercises.
        forbidden (dict): ``{exercise id: {id(object): dotted name}}``: what each forbids by name.
        implementations (dict): ``{exercise id: {id(object): (qualified name, exercise id)}}``:
            the course's implementations each answer may not use, call or copy.
        allowed_sources (iterable[str]): Code the learner may reuse as it is (the
            exercise notebook's given cells, the worked solutions).

    Returns:
        Audit: violations, copies and what needs review.
    """
    result = Audit()
    parsed = _parse_cells(cells, result.review)
    aliases, stars = _aliases(parsed)
    bindings = _top_level(parsed)
    result.review += [line for line in _review(parsed, aliases) if line not in result.review]
    allowed = _allowed_trees(allowed_sources)
    for exercise_id, answer_name in exercises:
        reached = _reach(answer_name, bindings)
        if not reached:
            continue
        local_names = {name for node in reached for name in _bound_inside(node)}
        named = forbidden.get(exercise_id, {})
        own = implementations.get(exercise_id, {})
        lines = []
        for chain, _ in _chains(reached):
            for dotted in sorted(_dotted_candidates(chain, aliases, stars, local_names)):
                parts = dotted.split(".")
                if parts[:2] == ["mhacourse", "grading"] and len(parts) > 2 and parts[2] not in ("check", "sandbox"):
                    line = f"uses the grading package ({dotted})"  # whether or not the name exists
                else:
                    value = _resolve(dotted)
                    if value is None:
                        continue
                    if id(value) in named:
                        line = f"uses {named[id(value)]} (forbidden in {exercise_id})"
                    elif id(value) in own:
                        what, owner = own[id(value)]
                        line = f"uses the course's {what} (the implementation of {owner})"
                    else:
                        continue
                if line not in lines:
                    lines.append(line)
        if lines:
            result.violations[exercise_id] = lines
        copies = []
        course = {}
        for qualname, owner in set(own.values()):
            for text, doc in _course_trees(qualname).items():
                course.setdefault(text, (qualname, owner, doc))
        for node in reached:
            for definition in _definitions(node):
                text = normalised(definition)
                if text not in course or text in allowed:
                    continue
                qualname, owner, doc = course[text]
                if doc is not None and doc not in (_first_doc_line(definition) or ""):
                    continue
                line = f"contains the code of the course's {qualname} (the implementation of {owner})"
                if line not in copies:
                    copies.append(line)
        if copies:
            result.copies[exercise_id] = copies
    return result


def _bound_inside(node):
    """Names a function or class binds in its own scope (parameters, locals), which shadow imports."""
    names = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.arg):
            names.add(sub.arg)
        elif isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
            names.add(sub.id)
    return names - set(dir(builtins))
