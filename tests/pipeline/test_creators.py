"""Creator folders: discovery under a content root and creator.yaml validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.creators import CreatorError, discover_creators, load_creator

CONTENT = Path(__file__).resolve().parents[2] / "examples" / "content"


def make_creator(root: Path, slug: str, yaml_text: str) -> Path:
    folder = root / slug
    folder.mkdir(parents=True)
    (folder / "creator.yaml").write_text(yaml_text, encoding="utf-8")
    return folder


def test_demo_corpus_has_three_distinct_creators() -> None:
    folders = discover_creators(CONTENT)
    creators = [load_creator(folder) for folder in folders]
    assert [c.slug for c in creators] == ["hazel-marsh", "ines-calloway", "tomas-reyes"]
    for creator in creators:
        assert creator.name and creator.bio and creator.personality
        assert 3 <= len(creator.phrases) <= 5
        assert creator.links and all(link.startswith("https://example.com/") for link in creator.links)
    assert len({c.personality for c in creators}) == 3
    assert creators[1].name == "Dr. Inês Calloway"


def test_full_creator_yaml(tmp_path: Path) -> None:
    folder = make_creator(
        tmp_path,
        "ada-99",
        "name: Ada\nbio: Bakes.\npersonality: |\n  Calm.\n  Precise.\nphrases: [Measure twice, Bake once]\n"
        "links:\n  - https://example.com/ada\n",
    )
    creator = load_creator(folder)
    assert creator.slug == "ada-99"
    assert creator.name == "Ada"
    assert creator.personality == "Calm.\nPrecise."
    assert creator.phrases == ("Measure twice", "Bake once")
    assert creator.links == ("https://example.com/ada",)


def test_only_name_is_required(tmp_path: Path) -> None:
    creator = load_creator(make_creator(tmp_path, "bo", "\ufeffname: Bo\n"))
    assert (creator.name, creator.bio, creator.phrases, creator.links) == ("Bo", "", (), ())


@pytest.mark.parametrize("slug", ["Ada", "ada_lovelace", "ada--x", "-ada", "ada-", "ada lovelace", "adà"])
def test_bad_slug_is_refused(tmp_path: Path, slug: str) -> None:
    folder = make_creator(tmp_path, slug, "name: Ada\n")
    with pytest.raises(CreatorError, match="not a valid creator slug"):
        load_creator(folder)


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        ("bio: no name here\n", "field 'name' is required"),
        ("name: ''\n", "field 'name' is required"),
        ("name: [a, b]\n", "field 'name' must be text"),
        ("name: Ada\nbio: 42\n", "field 'bio' must be text"),
        ("name: Ada\nphrases: just one string\n", "field 'phrases' must be a list"),
        ("name: Ada\nphrases: [ok, '']\n", "field 'phrases' must be a list"),
        ("name: Ada\nlinks: [ftp://x.org]\n", "field 'links' must hold http"),
        ("name: Ada\nphrase: [typo]\n", "unknown field\\(s\\) phrase"),
        ("name: Ada\n  bio: : :\n", "invalid YAML at line"),
        ("- just\n- a list\n", "must be a mapping"),
        ("", "empty"),
    ],
)
def test_invalid_yaml_names_file_and_field(tmp_path: Path, yaml_text: str, expected: str) -> None:
    folder = make_creator(tmp_path, "ada", yaml_text)
    with pytest.raises(CreatorError, match=expected) as info:
        load_creator(folder)
    assert str(folder / "creator.yaml") in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_yaml_and_invalid_utf8(tmp_path: Path) -> None:
    (tmp_path / "ghost").mkdir()
    with pytest.raises(CreatorError, match=r"missing; every creator folder needs a creator\.yaml"):
        load_creator(tmp_path / "ghost")
    folder = tmp_path / "latin"
    folder.mkdir()
    (folder / "creator.yaml").write_bytes(b"name: Jos\xe9\n")
    with pytest.raises(CreatorError, match="not valid UTF-8"):
        load_creator(folder)


def test_creator_error_is_a_value_error() -> None:
    assert issubclass(CreatorError, ValueError)


def test_discover_content_root_skips_non_creators(tmp_path: Path) -> None:
    make_creator(tmp_path, "zed", "name: Zed\n")
    make_creator(tmp_path, "amy", "name: Amy\n")
    make_creator(tmp_path, ".hidden", "name: Hidden\n")
    (tmp_path / "notes").mkdir()
    (tmp_path / "README.md").write_text("hello", encoding="utf-8")
    assert discover_creators(tmp_path) == [tmp_path / "amy", tmp_path / "zed"]


def test_discover_single_creator_folder(tmp_path: Path) -> None:
    folder = make_creator(tmp_path, "amy", "name: Amy\n")
    make_creator(folder, "nested", "name: Nested\n")  # a creator folder's sub-folders are content
    assert discover_creators(folder) == [folder]


def test_discover_errors(tmp_path: Path) -> None:
    with pytest.raises(CreatorError, match="no creator folders found"):
        discover_creators(tmp_path)
    with pytest.raises(CreatorError, match="not a folder"):
        discover_creators(tmp_path / "missing")
