"""The package's dependencies run one way, lowest first (docs/design.md, module map):

    assets, lazy -> config, io, memory -> data -> models -> evaluation -> lora_tokens, sft -> generator -> adaptation,
    baselines, demo_session -> pipeline, api, demo -> cli

Every import of a degaml module (top-level or inside a function) must point to the same layer or one
below, and no set of modules may import each other in a circle.
"""

import ast
from pathlib import Path

import degaml

PACKAGE = Path(degaml.__file__).parent
LAYERS = [("assets", "lazy"), ("config", "io", "memory", "plugins"), ("data",), ("models",), ("evaluation",), ("lora_tokens", "sft"),
          ("choice",), ("generator",), ("adaptation", "baselines", "demo_session"), ("pipeline", "api", "demo"), ("cli",)]
LAYER = {part: i for i, parts in enumerate(LAYERS) for part in parts}


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            candidates = [f"{target}.{a.name}" for a in node.names] + [target]
        elif isinstance(node, ast.Import):
            candidates = [a.name for a in node.names]
        else:
            continue
        for c in candidates:
            if c in known and c != name:
                found.add(c)
                break
    return found


def top(name: str) -> str:
    return name.split(".")[1] if name.count(".") else ""


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports(name, path, set(mods)) for name, path in mods.items()}


def against_order(g: dict[str, set[str]]) -> list[str]:
    return [f"{a} -> {b}" for a, targets in g.items() for b in targets
            if top(a) and top(b) and LAYER[top(b)] > LAYER[top(a)]]


def across_layer(g: dict[str, set[str]]) -> list[str]:
    return [f"{a} -> {b}" for a, targets in g.items() for b in targets
            if top(a) and top(b) and top(a) != top(b) and LAYER[top(a)] == LAYER[top(b)]]


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    state: dict[str, int] = {}
    found = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(g.get(node, ())):
            if state.get(nxt) == 1:
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for node in sorted(g):
        if node not in state:
            visit(node, [node])
    # A package's __init__ handing on its own modules' names is not a circle of design.
    return [c for c in found if not all(m == c[0] or m.startswith(c[0] + ".") or c[0].startswith(m + ".") for m in c)]


def test_the_checks_catch_what_they_are_for():
    bad = {"degaml.evaluation.output_scoring": {"degaml.adaptation.latent"}, "degaml.adaptation.latent": set(),
           "degaml.pipeline.report": {"degaml.pipeline.stages"}, "degaml.pipeline.stages": {"degaml.pipeline.report"},
           "degaml.adaptation.apply": {"degaml.baselines.common"}, "degaml.baselines.common": set()}
    assert against_order(bad) == ["degaml.evaluation.output_scoring -> degaml.adaptation.latent"]
    assert across_layer(bad) == ["degaml.adaptation.apply -> degaml.baselines.common"]
    assert cycles(bad) == [["degaml.pipeline.report", "degaml.pipeline.stages", "degaml.pipeline.report"]]


def test_every_module_has_a_layer():
    assert {top(m) for m in graph() if top(m)} <= set(LAYER)


def test_no_import_runs_against_the_layer_order():
    assert against_order(graph()) == []


def test_packages_of_one_layer_do_not_import_each_other():
    assert across_layer(graph()) == []


def test_no_import_cycle():
    assert cycles(graph()) == []


def test_a_lazy_package_imports_a_name_on_first_use_and_refuses_an_unknown_one():
    import subprocess
    import sys

    script = """
import sys
import degaml.models as models
assert "degaml.models.loading" not in sys.modules, "importing the package loaded a submodule"
from degaml.models import LoadedModel
from degaml.models.loading import LoadedModel as direct
assert LoadedModel is direct and "load_model" in models.__all__
try:
    models.nonesuch
except AttributeError as e:
    assert "degaml.models" in str(e) and "nonesuch" in str(e)
else:
    raise SystemExit("an unknown name was not refused")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
