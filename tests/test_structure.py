"""The package's shape: declared layers that no import goes up (imports inside functions and the task
registry's "module:NAME" strings count too), no import cycle, no module importing another module's
private name, tasks composed of parts (no task inherits another), small classes, and a CLI that
starts without torch."""
from __future__ import annotations

import ast
import statistics
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


def registry_targets() -> list[str]:
    """The modules the task registry names in its "module:NAME" strings (imports in all but syntax)."""
    tree = ast.parse((ROOT / "tasks" / "__init__.py").read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("hf_tuner.") \
                and ":" in node.value:
            out.append(node.value.partition(":")[0])
    return out


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        me = module_name(path)
        edges.setdefault(me, set())
        for target, _ in imports_of(path):
            if target != me:
                edges[me].add(target)
    edges["hf_tuner.tasks"] |= set(registry_targets())
    return edges


# The layers, bottom up: a module imports its own layer or lower ones, never a higher one.
LAYERS = [
    ["hf_tuner", "errors", "secrets", "arguments", "packaged", "config", "metrics", "plots"],  # foundations
    ["data", "modeling", "rundir", "benchmarks"],  # data, models, the run folder
    ["tasks"],  # the registry, the parts and the task modules (hf_tuner.tasks.*)
    ["recipes", "run", "preflight", "evaluation", "card", "hub", "harness", "predict", "launch", "runs", "sweep"],  # the pipeline
    ["cli", "__main__"],  # the command line
]


def layer_of(module: str) -> int:
    parts = module.split(".")
    short = "hf_tuner" if parts == ["hf_tuner"] else parts[1]
    for i, names in enumerate(LAYERS):
        if short in names:
            return i
    raise AssertionError(f"{module} is in no layer: add it to LAYERS in tests/test_structure.py")


def upward_imports(edges: dict[str, set[str]]) -> list[str]:
    return sorted(f"{a} (layer {layer_of(a)}) imports {b} (layer {layer_of(b)})"
                  for a, targets in edges.items() for b in targets if layer_of(b) > layer_of(a))


def inheriting_parts(tasks: dict[str, object]) -> list[str]:
    """Registered tasks that are not plain `Task` values, or whose parts inherit a concrete part
    (a part class derives from its kind's base alone: Family, DataPart or Objective)."""
    from hf_tuner.tasks.base import DataPart, Family, Objective, Task

    found = []
    for name, task in tasks.items():
        if type(task) is not Task:
            found.append(f"{name}: {type(task).__name__} is not hf_tuner.tasks.base.Task")
            continue
        for kind, part in ((Family, task.family), (DataPart, task.data), (Objective, task.objective)):
            if type(part).__bases__ != (kind,):
                found.append(f"{name}: {type(part).__name__} inherits {', '.join(b.__name__ for b in type(part).__bases__)}, "
                             f"not {kind.__name__} alone")
    return found


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


def test_the_registry_strings_count_as_imports():
    assert "hf_tuner.tasks.policy" in graph()["hf_tuner.tasks"]


def test_no_import_goes_up_a_layer():
    assert upward_imports(graph()) == []


def test_an_upward_import_would_be_found():
    assert upward_imports({"hf_tuner.data": {"hf_tuner.run"}, "hf_tuner.run": {"hf_tuner.data"}}) == [
        "hf_tuner.data (layer 1) imports hf_tuner.run (layer 3)"]


def task_module_imports(edges: dict[str, set[str]]) -> list[str]:
    """Imports of a task module by another task module or by a part. Task modules are the modules of
    `hf_tuner.tasks` besides the registry and `base`; what two tasks share lives in `hf_tuner.tasks.parts`."""
    def is_task_module(name: str) -> bool:
        parts = name.split(".")
        return len(parts) == 3 and parts[:2] == ["hf_tuner", "tasks"] and parts[2] not in ("base", "parts")

    def is_part(name: str) -> bool:
        return name.startswith("hf_tuner.tasks.parts")

    return sorted(f"{a} imports {b}" for a, targets in edges.items() if is_task_module(a) or is_part(a)
                  for b in targets if is_task_module(b))


def test_a_task_module_imports_only_the_base_and_the_parts():
    edges = graph()
    assert "hf_tuner.tasks.parts.families" in edges["hf_tuner.tasks.dpo"]  # the graph sees the parts
    assert task_module_imports(edges) == []


def test_a_task_module_importing_another_would_be_found():
    edges = {"hf_tuner.tasks.dpo": {"hf_tuner.tasks.causal_lm", "hf_tuner.tasks.base", "hf_tuner.tasks.parts.families"},
             "hf_tuner.tasks.parts.images": {"hf_tuner.tasks.image_classification"}}
    assert task_module_imports(edges) == ["hf_tuner.tasks.dpo imports hf_tuner.tasks.causal_lm",
                                          "hf_tuner.tasks.parts.images imports hf_tuner.tasks.image_classification"]


def test_no_registered_task_inherits_another():
    from hf_tuner.tasks import get_task, task_names

    assert inheriting_parts({name: get_task(name) for name in task_names()}) == []


def test_a_task_inheriting_a_task_would_be_found():
    from dataclasses import dataclass

    from hf_tuner.tasks import get_task
    from hf_tuner.tasks.base import Task
    from hf_tuner.tasks.policy import PolicyOptimization

    class RLOOObjective(PolicyOptimization):
        pass

    @dataclass(frozen=True)
    class SubTask(Task):
        pass

    grpo = get_task("grpo")
    found = inheriting_parts({"rloo": Task("rloo", grpo.family, grpo.data, RLOOObjective(), grpo.card),
                              "sub": SubTask("sub", grpo.family, grpo.data, grpo.objective, grpo.card)})
    assert found == ["rloo: RLOOObjective inherits PolicyOptimization, not Objective alone",
                     "sub: SubTask is not hf_tuner.tasks.base.Task"]


def test_no_class_has_more_than_20_methods():
    big = []
    for path in ROOT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                methods = sum(isinstance(b, (ast.FunctionDef, ast.AsyncFunctionDef)) for b in node.body)
                if methods > 20:
                    big.append(f"{module_name(path)}.{node.name}: {methods}")
    assert big == []


def test_no_task_name_is_spelled_outside_tasks():
    """Code outside tasks/ asks the task; a named benchmark's task in benchmarks.py is data."""
    from hf_tuner.tasks import task_names

    names = set(task_names())
    spelled = []
    for path in ROOT.rglob("*.py"):
        if "tasks" in path.relative_to(ROOT).parts[:1] or path.name == "benchmarks.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names:
                spelled.append(f"{module_name(path)}:{node.lineno} {node.value!r}")
    assert spelled == []


def test_no_module_imports_another_modules_private_name():
    private = []
    for path in ROOT.rglob("*.py"):
        for target, names in imports_of(path):
            private += [f"{module_name(path)} imports {target}.{n}" for n in names if n.startswith("_") and not n.startswith("__")]
    assert private == []


def test_help_is_fast_and_imports_no_torch():
    """`hf-tuner --help` imports none of the heavy libraries, and takes about what a bare Typer app's
    --help takes (a baseline timed alongside it, so a loaded machine slows both alike)."""
    heavy = ("torch", "transformers", "datasets", "peft", "trl", "accelerate", "evaluate", "pandas")
    ours = ("import sys, time\nt = time.perf_counter()\nfrom hf_tuner.cli import app\n"
            "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
            f"print(time.perf_counter() - t)\nprint([m for m in {heavy!r} if m in sys.modules])\n")
    bare = ("import sys, time\nt = time.perf_counter()\nimport typer\napp = typer.Typer()\n"
            "@app.command()\ndef a(x: int = 1):\n    pass\n@app.command()\ndef b(y: str = ''):\n    pass\n"
            "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\nprint(time.perf_counter() - t)\nprint([])\n")

    def timed(code: str) -> tuple[float, str]:
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        seconds, imported = result.stdout.strip().splitlines()[-2:]
        return float(seconds), imported

    rounds = [(timed(ours), timed(bare)) for _ in range(3)]  # interleaved
    assert all(o[1] == "[]" for o, _ in rounds), rounds[0][0][1]  # e.g. ['torch']: an import is not lazy
    ratio = statistics.median(o[0] for o, _ in rounds) / statistics.median(b[0] for _, b in rounds)
    # idle 2-core machine: ~0.2 s vs ~0.15 s; importing torch alone would take seconds (> 10x)
    assert ratio < 3, ratio