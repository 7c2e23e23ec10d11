"""`python -m scripts.bench`: the benches, each with the first line of its docstring (read, not imported)."""

from __future__ import annotations

import ast
from pathlib import Path

# Shared modules, not benches.
_HELPERS = {"benchlib", "proc_cpu", "streamlib"}


def main() -> None:
    print("Run one from the repository root: .venv/bin/python -m scripts.bench.NAME [--help]\n")
    for path in sorted(Path(__file__).parent.glob("*.py")):
        if path.stem in _HELPERS or path.stem.startswith("_"):
            continue
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        print(f"  {path.stem:16} {doc.splitlines()[0] if doc else ''}")


if __name__ == "__main__":
    main()
