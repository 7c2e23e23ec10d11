"""The curator CLI on the demo corpus: JSON shapes, batch search, exit codes, and the creator canary (S4)."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from backend.settings import get_settings
from pipeline.cli import main
from tests.conftest import DEMO_CONTENT, REPO

HIT_KEYS = {"creator", "document_id", "source", "title", "url", "snippet", "score", "start_seconds", "end_seconds"}


@pytest.fixture(scope="module")
def demo_index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The demo corpus ingested once through the CLI into a module-wide data directory."""
    data_dir = tmp_path_factory.mktemp("cli-data")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LORECHAT_DATA_DIR", str(data_dir))
        patch.setenv("LORECHAT_CONFIG", str(REPO / "config.yaml"))
        get_settings.cache_clear()
        result = CliRunner().invoke(main, ["ingest", str(DEMO_CONTENT), "--json"])
        assert result.exit_code == 0, result.output
        yield data_dir
    get_settings.cache_clear()


@pytest.fixture
def cli(demo_index: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    monkeypatch.setenv("LORECHAT_DATA_DIR", str(demo_index))
    monkeypatch.setenv("LORECHAT_CONFIG", str(REPO / "config.yaml"))
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


def canaries() -> list[tuple[str, str]]:
    """(term, creator) rows of examples/content/CANARIES.md."""
    rows = re.findall(r"^\| ([^|]+?) \| ([a-z0-9-]+) \|", (DEMO_CONTENT / "CANARIES.md").read_text(), re.M)
    return [(term, creator) for term, creator in rows if creator != "creator slug"]


def test_second_ingest_reports_nothing_new(cli: CliRunner) -> None:
    result = cli.invoke(main, ["ingest", str(DEMO_CONTENT), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report) == {"added", "updated", "unchanged", "pruned", "failed"}
    assert (report["added"], report["updated"], report["pruned"], report["failed"]) == (0, 0, 0, [])
    assert report["unchanged"] > 10


def test_search_json_shape(cli: CliRunner) -> None:
    result = cli.invoke(main, ["search", "how warm should a starter be", "--json", "--k", "5"])
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)
    assert 0 < len(hits) <= 5
    assert all(set(hit) == HIT_KEYS for hit in hits)


@pytest.mark.parametrize("mode", ["hybrid", "dense", "bm25"])
def test_creator_scope_never_leaks_a_canary(cli: CliRunner, mode: str) -> None:
    rows = canaries()
    assert len({creator for _, creator in rows}) >= 3
    creators = sorted({creator for _, creator in rows})
    for term, owner in rows:
        for creator in creators:
            result = cli.invoke(main, ["search", term, "--creator", creator, "--mode", mode, "--k", "20", "--json"])
            assert result.exit_code == 0, result.output
            hits = json.loads(result.stdout)
            assert {hit["creator"] for hit in hits} <= {creator}
            if creator != owner:
                assert not any(term.lower() in hit["snippet"].lower() for hit in hits)
            elif mode == "bm25":
                assert hits, f"{owner}'s own canary '{term}' was not found"


def test_transcript_results_link_to_their_moment(cli: CliRunner) -> None:
    result = cli.invoke(main, ["search", "microbes in the jar lactic acid bacteria", "--json", "--k", "10"])
    hits = json.loads(result.stdout)
    timed = [hit for hit in hits if hit["source"].endswith((".vtt", ".srt"))]
    assert timed, hits
    assert all(hit["start_seconds"] is not None and hit["end_seconds"] >= hit["start_seconds"] for hit in timed)


def test_batch_search_prints_one_line_per_query(cli: CliRunner, tmp_path: Path) -> None:
    batch = tmp_path / "queries.jsonl"
    batch.write_text(
        '{"query": "salt percentage", "creator": "tomas-reyes"}\n'
        '{"query": "what is the Vessen index"}\n'
        "not json\n"
        '{"query": "x", "creator": "nobody"}\n',
        encoding="utf-8",
    )
    result = cli.invoke(main, ["search", "--batch", str(batch), "--k", "3"])
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.exit_code == 1  # two bad lines
    assert lines[0]["query"] == "salt percentage" and lines[0]["creator"] == "tomas-reyes"
    assert {hit["creator"] for hit in lines[0]["results"]} == {"tomas-reyes"}
    assert lines[1]["creator"] is None and len(lines[1]["results"]) == 3
    assert "invalid JSON" in lines[2]["error"]
    assert "unknown creator" in lines[3]["error"]


def test_unknown_creator_is_a_clear_error(cli: CliRunner) -> None:
    result = cli.invoke(main, ["search", "salt", "--creator", "nobody"])
    assert result.exit_code == 2
    assert "unknown creator 'nobody'" in result.stderr
    assert "Traceback" not in result.output


def test_creators_lists_counts(cli: CliRunner) -> None:
    result = cli.invoke(main, ["creators", "--json"])
    rows = json.loads(result.stdout)
    assert {row["slug"] for row in rows} >= {"hazel-marsh", "ines-calloway", "tomas-reyes"}
    assert all(row["documents"] > 0 and row["chunks"] >= row["documents"] for row in rows)


def test_failed_files_make_a_nonzero_exit_but_the_rest_lands(lorechat_env: Path, tmp_path: Path) -> None:
    content = tmp_path / "content"
    shutil.copytree(DEMO_CONTENT / "hazel-marsh", content / "hazel-marsh")
    (content / "hazel-marsh" / "broken.vtt").write_text("WEBVTT\n\nnot a timestamp --> ever\nhello\n")
    result = CliRunner().invoke(main, ["ingest", str(content), "--json"])
    report = json.loads(result.stdout)
    assert result.exit_code == 1
    assert [f["source"] for f in report["failed"]] == ["hazel-marsh/broken.vtt"]
    assert report["added"] > 0


def test_usage_errors(cli: CliRunner) -> None:
    assert cli.invoke(main, ["search"]).exit_code == 2
    assert cli.invoke(main, ["delete"]).exit_code == 2
    assert cli.invoke(main, ["delete", "--creator", "a", "--document", "b"]).exit_code == 2
