"""Dial plan: ordered rules -> one route decision per INVITE (first match wins).

Pure and sans-IO. Rules are plain frozen dataclasses so this module does not depend on the
pydantic config schema: build them with Rule(...), Rule.from_mapping(d) or Rule.coerce(obj)
(any object with the same attribute names). Regexes are compiled once in Dialplan().
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

__all__ = ["Dialplan", "RouteDecision", "Rule", "Source"]

_KINDS = ("user", "trunk", "service", "flow", "queue")  # RouteDecision.kind values
_MATCHERS = ("exact", "prefix", "regex")
_FIELDS = ("name", "exact", "prefix", "regex", "source", "strip", "prepend", "replace", "to")


@dataclass(frozen=True)
class Source:
    """Who sent the INVITE: a registered/local user, a trunk, or an unidentified peer."""

    kind: str  # "user" | "trunk" | "unknown"
    name: str | None = None

    @classmethod
    def user(cls, name: str | None = None) -> Source:
        return cls("user", name)

    @classmethod
    def trunk(cls, name: str) -> Source:
        return cls("trunk", name)


@dataclass(frozen=True)
class RouteDecision:
    """Where a call goes: `target` names the user/trunk/service/flow/queue; `number` is the dial string."""

    rule: str
    kind: str
    target: str
    number: str


@dataclass(frozen=True)
class Rule:
    """One dial-plan rule; exactly one of exact/prefix/regex (None or "" means unset).

    Rewrite order: regex `replace` (match.expand, empty = keep number), then `strip` leading
    characters, then `prepend`. A catch-all is regex ".*".
    """

    name: str
    to: str
    exact: str | None = None
    prefix: str | None = None
    regex: str | None = None
    source: str = "any"  # "any" | "users" | "trunks" | "trunk:<name>"
    strip: int = 0
    prepend: str = ""
    replace: str = ""

    def __post_init__(self) -> None:
        def bad(why: str) -> ValueError:
            return ValueError(f"route {self.name!r}: {why}")

        if not self.name or not isinstance(self.name, str):
            raise ValueError(f"route without a valid name: {self.name!r}")
        for k in (*_MATCHERS, "to", "source", "prepend", "replace"):
            v = getattr(self, k)
            if not (isinstance(v, str) or (v is None and k in _MATCHERS)):
                raise bad(f"{k} must be a string, got {v!r}")
        set_ = [k for k in _MATCHERS if getattr(self, k)]
        if len(set_) != 1:
            raise bad(f"needs exactly one of exact/prefix/regex, got {set_ or 'none'}")
        if self.source not in ("any", "users", "trunks") and not _named(self.source, "trunk"):
            raise bad(f"source {self.source!r} is not any|users|trunks|trunk:<name>")
        kind, _, target = self.to.partition(":")
        if kind not in _KINDS or (not target and kind != "user") or (":" in self.to and not target):
            raise bad(f"to {self.to!r} is not user|user:<n>|trunk:<n>|service:<n>|flow:<n>|queue:<n>")
        if isinstance(self.strip, bool) or not isinstance(self.strip, int) or self.strip < 0:
            raise bad(f"strip must be a non-negative integer, got {self.strip!r}")
        if self.replace and not self.regex:
            raise bad("replace only applies to regex rules")

    @property
    def matcher(self) -> tuple[str, str]:
        """(kind, pattern) of the one matcher that is set."""
        for kind in _MATCHERS:
            if value := getattr(self, kind):
                return kind, value
        raise AssertionError("unreachable: validated in __post_init__")

    @classmethod
    def from_mapping(cls, d: Mapping[str, Any]) -> Rule:
        """Build from a config mapping; None values mean "use the default", unknown keys are ignored."""
        missing = [k for k in ("name", "to") if d.get(k) is None]
        if missing:
            raise ValueError(f"route {d.get('name')!r}: missing {', '.join(missing)}")
        return cls(**{k: d[k] for k in _FIELDS if d.get(k) is not None})

    @classmethod
    def coerce(cls, obj: Rule | Mapping[str, Any] | object) -> Rule:
        """Accept a Rule, a mapping, or any object with the rule attributes (e.g. a pydantic model)."""
        if isinstance(obj, Rule):
            return obj
        if isinstance(obj, Mapping):
            return cls.from_mapping(obj)
        return cls.from_mapping({k: getattr(obj, k, None) for k in _FIELDS})

    def describe(self) -> str:
        kind, pattern = self.matcher
        rewrite = "".join(
            [
                f" replace={self.replace!r}" if self.replace else "",
                f" strip={self.strip}" if self.strip else "",
                f" prepend={self.prepend!r}" if self.prepend else "",
            ]
        )
        return f"{self.name}: {kind} {pattern!r} from {self.source}{rewrite} -> {self.to}"


def _named(value: str, kind: str) -> bool:
    k, sep, name = value.partition(":")
    return k == kind and bool(sep) and bool(name)


@dataclass(frozen=True)
class _Compiled:
    """A rule pre-digested for the hot path: no string parsing or regex compiling per call."""

    rule: Rule
    kind: str  # "exact" | "prefix" | "regex"
    pattern: str
    regex: re.Pattern[str] | None
    template: _Template | None
    src_kind: str | None  # None = any source
    src_name: str | None
    to_kind: str
    to_target: str | None  # None = the rewritten number


def _compile(rule: Rule) -> _Compiled:
    kind, pattern = rule.matcher
    rx, template = None, None
    if kind == "regex":
        try:
            rx = re.compile(pattern)
        except re.error as e:
            raise ValueError(f"route {rule.name!r}: bad regex {pattern!r}: {e}") from None
        template = _Template.compile(rule, rx) if rule.replace else None
    src_kind, src_name = {"any": (None, None), "users": ("user", None), "trunks": ("trunk", None)}.get(
        rule.source, ("trunk", rule.source.partition(":")[2])
    )
    to_kind, _, to_target = rule.to.partition(":")
    return _Compiled(rule, kind, pattern, rx, template, src_kind, src_name, to_kind, to_target or None)


@dataclass(frozen=True)
class _Template:
    """A `replace` template pre-split into literals and group numbers (Match.expand re-parses per call)."""

    literals: tuple[str, ...]  # len(groups) + 1 pieces around the groups
    groups: tuple[int, ...]

    @classmethod
    def compile(cls, rule: Rule, rx: re.Pattern[str]) -> _Template:
        """Expand the template once against a match whose group i captured marker chr(0xE000+i).

        This reuses Python's own template semantics (escapes, \\g<name>) and rejects bad group
        references at load time instead of on the first call.
        """
        bad = f"route {rule.name!r}: bad replace {rule.replace!r}"
        if any(0xE000 < ord(ch) <= 0xE000 + rx.groups for ch in rule.replace):
            raise ValueError(f"{bad}: private-use characters are reserved")
        names = {i: n for n, i in rx.groupindex.items()}
        marks = [chr(0xE000 + i) for i in range(1, rx.groups + 1)]
        dummy = "".join(
            f"(?P<{names[i]}>{mark})" if i in names else f"({mark})" for i, mark in enumerate(marks, 1)
        )
        try:
            out = re.compile(dummy).fullmatch("".join(marks)).expand(rule.replace)  # type: ignore[union-attr]
        except (re.error, IndexError) as e:
            raise ValueError(f"{bad}: {e}") from None
        literals, groups, start = [], [], 0
        for i, ch in enumerate(out):
            if 0xE000 < ord(ch) <= 0xE000 + rx.groups:
                literals.append(out[start:i])
                groups.append(ord(ch) - 0xE000)
                start = i + 1
        literals.append(out[start:])
        return cls(tuple(literals), tuple(groups))

    def expand(self, m: re.Match[str]) -> str:
        parts = [self.literals[0]]
        for g, lit in zip(self.groups, self.literals[1:]):
            parts += (m.group(g) or "", lit)
        return "".join(parts)


class Dialplan:
    """Ordered rules; route() returns the first matching rule's decision or None."""

    def __init__(self, rules: Sequence[Rule | Mapping[str, Any] | object]) -> None:
        self.rules: tuple[Rule, ...] = tuple(Rule.coerce(r) for r in rules)
        names = [r.name for r in self.rules]
        if dups := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"duplicate route names: {', '.join(dups)}")
        self._compiled = tuple(_compile(r) for r in self.rules)

    def route(self, number: str | None, source: Source) -> RouteDecision | None:
        """Decide where a call to `number` (the Request-URI user part) from `source` goes.

        A rule whose rewrite leaves an empty number is skipped: no target accepts "".
        """
        if not number:
            return None
        for c in self._compiled:
            if c.src_kind is not None and (
                source.kind != c.src_kind or (c.src_name is not None and source.name != c.src_name)
            ):
                continue
            if c.kind == "exact":
                if number != c.pattern:
                    continue
                rewritten = number
            elif c.kind == "prefix":
                if not number.startswith(c.pattern):
                    continue
                rewritten = number
            else:
                m = c.regex.fullmatch(number)  # type: ignore[union-attr]
                if m is None:
                    continue
                rewritten = c.template.expand(m) if c.template is not None else number
            rewritten = c.rule.prepend + rewritten[c.rule.strip :]
            if not rewritten:
                continue
            return RouteDecision(c.rule.name, c.to_kind, c.to_target or rewritten, rewritten)
        return None

    def describe(self) -> list[str]:
        """One line per rule, in evaluation order, for startup logs and `config check`."""
        return [f"{i}. {r.describe()}" for i, r in enumerate(self.rules, 1)]

    def __len__(self) -> int:
        return len(self.rules)
