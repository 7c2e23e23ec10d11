"""Evaluation inputs: a BEIR-format set (corpus.jsonl, queries.jsonl, qrels TSV) or a content folder as the corpus.

BEIR formats: corpus lines {"_id", "title", "text"}; query lines {"_id", "text"} plus, optionally, "creator" (the
question is asked of that creator only: retrieval is scoped to it, as a chat with that creator is); qrels a TSV
with the header `query-id corpus-id score`. A content folder (creator folders, as `lorechat ingest` takes) is parsed
by the ingest parsers, so its document ids are exactly the ones ingest assigns ("<creator>/<path>", or a JSON
line's id).
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend.errors import ErrorCode, LorechatError
from backend.stages import Block, Document
from pipeline.creators import CreatorError, discover_creators, load_creator
from pipeline.sources import ParseError, content_files, parse_file

# The tenant every BEIR document is indexed under: a BEIR corpus has no creators.
BEIR_CREATOR = "beir"
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")


@dataclass(frozen=True, slots=True)
class EvalSet:
    documents: list[Document]
    queries: dict[str, str]
    # query id -> {document id: grade}
    qrels: dict[str, dict[str, int]]
    # query id -> creator slug, for questions asked of one creator (retrieval scoped to it)
    query_creators: dict[str, str] = field(default_factory=dict)

    def judged_queries(self) -> dict[str, str]:
        """Queries with at least one relevant document: the only ones scored (as trec_eval does)."""
        return {
            qid: text
            for qid, text in self.queries.items()
            if any(grade > 0 for grade in self.qrels.get(qid, {}).values())
        }


def _bad(path: Path, line: int | None, reason: str) -> LorechatError:
    where = f"{path}:{line}" if line is not None else str(path)
    return LorechatError(ErrorCode.invalid_input, f"{where}: {reason}")


def _jsonl(path: Path) -> list[tuple[int, dict[str, Any]]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise _bad(path, None, f"cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise _bad(path, None, "not UTF-8") from None
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise _bad(path, number, f"invalid JSON ({exc.msg})") from None
        if not isinstance(record, dict) or not str(record.get("_id", "")).strip():
            raise _bad(path, number, 'expected an object with a non-empty "_id"')
        records.append((number, record))
    return records


def load_corpus(path: Path) -> list[Document]:
    """BEIR corpus.jsonl → Documents (paragraphs split on blank lines; the title becomes the heading context)."""
    documents: dict[str, Document] = {}
    for number, record in _jsonl(path):
        doc_id = str(record["_id"])
        if doc_id in documents:
            raise _bad(path, number, f"duplicate _id {doc_id!r}")
        title = str(record.get("title") or "").strip()
        paragraphs = [p.strip() for p in _PARAGRAPH_BREAK.split(str(record.get("text") or "")) if p.strip()]
        if not paragraphs and not title:
            raise _bad(path, number, f"document {doc_id!r} has neither title nor text")
        documents[doc_id] = Document(
            creator=BEIR_CREATOR,
            document_id=doc_id,
            source=f"{path.name}#L{number}",
            title=title or doc_id,
            blocks=tuple(Block(text=p) for p in (paragraphs or [title])),
        )
    if not documents:
        raise _bad(path, None, "no documents")
    return list(documents.values())


def load_queries(path: Path) -> dict[str, str]:
    queries = {}
    for number, record in _jsonl(path):
        text = str(record.get("text") or "").strip()
        if not text:
            raise _bad(path, number, f"query {record['_id']!r} has no text")
        queries[str(record["_id"])] = text
    return queries


def load_query_creators(path: Path) -> dict[str, str]:
    """The optional "creator" of each query line: query id -> creator slug, for creator-scoped questions."""
    creators = {}
    for number, record in _jsonl(path):
        creator = record.get("creator")
        if creator is None:
            continue
        if not isinstance(creator, str) or not creator.strip():
            raise _bad(path, number, f'query {record["_id"]!r}: "creator" must be a non-empty string')
        creators[str(record["_id"])] = creator.strip()
    return creators


def load_qrels(path: Path) -> dict[str, dict[str, int]]:
    """TSV `query-id corpus-id score` with a header line; scores are integer grades (0 = not relevant)."""
    try:
        rows = list(csv.reader(path.read_text(encoding="utf-8").splitlines(), delimiter="\t"))
    except OSError as exc:
        raise _bad(path, None, f"cannot read: {exc.strerror or exc}") from None
    if not rows or [c.strip().lower() for c in rows[0][:3]] != ["query-id", "corpus-id", "score"]:
        raise _bad(path, 1, "expected the header: query-id<TAB>corpus-id<TAB>score")
    qrels: dict[str, dict[str, int]] = {}
    for number, row in enumerate(rows[1:], start=2):
        if not row or not "".join(row).strip():
            continue
        if len(row) < 3:
            raise _bad(path, number, "expected 3 tab-separated columns")
        try:
            grade = int(float(row[2]))
        except ValueError:
            raise _bad(path, number, f"score {row[2]!r} is not a number") from None
        qrels.setdefault(row[0].strip(), {})[row[1].strip()] = grade
    return qrels


def load_content(root: Path) -> list[Document]:
    """Every document under a folder of creator folders, parsed exactly as `lorechat ingest` parses it."""
    folders = discover_creators(root)
    if not folders:
        raise LorechatError(ErrorCode.invalid_input, f"{root}: no creator folders (folders with a creator.yaml)")
    documents: list[Document] = []
    for folder in folders:
        try:
            creator = load_creator(folder)
        except CreatorError as exc:
            raise LorechatError(ErrorCode.invalid_input, f"{folder}: {exc}") from None
        for file in content_files(folder):
            try:
                documents.extend(parse_file(file, creator=creator.slug, creator_root=folder).documents)
            except ParseError as exc:
                raise LorechatError(ErrorCode.invalid_input, f"cannot evaluate over {root}: {exc}") from None
    return documents


def load_eval_set(*, queries: Path, qrels: Path, corpus: Path | None = None, content: Path | None = None) -> EvalSet:
    """Exactly one of `corpus` (BEIR jsonl) or `content` (a folder of creator folders) is the corpus."""
    if (corpus is None) == (content is None):
        raise ValueError("give exactly one of corpus or content")
    documents = load_corpus(corpus) if corpus is not None else load_content(content)  # type: ignore[arg-type]
    creators = load_query_creators(queries)
    known = {d.creator for d in documents}
    unknown = sorted(set(creators.values()) - known)
    if unknown:
        raise _bad(queries, None, f"queries name creators the corpus does not have: {', '.join(unknown)}")
    return EvalSet(documents=documents, queries=load_queries(queries), qrels=load_qrels(qrels), query_creators=creators)


def corpus_records(documents: list[Document]) -> list[dict[str, str]]:
    """Documents as BEIR corpus lines: how peers (bm25s, LlamaIndex) and other tools read the same corpus."""
    return [{"_id": d.document_id, "title": d.title, "text": d.text} for d in documents]
