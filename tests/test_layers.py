"""The package's shape: dependencies run one way, from the face down to the base, never in a circle.

The layers, lowest first (docs/architecture.md draws them):

    base      wmcli.base.*      errors, atomic writes, recipe sections and files, frames, metrics,
                                checkpoints, runtime, progress
    data      wmcli.data.*      envs, stores, buffers, policies' interface, the play loop, collection
    models    wmcli.models.*    networks, denoiser, sampler, reward/end model, actor-critic
    world     wmcli.world.*     trained models loaded and dreaming, the imagination env, measurement
    training  wmcli.training.*  the training loops
    outputs   wmcli.outputs.*   evaluation, imagine, play, videos, FVD, plots
    run       wmcli.run         DIAMOND's loop
    face      wmcli.cli, wmcli.console, wmcli.__main__

A module may import modules of its own layer or below. Imports sit at the top of each module;
the exceptions are the CLI (it imports the library inside each command so `wmcli --help` stays
instant) and optional packages that only one feature needs.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "wmcli"
LAYERS = ("base", "data", "models", "world", "training", "outputs", "run", "face")
FACE = {"wmcli.cli", "wmcli.console", "wmcli.__main__"}
LOCAL_IMPORTS_ALLOWED = {"wmcli.cli"}  # the face loads the library per command
OPTIONAL = {"minari", "minatar", "matplotlib", "matplotlib.pyplot", "torch.utils.tensorboard", "rliable", "pygame"}  # extras, imported where used


def layer(module: str) -> str:
    if module in FACE:
        return "face"
    if module == "wmcli.run":
        return "run"
    if module == "wmcli":
        return "base"
    parts = module.split(".")
    assert parts[1] in LAYERS, f"{module} is in no layer: put it in one of {LAYERS} (and in this test's docstring)"
    return parts[1]


def modules(root: Path = PACKAGE) -> dict[str, str]:
    """Every module of the package: dotted name -> source."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).with_suffix("")
        name = ".".join(rel.parts).removesuffix(".__init__")
        out[name] = path.read_text()
    return out


def imports(name: str, source: str, known: set[str]) -> list[tuple[str, bool]]:
    """(imported module, at top level?) for every import in a module's source; wmcli modules by
    their dotted name (`from wmcli import console` -> wmcli.console), others as written."""
    tree = ast.parse(source)
    top = set(map(id, tree.body))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, id(node) in top) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's own package
                pkg = name.split(".")[: len(name.split(".")) - node.level + (1 if name in known and _is_package(name) else 0)]
                base = ".".join([*pkg, base] if base else pkg)
            for a in node.names:
                sub = f"{base}.{a.name}"
                found.append((sub if sub in known else base, id(node) in top))
    return found


def _is_package(name: str) -> bool:
    return (PACKAGE.parent / name.replace(".", "/") / "__init__.py").exists()


def violations(sources: dict[str, str]) -> list[str]:
    """Every import that goes up a layer, every function-local import that is not allowed, and
    every circle among the package's modules."""
    known = set(sources)
    problems, graph = [], {m: set() for m in sources}
    for m, src in sources.items():
        for target, at_top in imports(m, src, known):
            if target.startswith("wmcli"):
                target = target if target in known else next((k for k in known if target.startswith(k + ".")), target)
                if target not in known or target == m:
                    continue
                graph[m].add(target)
                if LAYERS.index(layer(target)) > LAYERS.index(layer(m)):
                    problems.append(f"{m} ({layer(m)}) imports {target} ({layer(target)}), a higher layer")
            if not at_top and m not in LOCAL_IMPORTS_ALLOWED and target not in OPTIONAL:
                problems.append(f"{m} imports {target} inside a function (imports go at the top)")
    problems += [f"import circle: {' -> '.join(c)}" for c in cycles(graph)]
    return problems


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One circle through each strongly connected group of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group) + [sorted(group)[0]])

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_package_keeps_its_layers():
    assert violations(modules()) == []


def test_the_check_sees_a_layer_broken_a_circle_and_a_hidden_import():
    """The check itself: a base module importing a training loop, two modules importing each
    other, and an import inside a function are each caught."""
    fake = {
        "wmcli.base.recipe": "from wmcli.training.train_wm import X\n",
        "wmcli.training.train_wm": "from wmcli.base.recipe import Y\n",
        "wmcli.data.store": "def f():\n    import h5py\n",
        "wmcli.data.env": "def f():\n    from minatar import Environment\n",
    }
    found = violations(fake)
    assert any("wmcli.base.recipe (base) imports wmcli.training.train_wm (training)" in p for p in found)
    assert any(p.startswith("import circle: wmcli.base.recipe -> wmcli.training.train_wm") for p in found)
    assert any("wmcli.data.store imports h5py inside a function" in p for p in found)
    assert not any("minatar" in p for p in found)  # an optional package may load where it is used


def test_every_module_is_in_a_layer():
    for m in modules():
        layer(m)


def test_recipes_load_without_torch_ale_or_the_loops():
    code = (
        "import sys\n"
        "from wmcli.base.recipe import load_recipe, list_recipes\n"
        "for name in list_recipes(): load_recipe(name)\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('torch', 'ale_py', 'gymnasium', 'h5py')\n"
        "         or m.startswith(('wmcli.training', 'wmcli.world', 'wmcli.models', 'wmcli.data'))]\n"
        "print(sorted(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_loading_a_world_model_goes_through_no_training_loop(micro_wm):
    code = (
        "import sys\n"
        "from wmcli.world.world_model import load_world_model\n"
        f"load_world_model({str(micro_wm)!r})\n"
        "print(sorted(m for m in sys.modules if m.startswith('wmcli.training')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
