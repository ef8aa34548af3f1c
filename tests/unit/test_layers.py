"""The packages' rooms and the direction of their imports (docs/architecture.md).

Each module of `openautoglm` (the operator) and of `openautoglm_trial` (the trial runtime) belongs
to a room, and each room to a layer; a module imports only its own room and rooms of lower layers,
never a room beside or above it. Every import counts, also the ones inside functions and under
TYPE_CHECKING: a lazy import that climbs up is still a cycle waiting to happen. The trial runtime
sits below the whole operator: the operator imports its top level (the contract, the result, the
task and plugin registries), the runtime never imports the operator.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ROOT = REPO / "operator" / "openautoglm"
TRIAL_ROOT = REPO / "trial_image" / "openautoglm_trial"

#: Bottom to top. Rooms on one line share a layer and must not import each other.
LAYERS: list[list[str]] = [
    ["promql", "specbase"],  # the PromQL template language (spec checks it); the model's base class
    ["config", "trialrun", "podschema"],  # OPENAUTOGLM_* settings; trial checkpoints and scheduling; pod schema
    ["spec"],  # the TuningJob model
    ["podtemplate", "space"],
    ["samplers", "pruners"],  # plugin registries
    ["validation"],  # the model + every registry's checks
    ["engine"],  # reconcile, driver, study, status, ...
    ["local", "k8s"],  # the two shells over the engine
    ["crd", "katib", "report", "dashboard"],  # tools over the model and the engine
    ["sdk"],
    ["cli", "__init__", "__main__"],
]

#: The trial runtime, bottom to top: the top level is what the operator imports and what both
#: runners share; `supervisor/` runs a user's program, `builtin/` the built-in training.
TRIAL_LAYERS: list[list[str]] = [
    ["contract", "errors", "boundedjson", "boundedhttp", "registry", "prune"],  # import nothing of the package
    ["result", "environment", "process"],  # the termination message; what a worker is told; its process
    ["tasks", "rendezvous", "server", "watch", "client"],  # shared by the runners (tasks: also the operator)
    ["supervisor", "builtin"],  # the two runners: neither imports the other
    ["__init__", "__main__"],  # __main__ picks a runner
]

PACKAGES: dict[str, tuple[Path, list[list[str]]]] = {
    "openautoglm": (ROOT, LAYERS),
    "openautoglm_trial": (TRIAL_ROOT, TRIAL_LAYERS),
}
RANK = {room: i for i, rooms in enumerate(LAYERS) for room in rooms}
TRIAL_RANK = {room: i for i, rooms in enumerate(TRIAL_LAYERS) for room in rooms}
RANKS = {"openautoglm": RANK, "openautoglm_trial": TRIAL_RANK}


def package_of(module: str) -> str:
    return module.split(".", 1)[0]


def room_of(module: str) -> str:
    """'openautoglm.engine.driver' -> 'engine'; 'openautoglm.spec' -> 'spec'; 'openautoglm' -> '__init__'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def modules(package: str = "openautoglm") -> dict[str, Path]:
    root = PACKAGES[package][0]
    out = {}
    for path in root.rglob("*.py"):
        rel = path.relative_to(root.parent).with_suffix("")
        name = ".".join(rel.parts)
        out[name.removesuffix(".__init__")] = path
    return out


def _is_module(name: str) -> bool:
    """Whether the dotted name is a module or package of one of ours (not a name inside one)."""
    package = package_of(name)
    if package not in PACKAGES:
        return False
    path = PACKAGES[package][0].parent.joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or path.is_dir()


def imports_of(name: str, path: Path) -> set[str]:
    """The modules of ours that module `name` (at `path`) imports, absolute or relative."""
    found = set()
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            # `from openautoglm import spec` imports the room `spec`; `import AutoTrainer`, the package
            for a in node.names:
                found.add(f"{mod}.{a.name}" if _is_module(f"{mod}.{a.name}") else mod)
    return {m for m in found if package_of(m) in PACKAGES}


def edges(package: str) -> list[tuple[str, str]]:
    """(importer, imported) for every import between two modules of `package`."""
    return [
        (name, target)
        for name, path in sorted(modules(package).items())
        for target in sorted(imports_of(name, path))
        if package_of(target) == package
    ]


@pytest.mark.parametrize("package", PACKAGES)
def test_every_room_has_a_layer(package):
    rooms = {room_of(m) for m in modules(package)}
    rank = RANKS[package]
    assert rooms <= set(rank), f"rooms without a layer (add them to the layers): {sorted(rooms - set(rank))}"


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_climbs_up_or_sideways(package):
    rank = RANKS[package]
    climbing = []
    for name, target in edges(package):
        mine, theirs = room_of(name), room_of(target)
        if theirs == mine or target == package and mine in ("__init__", "__main__"):
            continue
        if rank[theirs] >= rank[mine]:
            climbing.append(f"{name} ({mine}, layer {rank[mine]}) -> {target} ({theirs}, layer {rank[theirs]})")
    assert not climbing, "imports that climb back up:\n" + "\n".join(climbing)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of the directed graph as [a, b, ..., a], or None."""
    done: set[str] = set()

    def walk(node: str, trail: list[str]) -> list[str] | None:
        if node in trail:
            return [*trail[trail.index(node) :], node]
        if node in done:
            return None
        for nxt in sorted(graph.get(node, ())):
            found = walk(nxt, [*trail, node])
            if found:
                return found
        done.add(node)
        return None

    for start in sorted(graph):
        cycle = walk(start, [])
        if cycle:
            return cycle
    return None


@pytest.mark.parametrize("package", PACKAGES)
def test_no_module_imports_itself_back(package):
    """No cycle between modules either, inside a room included (a room's layer says nothing there)."""
    graph: dict[str, set[str]] = {}
    for name, target in edges(package):
        if target != name:
            graph.setdefault(name, set()).add(target)
    cycle = find_cycle(graph)
    assert cycle is None, "an import cycle: " + " -> ".join(cycle)


def test_the_engine_imports_neither_shell():
    for name, path in modules().items():
        if room_of(name) == "engine":
            assert not {t for t in imports_of(name, path) if room_of(t) in ("local", "k8s")}, name


def test_the_trial_runtime_never_imports_the_operator():
    # The trial image carries openautoglm_trial alone: an import of openautoglm would fail there.
    found = [
        f"{name} -> {target}"
        for name, path in modules("openautoglm_trial").items()
        for target in imports_of(name, path)
        if package_of(target) == "openautoglm"
    ]
    assert not found, found


def test_the_operator_imports_only_the_trial_runtimes_top_level():
    # The runners (and __main__) are the trial image's business: the operator sees the contract,
    # the result, the task and plugin registries and the bounded readers, nothing that runs a trial.
    runners = {"supervisor", "builtin", "__main__"}
    found = [
        f"{name} -> {target}"
        for name, path in modules().items()
        for target in imports_of(name, path)
        if package_of(target) == "openautoglm_trial" and room_of(target) in runners
    ]
    assert not found, found


def test_the_supervisor_and_the_builtin_training_do_not_import_each_other():
    # What both need (the environment, the /metrics server, the stopping rules, the rendezvous)
    # sits at the top level; a user's program must not pay for the built-in training, nor the
    # built-in training depend on how a program's output is parsed.
    found = [
        f"{name} -> {target}"
        for name, target in edges("openautoglm_trial")
        if {room_of(name), room_of(target)} == {"supervisor", "builtin"}
    ]
    assert not found, found


def test_the_check_sees_a_climbing_import(tmp_path):
    # The checker itself: an engine module importing the Kubernetes shell is caught.
    src = tmp_path / "x.py"
    src.write_text("def f():\n    from openautoglm.k8s.api import Api\n")
    assert imports_of("openautoglm.engine.x", src) == {"openautoglm.k8s.api"}
    assert RANK[room_of("openautoglm.k8s.api")] > RANK["engine"]


def test_the_check_resolves_relative_imports(tmp_path):
    # The trial runtime imports relatively: `from .. import contract` in supervisor/ is the
    # module contract, `from ..environment import X` the module environment.
    src = tmp_path / "x.py"
    src.write_text("from .. import contract\nfrom ..environment import TrialSettings\nfrom . import command\n")
    assert imports_of("openautoglm_trial.supervisor.x", src) == {
        "openautoglm_trial.contract",
        "openautoglm_trial.environment",
        "openautoglm_trial.supervisor.command",
    }
    src.write_text("from openautoglm_trial.builtin import training\n")
    assert imports_of("openautoglm_trial.supervisor.x", src) == {"openautoglm_trial.builtin.training"}
    assert room_of("openautoglm_trial.builtin.training") == "builtin"


def test_the_check_sees_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}}) is None
