"""Map recogniser text onto IVR menu branches.

Recognisers return text that differs from the prompt's keywords in casing, punctuation, digits versus
words and small slips ("credit cards", "operater"). Matching therefore works on normalised text: exact
phrase containment first (score 1.0), then a token-level fuzzy comparison that only tolerates small
edits. A phrase never matches another branch better than its own, because each branch is scored on its
own phrases and the best branch wins only with a strict margin over a different branch.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from difflib import SequenceMatcher

__all__ = ["KeywordMatch", "KeywordSet", "match", "normalise", "tokens"]

_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
         "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]

# A CJK ideograph, kana or hangul syllable is a "word" of its own: these scripts have no spaces.
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]")
_NUMBER = re.compile(r"\d+")


def _number_words(n: int) -> str:
    """English words for a non-negative integer; long digit strings are read digit by digit (PINs, phones)."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    if n < 1000:
        rest = n % 100
        return _ONES[n // 100] + " hundred" + ("" if rest == 0 else " " + _number_words(rest))
    if n < 1_000_000:
        rest = n % 1000
        return _number_words(n // 1000) + " thousand" + ("" if rest == 0 else " " + _number_words(rest))
    return " ".join(_ONES[int(d)] for d in str(n))


def _digits(m: re.Match[str]) -> str:
    s = m.group(0)
    if len(s) > 1 and s.startswith("0") or len(s) > 6:  # "007", card numbers: said digit by digit
        return " " + " ".join(_ONES[int(d)] for d in s) + " "
    return " " + _number_words(int(s)) + " "


def normalise(text: str) -> str:
    """Lower case, digits as English words, punctuation gone, CJK characters space-separated."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = _NUMBER.sub(_digits, text)
    out: list[str] = []
    for ch in text:
        if _CJK.match(ch):
            out.append(f" {ch} ")
        elif ch.isalnum() or ch == "'":
            out.append(ch)
        else:
            out.append(" ")
    words = [w.strip("'") for w in "".join(out).split()]
    return " ".join(w for w in words if w)


def tokens(text: str) -> tuple[str, ...]:
    return tuple(normalise(text).split())


@dataclass(frozen=True)
class KeywordMatch:
    branch: str
    phrase: str  # the configured phrase (as written), not the recognised text
    score: float  # 1.0 for exact containment, lower for fuzzy matches


@dataclass(frozen=True)
class KeywordSet:
    """Branch name -> phrases (synonyms) that select it."""

    branches: Mapping[str, Sequence[str]]
    _phrases: tuple[tuple[str, str, tuple[str, ...]], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        phrases: list[tuple[str, str, tuple[str, ...]]] = []
        owner: dict[tuple[str, ...], str] = {}
        if not self.branches:
            raise ValueError("a KeywordSet needs at least one branch")
        for branch, items in self.branches.items():
            if isinstance(items, str):
                raise TypeError(f"branch {branch!r}: phrases must be a sequence of strings, not one string")
            if not items:
                raise ValueError(f"branch {branch!r} has no phrases")
            for phrase in items:
                toks = tokens(phrase)
                if not toks:
                    raise ValueError(f"branch {branch!r}: phrase {phrase!r} is empty after normalising")
                if owner.get(toks, branch) != branch:
                    raise ValueError(f"phrase {phrase!r} is in both {owner[toks]!r} and {branch!r}")
                owner[toks] = branch
                phrases.append((branch, phrase, toks))
        object.__setattr__(self, "_phrases", tuple(phrases))

    @property
    def phrases(self) -> tuple[tuple[str, str, tuple[str, ...]], ...]:
        """(branch, phrase as written, normalised tokens) for every phrase."""
        return self._phrases

    def vocabulary(self) -> set[str]:
        return {t for _, _, toks in self._phrases for t in toks}


def _contains(hay: tuple[str, ...], needle: tuple[str, ...]) -> bool:
    n = len(needle)
    return any(hay[i:i + n] == needle for i in range(len(hay) - n + 1))


def _token_sim(a: str, b: str) -> float:
    if a == b:
        return 1.0
    if len(a) < 3 or len(b) < 3:  # "a"/"i", "to"/"two": too short for spelling slips to mean anything
        return 0.0
    return SequenceMatcher(None, a, b).ratio()


def _fuzzy(hay: tuple[str, ...], needle: tuple[str, ...]) -> float:
    """Best mean token similarity of ``needle`` against any same-length window of ``hay``."""
    n = len(needle)
    if len(hay) < n:
        return 0.0
    best = 0.0
    for i in range(len(hay) - n + 1):
        sims = [_token_sim(h, k) for h, k in zip(hay[i:i + n], needle)]
        if min(sims) < 0.6:  # every word must be recognisably there
            continue
        best = max(best, sum(sims) / n)
    return best


def match(text: str, keywords: KeywordSet, *, min_score: float = 0.8) -> KeywordMatch | None:
    """The branch the caller asked for, or None; ambiguous fuzzy matches are rejected rather than guessed."""
    hay = tokens(text)
    if not hay:
        return None
    exact = [(len(toks), branch, phrase) for branch, phrase, toks in keywords.phrases if _contains(hay, toks)]
    if exact:
        # The longest phrase wins ("credit card" over "card"); equal-length hits of two branches are ambiguous.
        longest = max(e[0] for e in exact)
        top = {(b, p) for n, b, p in exact if n == longest}
        if len({b for b, _ in top}) == 1:
            branch, phrase = sorted(top)[0]
            return KeywordMatch(branch, phrase, 1.0)
        return None
    best: dict[str, tuple[float, str]] = {}
    for branch, phrase, toks in keywords.phrases:
        s = _fuzzy(hay, toks)
        if s > best.get(branch, (0.0, ""))[0]:
            best[branch] = (s, phrase)
    ranked = sorted(((s, b, p) for b, (s, p) in best.items()), reverse=True)
    if not ranked or ranked[0][0] < min_score:
        return None
    if len(ranked) > 1 and ranked[1][0] >= ranked[0][0] - 0.05:  # too close to call between branches
        return None
    s, branch, phrase = ranked[0]
    return KeywordMatch(branch, phrase, round(s, 3))
