"""The shipped evaluation sets, by name: where each one's corpus, questions, judgements and answer set live, and how
its corpus is built when it is not there yet (issue 37). `scripts/bench/quality.py` and the per-set tests read them
from here, so a set added here is measured and guarded everywhere.

- `demo`: the demo corpus (`examples/content`), written for the project; questions in `examples/eval/`.
- `pgdocs`: the PostgreSQL 15 manual (`pipeline/eval_pgdocs.py`, Debian `postgresql-doc-15`); its answer set asks
  for parameters, functions, statements and flags.
- `gitdocs`, `handbook`, `debref`: git's manual pages, The Debian Administrator's Handbook and the Debian
  Reference (`pipeline/eval_debdocs.py`).
- `flaskdocs`, `clickdocs`: the Flask and the Click documentation's Sphinx builds copied whole, as published
  (`pipeline/eval_published.py`, Debian `python-flask-doc` and `python-click-doc`): pages with their chrome and the
  build's generated files, an API reference's answers.

Every corpus but the demo one is built from a Debian documentation package into `examples/eval/<set>/content`
(git-ignored); `scripts/build-eval-pgdocs` and `scripts/build-eval-debdocs` install the packages when missing
(`scripts/test` installs every set's).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pipeline import eval_debdocs, eval_pgdocs, eval_published

REPO = Path(__file__).resolve().parents[1]
EVAL_DIR = REPO / "examples" / "eval"


@dataclass(frozen=True, slots=True)
class ShippedSet:
    name: str
    kind: str
    folder: Path  # holds queries.jsonl, qrels.tsv and, when the set has one, answers.jsonl
    content: Path  # the corpus: a folder of creator folders
    package: str | None  # the Debian package the corpus is built from (None: committed in the repository)
    installed: Callable[[], bool]
    build: Callable[[Path], dict[str, int]] | None  # writes the corpus to a folder; sections per creator

    @property
    def queries(self) -> Path:
        return self.folder / "queries.jsonl"

    @property
    def qrels(self) -> Path:
        return self.folder / "qrels.tsv"

    @property
    def answers(self) -> Path | None:
        path = self.folder / "answers.jsonl"
        return path if path.is_file() else None

    def ensure_content(self) -> Path:
        """The corpus folder, built first from the installed package when it is missing."""
        if self.build is not None and not (self.content.is_dir() and any(self.content.iterdir())):
            if not self.installed():
                raise SystemExit(
                    f"{self.name}: the Debian package {self.package} is not installed "
                    f"(scripts/test installs every set's; or apt-get install {self.package})"
                )
            self.build(self.content)
        return self.content


def _debdocs(name: str) -> ShippedSet:
    doc_set = eval_debdocs.SETS[name]
    return ShippedSet(
        name=name,
        kind=doc_set.kind,
        folder=EVAL_DIR / name,
        content=EVAL_DIR / name / "content",
        package=doc_set.package,
        installed=doc_set.installed,
        build=lambda out: eval_debdocs.build(doc_set, out),
    )


def _published(name: str, site: eval_published.PublishedSite) -> ShippedSet:
    return ShippedSet(
        name=name,
        kind="documentation site as published (Sphinx build)",
        folder=EVAL_DIR / name,
        content=EVAL_DIR / name / "content",
        package=site.package,
        installed=site.installed,
        build=lambda out: eval_published.build(out, site),
    )


SETS: dict[str, ShippedSet] = {
    "demo": ShippedSet(
        name="demo",
        kind="creators' content (written for the project)",
        folder=EVAL_DIR,
        content=REPO / "examples" / "content",
        package=None,
        installed=lambda: True,
        build=None,
    ),
    "pgdocs": ShippedSet(
        name="pgdocs",
        kind="technical manual",
        folder=EVAL_DIR / "pgdocs",
        content=EVAL_DIR / "pgdocs" / "content",
        package=eval_pgdocs.DEBIAN_PACKAGE,
        installed=lambda: (eval_pgdocs.DEFAULT_HTML / "index.html").is_file(),
        build=lambda out: eval_pgdocs.build(eval_pgdocs.DEFAULT_HTML, out),
    ),
    **{name: _debdocs(name) for name in eval_debdocs.SETS},
    **{name: _published(name, site) for name, site in eval_published.SITES.items()},
}
