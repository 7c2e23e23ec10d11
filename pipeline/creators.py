"""Creator folders: find them under a content root and read each one's creator.yaml into a Creator."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import Any

import yaml

from backend.stages import Creator
from pipeline.sources.common import OutsideRoot, read_confined

CREATOR_FILE = "creator.yaml"
SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_FIELDS = {"name", "bio", "personality", "phrases", "links"}


class CreatorError(ValueError):
    """A creator folder or its creator.yaml is unusable; the message names the file and the field."""


def discover_creators(root: Path) -> list[Path]:
    """Creator folders under `root`, sorted by name. `root` is either a content root (a folder of creator
    folders) or one creator folder (it holds creator.yaml itself). Sub-folders without creator.yaml and
    hidden ones are not creators and are skipped."""
    if not root.is_dir():
        raise CreatorError(f"{root}: not a folder")
    if (root / CREATOR_FILE).is_file():
        return [root]
    folders = sorted(
        child
        for child in root.iterdir()
        # A creator folder reached through a symbolic link is not followed, like any folder link inside one.
        if child.is_dir()
        and not child.is_symlink()
        and not child.name.startswith(".")
        and (child / CREATOR_FILE).is_file()
    )
    if not folders:
        raise CreatorError(
            f"{root}: no creator folders found (expected <slug>/{CREATOR_FILE} inside, or {CREATOR_FILE} here)"
        )
    return folders


def load_creator(folder: Path) -> Creator:
    """Read and validate `<folder>/creator.yaml`; the slug is the folder name."""
    slug = folder.name
    if not SLUG.fullmatch(slug):
        raise CreatorError(
            f"{folder}: folder name {slug!r} is not a valid creator slug "
            "(lowercase letters, digits and single hyphens, e.g. 'ada-lovelace')"
        )
    path = folder / CREATOR_FILE
    data = _read_yaml(path)
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        allowed = ", ".join(sorted(_FIELDS))
        raise CreatorError(f"{path}: unknown field(s) {', '.join(map(str, unknown))}; allowed: {allowed}")
    name = _text(path, data, "name")
    if not name:
        raise CreatorError(f"{path}: field 'name' is required and must be non-empty text")
    links = _text_list(path, data, "links")
    for link in links:
        if not link.startswith(("https://", "http://")):
            raise CreatorError(f"{path}: field 'links' must hold http(s) URLs, got {link!r}")
    return Creator(
        slug=slug,
        name=name,
        bio=_text(path, data, "bio"),
        personality=_text(path, data, "personality"),
        phrases=_text_list(path, data, "phrases"),
        links=links,
    )


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        raw = read_confined(path, path.parent)  # creator.yaml may not be a link out of its folder either
    except OutsideRoot as exc:
        raise CreatorError(f"{path}: {exc}") from None
    except FileNotFoundError:
        raise CreatorError(f"{path}: missing; every creator folder needs a {CREATOR_FILE}") from None
    except OSError as exc:
        raise CreatorError(f"{path}: cannot read ({exc.strerror or type(exc).__name__})") from None
    try:
        data = yaml.safe_load(raw.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise CreatorError(f"{path}: not valid UTF-8") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise CreatorError(f"{path}: invalid YAML{where}: {problem}") from None
    if data is None:
        raise CreatorError(f"{path}: empty; field 'name' is required")
    if not isinstance(data, dict):
        raise CreatorError(f"{path}: must be a mapping of fields (name, bio, ...), not a {type(data).__name__}")
    return data


def _clean(value: str) -> str:
    return unicodedata.normalize("NFC", value).strip()


def _text(path: Path, data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise CreatorError(f"{path}: field '{key}' must be text, got {type(value).__name__}")
    return _clean(value)


def _text_list(path: Path, data: dict[str, Any], key: str) -> tuple[str, ...]:
    value = data.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) and item.strip() for item in value):
        raise CreatorError(f"{path}: field '{key}' must be a list of non-empty text items")
    return tuple(_clean(item) for item in value)
