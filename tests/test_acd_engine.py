"""Sans-IO ACD engine with a fake clock: wrap-up across queues, auto-pause, busy agents, abandon/overflow
logging, announcements, and exactly-once accounting under a randomised event storm (issue 5)."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from softswitch.acd import (STRATEGIES, Acd, AgentConfig, AgentPaused, AgentState, Announce, CancelOffer, Connect,
                            LeftEmpty, Offer, Overflow, QueueConfig, Timeout)


def offers(actions) -> list[tuple[str, ...]]:
    return [a.agents for a in actions if isinstance(a, Offer)]


def events(acd: Acd) -> list[str]:
    return [e.line() for e in acd.drain_queue_log()]


def two_queues(wrap_sales: float = 30.0, wrap_support: float = 0.0) -> Acd:
    acd = Acd()
    acd.add_queue(QueueConfig("sales", wrap_up_s=wrap_sales))
    acd.add_queue(QueueConfig("support", wrap_up_s=wrap_support))
    acd.add_agent(AgentConfig("1001", queues={"sales": 0, "support": 0}))
    acd.agent_login("1001", 0.0)
    return acd


def test_wrap_up_is_honoured_across_queues():
    acd = two_queues()
    assert offers(acd.caller_join("sales", "s1", 1.0)) == [("1001",)]
    acd.offer_answered("s1", "1001", 2.0)
    acd.call_ended("s1", 10.0)                      # sales wrap-up 30 s -> free at 40
    assert acd.agents["1001"].state(10.0) is AgentState.WRAP_UP
    assert acd.caller_join("support", "p1", 11.0) == []   # support has no wrap-up, but the agent does
    assert acd.next_deadline() == 40.0
    assert offers(acd.tick(39.9)) == []
    assert offers(acd.tick(40.0)) == [("1001",)]
    acd.check_invariants(40.0)


def test_agent_wrap_up_overrides_queue_wrap_up():
    acd = two_queues()
    acd.agents["1001"].config.wrap_up_s = 5.0
    acd.caller_join("sales", "s1", 0.0)
    acd.offer_answered("s1", "1001", 1.0)
    acd.call_ended("s1", 2.0)
    acd.caller_join("support", "p1", 3.0)
    assert offers(acd.tick(7.0)) == [("1001",)]
    assert acd.agents["1001"].wrap_up_time_s == 5.0


def test_auto_pause_after_n_consecutive_no_answers():
    acd = Acd()
    acd.add_queue(QueueConfig("support", strategy="top-down", ring_timeout_s=10))
    acd.add_agent(AgentConfig("1001", queues={"support": 0}, max_no_answer=3, no_answer_delay_s=0))
    acd.add_agent(AgentConfig("1002", queues={"support": 0}))
    acd.agent_login("1001", 0.0)
    acd.agent_login("1002", 0.0)
    acd.agent_busy("1002", True, 0.0)
    acd.caller_join("support", "c", 0.0)
    t = 0.0
    for i in range(2):                              # two ring timeouts: re-offered each time
        t += 10
        assert offers(acd.tick(t)) == [("1001",)]
    acts = acd.tick(t + 10)                         # third: auto-paused, not re-offered
    assert AgentPaused("1001", "auto-no-answer") in acts
    assert offers(acts) == []
    assert acd.agents["1001"].state(t + 10) is AgentState.PAUSED
    lines = events(acd)
    assert sum("RINGNOANSWER|10000" in ln for ln in lines) == 3
    assert "30|NONE|support|1001|PAUSE|auto-no-answer" in lines
    # an answer in between resets the count; unpause brings the agent back
    assert offers(acd.agent_unpause("1001", 50.0, "back")) == [("1001",)]
    assert "50|NONE|support|1001|UNPAUSE|back" in events(acd)
    assert acd.agents["1001"].consecutive_no_answers == 0
    acd.check_invariants(50.0)


def test_rejects_do_not_auto_pause_and_answer_resets_the_count():
    acd = Acd()
    acd.add_queue(QueueConfig("support"))
    acd.add_agent(AgentConfig("1001", queues={"support": 0}, max_no_answer=2, reject_delay_s=0,
                              no_answer_delay_s=0))
    acd.agent_login("1001", 0.0)
    acd.caller_join("support", "c", 0.0)
    for t in (1.0, 2.0, 3.0):
        assert offers(acd.offer_failed("c", "1001", "rejected", t)) == [("1001",)]
    assert offers(acd.offer_failed("c", "1001", "no_answer", 4.0)) == [("1001",)]
    acd.offer_answered("c", "1001", 5.0)
    assert acd.agents["1001"].consecutive_no_answers == 0
    st = acd.queues["support"].stats
    assert (st.offers, st.offers_rejected, st.offers_no_answer, st.offers_answered) == (5, 3, 1, 1)


def test_busy_agent_is_skipped_and_agent_on_any_call_not_offered():
    acd = two_queues(wrap_sales=0)
    acd.add_agent(AgentConfig("1002", queues={"support": 1}))
    acd.agent_login("1002", 0.0)
    acd.agent_busy("1001", True, 1.0)               # on a direct (non-ACD) call
    assert offers(acd.caller_join("support", "p1", 2.0)) == [("1002",)]
    acd.offer_answered("p1", "1002", 3.0)
    assert acd.caller_join("sales", "s1", 4.0) == []   # only 1001 in sales, still busy
    assert offers(acd.agent_busy("1001", False, 5.0)) == [("1001",)]
    acd.offer_answered("s1", "1001", 6.0)
    # both on calls: nobody offered anywhere
    assert acd.caller_join("support", "p2", 7.0) == []
    # the agent's phone reports busy on an offer: counted as a reject, next agent tried later
    assert offers(acd.call_ended("s1", 8.0)) == [("1001",)]
    acd.offer_failed("p2", "1001", "busy", 9.0)
    assert acd.agents["1001"].state(9.0) is AgentState.RESTING
    assert offers(acd.tick(14.0)) == [("1001",)]
    acd.check_invariants(14.0)


def test_abandon_logged_with_position_and_wait():
    acd = Acd()
    acd.add_queue(QueueConfig("support"))
    for i, t in enumerate((100.0, 102.0, 105.0)):
        acd.caller_join("support", f"c{i}", t, cid=f"+4930{i}")
    assert acd.caller_abandon("c1", 112.0) == []
    assert acd.caller_abandon("c1", 113.0) == []    # duplicate report: ignored, counted once
    lines = events(acd)
    assert lines[0] == "100|c0|support|NONE|ENTERQUEUE||+49300"
    assert lines[-1] == "112|c1|support|NONE|ABANDON|2|2|10"
    acd.caller_abandon("c0", 120.0)
    assert events(acd) == ["120|c0|support|NONE|ABANDON|1|1|20"]
    st = acd.queues["support"].stats
    assert (st.offered, st.abandoned, len(acd.queues["support"].callers)) == (3, 2, 1)
    acd.check_invariants(120.0)


def test_abandon_while_ringing_cancels_and_late_answer_is_hung_up():
    acd = Acd()
    acd.add_queue(QueueConfig("support", strategy="ring-all"))
    for n in ("a", "b"):
        acd.add_agent(AgentConfig(n, queues={"support": 0}))
        acd.agent_login(n, 0.0)
    acd.caller_join("support", "c", 1.0)
    assert acd.caller_abandon("c", 3.0) == [CancelOffer("c", ("a", "b"), "abandoned")]
    assert acd.offer_answered("c", "a", 3.1) == [CancelOffer("c", ("a",), "gone")]
    assert acd.offer_failed("c", "b", "no_answer", 3.2) == []
    st = acd.queues["support"].stats
    assert (st.offers, st.offers_cancelled, st.answered, st.abandoned) == (2, 2, 0, 1)
    assert all(a.state(4.0) is AgentState.AVAILABLE for a in acd.agents.values())
    acd.check_invariants(4.0)


def test_overflow_after_max_wait_and_timeout_without_destination():
    acd = Acd()
    acd.add_queue(QueueConfig("support", max_wait_s=60, overflow="voicemail:support"))
    acd.add_queue(QueueConfig("sales", max_wait_s=30))
    acd.add_agent(AgentConfig("1001", queues={"support": 0}))
    acd.agent_login("1001", 0.0)
    acd.caller_join("support", "c1", 0.0)                # offered, nobody answers for a minute
    acd.caller_join("support", "c2", 10.0)
    acd.caller_join("sales", "s1", 5.0)
    assert acd.next_deadline() == 15.0                   # ring timeout 15 s
    acts = acd.tick(35.0)
    assert Timeout("s1", "sales", 30.0) in acts
    acts = acd.tick(60.0)
    assert Overflow("c1", "support", "voicemail:support", "timeout") in acts
    assert any(isinstance(a, CancelOffer) and a.caller_id == "c1" for a in acts) or \
        acd.agents["1001"].offering != "c1"
    acts = acd.tick(70.0)
    assert Overflow("c2", "support", "voicemail:support", "timeout") in acts
    lines = events(acd)
    assert "35|s1|sales|NONE|EXITWITHTIMEOUT|1|1|30" in lines
    assert "60|c1|support|NONE|EXITWITHTIMEOUT|1|1|60" in lines
    assert "70|c2|support|NONE|EXITWITHTIMEOUT|1|2|60" in lines
    assert acd.queues["support"].stats.overflowed == 2 and acd.queues["sales"].stats.timed_out == 1
    assert acd.agents["1001"].offering is None
    acd.check_invariants(70.0)


def test_full_join_empty_and_leave_when_empty():
    acd = Acd()
    acd.add_queue(QueueConfig("small", max_len=1, overflow="queue:big"))
    acd.add_queue(QueueConfig("strict", join_empty=False))
    acd.add_queue(QueueConfig("leave", leave_when_empty=True))
    acd.add_agent(AgentConfig("1001", queues={"leave": 0}))
    acd.caller_join("small", "a", 0.0)
    assert acd.caller_join("small", "b", 1.0) == [Overflow("b", "small", "queue:big", "full")]
    assert acd.caller_join("strict", "c", 2.0) == [LeftEmpty("c", "strict", "join_empty")]
    acd.agent_login("1001", 3.0)
    acd.agent_busy("1001", True, 3.0)
    acd.caller_join("leave", "d", 4.0)
    acd.caller_join("leave", "e", 5.0)
    acts = acd.agent_logout("1001", 9.0)
    assert acts == [LeftEmpty("d", "leave", "leave_empty"), LeftEmpty("e", "leave", "leave_empty")]
    lines = events(acd)
    assert "1|b|small|NONE|FULL" in lines and "2|c|strict|NONE|JOINEMPTY" in lines
    assert "9|d|leave|NONE|EXITEMPTY|1|1|5" in lines and "9|e|leave|NONE|EXITEMPTY|1|2|4" in lines
    assert "9|NONE|leave|1001|REMOVEMEMBER" in lines
    for q in acd.queues.values():
        st = q.stats
        assert st.offered == st.finished + len(q.callers)
    acd.check_invariants(9.0)


def test_position_and_ewt_announcements():
    acd = Acd()
    acd.add_queue(QueueConfig("support", announce_frequency_s=30, default_handle_time_s=120))
    for n in ("a", "b"):
        acd.add_agent(AgentConfig(n, queues={"support": 0}))
        acd.agent_login(n, 0.0)
        acd.agent_busy(n, True, 0.0)
    for i in range(3):
        acd.caller_join("support", f"c{i}", float(i))
    assert acd.next_deadline() == 30.0
    acts = acd.tick(30.0)
    assert acts == [Announce("c0", "support", 1, 60.0)]          # 1 x 120 s / 2 staffed
    acts = acd.tick(32.0)
    assert acts == [Announce("c1", "support", 2, 120.0), Announce("c2", "support", 3, 180.0)]
    acd.caller_abandon("c0", 40.0)
    acts = acd.tick(62.0)
    assert Announce("c1", "support", 1, 60.0) in acts
    # EWT follows recent handle times (talk + wrap-up)
    acd.agent_busy("a", False, 70.0)                              # c1 offered to a
    acd.offer_answered("c1", "a", 71.0)
    acd.call_ended("c1", 101.0)                                   # handle 30 s
    assert acd.queues["support"].ewt_s(2) == 30.0
    st = acd.queue_status("support", 101.0)
    assert st["aht_s"] == 30.0 and st["answered"] == 1 and st["abandoned"] == 1


def test_logout_while_ringing_reoffers_and_stats_snapshot():
    acd = Acd()
    acd.add_queue(QueueConfig("support", strategy="top-down", service_level_s=20))
    for n in ("1001", "1002"):
        acd.add_agent(AgentConfig(n, queues={"support": 0}))
        acd.agent_login(n, 0.0)
    acd.caller_join("support", "c", 0.0)
    acts = acd.agent_logout("1001", 5.0)
    assert acts[0] == CancelOffer("c", ("1001",), "logout")
    assert offers(acts) == [("1002",)]
    assert Connect("c", "support", "1002", 25.0) in acd.offer_answered("c", "1002", 25.0)
    acd.call_ended("c", 85.0, by="caller")
    assert events(acd)[-1] == "85|c|support|1002|COMPLETECALLER|25|60|1"
    st = acd.queue_status("support", 90.0)
    assert st["service_level_pct"] == 0.0 and st["asa_s"] == 25.0 and st["waiting"] == 0
    agent = acd.agent_status("1002", 90.0)
    assert agent["calls"] == 1 and agent["talk_time_s"] == 60.0 and agent["state"] == "available"
    assert acd.agent_status("1001", 90.0)["state"] == "logged_out"


class FakeSwitch:
    """A stand-in for the SIP layer that executes actions, checks them against the engine, and fires
    random (sometimes stale) events back."""

    def __init__(self, acd: Acd, rng: random.Random) -> None:
        self.acd, self.rng = acd, rng
        self.ringing: set[tuple[str, str]] = set()      # (caller, agent) the switch believes ring
        self.connected: dict[str, str] = {}
        self.ended_callers: Counter[str] = Counter()    # exactly-once: each caller's final outcome once
        self.exits: Counter[str] = Counter()

    def apply(self, actions) -> None:
        for a in actions:
            if isinstance(a, Offer):
                for ag in a.agents:
                    assert (a.caller_id, ag) not in self.ringing
                    assert all(x[1] != ag for x in self.ringing), "agent offered twice"
                    assert ag not in self.connected.values(), "agent on a call offered"
                    self.ringing.add((a.caller_id, ag))
            elif isinstance(a, CancelOffer):
                for ag in a.agents:
                    if a.reason != "gone":
                        self.ringing.remove((a.caller_id, ag))
            elif isinstance(a, Connect):
                self.ringing.discard((a.caller_id, a.agent))
                assert a.caller_id not in self.connected
                self.connected[a.caller_id] = a.agent
            elif isinstance(a, (Overflow, Timeout, LeftEmpty)):
                self.ended_callers[a.caller_id] += 1
                self.exits[type(a).__name__ + ":" + getattr(a, "reason", "")] += 1
        engine_ringing = {(c.id, ag) for c in self.acd.callers.values() if c.offer for ag in c.offer.ringing}
        assert engine_ringing == self.ringing


@pytest.mark.parametrize("seed,strategy", list(enumerate(sorted(STRATEGIES), start=1)))
def test_event_storm_exactly_once_accounting(seed, strategy):
    rng = random.Random(seed)
    acd = Acd(seed=seed)
    acd.add_queue(QueueConfig("support", strategy=strategy, ring_timeout_s=8, max_wait_s=90,
                              wrap_up_s=3, progressive_step_s=3, overflow="voicemail"))
    acd.add_queue(QueueConfig("sales", strategy="fewest-calls", ring_timeout_s=6, max_wait_s=60,
                              wrap_up_s=2, max_len=8, leave_when_empty=(seed % 2 == 0)))
    agents = [f"a{i:02d}" for i in range(20)]
    for i, name in enumerate(agents):
        queues = {"support": i % 2} if i < 14 else {"sales": 0}
        if i % 5 == 0:
            queues["sales"] = 1
        acd.add_agent(AgentConfig(name, queues=queues, skills={"fr": i % 3}, max_no_answer=3,
                                  no_answer_delay_s=2))
    sw = FakeSwitch(acd, rng)
    now, joined = 0.0, 0
    for name in agents:
        sw.apply(acd.agent_login(name, now))
    while joined < 200 or acd.callers:
        now += rng.uniform(0.05, 1.5)
        r = rng.random()
        if joined < 200 and r < 0.25:
            q = "support" if rng.random() < 0.7 else "sales"
            skills = {"fr": rng.randint(0, 2)} if rng.random() < 0.3 else None
            sw.apply(acd.caller_join(q, f"c{joined}", now, priority=rng.choice((0, 0, 0, 5)), skills=skills))
            joined += 1
        elif r < 0.55 and sw.ringing:
            caller, agent = rng.choice(sorted(sw.ringing))
            what = rng.random()
            if what < 0.6:
                sw.apply(acd.offer_answered(caller, agent, now))
            else:
                sw.ringing.discard((caller, agent))     # the switch reported it: no CancelOffer expected
                sw.apply(acd.offer_failed(caller, agent, rng.choice(("no_answer", "rejected", "busy")), now))
            if rng.random() < 0.05:                     # duplicate/stale report from the SIP layer
                for a in acd.offer_answered(caller, agent, now):
                    assert isinstance(a, CancelOffer) and a.reason == "gone"
                assert acd.offer_failed(caller, agent, "no_answer", now) == []
        elif r < 0.7 and sw.connected:
            caller = rng.choice(sorted(sw.connected))
            del sw.connected[caller]
            sw.ended_callers[caller] += 1
            sw.apply(acd.call_ended(caller, now, by=rng.choice(("agent", "caller"))))
        elif r < 0.73:
            waiting = [c for c in acd.callers.values() if c.agent is None]
            if waiting:
                c = rng.choice(sorted(waiting, key=lambda c: c.id))
                sw.ended_callers[c.id] += 1
                sw.apply(acd.caller_abandon(c.id, now))
        elif r < 0.8:
            name = rng.choice(agents)
            ag = acd.agents[name]
            if ag.paused:
                sw.apply(acd.agent_unpause(name, now))
            elif rng.random() < 0.5:
                sw.apply(acd.agent_pause(name, now, "break"))
            elif ag.logged_in and rng.random() < 0.3:
                sw.apply(acd.agent_logout(name, now))
            else:
                sw.apply(acd.agent_login(name, now))
        if joined >= 200 and rng.random() < 0.02:       # drain: everyone back
            for name in agents:
                sw.apply(acd.agent_login(name, now))
                sw.apply(acd.agent_unpause(name, now))
        sw.apply(acd.tick(now))
        acd.check_invariants(now)
        assert now < 20000, "storm did not drain"
    total = Counter()
    for q in acd.queues.values():
        st = q.stats
        assert st.offered == st.answered + st.abandoned + st.timed_out + st.overflowed + st.left_empty
        assert st.completed == st.answered
        assert st.offers == st.offers_answered + st.offers_no_answer + st.offers_rejected + st.offers_cancelled
        assert st.offers_answered == st.answered
        total.update(offered=st.offered, answered=st.answered, abandoned=st.abandoned)
    assert total["offered"] == 200 and total["answered"] > 50
    assert all(n == 1 for n in sw.ended_callers.values()) and len(sw.ended_callers) == 200
    assert not sw.ringing and not sw.connected
    for a in acd.agents.values():
        assert a.offering is None and a.on_call is None
        assert a.state(now + 10) in (AgentState.AVAILABLE, AgentState.PAUSED, AgentState.LOGGED_OUT)
    # queue_log agrees with the counters
    ev = Counter(e.event for e in acd.drain_queue_log())
    assert ev["ENTERQUEUE"] + ev["FULL"] + ev["JOINEMPTY"] == 200
    assert ev["CONNECT"] == total["answered"] == ev["COMPLETEAGENT"] + ev["COMPLETECALLER"]
    assert ev["ABANDON"] == total["abandoned"]
    timed_out = sum(q.stats.timed_out for q in acd.queues.values())
    left_empty = sum(q.stats.left_empty for q in acd.queues.values())
    overflowed = sum(q.stats.overflowed for q in acd.queues.values())
    assert ev["EXITWITHTIMEOUT"] == timed_out + sw.exits["Overflow:timeout"] == sw.exits["Timeout:"] + \
        sw.exits["Overflow:timeout"]
    assert ev["FULL"] == sw.exits["Overflow:full"]
    assert ev["EXITEMPTY"] + ev["JOINEMPTY"] == left_empty + sw.exits["Overflow:empty"]
    assert overflowed == sum(n for k, n in sw.exits.items() if k.startswith("Overflow"))


def test_runtime_membership_and_queue_changes():
    acd = Acd()
    acd.add_queue(QueueConfig("support", strategy="top-down"))
    acd.add_agent(AgentConfig("1001"))
    acd.add_agent(AgentConfig("1002"))
    acd.agent_login("1001", 0.0)
    acd.agent_login("1002", 0.0)
    acd.caller_join("support", "c", 1.0)                      # no members yet: waits
    assert offers(acd.add_member("support", "1002", 2.0)) == [("1002",)]
    assert "2|NONE|support|1002|ADDMEMBER" in events(acd)
    acd.add_member("support", "1001", 3.0)
    acts = acd.remove_member("support", "1002", 4.0)        # withdrawn while ringing -> next member
    assert acts[0] == CancelOffer("c", ("1002",), "removed") and offers(acts) == [("1001",)]
    acd.update_queue(QueueConfig("support", strategy="rrmemory", max_wait_s=10))
    assert acd.queues["support"].config.strategy == "round-robin"
    assert acd.queues["support"].stats.offered == 1            # statistics survive the change
    acts = acd.remove_queue("support", 5.0)
    assert acts == [CancelOffer("c", ("1001",), "empty"), LeftEmpty("c", "support", "queue_removed")]
    assert acd.agents["1001"].state(5.0) is AgentState.AVAILABLE and not acd.callers
    acd.remove_agent("1002", 6.0)
    assert "1002" not in acd.agents
    acd.check_invariants(6.0)
    with pytest.raises(ValueError):
        acd.add_agent(AgentConfig("1001"))


def test_next_deadline_drives_ticks():
    """An I/O loop that only wakes at next_deadline() still sees every timer fire."""
    acd = Acd()
    acd.add_queue(QueueConfig("support", ring_timeout_s=7, wrap_up_s=4, max_wait_s=100,
                              announce_frequency_s=25))
    acd.add_agent(AgentConfig("1001", queues={"support": 0}, no_answer_delay_s=3, max_no_answer=0))
    acd.agent_login("1001", 0.0)
    assert acd.next_deadline() is None
    seen = [type(a).__name__ for a in acd.caller_join("support", "c", 0.0)]
    now = 0.0
    while (nd := acd.next_deadline()) is not None and nd <= 100:
        now = nd
        seen += [type(a).__name__ for a in acd.tick(now)]
        acd.check_invariants(now)
    assert now == 100.0 and seen[-1] == "Timeout"
    assert seen.count("Announce") == 3 and seen.count("Offer") == 10   # re-offered every 7 + 3 s


def test_next_deadline_skips_timers_that_already_ran_out():
    """An agent whose wrap-up ended while a no-answer rest still runs: the next deadline is the rest's end,
    not the past wrap-up end (found by the simulator: a stale deadline hid every later one)."""
    acd = Acd()
    acd.add_queue(QueueConfig("q", wrap_up_s=5, ring_timeout_s=10))
    acd.add_agent(AgentConfig("a", queues={"q": 0}, no_answer_delay_s=30, max_no_answer=0))
    acd.agent_login("a", 0)
    assert offers(acd.caller_join("q", "c1", 1)) == [("a",)]
    acd.offer_answered("c1", "a", 1)
    acd.call_ended("c1", 2)        # wrap-up until 7
    acd.tick(7)
    assert offers(acd.caller_join("q", "c2", 8)) == [("a",)]
    acd.tick(18)                   # rings out: rest until 48
    assert acd.next_deadline(18) == pytest.approx(48)


def _scan_deadline(acd: Acd, now: float) -> float | None:
    """The old O(callers + timed agents) full scan: the timer heap must always agree with it."""
    t = float("inf")
    for name in acd._timed:
        a = acd.agents[name]
        for x in (a.wrap_up_until, a.rest_until):
            if x > 0 and x > now:
                t = min(t, x)
    for caller in acd.callers.values():
        qs = acd.queues.get(caller.queue)
        if qs is None or caller.agent is not None:
            continue
        if caller.offer is not None:
            for started in caller.offer.ringing.values():
                t = min(t, started + qs.config.ring_timeout_s)
            if caller.offer.pending:
                t = min(t, caller.offer.next_add_at)
        if qs.config.max_wait_s > 0:
            t = min(t, caller.joined_at + qs.config.max_wait_s)
        t = min(t, caller.next_announce_at)
    return None if t == float("inf") else t


@pytest.mark.parametrize("strategy", ["ring-progressively", "ring-all", "longest-idle-agent", "random"])
def test_timer_heap_agrees_with_full_scan(strategy):
    """Random events, config changes and ticks at random or deadline times: next_deadline() (the heap)
    equals the full scan after every step, and ticks keep the invariants."""
    rng = random.Random(strategy)
    acd = Acd(seed=1)
    acd.add_queue(QueueConfig("q", strategy=strategy, ring_timeout_s=5, max_wait_s=40, wrap_up_s=3,
                              progressive_step_s=2, announce_frequency_s=7))
    agents = [f"a{i}" for i in range(6)]
    for name in agents:
        acd.add_agent(AgentConfig(name, queues={"q": 0}, no_answer_delay_s=4, max_no_answer=0))
        acd.agent_login(name, 0.0)
    now, ringing, connected = 0.0, set(), set()

    def apply(actions):
        for a in actions:
            if isinstance(a, Offer):
                ringing.update((a.caller_id, ag) for ag in a.agents)
            elif isinstance(a, CancelOffer):
                ringing.difference_update((a.caller_id, ag) for ag in a.agents)
            elif isinstance(a, Connect):
                ringing.discard((a.caller_id, a.agent))
                connected.add(a.caller_id)

    for step in range(1500):
        nd = acd.next_deadline(now)
        if nd is not None and nd > now and rng.random() < 0.3:
            now = nd                                       # wake exactly at the deadline
        else:
            now += rng.choice((0.0, 0.5, 1.0, 2.5))
        r = rng.random()
        if r < 0.25:
            apply(acd.caller_join("q", f"c{step}", now, priority=rng.choice((0, 5))))
        elif r < 0.45 and ringing:
            c, ag = rng.choice(sorted(ringing))
            if rng.random() < 0.6:
                apply(acd.offer_answered(c, ag, now))
            else:
                ringing.discard((c, ag))
                apply(acd.offer_failed(c, ag, "rejected", now))
        elif r < 0.6 and connected:
            c = rng.choice(sorted(connected))
            connected.discard(c)
            apply(acd.call_ended(c, now))
        elif r < 0.65:
            waiting = sorted(c.id for c in acd.callers.values() if c.agent is None)
            if waiting:
                c = rng.choice(waiting)
                ringing.difference_update({x for x in ringing if x[0] == c})
                apply(acd.caller_abandon(c, now))
        elif r < 0.68:
            acd.update_queue(QueueConfig("q", strategy=strategy, ring_timeout_s=rng.choice((3, 5, 9)),
                                         max_wait_s=rng.choice((0, 15, 40)), wrap_up_s=3,
                                         progressive_step_s=2, announce_frequency_s=rng.choice((0, 7))))
        apply(acd.tick(now))
        acd.check_invariants(now)
        assert acd.next_deadline(now) == _scan_deadline(acd, now), (step, now)
        connected &= set(acd.callers)


def test_update_queue_moves_max_wait_deadline_earlier():
    acd = Acd()
    acd.add_queue(QueueConfig("q", max_wait_s=100))
    acd.caller_join("q", "c", 0.0)
    assert acd.next_deadline(0.0) == 100.0
    acd.update_queue(QueueConfig("q", max_wait_s=10))
    assert acd.next_deadline(0.0) == 10.0
    assert acd.tick(9.0) == []
    assert [type(a).__name__ for a in acd.tick(10.0)] == ["Timeout"]
    assert acd.next_deadline(10.0) is None


def test_free_index_follows_strategy_changes_levels_and_idle_moves():
    """The queue's free index (ordered for its strategy) is refiled when a free agent's idle time moves
    (a "busy ended" with no call), rebuilt when the strategy or a member's level changes, and always agrees
    with ``free`` (check_invariants compares them)."""
    acd = Acd()
    acd.add_queue(QueueConfig("q", strategy="longest-idle-agent"))
    for i, name in enumerate(("a", "b", "c")):
        acd.add_agent(AgentConfig(name, queues={"q": 0}))
        acd.agent_login(name, float(i))
    qs = acd.queues["q"]
    assert qs.index is not None and qs.index.kind == "idle"
    assert [e[-1] for e in qs.index.entries[qs.index.head:]] == ["a", "b", "c"]
    acd.agent_busy("a", False, 5.0)             # a's idle time moves to 5: b is now the longest idle
    acd.check_invariants(5.0)
    assert offers(acd.caller_join("q", "c1", 6.0)) == [("b",)]
    acd.update_queue(QueueConfig("q", strategy="top-down"))
    assert offers(acd.caller_join("q", "c2", 7.0)) == [("a",)]      # rebuilt in member order at dispatch
    assert qs.index.kind == "order"
    acd.caller_abandon("c2", 8.0)
    acd.add_member("q", "a", 8.0, level=1)      # a moves down a level: c (level 0) comes first
    acd.check_invariants(8.0)
    assert offers(acd.caller_join("q", "c3", 9.0)) == [("c",)]
    acts = acd.remove_member("q", "c", 10.0)    # c's offer is withdrawn; a (level 1) is the one left
    assert offers(acts) == [("a",)]
    acd.check_invariants(10.0)
    assert not qs.free and len(qs.index) == 0 and set(qs.index.slot_of) == set() == set(qs.index.entry_of)


def test_requirement_indexes_lifecycle():
    """A requirement index per distinct skill requirement of the waiting callers: built at the first decision
    for it, kept up as agents change state, kept as a spare after its last caller leaves (at most
    ``SPARE_SKILL_INDEXES`` of those, least recently emptied dropped first), dropped when the strategy or a
    member's level changes; ``check_invariants`` recomputes each one."""
    from softswitch.acd.engine import SPARE_SKILL_INDEXES
    acd = Acd()
    acd.add_queue(QueueConfig("q", strategy="skills-based"))
    for i, name in enumerate(("a", "b", "c", "d")):
        acd.add_agent(AgentConfig(name, queues={"q": 0}, skills={"fr": 1 + i % 3, "de": i % 2}))
        acd.agent_login(name, float(i))
    qs = acd.queues["q"]
    fr2 = (("fr", 2),)
    assert offers(acd.caller_join("q", "x", 5.0, skills={"fr": 2})) == [("c",)]   # fr 3 beats b's fr 2
    assert list(qs.skill_index) == [fr2] and qs.skill_index[fr2].kind == "score"
    assert [e[-1] for e in qs.skill_index[fr2].entries[qs.skill_index[fr2].head:]] == ["b"]   # c is ringing
    acd.check_invariants(5.0)
    acd.offer_answered("x", "c", 6.0)           # x leaves the queue: fr2's index stays as a spare
    assert list(qs.skill_index) == [fr2]
    acd.call_ended("x", 7.0)                    # c is free again: filed back in the spare
    acd.check_invariants(7.0)
    assert offers(acd.caller_join("q", "y", 8.0, skills={"fr": 2})) == [("c",)]     # no rebuild needed
    acd.caller_abandon("y", 9.0)
    # many requirements come and go: only the most recently emptied spares stay
    for i in range(SPARE_SKILL_INDEXES + 3):
        acd.agent_pause("a", 10.0 + i)          # nobody has fr >= 1 and xx: unmatched, index built anyway
        acd.caller_join("q", f"r{i}", 10.0 + i, skills={"fr": 1, f"xx{i}": 1})
        assert (("fr", 1), (f"xx{i}", 1)) in qs.skill_index
        acd.caller_abandon(f"r{i}", 10.5 + i)
        acd.agent_unpause("a", 10.5 + i)
        acd.check_invariants(10.5 + i)
    assert len(qs.skill_index) == SPARE_SKILL_INDEXES
    assert (("fr", 1), ("xx0", 1)) not in qs.skill_index and fr2 not in qs.skill_index
    assert (("fr", 1), (f"xx{SPARE_SKILL_INDEXES + 2}", 1)) in qs.skill_index
    # strategy change: the requirement indexes follow at the next dispatch
    acd.agent_busy("a", True, 30.0)
    acd.agent_busy("b", True, 30.0)
    acd.agent_busy("c", True, 30.0)
    acd.agent_busy("d", True, 30.0)
    acd.caller_join("q", "z", 30.0, skills={"de": 1})
    assert (("de", 1),) not in qs.skill_index              # nobody free: no decision, nothing built
    acd.update_queue(QueueConfig("q", strategy="weighted-random"))
    acts = acd.agent_busy("b", False, 31.0)                # b (de 1) frees up: dispatch decides for z
    assert offers(acts) == [("b",)]
    assert {ix.kind for ix in qs.skill_index.values()} == {"weight"} and (("de", 1),) in qs.skill_index
    acd.check_invariants(31.0)
    acd.add_member("q", "d", 32.0, level=1)                # a level change: requirement indexes dropped
    assert not qs.skill_index
    acd.check_invariants(32.0)
    acd.remove_member("q", "b", 33.0)                      # withdraws b's offer; d (de 1, level 1) is busy
    acts = acd.agent_busy("d", False, 34.0)
    assert offers(acts) == [("d",)] and (("de", 1),) in qs.skill_index
    acd.check_invariants(34.0)


def test_a_wrap_up_that_ended_before_the_next_deadline_query_is_due_at_once():
    """The live ACD re-arms its timer with next_deadline(now) after every event; an event just after a
    wrap-up ended (before the timer's tick ran) must not hide that the agent is now free (found live:
    the next caller went to another agent)."""
    acd = Acd()
    acd.add_queue(QueueConfig(name="q", strategy="top-down", wrap_up_s=5))
    acd.add_queue(QueueConfig(name="other", strategy="top-down"))
    acd.add_agent(AgentConfig(name="a", queues={"q": 0, "other": 0}))
    acd.add_agent(AgentConfig(name="b", queues={"other": 1}))
    acd.agent_login("a", 0.0)
    acd.agent_login("b", 0.0)
    acd.caller_join("q", "c1", 1.0)
    acd.offer_answered("c1", "a", 1.1)
    acd.call_ended("c1", 2.0)
    assert acd.next_deadline(2.0) == 7.0
    assert acd.next_deadline(7.3) == 7.3        # asked after the wrap-up ended, before any tick: due now
    acd.tick(7.3)
    assert acd.next_deadline(7.4) is None
    assert acd.caller_join("other", "c2", 7.5) == [Offer("c2", "other", ("a",), 15.0)]
