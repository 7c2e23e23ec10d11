"""`fold`: names compared without case or accents, whatever the text's alphabet."""

from __future__ import annotations

import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from backend.grounding.terms import fold


def _fold_by_characters(text: str) -> str:
    # The definition: lowercase, NFKD, combining marks dropped. `fold` skips the walk for ASCII text.
    return "".join(c for c in unicodedata.normalize("NFKD", text.lower()) if not unicodedata.combining(c))


@given(st.text() | st.text(alphabet=st.characters(max_codepoint=127)))
def test_fold_is_lowercase_without_accents_for_any_text(text: str) -> None:
    assert fold(text) == _fold_by_characters(text)


def test_fold_meets_accented_and_plain_spellings() -> None:
    assert fold("Inês Calloway") == fold("INES CALLOWAY") == "ines calloway"
    assert fold("ﬁne Crème brûlée") == "fine creme brulee"
