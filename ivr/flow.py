"""Flow-tree IVR definitions: pydantic models for a flow file and YAML/JSON loading whose errors name
file, line and key path.

A flow is data, not code, so a typo must be an error at load time rather than a caller stuck in a menu:
every model forbids unknown keys, and ``load_flow`` reports ``FILE:LINE: nodes.<id>.<field>: message``
(the same spirit as ``softswitch.config``). Graph checks (dangling edges, loops, keyword clashes) live in
``ivr.validator`` because they need the whole flow.
"""

from __future__ import annotations

import bisect
import difflib
import json
import re
import types
import typing
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, ValidationError
from pydantic import model_validator

from softswitch.config import plain_message

Loc = tuple[str | int, ...]
SCHEMA_PATH = Path(__file__).resolve().parent / "flow.schema.json"
FLOW_SUFFIXES: tuple[str, ...] = (".yaml", ".yml", ".json")
WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_PLACEHOLDER = re.compile(r"\{\{\s*[A-Za-z_][A-Za-z0-9_.]*\s*\}\}")
_TRANSFER_TO = re.compile(r"extension:[0-9]+|number:\+[1-9][0-9]{1,14}|queue:[A-Za-z0-9_.-]+")
_HOURS = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-4]):([0-5][0-9])")


class FlowError(Exception):
    """A flow file that cannot be used; ``str()`` is ready to print, one ``FILE:LINE: key: message`` per line.

    ``items`` keeps the same problems structured (line, key path, kind, message) so the validator can
    report load failures in its own format without re-parsing strings.
    """

    def __init__(self, message: str, problems: list[str] | None = None,
                 items: list[LoadProblem] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]
        self.items = items or []


class LoadProblem(BaseModel):
    """One load-time problem: where it is and what kind (``syntax``, ``unknown_type``, ``unknown_field``,
    ``duplicate_key``, ``invalid``)."""

    model_config = ConfigDict(frozen=True)
    line: int | None
    loc: Loc
    kind: str
    message: str


# ---------------------------------------------------------------------------------------------- field types

def _check_template(text: str) -> str:
    """Reject stray ``{{`` / ``}}`` so a broken placeholder is not read aloud to callers."""
    rest = _PLACEHOLDER.sub("", text)
    if "{{" in rest or "}}" in rest:
        raise ValueError("malformed placeholder: use {{variable}} with a name of letters, digits, _ and .")
    return text


def _check_regex(text: str) -> str:
    try:
        re.compile(text)
    except re.error as e:
        raise ValueError(f"invalid regular expression {text!r}: {e}") from None
    return text


def _check_hours(text: str) -> str:
    m = _HOURS.fullmatch(text)
    if not m or (m.group(3) == "24" and m.group(4) != "00"):
        raise ValueError(f"{text!r} is not a time window 'HH:MM-HH:MM' (24h, e.g. '09:00-17:30')")
    if text[:5] == text[6:]:
        raise ValueError(f"{text!r} is an empty time window")
    return text


def _check_transfer(text: str) -> str:
    if not _TRANSFER_TO.fullmatch(text):
        raise ValueError(f"{text!r} must be 'extension:NNNN', 'number:+E164' or 'queue:NAME'")
    return text


def _check_digits(text: str) -> str:
    if not re.fullmatch(r"[0-9*#]{1,16}", text):
        raise ValueError(f"{text!r} is not a DTMF key sequence (1 to 16 of 0-9, * and #)")
    return text


def _scalar_to_str(v: Any) -> Any:
    """YAML reads ``digits: 1`` as an int; a digit string is what was meant."""
    return str(v) if isinstance(v, int) and not isinstance(v, bool) else v


NodeId = Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")]
VarName = Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z_][A-Za-z0-9_.]*$")]
Template = Annotated[str, Field(min_length=1), AfterValidator(_check_template)]
Regex = Annotated[str, AfterValidator(_check_regex)]
Phrase = Annotated[str, Field(min_length=1)]
Digits = Annotated[str, BeforeValidator(_scalar_to_str), AfterValidator(_check_digits),
                   Field(json_schema_extra={"pattern": "^[0-9*#]{1,16}$"})]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------------------------------------- parts

class Prompt(_Model):
    """What a gather says first: synthesized text or a recorded file, exactly one."""

    say: Template | None = None
    play: str | None = Field(None, min_length=1, description="WAV path, relative to the flow file or a prompts dir")

    @model_validator(mode="after")
    def _one(self) -> Prompt:
        if (self.say is None) == (self.play is None):
            raise ValueError("give exactly one of 'say' or 'play'")
        return self


class Reprompt(_Model):
    """No-input / no-match handling: say or play something and re-ask, or leave via ``next``."""

    say: Template | None = None
    play: str | None = Field(None, min_length=1)
    next: NodeId | None = None

    @model_validator(mode="after")
    def _some(self) -> Reprompt:
        if self.say is not None and self.play is not None:
            raise ValueError("give at most one of 'say' or 'play'")
        if self.say is None and self.play is None and self.next is None:
            raise ValueError("give 'say', 'play' or 'next'")
        return self


class Branch(_Model):
    """One gather choice: any keyword phrase (synonyms included) or the DTMF digits select ``goto``."""

    keywords: list[Phrase] = Field(default_factory=list)
    digits: Digits | None = None
    goto: NodeId


class GlobalKeyword(_Model):
    """A phrase active in every gather (e.g. "agent"), so callers can always escape a menu."""

    phrases: list[Phrase] = Field(min_length=1)
    goto: NodeId


class Condition(_Model):
    """All given tests must hold; the first matching condition of a ``branch`` node wins."""

    variable: VarName | None = None
    equals: str | int | float | bool | None = None
    matches: Regex | None = None
    caller: Regex | None = Field(None, description="regex searched in the caller number")
    hours: Annotated[str, AfterValidator(_check_hours)] | None = Field(
        None, description="'HH:MM-HH:MM' local time window; may wrap midnight")
    weekdays: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] | None = None
    dates: list[date] | None = Field(None, description="holiday dates, YYYY-MM-DD")
    goto: NodeId

    @model_validator(mode="after")
    def _tests(self) -> Condition:
        if self.variable is None and (self.equals is not None or self.matches is not None):
            raise ValueError("'equals' and 'matches' need 'variable'")
        if self.variable is not None and self.equals is None and self.matches is None:
            raise ValueError("'variable' needs 'equals' or 'matches'")
        if all(v is None for v in (self.variable, self.caller, self.hours, self.weekdays, self.dates)):
            raise ValueError("give at least one test: variable, caller, hours, weekdays or dates")
        return self


# ---------------------------------------------------------------------------------------------- nodes

class _Node(_Model):
    def edges(self) -> list[tuple[Loc, str]]:
        """Outgoing transitions as (field path within the node, target id); the graph the validator walks."""
        return []


class SayNode(_Node):
    type: Literal["say"]
    text: Template
    next: NodeId

    def edges(self) -> list[tuple[Loc, str]]:
        return [(("next",), self.next)]


class PlayNode(_Node):
    type: Literal["play"]
    file: str = Field(min_length=1, description="WAV path, relative to the flow file or a prompts dir")
    next: NodeId

    def edges(self) -> list[tuple[Loc, str]]:
        return [(("next",), self.next)]


class GatherNode(_Node):
    type: Literal["gather"]
    prompt: Prompt
    input: list[Literal["speech", "dtmf"]] = Field(default_factory=lambda: ["speech", "dtmf"], min_length=1)
    branches: list[Branch] = Field(default_factory=list)
    no_input: Reprompt | None = None
    no_match: Reprompt | None = None
    max_attempts: int = Field(3, ge=1, le=10)
    failure: NodeId
    barge_in: bool = True
    timeout_s: float = Field(5.0, gt=0, le=60)
    end_silence_ms: int = Field(800, ge=100, le=5000)

    @model_validator(mode="after")
    def _inputs(self) -> GatherNode:
        if len(set(self.input)) != len(self.input):
            raise ValueError("'input' lists a mode twice")
        return self

    def edges(self) -> list[tuple[Loc, str]]:
        out: list[tuple[Loc, str]] = [(("branches", i, "goto"), b.goto) for i, b in enumerate(self.branches)]
        for field in ("no_input", "no_match"):
            re_ = getattr(self, field)
            if re_ is not None and re_.next is not None:
                out.append(((field, "next"), re_.next))
        out.append((("failure",), self.failure))
        return out


class BranchNode(_Node):
    type: Literal["branch"]
    conditions: list[Condition] = Field(min_length=1)
    default: NodeId
    timezone: str = Field("UTC", min_length=1, description="IANA zone for hours/weekdays/dates")

    def edges(self) -> list[tuple[Loc, str]]:
        out: list[tuple[Loc, str]] = [(("conditions", i, "goto"), c.goto) for i, c in enumerate(self.conditions)]
        return out + [(("default",), self.default)]


class SetNode(_Node):
    type: Literal["set"]
    variables: dict[VarName, str | int | float | bool | None] = Field(min_length=1)
    next: NodeId

    def edges(self) -> list[tuple[Loc, str]]:
        return [(("next",), self.next)]


class HttpNode(_Node):
    type: Literal["http"]
    url: Annotated[str, Field(pattern=r"^https?://\S+$")]
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    headers: dict[str, str] = Field(default_factory=dict)
    body: Template | None = None
    timeout_s: float = Field(5.0, gt=0, le=60)
    into: VarName = Field("http", description="response JSON fields become variables '<into>.<field>'")
    next: NodeId
    failure: NodeId

    def edges(self) -> list[tuple[Loc, str]]:
        return [(("next",), self.next), (("failure",), self.failure)]


class TransferNode(_Node):
    type: Literal["transfer"]
    to: Annotated[str, AfterValidator(_check_transfer)]
    trunk: str | None = Field(None, min_length=1, description="only for 'number:' targets")
    priority: int | str = Field(0, description="queue: targets only; higher is served first (e.g. VIP); "
                                               "an integer or a {{variable}} holding one")
    skills: dict[str, int] = Field(default_factory=dict, description="queue: targets only; required skill -> "
                                                                      "minimum level")
    record: bool = Field(False, description="record the call once it is bridged (caller left, callee right)")
    failure: NodeId | None = None

    @model_validator(mode="after")
    def _trunk(self) -> TransferNode:
        if self.trunk is not None and not self.to.startswith("number:"):
            raise ValueError("'trunk' is only allowed with a 'number:' target")
        if (self.priority != 0 or self.skills) and not self.to.startswith("queue:"):
            raise ValueError("'priority' and 'skills' are only allowed with a 'queue:' target")
        if isinstance(self.priority, str) and not re.fullmatch(r"-?\d+|\{\{\s*\w+\s*\}\}", self.priority.strip()):
            raise ValueError(f"priority {self.priority!r} is neither an integer nor a {{{{variable}}}}")
        return self

    def edges(self) -> list[tuple[Loc, str]]:
        return [(("failure",), self.failure)] if self.failure is not None else []


class RecordNode(_Node):
    type: Literal["record"]
    max_s: int = Field(60, ge=1, le=3600)
    beep: bool = True
    into: VarName = "recording"
    next: NodeId

    def edges(self) -> list[tuple[Loc, str]]:
        return [(("next",), self.next)]


class RecordingNode(_Node):
    """Call recording from here: start it (the rest of the call, bridge included, goes to one file), or
    pause/resume it around what must not be kept (a card number read out or keyed)."""

    type: Literal["recording"]
    action: Literal["start", "pause", "resume"]
    next: NodeId

    def edges(self) -> list[tuple[Loc, str]]:
        return [(("next",), self.next)]


class BackNode(_Node):
    """Return to the gather the caller came from (the interpreter keeps that history)."""

    type: Literal["back"]


class GotoNode(_Node):
    type: Literal["goto"]
    target: NodeId

    def edges(self) -> list[tuple[Loc, str]]:
        return [(("target",), self.target)]


class HangupNode(_Node):
    type: Literal["hangup"]


NODE_CLASSES: dict[str, type[_Node]] = {
    "say": SayNode, "play": PlayNode, "gather": GatherNode, "branch": BranchNode, "set": SetNode,
    "http": HttpNode, "transfer": TransferNode, "record": RecordNode, "recording": RecordingNode,
    "back": BackNode, "goto": GotoNode, "hangup": HangupNode,
}
Node = Annotated[Union[SayNode, PlayNode, GatherNode, BranchNode, SetNode, HttpNode, TransferNode, RecordNode,
                       RecordingNode, BackNode, GotoNode, HangupNode], Field(discriminator="type")]


class Flow(_Model):
    """A whole flow file. ``source_path``/``line_of`` are filled by ``load_flow`` for error reporting."""

    name: str = Field(min_length=1)
    start: NodeId
    keywords: list[GlobalKeyword] = Field(default_factory=list)
    nodes: dict[NodeId, Node] = Field(min_length=1)
    _source_path: Path | None = PrivateAttr(None)
    _lines: dict[Loc, int] = PrivateAttr(default_factory=dict)

    @property
    def source_path(self) -> Path | None:
        return self._source_path

    def line_of(self, loc: Loc) -> int | None:
        """Line of the deepest known key on ``loc`` (``None`` when not loaded from a file)."""
        return _find_line(self._lines, loc)

    def __eq__(self, other: object) -> bool:
        """Same content is the same flow, whichever file (and line layout) it came from."""
        return isinstance(other, Flow) and self.model_dump() == other.model_dump()

    __hash__ = None  # type: ignore[assignment]

    def edges(self) -> list[tuple[str, Loc, str]]:
        """Every transition as (source node id, key path from the flow root, target id)."""
        return [(nid, ("nodes", nid) + loc, target) for nid, node in self.nodes.items() for loc, target in node.edges()]


# ---------------------------------------------------------------------------------------------- schema

def flow_json_schema() -> dict[str, Any]:
    """JSON Schema of a flow file, for editors; ``ivr/flow.schema.json`` is this, written out."""
    schema = Flow.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "softswitch IVR flow"
    return schema


def render_flow_schema() -> str:
    return json.dumps(flow_json_schema(), indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def write_flow_schema(path: str | Path = SCHEMA_PATH) -> Path:
    """Regenerate the committed schema file (run after changing the models)."""
    path = Path(path)
    path.write_text(render_flow_schema(), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------- loading

def load_flow(path: str | Path) -> Flow:
    """Load and validate a ``.yaml``/``.yml``/``.json`` flow file. Raises ``FlowError``."""
    path = Path(path)
    if path.suffix.lower() not in FLOW_SUFFIXES:
        raise FlowError(f"{path}: flow file must end in {', '.join(FLOW_SUFFIXES)}",
                        items=[LoadProblem(line=None, loc=(), kind="syntax",
                                           message=f"flow file must end in {', '.join(FLOW_SUFFIXES)}")])
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise FlowError(f"{path}: cannot read flow file: {reason}",
                        items=[LoadProblem(line=None, loc=(), kind="syntax",
                                           message=f"cannot read flow file: {reason}")]) from None
    return parse_flow(text, path, fmt="json" if path.suffix.lower() == ".json" else "yaml")


def parse_flow(text: str, path: str | Path | None = None, fmt: Literal["yaml", "json"] = "yaml") -> Flow:
    """Validate flow ``text``; ``path`` names it in errors and anchors relative prompt files."""
    name = str(path) if path is not None else "<string>"
    data, lines, dups = _parse_json(text, name) if fmt == "json" else _parse_yaml(text, name)
    items = [LoadProblem(line=line, loc=loc, kind="duplicate_key",
                         message=f"duplicate key {loc[-1]!r} (first at line {first})") for loc, line, first in dups]
    flow = None
    if not isinstance(data, dict):
        items.append(LoadProblem(line=1, loc=(), kind="invalid",
                                 message=f"a flow file must be a mapping, got {_what(data)}"))
    else:
        try:
            flow = Flow.model_validate(data)
        except ValidationError as e:
            items += [LoadProblem(line=_find_line(lines, loc), loc=loc, kind=kind, message=msg)
                      for loc, kind, msg in _problems(e, data)]
    if items:
        items.sort(key=lambda p: (p.line or 1 << 30, format_loc(p.loc)))
        problems = [_format_load(name, p) for p in items]
        raise FlowError("\n".join(problems), problems, items)
    assert flow is not None
    flow._lines = lines
    if path is not None:
        flow._source_path = Path(path)
    return flow


def _format_load(name: str, p: LoadProblem) -> str:
    return f"{name}{f':{p.line}' if p.line else ''}: {format_loc(p.loc) or '(top level)'}: {p.message}"


def format_loc(loc: Loc) -> str:
    """``("nodes", "menu", "branches", 0, "goto")`` -> ``nodes.menu.branches[0].goto``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _find_line(lines: dict[Loc, int], loc: Loc) -> int | None:
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return None


def _syntax_error(name: str, line: int | None, col: int | None, msg: str) -> FlowError:
    where = f"{name}:{line}:{col}" if line else name
    return FlowError(f"{where}: syntax error: {msg}",
                     items=[LoadProblem(line=line, loc=(), kind="syntax", message=f"syntax error: {msg}")])


_Dups = list[tuple[Loc, int, int]]


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans: keywords like ``yes``/``no``/``on``/``off`` must stay text."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                              list("tTfF"))


def _parse_yaml(text: str, name: str) -> tuple[Any, dict[Loc, int], _Dups]:
    """Data plus a key-path -> line map from the composed node tree (PyYAML keeps marks only there)."""
    try:
        root = yaml.compose(text, Loader=_Loader)
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        msg = " ".join(str(x) for x in (getattr(e, "context", None), getattr(e, "problem", None)) if x) or str(e)
        raise _syntax_error(name, mark.line + 1 if mark else None, mark.column + 1 if mark else None, msg) from None
    lines: dict[Loc, int] = {(): 1}
    dups: _Dups = []

    def walk(node: yaml.Node, loc: Loc) -> None:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                key = _yaml_key(key_node)
                line = key_node.start_mark.line + 1
                if loc + (key,) in lines:
                    dups.append((loc + (key,), line, lines[loc + (key,)]))
                    continue
                lines[loc + (key,)] = line
                walk(value_node, loc + (key,))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                lines[loc + (i,)] = item.start_mark.line + 1
                walk(item, loc + (i,))

    if root is not None:
        walk(root, ())
    return data, lines, dups


def _yaml_key(node: yaml.Node) -> str:
    """Scalar keys by their text; a complex key cannot match a field, its position is name enough."""
    return node.value if isinstance(node, yaml.ScalarNode) else str(node.start_mark)


def _parse_json(text: str, name: str) -> tuple[Any, dict[Loc, int], _Dups]:
    """Data plus a key-path -> line map from a small second pass over the (already valid) JSON text."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise _syntax_error(name, e.lineno, e.colno, e.msg) from None
    newlines = [i for i, c in enumerate(text) if c == "\n"]
    lines: dict[Loc, int] = {(): 1}
    dups: _Dups = []
    ws = re.compile(r"[ \t\r\n]*")
    atom = re.compile(r"[^,\]}\s]+")
    scanstring = json.decoder.scanstring  # type: ignore[attr-defined]

    def line_at(i: int) -> int:
        return bisect.bisect_left(newlines, i) + 1

    def skip(i: int) -> int:
        return ws.match(text, i).end()  # type: ignore[union-attr]

    def value(i: int, loc: Loc) -> int:
        i = skip(i)
        c = text[i]
        if c == "{":
            i = skip(i + 1)
            if text[i] == "}":
                return i + 1
            while True:
                i = skip(i)
                key, end = scanstring(text, i + 1)
                if loc + (key,) in lines:
                    dups.append((loc + (key,), line_at(i), lines[loc + (key,)]))
                    sub: dict[Loc, int] = {}
                else:
                    lines[loc + (key,)] = line_at(i)
                    sub = lines
                i = skip(end) + 1  # past ':'
                i = skip(_value_into(sub, i, loc + (key,)))
                if text[i] == "}":
                    return i + 1
                i += 1  # ','
        if c == "[":
            i = skip(i + 1)
            if text[i] == "]":
                return i + 1
            n = 0
            while True:
                i = skip(i)
                lines[loc + (n,)] = line_at(i)
                i = skip(value(i, loc + (n,)))
                n += 1
                if text[i] == "]":
                    return i + 1
                i += 1
        if c == '"':
            return scanstring(text, i + 1)[1]
        return atom.match(text, i).end()  # type: ignore[union-attr]

    def _value_into(target: dict[Loc, int], i: int, loc: Loc) -> int:
        nonlocal lines
        if target is lines:
            return value(i, loc)
        saved, lines = lines, target  # a duplicate key's subtree must not overwrite the first one's lines
        try:
            return value(i, loc)
        finally:
            lines = saved

    value(0, ())
    return data, lines, dups


def _problems(e: ValidationError, data: dict[str, Any]) -> list[tuple[Loc, str, str]]:
    """Flatten pydantic errors to (key path, kind, message), dropping the union tag pydantic inserts."""
    out: list[tuple[Loc, str, str]] = []
    for err in e.errors():
        loc, kind, msg = tuple(err["loc"]), err["type"], err["msg"]
        if len(loc) >= 3 and loc[0] == "nodes" and loc[2] != "[key]" and not kind.startswith("union_tag"):
            loc = loc[:2] + loc[3:]  # ("nodes", id, "gather", "branches") -> ("nodes", id, "branches")
        problem_kind = "invalid"
        if kind == "union_tag_invalid":
            tag = (err.get("ctx") or {}).get("tag")
            loc, problem_kind = loc + ("type",), "unknown_type"
            close = difflib.get_close_matches(str(tag), list(NODE_CLASSES), n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"allowed: {', '.join(NODE_CLASSES)}"
            msg = f"unknown node type {tag!r} ({hint})"
        elif kind == "union_tag_not_found":
            loc, msg = loc + ("type",), f"required key is missing (one of: {', '.join(NODE_CLASSES)})"
        elif kind == "extra_forbidden":
            problem_kind = "unknown_field"
            allowed = _fields_at(loc[:-1], data)
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            hint = (f"did you mean {close[0]!r}?" if close else
                    f"allowed: {', '.join(allowed)}" if allowed else "no other fields allowed")
            msg = f"unknown field {loc[-1]!r} ({hint})"
        elif kind in ("model_type", "model_attributes_type", "dict_type"):
            msg = f"must be a mapping, got {_what(err.get('input'))}"
        else:
            msg = plain_message(err)
        if loc and loc[-1] == "[key]":
            if kind == "string_type":
                msg = f"key {loc[-2]!r} must be text (quote it: '{loc[-2]}')"
            elif kind == "string_pattern_mismatch":
                msg = f"key {loc[-2]!r} may only use letters, digits, '_', '.' and '-'"
            loc = loc[:-2] + (str(loc[-2]),)  # a mapping key, even when YAML read it as a number
        out.append((loc, problem_kind, msg))
    return out


def _what(value: Any) -> str:
    if value is None:
        return "an empty value"
    return {str: "text", list: "a list", dict: "a mapping"}.get(type(value), type(value).__name__)


def _fields_at(loc: Loc, data: Any) -> list[str]:
    """Field names of the model at ``loc`` (for did-you-mean hints); node types come from the data."""
    tp: Any = Flow
    if len(loc) >= 2 and loc[0] == "nodes":
        node = (data.get("nodes") or {}).get(loc[1]) if isinstance(data.get("nodes"), dict) else None
        tp = NODE_CLASSES.get(node.get("type")) if isinstance(node, dict) else None
        loc = loc[2:]
    for part in loc:
        if tp is None:
            return []
        if isinstance(part, int):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            tp = args[0] if args else None
        elif isinstance(tp, type) and issubclass(tp, BaseModel) and part in tp.model_fields:
            tp = tp.model_fields[part].annotation
        else:
            return []
        args = [a for a in typing.get_args(tp) if isinstance(a, type) and issubclass(a, BaseModel)]
        if typing.get_origin(tp) in (Union, types.UnionType) and args:
            tp = args[0]
    return [f for f in tp.model_fields if f != "type"] if isinstance(tp, type) and issubclass(tp, BaseModel) else []
