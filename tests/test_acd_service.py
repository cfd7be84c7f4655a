"""The ACD's asyncio layer without calls: announcements, feature codes, run-time changes and the control
commands' errors (the live behaviour is in test_acd_e2e.py / test_acd_load.py)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from softswitch.acd.service import AcdService, announcement_text
from softswitch.config import Config


@pytest.fixture
def service():
    loop = asyncio.new_event_loop()
    now = [1000.0]
    switch = SimpleNamespace(config=Config(), loop=loop, destination_problem=lambda d: None
                             if d.startswith("queue:support") else f"no such destination {d!r}")
    svc = AcdService(switch, clock=lambda: now[0])
    svc.now = now
    for name in ("1001", "1002", "1003"):
        svc.agent_command("login", name)
    yield svc
    svc.close()
    loop.close()


def test_announcement_wording():
    assert announcement_text(1, 180.0) == "You are number 1 in the queue. Your estimated wait time is about 3 minutes."
    assert announcement_text(2, 20.0) == "You are number 2 in the queue. Your estimated wait time is less than a minute."
    assert announcement_text(3, 70.0) == "You are number 3 in the queue. Your estimated wait time is about 1 minute."
    assert announcement_text(4, None) == "You are number 4 in the queue."
    assert announcement_text(4, 100.0, say_position=False) == "Your estimated wait time is about 2 minutes."


def test_feature_codes_change_the_agents_state(service):
    assert service.is_feature_code("*45") and service.is_feature_code("*47") and service.is_feature_code("*472")
    assert not service.is_feature_code("*4") and not service.is_feature_code("*47x") and not service.is_feature_code("200")
    assert service.feature_code("1001", "*46") == "Agent 1 0 0 1 logged out."
    assert service.acd.agent_status("1001", 1000)["state"] == "logged_out"
    assert service.feature_code("1001", "*45") == "Agent 1 0 0 1 logged in."
    assert service.feature_code("1001", "*472") == "Agent 1 0 0 1 paused. Reason 2."
    status = service.acd.agent_status("1001", 1000)
    assert status["state"] == "paused" and status["pause_reason"] == "2"
    assert service.feature_code("1001", "*48") == "Agent 1 0 0 1 is available."
    assert service.feature_code("9999", "*45") == "This phone is not an agent."


def test_queue_set_changes_settings_and_names_bad_input(service):
    row = service.queue_set("support", {"strategy": "rrmemory", "max_wait_s": "60", "join_empty": "false"})
    assert row["strategy"] == "round-robin"
    config = service.acd.queues["support"].config
    assert config.max_wait_s == 60.0 and config.join_empty is False
    with pytest.raises(ValueError, match="unknown queue setting 'colour'"):
        service.queue_set("support", {"colour": "red"})
    with pytest.raises(ValueError, match="max_wait_s: 'soon' is not a float"):
        service.queue_set("support", {"max_wait_s": "soon"})
    with pytest.raises(ValueError, match="strategy: unknown strategy 'fastest'"):
        service.queue_set("support", {"strategy": "fastest"})
    with pytest.raises(ValueError, match="overflow: no such destination 'flow:nope'"):
        service.queue_set("support", {"overflow": "flow:nope"})
    with pytest.raises(KeyError, match="no queue 'sales'"):
        service.queue_set("sales", {})
    assert service.acd.queues["support"].config.strategy == "round-robin"   # a refused change changes nothing


def test_control_commands(service):
    status = service.control({"cmd": "queue.status"})
    assert [q["name"] for q in status] == ["support"]
    assert {"name", "waiting", "offered", "answered", "abandoned"} <= set(status[0])
    agents = service.control({"cmd": "agent.list"})
    assert [a["name"] for a in agents] == ["1001", "1002", "1003"]
    assert service.control({"cmd": "agent.pause", "name": "1002", "reason": "lunch"})["state"] == "paused"
    row = service.control({"cmd": "queue.remove_member", "queue": "support", "agent": "1003"})
    assert row["staffed"] == 1
    row = service.control({"cmd": "queue.add_member", "queue": "support", "agent": "1003", "level": 1})
    assert row["staffed"] == 2
    with pytest.raises(KeyError, match="no queue 'x'"):
        service.control({"cmd": "queue.status", "name": "x"})
    service.control({"cmd": "agent.logout", "name": "1001"})
    with pytest.raises(ValueError, match="agent 1001 is logged out"):
        service.control({"cmd": "agent.pause", "name": "1001"})
    with pytest.raises(KeyError, match="no agent '42'"):
        service.control({"cmd": "agent.login", "name": "42"})
    with pytest.raises(ValueError, match="unknown command 'reboot'"):
        service.control({"cmd": "reboot"})


def test_busy_counts_each_call_once(service):
    """An agent's own calls make it busy; a call that never started (404) must not end another's busy."""
    def call(cid):
        return SimpleNamespace(id=cid, users=lambda: ["1001", "9999"], busy_users=[], hangup_by=None)
    first, second, refused = call("a"), call("b"), call("c")
    service.call_started(first)
    service.call_started(second)
    assert first.busy_users == ["1001"]          # 9999 is no agent
    assert service.acd.agent_status("1001", 1000)["state"] == "busy"
    service.call_gone(refused)                   # ended before call_started: counts nothing
    service.call_gone(first)
    assert service.acd.agent_status("1001", 1000)["state"] == "busy"
    service.call_gone(second)
    assert service.acd.agent_status("1001", 1000)["state"] == "available"


def test_a_caller_who_hangs_up_while_waiting_leaves_nothing_behind(service):
    """Abandon: logged with position and wait, the stay resolved, and no per-caller state kept."""
    loop = service.sw.loop
    call = SimpleNamespace(id="c1", queue_attempts=[], busy_users=[], hangup_by="caller",
                           caller_number=lambda: "5551234", offer_agent=lambda agent: [], users=lambda: [])

    async def stay():
        wait = service.join(call, "support")
        assert service.waits and wait.record["position"] == 1
        service.now[0] += 7
        service.call_gone(call)
        return await asyncio.wait_for(wait.outcome, 1)
    outcome = loop.run_until_complete(stay())
    assert outcome.kind == "gone" and not service.waits and not service.connected
    assert call.queue_attempts[0]["outcome"] == "abandoned" and call.queue_attempts[0]["wait_s"] == 7.0
    assert call.queue_attempts[0]["position_at_exit"] == 1
    assert service.acd.queue_status("support", service.now[0])["abandoned"] == 1
