"""The package's rooms and the direction of their imports (README: "Architecture").

Each module of `openautoglm` belongs to a layer; a module imports only its own room and
rooms of lower layers, never a room beside or above it. Every import counts, also the ones
inside functions: a lazy import that climbs up is still a cycle waiting to happen.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "operator" / "openautoglm"

#: Bottom to top. Rooms on one line share a layer and must not import each other.
LAYERS: list[list[str]] = [
    ["promql"],  # the PromQL template language of metrics.prometheus.query (spec checks it)
    ["config", "spec", "podschema"],  # the TuningJob model, its schema, OPENAUTOGLM_* settings
    ["podtemplate", "space"],
    ["samplers", "pruners"],  # plugin registries
    ["validation"],  # the model + every registry's checks
    ["engine"],  # reconcile, driver, study, status, ...
    ["local", "k8s"],  # the two shells over the engine
    ["crd", "katib", "report", "dashboard"],  # tools over the model and the engine
    ["sdk"],
    ["cli", "__init__", "__main__"],
]
RANK = {room: i for i, rooms in enumerate(LAYERS) for room in rooms}


def room_of(module: str) -> str:
    """'openautoglm.engine.driver' -> 'engine'; 'openautoglm.spec' -> 'spec'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        name = ".".join(rel.parts)
        out[name.removesuffix(".__init__")] = path
    return out


def imports_of(name: str, path: Path) -> set[str]:
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
            if mod != "openautoglm":
                found.add(mod)
                continue
            # `from openautoglm import spec` imports the room `spec`; `import AutoTrainer`, the package
            for a in node.names:
                is_module = (ROOT / f"{a.name}.py").exists() or (ROOT / a.name).is_dir()
                found.add(f"openautoglm.{a.name}" if is_module else "openautoglm")
    return {m for m in found if m == "openautoglm" or m.startswith("openautoglm.")}


def test_every_room_has_a_layer():
    rooms = {room_of(m) for m in modules()}
    assert rooms <= set(RANK), f"rooms without a layer (add them to LAYERS): {sorted(rooms - set(RANK))}"


def test_no_import_climbs_up_or_sideways():
    climbing = []
    for name, path in sorted(modules().items()):
        mine = room_of(name)
        for target in imports_of(name, path):
            theirs = room_of(target)
            if theirs == mine or target == "openautoglm" and mine in ("__init__", "__main__"):
                continue
            if target == "openautoglm":
                theirs = "__init__"
            if RANK[theirs] >= RANK[mine]:
                climbing.append(f"{name} ({mine}, layer {RANK[mine]}) -> {target} ({theirs}, layer {RANK[theirs]})")
    assert not climbing, "imports that climb back up:\n" + "\n".join(climbing)


def test_the_engine_imports_neither_shell():
    for name, path in modules().items():
        if room_of(name) == "engine":
            assert not {t for t in imports_of(name, path) if room_of(t) in ("local", "k8s")}, name


def test_the_check_sees_a_climbing_import(tmp_path):
    # The checker itself: an engine module importing the Kubernetes shell is caught.
    src = tmp_path / "x.py"
    src.write_text("def f():\n    from openautoglm.k8s.api import Api\n")
    assert imports_of("openautoglm.engine.x", src) == {"openautoglm.k8s.api"}
    assert RANK[room_of("openautoglm.k8s.api")] > RANK["engine"]
