"""The package's layout: imports run one way, data/models -> engine -> embedding, pretext and selection -> loop
-> the rest.

Read from the source with ``ast`` (every import, also those inside functions), so a
module that reaches a layer above its own fails here, not in a review.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "bal"

#: Package (first component under bal) -> layer; a module may import its own layer and below.
LAYERS = {
    "errors": 0, "validation": 0, "files": 0, "registry": 0,
    "data": 1, "models": 1, "report": 1,
    "engine": 2,
    "embedding": 3, "pretext": 3, "selection": 3,
    "loop": 4,
    "recommend": 4,
    "api": 5, "bench": 5, "demo": 5, "project": 5,
    "cli": 6, "__main__": 6,
}


def modules() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if p != SRC / "__init__.py")


def part_of(path: Path) -> str:
    return path.relative_to(SRC).parts[0].removesuffix(".py")


def bal_imports(path: Path) -> list[str]:
    """Every ``bal.x...`` module imported anywhere in the file, as dotted names."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names if a.name.startswith("bal.")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "bal":
                names += [f"bal.{a.name}" for a in node.names]
            elif node.module.startswith("bal."):
                names.append(node.module)
    return names


def test_every_package_has_a_layer():
    assert {part_of(p) for p in modules()} <= set(LAYERS)


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_imports_run_one_way(path):
    own = LAYERS[part_of(path)]
    for name in bal_imports(path):
        target = name.split(".")[1]
        assert LAYERS[target] <= own, f"{path.relative_to(SRC)} (layer {own}) imports {name} (layer {LAYERS[target]})"


def test_named_boundaries():
    for path in modules():
        imports = bal_imports(path)
        where = part_of(path)
        if where == "pretext":
            assert not any(n.startswith("bal.loop") for n in imports), path
        if where == "loop":
            assert not any(n.startswith("bal.report") for n in imports), path
        if where == "selection":  # pure NumPy rules: no torch, no files
            text = path.read_text(encoding="utf-8")
            assert "import torch" not in text and not any(n.startswith(("bal.engine", "bal.data")) for n in imports)


def test_projects_do_not_decode_train_or_cluster_themselves():
    """A labelling project goes through the same core as run folders: no second pipeline."""
    forbidden = ("decode_image", "Image.open", "torch.optim", ".backward(", "cluster_distance_difference",
                 "KMeans", "rotation_scores", "select_first(", "select_uncertain(", "build_subpool(")
    for path in (SRC / "project").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        found = [f for f in forbidden if f in text]
        assert not found, f"{path.name} does {found} itself"


def test_sql_lives_in_the_database_module():
    for path in SRC.rglob("*.py"):
        if path.name == "db.py":
            continue
        text = path.read_text(encoding="utf-8")
        assert ".execute(" not in text and "INSERT INTO" not in text, path


def test_page_is_static_files():
    text = (SRC / "project" / "serve.py").read_text(encoding="utf-8")
    assert "<html" not in text and "addEventListener" not in text
    for name in ("index.html", "app.js", "style.css"):
        assert (SRC / "project" / "static" / name).is_file()
