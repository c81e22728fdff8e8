"""The tree's imports run one way: no circle, and nothing below imports what is above it.

Layers, lowest first: the method (``models``, ``diffusion``, ``instructions``); the edges
(``files``, ``images``, ``encoders``, ``folders``, ``generation``, ``devices``); the data path
(``data``); the product (``pipeline``, ``storyboard``, ``export``); training (``train``); the
front ends (the ``cli`` package: the commands and the web demo). Imports inside functions count
too.
"""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "pixeldance"

LAYERS = {
    "models": 0, "diffusion": 0, "instructions": 0, "keyframes": 0,
    "files": 1, "images": 1, "encoders": 1, "folders": 1, "generation": 1, "devices": 1, "owned": 1,
    "data": 2,
    "pipeline": 3, "story": 3, "outputs": 3, "keyframe_inputs": 3, "loading": 3, "storyboard": 3, "export": 3, "evaluation": 3,
    "train": 4,
    "cli": 5, "__init__": 5,
}  # fmt: skip


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    return ".".join(rel.parts).removesuffix(".__init__") or "__init__"


def imports_of(path: Path) -> set[str]:
    """The pixeldance modules ``path`` imports (absolute names without the package prefix)."""
    package = list(path.relative_to(SRC).parent.parts)  # what a relative import starts from
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0:
                if not (node.module or "").startswith("pixeldance"):
                    continue
                base = node.module.split(".")[1:]
            else:
                base = package[: len(package) - (node.level - 1)] + (
                    node.module.split(".") if node.module else []
                )
            for alias in node.names:
                candidate = ".".join([*base, alias.name])
                found.add(candidate if _exists(candidate) else ".".join(base))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("pixeldance."):
                    found.add(alias.name.removeprefix("pixeldance."))
    return {m for m in found if m and m != module_name(path)}


def _exists(dotted: str) -> bool:
    p = SRC.joinpath(*dotted.split("."))
    return p.with_suffix(".py").exists() or (p / "__init__.py").exists()


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in SRC.rglob("*.py")}


def layer(module: str) -> int:
    top = module.split(".")[0]
    assert top in LAYERS, f"{module} has no layer: add it to LAYERS"
    return LAYERS[top]


def test_no_module_imports_a_layer_above_it():
    upward = [
        f"{m} imports {d}"
        for m, deps in graph().items()
        for d in deps
        if layer(d) > layer(m) and m.split(".")[0] != d.split(".")[0]
    ]
    assert not upward, upward


def test_no_import_circle():
    g = graph()
    state: dict[str, int] = {}

    def visit(node, trail):
        state[node] = 1
        for dep in sorted(g.get(node, ())):
            if dep not in g:
                continue
            if state.get(dep) == 1:
                pytest.fail("import circle: " + " -> ".join([*trail, node, dep]))
            if not state.get(dep):
                visit(dep, [*trail, node])
        state[node] = 2

    for node in sorted(g):
        if not state.get(node):
            visit(node, [])
