"""Flow file loading: YAML and JSON, every node type, errors that name file, line and key path, schema file."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from ivr.flow import (
    SCHEMA_PATH, BackNode, BranchNode, Flow, FlowError, GatherNode, GotoNode, HangupNode, HttpNode, PlayNode,
    RecordNode, SayNode, SetNode, TransferNode, flow_json_schema, load_flow, render_flow_schema,
)

ROOT = Path(__file__).resolve().parent.parent

ALL_TYPES_YAML = """\
name: everything
start: hello
keywords:
  - phrases: [agent]
    goto: to_queue
nodes:
  hello:
    type: say
    text: "Hello {{ caller_name }}, welcome."
    next: jingle
  jingle:
    type: play
    file: jingle.wav
    next: menu
  menu:
    type: gather
    prompt: {play: menu.wav}
    input: [dtmf]
    branches:
      - digits: 1
        goto: route
      - digits: "*"
        goto: go_back
    no_input: {say: "Still there?"}
    no_match: {next: bye}
    max_attempts: 2
    failure: bye
    barge_in: false
    timeout_s: 7.5
    end_silence_ms: 600
  route:
    type: branch
    timezone: Europe/Paris
    conditions:
      - variable: vip
        equals: true
        goto: to_number
      - caller: '^\\+331'
        goto: lookup
      - hours: "09:00-17:30"
        weekdays: [mon, tue, wed, thu, fri]
        goto: to_ext
      - dates: [2026-12-25, "2027-01-01"]
        goto: remember
    default: jump
  remember:
    type: set
    variables: {reason: holiday, tries: 2}
    next: voicemail
  lookup:
    type: http
    url: https://crm.example.com/caller?n={{caller}}
    method: POST
    body: '{"n": "{{caller}}"}'
    timeout_s: 2
    into: crm
    next: bye
    failure: bye
  to_number:
    type: transfer
    to: number:+14155550100
    trunk: carrier
    failure: bye
  to_ext:
    type: transfer
    to: extension:1001
  to_queue:
    type: transfer
    to: queue:support
  voicemail:
    type: record
    max_s: 30
    beep: false
    next: bye
  go_back:
    type: back
  jump:
    type: goto
    target: bye
  bye:
    type: hangup
"""


def _write(tmp_path: Path, text: str, name: str = "flow.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _errors(tmp_path: Path, text: str, name: str = "flow.yaml") -> list[str]:
    path = _write(tmp_path, text, name)
    with pytest.raises(FlowError) as exc:
        load_flow(path)
    assert str(exc.value) == "\n".join(exc.value.problems)
    return [line.replace(str(path), "F") for line in exc.value.problems]


def test_every_node_type_parses_from_yaml(tmp_path):
    flow = load_flow(_write(tmp_path, ALL_TYPES_YAML))
    assert flow.name == "everything" and flow.start == "hello"
    assert flow.source_path == tmp_path / "flow.yaml"
    kinds = {nid: type(node) for nid, node in flow.nodes.items()}
    assert kinds == {
        "hello": SayNode, "jingle": PlayNode, "menu": GatherNode, "route": BranchNode, "remember": SetNode,
        "lookup": HttpNode, "to_number": TransferNode, "to_ext": TransferNode, "to_queue": TransferNode,
        "voicemail": RecordNode, "go_back": BackNode, "jump": GotoNode, "bye": HangupNode}
    menu = flow.nodes["menu"]
    assert isinstance(menu, GatherNode)
    assert menu.prompt.play == "menu.wav" and menu.prompt.say is None
    assert [b.digits for b in menu.branches] == ["1", "*"]  # YAML int 1 read as the digit string
    assert (menu.max_attempts, menu.barge_in, menu.timeout_s, menu.end_silence_ms) == (2, False, 7.5, 600)
    route = flow.nodes["route"]
    assert isinstance(route, BranchNode)
    assert route.conditions[3].dates == [date(2026, 12, 25), date(2027, 1, 1)]
    assert route.conditions[2].weekdays == ["mon", "tue", "wed", "thu", "fri"]
    assert flow.keywords[0].phrases == ["agent"]
    assert flow.nodes["to_number"].trunk == "carrier"
    assert flow.line_of(("nodes", "menu", "branches", 1, "goto")) == 23
    assert flow.edges()[:3] == [("hello", ("nodes", "hello", "next"), "jingle"),
                                ("jingle", ("nodes", "jingle", "next"), "menu"),
                                ("menu", ("nodes", "menu", "branches", 0, "goto"), "route")]


def test_gather_defaults(tmp_path):
    flow = load_flow(_write(tmp_path, """\
name: d
start: m
nodes:
  m: {type: gather, prompt: {say: hi}, branches: [{keywords: [yes, no, on], goto: m}], failure: m}
"""))
    m = flow.nodes["m"]
    assert isinstance(m, GatherNode)
    assert m.branches[0].keywords == ["yes", "no", "on"]  # YAML 1.1 would have read these as booleans
    assert (m.input, m.max_attempts, m.barge_in, m.timeout_s, m.end_silence_ms) == (
        ["speech", "dtmf"], 3, True, 5.0, 800)


def test_json_flow_equals_yaml_flow(tmp_path):
    yaml_flow = load_flow(_write(tmp_path, ALL_TYPES_YAML))
    data = yaml_flow.model_dump(mode="json", exclude_defaults=True)
    json_flow = load_flow(_write(tmp_path, json.dumps(data, indent=2), "flow.json"))
    assert json_flow == yaml_flow
    assert json_flow.line_of(("nodes", "menu")) is not None


def test_json_error_lines(tmp_path):
    text = """\
{
  "name": "t",
  "start": "a",
  "nodes": {
    "a": {"type": "say", "text": "hi", "next": "b"},
    "b": {
      "type": "hangup",
      "colour": "red"
    },
    "c": {"type": "gather", "prompt": {"say": "x"},
          "branches": [{"keywords": ["x"], "goto": "a"},
                       {"keywords": ["y"], "gotoo": "a"}],
          "failure": "a"}
  }
}
"""
    assert _errors(tmp_path, text, "flow.json") == [
        "F:8: nodes.b.colour: unknown field 'colour' (no other fields allowed)",
        "F:12: nodes.c.branches[1].goto: required key is missing",
        "F:12: nodes.c.branches[1].gotoo: unknown field 'gotoo' (did you mean 'goto'?)",
    ]


def test_yaml_unknown_field_and_type_lines(tmp_path):
    text = """\
name: t
start: menu
nodes:
  menu:
    type: gather
    prompt: {say: "hi"}
    branches:
      - keywords: [a]
        goto: bye
        digit: "1"
    failure: bye
    timeout: 3
  weird:
    type: sayy
    text: hi
  bye:
    type: hangup
"""
    assert _errors(tmp_path, text) == [
        "F:10: nodes.menu.branches[0].digit: unknown field 'digit' (did you mean 'digits'?)",
        "F:12: nodes.menu.timeout: unknown field 'timeout' (did you mean 'timeout_s'?)",
        "F:14: nodes.weird.type: unknown node type 'sayy' (did you mean 'say'?)",
    ]


def test_unknown_top_level_field_and_missing_keys(tmp_path):
    text = """\
name: t
strat: a
nodes:
  a:
    text: hi
"""
    assert _errors(tmp_path, text) == [
        "F:1: start: required key is missing",
        "F:2: strat: unknown field 'strat' (did you mean 'start'?)",
        "F:4: nodes.a.type: required key is missing (one of: say, play, gather, branch, set, http, transfer, "
        "record, recording, back, goto, hangup)",
    ]


def test_value_errors(tmp_path):
    text = """\
name: t
start: a
nodes:
  a:
    type: say
    text: "Hello {{ name"
    next: b
  b:
    type: transfer
    to: extension:12a
  c:
    type: transfer
    to: queue:support
    trunk: carrier
  d:
    type: branch
    conditions:
      - hours: "18:00-25:00"
        goto: a
      - variable: x
        goto: a
    default: a
  e:
    type: gather
    prompt: {say: hi, play: hi.wav}
    input: [speech, fax]
    branches: [{digits: "1a", goto: a}]
    failure: a
"""
    assert _errors(tmp_path, text) == [
        "F:6: nodes.a.text: malformed placeholder: use {{variable}} with a name of letters, digits, _ and .",
        "F:10: nodes.b.to: 'extension:12a' must be 'extension:NNNN', 'number:+E164' or 'queue:NAME'",
        "F:11: nodes.c: 'trunk' is only allowed with a 'number:' target",
        "F:18: nodes.d.conditions[0].hours: '18:00-25:00' is not a time window 'HH:MM-HH:MM' (24h, e.g. "
        "'09:00-17:30')",
        "F:20: nodes.d.conditions[1]: 'variable' needs 'equals' or 'matches'",
        "F:25: nodes.e.prompt: give exactly one of 'say' or 'play'",
        "F:26: nodes.e.input[1]: Input should be 'speech' or 'dtmf', got 'fax'",
        "F:27: nodes.e.branches[0].digits: '1a' is not a DTMF key sequence (1 to 16 of 0-9, * and #)",
    ]


def test_duplicate_yaml_key_is_an_error(tmp_path):
    text = """\
name: t
start: a
nodes:
  a: {type: hangup}
  a: {type: say, text: hi, next: a}
"""
    assert _errors(tmp_path, text) == ["F:5: nodes.a: duplicate key 'a' (first at line 4)"]


def test_syntax_errors(tmp_path):
    assert _errors(tmp_path, "name: t\nnodes: [a\n") == [
        "F:3:1: syntax error: while parsing a flow sequence expected ',' or ']', but got '<stream end>'"]
    assert _errors(tmp_path, '{"name": "t",\n "start": }', "flow.json") == [
        "F:2:11: syntax error: Expecting value"]
    assert _errors(tmp_path, "- a\n- b\n") == ["F:1: (top level): a flow file must be a mapping, got a list"]


def test_wrong_suffix_and_missing_file(tmp_path):
    with pytest.raises(FlowError, match=r"flow\.txt: flow file must end in \.yaml, \.yml, \.json$"):
        load_flow(_write(tmp_path, "name: t", "flow.txt"))
    with pytest.raises(FlowError, match=r"nope\.yaml: cannot read flow file: No such file or directory$"):
        load_flow(tmp_path / "nope.yaml")


def test_schema_file_is_up_to_date():
    assert SCHEMA_PATH.read_text(encoding="utf-8") == render_flow_schema(), (
        "ivr/flow.schema.json is stale: python -c 'from ivr.flow import write_flow_schema; write_flow_schema()'")
    schema = flow_json_schema()
    assert schema["required"] == ["name", "start", "nodes"]
    node_refs = schema["properties"]["nodes"]["patternProperties"]["^[A-Za-z0-9_.-]+$"]["oneOf"]
    assert len(node_refs) == 12
    assert schema["$defs"]["GatherNode"]["additionalProperties"] is False


def test_bank_flow_loads():
    flow = load_flow(ROOT / "config/flows/bank.yaml")
    assert isinstance(flow, Flow) and flow.start == "main_menu"
    menu = flow.nodes["main_menu"]
    assert isinstance(menu, GatherNode)
    assert menu.prompt.say == ("Welcome to the bank. Say credit card, bank account or customer service, "
                               "or press 1, 2 or 0.")
    by_target = {b.goto: b for b in menu.branches}
    assert "credit card" in by_target["credit_card"].keywords and by_target["credit_card"].digits == "1"
    assert "bank account" in by_target["bank_account"].keywords and by_target["bank_account"].digits == "2"
    service = by_target["agent_transfer"]
    assert service.digits == "0"
    assert {"customer service", "agent", "operator", "human", "客服"} <= set(service.keywords)
    transfer = flow.nodes["agent_transfer"]
    assert isinstance(transfer, TransferNode) and transfer.to == "queue:support"
    card = flow.nodes["credit_card"]
    assert isinstance(card, GatherNode)
    assert card.prompt.say == "I understand. What specifically would you like to know about your credit card?"
    back = next(b for b in card.branches if b.digits == "*")
    assert {"go back", "main menu"} <= set(back.keywords)
    assert isinstance(flow.nodes[back.goto], BackNode)


def test_shape_errors(tmp_path):
    text = """\
name: t
start: a
nodes:
  a:
  1: {type: hangup}
  "a b": {type: hangup}
  c: {type: gather, prompt: hi, branches: x, failure: a}
"""
    assert _errors(tmp_path, text) == [
        "F:4: nodes.a: must be a mapping, got an empty value",
        "F:5: nodes.1: key 1 must be text (quote it: '1')",
        "F:6: nodes.a b: key 'a b' may only use letters, digits, '_', '.' and '-'",
        "F:7: nodes.c.branches: Input should be a valid list, got 'x'",
        "F:7: nodes.c.prompt: must be a mapping, got text",
    ]
    assert _errors(tmp_path, "") == ["F:1: (top level): a flow file must be a mapping, got an empty value"]


def test_queue_priority_and_skills(tmp_path):
    ok = """\
name: t
start: vip
nodes:
  vip: {type: transfer, to: "queue:support", priority: 10, skills: {english: 3}, failure: bye}
  var: {type: transfer, to: "queue:support", priority: "{{level}}", failure: bye}
  bye: {type: hangup}
"""
    flow = load_flow(_write(tmp_path, ok))
    assert flow.nodes["vip"].priority == 10 and flow.nodes["vip"].skills == {"english": 3}
    bad = """\
name: t
start: a
nodes:
  a: {type: transfer, to: "extension:1002", priority: 5}
  b: {type: transfer, to: "queue:support", priority: "soon"}
"""
    assert _errors(tmp_path, bad) == [
        "F:4: nodes.a: 'priority' and 'skills' are only allowed with a 'queue:' target",
        "F:5: nodes.b: priority 'soon' is neither an integer nor a {{variable}}",
    ]
