"""The package's shape: no import cycle among hf_tuner modules (imports inside functions count too),
no module imports another module's private name, and the CLI starts without torch."""
from __future__ import annotations

import ast
import subprocess
import sys
import time
from pathlib import Path

import hf_tuner

ROOT = Path(hf_tuner.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> list[tuple[str, list[str]]]:
    """(imported hf_tuner module, names taken from it) for every import statement in the file."""
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names if a.name.split(".")[0] == "hf_tuner"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "hf_tuner":
                continue
            names = [a.name for a in node.names]
            if node.module is None or (ROOT.parent / target.replace(".", "/")).is_dir():
                # `from . import rundir` / `from .tasks import base`: the names may be modules themselves
                for name in names:
                    sub = f"{target}.{name}"
                    if (ROOT.parent / (sub.replace(".", "/") + ".py")).is_file():
                        out.append((sub, []))
                    else:
                        out.append((target, [name]))
            else:
                out.append((target, names))
    return out


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        me = module_name(path)
        edges.setdefault(me, set())
        for target, _ in imports_of(path):
            if target != me:
                edges[me].add(target)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in list(edges):
        if v not in index:
            visit(v)
    return found


def test_the_import_graph_is_read():
    edges = graph()
    assert "hf_tuner.rundir" in edges["hf_tuner.run"]  # `from . import rundir`
    assert "hf_tuner.tasks" in edges["hf_tuner.recipes"]  # an import inside a function counts


def test_a_cycle_would_be_found():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_among_hf_tuner_modules():
    assert cycles(graph()) == []


def test_no_module_imports_another_modules_private_name():
    private = []
    for path in ROOT.rglob("*.py"):
        for target, names in imports_of(path):
            private += [f"{module_name(path)} imports {target}.{n}" for n in names if n.startswith("_") and not n.startswith("__")]
    assert private == []


def test_help_is_fast_and_imports_no_torch():
    code = ("import sys, time\nt = time.perf_counter()\nfrom hf_tuner.cli import app\n"
            "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(time.perf_counter() - t)\nassert 'torch' not in sys.modules\n")
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert float(result.stdout.strip().splitlines()[-1]) < 1.0
    assert time.perf_counter() - started < 10  # the whole interpreter, as a user would wait for it
