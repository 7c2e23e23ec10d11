"""Architecture rules, executable: which modules may import the engines and SDKs, and module size."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGES = ("backend", "pipeline")

# module prefix -> the only files allowed to import it
BOUNDARIES = {
    "qdrant_edge": {"backend/retrieval/edge_store.py", "backend/retrieval/sparse.py"},
    "qdrant_client": {"backend/retrieval/server_store.py"},
    "openai": {"backend/chat/tiers/openai_tier.py"},
    # native model code runs only in the model's own process (llama_cpp_child), never in the API
    "llama_cpp": {"backend/chat/tiers/llama_cpp_child.py"},
    "sentence_transformers": {"backend/retrieval/embedder.py"},
    "sqlalchemy": {
        "backend/storage/db.py",
        "backend/storage/leases.py",
        "backend/storage/models.py",
        "backend/storage/repository.py",
        "backend/storage/records.py",
    },
}


def python_files() -> list[Path]:
    return sorted(path for package in PACKAGES for path in (REPO / package).rglob("*.py"))


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("module", sorted(BOUNDARIES))
def test_only_the_adapter_imports(module: str) -> None:
    offenders = []
    for path in python_files():
        relative = path.relative_to(REPO).as_posix()
        if relative.startswith("backend/storage/migrations/"):
            continue  # Alembic's environment talks to SQLAlchemy by design
        if any(name == module or name.startswith(module + ".") for name in imported_modules(path)):
            if relative not in BOUNDARIES[module]:
                offenders.append(relative)
    assert offenders == [], f"{module} imported outside its adapter"


def test_pipeline_and_service_share_one_embedder_and_store() -> None:
    # The CLI and the app must build the index through the same factory functions.
    cli = (REPO / "pipeline" / "cli.py").read_text()
    app = (REPO / "backend" / "app.py").read_text()
    for factory in ("get_embedder", "open_store", "Retriever("):
        assert factory in cli and factory in app


def test_modules_start_with_a_docstring_and_stay_small() -> None:
    problems = []
    for path in python_files():
        source = path.read_text(encoding="utf-8")
        relative = path.relative_to(REPO).as_posix()
        if path.name == "__init__.py" and not source.strip():
            continue
        if ast.get_docstring(ast.parse(source)) is None and "migrations/versions" not in relative:
            problems.append(f"{relative}: no module docstring")
        if source.count("\n") > 400:
            problems.append(f"{relative}: {source.count(chr(10))} lines")
    assert problems == []
