"""ACD data model: queue/agent configuration, live agent/caller state, statistics, queue_log entries.

Plain dataclasses with no I/O so the engine, the strategies and the simulator share one model.
Times are floats in seconds from whatever clock the owner injects (``now``); nothing here reads a clock.
"""

from __future__ import annotations

import random
from collections import Counter, deque
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .engine import OfferRecord

__all__ = [
    "AgentConfig", "Agent", "AgentState", "Caller", "CallerOutcome", "Member", "QueueConfig",
    "QueueLogEntry", "QueueState", "QueueStats", "OfferOutcome",
]


@dataclass
class QueueConfig:
    """One queue's settings; changeable at run time (``Acd.update_queue``) without losing state."""

    name: str
    strategy: str = "longest-idle-agent"
    ring_timeout_s: float = 15.0        # per offer attempt (per agent for ring-progressively)
    max_wait_s: float = 0.0             # 0 = wait forever; else timeout / overflow
    max_len: int = 0                    # 0 = unlimited; else callers beyond it are refused ("full")
    wrap_up_s: float = 0.0              # queue-level wrap-up; an agent's own value overrides it
    join_empty: bool = True             # may callers join when no member is staffed?
    leave_when_empty: bool = False      # do waiting callers leave when the last member goes?
    service_level_s: float = 20.0       # SL threshold: answered within this many seconds
    weight: int = 0                     # higher weight queues are served first by shared agents
    progressive_step_s: float = 10.0    # ring-progressively: add the next agent every step
    # announcements (the media layer decides what to play; we only say when and what numbers)
    announce_frequency_s: float = 0.0   # 0 = no periodic position/EWT announcement
    announce_position: bool = True
    announce_ewt: bool = True
    default_handle_time_s: float = 180.0  # EWT before any call has been handled
    moh: str = ""                       # music-on-hold class/file, opaque to the core
    overflow: str = ""                  # destination on timeout/full/empty ("" = none), opaque string


@dataclass
class AgentConfig:
    """A human bound to a SIP user; ``queues`` maps queue name -> level (lower level is tried first)."""

    name: str
    queues: dict[str, int] = field(default_factory=dict)
    skills: dict[str, int] = field(default_factory=dict)
    wrap_up_s: float | None = None      # None = use the queue's wrap-up
    max_no_answer: int = 3              # consecutive no-answers before auto-pause; 0 = never
    no_answer_delay_s: float = 5.0      # rest after a no-answer before the next offer
    reject_delay_s: float = 5.0
    busy_delay_s: float = 5.0
    weight: int = 1                     # weighted-random


class AgentState(str, Enum):
    LOGGED_OUT = "logged_out"
    AVAILABLE = "available"
    OFFERING = "offering"
    ON_CALL = "on_call"
    WRAP_UP = "wrap_up"
    PAUSED = "paused"
    BUSY = "busy"          # on a call that did not come from the ACD
    RESTING = "resting"    # short rest after a no-answer/reject/busy


@dataclass(eq=False)
class Agent:
    """Live agent state. Single owner: only the engine mutates it."""

    config: AgentConfig
    logged_in: bool = False
    paused: bool = False
    pause_reason: str = ""
    busy: bool = False                  # on a non-ACD call
    offering: str | None = None         # caller id being offered
    on_call: str | None = None          # caller id connected
    wrap_up_until: float = 0.0
    rest_until: float = 0.0
    idle_since: float = 0.0             # login time or end of last call (longest-idle)
    free: bool = False                  # index flag kept by the engine: may be offered right now
    # statistics
    calls: int = 0
    talk_time_s: float = 0.0
    wrap_up_time_s: float = 0.0
    no_answers: int = 0
    consecutive_no_answers: int = 0
    rejects: int = 0
    call_started_at: float = 0.0

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def skills(self) -> dict[str, int]:
        return self.config.skills

    def is_available(self, now: float) -> bool:
        """Eligible for an offer in any queue: the one rule every strategy relies on."""
        return (self.logged_in and not self.paused and not self.busy and self.offering is None
                and self.on_call is None and self.wrap_up_until <= now and self.rest_until <= now)

    def state(self, now: float) -> AgentState:
        if not self.logged_in:
            return AgentState.LOGGED_OUT
        if self.on_call is not None:
            return AgentState.ON_CALL
        if self.offering is not None:
            return AgentState.OFFERING
        if self.wrap_up_until > now:
            return AgentState.WRAP_UP
        if self.paused:
            return AgentState.PAUSED
        if self.busy:
            return AgentState.BUSY
        if self.rest_until > now:
            return AgentState.RESTING
        return AgentState.AVAILABLE

    def has_skills(self, required: dict[str, int]) -> bool:
        skills = self.config.skills
        for skill, level in required.items():
            if skills.get(skill, -1) < level:
                return False
        return True


@dataclass(eq=False)
class Member:
    """An agent's membership in one queue: per-queue level, configured order and per-queue counters."""

    agent: str
    level: int = 0
    order: int = 0      # insertion order, for top-down/linear/round-robin
    weight: int = 1
    calls: int = 0      # answered in this queue (fewest-calls)
    ref: Agent = field(default=None, repr=False)  # type: ignore[assignment]  # the live agent


class CallerOutcome(str, Enum):
    ANSWERED = "answered"
    ABANDONED = "abandoned"
    TIMED_OUT = "timed_out"
    OVERFLOWED = "overflowed"
    LEFT_EMPTY = "left_empty"


class OfferOutcome(str, Enum):
    ANSWERED = "answered"
    NO_ANSWER = "no_answer"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


@dataclass(eq=False)
class Caller:
    """A caller waiting in (or connected from) a queue."""

    id: str
    queue: str
    priority: int = 0                   # higher first (VIP set by the IVR)
    skills: dict[str, int] = field(default_factory=dict)   # required skill -> minimum level
    skill_key: tuple[tuple[str, int], ...] = ()           # hashable copy: dispatch skips repeat misses
    joined_at: float = 0.0
    seq: int = 0                        # join order, tie-break among equal join times
    orig_position: int = 0              # 1-based position at join (queue_log origposition)
    next_announce_at: float = 0.0
    last_tried: str | None = None       # last agent offered this caller (linear)
    offer: OfferRecord | None = None
    agent: str | None = None            # connected agent
    connected_at: float = 0.0
    outcome: CallerOutcome | None = None

    def sort_key(self) -> tuple[int, float, int]:
        """Priority first, then longest waiting."""
        return (-self.priority, self.joined_at, self.seq)


@dataclass
class QueueStats:
    """Per-queue counters. ``offered`` counts every caller that asked to join, refused ones included,
    so offered == answered + abandoned + timed_out + overflowed + left_empty + still waiting
    (a connected caller already counts as answered)."""

    offered: int = 0
    answered: int = 0
    abandoned: int = 0
    timed_out: int = 0
    overflowed: int = 0
    left_empty: int = 0
    completed: int = 0                  # answered calls that have ended
    answered_in_sl: int = 0
    total_answer_wait_s: float = 0.0
    total_handle_s: float = 0.0
    offers: int = 0                     # offer attempts (per agent rung)
    offers_answered: int = 0
    offers_no_answer: int = 0
    offers_rejected: int = 0
    offers_cancelled: int = 0

    @property
    def finished(self) -> int:
        return self.answered + self.abandoned + self.timed_out + self.overflowed + self.left_empty

    @property
    def asa_s(self) -> float:
        return self.total_answer_wait_s / self.answered if self.answered else 0.0

    @property
    def aht_s(self) -> float:
        return self.total_handle_s / self.completed if self.completed else 0.0

    @property
    def service_level_pct(self) -> float:
        """Answered within the threshold, as a share of callers who have left the queue."""
        return 100.0 * self.answered_in_sl / self.finished if self.finished else 100.0


@dataclass(eq=False)
class QueueState:
    """Everything a strategy may look at for one queue (the single state object of DESIGN §1)."""

    config: QueueConfig
    agents: dict[str, Agent]            # shared across queues (one agent, one state)
    members: dict[str, Member] = field(default_factory=dict)
    free: set[str] = field(default_factory=set)   # members whose agent is available now (index)
    callers: list[Caller] = field(default_factory=list)   # waiting/offering, in service order
    skill_keys: Counter[tuple[tuple[str, int], ...]] = field(default_factory=Counter)  # of callers
    rr_last: str | None = None          # round-robin memory: last agent offered in this queue
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    stats: QueueStats = field(default_factory=QueueStats)
    recent_handle_s: deque[float] = field(default_factory=lambda: deque(maxlen=20))
    next_order: int = 0

    @property
    def name(self) -> str:
        return self.config.name

    def candidates(self, caller: Caller, now: float) -> list[Member]:
        """Free members with the caller's skills, restricted to the lowest level present.

        Cost is O(free members), not O(members): the engine keeps ``free`` as an index, and only events
        make an agent unavailable (time only frees), so the index never holds an unavailable agent
        (``Acd.check_invariants`` asserts it) and availability is not re-tested here."""
        members, required = self.members, caller.skills
        if required:
            out = [m for n in self.free if (m := members[n]).ref.has_skills(required)]
        else:
            out = [members[n] for n in self.free]
        if out:
            levels = {m.level for m in out}     # one pass; a single-level queue needs no filtering
            if len(levels) > 1:
                best = min(levels)
                out = [m for m in out if m.level == best]
        return out

    def staffed(self) -> int:
        """Members logged in and not paused (busy or not): the EWT divisor and the 'empty' test."""
        n = 0
        for name in self.members:
            a = self.agents[name]
            if a.logged_in and not a.paused:
                n += 1
        return n

    def position(self, caller: Caller) -> int:
        """1-based position of a waiting caller."""
        return self.callers.index(caller) + 1

    def ewt_s(self, position: int) -> float | None:
        """Estimated wait: position x recent mean handle time / staffed agents (None if nobody staffed)."""
        staffed = self.staffed()
        if not staffed:
            return None
        aht = (sum(self.recent_handle_s) / len(self.recent_handle_s)) if self.recent_handle_s \
            else self.config.default_handle_time_s
        return position * aht / staffed


@dataclass(frozen=True)
class QueueLogEntry:
    """One Asterisk-compatible queue_log line: ``time|callid|queue|agent|event|params``."""

    time: float
    callid: str
    queue: str
    agent: str
    event: str
    params: tuple[str, ...] = ()

    def line(self) -> str:
        return "|".join((str(int(self.time)), self.callid or "NONE", self.queue or "NONE",
                         self.agent or "NONE", self.event, *self.params))
