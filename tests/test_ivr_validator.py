"""Flow validator: one test per problem kind, each asserting the exact ``FILE:LINE: node <id>: message``."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.flow import Flow, load_flow
from ivr.validator import Problem, main_validate, normalize_keyword, validate, validate_file

ROOT = Path(__file__).resolve().parent.parent

# Line numbers below count from this header: the first node key is on line 4.
HEAD = "name: t\nstart: menu\nnodes:\n"
MENU = """\
  menu:
    type: gather
    prompt: {say: "Say yes or no."}
    branches:
      - keywords: ["yes", yeah]
        digits: "1"
        goto: bye
      - keywords: ["no"]
        digits: "2"
        goto: bye
    failure: bye
"""
BYE = """\
  bye:
    type: hangup
"""


def _check(tmp_path: Path, text: str, name: str = "flow.yaml") -> list[str]:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return [p.format().replace(str(path), "F") for p in validate_file(path)]


def test_valid_flow_has_no_problems(tmp_path):
    assert _check(tmp_path, HEAD + MENU + BYE) == []


def test_unknown_node_type(tmp_path):
    assert _check(tmp_path, HEAD + MENU + BYE + "  odd:\n    type: dance\n") == [
        "F:18: node odd: type: unknown node type 'dance' (allowed: say, play, gather, branch, set, http, transfer, "
        "record, recording, back, goto, hangup)"]
    problems = validate_file(tmp_path / "flow.yaml")
    assert [(p.kind, p.node_id, p.line) for p in problems] == [("unknown_type", "odd", 18)]


def test_unknown_field(tmp_path):
    text = HEAD + MENU.replace("    failure: bye\n", "    failure: bye\n    retries: 2\n") + BYE
    assert _check(tmp_path, text) == ["F:15: node menu: retries: unknown field 'retries' (allowed: prompt, input, "
                                      "branches, no_input, no_match, max_attempts, failure, barge_in, timeout_s, "
                                      "end_silence_ms)"]
    assert validate_file(tmp_path / "flow.yaml")[0].kind == "unknown_field"


def test_unknown_top_level_field_has_no_node(tmp_path):
    assert _check(tmp_path, "title: x\n" + HEAD + MENU + BYE) == [
        "F:1: title: unknown field 'title' (allowed: name, start, keywords, nodes)"]


def test_dangling_edge(tmp_path):
    text = HEAD + MENU.replace('goto: bye\n      - keywords: ["no"]', 'goto: by\n      - keywords: ["no"]') + BYE
    assert _check(tmp_path, text) == ["F:10: node menu: branches[0].goto: goes to unknown node 'by' "
                                      "(did you mean 'bye'?)"]
    text = "keywords:\n  - phrases: [help]\n    goto: helpdesk\n" + HEAD + MENU + BYE
    assert _check(tmp_path, text) == ["F:3: keywords[0].goto: goes to unknown node 'helpdesk'"]
    assert [p.kind for p in validate_file(tmp_path / "flow.yaml")] == ["dangling_edge"]


def test_unreachable_node(tmp_path):
    text = HEAD + MENU + BYE + "  orphan:\n    type: say\n    text: nobody hears this\n    next: bye\n"
    assert _check(tmp_path, text) == ["F:17: node orphan: unreachable from start node 'menu'"]
    assert validate_file(tmp_path / "flow.yaml")[0].kind == "unreachable"


def test_cycle_without_caller_input(tmp_path):
    text = """\
name: t
start: a
nodes:
  a:
    type: say
    text: hello
    next: b
  b:
    type: set
    variables: {x: 1}
    next: c
  c:
    type: goto
    target: a
"""
    assert _check(tmp_path, text) == [
        "F:4: node a: loops without waiting for the caller: a -> b -> c -> a (no gather or record on the loop)"]
    assert validate_file(tmp_path / "flow.yaml")[0].kind == "silent_cycle"
    self_loop = "name: t\nstart: a\nnodes:\n  a:\n    type: goto\n    target: a\n"
    assert _check(tmp_path, self_loop) == [
        "F:4: node a: loops without waiting for the caller: a -> a (no gather or record on the loop)"]


def test_cycle_through_a_gather_is_fine(tmp_path):
    text = HEAD + MENU.replace("    failure: bye\n", "    failure: sorry\n") + BYE + """\
  sorry:
    type: say
    text: Let's try again.
    next: menu
"""
    assert _check(tmp_path, text) == []


def test_missing_prompt_file(tmp_path):
    text = HEAD + MENU.replace('{say: "Say yes or no."}', "{play: prompts/menu.wav}") + BYE
    assert _check(tmp_path, text) == [
        f"F:6: node menu: prompt.play: prompt file 'prompts/menu.wav' not found (looked in {tmp_path})"]
    assert validate_file(tmp_path / "flow.yaml")[0].kind == "missing_prompt"
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts/menu.wav").write_bytes(b"RIFF")
    assert _check(tmp_path, text) == []

    jingle = "  jingle:\n    type: play\n    file: jingle.wav\n    next: bye\n"
    play = HEAD.replace("start: menu", "start: jingle") + jingle + BYE
    assert _check(tmp_path, play) == [
        f"F:6: node jingle: file: prompt file 'jingle.wav' not found (looked in {tmp_path})"]
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "jingle.wav").write_bytes(b"RIFF")
    assert validate_file(tmp_path / "flow.yaml", prompts_dirs=(shared,)) == []


def test_same_keyword_on_two_branches(tmp_path):
    text = HEAD + MENU.replace('keywords: ["no"]', 'keywords: ["no", "Yeah!"]') + BYE
    assert _check(tmp_path, text) == ["F:11: node menu: branches[1]: keyword 'Yeah!' is also on branches[0]"]
    assert validate_file(tmp_path / "flow.yaml")[0].kind == "duplicate_keyword"


def test_keyword_clashing_with_global_keyword(tmp_path):
    globals_ = "keywords:\n  - phrases: [help, \"NO \"]\n    goto: bye\n"
    other = MENU.replace("        digits: \"2\"\n        goto: bye", "        digits: \"2\"\n        goto: menu")
    assert _check(tmp_path, globals_ + HEAD + other + BYE) == [
        "F:14: node menu: branches[1]: keyword 'no' clashes with global keywords[0] (goes to 'bye', this branch "
        "to 'menu')"]
    # the same phrase leading to the same node is a harmless redundancy (the bank's "agent")
    assert _check(tmp_path, globals_ + HEAD + MENU + BYE) == []
    twice = "keywords:\n  - phrases: [help]\n    goto: bye\n  - phrases: [Help.]\n    goto: menu\n"
    assert _check(tmp_path, twice + HEAD + MENU + BYE) == [
        "F:4: keywords[1]: global keyword 'Help.' is already keywords[0]"]


def test_same_digit_on_two_branches(tmp_path):
    text = HEAD + MENU.replace('digits: "2"', 'digits: "1"') + BYE
    assert _check(tmp_path, text) == ["F:12: node menu: branches[1]: digits '1' are also on branches[0]"]
    assert validate_file(tmp_path / "flow.yaml")[0].kind == "duplicate_digits"


def test_empty_grammar(tmp_path):
    no_branches = HEAD + "  menu:\n    type: gather\n    prompt: {say: hi}\n    failure: bye\n" + BYE
    assert _check(tmp_path, no_branches) == ["F:4: node menu: gather has no branches: nothing can match"]
    assert validate_file(tmp_path / "flow.yaml")[0].kind == "empty_grammar"

    bare = HEAD + MENU.replace('      - keywords: ["no"]\n        digits: "2"\n        goto: bye\n',
                               "      - goto: bye\n") + BYE
    assert _check(tmp_path, bare) == [
        "F:11: node menu: branches[1]: nothing to match: the gather accepts speech and dtmf but the branch has "
        "no keywords or digits"]
    speech_only = HEAD + MENU.replace("    branches:", "    input: [speech]\n    branches:").replace(
        '- keywords: ["no"]\n        digits: "2"', '- digits: "2"') + BYE
    assert _check(tmp_path, speech_only) == [
        "F:12: node menu: branches[1]: nothing to match: the gather accepts speech but the branch has no keywords"]
    punctuation = HEAD + MENU.replace('["no"]', '["no", "?!"]') + BYE
    assert _check(tmp_path, punctuation) == [
        "F:11: node menu: branches[1].keywords[1]: '?!' is empty after normalisation"]


def test_back_without_gather(tmp_path):
    text = HEAD.replace("start: menu", "start: hello") + """\
  hello:
    type: say
    text: hi
    next: back
  back:
    type: back
"""
    assert _check(tmp_path, text) == [
        "F:8: node back: warning: back has no gather before it on any path from start (the call would end here)"]
    problem = validate_file(tmp_path / "flow.yaml")[0]
    assert (problem.kind, problem.severity) == ("back_without_gather", "warning")
    assert main_validate(tmp_path / "flow.yaml") == 0  # a warning alone does not fail validation
    to_back = MENU.replace('goto: bye\n      - keywords: ["no"]', 'goto: back\n      - keywords: ["no"]')
    after_menu = HEAD + to_back + BYE
    assert _check(tmp_path, after_menu + "  back:\n    type: back\n") == []


def test_start_missing(tmp_path):
    text = HEAD.replace("start: menu", "start: mneu") + MENU + BYE
    assert _check(tmp_path, text) == ["F:2: start: node 'mneu' does not exist (did you mean 'menu'?)"]
    assert [p.kind for p in validate_file(tmp_path / "flow.yaml")] == ["missing_start"]


def test_problems_come_in_file_order_and_json_has_lines(tmp_path):
    text = """\
{
  "name": "t",
  "start": "a",
  "nodes": {
    "a": {"type": "say", "text": "hi", "next": "zz"},
    "b": {"type": "hangup"}
  }
}
"""
    assert _check(tmp_path, text, "flow.json") == [
        "F:5: node a: next: goes to unknown node 'zz'",
        "F:6: node b: unreachable from start node 'a'",
    ]


def test_validate_without_file_positions():
    data = load_flow(ROOT / "config/flows/bank.yaml").model_dump()
    flow = Flow.model_validate(dict(data, start="nowhere"))  # built in code: no file, no line numbers
    problems = validate(flow, "bank.yaml")
    assert problems[0].format() == "bank.yaml: start: node 'nowhere' does not exist"
    assert Problem(path="f", line=None, node_id="n", kind="unreachable", message="m").format() == "f: node n: m"


def test_normalize_keyword():
    assert normalize_keyword("  Customer-Service!  ") == "customer service"
    assert normalize_keyword("客服。") == "客服"
    assert normalize_keyword("Go   back") == "go back"
    assert normalize_keyword("ＡＧＥＮＴ") == "agent"


def test_main_validate_prints_and_returns_status(tmp_path, capsys):
    path = tmp_path / "flow.yaml"
    path.write_text(HEAD + MENU + BYE + "  odd:\n    type: dance\n", encoding="utf-8")
    assert main_validate(path) == 1
    assert capsys.readouterr().out.startswith(f"{path}:18: node odd: type: unknown node type 'dance'")
    path.write_text(HEAD + MENU + BYE, encoding="utf-8")
    assert main_validate(path) == 0
    assert capsys.readouterr().out == f"{path}: ok\n"


def test_bank_flow_validates_clean(capsys):
    path = ROOT / "config/flows/bank.yaml"
    assert validate_file(path) == []
    assert main_validate(path) == 0
    assert capsys.readouterr().out == f"{path}: ok\n"


@pytest.mark.parametrize("node", ["credit_card", "bank_account"])
def test_bank_submenus_offer_go_back(node):
    flow = load_flow(ROOT / "config/flows/bank.yaml")
    gather = flow.nodes[node]
    back = [b for b in gather.branches if b.digits == "*"]
    assert len(back) == 1 and "go back" in back[0].keywords and flow.nodes[back[0].goto].type == "back"
