"""The interpreter through the simulator: every branch of the bank flow by text and by keys, back,
global keywords, reprompts and failure, coverage, the CLI's JSON, and the node types on a small flow."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path

import pytest

from ivr.flow import load_flow, parse_flow
from ivr.interpreter import run_flow
from ivr.simulator import SimChannel, coverage, simulate
from softswitch.cli import main

ROOT = Path(__file__).resolve().parent.parent
BANK = ROOT / "config/flows/bank.yaml"


@pytest.fixture(scope="module")
def bank():
    return load_flow(BANK)


@pytest.mark.parametrize("answers,path_prefix", [
    ([("say", "credit card")], ["main_menu", "credit_card"]),
    ([("say", "I'd like to ask about my bank account")], ["main_menu", "bank_account"]),
    ([("say", "customer service please")], ["main_menu", "agent_transfer"]),
    ([("say", "客服")], ["main_menu", "agent_transfer"]),
    ([("dtmf", "1")], ["main_menu", "credit_card"]),
    ([("dtmf", "2")], ["main_menu", "bank_account"]),
    ([("dtmf", "0")], ["main_menu", "agent_transfer"]),
    ([("say", "credit card"), ("say", "what is my balance")], ["main_menu", "credit_card", "card_balance"]),
    ([("say", "credit card"), ("say", "my card was stolen")], ["main_menu", "credit_card", "card_lost"]),
])
def test_bank_branches(bank, answers, path_prefix):
    run, _ = simulate(bank, answers)
    assert run.path[:len(path_prefix)] == path_prefix, run.path


def test_back_returns_to_the_previous_gather(bank):
    run, _ = simulate(bank, [("say", "credit card"), ("say", "go back"), ("dtmf", "2")])
    assert run.path[:5] == ["main_menu", "credit_card", "back_from_card", "main_menu", "bank_account"]
    assert [h["source"] for h in run.hits[:3]] == ["speech", "speech", "dtmf"]


def test_global_keyword_works_in_a_sub_menu(bank):
    run, _ = simulate(bank, [("say", "bank account"), ("say", "operator")])
    assert run.path[:3] == ["main_menu", "bank_account", "agent_transfer"]


def test_queue_transfer_succeeds_or_takes_its_failure_edge(bank):
    run, log = simulate(bank, [("dtmf", "0")])
    assert "transfer: queue:support" in log
    assert run.result == "transferred: queue:support" and run.path[-1] == "agent_transfer"
    channel = SimChannel([("dtmf", "0")], transfer_error="queue 'support': no agent is staffed")
    run = asyncio.run(run_flow(bank, channel))
    assert run.variables["transfer_error"] == "queue 'support': no agent is staffed"
    assert run.path[-2:] == ["transfer_failed", "hangup"]


def test_no_match_and_no_input_reprompt_then_fail(bank):
    run, log = simulate(bank, [("say", "pizza"), ("say", "weather")])  # then silence
    assert run.path == ["main_menu", "goodbye_failure", "hangup"]
    assert [h["source"] for h in run.hits] == ["speech", "speech", "none"]
    assert log.count("say: Sorry, I didn't catch that.") == 2  # reprompted twice, then the failure edge
    run, log = simulate(bank, [])  # silence all along
    assert log.count("say: Sorry, I didn't hear anything.") == 2 and run.path[1] == "goodbye_failure"


def test_coverage_lists_branches_never_taken(bank):
    runs = [simulate(bank, a)[0] for a in ([("dtmf", "1")], [("dtmf", "2")])]
    missing = coverage(bank, runs)
    assert "main_menu -> agent_transfer" in missing and "main_menu -> credit_card" not in missing
    everything = [simulate(bank, a)[0] for a in (
        [("dtmf", "1"), ("dtmf", "1")], [("dtmf", "1"), ("dtmf", "2")], [("dtmf", "1"), ("dtmf", "*")],
        [("dtmf", "2"), ("dtmf", "1")], [("dtmf", "2"), ("dtmf", "2")], [("dtmf", "2"), ("dtmf", "*")],
        [("dtmf", "0")], [], [("dtmf", "1")], [("dtmf", "2")])]
    assert coverage(bank, everything) == []


def test_cli_json(capsys):
    assert main(["ivr", "simulate", str(BANK), "--say", "credit card", "--dtmf", "*", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["path"][:4] == ["main_menu", "credit_card", "back_from_card", "main_menu"]
    assert out["hits"][0]["keyword"] == "credit card" and out["hits"][1]["source"] == "dtmf"


FLOW = """
name: small
start: hello
nodes:
  hello: {type: set, variables: {greeting: "hi {{caller}}"}, next: when}
  when:
    type: branch
    conditions:
      - {weekdays: [sat, sun], goto: closed}
      - {caller: "^100", hours: "09:00-17:00", goto: say}
    default: closed
  say: {type: say, text: "{{greeting}}, welcome", next: rec}
  rec: {type: record, max_s: 5, next: bye}
  closed: {type: say, text: "We are closed", next: bye}
  bye: {type: hangup}
"""


@pytest.mark.parametrize("now,caller,expect", [
    (datetime(2026, 11, 20, 10, 0), "1001", ["hello", "when", "say", "rec", "bye"]),   # Friday, office hours
    (datetime(2026, 11, 21, 10, 0), "1001", ["hello", "when", "closed", "bye"]),        # Saturday
    (datetime(2026, 11, 20, 18, 0), "1001", ["hello", "when", "closed", "bye"]),        # after hours
    (datetime(2026, 11, 20, 10, 0), "2001", ["hello", "when", "closed", "bye"]),        # other caller
])
def test_set_branch_say_record_hangup(now, caller, expect):
    flow = parse_flow(FLOW)
    run, log = simulate(flow, [], variables={"now": now, "caller": caller})
    assert run.path == expect and run.result == "hangup"
    if "say" in expect:
        assert f"say: hi {caller}, welcome" in log and run.variables["recording"] == "simulated.wav"


# --- --wav: every branch of the bank flow through the real recogniser ----------------------

WAV_CASES = [
    (["credit card"], ["main_menu", "credit_card"]),
    (["bank account"], ["main_menu", "bank_account"]),
    (["customer service"], ["main_menu", "agent_transfer"]),
    (["credit card", "balance"], ["main_menu", "credit_card", "card_balance"]),
    (["credit card", "lost card"], ["main_menu", "credit_card", "card_lost"]),
    (["credit card", "go back"], ["main_menu", "credit_card", "back_from_card", "main_menu"]),
    (["bank account", "account balance"], ["main_menu", "bank_account", "account_balance"]),
    (["bank account", "open an account"], ["main_menu", "bank_account", "account_open"]),
    (["bank account", "go back"], ["main_menu", "bank_account", "back_from_account", "main_menu"]),
]


@pytest.fixture(scope="module")
def spoken(tmp_path_factory):
    """espeak-ng phrases, telephone band, through a G.711 round trip (as a caller would arrive)."""
    from asr.eval import synth
    from peers.audio import write_wav
    out = tmp_path_factory.mktemp("spoken")
    phrases = {p for words, _ in WAV_CASES for p in words}
    return {p: write_wav(out / f"{p.replace(' ', '_')}.wav", synth(p, "en-us", 150)) for p in phrases}


@pytest.mark.timeout(180)
def test_wav_answers_take_every_bank_branch(spoken, capsys):
    runs = []
    for words, path_prefix in WAV_CASES:
        argv = ["ivr", "simulate", str(BANK), "--json"]
        for w in words:
            argv += ["--wav", str(spoken[w])]
        main(argv)
        out = json.loads(capsys.readouterr().out)
        assert out["path"][:len(path_prefix)] == path_prefix, (words, out)
        assert [h["source"] for h in out["hits"][:len(words)]] == ["speech"] * len(words), out["hits"]
        runs.append(out)


def test_cases_file_reports_full_coverage_of_the_shipped_cases(capsys):
    assert main(["ivr", "simulate", str(BANK), "--cases", str(ROOT / "config/flows/bank.cases.yaml"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert all(c["ok"] for c in out["cases"]), [c for c in out["cases"] if not c["ok"]]
    assert out["coverage"]["missing"] == [] and out["coverage"]["edges"] == 12


def test_cases_file_names_untaken_branches_and_failed_expectations(tmp_path, capsys):
    cases = tmp_path / "cases.yaml"
    cases.write_text("- name: keys one\n  answers: [{dtmf: '1'}, {dtmf: '1'}]\n  expect: card_balance\n"
                     "- name: wrong\n  answers: [{dtmf: '2'}]\n  expect: credit_card\n")
    assert main(["ivr", "simulate", str(BANK), "--cases", str(cases)]) == 1
    out = capsys.readouterr().out
    assert "ok   keys one" in out and "FAIL wrong" in out and "(expected credit_card)" in out
    assert "never taken: main_menu -> agent_transfer" in out and "coverage: 4 of 12" in out


def test_cases_file_errors_name_the_case(tmp_path, capsys):
    cases = tmp_path / "cases.yaml"
    cases.write_text("- name: bad\n  answers: [{shout: hello}]\n")
    assert main(["ivr", "simulate", str(BANK), "--cases", str(cases)]) == 1
    err = capsys.readouterr().err
    assert f"{cases}: case 1" in err and "say: TEXT" in err


# --- when keys decide a gather (the live channel waits for more keys otherwise) ---------------

KEYS_FLOW = """
name: keys
start: g
nodes:
  g:
    type: gather
    prompt: {say: "Enter"}
    input: [dtmf]
    branches:
      - {digits: "1", goto: one}
      - {digits: "12", goto: twelve}
      - {digits: "3", goto: three}
    failure: end
  one: {type: hangup}
  twelve: {type: hangup}
  three: {type: hangup}
  end: {type: hangup}
"""


@pytest.mark.parametrize("keys,decided,branch", [
    ("", False, None),
    ("1", False, None),      # "12" could still follow
    ("12", True, 1),
    ("3", True, 2),
    ("9", True, None),       # no branch starts with 9: a no-match at once
    ("1#", True, 0),         # '#' ends the entry
    ("4#", True, None),
])
def test_keys_decided(keys, decided, branch):
    from ivr.matching import keys_decided
    node = parse_flow(KEYS_FLOW).nodes["g"]
    found = keys_decided(node, keys)
    assert (found is not None) == decided
    if found is not None:
        assert found.kind == "dtmf" and found.branch == branch


def test_clock_variables_fill_prompts():
    from ivr.runtime import clock_variables
    flow = parse_flow("""
name: t
start: s
nodes:
  s: {type: say, text: "It is {{time}} on {{weekday}}, {{date}}.", next: bye}
  bye: {type: hangup}
""")
    assert clock_variables(datetime(2026, 11, 21, 9, 5)) == {"date": "2026-11-21", "time": "09:05", "weekday": "sat"}
    run, log = simulate(flow, [], variables={"time": "09:05", "weekday": "sat", "date": "2026-11-21"})
    assert log[0] == "say: It is 09:05 on sat, 2026-11-21."
    run, log = simulate(flow, [])
    assert "{{" not in log[0] and log[0].count(":") == 2, log[0]  # filled from the clock
