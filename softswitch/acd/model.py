"""ACD data model: queue/agent configuration, live agent/caller state, statistics, queue_log entries.

Plain dataclasses with no I/O so the engine, the strategies and the simulator share one model.
Times are floats in seconds from whatever clock the owner injects (``now``); nothing here reads a clock.
"""

from __future__ import annotations

import bisect
import math
import random
from collections import Counter, deque
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .engine import OfferRecord

__all__ = [
    "AgentConfig", "Agent", "AgentState", "Caller", "CallerOutcome", "FreeIndex", "Member", "QueueConfig",
    "QueueLogEntry", "QueueState", "QueueStats", "OfferOutcome", "WeightTree",
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


class WeightTree:
    """The weights of one level's members for weighted-random: a Fenwick tree over slots in member order
    (a member keeps its slot; its value is its weight while it is free with a weight > 0, else 0), so a
    weight-proportional draw among the level's free members is one O(log n) descent."""

    __slots__ = ("names", "vals", "tree", "npos")

    def __init__(self) -> None:
        self.names: list[str] = []      # slot -> member name (a removed member leaves a 0 slot behind)
        self.vals: list[float] = []     # slot -> current value
        self.tree: list[float] = [0.0]  # Fenwick, 1-based
        self.npos = 0                   # slots with a value > 0: free members with a positive weight

    @classmethod
    def build(cls, names: list[str], vals: list[float]) -> WeightTree:
        """A tree over these slots, in O(n) (each node adds itself into its parent)."""
        t = cls()
        t.names, t.vals = names, vals
        tree = t.tree = [0.0] + vals
        n = len(vals)
        for i in range(1, n + 1):
            j = i + (i & -i)
            if j <= n:
                tree[j] += tree[i]
        t.npos = sum(1 for v in vals if v > 0)
        return t

    def _prefix(self, i: int) -> float:
        """Sum of the first ``i`` slots."""
        tree, s = self.tree, 0.0
        while i > 0:
            s += tree[i]
            i &= i - 1
        return s

    def append(self, name: str) -> int:
        """A new slot (value 0) at the end; returns its index."""
        i = len(self.tree)
        self.tree.append(self._prefix(i - 1) - self._prefix(i - (i & -i)))
        self.names.append(name)
        self.vals.append(0.0)
        return i - 1

    def set(self, slot: int, value: float) -> None:
        old = self.vals[slot]
        if value == old:
            return
        self.npos += (value > 0) - (old > 0)
        self.vals[slot] = value
        delta, tree, i, n = value - old, self.tree, slot + 1, len(self.tree)
        while i < n:
            tree[i] += delta
            i += i & -i

    def total(self) -> float:
        return self._prefix(len(self.vals))

    def find(self, r: float) -> int:
        """The first slot whose running sum exceeds ``r`` (``len(vals)`` if none): zero slots never match."""
        tree, n = self.tree, len(self.vals)
        pos, step = 0, 1 << n.bit_length()
        while step:
            nxt = pos + step
            if nxt <= n and tree[nxt] <= r:
                pos = nxt
                r -= tree[nxt]
            step >>= 1
        return pos


_KEYS = ("order", "weight", "idle", "calls", "talk", "score")


class FreeIndex:
    """A queue's free members ordered for its strategy; written only by the engine (``Acd``), read by the
    strategies. ``qs.free`` stays the source of truth; this is a derived view that agrees with it
    (``Acd.check_invariants`` asserts it).

    ``entries[head:]`` is a sorted list of tuples ``(level, *key, order, name)``, level first, so
    ``entries[head]`` is the strategy's pick at the lowest free level and that level's members are
    ``entries[head:level_end(level)]``:

    - ``order`` (top-down, linear, round-robin, random, ring-all, ring-progressively): ``(level, order, name)``
    - ``weight`` (weighted-random): as ``order``, plus one ``WeightTree`` per level
    - ``idle`` (longest-idle-agent, skills-based): ``(level, idle_since, order, name)``
    - ``calls`` (fewest-calls): ``(level, calls in this queue, idle_since, order, name)``
    - ``talk`` (least-talk-time): ``(level, talk_time_s, idle_since, order, name)``
    - ``score`` (skills-based, requirement indexes only): ``(level, -summed skill level over the required
      skills, idle_since, order, name)``

    A *requirement index* (``required`` set: one per distinct skill requirement of the queue's waiting
    callers, ``QueueState.skill_index``) files only the members whose agent has the required skills (agent
    skills are fixed while the agent exists), so its first entry is the strategy's pick for such a caller and
    every entry of its lowest level is a candidate; its weight trees hold only those members' slots.
    ``add_member``/``add`` ignore a member without the skills, so the engine makes the same calls on every
    index of a queue.

    The member order is unique in a queue, so names are never compared. Insert and delete are a bisect and a
    list insert/delete (a memmove): microseconds at 10,000 entries. Slots before ``head`` are a gap: taking
    the first entry (the agent just offered; ring-all takes a whole level in order) or filing one before it
    moves ``head`` instead of the whole list. ``entry_of`` remembers the entry each free member was filed
    under, so a key that moved is found and refiled (``rekey``)."""

    __slots__ = ("kind", "required", "entries", "head", "entry_of", "trees", "slot_of")

    def __init__(self, kind: str, required: dict[str, int] | None = None) -> None:
        if kind not in _KEYS:
            raise ValueError(f"unknown index kind {kind!r}")
        if kind == "score" and not required:
            raise ValueError("a score index needs the required skills")
        self.kind = kind
        self.required: dict[str, int] | None = dict(required) if required else None
        self.entries: list[tuple | None] = []
        self.head = 0
        self.entry_of: dict[str, tuple] = {}
        self.trees: dict[int, WeightTree] = {}              # weight: level -> tree
        self.slot_of: dict[str, tuple[int, int]] = {}       # weight: member -> (level, slot)

    @classmethod
    def build(cls, kind: str, members: dict[str, Member], free: set[str],
              required: dict[str, int] | None = None) -> FreeIndex:
        """O(free log free) for the entries; a weight index also gives every member (with the skills) a slot,
        O(members); a requirement index tests the skills of the members it may file (free ones, or all for
        weight trees)."""
        ix = cls(kind, required)
        if required:    # only weight trees need the members that are not free; member order is kinder to
            # the memory caches than the free set's hash order
            members = _having(members if kind == "weight" else {n: m for n, m in members.items() if n in free},
                              required)
            free = {n for n in free if n in members}
        entries = sorted(ix.entry(members[n]) for n in free)
        ix.entries = entries
        ix.entry_of = {e[-1]: e for e in entries}
        if kind == "weight":            # each level's slots in member order, valued while free
            by_level: dict[int, list[Member]] = {}
            for m in sorted(members.values(), key=_member_order):
                by_level.setdefault(m.level, []).append(m)
            for level, ms in by_level.items():
                ix.trees[level] = WeightTree.build(
                    [m.agent for m in ms], [float(m.weight) if m.weight > 0 and m.agent in free else 0.0 for m in ms])
                for slot, m in enumerate(ms):
                    ix.slot_of[m.agent] = (level, slot)
        return ix

    def matches(self, m: Member) -> bool:
        """Is ``m`` filed here when free (a requirement index: its agent has the required skills)?"""
        required = self.required
        return required is None or m.ref.has_skills(required)

    def entry(self, m: Member) -> tuple:
        kind = self.kind
        if kind == "order" or kind == "weight":
            return (m.level, m.order, m.agent)
        a = m.ref
        if kind == "idle":
            return (m.level, a.idle_since, m.order, m.agent)
        if kind == "calls":
            return (m.level, m.calls, a.idle_since, m.order, m.agent)
        if kind == "talk":
            return (m.level, a.talk_time_s, a.idle_since, m.order, m.agent)
        skills = a.config.skills
        return (m.level, -sum(skills.get(s, 0) for s in self.required), a.idle_since,  # type: ignore[union-attr]
                m.order, m.agent)

    def __len__(self) -> int:
        return len(self.entries) - self.head

    def level_end(self, level: int, lo: int = 0) -> int:
        """Position just past the entries of ``level`` (every key component is finite)."""
        return bisect.bisect_left(self.entries, (level, math.inf), max(lo, self.head))  # type: ignore[arg-type]

    def lowest_level(self) -> tuple[int, int]:
        """``(lo, hi)``: the positions of the lowest level's entries (``lo == hi`` when empty)."""
        entries, head = self.entries, self.head
        if head == len(entries):
            return head, head
        return head, self.level_end(entries[head][0], head)  # type: ignore[index]

    # ---- writes (engine only)

    def add_member(self, m: Member) -> None:
        """A new member of the queue (free or not): weighted-random gives it the next slot of its level."""
        if self.kind == "weight" and self.matches(m):
            tree = self.trees.get(m.level)
            if tree is None:
                tree = self.trees[m.level] = WeightTree()
            self.slot_of[m.agent] = (m.level, tree.append(m.agent))

    def remove_member(self, name: str) -> None:
        self.discard(name)
        self.slot_of.pop(name, None)      # its slot stays behind at 0

    def _weigh(self, m: Member, free: bool) -> None:
        level, slot = self.slot_of[m.agent]
        self.trees[level].set(slot, float(m.weight) if free and m.weight > 0 else 0.0)

    def add(self, m: Member) -> None:
        """The member became free (a requirement index ignores a member without the skills)."""
        if m.agent in self.entry_of:
            self.rekey(m)
            return
        if self.required is not None and not m.ref.has_skills(self.required):
            return
        e = self.entry(m)
        entries, head = self.entries, self.head
        i = bisect.bisect_left(entries, e, head)  # type: ignore[arg-type]
        if i == head and head:
            self.head = head = head - 1
            entries[head] = e
        else:
            entries.insert(i, e)
        self.entry_of[m.agent] = e
        if self.kind == "weight":
            self._weigh(m, True)

    def discard(self, name: str) -> None:
        """The member is no longer free (or no longer a member); no-op if it was not filed."""
        e = self.entry_of.pop(name, None)
        if e is None:
            return
        entries, head = self.entries, self.head
        i = bisect.bisect_left(entries, e, head)  # type: ignore[arg-type]
        assert entries[i] == e
        if i == head:
            entries[i] = None
            self.head = head = head + 1
            if head >= 64 and 2 * head >= len(entries):   # amortised O(1): drop the gap
                del entries[:head]
                self.head = 0
        else:
            del entries[i]
        if self.kind == "weight" and name in self.slot_of:
            level, slot = self.slot_of[name]
            self.trees[level].set(slot, 0.0)

    def rekey(self, m: Member) -> None:
        """Refile a free member whose key fields moved while it stayed free (level changes: rebuild)."""
        old = self.entry_of.get(m.agent)
        if old is not None and old != self.entry(m):
            self.discard(m.agent)
            self.add(m)

    # ---- checks

    def check(self, members: dict[str, Member], free: set[str]) -> None:
        """AssertionError unless this index files exactly the free members (a requirement index: those with
        the required skills), under their current keys -- recomputed from scratch."""
        if self.required is not None:
            members = {n: m for n, m in members.items() if m.ref.has_skills(self.required)}
            free = {n for n in free if n in members}
        assert all(e is None for e in self.entries[:self.head])
        entries = self.entries[self.head:]
        assert all(a < b for a, b in zip(entries, entries[1:])), "index out of order"  # type: ignore[operator]
        assert set(self.entry_of) == free and len(entries) == len(free), (self.kind, len(entries), len(free))
        for e in entries:
            assert e is not None
            m = members[e[-1]]
            assert self.entry_of[m.agent] == e == self.entry(m), (self.kind, e, self.entry(m))
        if self.kind == "weight":
            assert set(self.slot_of) == set(members)
            for name, (level, slot) in self.slot_of.items():
                m = members[name]
                tree = self.trees[level]
                assert m.level == level and tree.names[slot] == name
                want = float(m.weight) if name in free and m.weight > 0 else 0.0
                assert tree.vals[slot] == want, (name, tree.vals[slot], want)
            owned = {(lv, s) for lv, s in self.slot_of.values()}
            for level, tree in self.trees.items():
                running = 0.0
                for slot, v in enumerate(tree.vals):
                    assert v == 0.0 or (level, slot) in owned, (level, slot, v)
                    running += v
                    if slot % 97 == 0 or slot == len(tree.vals) - 1:     # sampled: each prefix is O(log n)
                        assert math.isclose(tree._prefix(slot + 1), running, rel_tol=1e-9, abs_tol=1e-9)
                assert tree.npos == sum(1 for v in tree.vals if v > 0)


def _member_order(m: Member) -> int:
    return m.order


def _having(members: dict[str, Member], required: dict[str, int]) -> dict[str, Member]:
    """The members whose agent has the required skills (``Agent.has_skills``), in one pass."""
    if len(required) == 1:
        ((skill, level),) = required.items()
        return {n: m for n, m in members.items() if m.ref.config.skills.get(skill, -1) >= level}
    return {n: m for n, m in members.items() if m.ref.has_skills(required)}


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
    index: FreeIndex | None = None      # the free members ordered for the strategy (engine-kept, derived)
    # requirement indexes: callers' skill_key -> the free members having those skills, ordered for the
    # strategy (engine-kept, derived, built at the first decision for such a caller; see Acd._skill_index)
    skill_index: dict[tuple[tuple[str, int], ...], FreeIndex] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.config.name

    def indexed(self, kind: str, caller: Caller | None = None) -> FreeIndex | None:
        """The index a strategy ordered by ``kind`` reads for ``caller`` (an ``order`` reader accepts a
        ``weight`` index), or None:

        - no caller, or a caller without required skills: the queue's free index;
        - a caller with required skills: the requirement index of its ``skill_key``, whose entries all have
          the skills, if the engine keeps one (``skill_index``).

        None if that index is missing or ordered otherwise (after a strategy change the engine rebuilds the
        indexes at its next dispatch): the strategies then scan ``candidates``."""
        if caller is not None and caller.skills:
            ix = self.skill_index_for(caller)
        else:
            ix = self.index
        if ix is not None and (ix.kind == kind or (kind == "order" and ix.kind == "weight")):
            return ix
        return None

    def skill_index_for(self, caller: Caller) -> FreeIndex | None:
        """The requirement index for a caller with required skills (any kind), if kept."""
        ix = self.skill_index.get(caller.skill_key) if caller.skill_key else None
        if ix is not None and ix.required == caller.skills:     # a hand-made Caller may carry a stale key
            return ix
        return None

    def candidates(self, caller: Caller, now: float) -> list[Member]:
        """Free members with the caller's skills, restricted to the lowest level present.

        The engine keeps ``free`` (and the ordered indexes) as indexes, and only events make an agent
        unavailable (time only frees), so they never hold an unavailable agent (``Acd.check_invariants``
        asserts it) and availability is not re-tested here. From an index the result comes in that index's
        order and costs O(that level's free candidates): the caller's requirement index if there is one, else
        the free index (a caller with required skills: plus the entries skipped before the first match);
        without either, O(free members) in no particular order."""
        members, required = self.members, caller.skills
        ix = self.skill_index_for(caller) if required else None
        if ix is not None:
            lo, hi = ix.lowest_level()
            return [members[e[-1]] for e in ix.entries[lo:hi]]  # type: ignore[index]
        ix = self.index
        if ix is not None:
            entries, head = ix.entries, ix.head
            if not required:
                if head == len(entries):
                    return []
                return [members[e[-1]] for e in entries[head:ix.level_end(entries[head][0])]]  # type: ignore
            for i in range(head, len(entries)):
                e = entries[i]
                if members[e[-1]].ref.has_skills(required):  # type: ignore[index]
                    out = [members[e[-1]]]  # type: ignore[index]
                    for e2 in entries[i + 1:ix.level_end(e[0], i + 1)]:  # type: ignore[index]
                        m = members[e2[-1]]  # type: ignore[index]
                        if m.ref.has_skills(required):
                            out.append(m)
                    return out
            return []
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
