"""`lorechat ask` streams one turn through the service's own lifespan: sources first, then the answer."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli import main
from tests.conftest import DEMO_CONTENT


@pytest.fixture
def extractive_only(lorechat_env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LORECHAT_LLM__TIERS", '[{"name": "extractive", "kind": "extractive"}]')
    result = CliRunner().invoke(main, ["ingest", str(DEMO_CONTENT / "tomas-reyes"), "--json"])
    assert result.exit_code == 0, result.output
    return lorechat_env


def test_ask_prints_sources_then_answer_and_continues_a_conversation(extractive_only: Path) -> None:
    runner = CliRunner()
    first = runner.invoke(main, ["ask", "What is the Brassard rest?", "--creator", "tomas-reyes"])
    assert first.exit_code == 0, first.output
    assert "Sources" in first.stderr and "[1]" in first.stderr
    assert "[1]" in first.stdout  # the extractive answer cites its sources
    conversation = re.search(r"--conversation (\S+)\)", first.stderr)
    assert conversation, first.stderr

    follow_up = runner.invoke(
        main, ["ask", "How long is it?", "--creator", "tomas-reyes", "--conversation", conversation.group(1)]
    )
    assert follow_up.exit_code == 0, follow_up.output
    assert f"conversation {conversation.group(1)}" in follow_up.stderr


def test_ask_unknown_creator_is_a_clear_error(extractive_only: Path) -> None:
    result = CliRunner().invoke(main, ["ask", "hello?", "--creator", "nobody"])
    assert result.exit_code == 2
    assert "Unknown creator 'nobody'" in result.stderr
