"""Ids (backend/ids.py): what `new_id` makes passes the one gate, and can be typed as a command-line argument."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from backend import ids
from backend.ids import is_valid_id, new_id


def test_a_new_id_is_valid_and_never_opens_like_an_option() -> None:
    made = [new_id() for _ in range(2000)]
    assert len(set(made)) == len(made)
    assert all(is_valid_id(value) and len(value) == 22 for value in made)
    assert all(value[0].isalnum() for value in made)  # "-x..." would read as an option: `answers edit -x...`


def test_a_drawn_id_opening_with_a_dash_or_underscore_is_drawn_again(monkeypatch: pytest.MonkeyPatch) -> None:
    drawn: Iterator[str] = iter(["-_OpensLikeAnOption0000", "_OpensWithUnderscore000", "Xk3-plain_id_value_0000"])
    monkeypatch.setattr(ids.secrets, "token_urlsafe", lambda nbytes: next(drawn))
    assert new_id() == "Xk3-plain_id_value_0000"
