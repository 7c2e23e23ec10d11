"""Settings: every setting documented in config.yaml, env over file over defaults, secrets refused in the file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel, ValidationError

from backend.settings import TIER_SETTINGS_CLASSES, LLMSettings, Settings
from tests.conftest import REPO

CONFIG = REPO / "config.yaml"


def setting_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    paths = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            paths.extend(setting_paths(annotation, f"{prefix}{name}."))
        else:
            paths.append(f"{prefix}{name}")
    return paths


def test_every_setting_is_in_config_yaml() -> None:
    text = CONFIG.read_text(encoding="utf-8")
    missing = [path for path in setting_paths(Settings) if f"{path.rsplit('.', 1)[-1]}:" not in text]
    assert missing == []
    # Tier settings of every kind, documented as keys of the tiers or of the commented openai example.
    undocumented = [
        f"{kind.__name__}.{name}"
        for kind in TIER_SETTINGS_CLASSES
        for name in kind.model_fields
        if f"{name}:" not in text
    ]
    assert undocumented == []


def test_config_yaml_tiers_are_valid_for_their_kind() -> None:
    tiers = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))["llm"]["tiers"]
    assert [type(tier).__name__ for tier in LLMSettings(tiers=tiers).tiers] == ["ExtractiveTierSettings"]


def test_config_yaml_tier_examples_are_valid() -> None:
    # The commented examples (a hosted model, a local model) must work when a curator uncomments them.
    example = [
        line.removeprefix("  #")
        for line in CONFIG.read_text(encoding="utf-8").splitlines()
        if line.startswith("  #   ")
    ]  # "  #   - name: …" and its indented keys
    tiers = yaml.safe_load("\n".join(example))
    settings = LLMSettings(tiers=tiers).tiers
    assert [type(tier).__name__ for tier in settings] == ["OpenAITierSettings", "LlamaCppTierSettings"]
    assert settings[1].hold_until_supported  # local models are checked before they are shown


@pytest.mark.parametrize(
    ("tier", "complaint"),
    [
        ({"name": "hosted", "kind": "openai", "model": "m"}, "base_url"),  # not a silent extractive tier
        ({"name": "hosted", "kind": "openai", "base_url": "https://x.test/v1"}, "model"),
        ({"name": "hosted", "kind": "openai", "base_url": "x.test", "model": "m"}, "http(s) URL"),
        ({"name": "local", "kind": "llama_cpp", "base_url": "https://x.test"}, "base_url"),  # wrong kind's key
        ({"name": "local", "kind": "llama_cpp", "n_thread": 2}, "n_thread"),  # a typo
        ({"name": "x", "kind": "gpt"}, "kind"),
    ],
)
def test_a_tier_with_keys_wrong_for_its_kind_is_refused(tier: dict[str, object], complaint: str) -> None:
    with pytest.raises(ValidationError) as refused:
        LLMSettings(tiers=[tier])
    assert complaint in str(refused.value)


def test_config_yaml_is_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LORECHAT_CONFIG", str(CONFIG))
    from_file = Settings()
    monkeypatch.setenv("LORECHAT_CONFIG", "/nonexistent/config.yaml")
    assert from_file.model_dump() == Settings().model_dump()


def test_environment_overrides_the_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("retrieval:\n  k: 5\nindex:\n  kind: server\n  url: http://qdrant.test:6333\n", encoding="utf-8")
    monkeypatch.setenv("LORECHAT_CONFIG", str(config))
    monkeypatch.setenv("LORECHAT_RETRIEVAL__K", "3")
    monkeypatch.setenv("LORECHAT_DATA_DIR", str(tmp_path / "d"))
    settings = Settings()
    assert settings.retrieval.k == 3
    assert settings.index.kind == "server"
    assert settings.data_dir == tmp_path / "d"
    assert settings.index_path == tmp_path / "d" / "index"


def secret_settings(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every SecretStr setting, found independently of backend.settings.SECRET_PATHS."""
    found = []
    for name, field in model.model_fields.items():
        if "SecretStr" in str(field.annotation):
            found.append((*prefix, name))
        elif isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            found.extend(secret_settings(field.annotation, (*prefix, name)))
    return found


def test_the_secrets_are_known() -> None:
    secrets = secret_settings(Settings)
    assert ("auth", "admin_token") in secrets and ("auth", "jwt_secret") in secrets
    assert ("index", "api_key") in secrets


@pytest.mark.parametrize("path", secret_settings(Settings), ids=".".join)
@pytest.mark.parametrize("value", ["hunter2", '""'])
def test_admin_token_in_config_yaml_is_refused_like_every_secret(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, path: tuple[str, ...], value: str
) -> None:
    # Issue 9: auth.admin_token was accepted from the file while jwt_secret and index.api_key were refused.
    config = tmp_path / "config.yaml"
    text = "".join(f"{'  ' * depth}{key}:\n" for depth, key in enumerate(path[:-1]))
    config.write_text(f"{text}{'  ' * (len(path) - 1)}{path[-1]}: {value}\n", encoding="utf-8")
    monkeypatch.setenv("LORECHAT_CONFIG", str(config))
    env = "LORECHAT_" + "__".join(key.upper() for key in path)
    with pytest.raises(ValueError, match=env):
        Settings()


@pytest.mark.parametrize("path", secret_settings(Settings), ids=".".join)
def test_every_secret_is_documented_as_environment_only(path: tuple[str, ...]) -> None:
    text = CONFIG.read_text(encoding="utf-8")
    env = "LORECHAT_" + "__".join(key.upper() for key in path)
    assert f"# {path[-1]}: set {env}" in text  # commented out, naming the variable
    assert ".".join(path) in text.splitlines()[3]  # and listed in the header's refusal note
    assert f"\n{'  ' * (len(path) - 1)}{path[-1]}:" not in text  # never set


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("chunking:\n  size_tokens: 64\n  overlap_tokens: 64\n", "overlap_tokens"),
        ("auth:\n  jwt_algorithms: [none]\n", "none"),
        ("llm:\n  tiers: [{name: a, kind: extractive}, {name: a, kind: extractive}]\n", "unique"),
        ("retreival:\n  k: 3\n", "retreival"),
    ],
)
def test_bad_values_are_clear_errors(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, yaml_text: str, message: str
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml_text, encoding="utf-8")
    monkeypatch.setenv("LORECHAT_CONFIG", str(config))
    with pytest.raises(ValueError, match=message):
        Settings()
