"""ACD configuration (issue 5): [acd], [control], [[queues]], [[agents]], their cross-checks (errors name file,
line and key) and the engine dataclasses built from them."""

import dataclasses
from pathlib import Path

import pytest

from softswitch.acd import model
from softswitch.config import Config, ConfigError, load_config, parse_config

USERS = '[[users]]\nname = "1001"\npassword = "p"\n[[users]]\nname = "1002"\npassword = "p"\n'


def _error(tmp_path: Path, text: str) -> str:
    """The message of loading ``text`` from a file (so it names FILE:LINE)."""
    path = tmp_path / "x.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    return str(exc.value).replace(str(path), "x.toml")


def test_embedded_default_acd():
    c = Config()
    assert (c.acd.queue_log, c.acd.login_code, c.acd.logout_code, c.acd.pause_code, c.acd.unpause_code) == (
        "data/queue_log", "*45", "*46", "*47", "*48")
    assert c.control.socket == "data/softswitch.sock"
    (q,) = c.queues
    assert (q.name, q.strategy, q.announce_frequency_s, q.announce_position, q.announce_ewt) == (
        "support", "longest-idle-agent", 30.0, True, True)
    assert [(a.name, a.queues, a.logged_in, a.wrap_up_s) for a in c.agents] == [
        (n, {"support": 0}, True, None) for n in ("1001", "1002", "1003")]
    routes = [r.name for r in c.routes]
    assert routes.index("queue") == routes.index("extensions") - 1
    assert (c.routes[routes.index("queue")].exact, c.routes[routes.index("queue")].to) == ("200", "queue:support")


def test_paths_resolve_against_the_config_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert Config().queue_log_path() == tmp_path / "data/queue_log"
    assert Config().control_socket_path() == tmp_path / "data/softswitch.sock"
    cfg = tmp_path / "etc" / "s.toml"
    cfg.parent.mkdir()
    cfg.write_text('[acd]\nqueue_log = "log/q"\n[control]\nsocket = "run/s.sock"\n')
    c = load_config(cfg)
    assert (c.queue_log_path(), c.control_socket_path()) == (tmp_path / "etc/log/q", tmp_path / "etc/run/s.sock")
    cfg.write_text('[acd]\nqueue_log = ""\n[control]\nsocket = ""\n')
    c = load_config(cfg)
    assert c.queue_log_path() is None and c.control_socket_path() is None


def test_demo_agents_follow_the_configured_users_and_queue():
    assert [a.name for a in parse_config(USERS).agents] == ["1001", "1002"]
    assert parse_config('[[users]]\nname = "alice"\npassword = "p"\n').agents == []
    c = parse_config('[[queues]]\nname = "sales"\n')
    assert c.agents == [] and "queue" not in [r.name for r in c.routes]
    c = parse_config(USERS + '[[queues]]\nname = "support"\n[[agents]]\nname = "1002"\nqueues = ["support"]\n')
    assert [(a.name, a.queues) for a in c.agents] == [("1002", {"support": 0})]


def test_queue_and_agent_settings_round_trip_to_the_engine():
    text = USERS + '''
[[queues]]
name = "sales"
strategy = "ringall"
ring_timeout_s = 8
max_wait_s = 60
max_len = 5
wrap_up_s = 3
join_empty = false
leave_when_empty = true
service_level_s = 30
weight = 2
progressive_step_s = 4
announce_frequency_s = 45
announce_position = false
announce_ewt = false
periodic_announce = "say:Thank you for waiting"
periodic_announce_s = 60
default_handle_time_s = 120
moh = "jazz.wav"
overflow = "queue:support"

[[queues]]
name = "support"
strategy = "rrmemory"

[[agents]]
name = "1001"
queues = { sales = 1, support = 0 }
skills = { fr = 2 }
wrap_up_s = 7
max_no_answer = 0
no_answer_delay_s = 1
reject_delay_s = 2
busy_delay_s = 3
weight = 4
logged_in = false

[[agents]]
name = "1002"
queues = ["sales", "support"]
'''
    c = parse_config(text)
    sales, support = c.queue_configs()
    assert sales == model.QueueConfig(
        name="sales", strategy="ring-all", ring_timeout_s=8, max_wait_s=60, max_len=5, wrap_up_s=3,
        join_empty=False, leave_when_empty=True, service_level_s=30, weight=2, progressive_step_s=4,
        announce_frequency_s=45, announce_position=False, announce_ewt=False, default_handle_time_s=120,
        moh="jazz.wav", overflow="queue:support")
    assert support == model.QueueConfig(name="support", strategy="round-robin")
    assert (c.queues[0].periodic_announce, c.queues[0].periodic_announce_s) == ("say:Thank you for waiting", 60)
    a1, a2 = c.agent_configs()
    assert a1 == model.AgentConfig(name="1001", queues={"sales": 1, "support": 0}, skills={"fr": 2}, wrap_up_s=7,
                                   max_no_answer=0, no_answer_delay_s=1, reject_delay_s=2, busy_delay_s=3, weight=4)
    assert a2 == model.AgentConfig(name="1002", queues={"sales": 0, "support": 0})
    assert [a.logged_in for a in c.agents] == [False, True]
    # fresh objects each call: the engine may mutate them without touching the configuration
    again = c.agent_configs()
    assert again[0] == a1 and again[0] is not a1 and again[0].queues is not a1.queues
    again[0].queues["x"] = 9
    assert "x" not in c.agents[0].queues and "x" not in c.agent_configs()[0].queues
    assert c.queue_configs()[0] is not sales


def test_every_engine_field_is_configurable():
    """Nothing of the engine's QueueConfig/AgentConfig is silently left at its dataclass default."""
    from softswitch.config import AcdAgentConfig, AcdQueueConfig
    assert {f.name for f in dataclasses.fields(model.QueueConfig)} <= set(AcdQueueConfig.model_fields)
    assert {f.name for f in dataclasses.fields(model.AgentConfig)} <= set(AcdAgentConfig.model_fields)


def test_default_file_documents_every_acd_key():
    text = (Path(__file__).resolve().parent.parent / "config/default.toml").read_text()
    from softswitch.config import AcdAgentConfig, AcdQueueConfig
    for key in [*AcdQueueConfig.model_fields, *AcdAgentConfig.model_fields]:
        assert f"#   {key}" in text or f", {key}" in text, key


@pytest.mark.parametrize("strategy", ["ringall", "rrmemory", "leastrecent", "wrandom", "top-down", "ring-all"])
def test_strategy_aliases_are_accepted(strategy):
    (q,) = parse_config(f'[[queues]]\nname = "q"\nstrategy = "{strategy}"\n').queues
    from softswitch.acd.strategies import STRATEGIES
    assert q.strategy in STRATEGIES


def test_unknown_strategy_lists_the_known_ones(tmp_path):
    msg = _error(tmp_path, '[[queues]]\nname = "q"\nstrategy = "fastest"\n')
    assert msg.startswith("x.toml:3: queues[0].strategy: unknown ACD strategy 'fastest'; known: ring-all, ")
    assert "longest-idle-agent" in msg and len(msg.splitlines()) == 1


@pytest.mark.parametrize("text, expected", [
    ('[[queues]]\nname = "q"\n[[queues]]\nname = "q"\n', "x.toml:4: queues[1].name: duplicate name 'q'"),
    (USERS + '[[agents]]\nname = "1001"\n[[agents]]\nname = "1001"\n',
     "x.toml:10: agents[1].name: duplicate name '1001'"),
    (USERS + '[[agents]]\nname = "1009"\n',
     "x.toml:8: agents[0].name: '1009' is not a configured user (defined: 1001, 1002)"),
    (USERS + '[[agents]]\nname = "1001"\nqueues = { support = 0, sales = 1 }\n',
     "x.toml:9: agents[0].queues.sales: unknown queue 'sales' (defined: support)"),
    (USERS + '[[agents]]\nname = "1001"\nqueues = ["support", "sales"]\n',
     "x.toml:9: agents[0].queues.sales: unknown queue 'sales' (defined: support)"),
    (USERS + '[[agents]]\nname = "1001"\nqueues = ["support", "support"]\n',
     "x.toml:9: agents[0].queues: lists a queue twice"),
    (USERS + '[[agents]]\nname = "1001"\nqueues = { support = -1 }\n',
     "x.toml:9: agents[0].queues.support: Input should be greater than or equal to 0, got -1"),
    (USERS + '[[agents]]\nname = "1001"\nwrap_up_s = -1\n',
     "x.toml:9: agents[0].wrap_up_s: Input should be greater than or equal to 0, got -1"),
    ('[[routes]]\nname = "r"\nexact = "7"\nto = "queue:sales"\n',
     "x.toml:4: routes[0].to: unknown queue 'sales' (defined: support)"),
    ('[[queues]]\nname = "q"\noverflow = "queue:nope"\n',
     "x.toml:3: queues[0].overflow: unknown queue 'nope' (defined: q)"),
    ('[[queues]]\nname = "q"\noverflow = "queue:q"\n', "x.toml:3: queues[0].overflow: a queue cannot overflow to itself"),
    ('[[queues]]\nname = "q"\noverflow = "user:9999"\n',
     "x.toml:3: queues[0].overflow: unknown user '9999' (defined: 1001, 1002, 1003)"),
    ('[[queues]]\nname = "q"\noverflow = "voicemail:q"\n',
     'x.toml:3: queues[0].overflow: \'voicemail:q\': must be "", queue:NAME, user:NAME, flow:NAME, '
     'extension:DIGITS or number:+E164'),
    ('[[queues]]\nname = "q"\noverflow = "number:0044"\n', "x.toml:3: queues[0].overflow: 'number:0044': must be"),
    ('[[queues]]\nname = "q"\nring_timeout_s = 0\n',
     "x.toml:3: queues[0].ring_timeout_s: Input should be greater than 0, got 0"),
    ('[[queues]]\nname = "q"\nmax_len = -1\n', "x.toml:3: queues[0].max_len: Input should be greater than or equal to 0"),
    ('[[queues]]\nname = "q"\nperiodic_announce = "hold.wav"\n',
     "x.toml:1: queues[0].periodic_announce_s: must be > 0 when periodic_announce is set"),
    ('[[queues]]\nname = "q"\nperiodic_announce_s = 30\n',
     'x.toml:1: queues[0].periodic_announce: needs a prompt file or "say:TEXT" when periodic_announce_s is set'),
    ('[[queues]]\nname = "q"\nperiodic_announce = "say: "\nperiodic_announce_s = 30\n',
     'x.toml:3: queues[0].periodic_announce: "say:" needs the text to speak'),
    ('[[queues]]\nname = "q"\ncolour = "red"\n', "x.toml:3: queues[0].colour: unknown key 'colour'"),
    ('[acd]\nlogin_code = "*45"\nlogout_code = "*45"\n', "x.toml:3: acd.logout_code: '*45' is already login_code"),
    ('[acd]\nlogin_code = ""\n', "x.toml:2: acd.login_code: '': a feature code is one or more of 0-9, * and #"),
    ('[acd]\nunpause_code = "*4a"\n', "x.toml:2: acd.unpause_code: '*4a': a feature code is one or more of"),
    ('[acd]\nunpause_code = "*471"\n',
     "x.toml:2: acd.unpause_code: '*471' starts with pause_code '*47' (the digits after pause_code are the "
     "pause reason)"),
    ('[control]\npath = "x"\n', "x.toml:2: control.path: unknown key 'path' (allowed: socket)"),
])
def test_acd_errors_name_line_and_key(tmp_path, text, expected):
    msg = _error(tmp_path, text)
    assert msg.startswith(expected), msg


def test_overflow_to_a_flow_is_checked_like_routes(tmp_path):
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "after_hours.yaml").write_text("name: x\n")
    ok = ('[ivr]\nflows_dir = "flows"\n[[routes]]\nname = "r"\nexact = "1"\nto = "user"\n'
          '[[queues]]\nname = "q"\noverflow = "flow:after_hours"\n')
    (tmp_path / "ok.toml").write_text(ok)
    assert load_config(tmp_path / "ok.toml").queues[0].overflow == "flow:after_hours"
    msg = _error(tmp_path, ok.replace("after_hours", "nope"))
    assert msg.startswith("x.toml:9: queues[0].overflow: no flow 'nope': none of nope.yaml")


def test_other_overflow_forms_are_accepted():
    for overflow in ("", "queue:support", "user:1001", "extension:1002", "number:+14155550123"):
        text = f'[[queues]]\nname = "support"\n[[queues]]\nname = "q"\noverflow = "{overflow}"\n'
        assert parse_config(text).queues[1].overflow == overflow


def test_one_bad_key_reports_only_itself():
    """Defaults built from other keys (the demo agents, route 200) add no noise to a real error."""
    with pytest.raises(ConfigError) as exc:
        parse_config('[sip]\nt1_ms = "x"\n', "x.toml")
    assert exc.value.problems == ["x.toml:2: sip.t1_ms: Input should be a valid integer, got 'x'"]
