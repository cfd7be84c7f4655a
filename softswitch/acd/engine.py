"""Sans-IO ACD engine: feed it events with an injected ``now``; it returns actions and queue_log entries.

Like h11, the engine never does I/O, sleeps or reads a clock: the asyncio/SIP layer turns ``Offer`` into
INVITEs to agents, ``Connect`` into a bridge, calls ``tick(now)`` at ``next_deadline()``, and writes
``drain_queue_log()`` to the queue_log file. All state is single-owner (one object on the event loop), which is
what removes mod_callcenter's race classes (agents stuck "Reserved", stale members).

Exactly-once accounting: a caller leaves ``callers`` through one path (``_finish``/``_connect``) that sets its
outcome once; an agent offer leaves ``OfferRecord.ringing`` through ``_end_ring`` only. Events about callers
or offers that no longer exist are ignored (or answered with a ``CancelOffer`` so the late agent is hung up).
"""

from __future__ import annotations

import bisect
import heapq
import math
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Union

from .model import (Agent, AgentConfig, Caller, CallerOutcome, FreeIndex, Member, OfferOutcome, QueueConfig,
                    QueueLogEntry, QueueState)
from .strategies import INDEX_KIND, RING_ALL, RING_PROGRESSIVELY, SKILL_INDEX_KIND, canonical_name, get_strategy

__all__ = [
    "Acd", "Action", "AgentPaused", "Announce", "CancelOffer", "Connect", "LeftEmpty", "Offer",
    "OfferRecord", "Overflow", "Timeout",
]

INF = math.inf
SPARE_SKILL_INDEXES = 8   # requirement indexes kept per queue after their last caller left (most recent)


# ---------------------------------------------------------------- actions (engine -> I/O layer)

@dataclass(frozen=True)
class Offer:
    """Ring these agents for this caller (ring-all: several at once), each for ``timeout_s``."""

    caller_id: str
    queue: str
    agents: tuple[str, ...]
    timeout_s: float


@dataclass(frozen=True)
class CancelOffer:
    """Stop ringing these agents (or hang up an agent who answered too late: reason "gone")."""

    caller_id: str
    agents: tuple[str, ...]
    reason: str   # answered_elsewhere | ring_timeout | abandoned | timeout | logout | gone | empty ...


@dataclass(frozen=True)
class Connect:
    """Bridge the caller to the agent who answered."""

    caller_id: str
    queue: str
    agent: str
    wait_s: float


@dataclass(frozen=True)
class Announce:
    """Play the position / estimated wait to a waiting caller (ewt_s None: nobody staffed)."""

    caller_id: str
    queue: str
    position: int
    ewt_s: float | None


@dataclass(frozen=True)
class Overflow:
    """Send the caller to ``destination`` ("" = back to the dial plan); reason timeout | full | empty."""

    caller_id: str
    queue: str
    destination: str
    reason: str


@dataclass(frozen=True)
class Timeout:
    """Max wait reached with no overflow destination: the I/O layer ends the queue attempt."""

    caller_id: str
    queue: str
    wait_s: float


@dataclass(frozen=True)
class LeftEmpty:
    """The caller leaves because the queue has nobody staffed (join-empty / leave-when-empty / removed)."""

    caller_id: str
    queue: str
    reason: str


@dataclass(frozen=True)
class AgentPaused:
    """The engine paused an agent by itself (consecutive no-answers); tell the phone/CLI."""

    agent: str
    reason: str


Action = Union[Offer, CancelOffer, Connect, Announce, Overflow, Timeout, LeftEmpty, AgentPaused]


@dataclass(eq=False)
class OfferRecord:
    """One caller's current offer attempt: agents ringing (-> start time) and, for ring-progressively,
    agents still to add."""

    caller_id: str
    queue: str
    ringing: dict[str, float] = field(default_factory=dict)
    pending: list[str] = field(default_factory=list)
    next_add_at: float = INF


_FAIL_REASONS = {"no_answer": OfferOutcome.NO_ANSWER, "rejected": OfferOutcome.REJECTED,
                 "busy": OfferOutcome.REJECTED}


class Acd:
    """All queues and agents of one switch. Methods taking ``now`` are events; they return actions."""

    def __init__(self, *, seed: int = 0) -> None:
        self.queues: dict[str, QueueState] = {}
        self.agents: dict[str, Agent] = {}
        self.callers: dict[str, Caller] = {}          # waiting, offering or connected
        self._memberships: dict[str, set[str]] = {}   # agent -> queue names
        self._timed: set[str] = set()                 # agents with a wrap-up/rest timer running
        self._log: list[QueueLogEntry] = []
        self._seq = 0
        self._seed = seed
        # timer heap: (deadline, seq, kind, obj); kind "agent" (obj: agent name) or "caller" (obj: Caller).
        # Entries are never removed eagerly: stale ones are recognised against current state when popped.
        self._heap: list[tuple[float, int, str, object]] = []
        self._hseq = 0
        self._agent_pushed: dict[str, tuple[float, float]] = {}   # last timer pair pushed per agent
        self._agents_due: set[str] = set()   # expired agent timers set aside by next_deadline(now)

    # ------------------------------------------------------------ configuration

    def add_queue(self, config: QueueConfig) -> None:
        if config.name in self.queues:
            raise ValueError(f"queue {config.name!r} exists")
        config.strategy = canonical_name(config.strategy)   # KeyError on unknown names
        qs = QueueState(config=config, agents=self.agents,
                        rng=random.Random(f"{self._seed}:{config.name}"))
        self.queues[config.name] = qs
        for name, agent in self.agents.items():          # agents configured before their queue
            if config.name in agent.config.queues:
                self._add_membership(qs, agent, agent.config.queues[config.name])

    def update_queue(self, config: QueueConfig) -> None:
        """Change a queue's settings at run time; callers, members and statistics stay."""
        config.strategy = canonical_name(config.strategy)
        qs = self.queues[config.name]
        qs.config = config
        for caller in qs.callers:       # deadlines derived from the config may have moved
            self._push_caller_deadlines(qs, caller)

    def remove_queue(self, name: str, now: float) -> list[Action]:
        qs = self.queues[name]
        actions: list[Action] = []
        for caller in list(qs.callers):
            actions += self._leave_empty(qs, caller, now, "queue_removed")
        for agent in list(qs.members):
            self._memberships[agent].discard(name)
        del self.queues[name]
        return actions + self._dispatch(now)

    def add_agent(self, config: AgentConfig) -> None:
        if config.name in self.agents:
            raise ValueError(f"agent {config.name!r} exists")
        agent = Agent(config=config)
        self.agents[config.name] = agent
        self._memberships[config.name] = set()
        for qname, level in config.queues.items():
            if qname in self.queues:
                self._add_membership(self.queues[qname], agent, level)

    def remove_agent(self, name: str, now: float) -> list[Action]:
        actions = self.agent_logout(name, now)
        for qname in list(self._memberships[name]):
            qs = self.queues[qname]
            qs.members.pop(name, None)
            qs.free.discard(name)
            for ix in _indexes(qs):
                ix.remove_member(name)
        del self._memberships[name]
        del self.agents[name]
        self._timed.discard(name)
        self._agent_pushed.pop(name, None)
        return actions

    def add_member(self, queue: str, agent: str, now: float, level: int = 0) -> list[Action]:
        """Add an agent to a queue at run time (CLI); logs ADDMEMBER if the agent is logged in."""
        qs, a = self.queues[queue], self.agents[agent]
        if agent in qs.members:
            qs.members[agent].level = level
            if qs.index is not None:     # the level leads every index key: refile the whole queue
                qs.index = FreeIndex.build(qs.index.kind, qs.members, qs.free)
            qs.skill_index.clear()       # requirement indexes: rebuilt at their next decision
            return []
        self._add_membership(qs, a, level)
        a.config.queues[queue] = level
        if a.logged_in:
            self._qlog(now, "NONE", queue, agent, "ADDMEMBER")
        return self._dispatch(now)

    def remove_member(self, queue: str, agent: str, now: float) -> list[Action]:
        qs, a = self.queues[queue], self.agents[agent]
        if agent not in qs.members:
            return []
        actions: list[Action] = []
        if a.offering is not None and self.callers[a.offering].queue == queue:
            actions += self._cancel_agent_offer(a, now, "removed")
        del qs.members[agent]
        qs.free.discard(agent)
        for ix in _indexes(qs):
            ix.remove_member(agent)
        self._memberships[agent].discard(queue)
        a.config.queues.pop(queue, None)
        if a.logged_in:
            self._qlog(now, "NONE", queue, agent, "REMOVEMEMBER")
        actions += self._check_empty(qs, now)
        return actions + self._dispatch(now)

    def _add_membership(self, qs: QueueState, agent: Agent, level: int) -> None:
        m = qs.members[agent.name] = Member(agent=agent.name, level=level, order=qs.next_order,
                                            weight=agent.config.weight, ref=agent)
        qs.next_order += 1
        self._memberships[agent.name].add(qs.name)
        if agent.free:
            qs.free.add(agent.name)
        ix = qs.index
        if ix is None or ix.kind != INDEX_KIND[qs.config.strategy]:
            self._index(qs)         # (re)built with the new member in it
        else:
            ix.add_member(m)
            if agent.free:
                ix.add(m)
        for ix in qs.skill_index.values():
            ix.add_member(m)        # no-ops without the required skills
            if agent.free:
                ix.add(m)

    def _index(self, qs: QueueState) -> FreeIndex:
        """The queue's free index, (re)built from ``free`` if there is none yet or the strategy changed
        (``update_queue``): O(free log free) once, then kept up by ``_refresh`` and the removal paths. After
        a strategy change the requirement indexes are dropped too (rebuilt by ``_skill_index``)."""
        strategy = qs.config.strategy
        kind = INDEX_KIND[strategy]
        ix = qs.index
        if ix is None or ix.kind != kind:
            ix = qs.index = FreeIndex.build(kind, qs.members, qs.free)
        if qs.skill_index and next(iter(qs.skill_index.values())).kind != SKILL_INDEX_KIND[strategy]:
            qs.skill_index.clear()
        return ix

    def _skill_index(self, qs: QueueState, caller: Caller) -> FreeIndex:
        """The requirement index for a caller with required skills: the queue's free members having them,
        ordered for the strategy (``SKILL_INDEX_KIND``). Built at the first decision for that requirement,
        O(members + free log free); then kept up like the free index, at O(log n) per requirement kept
        for each agent change. Kept while a caller with the requirement waits, and afterwards among the
        ``SPARE_SKILL_INDEXES`` most recently emptied ones (``_unqueue``) so a requirement that comes and
        goes with single callers is not rebuilt for each of them. Call ``_index(qs)`` first."""
        key = caller.skill_key
        ix = qs.skill_index.get(key)
        if ix is None:
            ix = qs.skill_index[key] = FreeIndex.build(SKILL_INDEX_KIND[qs.config.strategy], qs.members,
                                                       qs.free, caller.skills)
        return ix

    # ------------------------------------------------------------ agent events

    def agent_login(self, agent: str, now: float) -> list[Action]:
        a = self.agents[agent]
        if a.logged_in:
            return []
        a.logged_in = True
        a.idle_since = now
        a.consecutive_no_answers = 0
        for q in sorted(self._memberships[agent]):
            self._qlog(now, "NONE", q, agent, "ADDMEMBER")
        self._refresh(a, now)
        return self._dispatch(now)

    def agent_logout(self, agent: str, now: float) -> list[Action]:
        """Log out; a ringing offer is cancelled, a connected call continues to its end."""
        a = self.agents[agent]
        if not a.logged_in:
            return []
        actions = self._cancel_agent_offer(a, now, "logout") if a.offering is not None else []
        a.logged_in = False
        for q in sorted(self._memberships[agent]):
            self._qlog(now, "NONE", q, agent, "REMOVEMEMBER")
        self._refresh(a, now)
        for q in sorted(self._memberships[agent]):
            actions += self._check_empty(self.queues[q], now)
        return actions + self._dispatch(now)

    def agent_pause(self, agent: str, now: float, reason: str = "") -> list[Action]:
        """Pause in every queue (an offer already ringing may still be answered)."""
        a = self.agents[agent]
        if a.paused:
            a.pause_reason = reason
            return []
        return self._pause(a, now, reason)

    def agent_unpause(self, agent: str, now: float, reason: str = "") -> list[Action]:
        a = self.agents[agent]
        if not a.paused:
            return []
        a.paused = False
        a.pause_reason = ""
        a.consecutive_no_answers = 0
        for q in sorted(self._memberships[agent]):
            self._qlog(now, "NONE", q, agent, "UNPAUSE", reason)
        self._refresh(a, now)
        return self._dispatch(now)

    def agent_busy(self, agent: str, busy: bool, now: float) -> list[Action]:
        """The agent's phone is on (busy=True) or off a call the ACD did not place: never offer meanwhile."""
        a = self.agents[agent]
        a.busy = busy
        if not busy:
            a.idle_since = max(a.idle_since, now)
        self._refresh(a, now)
        return self._dispatch(now) if not busy else []

    def _pause(self, a: Agent, now: float, reason: str) -> list[Action]:
        a.paused = True
        a.pause_reason = reason
        for q in sorted(self._memberships[a.name]):
            self._qlog(now, "NONE", q, a.name, "PAUSE", reason)
        self._refresh(a, now)
        actions: list[Action] = []
        for q in sorted(self._memberships[a.name]):
            actions += self._check_empty(self.queues[q], now)
        return actions

    # ------------------------------------------------------------ caller events

    def caller_join(self, queue: str, caller_id: str, now: float, *, priority: int = 0,
                    skills: dict[str, int] | None = None, cid: str = "") -> list[Action]:
        """A caller asks to join ``queue`` (priority: higher first; skills: required name -> min level)."""
        qs = self.queues[queue]
        if caller_id in self.callers:
            raise ValueError(f"caller {caller_id!r} is already in a queue")
        cfg = qs.config
        self._seq += 1
        caller = Caller(id=caller_id, queue=queue, priority=priority, skills=dict(skills or {}),
                        skill_key=tuple(sorted((skills or {}).items())), joined_at=now, seq=self._seq)
        qs.stats.offered += 1
        if not cfg.join_empty and qs.staffed() == 0:
            self._qlog(now, caller_id, queue, "NONE", "JOINEMPTY")
            return [self._outcome_empty(qs, caller, "join_empty")]
        if cfg.max_len and len(qs.callers) >= cfg.max_len:
            self._qlog(now, caller_id, queue, "NONE", "FULL")
            caller.outcome = CallerOutcome.OVERFLOWED
            qs.stats.overflowed += 1
            return [Overflow(caller_id, queue, cfg.overflow, "full")]
        bisect.insort(qs.callers, caller, key=Caller.sort_key)
        qs.skill_keys[caller.skill_key] += 1
        caller.orig_position = qs.position(caller)
        caller.next_announce_at = now + cfg.announce_frequency_s if cfg.announce_frequency_s > 0 else INF
        self.callers[caller_id] = caller
        if cfg.max_wait_s > 0:
            self._push(caller.joined_at + cfg.max_wait_s, "caller", caller)
        self._push(caller.next_announce_at, "caller", caller)
        self._qlog(now, caller_id, queue, "NONE", "ENTERQUEUE", "", cid)
        return self._dispatch(now)

    def caller_abandon(self, caller_id: str, now: float) -> list[Action]:
        """The caller hung up. While connected this is the end of the call (COMPLETECALLER)."""
        caller = self.callers.get(caller_id)
        if caller is None:
            return []
        if caller.agent is not None:
            return self.call_ended(caller_id, now, by="caller")
        qs = self.queues[caller.queue]
        pos = qs.position(caller)
        actions = self._cancel_offer(caller, now, "abandoned")
        self._qlog(now, caller_id, qs.name, "NONE", "ABANDON", str(pos), str(caller.orig_position),
                   str(int(now - caller.joined_at)))
        self._finish(qs, caller, CallerOutcome.ABANDONED)
        qs.stats.abandoned += 1
        return actions + self._dispatch(now)

    def offer_answered(self, caller_id: str, agent: str, now: float, agent_callid: str = "") -> list[Action]:
        """An offered agent answered: connect, cancel the other ringing agents."""
        caller = self.callers.get(caller_id)
        if caller is None or caller.offer is None or agent not in caller.offer.ringing:
            return [CancelOffer(caller_id, (agent,), "gone")]
        qs = self.queues[caller.queue]
        a = self.agents[agent]
        started = caller.offer.ringing[agent]
        self._end_ring(qs, caller, a, OfferOutcome.ANSWERED, now)
        actions = self._cancel_offer(caller, now, "answered_elsewhere")
        wait = now - caller.joined_at
        self._unqueue(qs, caller)
        caller.agent = agent
        caller.connected_at = now
        caller.outcome = CallerOutcome.ANSWERED
        a.on_call = caller_id
        a.consecutive_no_answers = 0
        a.calls += 1
        a.call_started_at = now
        member = qs.members.get(agent)
        if member is not None:
            member.calls += 1
        st = qs.stats
        st.answered += 1
        st.total_answer_wait_s += wait
        if wait <= qs.config.service_level_s:
            st.answered_in_sl += 1
        self._refresh(a, now)
        self._qlog(now, caller_id, qs.name, agent, "CONNECT", str(int(wait)), agent_callid,
                   str(int(now - started)))
        actions.append(Connect(caller_id, qs.name, agent, wait))
        return actions + self._dispatch(now)

    def offer_failed(self, caller_id: str, agent: str, reason: str, now: float) -> list[Action]:
        """The agent's leg failed: reason no_answer | rejected | busy. Late/duplicate reports are ignored."""
        if reason not in _FAIL_REASONS:
            raise ValueError(f"offer_failed reason must be one of {sorted(_FAIL_REASONS)}")
        caller = self.callers.get(caller_id)
        if caller is None or caller.offer is None or agent not in caller.offer.ringing:
            return []
        actions = self._fail_ring(caller, self.agents[agent], reason, now)
        return actions + self._after_attempt(caller, now) + self._dispatch(now)

    def call_ended(self, caller_id: str, now: float, by: str = "agent") -> list[Action]:
        """A connected call ended (by "agent" or "caller"); the agent goes into wrap-up."""
        caller = self.callers.get(caller_id)
        if caller is None:
            return []
        if caller.agent is None:
            return self.caller_abandon(caller_id, now)
        del self.callers[caller_id]
        a = self.agents.get(caller.agent)
        qs = self.queues.get(caller.queue)
        talk = now - caller.connected_at
        wrap = 0.0
        if a is not None:
            wrap = a.config.wrap_up_s if a.config.wrap_up_s is not None else (
                qs.config.wrap_up_s if qs is not None else 0.0)
            a.on_call = None
            a.talk_time_s += talk
            a.idle_since = now
            a.wrap_up_until = max(a.wrap_up_until, now + wrap)
            a.wrap_up_time_s += wrap
            self._refresh(a, now)
        if qs is not None:
            qs.stats.completed += 1
            qs.stats.total_handle_s += talk + wrap
            qs.recent_handle_s.append(talk + wrap)
            event = "COMPLETECALLER" if by == "caller" else "COMPLETEAGENT"
            self._qlog(now, caller_id, qs.name, caller.agent or "NONE", event,
                       str(int(caller.connected_at - caller.joined_at)), str(int(talk)),
                       str(caller.orig_position))
        return self._dispatch(now)

    # ------------------------------------------------------------ time

    def tick(self, now: float) -> list[Action]:
        """Run every timer due at ``now``: wrap-up/rest ends, ring timeouts, progressive ringing,
        max wait, announcements; then distribute. Only timers due on the heap are looked at."""
        actions: list[Action] = []
        heap = self._heap
        due_agents = self._agents_due
        self._agents_due = set()
        due_callers: dict[int, Caller] = {}
        while heap and heap[0][0] <= now:
            _, _, kind, obj = heapq.heappop(heap)
            if kind == "agent":
                due_agents.add(obj)  # type: ignore[arg-type]
            else:
                due_callers[id(obj)] = obj  # type: ignore[assignment]
        for name in due_agents:
            if name not in self._timed:
                continue
            self._agent_pushed.pop(name, None)   # its entries are consumed: refresh re-pushes live timers
            a = self.agents[name]
            self._refresh(a, now)
            # an expired timer means the same as none; clearing it keeps next_deadline() in the future
            if 0 < a.wrap_up_until <= now:
                a.wrap_up_until = 0.0
            if 0 < a.rest_until <= now:
                a.rest_until = 0.0
            if a.wrap_up_until <= now and a.rest_until <= now:
                self._timed.discard(name)
        if not due_callers:
            return actions + self._dispatch(now)
        callers = sorted(due_callers.values(), key=lambda c: c.seq)   # = self.callers insertion order
        for caller in callers:
            if caller.offer is None or self.callers.get(caller.id) is not caller:
                continue
            qs = self.queues[caller.queue]
            offer = caller.offer
            for agent, started in list(offer.ringing.items()):
                if caller.offer is not offer or agent not in offer.ringing:
                    continue     # an earlier expiry auto-paused and emptied the queue
                if now >= started + qs.config.ring_timeout_s:
                    actions += self._fail_ring(caller, self.agents[agent], "no_answer", now)
                    actions.append(CancelOffer(caller.id, (agent,), "ring_timeout"))
            if caller.offer is offer and offer.pending and now >= offer.next_add_at:
                actions += self._ring_next_pending(qs, caller, now)
            actions += self._after_attempt(caller, now)
        by_queue: dict[str, list[Caller]] = {}
        for caller in callers:
            if caller.agent is None and self.callers.get(caller.id) is caller:
                by_queue.setdefault(caller.queue, []).append(caller)
        for qs in list(self.queues.values()):
            due = by_queue.get(qs.name)
            if not due:
                continue
            cfg = qs.config
            if len(due) > 16:          # many due: one pass over the queue instead of index() per caller
                due_ids = {id(c) for c in due}
                gone = 0
                for idx, caller in enumerate(list(qs.callers)):
                    if caller.id not in self.callers or caller.queue != qs.name:
                        gone += 1
                        continue
                    if id(caller) not in due_ids:
                        continue
                    if cfg.max_wait_s > 0 and now >= caller.joined_at + cfg.max_wait_s:
                        actions += self._exit_timeout(qs, caller, now, idx + 1 - gone)
                        gone += 1
                    elif now >= caller.next_announce_at:
                        pos = idx + 1 - gone
                        actions.append(Announce(caller.id, qs.name, pos,
                                                qs.ewt_s(pos) if cfg.announce_ewt else None))
                        caller.next_announce_at = now + cfg.announce_frequency_s
                        self._push(caller.next_announce_at, "caller", caller)
                continue
            due.sort(key=Caller.sort_key)
            for caller in due:
                if self.callers.get(caller.id) is not caller or caller.agent is not None:
                    continue
                if cfg.max_wait_s > 0 and now >= caller.joined_at + cfg.max_wait_s:
                    actions += self._exit_timeout(qs, caller, now, qs.position(caller))
                elif now >= caller.next_announce_at:
                    pos = qs.position(caller)
                    actions.append(Announce(caller.id, qs.name, pos,
                                            qs.ewt_s(pos) if cfg.announce_ewt else None))
                    caller.next_announce_at = now + cfg.announce_frequency_s
                    self._push(caller.next_announce_at, "caller", caller)
        return actions + self._dispatch(now)

    def next_deadline(self, now: float | None = None) -> float | None:
        """When ``tick`` next has work (None: nothing scheduled): the timer heap's top after dropping
        stale entries (amortised O(log n)).

        Give ``now``: an agent timer that already ran out (its wrap-up ended while a rest continues, or
        one set to end at once) means no work, and must not hide the real next deadline; but one whose
        agent is free now and not yet offered is work due at once (``now``), or an I/O layer that asks
        after the deadline passed and before it ticked would never free that agent."""
        heap = self._heap
        while heap:
            t, _, kind, obj = heap[0]
            if kind == "agent":
                name: str = obj  # type: ignore[assignment]
                a = self.agents.get(name)
                if a is not None and name in self._timed and t > 0 and t in (a.wrap_up_until, a.rest_until):
                    if now is None or t > now:
                        return t
                    self._agents_due.add(name)     # tick still has to process it
                    if not a.free and a.is_available(now):
                        return now
            else:
                caller: Caller = obj  # type: ignore[assignment]
                if self._caller_deadline_valid(caller, t):
                    return t
            heapq.heappop(heap)
        return None

    # ------------------------------------------------------------ outputs / introspection

    def drain_queue_log(self) -> list[QueueLogEntry]:
        out, self._log = self._log, []
        return out

    def queue_status(self, name: str, now: float) -> dict[str, object]:
        """Snapshot for `softswitch queue status` (keys include name, waiting, offered, answered, abandoned)."""
        qs = self.queues[name]
        st = qs.stats
        return {
            "name": name, "strategy": qs.config.strategy, "waiting": len(qs.callers),
            "offered": st.offered, "answered": st.answered, "abandoned": st.abandoned,
            "timed_out": st.timed_out, "overflowed": st.overflowed, "left_empty": st.left_empty,
            "service_level_pct": round(st.service_level_pct, 1), "asa_s": round(st.asa_s, 1),
            "aht_s": round(st.aht_s, 1),
            "longest_wait_s": round(max((now - c.joined_at for c in qs.callers), default=0.0), 1),
            "staffed": qs.staffed(), "available": len(qs.free),
        }

    def agent_status(self, name: str, now: float) -> dict[str, object]:
        a = self.agents[name]
        return {
            "name": name, "state": a.state(now).value, "pause_reason": a.pause_reason,
            "queues": sorted(self._memberships[name]), "calls": a.calls,
            "talk_time_s": round(a.talk_time_s, 1), "wrap_up_time_s": round(a.wrap_up_time_s, 1),
            "idle_s": round(now - a.idle_since, 1) if a.state(now).value == "available" else 0.0,
            "no_answers": a.no_answers,
        }

    def check_invariants(self, now: float) -> None:
        """Raise AssertionError if any accounting or cross-reference is inconsistent (tests, debug CLI)."""
        for qs in self.queues.values():
            st = qs.stats
            connected = sum(1 for c in self.callers.values() if c.queue == qs.name and c.agent is not None)
            assert st.offered == st.finished + len(qs.callers), (qs.name, st, len(qs.callers))
            assert connected <= st.answered
            ringing = sum(len(c.offer.ringing) for c in qs.callers if c.offer is not None)
            assert st.offers == (st.offers_answered + st.offers_no_answer + st.offers_rejected
                                 + st.offers_cancelled + ringing), (qs.name, st, ringing)
            assert all(c.agent is None and c.id in self.callers for c in qs.callers)
            assert qs.callers == sorted(qs.callers, key=Caller.sort_key)
            assert qs.skill_keys == Counter(c.skill_key for c in qs.callers)
            for name in qs.free:
                assert name in qs.members and self.agents[name].free and self.agents[name].is_available(now)
            if qs.index is not None:
                qs.index.check(qs.members, qs.free)
            for key, ix in qs.skill_index.items():      # each against a recomputation from members/free
                assert key and ix.required == dict(key), (qs.name, key, ix.required)
                ix.check(qs.members, qs.free)
            assert sum(1 for k in qs.skill_index if k not in qs.skill_keys) <= SPARE_SKILL_INDEXES
        for a in self.agents.values():
            if a.offering is not None:
                c = self.callers[a.offering]
                assert c.offer is not None and a.name in c.offer.ringing, a
            if a.on_call is not None:
                assert self.callers[a.on_call].agent == a.name, a
            assert a.free == a.is_available(now) or a.name in self._timed, a
        for c in self.callers.values():
            if c.offer is not None:
                for name in c.offer.ringing:
                    assert self.agents[name].offering == c.id

    # ------------------------------------------------------------ internals

    def _qlog(self, now: float, callid: str, queue: str, agent: str, event: str, *params: str) -> None:
        self._log.append(QueueLogEntry(now, callid, queue, agent, event, tuple(params)))

    def _push(self, deadline: float, kind: str, obj: object) -> None:
        if deadline != INF:
            self._hseq += 1
            heapq.heappush(self._heap, (deadline, self._hseq, kind, obj))

    def _push_caller_deadlines(self, qs: QueueState, caller: Caller) -> None:
        """(Re)schedule every deadline of a waiting caller (after its queue's config changed)."""
        cfg = qs.config
        if caller.offer is not None:
            for started in caller.offer.ringing.values():
                self._push(started + cfg.ring_timeout_s, "caller", caller)
            if caller.offer.pending:
                self._push(caller.offer.next_add_at, "caller", caller)
        if cfg.max_wait_s > 0:
            self._push(caller.joined_at + cfg.max_wait_s, "caller", caller)
        self._push(caller.next_announce_at, "caller", caller)

    def _caller_deadline_valid(self, caller: Caller, t: float) -> bool:
        """Is ``t`` still one of this caller's deadlines (as the old full scan computed them)?"""
        if self.callers.get(caller.id) is not caller or caller.agent is not None:
            return False
        qs = self.queues.get(caller.queue)
        if qs is None:
            return False
        cfg = qs.config
        if t == caller.next_announce_at or (cfg.max_wait_s > 0 and t == caller.joined_at + cfg.max_wait_s):
            return True
        offer = caller.offer
        if offer is not None:
            if offer.pending and t == offer.next_add_at:
                return True
            for started in offer.ringing.values():
                if t == started + cfg.ring_timeout_s:
                    return True
        return False

    def _refresh(self, a: Agent, now: float) -> None:
        """Recompute the agent's free flag and the per-queue free indexes it belongs to (``free`` and the
        ordered ``index``); an agent that stays free is refiled if a key field moved (``agent_busy(False)``
        moves its idle time)."""
        free = a.is_available(now)
        name = a.config.name
        if a.wrap_up_until > now or a.rest_until > now:
            self._timed.add(name)
            pair = (a.wrap_up_until, a.rest_until)
            last = self._agent_pushed.get(name)
            if last != pair:
                self._agent_pushed[name] = pair
                for i in (0, 1):
                    if pair[i] > now and (last is None or last[i] != pair[i]):
                        self._push(pair[i], "agent", name)
        if free == a.free:
            if free:
                for q in self._memberships.get(name, ()):
                    qs = self.queues[q]
                    m = qs.members[name]
                    for ix in _indexes(qs):
                        ix.rekey(m)
            return
        a.free = free
        queues = self.queues
        for q in self._memberships.get(name, ()):
            qs = queues[q]
            ix = qs.index
            if free:
                qs.free.add(name)
                m = qs.members[name]
                if ix is not None:
                    ix.add(m)
                for ix in qs.skill_index.values():
                    ix.add(m)            # files it only if it has the requirement's skills
            else:
                qs.free.discard(name)
                if ix is not None:
                    ix.discard(name)
                for ix in qs.skill_index.values():
                    ix.discard(name)

    def _dispatch(self, now: float) -> list[Action]:
        """Offer waiting callers to free agents: queues by weight then their best caller, callers in
        priority/wait order. Each queue's free index, and a requirement index per distinct skill requirement
        of its waiting callers, are ordered for its strategy, so a decision is O(log free members)
        (ring-all / ring-progressively: O(the names rung)); nothing is done without free members."""
        actions: list[Action] = []
        busy_queues = [qs for qs in self.queues.values() if qs.free and qs.callers]
        if not busy_queues:
            return actions
        busy_queues.sort(key=lambda q: (-q.config.weight, q.callers[0].sort_key()))
        for qs in busy_queues:
            self._index(qs)
            strategy = get_strategy(qs.config.strategy)
            first_only = qs.config.strategy not in (RING_ALL, RING_PROGRESSIVELY)   # only names[0] is rung
            unmatched: set[tuple[tuple[str, int], ...]] = set()   # requirements nobody free meets
            for caller in qs.callers:       # offering never reorders or removes callers
                if not qs.free:
                    break
                if caller.offer is not None or caller.skill_key in unmatched:
                    continue
                if caller.skills:
                    self._skill_index(qs, caller)
                names = strategy(qs, caller, now, first_only=first_only)
                if not names:
                    if not caller.skills:
                        break        # nobody free at all for this queue
                    unmatched.add(caller.skill_key)   # a later caller with other skills may match
                    if len(unmatched) == len(qs.skill_keys):
                        break    # every requirement present in the queue has failed
                    continue
                actions += self._start_offer(qs, caller, names, now)
        return actions

    def _start_offer(self, qs: QueueState, caller: Caller, names: list[str], now: float) -> list[Action]:
        strategy = qs.config.strategy
        offer = OfferRecord(caller.id, qs.name)
        caller.offer = offer
        ring = names if strategy == RING_ALL else names[:1]
        if strategy == RING_PROGRESSIVELY:
            offer.pending = names[1:]
            offer.next_add_at = now + qs.config.progressive_step_s
            if offer.pending:
                self._push(offer.next_add_at, "caller", caller)
        for name in ring:
            self._ring(qs, caller, self.agents[name], now)
        return [Offer(caller.id, qs.name, tuple(ring), qs.config.ring_timeout_s)]

    def _ring(self, qs: QueueState, caller: Caller, a: Agent, now: float) -> None:
        assert caller.offer is not None and a.is_available(now)
        caller.offer.ringing[a.name] = now
        self._push(now + qs.config.ring_timeout_s, "caller", caller)
        caller.last_tried = a.name
        qs.rr_last = a.name
        qs.stats.offers += 1
        a.offering = caller.id
        self._refresh(a, now)

    def _ring_next_pending(self, qs: QueueState, caller: Caller, now: float) -> list[Action]:
        """ring-progressively: add the next still-free pending agent (keeping the others ringing)."""
        offer = caller.offer
        assert offer is not None
        while offer.pending:
            name = offer.pending.pop(0)
            a = self.agents.get(name)
            if a is not None and name in qs.members and a.is_available(now) and a.has_skills(caller.skills):
                self._ring(qs, caller, a, now)
                offer.next_add_at = now + qs.config.progressive_step_s
                if offer.pending:
                    self._push(offer.next_add_at, "caller", caller)
                return [Offer(caller.id, qs.name, (name,), qs.config.ring_timeout_s)]
        offer.next_add_at = INF
        return []

    def _end_ring(self, qs: QueueState, caller: Caller, a: Agent, outcome: OfferOutcome, now: float) -> None:
        """The single exit of one agent's offer: exactly one outcome counted."""
        assert caller.offer is not None
        del caller.offer.ringing[a.name]
        a.offering = None
        st = qs.stats
        if outcome is OfferOutcome.ANSWERED:
            st.offers_answered += 1
        elif outcome is OfferOutcome.NO_ANSWER:
            st.offers_no_answer += 1
        elif outcome is OfferOutcome.REJECTED:
            st.offers_rejected += 1
        else:
            st.offers_cancelled += 1
        self._refresh(a, now)

    def _fail_ring(self, caller: Caller, a: Agent, reason: str, now: float) -> list[Action]:
        qs = self.queues[caller.queue]
        assert caller.offer is not None
        started = caller.offer.ringing[a.name]
        self._qlog(now, caller.id, qs.name, a.name, "RINGNOANSWER", str(int((now - started) * 1000)))
        cfg = a.config
        if reason == "no_answer":
            a.no_answers += 1
            a.consecutive_no_answers += 1
            a.rest_until = max(a.rest_until, now + cfg.no_answer_delay_s)
        elif reason == "busy":
            a.rejects += 1
            a.rest_until = max(a.rest_until, now + cfg.busy_delay_s)
        else:
            a.rejects += 1
            a.rest_until = max(a.rest_until, now + cfg.reject_delay_s)
        self._end_ring(qs, caller, a, _FAIL_REASONS[reason], now)
        if (reason == "no_answer" and cfg.max_no_answer and a.consecutive_no_answers >= cfg.max_no_answer
                and not a.paused):
            return [AgentPaused(a.name, "auto-no-answer")] + self._pause(a, now, "auto-no-answer")
        return []

    def _after_attempt(self, caller: Caller, now: float) -> list[Action]:
        """When nobody rings any more: progressive ringing moves on, otherwise the attempt is over."""
        offer = caller.offer
        if offer is None or offer.ringing or caller.id not in self.callers:
            return []
        if offer.pending:
            actions = self._ring_next_pending(self.queues[caller.queue], caller, now)
            if offer.ringing:
                return actions
        caller.offer = None
        return []

    def _cancel_offer(self, caller: Caller, now: float, reason: str) -> list[Action]:
        """Cancel everyone still ringing for this caller (one CancelOffer action)."""
        offer = caller.offer
        if offer is None:
            return []
        qs = self.queues[caller.queue]
        names = tuple(offer.ringing)
        for name in names:
            self._end_ring(qs, caller, self.agents[name], OfferOutcome.CANCELLED, now)
        offer.pending.clear()
        caller.offer = None
        return [CancelOffer(caller.id, names, reason)] if names else []

    def _cancel_agent_offer(self, a: Agent, now: float, reason: str) -> list[Action]:
        """Withdraw one agent from the offer it is ringing for (logout/removal); the caller keeps waiting."""
        caller = self.callers[a.offering]  # type: ignore[index]
        qs = self.queues[caller.queue]
        self._end_ring(qs, caller, a, OfferOutcome.CANCELLED, now)
        return [CancelOffer(caller.id, (a.name,), reason)] + self._after_attempt(caller, now)

    def _unqueue(self, qs: QueueState, caller: Caller) -> None:
        qs.callers.remove(caller)
        key = caller.skill_key
        qs.skill_keys[key] -= 1
        if not qs.skill_keys[key]:
            del qs.skill_keys[key]
            ix = qs.skill_index.pop(key, None)
            if ix is not None:          # the last caller with it left: a spare, the most recent one
                qs.skill_index[key] = ix
                self._trim_skill_indexes(qs)

    def _trim_skill_indexes(self, qs: QueueState) -> None:
        """Keep at most ``SPARE_SKILL_INDEXES`` requirement indexes no waiting caller needs: drop the least
        recently emptied (the dict keeps them in that order). O(requirement indexes of the queue)."""
        kept = qs.skill_index
        spare = [k for k in kept if k not in qs.skill_keys]
        for k in spare[:max(0, len(spare) - SPARE_SKILL_INDEXES)]:
            del kept[k]

    def _finish(self, qs: QueueState, caller: Caller, outcome: CallerOutcome) -> None:
        assert caller.outcome is None and caller.offer is None
        caller.outcome = outcome
        self._unqueue(qs, caller)
        del self.callers[caller.id]

    def _exit_timeout(self, qs: QueueState, caller: Caller, now: float, pos: int) -> list[Action]:
        wait = now - caller.joined_at
        actions = self._cancel_offer(caller, now, "timeout")
        self._qlog(now, caller.id, qs.name, "NONE", "EXITWITHTIMEOUT", str(pos), str(caller.orig_position),
                   str(int(wait)))
        if qs.config.overflow:
            self._finish(qs, caller, CallerOutcome.OVERFLOWED)
            qs.stats.overflowed += 1
            actions.append(Overflow(caller.id, qs.name, qs.config.overflow, "timeout"))
        else:
            self._finish(qs, caller, CallerOutcome.TIMED_OUT)
            qs.stats.timed_out += 1
            actions.append(Timeout(caller.id, qs.name, wait))
        return actions

    def _outcome_empty(self, qs: QueueState, caller: Caller, reason: str) -> Action:
        if qs.config.overflow:
            caller.outcome = CallerOutcome.OVERFLOWED
            qs.stats.overflowed += 1
            return Overflow(caller.id, qs.name, qs.config.overflow, "empty")
        caller.outcome = CallerOutcome.LEFT_EMPTY
        qs.stats.left_empty += 1
        return LeftEmpty(caller.id, qs.name, reason)

    def _leave_empty(self, qs: QueueState, caller: Caller, now: float, reason: str) -> list[Action]:
        pos = qs.position(caller)
        actions = self._cancel_offer(caller, now, "empty")
        self._qlog(now, caller.id, qs.name, "NONE", "EXITEMPTY", str(pos), str(caller.orig_position),
                   str(int(now - caller.joined_at)))
        self._unqueue(qs, caller)
        del self.callers[caller.id]
        actions.append(self._outcome_empty(qs, caller, reason))
        return actions

    def _check_empty(self, qs: QueueState, now: float) -> list[Action]:
        if not (qs.config.leave_when_empty and qs.callers) or qs.staffed():
            return []
        actions: list[Action] = []
        for caller in list(qs.callers):
            actions += self._leave_empty(qs, caller, now, "leave_empty")
        return actions


def _indexes(qs: QueueState) -> list[FreeIndex]:
    """Every index the engine keeps for a queue: its free index and its requirement indexes."""
    out = list(qs.skill_index.values())
    if qs.index is not None:
        out.append(qs.index)
    return out
