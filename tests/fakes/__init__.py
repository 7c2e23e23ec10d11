"""Fakes for remote services we do not own (only the remote LLM API: see STYLE.md habit 10)."""

from tests.fakes.openai_server import Script, ScriptedOpenAI

__all__ = ["Script", "ScriptedOpenAI"]
