"""Curated answers in SQL: written, edited (each version kept), retired; each use recorded with the answer it served;
starter questions per creator and site; the questions visitors asked that were answered well.

Every write bumps one version row in the same transaction, so every replica notices it with one tiny query
(answers.py re-reads the answers when it moved), as the catalog does (backend/storage/catalog_store.py).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime

from sqlalchemy import ColumnElement, Update, and_, case, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from backend.errors import ErrorCode, LorechatError
from backend.storage.cleaning import clean_text
from backend.storage.models import (
    CatalogDocumentRow,
    Conversation,
    CuratedAnswer,
    CuratedAnswerVersion,
    CuratedUse,
    CuratedVersion,
    Feedback,
    GapTopic,
    Message,
    StarterQuestions,
    is_valid_id,
    new_id,
    utcnow,
)
from backend.storage.records import MessageStatus
from backend.storage.repository import Sessions, db_errors

MAX_QUESTIONS = 20
QUESTION_CHARS = 300
ANSWER_CHARS = 4000
MAX_DOCUMENTS = 8
MAX_STARTERS = 4
# Answers read for the most-asked well-answered questions (starter suggestions): a recent window, not the table.
_RECENT_GOOD = 2000


@dataclass(frozen=True, slots=True)
class AnswerVersion:
    version: int
    questions: list[str]
    answer: str
    documents: list[str]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class CuratedView:
    id: str
    creator: str | None
    version: int
    questions: list[str]
    answer: str
    documents: list[str]
    topic_id: str | None
    created_at: datetime
    updated_at: datetime
    retired_at: datetime | None
    uses: int = 0
    up: int = 0
    down: int = 0
    history: list[AnswerVersion] = field(default_factory=list)  # older versions first (`get_answer` only)
    # The linked documents' titles as the catalog holds them (`active_answers` only): words the matcher accepts.
    titles: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        return "retired" if self.retired_at else "active"


def _view(row: CuratedAnswer, uses: int = 0, up: int = 0, down: int = 0) -> CuratedView:
    return CuratedView(
        id=row.id, creator=row.creator, version=row.version, questions=list(row.questions), answer=row.answer,
        documents=list(row.documents), topic_id=row.topic_id, created_at=row.created_at, updated_at=row.updated_at,
        retired_at=row.retired_at, uses=uses, up=up, down=down,
    )  # fmt: skip


def _bump() -> Update:
    return update(CuratedVersion).where(CuratedVersion.id == 1).values(version=CuratedVersion.version + 1)


def _invalid(message: str) -> LorechatError:
    return LorechatError(ErrorCode.invalid_input, message)


def same_phrasing(question: str) -> str:
    """What two phrasings of one answer share when they are one: the words, spacing and case aside."""
    return " ".join(clean_text(question).split()).casefold()


def clean_questions(questions: list[str]) -> list[str]:
    """The phrasings as stored: cleaned, one line each, no duplicates; at least one (invalid_input otherwise)."""
    cleaned: list[str] = []
    for question in questions:
        text = " ".join(clean_text(question).split())
        if len(text) > QUESTION_CHARS:
            raise _invalid(f"a question is longer than {QUESTION_CHARS} characters")
        if text and same_phrasing(text) not in {same_phrasing(q) for q in cleaned}:
            cleaned.append(text)
    if not cleaned:
        raise _invalid("give at least one question the answer answers")
    if len(cleaned) > MAX_QUESTIONS:
        raise _invalid(f"at most {MAX_QUESTIONS} questions per answer")
    return cleaned


def clean_answer(answer: str) -> str:
    text = clean_text(answer).strip()
    if not text:
        raise _invalid("the answer is empty")
    if len(text) > ANSWER_CHARS:
        raise _invalid(f"the answer is longer than {ANSWER_CHARS} characters")
    return text


async def _check_documents(session: AsyncSession, creator: str | None, documents: list[str]) -> list[str]:
    """The linked documents, each one the catalog holds (of the answer's creator, when it has one)."""
    wanted = list(dict.fromkeys(d.strip() for d in documents if d.strip()))
    if len(wanted) > MAX_DOCUMENTS:
        raise _invalid(f"at most {MAX_DOCUMENTS} documents per answer")
    if not wanted:
        return []
    query = select(CatalogDocumentRow.document_id).where(CatalogDocumentRow.document_id.in_(wanted))
    if creator is not None:
        query = query.where(CatalogDocumentRow.creator == creator)
    known = set(await session.scalars(query))
    missing = [d for d in wanted if d not in known]
    if missing:
        whose = f" of creator '{creator}'" if creator else ""
        raise LorechatError(ErrorCode.not_found, f"no document '{missing[0]}'{whose} in the catalog")
    return wanted


async def version(sessions: Sessions) -> int:
    async with db_errors(), sessions() as session:
        return int(await session.scalar(select(CuratedVersion.version).where(CuratedVersion.id == 1)) or 0)


async def active_answers(sessions: Sessions) -> tuple[int, list[CuratedView]]:
    """Every answer that may be served, and the version they were read at (read first: a write committing
    meanwhile can only make the version older than the rows, which costs one extra reload, never a missed one)."""
    async with db_errors(), sessions() as session:
        at = int(await session.scalar(select(CuratedVersion.version).where(CuratedVersion.id == 1)) or 0)
        rows = list(
            await session.scalars(
                select(CuratedAnswer).where(CuratedAnswer.retired_at.is_(None)).order_by(CuratedAnswer.created_at)
            )
        )
        linked = sorted({document for row in rows for document in row.documents})
        titles: dict[str, str] = {}
        if linked:
            found = await session.execute(
                select(CatalogDocumentRow.document_id, CatalogDocumentRow.title).where(
                    CatalogDocumentRow.document_id.in_(linked)
                )
            )
            titles = {document: title for document, title in found}
        return at, [replace(_view(row), titles=[titles[d] for d in row.documents if titles.get(d)]) for row in rows]


async def add_answer(
    sessions: Sessions,
    *,
    creator: str | None,
    questions: list[str],
    answer: str,
    documents: list[str] | None = None,
    topic_id: str | None = None,
) -> CuratedView:
    """Write a new answer (version 1). Written from a gap topic, the topic is marked answered by it."""
    phrasings, text = clean_questions(questions), clean_answer(answer)
    now = utcnow()
    async with db_errors(), sessions() as session, session.begin():
        await session.execute(_bump())
        linked = await _check_documents(session, creator, documents or [])
        if topic_id is not None:
            topic = await session.get(GapTopic, topic_id) if is_valid_id(topic_id) else None
            if topic is None:
                raise LorechatError(ErrorCode.not_found, "No such gap topic")
        row = CuratedAnswer(
            id=new_id(), creator=creator, version=1, questions=phrasings, answer=text, documents=linked,
            topic_id=topic_id, created_at=now, updated_at=now,
        )  # fmt: skip
        session.add(row)
        await session.flush()
        session.add(CuratedAnswerVersion(answer_id=row.id, version=1, questions=phrasings, answer=text,
                                         documents=linked, created_at=now))  # fmt: skip
        if topic_id is not None:
            await session.execute(
                update(GapTopic).where(GapTopic.id == topic_id).values(answered_by=row.id, answered_at=now)
                .execution_options(synchronize_session=False)
            )  # fmt: skip
        return _view(row)


async def edit_answer(
    sessions: Sessions,
    *,
    answer_id: str,
    questions: list[str] | None = None,
    answer: str | None = None,
    documents: list[str] | None = None,
    topic_id: str | None = None,
) -> CuratedView:
    """A new version of the answer (what is not given stays); the old one is kept. not_found for an unknown or
    retired answer. With `topic_id` (a gap topic that reopened: visitors kept asking it in words the answer did not
    match, and the curator added them as phrasings), the topic is marked answered by it again."""
    now = utcnow()
    async with db_errors(), sessions() as session, session.begin():
        await session.execute(_bump())
        row = await session.get(CuratedAnswer, answer_id) if is_valid_id(answer_id) else None
        if row is None or row.retired_at is not None:
            raise LorechatError(ErrorCode.not_found, f"no active curated answer '{answer_id}'")
        if topic_id is not None:
            topic = await session.get(GapTopic, topic_id) if is_valid_id(topic_id) else None
            if topic is None:
                raise LorechatError(ErrorCode.not_found, "No such gap topic")
            topic.answered_by, topic.answered_at = row.id, now
        phrasings = clean_questions(questions) if questions is not None else list(row.questions)
        text = clean_answer(answer) if answer is not None else row.answer
        linked = await _check_documents(session, row.creator, documents) if documents is not None else row.documents
        row.version += 1
        row.questions, row.answer, row.documents, row.updated_at = phrasings, text, list(linked), now
        session.add(CuratedAnswerVersion(answer_id=row.id, version=row.version, questions=phrasings, answer=text,
                                         documents=list(linked), created_at=now))  # fmt: skip
        await session.flush()
        return _view(row)


async def retire_answer(sessions: Sessions, *, answer_id: str) -> bool:
    """Stop serving the answer (kept for the record); the gap topic it answered goes back to the inbox. False when
    there is no such active answer."""
    if not is_valid_id(answer_id):
        return False
    now = utcnow()
    async with db_errors(), sessions() as session, session.begin():
        await session.execute(_bump())
        result = await session.execute(
            update(CuratedAnswer).where(CuratedAnswer.id == answer_id, CuratedAnswer.retired_at.is_(None))
            .values(retired_at=now, updated_at=now).execution_options(synchronize_session=False)
        )  # fmt: skip
        if not result.rowcount:  # type: ignore[attr-defined]
            return False
        await session.execute(
            update(GapTopic).where(GapTopic.answered_by == answer_id).values(answered_by=None, answered_at=None)
            .execution_options(synchronize_session=False)
        )  # fmt: skip
    return True


def _counts() -> tuple[ColumnElement[int], ColumnElement[int], ColumnElement[int]]:
    uses = func.count(CuratedUse.message_id)
    up = func.sum(case((Feedback.rating == "up", 1), else_=0))
    down = func.sum(case((Feedback.rating == "down", 1), else_=0))
    return uses, up, down


async def list_answers(
    sessions: Sessions, *, creator: str | None = None, include_retired: bool = False, limit: int = 500
) -> list[CuratedView]:
    """Answers, newest first, each with how often it was served and the 👍/👎 those answers got."""
    uses, up, down = _counts()
    query = (
        select(CuratedAnswer, uses, up, down)
        .outerjoin(CuratedUse, CuratedUse.answer_id == CuratedAnswer.id)
        .outerjoin(Feedback, Feedback.message_id == CuratedUse.message_id)
        .group_by(CuratedAnswer.id)
        .order_by(CuratedAnswer.updated_at.desc(), CuratedAnswer.id)
        .limit(limit)
    )
    if creator is not None:
        query = query.where(CuratedAnswer.creator == creator)
    if not include_retired:
        query = query.where(CuratedAnswer.retired_at.is_(None))
    async with db_errors(), sessions() as session:
        rows = (await session.execute(query)).all()
    return [_view(row[0], int(row[1] or 0), int(row[2] or 0), int(row[3] or 0)) for row in rows]


async def written_for(sessions: Sessions, topic_ids: list[str]) -> dict[str, str]:
    """The active answer written for each of these gap topics that has one (the newest, when several)."""
    if not topic_ids:
        return {}
    query = (
        select(CuratedAnswer.topic_id, CuratedAnswer.id)
        .where(CuratedAnswer.topic_id.in_(topic_ids), CuratedAnswer.retired_at.is_(None))
        .order_by(CuratedAnswer.created_at, CuratedAnswer.id)
    )
    async with db_errors(), sessions() as session:
        rows = (await session.execute(query)).all()
    return {str(topic): str(answer) for topic, answer in rows}


async def get_answer(sessions: Sessions, *, answer_id: str) -> CuratedView | None:
    """One answer with its counts and every earlier version."""
    if not is_valid_id(answer_id):
        return None
    uses, up, down = _counts()
    async with db_errors(), sessions() as session:
        row = (
            await session.execute(
                select(CuratedAnswer, uses, up, down)
                .outerjoin(CuratedUse, CuratedUse.answer_id == CuratedAnswer.id)
                .outerjoin(Feedback, Feedback.message_id == CuratedUse.message_id)
                .where(CuratedAnswer.id == answer_id)
                .group_by(CuratedAnswer.id)
            )
        ).first()
        if row is None:
            return None
        versions = await session.scalars(
            select(CuratedAnswerVersion)
            .where(CuratedAnswerVersion.answer_id == answer_id, CuratedAnswerVersion.version < row[0].version)
            .order_by(CuratedAnswerVersion.version)
        )
        history = [
            AnswerVersion(v.version, list(v.questions), v.answer, list(v.documents), v.created_at) for v in versions
        ]
        view = _view(row[0], int(row[1] or 0), int(row[2] or 0), int(row[3] or 0))
    return replace(view, history=history)


async def serving(sessions: Sessions, *, answer_id: str) -> CuratedView | None:
    """The answer as it stands now, if it may still be served: the check before a match is served, so an answer
    retired on any replica is never served after its retirement committed (one primary-key read)."""
    async with db_errors(), sessions() as session:
        row = await session.get(CuratedAnswer, answer_id)
        return _view(row) if row is not None and row.retired_at is None else None


async def record_use(sessions: Sessions, *, message_id: str, answer_id: str, version: int) -> None:
    async with db_errors(), sessions() as session, session.begin():
        session.add(CuratedUse(message_id=message_id, answer_id=answer_id, version=version, served_at=utcnow()))


# ---- starter questions -----------------------------------------------------------------------------------


def clean_starters(questions: list[str]) -> list[str]:
    cleaned = clean_questions(questions) if any(q.strip() for q in questions) else []
    if len(cleaned) > MAX_STARTERS:
        raise _invalid(f"at most {MAX_STARTERS} starter questions")
    return cleaned


async def set_starters(sessions: Sessions, *, creator: str | None, site: str | None, questions: list[str]) -> list[str]:
    """The curator's starter questions for a creator and/or a site (None: any); an empty list removes them."""
    cleaned = clean_starters(questions)
    key = {"creator": creator or "", "site": site or ""}
    async with db_errors(), sessions() as session, session.begin():
        await session.execute(_bump())
        row = await session.get(StarterQuestions, (key["creator"], key["site"]))
        if row is not None and not cleaned:
            await session.delete(row)
        elif row is not None:
            row.questions, row.updated_at = cleaned, utcnow()
        elif cleaned:
            session.add(StarterQuestions(**key, questions=cleaned, updated_at=utcnow()))
    return cleaned


@dataclass(frozen=True, slots=True)
class StarterSet:
    creator: str | None
    site: str | None
    questions: list[str]


async def list_starters(sessions: Sessions) -> list[StarterSet]:
    async with db_errors(), sessions() as session:
        rows = await session.scalars(select(StarterQuestions).order_by(StarterQuestions.creator, StarterQuestions.site))
        return [StarterSet(r.creator or None, r.site or None, list(r.questions)) for r in rows]


async def curator_starters(sessions: Sessions, *, creator: str | None, site: str | None) -> list[str]:
    """The most specific set a curator wrote: the site's for this creator, the site's, the creator's, everyone's."""
    keys = [(creator or "", site or ""), ("", site or ""), (creator or "", ""), ("", "")]
    keys = list(dict.fromkeys(keys))
    async with db_errors(), sessions() as session:
        rows = {
            (r.creator, r.site): list(r.questions)
            for r in await session.scalars(
                select(StarterQuestions).where(
                    StarterQuestions.creator.in_({k[0] for k in keys}), StarterQuestions.site.in_({k[1] for k in keys})
                )
            )
        }
    return next((rows[key] for key in keys if rows.get(key)), [])


_NORMAL = re.compile(r"[^\w]+")


def _normal(question: str) -> str:
    return _NORMAL.sub(" ", question.casefold()).strip()


async def well_answered_questions(sessions: Sessions, *, creator: str | None, limit: int) -> list[str]:
    """The questions asked most often (of this creator; None: asked without one) whose answers were answered well:
    finished, a 👍, no unsupported claim, not a refusal. Read from the most recent well-rated answers."""
    question = aliased(Message)
    scope = Conversation.creator == creator if creator is not None else Conversation.creator.is_(None)
    async with db_errors(), sessions() as session:
        rows = await session.scalars(
            select(question.content)
            .select_from(Feedback)
            .join(Message, Message.id == Feedback.message_id)
            .join(Conversation, Conversation.id == Message.conversation_id)
            .join(question, and_(question.conversation_id == Message.conversation_id, question.seq == Message.seq - 1))
            .where(
                Feedback.rating == "up",
                Message.status == MessageStatus.done,
                Message.unsupported_claims == 0,
                Message.unanswered.is_(False),
                Conversation.deleted_at.is_(None),
                scope,
            )
            .order_by(Feedback.updated_at.desc())
            .limit(_RECENT_GOOD)
        )
        asked = [" ".join(text.split()) for text in rows if text and len(text) <= QUESTION_CHARS]
    counts = Counter(_normal(text) for text in asked)
    wordings = Counter(asked)
    best: dict[str, str] = {}  # per question, its most used wording; a well-formed one ("…?", capitalised) on a tie
    for text in sorted(wordings, key=lambda t: (-wordings[t], not t.endswith("?"), not t[:1].isupper(), t)):
        best.setdefault(_normal(text), text)
    ranked = sorted(counts, key=lambda key: (-counts[key], key))
    return [best[key] for key in ranked if key][:limit]
