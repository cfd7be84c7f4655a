"""Distribution strategies: small pure functions ``(queue_state, caller, now) -> ordered agent names``.

Each strategy only orders the candidates ``QueueState.candidates`` returns (free members having the caller's
skills, lowest level only), so eligibility lives in one place and the cost is O(free members).
Ring-all returns every candidate to ring at once; for the others the engine rings the first name (ring-
progressively: the first, then one more per step). With ``first_only=True`` (the engine passes it for the
strategies that ring one agent) a strategy may return just that first name, found with ``min()`` over the
same key instead of a full sort; the name is identical because every key ends in the unique member order.
The only state they touch is read-only except the queue's
seeded RNG, so the live ACD and a simulator get identical decisions from identical inputs.
Names follow FreeSWITCH mod_callcenter / Asterisk app_queue so migrating users recognise them.
"""

from __future__ import annotations

from typing import Callable

from .model import Caller, Member, QueueState

__all__ = ["STRATEGIES", "RING_ALL", "RING_PROGRESSIVELY", "Strategy", "canonical_name", "get_strategy"]

Strategy = Callable[..., list[str]]   # (qs, caller, now, *, first_only=False) -> ordered names

RING_ALL = "ring-all"
RING_PROGRESSIVELY = "ring-progressively"


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


def ring_all(qs: QueueState, caller: Caller, now: float, *, first_only: bool = False) -> list[str]:
    """Everyone free at the best level rings at once; the first to answer takes the call."""
    return _ordered(qs.candidates(caller, now), _order)


def top_down(qs: QueueState, caller: Caller, now: float, *, first_only: bool = False) -> list[str]:
    """Fixed order: always start from the first member (FreeSWITCH top-down)."""
    return _ordered(qs.candidates(caller, now), _order, first_only)


def linear(qs: QueueState, caller: Caller, now: float, *, first_only: bool = False) -> list[str]:
    """Member order, continuing after the agent last tried for this caller."""
    return _rotate_after(qs, qs.candidates(caller, now), caller.last_tried, first_only)


def round_robin(qs: QueueState, caller: Caller, now: float, *, first_only: bool = False) -> list[str]:
    """Member order, continuing after the agent last offered any caller of this queue (rrmemory)."""
    return _rotate_after(qs, qs.candidates(caller, now), qs.rr_last, first_only)


def _idle_key(m: Member) -> tuple[float, int]:
    return (m.ref.idle_since, m.order)


def longest_idle(qs: QueueState, caller: Caller, now: float, *, first_only: bool = False) -> list[str]:
    """Agent whose last call ended (or who logged in) longest ago first — across all queues."""
    return _ordered(qs.candidates(caller, now), _idle_key, first_only)


def _calls_key(m: Member) -> tuple[int, float, int]:
    return (m.calls, m.ref.idle_since, m.order)


def fewest_calls(qs: QueueState, caller: Caller, now: float, *, first_only: bool = False) -> list[str]:
    """Fewest calls answered in this queue first, then longest idle."""
    return _ordered(qs.candidates(caller, now), _calls_key, first_only)


def _talk_key(m: Member) -> tuple[float, float, int]:
    return (m.ref.talk_time_s, m.ref.idle_since, m.order)


def least_talk_time(qs: QueueState, caller: Caller, now: float, *, first_only: bool = False) -> list[str]:
    """Least total talk time (all queues) first, then longest idle."""
    return _ordered(qs.candidates(caller, now), _talk_key, first_only)


def random_order(qs: QueueState, caller: Caller, now: float, *, first_only: bool = False) -> list[str]:
    """Uniform random order from the queue's seeded RNG (deterministic for a given seed and history).

    ``first_only`` is ignored: the full shuffle keeps the RNG stream (and so later choices) unchanged."""
    names = _names(sorted(qs.candidates(caller, now), key=_order))
    qs.rng.shuffle(names)
    return names


def _key0(k: tuple[float, str]) -> float:
    return k[0]


def weighted_random(qs: QueueState, caller: Caller, now: float, *, first_only: bool = False) -> list[str]:
    """Random order biased by member weight (Efraimidis-Spirakis keys u^(1/w)); weight <= 0 goes last."""
    rnd = qs.rng.random
    keyed = []
    for m in sorted(qs.candidates(caller, now), key=_order):
        u = rnd()
        keyed.append((u ** (1.0 / m.weight) if m.weight > 0 else u - 1.0, m.agent))
    if first_only:    # max() keeps the first of equal keys, as the stable sort on -key does
        return [max(keyed, key=_key0)[1]] if keyed else []
    keyed.sort(key=lambda k: -k[0])
    return [name for _, name in keyed]


def ring_progressively(qs: QueueState, caller: Caller, now: float, *, first_only: bool = False) -> list[str]:
    """Member order; the engine rings the first and adds the next every ``progressive_step_s``."""
    return _ordered(qs.candidates(caller, now), _order)


def skills_based(qs: QueueState, caller: Caller, now: float, *, first_only: bool = False) -> list[str]:
    """Best skill match first (highest summed level over the required skills), then longest idle.

    Without required skills every agent scores 0 and this is longest-idle."""
    required = caller.skills
    cands = qs.candidates(caller, now)

    def key(m: Member) -> tuple[int, float, int]:
        skills = m.ref.config.skills
        return (-sum(skills.get(s, 0) for s in required), m.ref.idle_since, m.order)

    return _ordered(cands, key, first_only)


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


