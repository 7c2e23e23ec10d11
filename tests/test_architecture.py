"""Architecture rules, executable: which modules may import the engines and SDKs, and which packages may import
which (the floor plan: grounding, stream, chat, api, curation; see ARCHITECTURE.md). A size is not a seam: no
line cap, the package rules are the plan."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGES = ("backend", "pipeline", "service")

# module prefix -> the only files allowed to import it
BOUNDARIES = {
    "qdrant_edge": {"backend/retrieval/stores/edge.py", "backend/retrieval/sparse.py"},
    "qdrant_client": {"backend/retrieval/stores/server.py"},
    "openai": {"backend/chat/tiers/openai_tier.py"},
    # the upstream's HTTP/1.1 is parsed in one place, under the openai tier's transport
    "httptools": {"backend/chat/tiers/upstream_connection.py"},
    # native model code runs only in the model's own process (llama_cpp_child), never in the API
    "llama_cpp": {"backend/chat/tiers/llama_cpp_child.py"},
    # the embedder, its ONNX exports and its direct ONNX path (which reads the model's layout): one embedding adapter
    "sentence_transformers": {
        "backend/retrieval/embedder.py",
        "backend/retrieval/model_files.py",
        "backend/retrieval/onnx_encoder.py",
    },
    # uvicorn's internals (the native relay writes into its request cycle) are known in one package only
    "uvicorn": {"backend/stream/server.py"},
    # the MCP SDK is known in the MCP package only; OpenTelemetry is set up and called in one module
    "mcp": {"backend/mcp/server.py"},
    "mcp_types": {"backend/mcp/server.py", "backend/mcp/resources.py"},
    "opentelemetry": {"backend/tracing.py"},
    "sqlalchemy": {
        "backend/storage/db.py",
        "backend/storage/leases.py",
        "backend/storage/models.py",
        "backend/storage/repository.py",
        "backend/storage/turn_statements.py",
        "backend/storage/records.py",
        "backend/storage/upsert.py",
        "backend/curation/feedback_store.py",
        "backend/curation/sites_store.py",
        "backend/curation/gaps_store.py",
        "backend/curation/answers_store.py",
        "backend/curation/runs_store.py",
        "backend/curation/channels_store.py",
        "backend/curation/stats_store.py",
        "backend/storage/catalog_store.py",
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


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def first_party_imports(path: Path) -> set[str]:
    """Every first-party module `path` imports, anywhere in it (also inside functions), relative ones resolved;
    `from a.b import c` counts as importing a.b and, when c is a module, a.b.c."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package[: len(package) - node.level + 1], *([base] if base else [])])
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] in PACKAGES}


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(path): path for path in python_files()}
    return {name: {m for m in first_party_imports(path) if m in modules} for name, path in modules.items()}


def test_imports_run_one_way_backend_never_reaches_pipeline() -> None:
    """pipeline may import backend; backend never imports pipeline, not even through another module. The
    composition root (pipeline/cli.py, service/commands.py) joins them by passing functions in."""
    graph = import_graph()
    offenders = []
    for start in sorted(name for name in graph if name.startswith("backend")):
        seen, todo = {start}, [start]
        while todo:
            for nxt in graph[todo.pop()] - seen:
                if nxt.startswith("pipeline"):
                    offenders.append(f"{start} -> {nxt}")
                seen.add(nxt)
                todo.append(nxt)
    assert offenders == []


def test_the_import_graph_sees_lazy_and_relative_imports() -> None:
    graph = import_graph()
    assert "backend.app" in graph["service.commands"]  # imported inside the `serve` command
    assert "backend.stages" in graph["pipeline.chunk"]


def test_pipeline_and_service_share_one_embedder_and_store() -> None:
    # The CLI and the app must build the index through the same factory functions.
    cli = (REPO / "pipeline" / "cli.py").read_text()
    app = (REPO / "backend" / "app.py").read_text()
    for factory in ("get_embedder", "open_store", "Retriever("):
        assert factory in cli and factory in app


def test_modules_start_with_a_docstring() -> None:
    problems = []
    for path in python_files():
        source = path.read_text(encoding="utf-8")
        relative = path.relative_to(REPO).as_posix()
        if path.name == "__init__.py" and not source.strip():
            continue
        if ast.get_docstring(ast.parse(source)) is None and "migrations/versions" not in relative:
            problems.append(f"{relative}: no module docstring")
    assert problems == []


# package -> packages it may never import (directly or through a lazy import)
NEVER = {
    "backend.grounding": ("backend.chat", "backend.stream", "backend.api", "backend.curation"),
    "backend.stream": ("backend.chat", "backend.api", "backend.curation", "backend.grounding"),
    "backend.chat": ("backend.api", "backend.curation"),
    "backend.retrieval": ("backend.chat", "backend.stream", "backend.api", "backend.curation", "backend.grounding"),
    "backend.storage": ("backend.chat", "backend.stream", "backend.api", "backend.curation", "backend.grounding"),
}


@pytest.mark.parametrize("package", sorted(NEVER))
def test_packages_import_downward_only(package: str) -> None:
    graph = import_graph()
    offenders = sorted(
        f"{module} -> {imported}"
        for module, imports in graph.items()
        if module == package or module.startswith(package + ".")
        for imported in imports
        if any(imported == banned or imported.startswith(banned + ".") for banned in NEVER[package])
    )
    assert offenders == []


# What makes a module a curator module, by name: the feature lives in backend/curation/ alone.
_CURATOR_NAMES = ("curator", "curation", "gaps", "sites", "feedback", "dashboard", "admin_session", "ingest_routes")


def test_the_curator_feature_lives_in_one_package() -> None:
    strays = [
        path.relative_to(REPO).as_posix()
        for path in (REPO / "backend").rglob("*.py")
        if any(name in path.stem for name in _CURATOR_NAMES)
        and (REPO / "backend" / "curation") not in path.parents
        and "migrations" not in path.parts
    ]
    assert strays == []


def test_chat_is_the_turn_and_generation_only() -> None:
    # Grounding and delivery moved out (backend/grounding, backend/stream): what stays is the turn and the tiers.
    files = [path for path in (REPO / "backend" / "chat").rglob("*") if path.suffix in (".py", ".c")]
    assert len(files) <= 28, sorted(p.name for p in files)
