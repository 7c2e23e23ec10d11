"""Curated answers' storage on real SQLite and PostgreSQL: versions kept, retirement, uses and their ratings, gap topics
answered and reopened, starter questions (CA2, CA3, CA5, CA6)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import numpy as np
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from backend.catalog import Catalog, CatalogCreator, CatalogDocument
from backend.curation import answers_store, feedback_store, gaps_store
from backend.curation.gaps import refresh_gaps
from backend.errors import ErrorCode, LorechatError
from backend.retrieval.embedder import Embedder
from backend.stages import Creator
from backend.storage import catalog_store
from tests.backend.storage.test_curator import answered

pytestmark = pytest.mark.services

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
async def clean(engine: AsyncEngine, sessions: Sessions) -> AsyncIterator[None]:
    async with engine.begin() as connection:
        for table in (
            "curated_uses", "curated_answer_versions", "curated_answers", "starter_questions", "gap_members",
            "gap_topics", "feedback",
        ):  # fmt: skip
            await connection.execute(text(f"DELETE FROM {table}"))

    salt = CatalogDocument(
        document_id="ada/salt.md", title="Salt", source="salt.md", url=None, kind="article", chunks=2
    )

    def catalog(listed: Catalog) -> None:
        listed.creators["ada"] = CatalogCreator(Creator(slug="ada", name="Ada"), {salt.document_id: salt})

    await catalog_store.edit_catalog(sessions, catalog)
    yield


async def test_ca2_an_edit_keeps_every_earlier_version_and_moves_the_version_counter(
    sessions: Sessions, clean: None
) -> None:
    start = await answers_store.version(sessions)
    written = await answers_store.add_answer(
        sessions, creator="ada", questions=["How much salt?", "  how much SALT? ", "Salt per loaf?"],
        answer="Two percent of the flour.\x00", documents=["ada/salt.md"],
    )  # fmt: skip
    assert written.questions == ["How much salt?", "Salt per loaf?"]  # cleaned, duplicates (any case) dropped
    assert (written.version, written.answer, written.documents) == (1, "Two percent of the flour.", ["ada/salt.md"])
    edited = await answers_store.edit_answer(sessions, answer_id=written.id, answer="2 % of the flour weight.")
    assert edited.version == 2 and edited.questions == written.questions and edited.documents == ["ada/salt.md"]
    shown = await answers_store.get_answer(sessions, answer_id=written.id)
    assert shown is not None and shown.answer == "2 % of the flour weight."
    assert [(v.version, v.answer) for v in shown.history] == [(1, "Two percent of the flour.")]
    assert await answers_store.version(sessions) == start + 2  # every write: replicas re-read

    for bad in ({"questions": []}, {"questions": ["  "]}, {"answer": " "}, {"questions": ["x" * 301]}):
        with pytest.raises(LorechatError) as refused:
            await answers_store.add_answer(
                sessions,
                creator="ada",
                **{"questions": ["Q?"], "answer": "A.", **bad},  # type: ignore[arg-type]
            )
        assert refused.value.code is ErrorCode.invalid_input
    with pytest.raises(LorechatError) as unknown:  # only documents the catalog holds, of the answer's creator
        await answers_store.add_answer(
            sessions, creator="bob", questions=["Q?"], answer="A.", documents=["ada/salt.md"]
        )
    assert unknown.value.code is ErrorCode.not_found


async def test_ca3_a_retired_answer_is_never_served_and_keeps_its_record(sessions: Sessions, clean: None) -> None:
    written = await answers_store.add_answer(sessions, creator=None, questions=["What is bassinage?"], answer="Water.")
    assert await answers_store.serving(sessions, answer_id=written.id) is not None
    version, active = await answers_store.active_answers(sessions)
    assert [a.id for a in active] == [written.id]
    assert await answers_store.retire_answer(sessions, answer_id=written.id)
    assert not await answers_store.retire_answer(sessions, answer_id=written.id)  # once
    assert not await answers_store.retire_answer(sessions, answer_id="not an id\x00")
    assert await answers_store.serving(sessions, answer_id=written.id) is None
    assert (await answers_store.active_answers(sessions))[1] == []
    assert await answers_store.version(sessions) > version
    with pytest.raises(LorechatError) as refused:  # a retired answer is not edited back to life
        await answers_store.edit_answer(sessions, answer_id=written.id, answer="More water.")
    assert refused.value.code is ErrorCode.not_found
    kept = await answers_store.list_answers(sessions, include_retired=True)
    assert [(a.id, a.status) for a in kept] == [(written.id, "retired")]
    assert await answers_store.list_answers(sessions) == []


async def test_ca5_uses_and_their_ratings_are_counted_per_answer(sessions: Sessions, clean: None) -> None:
    written = await answers_store.add_answer(sessions, creator="ada", questions=["How much salt?"], answer="2 %.")
    ratings = ["up", "up", "down", None]
    for rating in ratings:
        turn = await answered(sessions, "How much salt?", tier="curated")
        await answers_store.record_use(sessions, message_id=turn.assistant_message_id, answer_id=written.id, version=1)
        if rating:
            await feedback_store.put_feedback(
                sessions, message_id=turn.assistant_message_id, owner_id=None, rating=rating, comment=None
            )
    [listed] = await answers_store.list_answers(sessions)
    assert (listed.uses, listed.up, listed.down) == (4, 2, 1)
    shown = await answers_store.get_answer(sessions, answer_id=written.id)
    assert shown is not None and (shown.uses, shown.up, shown.down) == (4, 2, 1)


async def test_ca6_a_topic_answered_leaves_the_inbox_and_reopens_when_unmatched_questions_keep_coming(
    sessions: Sessions, clean: None, shared_embedder: Embedder
) -> None:
    async def embed(texts: list[str]) -> np.ndarray:
        return shared_embedder.embed_documents(texts)

    await answered(sessions, "How long can my starter stay in the fridge?", unanswered=True)
    await refresh_gaps(sessions, embed, extractive_tiers=[])
    [topic] = await gaps_store.list_topics(sessions, creator="ada")
    with pytest.raises(LorechatError) as missing:
        await answers_store.add_answer(sessions, creator="ada", questions=["Q?"], answer="A.", topic_id="A" * 22)
    assert missing.value.code is ErrorCode.not_found
    written = await answers_store.add_answer(
        sessions, creator="ada", questions=topic.examples, answer="Two weeks, unfed.", topic_id=topic.id
    )
    assert await gaps_store.list_topics(sessions, creator="ada") == []  # answered: out of the inbox
    [kept] = await gaps_store.list_topics(sessions, creator="ada", include_resolved=True)
    assert (kept.status, kept.answered_by) == ("answered", written.id)

    # A question the answer matched is answered by it and signals nothing; one joining the topic did not match it.
    await answered(sessions, "How many weeks can a starter sit in the fridge unfed?", unanswered=True)
    await refresh_gaps(sessions, embed, extractive_tiers=[])
    [reopened] = await gaps_store.list_topics(sessions, creator="ada")
    assert (reopened.id, reopened.status, reopened.count) == (topic.id, "open", 2)

    # Retiring the answer puts its topic back in the inbox at once.
    again = await answers_store.add_answer(sessions, creator="ada", questions=["Q?"], answer="A.", topic_id=topic.id)
    assert await gaps_store.list_topics(sessions, creator="ada") == []
    assert await answers_store.retire_answer(sessions, answer_id=again.id)
    assert [t.id for t in await gaps_store.list_topics(sessions, creator="ada")] == [topic.id]


async def test_ca7_starters_come_from_the_most_specific_curator_set_else_the_questions_answered_well(
    sessions: Sessions, clean: None
) -> None:
    for question, rating, checks in (
        ("How much salt?", "up", {}),
        ("how much salt", "up", {}),
        ("What hydration?", "up", {}),
        ("Who invented bread?", "up", {"unsupported_claims": 1}),  # rated up, but it made things up
        ("What about rye?", "down", {}),
        ("Any tips?", None, {}),
    ):
        turn = await answered(sessions, question, **checks)
        if rating:
            await feedback_store.put_feedback(
                sessions, message_id=turn.assistant_message_id, owner_id=None, rating=rating, comment=None
            )
    asked = await answers_store.well_answered_questions(sessions, creator="ada", limit=4)
    assert asked == ["How much salt?", "What hydration?"]  # most asked first
    assert await answers_store.well_answered_questions(sessions, creator="bob", limit=4) == []

    assert await answers_store.curator_starters(sessions, creator="ada", site="blog") == []
    await answers_store.set_starters(sessions, creator=None, site=None, questions=["Everyone?"])
    await answers_store.set_starters(sessions, creator="ada", site=None, questions=["Ada?", "Ada again?"])
    await answers_store.set_starters(sessions, creator=None, site="blog", questions=["Blog?"])
    assert await answers_store.curator_starters(sessions, creator="ada", site="blog") == ["Blog?"]
    assert await answers_store.curator_starters(sessions, creator="ada", site="shop") == ["Ada?", "Ada again?"]
    assert await answers_store.curator_starters(sessions, creator="bob", site=None) == ["Everyone?"]
    await answers_store.set_starters(sessions, creator=None, site="blog", questions=[])  # removed
    assert await answers_store.curator_starters(sessions, creator="ada", site="blog") == ["Ada?", "Ada again?"]
    with pytest.raises(LorechatError) as refused:
        await answers_store.set_starters(sessions, creator=None, site=None, questions=["1?", "2?", "3?", "4?", "5?"])
    assert refused.value.code is ErrorCode.invalid_input
    assert [(s.creator, s.site) for s in await answers_store.list_starters(sessions)] == [(None, None), ("ada", None)]
