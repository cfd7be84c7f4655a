from __future__ import annotations

import pytest

from asr.keywords import KeywordSet, match, normalise

KW = KeywordSet({
    "billing": ["billing", "pay my bill", "payment"],
    "card": ["credit card", "card"],
    "agent": ["agent", "operator", "customer service"],
    "zh_sales": ["销售"],
    "option2": ["option 2"],
})


def test_normalise_case_punctuation_whitespace() -> None:
    assert normalise("  Credit-Card,   please!! ") == "credit card please"
    assert normalise("I'd like the OPERATOR.") == "i'd like the operator"


def test_normalise_numbers_to_english_words() -> None:
    assert normalise("1") == "one"
    assert normalise("press 2 or 15") == "press two or fifteen"
    assert normalise("42") == "forty two"
    assert normalise("007") == "zero zero seven"


def test_normalise_keeps_cjk_as_separate_characters() -> None:
    assert normalise("我要销售部门。") == "我 要 销 售 部 门"


def test_exact_phrase_containment() -> None:
    m = match("uh I would like to pay my bill please", KW)
    assert m is not None and (m.branch, m.phrase, m.score) == ("billing", "pay my bill", 1.0)


def test_longest_phrase_wins_across_branches() -> None:
    m = match("my credit card", KW)
    assert m is not None and (m.branch, m.phrase) == ("card", "credit card")


def test_digit_phrase_matches_spoken_number() -> None:
    m = match("option two", KW)
    assert m is not None and m.branch == "option2"


def test_cjk_phrase() -> None:
    m = match("我要销售", KW)
    assert m is not None and m.branch == "zh_sales"
    assert match("我要售后", KW) is None


def test_fuzzy_small_asr_slip() -> None:
    m = match("operater", KW)
    assert m is not None and m.branch == "agent" and 0.8 <= m.score < 1.0
    m = match("credit cart", KW)
    assert m is not None and m.branch == "card" and m.score < 1.0


def test_no_match_for_unrelated_text() -> None:
    assert match("what time do you open", KW) is None
    assert match("", KW) is None
    assert match("a", KW) is None


def test_fuzzy_never_prefers_another_branch() -> None:
    kw = KeywordSet({"a": ["payment"], "b": ["pavement"]})
    m = match("pavement", kw)
    assert m is not None and m.branch == "b" and m.score == 1.0
    m = match("pament", kw)  # one edit from payment, two from pavement
    assert m is not None and m.branch == "a"
    # Equally close to two branches' phrases: refuse rather than guess.
    tie = KeywordSet({"a": ["mason"], "b": ["bason"]})
    assert match("jason", tie) is None


def test_same_phrase_in_two_branches_rejected() -> None:
    with pytest.raises(ValueError, match="both"):
        KeywordSet({"a": ["Agent"], "b": ["agent!"]})


def test_bad_keyword_sets() -> None:
    with pytest.raises(ValueError):
        KeywordSet({})
    with pytest.raises(ValueError):
        KeywordSet({"a": []})
    with pytest.raises(ValueError):
        KeywordSet({"a": ["?!"]})
    with pytest.raises(TypeError):
        KeywordSet({"a": "agent"})
