"""Distribution strategies: small pure functions ``(queue_state, caller, now) -> ordered agent names``.

Each strategy orders the candidates ``QueueState.candidates`` returns (free members having the caller's
skills, lowest level only), so eligibility lives in one place. Ring-all returns every candidate to ring at
once; for the others the engine rings the first name (ring-progressively: the first, then one more per step).

With ``first_only=True`` (the engine passes it for the strategies that ring one agent) a strategy returns
just that first name, read from an index the engine keeps in the order ``INDEX_KIND`` names for the strategy
(level first): the first entry (top-down, longest-idle, fewest-calls, least-talk-time, skills-based), a
bisect past the rotation pivot (linear, round-robin), one uniform draw over the lowest level's entries
(random) or one Fenwick descent over its weights (weighted-random) -- O(log n). A caller without required
skills reads the queue's free index (``QueueState.index``); a caller with required skills reads the
requirement index of its ``skill_key`` (``QueueState.skill_index``: only the free members having those
skills, in the order ``SKILL_INDEX_KIND`` names; for skills-based that is the best summed skill level, then
longest idle), so the same reads apply and no agent is tested for skills. Without a matching index (right
after a strategy change, or a hand-made ``Caller`` whose requirement has none) the strategies scan
``QueueState.candidates`` and ``min()`` over the same key; either way the name is the full order's head, as
every key ends in the unique member order.

The only state they touch is read-only except the queue's seeded RNG, so the live ACD and a simulator get
identical decisions from identical inputs. Names follow FreeSWITCH mod_callcenter / Asterisk app_queue so
migrating users recognise them.
"""

from __future__ import annotations

import bisect
from operator import itemgetter
from typing import Callable

from .model import Caller, FreeIndex, Member, QueueState

__all__ = ["INDEX_KIND", "SKILL_INDEX_KIND", "STRATEGIES", "RING_ALL", "RING_PROGRESSIVELY", "Strategy",
           "canonical_name", "get_strategy"]

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


def _level_names(ix: FreeIndex, first_only: bool) -> list[str]:
    """The lowest level's entries of an index, in its order (``first_only``: just the first)."""
    lo, hi = ix.lowest_level()
    if first_only:
        return [ix.entries[lo][-1]] if lo < hi else []  # type: ignore[index]
    return list(map(_name_of, ix.entries[lo:hi]))  # type: ignore[arg-type]


def _by_index(qs: QueueState, caller: Caller, now: float, kind: str, key: Callable[[Member], object],
              first_only: bool) -> list[str]:
    """Candidates ordered by ``key``, which the ``kind`` index (the caller's requirement index, or the free
    index) orders by within a level; without one, a scan of the candidates."""
    ix = qs.indexed(kind, caller)
    if ix is None:
        return _ordered(qs.candidates(caller, now), key, first_only)
    return _level_names(ix, first_only)


def _rotate(qs: QueueState, caller: Caller, now: float, last: str | None, first_only: bool) -> list[str]:
    """The first candidate in member order after ``last`` (wrapping round), from the order index."""
    ix = qs.indexed("order", caller)
    if ix is None or not first_only:
        return _rotate_after(qs, qs.candidates(caller, now), last, first_only)
    lo, hi = ix.lowest_level()
    if lo == hi:
        return []
    entries = ix.entries
    if last is None or last not in qs.members:
        return [entries[lo][-1]]  # type: ignore[index]
    level = entries[lo][0]  # type: ignore[index]
    j = bisect.bisect_left(entries, (level, qs.members[last].order + 1), lo, hi)  # type: ignore[arg-type]
    return [entries[j if j < hi else lo][-1]]  # type: ignore[index]


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
    ix = qs.indexed("order", caller)
    if ix is not None:
        return _level_names(ix, False)
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
    """The first name of random / weighted-random: one draw among the candidates (the free members having
    the caller's skills at the lowest level that has one) in member order, uniformly (random, or
    weighted-random when no candidate has a positive weight) or in proportion to weight
    (``_weighted_pick``). From an index (the caller's requirement index, or the free index for a caller
    without required skills; order, or weight with its per-level Fenwick trees) the draw is O(log n); without
    one, the same draw over the sorted candidates."""
    rng = qs.rng
    ix = qs.indexed("weight" if weighted else "order", caller)
    if ix is not None:
        lo, hi = ix.lowest_level()
        if lo == hi:
            return None
        entries = ix.entries
        if weighted:
            tree = ix.trees[entries[lo][0]]  # type: ignore[index]
            if tree.npos:
                return _tree_draw(rng, tree)
        return entries[lo + rng.randrange(hi - lo)][-1]  # type: ignore[index]
    cands = sorted(qs.candidates(caller, now), key=_order)
    if not cands:
        return None
    return (_weighted_pick(rng, cands) if weighted else cands[rng.randrange(len(cands))]).agent


def random_order(qs: QueueState, caller: Caller, now: float, *, first_only: bool = False) -> list[str]:
    """Uniform random order from the queue's seeded RNG (deterministic for a given seed and history).

    The first name is ``_random_first`` (one uniform draw over the lowest level's candidates; O(log n) from
    an index); the full order shuffles the other candidates after it: a uniform permutation."""
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

    The first name is one weight-proportional draw (``_random_first``; from an index one Fenwick descent over
    the lowest level's weights, O(log n)); the full order ranks the other candidates after it
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

    Without required skills every agent scores 0 and this is longest-idle (the free index, O(1)); with them
    the caller's requirement index is ordered by (level, -score, idle time, order): its first entry, O(1)."""
    required = caller.skills
    if not required:
        return _by_index(qs, caller, now, "idle", _idle_key, first_only)

    def key(m: Member) -> tuple[int, float, int]:
        skills = m.ref.config.skills
        return (-sum(skills.get(s, 0) for s in required), m.ref.idle_since, m.order)

    return _by_index(qs, caller, now, "score", key, first_only)


# The order of the free index each strategy reads (``FreeIndex``); the engine keeps the queue's index in it.
INDEX_KIND: dict[str, str] = {
    RING_ALL: "order", "top-down": "order", "linear": "order", "round-robin": "order",
    "longest-idle-agent": "idle", "fewest-calls": "calls", "least-talk-time": "talk", "random": "order",
    "weighted-random": "weight", RING_PROGRESSIVELY: "order", "skills-based": "idle",
}

# The order of each requirement index (a caller with required skills): the same, except skills-based, whose
# key for such a caller starts with the best summed skill level.
SKILL_INDEX_KIND: dict[str, str] = {**INDEX_KIND, "skills-based": "score"}

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


