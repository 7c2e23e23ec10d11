"""The same documentation read from its reST sources and from its published HTML: retrieval side by side.

A docs project's curator has two copies of its documentation to bring in: the `.rst` sources in the repository and
the site Sphinx built from them. flaskdocs' questions are judged to the built pages (`flask/config.html`); the Flask
build ships every page's source beside it (`_sources/config.rst.txt`), so the same questions judge the sources
(`flask/config.rst`) with nothing rewritten. One run indexes both folders with today's settings and prints MRR@10
and nDCG@10 per mode for each.

What the sources cannot hold: text pulled in from Python code (`autoclass`, `autofunction`: Flask's API page is
almost all of it), so questions answered only there are expected to rank lower from the sources.

    .venv/bin/python -m scripts.bench.sources_rest
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from backend.retrieval.embedder import get_embedder
from backend.settings import get_settings
from pipeline import eval_published
from pipeline.eval_data import load_eval_set
from pipeline.eval_sets import SETS
from pipeline.sources import ParseError, parse_file
from scripts.bench import benchlib
from scripts.bench.quality import MODES, retrieval_scores


def sources_folder(out: Path) -> int:
    """The Flask docs' reST sources under `out` (`eval_published.build_sources`), less the pages ingest cannot read
    (the contributing guide is only an include of `../CONTRIBUTING.rst`, outside the docs: ingest reports it)."""
    eval_published.build_sources(out, eval_published.FLASK)
    count = 0
    for page in sorted((out / "flask").rglob("*.rst")):
        try:
            parse_file(page, creator="flask", creator_root=out / "flask")
        except ParseError as exc:
            print(f"left out: {exc}", file=sys.stderr)
            page.unlink()
            continue
        count += 1
    return count


def source_qrels(qrels: Path, out: Path) -> Path:
    """flaskdocs' judgments with each page named by its source (`flask/config.html` -> `flask/config.rst`)."""
    lines = qrels.read_text(encoding="utf-8").splitlines()
    mapped = [lines[0]] + [line.replace(".html\t", ".rst\t") for line in lines[1:]]
    path = out / "qrels.tsv"
    path.write_text("\n".join(mapped) + "\n", encoding="utf-8")
    return path


def main() -> int:
    settings = get_settings()
    embedder = get_embedder(settings.embedding)
    shipped = SETS["flaskdocs"]
    html = shipped.ensure_content()
    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-rest-") as work:
        root = Path(work)
        pages = sources_folder(root / "content")
        variants = {
            "published HTML": load_eval_set(content=html, queries=shipped.queries, qrels=shipped.qrels),
            "reST sources": load_eval_set(
                content=root / "content", queries=shipped.queries, qrels=source_qrels(shipped.qrels, root)
            ),
        }
        for name, eval_set in variants.items():
            print(f"[{name}] indexing and ranking…", file=sys.stderr, flush=True)
            rows[name] = retrieval_scores(eval_set, settings, embedder)
    benchlib.print_table(
        f"flaskdocs' 30 questions, the site as built and its {pages} reST sources (MRR@10 / nDCG@10)",
        ["corpus", "documents", "chunks", *MODES],
        [
            [name, row["documents"], row["chunks"]]
            + [f"{row['scores'][mode]['mrr@10']:.3f} / {row['scores'][mode]['ndcg@10']:.3f}" for mode in MODES]
            for name, row in rows.items()
        ],
    )
    benchlib.write_results("sources_rest", {"machine": benchlib.machine(), "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
