"""'Did you mean …?' for names a person typed into the configuration."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """` (did you mean 'x'?)` when one candidate is close to `word`, else an empty string."""
    close = difflib.get_close_matches(word, sorted(set(candidates)), n=1, cutoff=0.7)
    return f" (did you mean {close[0]!r}?)" if close else ""
