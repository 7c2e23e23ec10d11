"""The shipped answer set through the real service path, with floors (issue 12): the extractive tier on embedded
defaults, then the openai tier against a scripted upstream that adds a deliberately unsupported claim to every
answer (each must be flagged)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from click.testing import CliRunner

from backend.errors import LorechatError
from backend.settings import RetrievalSettings, Settings, get_settings
from pipeline.cli import main
from pipeline.eval_answers import TurnResult, load_questions, run_questions, summarize
from pipeline.eval_answers_cli import indexed_settings
from tests.backend.api.harness import Backend, extractive_tier, make_settings, upstream_tier
from tests.conftest import DEMO_CONTENT, REPO
from tests.fakes import Script, ScriptedOpenAI

ANSWERS = REPO / "examples" / "eval" / "answers.jsonl"
INVENTED = " She also bakes it at 300 degrees for 3 hours in a copper pan [1]."


def settings_for(tiers: list, work: Path) -> Settings:
    # Embedded defaults for retrieval (k = 8), not the HTTP suite's smaller k.
    base = make_settings(
        data_dir=work / "unused", backend=Backend("embedded", "", ""), tiers=tiers, retrieval=RetrievalSettings()
    )
    return indexed_settings(base, DEMO_CONTENT, work)


@pytest.fixture(scope="module")
def extractive_run(tmp_path_factory: pytest.TempPathFactory) -> list[TurnResult]:
    settings = settings_for([extractive_tier()], tmp_path_factory.mktemp("eval-extractive"))
    return anyio.run(run_questions, settings, load_questions(ANSWERS))


def test_the_shipped_set_is_big_enough() -> None:
    questions = load_questions(ANSWERS)
    turns = len(questions) + sum(1 for q in questions if q.follow_up)
    assert turns >= 50
    assert sum(1 for q in questions if q.follow_up) >= 5
    assert sum(1 for q in questions if q.unanswerable) >= 10


def test_a_citation_marker_states_no_fact() -> None:
    """A fact asking for a bare number ("4" workers) is stated by the answer's words, never by its citation "[4]"."""
    cited = TurnResult(id="t", question="How many workers?", unanswerable=False, facts=("4",))
    cited.answer = "Gunicorn starts one worker by default. [4] Workers are processes. [1, 4]"
    assert cited.facts_found == 0
    cited.answer = "The example starts 4 workers with -w. [2]"
    assert cited.facts_found == 1
    indexed = TurnResult(id="t", question="Where is the first argument?", unanswerable=False, facts=(r"argv\[1\]",))
    indexed.answer = "It is `sys.argv[1]`. [1]"
    assert indexed.facts_found == 1


def test_a_fact_pattern_with_a_control_character_is_refused_with_its_line(tmp_path: Path) -> None:
    # "\\b-n\\b" typed with single backslashes in JSON reads as backspaces: the pattern could never match.
    bad = tmp_path / "answers.jsonl"
    bad.write_text(
        '{"id": "a", "question": "Which flag?", "facts": ["--force"]}\n'
        '{"id": "b", "question": "Which flag previews?", "facts": ["--dry-run|\\\\B-n\\b"]}\n',
        encoding="utf-8",
    )
    with pytest.raises(LorechatError) as raised:
        load_questions(bad)
    assert ":2: not a question line" in raised.value.message and "control character" in raised.value.message


def test_extractive_tier_meets_the_floors(extractive_run: list[TurnResult]) -> None:
    report = summarize(extractive_run)
    assert set(report) == {"extractive"}, report
    figures = report["extractive"]
    assert figures["errors"] == 0
    assert figures["fact_recall"] >= 0.95, figures
    assert figures["citation_precision"] >= 0.95, figures
    assert figures["missed_refusal_rate"] <= 0.10, figures
    assert figures["false_refusal_rate"] <= 0.05, figures


@pytest.fixture
def upstream() -> Iterator[ScriptedOpenAI]:
    with ScriptedOpenAI() as server:
        yield server


def test_openai_tier_with_invented_claims_gets_every_one_flagged(
    extractive_run: list[TurnResult], upstream: ScriptedOpenAI, tmp_path: Path
) -> None:
    # The upstream replays the extractive answers (faithful, cited), each answerable one with an invented
    # sentence appended: a temperature, a time and a pan no source mentions, cited as [1].
    for result in extractive_run:
        text = result.answer if result.unanswered else result.answer + INVENTED
        upstream.enqueue(Script(tokens=[word + " " for word in text.split(" ")]))
    settings = settings_for([upstream_tier(upstream, first=10.0, idle=10.0), extractive_tier()], tmp_path)
    results = anyio.run(run_questions, settings, load_questions(ANSWERS))

    report = summarize(results)
    assert set(report) == {"upstream"}, report
    figures = report["upstream"]
    assert figures["fact_recall"] >= 0.95, figures
    assert figures["missed_refusal_rate"] <= 0.10 and figures["false_refusal_rate"] <= 0.05, figures
    invented = [r.citations[-1] for r in results if not r.unanswered]
    assert invented and not any(c.supported for c in invented)  # every deliberate invention flagged
    genuine = [c for r in results for c in (r.citations if r.unanswered else r.citations[:-1]) if c.claim and c.sources]
    assert sum(c.supported for c in genuine) / len(genuine) >= 0.95


def test_a_held_tier_shows_only_answers_the_check_supports(
    extractive_run: list[TurnResult], upstream: ScriptedOpenAI, tmp_path: Path
) -> None:
    # hold_until_supported (the default for local models): every other answerable turn's upstream answer
    # carries an invented claim and must never reach the visitor; the extractive tier answers those instead.
    invents: list[bool] = []
    for position, result in enumerate(extractive_run):
        invented = not result.unanswered and position % 2 == 1
        invents.append(invented)
        text = result.answer + (INVENTED if invented else "")
        upstream.enqueue(Script(tokens=[word + " " for word in text.split(" ")]))
    held = upstream_tier(upstream, first=10.0, idle=10.0).model_copy(update={"hold_until_supported": True})
    results = anyio.run(run_questions, settings_for([held, extractive_tier()], tmp_path), load_questions(ANSWERS))

    for result, before, invented in zip(results, extractive_run, invents, strict=True):
        assert INVENTED.strip() not in result.answer, result.id
        faithful = not any(c.claim and not c.supported for c in before.citations)
        has_claims = any(c.claim for c in before.citations) or before.unanswered
        expected = "upstream" if faithful and has_claims and not invented else "extractive"
        assert result.tier == expected, (result.id, result.tier, result.answer)
    report = summarize(results)
    assert report["upstream"]["turns"] >= len(results) // 3, report
    assert report["upstream"]["unsupported_claim_rate"] == 0.0, report
    shown = [c for r in results for c in r.citations if c.claim and c.sources]
    assert sum(c.supported for c in shown) / len(shown) >= 0.95


def test_the_cli_shows_each_turn_and_prints_the_table_whole_when_piped(
    lorechat_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    questions = tmp_path / "two.jsonl"
    questions.write_text("".join(ANSWERS.read_text().splitlines(keepends=True)[:2]))
    monkeypatch.setenv("LORECHAT_LLM__TIERS", '[{"name": "extractive", "kind": "extractive"}]')
    get_settings.cache_clear()
    result = CliRunner().invoke(main, ["eval-answers", "--questions", str(questions)])
    assert result.exit_code == 0, result.output
    turns = [json.loads(line) for line in questions.read_text().splitlines()]
    total = len(turns) + sum(1 for turn in turns if turn.get("follow_up"))
    # Progress on stderr, one line per finished turn, in order.
    progress = re.findall(r"\[(\d+)/(\d+)\] (\S+): (\S+)", result.stderr)
    assert [(int(n), int(of)) for n, of, _, _ in progress] == [(n, total) for n in range(1, total + 1)]
    assert progress[0][2] == turns[0]["id"] and {tier for *_, tier in progress} <= {"extractive", "unanswered"}
    # The table on stdout, every header whole although stdout is not a terminal.
    for header in ("fact_recall", "citation_precision", "unsupported_claim_rate", "ttft_p99_ms"):
        assert header in result.stdout, result.stdout
    assert re.search(r"│ extractive\s+│\s+\d+ │", result.stdout), result.stdout


def _section(bread: str, heat: int, minutes: str) -> str:
    """A section long enough that a few of them fill the extractive tier's window, so the history has no room."""
    words = (
        f"{bread} bread has its own habits. The {bread.lower()} flour drinks water slowly and the dough feels "
        f"different in the hands from a white dough. Many bakers keep a separate notebook for {bread.lower()}, "
        "because the crumb, the crust and the flavour all answer to small changes in the flour and the starter. "
    ) * 4
    facts = f"Bake {bread.lower()} bread at {heat} degrees. {bread} bread needs {minutes} minutes in the oven."
    return f"# {bread} bread\n\n{words}\n\n{facts}\n"


def test_a_follow_up_keeps_its_question_when_the_window_has_no_room_for_the_history(tmp_path: Path) -> None:
    """The service hands the extractive tier the question a follow-up was searched with, even when the prompt's
    window dropped the conversation for the sources (history goes first): "And for how long?" after the spelt
    loaf's temperature is answered with the spelt loaf's time, not another loaf's."""
    content = tmp_path / "content" / "mill-notes"
    content.mkdir(parents=True)
    (content / "creator.yaml").write_text("name: Mill Notes\n", encoding="utf-8")
    breads = [("Rye", 230, "fifty"), ("Spelt", 210, "forty"), ("Barley", 220, "fifty-five"), ("Oat", 200, "thirty")]
    (content / "breads.md").write_text("\n".join(_section(*bread) for bread in breads), encoding="utf-8")
    base = make_settings(
        data_dir=tmp_path / "unused",
        backend=Backend("embedded", "", ""),
        tiers=[extractive_tier()],
        retrieval=RetrievalSettings(),
    )
    settings = indexed_settings(base, tmp_path / "content", tmp_path / "work")
    follow = {"question": "And for how long?", "facts": ["forty minutes"]}
    row = {"id": "t1", "question": "At what temperature should I bake the spelt bread?", "facts": ["210"]}
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({**row, "creator": "mill-notes", "follow_up": follow}) + "\n", encoding="utf-8")
    first, second = anyio.run(run_questions, settings, load_questions(questions))
    assert "210 degrees" in first.answer, first.answer
    assert "forty minutes" in second.answer and "fifty" not in second.answer, second.answer
