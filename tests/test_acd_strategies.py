"""Every ACD strategy proven with a fake clock (issue 5, acceptance 5): pure functions and through the engine."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from softswitch.acd import (STRATEGIES, Acd, AgentConfig, CancelOffer, Caller, Connect, Offer, QueueConfig,
                            canonical_name, get_strategy)
from softswitch.acd.strategies import INDEX_KIND, SKILL_INDEX_KIND

AGENTS = ("1001", "1002", "1003")


def make(strategy: str, agents=AGENTS, *, seed: int = 0, **qkw) -> Acd:
    """One queue `support`, agents logged in at t=0 in the given member order, no wrap-up/rest delays."""
    acd = Acd(seed=seed)
    acd.add_queue(QueueConfig("support", strategy=strategy, **qkw))
    for name in agents:
        acd.add_agent(AgentConfig(name, queues={"support": 0}, no_answer_delay_s=0, reject_delay_s=0,
                                  busy_delay_s=0, max_no_answer=0))
        acd.agent_login(name, 0.0)
    return acd


def offers(actions) -> list[tuple[str, ...]]:
    return [a.agents for a in actions if isinstance(a, Offer)]


def serve(acd: Acd, caller_id: str, now: float) -> str:
    """Join, answer by whoever is offered first, hang up at once; returns the agent that got the call."""
    acts = acd.caller_join("support", caller_id, now)
    (agents,) = offers(acts)
    acd.offer_answered(caller_id, agents[0], now + 1)
    acd.call_ended(caller_id, now + 2)
    acd.check_invariants(now + 2)
    return agents[0]


def refile(acd: Acd, now: float) -> None:
    """After a test sets a key field (calls, talk time, idle time) of a free agent by hand: the engine
    refiles it in the queue's free index, as it does whenever it changes such a field itself."""
    for a in acd.agents.values():
        acd._refresh(a, now)


def skilled(queue: str, skills: dict[str, int], cid: str = "p") -> Caller:
    """A caller with required skills and the ``skill_key`` the engine gives it (its requirement index key)."""
    return Caller(cid, queue, skills=dict(skills), skill_key=tuple(sorted(skills.items())))


def with_index(acd: Acd, queue: str, caller: Caller) -> bool:
    """Make sure the engine keeps the caller's requirement index (as its first decision for such a caller
    would); True if it was built now."""
    qs = acd.queues[queue]
    acd._index(qs)
    built = caller.skill_key not in qs.skill_index
    acd._skill_index(qs, caller)
    return built


def decide(acd: Acd, now: float, caller: Caller | None = None) -> list[str]:
    qs = acd.queues["support"]
    return get_strategy(qs.config.strategy)(qs, caller or Caller("probe", "support"), now)


def test_registry_has_every_strategy_and_aliases():
    assert set(STRATEGIES) == {"ring-all", "top-down", "linear", "round-robin", "longest-idle-agent",
                               "fewest-calls", "least-talk-time", "random", "weighted-random",
                               "ring-progressively", "skills-based"}
    assert canonical_name("rrmemory") == "round-robin"
    assert canonical_name("ringall") == "ring-all"
    assert canonical_name("leastrecent") == "longest-idle-agent"
    with pytest.raises(KeyError, match="known"):
        get_strategy("nope")
    with pytest.raises(KeyError):
        Acd().add_queue(QueueConfig("q", strategy="nope"))


def test_ring_all_rings_everyone_first_answer_wins():
    acd = make("ring-all")
    acts = acd.caller_join("support", "c1", 1.0)
    assert offers(acts) == [AGENTS]
    acts = acd.offer_answered("c1", "1002", 3.0)
    assert CancelOffer("c1", ("1001", "1003"), "answered_elsewhere") in acts
    assert Connect("c1", "support", "1002", 2.0) in acts
    # the two cancelled agents are free again for the next caller
    assert offers(acd.caller_join("support", "c2", 4.0)) == [("1001", "1003")]
    st = acd.queues["support"].stats
    assert (st.offers, st.offers_answered, st.offers_cancelled) == (5, 1, 2)
    acd.check_invariants(4.0)


def test_top_down_always_starts_at_the_first():
    acd = make("top-down")
    assert [serve(acd, f"c{i}", 10.0 * i) for i in range(4)] == ["1001"] * 4
    # no answer from 1001 -> 1002; once 1001 is free again the next attempt starts at the top again
    acd.agents["1001"].config.no_answer_delay_s = 5.0
    acts = acd.caller_join("support", "x", 100.0)
    assert offers(acts) == [("1001",)]
    assert offers(acd.offer_failed("x", "1001", "no_answer", 101.0)) == [("1002",)]  # 1001 rests to 106
    assert acd.tick(106.0) == []
    assert offers(acd.offer_failed("x", "1002", "no_answer", 106.5)) == [("1001",)]  # linear would say 1003


def test_linear_continues_after_the_last_tried_for_this_caller():
    acd = make("linear")
    assert offers(acd.caller_join("support", "x", 1.0)) == [("1001",)]
    assert offers(acd.offer_failed("x", "1001", "no_answer", 2.0)) == [("1002",)]
    assert offers(acd.offer_failed("x", "1002", "rejected", 3.0)) == [("1003",)]
    assert offers(acd.offer_failed("x", "1003", "busy", 4.0)) == [("1001",)]   # wraps round
    # a new caller starts again from the first member (memory is per caller, not per queue)
    acd.offer_answered("x", "1001", 5.0)
    assert offers(acd.caller_join("support", "y", 6.0)) == [("1002",)]  # 1001 on call; 1002 first free


def test_round_robin_rotates_with_memory_per_queue():
    acd = make("round-robin")
    assert [serve(acd, f"c{i}", 10.0 * i) for i in range(7)] == \
        ["1001", "1002", "1003", "1001", "1002", "1003", "1001"]
    # memory survives a busy member: 1002 is next but busy -> 1003, then 1001
    acd.agent_busy("1002", True, 100.0)
    assert serve(acd, "d1", 101.0) == "1003"
    assert serve(acd, "d2", 110.0) == "1001"


def test_longest_idle_picks_the_idlest():
    acd = make("longest-idle-agent")
    # calls end at different times: 1003 at t=12, 1001 at t=22, 1002 at t=32
    for cid, agent, t in (("a", "1003", 10.0), ("b", "1001", 20.0), ("c", "1002", 30.0)):
        qs = acd.queues["support"]
        for other in AGENTS:
            if other != agent:
                acd.agent_busy(other, True, t)
        acts = acd.caller_join("support", cid, t)
        assert offers(acts) == [(agent,)]
        acd.offer_answered(cid, agent, t + 1)
        acd.call_ended(cid, t + 2)
        for other in AGENTS:
            if other != agent:
                acd.agents[other].busy = False
                acd._refresh(acd.agents[other], t + 2)
        assert qs.free == set(AGENTS)
    assert decide(acd, 40.0) == ["1003", "1001", "1002"]
    assert [serve(acd, f"z{i}", 50.0 + 10 * i) for i in range(3)] == ["1003", "1001", "1002"]


def test_fewest_calls():
    acd = make("fewest-calls")
    members = acd.queues["support"].members
    members["1001"].calls, members["1002"].calls, members["1003"].calls = 5, 1, 3
    refile(acd, 1.0)
    assert decide(acd, 1.0) == ["1002", "1003", "1001"]
    assert serve(acd, "c", 2.0) == "1002"
    assert members["1002"].calls == 2


def test_least_talk_time():
    acd = make("least-talk-time")
    acd.agents["1001"].talk_time_s = 50
    acd.agents["1002"].talk_time_s = 500
    acd.agents["1003"].talk_time_s = 5
    refile(acd, 1.0)
    assert decide(acd, 1.0) == ["1003", "1001", "1002"]
    acts = acd.caller_join("support", "c", 1.0)
    acd.offer_answered("c", "1003", 2.0)
    acd.call_ended("c", 102.0)       # 1003 now has 105 s talk time
    assert decide(acd, 103.0) == ["1001", "1003", "1002"]
    assert offers(acts) == [("1003",)]


def test_random_is_seeded_deterministic_and_covers_everyone():
    picks = []
    for seed in (1, 1, 2):
        acd = make("random", seed=seed)
        picks.append([serve(acd, f"c{i}", 10.0 * i) for i in range(60)])
    assert picks[0] == picks[1]            # same seed, same history -> same decisions
    assert picks[0] != picks[2]
    counts = Counter(picks[0])
    assert set(counts) == set(AGENTS) and min(counts.values()) >= 10


def test_weighted_random_follows_weights():
    acd = Acd(seed=7)
    acd.add_queue(QueueConfig("support", strategy="weighted-random"))
    for name, w in (("1001", 8), ("1002", 1), ("1003", 1)):
        acd.add_agent(AgentConfig(name, queues={"support": 0}, weight=w))
        acd.agent_login(name, 0.0)
    counts = Counter(serve(acd, f"c{i}", 10.0 * i) for i in range(400))
    assert counts["1001"] > 250 and counts["1002"] > 10 and counts["1003"] > 10


def test_ring_progressively_adds_one_agent_per_step_and_keeps_ringing():
    acd = make("ring-progressively", ring_timeout_s=30, progressive_step_s=5)
    assert offers(acd.caller_join("support", "c", 0.0)) == [("1001",)]
    assert offers(acd.tick(4.9)) == []
    assert acd.next_deadline() == 5.0
    assert offers(acd.tick(5.0)) == [("1002",)]
    assert set(acd.callers["c"].offer.ringing) == {"1001", "1002"}
    assert offers(acd.tick(10.0)) == [("1003",)]
    acts = acd.offer_answered("c", "1003", 11.0)
    assert CancelOffer("c", ("1001", "1002"), "answered_elsewhere") in acts
    acd.check_invariants(11.0)


def test_ring_progressively_ring_timeout_is_per_agent():
    acd = make("ring-progressively", ring_timeout_s=8, progressive_step_s=5)
    acd.caller_join("support", "c", 0.0)
    acd.tick(5.0)                                   # 1001 (since 0) and 1002 (since 5) ringing
    acts = acd.tick(8.0)                            # 1001 times out; 1002 keeps ringing
    assert CancelOffer("c", ("1001",), "ring_timeout") in acts
    assert set(acd.callers["c"].offer.ringing) == {"1002"}
    acd.check_invariants(8.0)


def test_skills_based_best_match_then_longest_idle():
    acd = Acd()
    acd.add_queue(QueueConfig("support", strategy="skills-based"))
    skills = {"a": {"fr": 1}, "b": {"fr": 3}, "c": {"fr": 3, "de": 1}, "d": {"fr": 2}}
    for t, (name, sk) in enumerate(skills.items()):
        acd.add_agent(AgentConfig(name, queues={"support": 0}, skills=sk))
        acd.agent_login(name, float(t))           # idle since 0, 1, 2, 3
    french, keyed = Caller("p", "support", skills={"fr": 2}), skilled("support", {"fr": 2})
    with_index(acd, "support", keyed)       # the requirement index, ordered by (level, -score, idle, order)
    assert [e[-1] for e in acd.queues["support"].skill_index[keyed.skill_key].entries] == ["b", "c", "d"]
    for caller in (french, keyed):          # a scan, then the requirement index
        assert decide(acd, 10.0, caller) == ["b", "c", "d"]  # a lacks fr>=2; b,c tie on fr -> longest idle b
    acd.agents["b"].idle_since = 5.0
    refile(acd, 10.0)
    for caller in (french, keyed):
        assert decide(acd, 10.0, caller) == ["c", "b", "d"]
    acd.check_invariants(10.0)
    for skills, want in (({"fr": 1, "de": 1}, ["c"]), ({"it": 1}, [])):
        assert decide(acd, 10.0, Caller("p", "support", skills=skills)) == want
        with_index(acd, "support", skilled("support", skills))
        assert decide(acd, 10.0, skilled("support", skills)) == want
    # no required skills: plain longest idle
    assert decide(acd, 10.0) == ["a", "c", "d", "b"]
    # through the engine: the unmatched caller waits, the next caller behind it is still served
    acts = acd.caller_join("support", "it", 11.0, skills={"it": 1})
    acts += acd.caller_join("support", "fr", 12.0, skills={"fr": 3})
    assert offers(acts) == [("c",)]


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_every_strategy_honours_levels_and_eligibility(strategy):
    """Lower level first; higher level only when no lower-level agent is free; never an ineligible one."""
    acd = Acd(seed=3)
    acd.add_queue(QueueConfig("support", strategy=strategy))
    for name, level in (("x1", 1), ("y0", 0), ("z0", 0), ("w1", 1)):
        acd.add_agent(AgentConfig(name, queues={"support": level}))
        acd.agent_login(name, 0.0)
    assert set(decide(acd, 1.0)) <= {"y0", "z0"}
    assert decide(acd, 1.0)
    acd.agent_pause("y0", 1.0, "lunch")
    acd.agent_busy("z0", True, 1.0)
    got = decide(acd, 2.0)
    assert got and set(got) <= {"x1", "w1"}
    acd.agents["x1"].wrap_up_until = 50.0           # as call_ended would leave it
    acd._refresh(acd.agents["x1"], 2.0)
    assert set(decide(acd, 2.0)) == {"w1"}
    acd.tick(50.0)
    assert set(decide(acd, 50.0)) <= {"x1", "w1"} and decide(acd, 50.0)
    acd.agent_logout("w1", 3.0)
    acd.agent_logout("x1", 3.0)
    assert decide(acd, 60.0) == []


def test_caller_order_priority_then_longest_waiting():
    acd = make("top-down", agents=())
    acd.caller_join("support", "early", 1.0)
    acd.caller_join("support", "late", 2.0)
    acd.caller_join("support", "vip", 3.0, priority=5)
    acd.caller_join("support", "vip-early", 0.5, priority=5)
    assert [c.id for c in acd.queues["support"].callers] == ["vip-early", "vip", "early", "late"]
    acd.add_agent(AgentConfig("1001", queues={"support": 0}))
    assert offers(acd.agent_login("1001", 4.0)) == [("1001",)]
    assert acd.callers["vip-early"].offer is not None


def _mixed(strategy: str) -> Acd:
    """Twelve agents over two levels with varied calls / idle / talk time / skills / weights."""
    acd = Acd(seed=7)
    acd.add_queue(QueueConfig("support", strategy=strategy))
    for i in range(12):
        acd.add_agent(AgentConfig(f"a{i:02d}", queues={"support": i % 2}, skills={"fr": i % 4},
                                  weight=(i % 3) or 0.5, max_no_answer=0))
        acd.agent_login(f"a{i:02d}", float(i % 5))
        a, m = acd.agents[f"a{i:02d}"], acd.queues["support"].members[f"a{i:02d}"]
        a.talk_time_s, m.calls = float((i * 7) % 5), (i * 5) % 3
        acd._refresh(a, float(i % 5))
    return acd


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_first_only_picks_the_same_agent_as_the_full_order(strategy):
    """The engine's ``first_only`` fast path (the free index instead of a sort) names exactly the full
    order's head, on twin engines whose RNGs are put in the same state before each pair of calls (the full
    random orders draw more numbers for their tails); levels, rotation pivots and skills vary."""
    full, fast = _mixed(strategy), _mixed(strategy)
    fn = get_strategy(strategy)
    probes = [Caller("p", "support"), Caller("p", "support", skills={"fr": 2}),
              Caller("p", "support", skills={"fr": 9}), skilled("support", {"fr": 2}),
              skilled("support", {"fr": 1}), skilled("support", {"fr": 9})]
    for acd in (full, fast):                       # keyed probes read requirement indexes, kept from here on
        for caller in probes[3:]:
            with_index(acd, "support", caller)
    for step in range(30):
        for acd in (full, fast):
            qs = acd.queues["support"]
            qs.rr_last = f"a{(step * 5) % 12:02d}" if step % 4 else None
            if step == 10:                         # level 0 all gone: the level-1 agents are the candidates
                for i in range(0, 12, 2):
                    acd.agent_pause(f"a{i:02d}", 1.0)
        for caller in probes:
            caller.last_tried = f"a{(step * 7) % 12:02d}" if step % 3 else None
            fast.queues["support"].rng.setstate(full.queues["support"].rng.getstate())
            want = fn(full.queues["support"], caller, 10.0)
            got = fn(fast.queues["support"], caller, 10.0, first_only=True)
            assert got[:1] == want[:1], (step, caller.skills)
            assert len(got) <= 1 or got == want      # ring-all / ring-progressively ring every candidate
        if strategy not in ("random", "weighted-random"):
            assert full.queues["support"].rng.getstate() == fast.queues["support"].rng.getstate()


# ---------------------------------------------------------------- the free index against a brute-force reference

def reference_candidates(qs, caller: Caller, now: float) -> list:
    """Every member whose agent is available now and has the caller's skills, at the lowest such level, in
    member order -- from scratch."""
    cands = [m for m in qs.members.values() if m.ref.is_available(now) and m.ref.has_skills(caller.skills)]
    if not cands:
        return []
    level = min(m.level for m in cands)
    return sorted((m for m in cands if m.level == level), key=lambda m: m.order)


def reference_first(qs, caller: Caller, now: float, strategy: str, rng) -> str | None:
    """The pick each strategy is specified to make, computed from scratch: every member whose agent is
    available now and has the caller's skills, the lowest level among them, then the strategy's key (the
    pre-index code's semantics). Random strategies make one draw from ``rng`` over the candidates in member
    order: one ``randrange(k)`` (random; weighted-random when no candidate has a positive weight) or one
    ``random()`` scaled by the positive weights' sum, walking the running sum (weighted-random)."""
    cands = reference_candidates(qs, caller, now)
    if not cands:
        return None
    if strategy in ("ring-all", "top-down", "ring-progressively"):
        return cands[0].agent
    if strategy in ("linear", "round-robin"):
        last = caller.last_tried if strategy == "linear" else qs.rr_last
        if last in qs.members:
            after = [m for m in cands if m.order > qs.members[last].order]
            if after:
                return after[0].agent
        return cands[0].agent
    if strategy == "longest-idle-agent":
        return min(cands, key=lambda m: (m.ref.idle_since, m.order)).agent
    if strategy == "fewest-calls":
        return min(cands, key=lambda m: (m.calls, m.ref.idle_since, m.order)).agent
    if strategy == "least-talk-time":
        return min(cands, key=lambda m: (m.ref.talk_time_s, m.ref.idle_since, m.order)).agent
    if strategy == "skills-based":
        return min(cands, key=lambda m: (-sum(m.ref.skills.get(s, 0) for s in caller.skills),
                                         m.ref.idle_since, m.order)).agent
    # random strategies: one draw over the candidates in member order

    def draw(members):
        if strategy == "random":
            return members[rng.randrange(len(members))]
        assert strategy == "weighted-random"
        pos = [m for m in members if m.weight > 0]
        if not pos:
            return members[rng.randrange(len(members))]
        r = rng.random() * sum(m.weight for m in pos)
        acc = 0.0
        for m in pos:
            acc += m.weight
            if acc > r:
                return m
        return pos[-1]

    return draw(cands).agent


CHURN_SKILLS = (None, None, None, {"fr": 1}, {"fr": 2, "de": 1}, {"fr": 3}, {"de": 2}, {"fr": 1, "de": 1},
                {"fr": 3, "de": 2}, {"de": 0}, {"fr": 2}, {"xx": 1}, {"fr": 0, "de": 1}, {"de": 1})


def _churn(acd: Acd, rng, now: float, ringing: set, connected: dict, n_agents: int) -> None:
    """One random engine event (joins, answers, failures, hang-ups, abandons, pause/busy/login changes,
    membership and level changes, an occasional strategy switch), executing the offers as a switch would."""
    def apply(actions):
        for a in actions:
            if isinstance(a, Offer):
                ringing.update((a.caller_id, ag) for ag in a.agents)
            elif isinstance(a, CancelOffer):
                ringing.difference_update((a.caller_id, ag) for ag in a.agents)
            elif isinstance(a, Connect):
                ringing.discard((a.caller_id, a.agent))
                connected[a.caller_id] = a.agent
    r = rng.random()
    agent = f"g{rng.randrange(n_agents):02d}"
    q = rng.choice(("q", "q", "other"))
    if r < 0.22:
        skills = rng.choice(CHURN_SKILLS)
        apply(acd.caller_join(q, f"c{rng.getrandbits(48)}", now, skills=skills, priority=rng.choice((0, 5))))
    elif r < 0.40 and ringing:
        c, ag = rng.choice(sorted(ringing))
        if rng.random() < 0.7:
            apply(acd.offer_answered(c, ag, now))
        else:
            apply(acd.offer_failed(c, ag, rng.choice(("no_answer", "rejected", "busy")), now))
    elif r < 0.58 and connected:
        c = rng.choice(sorted(connected))
        del connected[c]
        apply(acd.call_ended(c, now))
    elif r < 0.66:
        waiting = [c.id for qs in acd.queues.values() for c in qs.callers]
        if waiting:
            apply(acd.caller_abandon(rng.choice(waiting), now))
    elif r < 0.72:
        apply(acd.agent_pause(agent, now) if not acd.agents[agent].paused else acd.agent_unpause(agent, now))
    elif r < 0.78:
        apply(acd.agent_busy(agent, not acd.agents[agent].busy, now))
    elif r < 0.84:
        apply(acd.agent_logout(agent, now) if acd.agents[agent].logged_in else acd.agent_login(agent, now))
    elif r < 0.90:
        if agent in acd.queues[q].members and rng.random() < 0.4:
            apply(acd.remove_member(q, agent, now))
        else:
            apply(acd.add_member(q, agent, now, level=rng.randrange(3)))   # joins, or changes its level
    elif r < 0.92:
        acd.update_queue(QueueConfig("other", strategy=rng.choice(sorted(STRATEGIES)), wrap_up_s=2))
        apply(acd.tick(now))
    else:
        apply(acd.agent_busy(agent, False, now))      # "busy ended" on a free agent: its idle time moves


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_indexed_pick_equals_brute_force_reference(strategy):
    """On randomised engine states (levels 0-2, skills, weights including 0 and fractions, pauses, busy,
    wrap-ups, rests, logins, membership and level changes, two queues sharing agents, strategy switches on
    the other queue, waiting callers with a dozen distinct skill requirements coming and going), every
    strategy's pick -- the engine's ``first_only`` path, and the head of the full order -- equals a
    from-scratch reference, consuming the same random draws, for callers without required skills (the free
    index), with them through their requirement index (kept by the engine across the churn, or built for the
    probe), and with them but no index (a scan); the full order is exactly the reference candidates. Every
    index, requirement indexes included, agrees with a recomputation (``check_invariants``)."""
    fn = get_strategy(strategy)
    indexed_picks = kept_skill_picks = built_skill_picks = 0
    for seed in range(12):
        rng = random.Random(f"{strategy}:{seed}")
        acd = Acd(seed=seed)
        acd.add_queue(QueueConfig("q", strategy=strategy, wrap_up_s=rng.choice((0, 2, 5)), ring_timeout_s=4,
                                  progressive_step_s=1))
        acd.add_queue(QueueConfig("other", strategy="longest-idle-agent", wrap_up_s=2))
        n_agents = rng.choice((6, 15, 40))
        for i in range(n_agents):
            queues = {"q": rng.randrange(3)}
            if rng.random() < 0.4:
                queues["other"] = rng.randrange(2)
            skills = {"fr": rng.randrange(4)}
            if rng.random() < 0.5:
                skills["de"] = rng.randrange(3)
            acd.add_agent(AgentConfig(f"g{i:02d}", queues=queues, skills=skills,
                                      weight=rng.choice((0, 0.5, 1, 1, 2, 3)), max_no_answer=rng.choice((0, 2)),
                                      no_answer_delay_s=rng.choice((0, 1.5)), reject_delay_s=1))
            if rng.random() < 0.9:
                acd.agent_login(f"g{i:02d}", rng.choice((0.0, 0.5, 1.0)))
        now = 1.0
        ringing: set = set()
        connected: dict = {}
        qs = acd.queues["q"]
        required = [{"fr": 1}, {"fr": 2, "de": 1}, {"fr": 3}, {"fr": 3, "de": 2}, {"xx": 1}, {"de": 2},
                    {"fr": 1, "de": 1}, {"de": 0}]
        probes = ([Caller("p", "q")] + [Caller("p", "q", skills=dict(r)) for r in required]
                  + [skilled("q", r) for r in required])
        for step in range(150):
            now += rng.choice((0.0, 0.25, 1.0, 3.0))
            _churn(acd, rng, now, ringing, connected, n_agents)
            if step % 3:
                continue
            acd.tick(now)                 # timers due now have run: free == available now
            acd.check_invariants(now)
            assert qs.free == {n for n, m in qs.members.items() if m.ref.is_available(now)}
            names = sorted(qs.members) + ["gone"]
            qs.rr_last = rng.choice(names + [None])
            for caller in probes:
                caller.last_tried = rng.choice(names + [None])
                built = bool(caller.skill_key) and with_index(acd, "q", caller)
                before = qs.rng.getstate()
                ref_rng = random.Random()
                ref_rng.setstate(before)
                want = reference_first(qs, caller, now, strategy, ref_rng)
                if caller.skill_key:
                    ix = qs.indexed(SKILL_INDEX_KIND[strategy], caller)
                    assert ix is not None and ix is qs.skill_index[caller.skill_key]
                    if want is not None:
                        built_skill_picks += built
                        kept_skill_picks += not built
                elif not caller.skills:
                    indexed_picks += qs.indexed(INDEX_KIND[strategy]) is not None and want is not None
                got = fn(qs, caller, now, first_only=True)
                assert got[:1] == ([want] if want else []), (seed, step, caller.skills, got, want)
                after = qs.rng.getstate()
                assert after == ref_rng.getstate()
                qs.rng.setstate(before)        # the full order from the same RNG state starts the same
                full = fn(qs, caller, now)
                assert full[:1] == got[:1] and len(set(full)) == len(full)
                assert set(full) == {m.agent for m in qs.candidates(caller, now)} \
                    == {m.agent for m in reference_candidates(qs, caller, now)}
                qs.rng.setstate(after)
            acd._trim_skill_indexes(qs)   # the probes' indexes stay, as spares (kept up from now on)
            acd.check_invariants(now)
    # the indexes, not the fallback scans, made these picks; most requirement indexes had been kept up
    # incrementally since a waiting caller with that requirement (or an earlier probe) had them built
    assert indexed_picks > 200 and kept_skill_picks > 700 and built_skill_picks > 200, \
        (indexed_picks, kept_skill_picks, built_skill_picks)


def _sample(qs, n: int, fn, caller: Caller | None = None) -> Counter:
    caller = caller or Caller("p", qs.name)
    return Counter(fn(qs, caller, 0.0, first_only=True)[0] for _ in range(n))


def _chi2(counts: Counter, expected: dict[str, float]) -> float:
    assert set(counts) <= set(expected)
    n = sum(counts.values())
    return sum((counts.get(k, 0) - n * p) ** 2 / (n * p) for k, p in expected.items())


def _churned(strategy: str, weights: dict[str, float]) -> Acd:
    """A queue whose free index has been through logins, offers, calls, removals and re-additions."""
    acd = Acd(seed=11)
    acd.add_queue(QueueConfig("q", strategy=strategy))
    for name, w in weights.items():
        acd.add_agent(AgentConfig(name, queues={"q": 0}, weight=w))
    acd.add_agent(AgentConfig("hi", queues={"q": 1}, weight=100))     # higher level: never while level 0 free
    t = 0.0
    for name in list(weights) + ["hi"]:
        acd.agent_login(name, t)
        t += 1
    for i in range(40):                       # calls through the engine move agents out and back in
        acts = acd.caller_join("q", f"c{i}", t)
        (agents,) = offers(acts)
        acd.offer_answered(f"c{i}", agents[0], t + 1)
        acd.call_ended(f"c{i}", t + 2)
        t += 3
    first = next(iter(weights))
    acd.remove_member("q", first, t)          # leaves a dead slot behind in the weight tree
    acd.add_member("q", first, t)
    acd.check_invariants(t)
    return acd


def test_random_pick_is_uniform_over_the_lowest_level():
    """Chi-square against uniform: 6 free agents at level 0 (one re-added), one at level 1 never picked.
    df = 5; 20.5 is the 0.1 % critical value. Seeded, so the outcome is fixed; a biased pick would be far
    above it (one agent favoured by 10 % gives about 120 at this sample size)."""
    names = [f"r{i}" for i in range(6)]
    acd = _churned("random", {n: 1 for n in names})
    qs = acd.queues["q"]
    assert qs.indexed("order") is not None
    counts = _sample(qs, 30_000, get_strategy("random"))
    assert "hi" not in counts
    assert _chi2(counts, {n: 1 / 6 for n in names}) < 20.5, counts


def test_weighted_random_pick_is_weight_proportional():
    """Chi-square against w / sum(w) for the positive weights (df = 4, 0.1 % critical value 18.5); the weight-0
    agent is never first while anyone with a positive weight is free; with only weight-0 agents free at the
    lowest level the pick is uniform among them (df = 1, 10.8)."""
    weights = {"w1": 1, "w2": 2, "w3": 3, "w4": 4, "wh": 0.5, "w0": 0}
    acd = _churned("weighted-random", weights)
    qs = acd.queues["q"]
    assert qs.indexed("weight") is not None
    fn = get_strategy("weighted-random")
    counts = _sample(qs, 40_000, fn)
    total = sum(weights.values())
    assert "w0" not in counts and "hi" not in counts
    assert _chi2(counts, {n: w / total for n, w in weights.items() if w > 0}) < 18.5, counts
    # the same distribution through the fallback scan (no index): same draws, same picks
    saved, qs.index = qs.index, None
    state = qs.rng.getstate()
    slow = [fn(qs, Caller("p", "q"), 0.0, first_only=True)[0] for _ in range(500)]
    qs.index, after = saved, qs.rng.getstate()
    qs.rng.setstate(state)
    assert [fn(qs, Caller("p", "q"), 0.0, first_only=True)[0] for _ in range(500)] == slow
    assert qs.rng.getstate() == after
    # only weight-0 agents free at level 0: uniform among them
    zero = _churned("weighted-random", {"z1": 0, "z2": 0})
    counts = _sample(zero.queues["q"], 10_000, fn)
    assert set(counts) == {"z1", "z2"} and _chi2(counts, {"z1": 0.5, "z2": 0.5}) < 10.8, counts


def test_random_picks_with_required_skills_are_uniform_and_weighted_among_the_matching():
    """A caller with required skills: one draw among the lowest level's matching members, uniform (random) or
    by weight (weighted-random) -- from the caller's requirement index (a position, or a Fenwick descent over
    the matching members' weights) or, without one, over a scan of them: the same draws either way. Agents
    s0..s59 at level 0, one in three with ``fr`` 1, and ``rare`` on just two of them, plus a level-1 agent
    with both skills and a big weight that is never picked; chi-square at 0.1 %."""
    for strategy in ("random", "weighted-random"):
        acd = Acd(seed=5)
        acd.add_queue(QueueConfig("q", strategy=strategy))
        weights = {}
        for i in range(60):
            skills = {"fr": 1 if i % 3 == 0 else 0}
            if i in (7, 40):
                skills["rare"] = 1
            weights[f"s{i:02d}"] = w = 1 + i % 4
            acd.add_agent(AgentConfig(f"s{i:02d}", queues={"q": 0}, skills=skills, weight=w))
            acd.agent_login(f"s{i:02d}", float(i))
        acd.add_agent(AgentConfig("hi", queues={"q": 1}, skills={"fr": 1, "rare": 1}, weight=50))
        acd.agent_login("hi", 0.0)
        qs = acd.queues["q"]
        fn = get_strategy(strategy)
        for required, crit in (({"fr": 1}, 43.8), ({"rare": 1}, 10.8)):   # df = 19 and 1
            matching = [n for n in weights if acd.agents[n].has_skills(required)]
            keyed = skilled("q", required)
            with_index(acd, "q", keyed)
            assert qs.indexed(SKILL_INDEX_KIND[strategy], keyed) is not None
            counts = _sample(qs, 20_000, fn, keyed)
            assert set(counts) <= set(matching), counts
            w = {n: (weights[n] if strategy == "weighted-random" else 1) for n in matching}
            total = sum(w.values())
            assert _chi2(counts, {n: v / total for n, v in w.items()}) < crit, (strategy, required, counts)
            # without the index: a scan makes the very same draws
            state = qs.rng.getstate()
            fast = [fn(qs, keyed, 0.0, first_only=True)[0] for _ in range(300)]
            qs.rng.setstate(state)
            assert [fn(qs, Caller("p", "q", skills=required), 0.0, first_only=True)[0]
                    for _ in range(300)] == fast
            acd.check_invariants(0.0)
