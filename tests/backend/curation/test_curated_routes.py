"""Curated answers over HTTP (in process, both deployments): served first with their linked sources, curator-verified
sentences and the personality on the framing only; edited, retired; starter questions and follow-up suggestions;
and the dashboard's forms (CA1-CA8)."""

from __future__ import annotations

import asyncio
import html
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select

from backend.curation import answers_store, feedback_store, gaps_store
from backend.storage.models import CuratedUse
from backend.storage.repository import Sessions
from tests.backend.api.harness import AsgiApp, Backend, asgi_app, extractive_tier, upstream_tier
from tests.backend.api.streams import assert_turn_stored, post_chat
from tests.backend.storage.test_curator import answered
from tests.fakes import Script, ScriptedOpenAI

pytestmark = pytest.mark.asyncio(loop_scope="module")

ADMIN_TOKEN = "curated-token-" + "x" * 24
CREATOR = "hazel-marsh"
SALT_DOC = "hazel-marsh/articles/salt-and-patience.md"
ANSWER = "Two percent of the flour's weight: 10 g of salt for a 500 g loaf. Add it after the rest."
REFRESH = 1.1  # a write from outside the app is seen within curated.refresh_seconds (1 s)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def app(
    backend: Backend, fake: ScriptedOpenAI, api_index: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[AsgiApp]:
    async with asgi_app(
        template=api_index,
        workdir=tmp_path_factory.mktemp(f"curated-{backend.name}"),
        backend=backend,
        tiers=[upstream_tier(fake), extractive_tier()],
        admin_token=ADMIN_TOKEN,
    ) as app:
        yield app


@pytest_asyncio.fixture(loop_scope="module")
async def db(app: AsgiApp) -> AsyncIterator[Sessions]:
    async with app.db() as sessions:
        for answer in await answers_store.list_answers(sessions):  # each test starts with none active
            await answers_store.retire_answer(sessions, answer_id=answer.id)
        yield sessions


async def _salt_answer(db: Sessions) -> answers_store.CuratedView:
    written = await answers_store.add_answer(
        db, creator=CREATOR, questions=["How much salt does Hazel put in her dough?"], answer=ANSWER,
        documents=[SALT_DOC],
    )  # fmt: skip
    await asyncio.sleep(REFRESH)
    return written


async def test_ca4_a_paraphrase_gets_the_curated_answer_first_with_its_sources(
    app: AsgiApp, db: Sessions, upstream: ScriptedOpenAI
) -> None:
    written = await _salt_answer(db)
    async with app.client() as client:
        reply = await post_chat(
            client, {"query": "What percentage of salt goes into Hazel's bread?", "creator": CREATOR}
        )
        stored = await assert_turn_stored(db, reply, question="What percentage of salt goes into Hazel's bread?")
    stream = reply.stream
    done = stream.done
    assert done["cascade_tier"] == "curated" and done["skipped"] == []
    assert done["curated_answer"] == {"id": written.id, "version": 1}
    assert stream.text == f"Hazel Marsh's team answered this: {ANSWER}"  # framing, then the curator's words
    sources = stream.named("sources")[0].data
    assert sources and {source["document_id"] for source in sources} == {SALT_DOC}  # its linked document only
    body = [c for c in done["citations"] if c["verified"]]
    assert [stream.text[c["start"] : c["end"]] for c in body] == [
        "Two percent of the flour's weight: 10 g of salt for a 500 g loaf.",
        "Add it after the rest.",
    ]
    assert all(c["supported"] and c["claim"] for c in body)
    assert not done["unanswered"] and upstream.requests == []  # no model was asked
    async with app.db() as sessions, sessions() as session:
        use = await session.get(CuratedUse, stored.id)
    assert use is not None and (use.answer_id, use.version) == (written.id, 1)

    # The personality dial changes the framing line only.
    async with app.client() as client:
        warm = await post_chat(
            client, {"query": "How much salt should I add to the dough?", "creator": CREATOR, "personality_weight": 1.0}
        )
    assert warm.stream.text == f"I've answered this one myself: {ANSWER}"


async def test_ca1_another_topic_is_not_answered_by_it_and_passes_no_skip(
    app: AsgiApp, db: Sessions, upstream: ScriptedOpenAI
) -> None:
    await _salt_answer(db)
    upstream.enqueue(Script(tokens=["Sixty-eight", " percent", " [1]."]))
    async with app.client() as client:
        for question in ("How much yeast does Hazel put in her dough?",):
            reply = await post_chat(client, {"query": question, "creator": CREATOR})
            await assert_turn_stored(db, reply, question=question)
            done = reply.stream.done
            assert done["cascade_tier"] != "curated" and done["curated_answer"] is None
            assert all(skip["tier"] != "curated" for skip in done["skipped"])  # not asked is not a fallback
        other = await post_chat(
            client, {"query": "How much salt does Hazel put in her dough?", "creator": "tomas-reyes"}
        )
        assert other.stream.done["cascade_tier"] != "curated"  # another creator's answer


async def test_ca3_an_edit_is_served_at_its_new_version_and_a_retired_answer_at_once_no_more(
    app: AsgiApp, db: Sessions, upstream: ScriptedOpenAI
) -> None:
    written = await _salt_answer(db)
    await answers_store.edit_answer(db, answer_id=written.id, answer="Two percent, always.")
    question = {"query": "How much salt goes into Hazel's dough?", "creator": CREATOR}
    async with app.client() as client:
        edited = (await post_chat(client, question)).stream  # before any refresh: what SQL holds now is served
        assert edited.done["curated_answer"] == {"id": written.id, "version": 2}
        assert edited.text.endswith("Two percent, always.")
        assert await answers_store.retire_answer(db, answer_id=written.id)
        after = (await post_chat(client, question)).stream  # no wait: a retired answer is never served again
    assert after.done["cascade_tier"] != "curated"


async def test_ca8_follow_ups_are_offered_and_answerable(app: AsgiApp, db: Sessions, upstream: ScriptedOpenAI) -> None:
    upstream.default = Script(tokens=["Two", " percent", " [1]."])
    try:
        async with app.client() as client:
            first = await post_chat(client, {"query": "How much salt does Hazel use?", "creator": CREATOR})
            suggestions = first.stream.done["suggestions"]
            assert 1 <= len(suggestions) <= 3 and "How much salt does Hazel use?" not in suggestions
            follow = await post_chat(
                client, {"query": suggestions[0], "creator": CREATOR, "conversation_id": first.conversation_id}
            )
            assert not follow.stream.done["unanswered"], suggestions[0]  # asking it does not end in a refusal
    finally:
        upstream.default = Script()


async def test_ca7_starters_are_the_curators_else_the_questions_answered_well(
    app: AsgiApp, db: Sessions, upstream: ScriptedOpenAI
) -> None:
    await answers_store.set_starters(db, creator=None, site=None, questions=[])
    await answers_store.set_starters(db, creator=CREATOR, site=None, questions=[])
    upstream.default = Script(tokens=["Fold", " it", " [1]."])
    try:
        async with app.client() as client:
            liked = f"How does the Quillfield fold go, {app.settings.data_dir.name}?"
            reply = await post_chat(client, {"query": liked, "creator": CREATOR})
            stored = await assert_turn_stored(db, reply, question=liked)
            await feedback_store.put_feedback(db, message_id=stored.id, owner_id=None, rating="up", comment=None)
            await asyncio.sleep(REFRESH)
            asked = (await client.get("/api/v1/starters", params={"creator": CREATOR})).json()
            assert asked["source"] == "asked" and liked in asked["questions"]
            await answers_store.set_starters(db, creator=CREATOR, site=None, questions=["How much salt?", "Why rest?"])
            await asyncio.sleep(REFRESH)
            set_ = (await client.get("/api/v1/starters", params={"creator": CREATOR, "site": "blog"})).json()
            assert set_ == {"questions": ["How much salt?", "Why rest?"], "source": "curator"}
            bad = await client.get("/api/v1/starters", params={"creator": "Not A Slug"})
            assert bad.status_code == 422
    finally:
        upstream.default = Script()
        await answers_store.set_starters(db, creator=CREATOR, site=None, questions=[])


async def _signed_in(client: httpx.AsyncClient) -> str:
    """Signs the client in; the page's CSRF token."""
    await client.post("/admin/login", data={"token": ADMIN_TOKEN})
    page = await client.get("/admin")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf, page.text[:300]
    return csrf[1]


async def test_ca2_the_dashboard_writes_edits_and_retires_answers_behind_its_login(
    app: AsgiApp, db: Sessions, upstream: ScriptedOpenAI
) -> None:
    async with app.client() as anonymous:
        assert (await anonymous.post("/admin/answers", data={"questions": "Q?", "answer": "A."})).status_code == 401
        assert (await anonymous.get("/admin/answers/new")).status_code == 303  # to the login form
    async with app.client() as client:
        csrf = await _signed_in(client)
        form = await client.get("/admin/answers/new")
        assert form.status_code == 200 and 'name="questions"' in form.text
        created = await client.post(
            "/admin/answers",
            data={"csrf": csrf, "creator": CREATOR, "questions": "Where does the Quillfield fold's name come from?",
                  "answer": "From Hazel's gran, who folded that way.", "documents": ""},
        )  # fmt: skip
        assert created.status_code == 303
        [answer] = await answers_store.list_answers(db)
        page = await client.get("/admin")
        assert 'data-testid="curated-answer"' in page.text and answer.id in page.text
        # Served at once by the replica that wrote it.
        reply = await post_chat(client, {"query": "Why is it called the Quillfield fold?", "creator": CREATOR})
        assert reply.stream.done["curated_answer"] == {"id": answer.id, "version": 1}
        edited = await client.post(
            f"/admin/answers/{answer.id}",
            data={"csrf": csrf, "questions": "Why is it called the Quillfield fold?",
                  "answer": "Named after her gran.", "documents": ""},
        )  # fmt: skip
        assert edited.status_code == 303
        history = await client.get(f"/admin/answers/{answer.id}")
        assert "From Hazel&#39;s gran" in history.text and 'data-testid="answer-version"' in history.text
        bad = await client.post("/admin/answers", data={"csrf": csrf, "questions": " ", "answer": "A."})
        assert bad.status_code == 422 and 'data-testid="answer-error"' in bad.text
        forged = await client.post(f"/admin/answers/{answer.id}/retire", data={"csrf": "forged"})
        assert forged.status_code == 403
        retired = await client.post(f"/admin/answers/{answer.id}/retire", data={"csrf": csrf})
        assert retired.status_code == 303
        assert (await answers_store.get_answer(db, answer_id=answer.id)).status == "retired"  # type: ignore[union-attr]
        async with app.db() as sessions, sessions() as session:
            assert (await session.scalars(select(CuratedUse).where(CuratedUse.answer_id == answer.id))).all()


async def test_ca6_a_topic_back_in_the_inbox_adds_its_questions_to_the_answer_written_for_it(
    app: AsgiApp, db: Sessions, upstream: ScriptedOpenAI
) -> None:
    """Visitors keep asking a topic in words its curated answer did not match: the topic is back in the inbox, with a
    link that opens the answer with those questions added to its phrasings; saved, the answer matches them (a new
    version) and the topic leaves the inbox again."""
    first, again = "Can Hazel's bread be made without any gluten?", "Can Hazel's bread be made entirely gluten-free?"
    await answered(db, first, creator=CREATOR, unanswered=True)
    async with app.client() as client:
        csrf = await _signed_in(client)  # loading the dashboard groups the gap
        [topic] = [t for t in await gaps_store.list_topics(db, creator=CREATOR) if first in t.examples]
        written = await answers_store.add_answer(
            db, creator=CREATOR, questions=["Is there a version for coeliacs?"], answer="No: every loaf uses wheat.",
            topic_id=topic.id,
        )  # fmt: skip
        page = await client.get("/admin")
        assert topic.id not in page.text  # answered: out of the inbox
        await answered(db, again, creator=CREATOR, unanswered=True)  # not matched by the answer: a gap again
        page = await client.get("/admin")
        link = f"/admin/answers/{written.id}?topic={topic.id}"
        assert link in page.text and 'data-testid="gap-unmatched"' in page.text

        form = await client.get(link)
        assert form.status_code == 200 and 'data-testid="phrasings-added"' in form.text
        phrasings = re.search(r'name="questions"[^>]*>([^<]*)</textarea>', form.text)
        assert phrasings is not None
        lines = [html.unescape(line) for line in phrasings[1].splitlines()]
        assert lines[0] == "Is there a version for coeliacs?" and first in lines and again in lines, lines
        assert f'name="topic" value="{topic.id}"' in form.text
        for bad in ("nope\x00", "A" * 22):  # ids through the one gate: malformed and unknown alike are not found
            assert (await client.get(f"/admin/answers/{written.id}", params={"topic": bad})).status_code == 404

        saved = await client.post(
            f"/admin/answers/{written.id}",
            data={"csrf": csrf, "questions": "\n".join(lines), "answer": written.answer, "documents": "",
                  "topic": topic.id},
        )  # fmt: skip
        assert saved.status_code == 303
        stored = await answers_store.get_answer(db, answer_id=written.id)
        assert stored is not None and stored.version == 2 and stored.questions == lines
        assert [t for t in await gaps_store.list_topics(db, creator=CREATOR) if t.id == topic.id] == []
        await asyncio.sleep(REFRESH)
        reply = await post_chat(client, {"query": again, "creator": CREATOR})
        assert reply.stream.done["curated_answer"] == {"id": written.id, "version": 2}
