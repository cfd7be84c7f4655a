"""Dial plan: matchers, rewrites, source filters, ordering, validation."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from softswitch.routing.dialplan import Dialplan, RouteDecision, Rule, Source

ALICE = Source("user", "alice")
LOOPBACK = Source("trunk", "loopback")
CARRIER = Source("trunk", "carrier")
STRANGER = Source("unknown", None)


def plan(*rules: Rule) -> Dialplan:
    return Dialplan(rules)


# --------------------------------------------------------------------------- matchers


def test_exact_match_only_equal():
    p = plan(Rule("echo", "service:echo", exact="*43"))
    assert p.route("*43", ALICE) == RouteDecision("echo", "service", "echo", "*43")
    assert p.route("*431", ALICE) is None
    assert p.route("*4", ALICE) is None


def test_prefix_match_with_strip_and_prepend():
    p = plan(Rule("out", "trunk:carrier", prefix="0", strip=1, prepend="+33"))
    assert p.route("0612345678", ALICE) == RouteDecision("out", "trunk", "carrier", "+33612345678")
    assert p.route("612345678", ALICE) is None


def test_strip_longer_than_number_skips_rule():
    p = plan(Rule("a", "trunk:t", prefix="9", strip=5), Rule("b", "trunk:u", prefix="9"))
    assert p.route("912", ALICE) == RouteDecision("b", "trunk", "u", "912")
    assert p.route("912345", ALICE) == RouteDecision("a", "trunk", "t", "5")


def test_regex_fullmatch_not_search():
    p = plan(Rule("ext", "user", regex=r"1\d{3}"))
    assert p.route("1001", ALICE) == RouteDecision("ext", "user", "1001", "1001")
    assert p.route("10012", ALICE) is None
    assert p.route("21001", ALICE) is None


def test_extension_regex_with_anchors_routes_to_user():
    p = plan(Rule("extensions", "user", regex=r"^(1\d{3})$"))
    assert p.route("1234", ALICE) == RouteDecision("extensions", "user", "1234", "1234")
    assert p.route("123", ALICE) is None
    assert p.route("2234", ALICE) is None


def test_regex_groups_replace_then_prepend():
    p = plan(Rule("intl", "trunk:carrier", regex=r"00(\d{2})(\d+)", replace=r"\1-\2", prepend="+"))
    assert p.route("004412345", ALICE) == RouteDecision("intl", "trunk", "carrier", "+44-12345")


def test_regex_named_groups_escapes_and_unmatched_groups():
    p = plan(Rule("n", "trunk:t", regex=r"(?P<cc>00)?(?P<rest>\d+)", replace=r"[\g<cc>]\g<rest>\g<2>\\"))
    assert p.route("0012", ALICE).number == "[00]1212\\"
    assert p.route("12", ALICE).number == "[]1212\\"  # unmatched group expands to ""


def test_regex_without_replace_keeps_number():
    p = plan(Rule("r", "queue:sales", regex=r"7\d\d", prepend="q"))
    assert p.route("700", ALICE) == RouteDecision("r", "queue", "sales", "q700")


def test_regex_replace_then_strip_then_prepend():
    p = plan(Rule("r", "trunk:t", regex=r"(\d+)#", replace=r"99\1", strip=2, prepend="+"))
    assert p.route("123#", ALICE).number == "+123"


@pytest.mark.parametrize("number", [None, ""])
def test_empty_number_never_routes(number):
    assert plan(Rule("all", "flow:main", regex=".*")).route(number, ALICE) is None


def test_no_route_returns_none():
    p = plan(Rule("ext", "user", regex=r"1\d{3}"))
    assert p.route("5555", ALICE) is None
    assert Dialplan([]).route("1000", ALICE) is None


# --------------------------------------------------------------------------- targets


@pytest.mark.parametrize(
    "to, kind, target",
    [
        ("user", "user", "1000"),
        ("user:alice", "user", "alice"),
        ("trunk:carrier", "trunk", "carrier"),
        ("service:echo", "service", "echo"),
        ("flow:main-menu", "flow", "main-menu"),
        ("queue:support", "queue", "support"),
    ],
)
def test_targets(to, kind, target):
    assert plan(Rule("r", to, exact="1000")).route("1000", ALICE) == RouteDecision("r", kind, target, "1000")


# --------------------------------------------------------------------------- ordering and sources


def test_first_match_wins_in_order():
    p = plan(
        Rule("specific", "service:echo", exact="1999"),
        Rule("ext", "user", regex=r"1\d{3}"),
        Rule("catch-all", "trunk:carrier", regex=".*"),
    )
    assert p.route("1999", ALICE).rule == "specific"
    assert p.route("1000", ALICE).rule == "ext"
    assert p.route("5", ALICE).rule == "catch-all"
    reordered = Dialplan(list(reversed(p.rules)))
    assert reordered.route("1999", ALICE).rule == "catch-all"


def test_source_filters():
    p = plan(
        Rule("from-loopback", "trunk:loopback", prefix="9", source="trunk:loopback"),
        Rule("from-trunks", "flow:inbound", prefix="9", source="trunks"),
        Rule("from-users", "trunk:carrier", prefix="9", source="users"),
        Rule("anyone", "service:echo", prefix="9"),
    )
    assert p.route("91", LOOPBACK).rule == "from-loopback"
    assert p.route("91", CARRIER).rule == "from-trunks"
    assert p.route("91", ALICE).rule == "from-users"
    assert p.route("91", Source("user")).rule == "from-users"
    assert p.route("91", STRANGER).rule == "anyone"


def test_source_restricted_rule_alone_rejects_other_sources():
    p = plan(Rule("only-loopback", "service:echo", exact="1", source="trunk:loopback"))
    assert p.route("1", CARRIER) is None
    assert p.route("1", ALICE) is None
    assert p.route("1", Source("user", "loopback")) is None
    assert p.route("1", STRANGER) is None
    assert p.route("1", LOOPBACK) is not None


def test_loopback_contract():
    """9<digits> from the loopback trunk goes back out to the loopback trunk with the digits."""
    p = plan(
        Rule("loopback", "trunk:loopback", regex=r"9(\d+)", replace=r"\1", source="trunk:loopback"),
        Rule("extensions", "user", regex=r"^(1\d{3})$"),
    )
    assert p.route("9123456", LOOPBACK) == RouteDecision("loopback", "trunk", "loopback", "123456")
    assert p.route("9123456", CARRIER) is None
    assert p.route("9", LOOPBACK) is None
    assert p.route("1001", LOOPBACK) == RouteDecision("extensions", "user", "1001", "1001")


def test_loopback_contract_with_prefix_strip():
    p = plan(Rule("loopback", "trunk:loopback", prefix="9", strip=1, source="trunk:loopback"))
    assert p.route("9555", LOOPBACK) == RouteDecision("loopback", "trunk", "loopback", "555")


# --------------------------------------------------------------------------- construction


def test_from_mapping_ignores_none_and_unknown_keys():
    d = {"name": "r", "to": "user", "exact": None, "prefix": "1", "regex": None, "strip": None,
         "description": "extra keys from a config model are ignored"}
    rule = Rule.from_mapping(d)
    assert rule == Rule("r", "user", prefix="1")


def test_dialplan_accepts_mappings_and_attribute_objects():
    p = Dialplan(
        [
            {"name": "echo", "exact": "*43", "to": "service:echo"},
            SimpleNamespace(name="ext", regex=r"1\d{3}", to="user", source="users", strip=0,
                            prepend="", replace="", exact=None, prefix=None),
        ]
    )
    assert p.route("*43", STRANGER).kind == "service"
    assert p.route("1000", ALICE).rule == "ext"
    assert p.route("1000", CARRIER) is None
    assert all(isinstance(r, Rule) for r in p.rules) and len(p) == 2


def test_empty_strings_count_as_unset_matchers():
    rule = Rule.from_mapping({"name": "r", "to": "user", "exact": "", "prefix": "", "regex": "1.*"})
    assert rule.matcher == ("regex", "1.*")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(name="r", to="user"), "exactly one"),
        (dict(name="r", to="user", exact="1", prefix="1"), "exactly one"),
        (dict(name="r", to="user", exact="1", source="trunk:"), "source"),
        (dict(name="r", to="user", exact="1", source="user:alice"), "source"),
        (dict(name="r", to="trunk", exact="1"), "to"),
        (dict(name="r", to="user:", exact="1"), "to"),
        (dict(name="r", to="gateway:x", exact="1"), "to"),
        (dict(name="r", to="user", exact="1", strip=-1), "strip"),
        (dict(name="r", to="user", exact="1", strip=True), "strip"),
        (dict(name="r", to="user", exact="1", strip="2"), "strip"),
        (dict(name="r", to="user", exact=1000), "exact"),
        (dict(name="r", to="user", prefix="1", replace=r"\1"), "replace"),
        (dict(name="", to="user", exact="1"), "name"),
    ],
)
def test_rule_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Rule(**kwargs)


def test_from_mapping_requires_name_and_to():
    with pytest.raises(ValueError, match="missing to"):
        Rule.from_mapping({"name": "r", "exact": "1"})
    with pytest.raises(ValueError, match="missing name"):
        Rule.from_mapping({"to": "user", "exact": "1"})


@pytest.mark.parametrize(
    "regex, replace, message",
    [
        ("(1", "", "bad regex"),
        (r"(\d)", r"\2", "bad replace"),
        (r"(\d)", r"\g<nope>", "bad replace"),
        (r"\d", r"\1", "bad replace"),
        (r"(\d)", "\ue001", "private-use"),
    ],
)
def test_bad_regex_or_template_fails_at_load_time(regex, replace, message):
    with pytest.raises(ValueError, match=message):
        plan(Rule("bad", "user", regex=regex, replace=replace))


def test_duplicate_rule_names_rejected():
    with pytest.raises(ValueError, match="duplicate route names: a"):
        plan(Rule("a", "user", exact="1"), Rule("a", "user", exact="2"))


def test_regexes_compiled_once(monkeypatch):
    p = plan(Rule("r", "trunk:t", regex=r"9(\d+)", replace=r"x\1"))
    import re

    def boom(*a, **k):
        raise AssertionError("re.compile called on the hot path")

    monkeypatch.setattr(re, "compile", boom)
    for _ in range(3):
        assert p.route("912", ALICE).number == "x12"


def test_describe_lists_rules_in_order():
    p = plan(
        Rule("echo", "service:echo", exact="*43"),
        Rule("out", "trunk:carrier", prefix="0", strip=1, prepend="+33", source="users"),
        Rule("intl", "trunk:carrier", regex=r"00(\d+)", replace=r"+\1"),
    )
    lines = p.describe()
    assert len(lines) == 3
    assert lines[0] == "1. echo: exact '*43' from any -> service:echo"
    assert lines[1] == "2. out: prefix '0' from users strip=1 prepend='+33' -> trunk:carrier"
    assert lines[2].startswith("3. intl: regex") and "replace=" in lines[2]


def test_decisions_and_sources_are_frozen_values():
    d = plan(Rule("r", "user", exact="1")).route("1", ALICE)
    with pytest.raises(AttributeError):
        d.number = "2"  # type: ignore[misc]
    assert Source.user("alice") == ALICE and Source.trunk("loopback") == LOOPBACK
    assert {ALICE, LOOPBACK}
