"""Distribution strategies: small pure functions ``(queue_state, caller, now) -> ordered agent names``.

Each strategy orders the candidates ``QueueState.candidates`` returns (free members having the caller's
skills, lowest level only), so eligibility lives in one place. Ring-all returns every candidate to ring at
once; for the others the engine rings the first name (ring-progressively: the first, then one more per step).

With ``first_only=True`` (the engine passes it for the strategies that ring one agent) a strategy returns
just that first name, read from the queue's free index (``QueueState.index``, kept by the engine in the
order ``INDEX_KIND`` names for the strategy; level first): the first entry (top-down, longest-idle,
fewest-calls, least-talk-time), a bisect past the rotation pivot (linear, round-robin), one uniform draw over
the lowest level's entries (random) or one Fenwick descent over its weights (weighted-random) -- O(log n) for
a caller without required skills. A caller with required skills walks the index in order and stops at the
first match (skills-based scores the lowest matching level). Without a matching index (right after a
strategy change) the strategies scan ``free`` and ``min()`` over the same key; either way the name is the
full order's head, as every key ends in the unique member order.

The only state they touch is read-only except the queue's seeded RNG, so the live ACD and a simulator get
identical decisions from identical inputs. Names follow FreeSWITCH mod_callcenter / Asterisk app_queue so
migrating users recognise them.
"""

from __future__ import annotations

import bisect
from operator import itemgetter
from typing import Callable

from .model import Caller, FreeIndex, Member, QueueState

__all__ = ["INDEX_KIND", "STRATEGIES", "RING_ALL", "RING_PROGRESSIVELY", "Strategy", "canonical_name",
           "get_strategy"]

Strategy = Callable[..., list[str]]   # (qs, caller, now, *, first_only=False) -> ordered names

RING_ALL = "ring-all"
RING_PROGRESSIVELY = "ring-progressively"


_name_of = itemgetter(-1)     # an index entry's member name


def _order(m: Member) -> int:
    return m.order


def _names(cands: list[Member]) -> list[str]:
    return [m.agent for m in cands]


def _first(cands: list[Member], key: Callable[[Member], object]) -> list[str]:
    return [min(cands, key=key).agent] if cands else []


def _ordered(cands: list[Member], key: Callable[[Member], object], first_only: bool = False) -> list[str]:
    """Candidates by ``key``; with ``first_only`` just the first (min(): the sort's pick, without the sort)."""
    if first_only:
        return _first(cands, key)
    cands.sort(key=key)
    return _names(cands)


def _first_match(qs: QueueState, ix: FreeIndex, required: dict[str, int]) -> int:
    """Position of the first index entry whose agent has the required skills (-1: none): the pick at the
    lowest level that has a match, for an index ordered by the strategy's key."""
    entries, head = ix.entries, ix.head
    if not required:
        return head if head < len(entries) else -1
    members = qs.members
    for i in range(head, len(entries)):
        if members[entries[i][-1]].ref.has_skills(required):  # type: ignore[index]
            return i
    return -1


def _by_index(qs: QueueState, caller: Caller, now: float, kind: str, key: Callable[[Member], object],
              first_only: bool) -> list[str]:
    """Candidates ordered by ``key``, which the ``kind`` index orders by within a level."""
    ix = qs.indexed(kind)
    if ix is None:
        return _ordered(qs.candidates(caller, now), key, first_only)
    if first_only:
        i = _first_match(qs, ix, caller.skills)
        return [ix.entries[i][-1]] if i >= 0 else []
    return _names(qs.candidates(caller, now))      # already in index (= key) order


def _rotate(qs: QueueState, caller: Caller, now: float, last: str | None, first_only: bool) -> list[str]:
    """The first candidate in member order after ``last`` (wrapping round), from the order index."""
    ix = qs.indexed("order")
    if ix is None or not first_only:
        return _rotate_after(qs, qs.candidates(caller, now), last, first_only)
    required = caller.skills
    i = _first_match(qs, ix, required)
    if i < 0:
        return []
    entries = ix.entries
    if last is None or last not in qs.members:
        return [entries[i][-1]]
    level = entries[i][0]
    hi = ix.level_end(level, i)
    j = bisect.bisect_left(entries, (level, qs.members[last].order + 1), i, hi)   # first order > pivot
    if not required:
        return [entries[j if j < hi else i][-1]]
    members = qs.members
    for k in range(j, hi):
        if members[entries[k][-1]].ref.has_skills(required):
            return [entries[k][-1]]
    return [entries[i][-1]]


def _rotate_after(qs: QueueState, cands: list[Member], last: str | None,
                  first_only: bool = False) -> list[str]:
    """Candidates in member order, starting just after ``last`` (wrapping round)."""
    if first_only:
        if not cands:
            return []
        if last is not None and last in qs.members:
            pivot = qs.members[last].order
            after = [m for m in cands if m.order > pivot]
            if after:
                return _first(after, _order)
        return _first(cands, _order)
    cands.sort(key=_order)
    if last is None or last not in qs.members:
        return _names(cands)
    pivot = qs.members[last].order
    return _names([m for m in cands if m.order > pivot] + [m for m in cands if m.order <= pivot])


def _all_in_order(qs: QueueState, caller: Caller, now: float) -> list[str]:
    """Every candidate in member order (names straight from the order index when it is there)."""
    ix = qs.indexed("order")
    if ix is not None and not caller.skills:
        entries, head = ix.entries, ix.head
        if head == len(entries):
            return []
        return list(map(_name_of, entries[head:ix.level_end(entries[head][0])]))  # type: ignore[index]
    return _ordered(qs.candidates(caller, now), _order)


def ring_all(qs: QueueState, caller: Caller, now: float, *, first_only: bool = False) -> list[str]:
    """Everyone free at the best level rings at once; the first to answer takes the call."""
    return _all_in_order(qs, caller, now)


def top_down(qs: QueueState, caller: Caller, now: float, *, first_only: bool = False) -> list[str]:
    """Fixed order: always start from the first member (FreeSWITCH top-down)."""
    return _by_index(qs, caller, now, "order", _order, first_only)


def linear(qs: QueueState, caller: Caller, now: float, *, first_only: bool = False) -> list[str]:
    """Member order, continuing after the agent last tried for this caller."""
    return _rotate(qs, caller, now, caller.last_tried, first_only)


def round_robin(qs: QueueState, caller: Caller, now: float, *, first_only: bool = False) -> list[str]:
    """Member order, continuing after the agent last offered any caller of this queue (rrmemory)."""
    return _rotate(qs, caller, now, qs.rr_last, first_only)


def _idle_key(m: Member) -> tuple[float, int]:
    return (m.ref.idle_since, m.order)


def longest_idle(qs: QueueState, caller: Caller, now: float, *, first_only: bool = False) -> list[str]:
    """Agent whose last call ended (or who logged in) longest ago first — across all queues."""
    return _by_index(qs, caller, now, "idle", _idle_key, first_only)


def _calls_key(m: Member) -> tuple[int, float, int]:
    return (m.calls, m.ref.idle_since, m.order)


def fewest_calls(qs: QueueState, caller: Caller, now: float, *, first_only: bool = False) -> list[str]:
    """Fewest calls answered in this queue first, then longest idle."""
    return _by_index(qs, caller, now, "calls", _calls_key, first_only)


def _talk_key(m: Member) -> tuple[float, float, int]:
    return (m.ref.talk_time_s, m.ref.idle_since, m.order)


def least_talk_time(qs: QueueState, caller: Caller, now: float, *, first_only: bool = False) -> list[str]:
    """Least total talk time (all queues) first, then longest idle."""
    return _by_index(qs, caller, now, "talk", _talk_key, first_only)


DRAWS = 32    # random strategies, caller with required skills: draws over the level before scanning it


def _tree_draw(rng, tree) -> str:
    """One weight-proportional draw from a level's weight tree (it has a positive weight): the same draw as
    ``_weighted_pick`` over that level's free members in member order."""
    slot = tree.find(rng.random() * tree.total())
    vals = tree.vals
    if slot >= len(vals) or vals[slot] <= 0:     # r rounded up to the total: the last positive slot
        slot = max(s for s, v in enumerate(vals) if v > 0)
    return tree.names[slot]


def _weighted_pick(rng, cands: list[Member]) -> Member:
    """One weight-proportional draw over members in member order: ``u = rng.random() * total``, the first
    whose running weight sum exceeds ``u`` (weight <= 0 never, unless nobody has a positive weight: then
    ``rng.randrange(k)`` uniformly). The distribution of Efraimidis-Spirakis' first key."""
    pos = [m for m in cands if m.weight > 0]
    if not pos:
        return cands[rng.randrange(len(cands))]
    r = rng.random() * sum(float(m.weight) for m in pos)
    acc = 0.0
    for m in pos:
        acc += m.weight
        if acc > r:
            return m
    return pos[-1]        # r rounded up to the total


def _random_first(qs: QueueState, caller: Caller, now: float, weighted: bool) -> str | None:
    """The first name of random / weighted-random. Level L is the lowest level with a free candidate; a draw
    picks one of L's free members in member order, uniformly (random, or weighted-random when nobody at L
    has a positive weight) or in proportion to weight (``_weighted_pick``). A caller without required
    skills takes the one draw. With required skills: up to ``DRAWS`` draws, the first that has the skills
    (rejection sampling: uniform / weight-proportional among L's matching members); if all miss, one draw
    among L's matching members. From the free index (order; weight trees) a draw is O(log n) and L is found
    by walking the index to the first match; without it, the same draws over a scan of ``free``."""
    rng, required, members = qs.rng, caller.skills, qs.members
    ix = qs.indexed("weight" if weighted else "order")
    if ix is not None:
        i = _first_match(qs, ix, required)
        if i < 0:
            return None
        entries = ix.entries
        level = entries[i][0]  # type: ignore[index]
        lo = bisect.bisect_left(entries, (level,), ix.head, i)  # type: ignore[arg-type]
        hi = ix.level_end(level, i)
        tree = ix.trees[level] if weighted else None

        def draw() -> str:
            if tree is not None and tree.npos:
                return _tree_draw(rng, tree)
            return entries[lo + rng.randrange(hi - lo)][-1]  # type: ignore[index]

        def block() -> list[Member]:
            return [members[e[-1]] for e in entries[lo:hi]]  # type: ignore[index]
    else:
        cands = qs.candidates(caller, now)
        if not cands:
            return None
        level = cands[0].level
        blk = sorted((m for n in qs.free if (m := members[n]).level == level), key=_order)

        def draw() -> str:
            return (_weighted_pick(rng, blk) if weighted else blk[rng.randrange(len(blk))]).agent

        def block() -> list[Member]:
            return blk
    if not required:
        return draw()
    for _ in range(DRAWS):
        name = draw()
        if members[name].ref.has_skills(required):
            return name
    matching = [m for m in block() if m.ref.has_skills(required)]
    return (_weighted_pick(rng, matching) if weighted else matching[rng.randrange(len(matching))]).agent


def random_order(qs: QueueState, caller: Caller, now: float, *, first_only: bool = False) -> list[str]:
    """Uniform random order from the queue's seeded RNG (deterministic for a given seed and history).

    The first name is ``_random_first`` (one uniform draw over the lowest level's candidates; O(log n) from
    the free index); the full order shuffles the other candidates after it: a uniform permutation."""
    first = _random_first(qs, caller, now, weighted=False)
    if first is None:
        return []
    if first_only:
        return [first]
    rest = [n for n in _names(sorted(qs.candidates(caller, now), key=_order)) if n != first]
    qs.rng.shuffle(rest)
    return [first] + rest


def weighted_random(qs: QueueState, caller: Caller, now: float, *, first_only: bool = False) -> list[str]:
    """Random order biased by member weight; weight <= 0 goes last.

    The first name is one weight-proportional draw (``_random_first``; without required skills one Fenwick
    descent over the lowest level's weights, O(log n)); the full order ranks the other candidates after it
    by Efraimidis-Spirakis keys u^(1/w) (successive weighted sampling without replacement)."""
    first = _random_first(qs, caller, now, weighted=True)
    if first is None:
        return []
    if first_only:
        return [first]
    rnd = qs.rng.random
    keyed = []
    for m in sorted(qs.candidates(caller, now), key=_order):
        if m.agent != first:
            u = rnd()
            keyed.append((u ** (1.0 / m.weight) if m.weight > 0 else u - 1.0, m.agent))
    keyed.sort(key=lambda k: -k[0])
    return [first] + [name for _, name in keyed]


def ring_progressively(qs: QueueState, caller: Caller, now: float, *, first_only: bool = False) -> list[str]:
    """Member order; the engine rings the first and adds the next every ``progressive_step_s``."""
    return _all_in_order(qs, caller, now)


def skills_based(qs: QueueState, caller: Caller, now: float, *, first_only: bool = False) -> list[str]:
    """Best skill match first (highest summed level over the required skills), then longest idle.

    Without required skills every agent scores 0 and this is longest-idle (its index, O(1)); with them the
    matching agents of the lowest matching level are scored (a scan of that level)."""
    required = caller.skills
    if not required:
        return _by_index(qs, caller, now, "idle", _idle_key, first_only)
    cands = qs.candidates(caller, now)

    def key(m: Member) -> tuple[int, float, int]:
        skills = m.ref.config.skills
        return (-sum(skills.get(s, 0) for s in required), m.ref.idle_since, m.order)

    return _ordered(cands, key, first_only)


# The order of the free index each strategy reads (``FreeIndex``); the engine keeps the queue's index in it.
INDEX_KIND: dict[str, str] = {
    RING_ALL: "order", "top-down": "order", "linear": "order", "round-robin": "order",
    "longest-idle-agent": "idle", "fewest-calls": "calls", "least-talk-time": "talk", "random": "order",
    "weighted-random": "weight", RING_PROGRESSIVELY: "order", "skills-based": "idle",
}

STRATEGIES: dict[str, Strategy] = {
    RING_ALL: ring_all,
    "top-down": top_down,
    "linear": linear,
    "round-robin": round_robin,
    "longest-idle-agent": longest_idle,
    "fewest-calls": fewest_calls,
    "least-talk-time": least_talk_time,
    "random": random_order,
    "weighted-random": weighted_random,
    RING_PROGRESSIVELY: ring_progressively,
    "skills-based": skills_based,
}

_ALIASES = {
    "ringall": RING_ALL, "rrmemory": "round-robin", "leastrecent": "longest-idle-agent",
    "fewestcalls": "fewest-calls", "sequentially-by-agent-order": "top-down",
    "agent-with-least-talk-time": "least-talk-time", "agent-with-fewest-calls": "fewest-calls",
    "wrandom": "weighted-random", "sequential": "linear",
}


def get_strategy(name: str) -> Strategy:
    """Look a strategy up by our name or a FreeSWITCH/Asterisk alias; KeyError names the valid ones."""
    key = _ALIASES.get(name, name)
    try:
        return STRATEGIES[key]
    except KeyError:
        raise KeyError(f"unknown ACD strategy {name!r}; known: {', '.join(STRATEGIES)}") from None


def canonical_name(name: str) -> str:
    get_strategy(name)
    return _ALIASES.get(name, name)


