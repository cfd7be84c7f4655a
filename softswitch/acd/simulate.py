"""Discrete-event ACD simulator (issue 5): run a queue configuration against synthetic traffic.

It drives the real sans-IO ``Acd`` engine (same strategies, same dispatch, same accounting as the live
switch) with a simulated clock and a priority queue of future events:

* callers arrive as a Poisson process (``arrival_rate_per_h``) for ``duration_h`` simulated hours;
* each caller brings a handle (talk) time (exponential, lognormal or constant with ``handle_time_s`` mean)
  and a patience (exponential with ``patience_s`` mean, 0 = infinite): a caller still waiting when patience
  runs out abandons (also while an agent rings);
* every agent rung by an ``Offer`` answers after ``ring_delay_s`` unless it does not answer at all (with
  probability ``no_answer_prob``; the engine's ring timeout then fires); an auto-paused agent unpauses after
  ``pause_s``;
* wrap-up, ring timeout, max wait / overflow and the service-level threshold are the engine's own
  ``QueueConfig``; the engine is ticked at its ``next_deadline()``.

After the last arrival the run continues until every caller has left, so each one ends as exactly one of
answered / abandoned / timed out / overflowed / left empty. Random streams are split by purpose and each
caller's handle time and patience are drawn at arrival, so variants of one sweep (``--agents 8,10,12``,
``--strategy a,b``) see the same callers (common random numbers): differences come from the configuration,
not from noise.

Entry points: ``simulate(SimConfig) -> SimResult``, ``sweep(base, variants) -> list[SimResult]``,
``add_simulate_arguments(parser)`` and ``main_simulate(args) -> int`` for ``softswitch acd simulate``.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import math
import random
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace

from .engine import (Acd, AgentPaused, CancelOffer, Connect, LeftEmpty, Offer, Overflow, Timeout)
from .model import AgentConfig, QueueConfig
from .strategies import STRATEGIES, canonical_name

__all__ = ["HANDLE_DISTRIBUTIONS", "SimConfig", "SimError", "SimResult", "add_simulate_arguments",
           "build_parser", "main_simulate", "parse_variants", "simulate", "sweep"]

HANDLE_DISTRIBUTIONS = ("exponential", "lognormal", "constant")
QUEUE = "sim"

# event kinds (ordered so that, at equal times, hang-ups free agents before answers and arrivals)
_HANGUP, _UNPAUSE, _ANSWER, _ABANDON, _ARRIVAL = range(5)


class SimError(ValueError):
    """A bad simulation option; the message names the option and the accepted values."""


@dataclass(frozen=True)
class SimConfig:
    """One simulation run. Times in seconds unless the name says otherwise."""

    strategy: str = "longest-idle-agent"
    agents: int = 10
    arrival_rate_per_h: float = 100.0
    handle_time_s: float = 180.0          # mean talk time
    handle_dist: str = "exponential"      # exponential | lognormal | constant
    handle_cv: float = 1.0                # lognormal coefficient of variation (stddev / mean)
    patience_s: float = 0.0               # mean caller patience (exponential); 0 = never abandons
    duration_h: float = 8.0               # arrivals stop after this many simulated hours
    service_level_s: float = 20.0
    seed: int = 0
    max_wait_s: float = 0.0               # 0 = wait forever
    overflow: str = ""                    # destination on max wait ("" = timed out instead)
    max_len: int = 0                      # 0 = unlimited queue length
    wrap_up_s: float = 0.0
    ring_timeout_s: float = 15.0
    ring_delay_s: float = 3.0             # time an agent takes to answer an offer
    no_answer_prob: float = 0.0           # chance an offered agent does not answer at all
    max_no_answer: int = 3                # consecutive no-answers before the engine auto-pauses (0 = never)
    no_answer_delay_s: float = 5.0        # agent rest after a no-answer (engine AgentConfig)
    pause_s: float = 60.0                 # an auto-paused agent unpauses after this long
    speed_spread: float = 0.0             # agent i's talk times x (1 - s .. 1 + s), spread evenly: with
                                          # identical agents (0) one-at-a-time strategies perform alike

    def validate(self) -> SimConfig:
        """Return a copy with the canonical strategy name; raise SimError naming the bad option."""
        try:
            strategy = canonical_name(self.strategy)
        except KeyError:
            raise SimError(f"--strategy: unknown strategy {self.strategy!r}; known: "
                           f"{', '.join(STRATEGIES)}") from None

        def need(ok: bool, option: str, what: str, value: object) -> None:
            if not ok:
                raise SimError(f"{option}: expected {what}, got {value!r}")

        def finite(x: float) -> bool:
            return isinstance(x, (int, float)) and math.isfinite(x)

        need(isinstance(self.agents, int) and self.agents >= 1, "--agents", "an integer >= 1", self.agents)
        need(finite(self.arrival_rate_per_h) and self.arrival_rate_per_h > 0, "--arrival-rate",
             "calls per hour > 0", self.arrival_rate_per_h)
        need(finite(self.handle_time_s) and self.handle_time_s > 0, "--handle-time", "seconds > 0",
             self.handle_time_s)
        need(self.handle_dist in HANDLE_DISTRIBUTIONS, "--handle-dist",
             f"one of {', '.join(HANDLE_DISTRIBUTIONS)}", self.handle_dist)
        need(finite(self.handle_cv) and self.handle_cv > 0, "--handle-cv", "a number > 0", self.handle_cv)
        need(finite(self.patience_s) and self.patience_s >= 0, "--patience", "seconds >= 0 (0 = infinite)",
             self.patience_s)
        need(finite(self.duration_h) and 0 < self.duration_h <= 24 * 366, "--duration",
             "hours > 0 (at most a year)", self.duration_h)
        need(finite(self.service_level_s) and self.service_level_s >= 0, "--service-level", "seconds >= 0",
             self.service_level_s)
        need(isinstance(self.seed, int), "--seed", "an integer", self.seed)
        need(finite(self.max_wait_s) and self.max_wait_s >= 0, "--max-wait", "seconds >= 0 (0 = forever)",
             self.max_wait_s)
        need(isinstance(self.max_len, int) and self.max_len >= 0, "--max-len", "an integer >= 0",
             self.max_len)
        need(finite(self.wrap_up_s) and self.wrap_up_s >= 0, "--wrap-up", "seconds >= 0", self.wrap_up_s)
        need(finite(self.ring_timeout_s) and self.ring_timeout_s > 0, "--ring-timeout", "seconds > 0",
             self.ring_timeout_s)
        need(finite(self.ring_delay_s) and 0 <= self.ring_delay_s < self.ring_timeout_s, "--ring-delay",
             f"seconds >= 0 and below --ring-timeout ({self.ring_timeout_s:g})", self.ring_delay_s)
        need(finite(self.no_answer_prob) and 0 <= self.no_answer_prob < 1, "--no-answer-prob",
             "a probability in [0, 1)", self.no_answer_prob)
        need(isinstance(self.max_no_answer, int) and self.max_no_answer >= 0, "--max-no-answer",
             "an integer >= 0", self.max_no_answer)
        need(finite(self.no_answer_delay_s) and self.no_answer_delay_s >= 0, "--no-answer-delay",
             "seconds >= 0", self.no_answer_delay_s)
        need(finite(self.pause_s) and self.pause_s > 0, "--pause", "seconds > 0", self.pause_s)
        need(finite(self.speed_spread) and 0 <= self.speed_spread < 1, "--speed-spread", "a number in [0, 1)",
             self.speed_spread)
        return replace(self, strategy=strategy)


@dataclass(frozen=True)
class SimResult:
    """What one run measured. ``sl_pct`` is the engine's definition: answered within the threshold as a
    share of callers who left the queue (abandons count against it)."""

    config: SimConfig
    offered: int
    answered: int
    abandoned: int
    timed_out: int
    overflowed: int
    left_empty: int
    sl_pct: float
    asa_s: float
    aht_s: float              # talk + wrap-up, as the engine counts it
    abandon_pct: float
    occupancy_pct: float      # agent time talking or in wrap-up within the arrival window
    max_queue_len: int
    max_wait_s: float         # longest wait of any caller (answered or not)
    offers: int               # offer attempts (agents rung)
    offers_no_answer: int
    auto_pauses: int
    simulated_s: float        # clock at the end (arrival window plus drain)
    events: int               # simulation events processed (arrivals, answers, hang-ups, ticks ...)

    def to_dict(self) -> dict[str, object]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "config"}
        for k, v in out.items():
            if isinstance(v, float):
                out[k] = round(v, 2)
        return {"config": asdict(self.config), **out}


class _Sim:
    """One run's mutable state: the engine, the event heap and our own bookkeeping of callers/offers."""

    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg
        self.acd = Acd(seed=cfg.seed)
        self.acd.add_queue(QueueConfig(
            QUEUE, strategy=cfg.strategy, ring_timeout_s=cfg.ring_timeout_s, max_wait_s=cfg.max_wait_s,
            max_len=cfg.max_len, wrap_up_s=cfg.wrap_up_s, service_level_s=cfg.service_level_s,
            overflow=cfg.overflow, default_handle_time_s=cfg.handle_time_s))
        self.width = len(str(cfg.agents))
        n = cfg.agents
        self.speed = {self._agent(i): 1.0 - cfg.speed_spread + (2 * cfg.speed_spread * i / (n - 1) if n > 1 else
                                                                cfg.speed_spread) for i in range(n)}
        for i in range(cfg.agents):
            self.acd.add_agent(AgentConfig(self._agent(i), queues={QUEUE: 0}, max_no_answer=cfg.max_no_answer,
                                           no_answer_delay_s=cfg.no_answer_delay_s))
        # separate streams: traffic (arrivals, handle, patience) is identical across variants of a sweep
        self.traffic = random.Random(f"traffic:{cfg.seed}")
        self.agent_rng = random.Random(f"agents:{cfg.seed}")
        self.heap: list[tuple[float, int, int, object]] = []
        self.seq = itertools.count()
        self.calls: dict[str, tuple[float, float]] = {}   # caller id -> (handle time, joined at)
        self.waiting: set[str] = set()                    # in the queue, not yet connected or gone
        self.ring_tokens: dict[tuple[str, str], int] = {}  # (caller, agent) -> token of the live ring
        self.horizon = cfg.duration_h * 3600.0
        self.busy_s = 0.0
        self.max_wait = 0.0
        self.max_queue = 0
        self.auto_pauses = 0
        self.events = 0
        if cfg.handle_dist == "lognormal":
            s2 = math.log1p(cfg.handle_cv ** 2)
            self.ln_mu, self.ln_sigma = math.log(cfg.handle_time_s) - s2 / 2, math.sqrt(s2)

    def _agent(self, i: int) -> str:
        return f"agent{i + 1:0{self.width}d}"

    def push(self, t: float, kind: int, payload: object) -> None:
        heapq.heappush(self.heap, (t, kind, next(self.seq), payload))

    def handle_time(self) -> float:
        cfg = self.cfg
        if cfg.handle_dist == "exponential":
            return self.traffic.expovariate(1.0 / cfg.handle_time_s)
        if cfg.handle_dist == "lognormal":
            return self.traffic.lognormvariate(self.ln_mu, self.ln_sigma)
        return cfg.handle_time_s

    # ------------------------------------------------------------ engine actions -> future events

    def apply(self, actions: list, now: float) -> None:
        cfg = self.cfg
        for act in actions:
            if isinstance(act, Offer):
                for agent in act.agents:
                    token = next(self.seq)
                    self.ring_tokens[(act.caller_id, agent)] = token
                    if cfg.no_answer_prob and self.agent_rng.random() < cfg.no_answer_prob:
                        continue            # never answers: the engine's ring timeout ends the offer
                    self.push(now + cfg.ring_delay_s, _ANSWER, (act.caller_id, agent, token))
            elif isinstance(act, CancelOffer):
                for agent in act.agents:
                    self.ring_tokens.pop((act.caller_id, agent), None)
            elif isinstance(act, Connect):
                self.waiting.discard(act.caller_id)
                self.max_wait = max(self.max_wait, act.wait_s)
                handle, _ = self.calls[act.caller_id]
                self.push(now + handle * self.speed[act.agent], _HANGUP, (act.caller_id, now))
            elif isinstance(act, (Overflow, Timeout, LeftEmpty)):
                self._gone(act.caller_id, now)
            elif isinstance(act, AgentPaused):
                self.auto_pauses += 1
                self.push(now + cfg.pause_s, _UNPAUSE, act.agent)
            # Announce: nothing to simulate

    def _gone(self, caller_id: str, now: float) -> None:
        if caller_id in self.waiting:
            self.waiting.discard(caller_id)
            self.max_wait = max(self.max_wait, now - self.calls[caller_id][1])
        self.calls.pop(caller_id, None)

    # ------------------------------------------------------------ events

    def event(self, now: float, kind: int, payload: object) -> None:
        acd = self.acd
        if kind == _ARRIVAL:
            n = payload
            cid = f"c{n}"
            handle = self.handle_time()
            patience = self.traffic.expovariate(1.0 / self.cfg.patience_s) if self.cfg.patience_s else math.inf
            nxt = now + self.traffic.expovariate(self.cfg.arrival_rate_per_h / 3600.0)
            if nxt < self.horizon:
                self.push(nxt, _ARRIVAL, n + 1)
            self.calls[cid] = (handle, now)
            self.waiting.add(cid)
            if patience != math.inf:
                self.push(now + patience, _ABANDON, cid)
            self.apply(acd.caller_join(QUEUE, cid, now), now)
        elif kind == _ANSWER:
            cid, agent, token = payload  # type: ignore[misc]
            if self.ring_tokens.get((cid, agent)) != token:
                return                  # cancelled, timed out or answered elsewhere meanwhile
            del self.ring_tokens[(cid, agent)]
            self.apply(acd.offer_answered(cid, agent, now), now)
        elif kind == _HANGUP:
            cid, connected_at = payload  # type: ignore[misc]
            wrap = self.cfg.wrap_up_s
            self.busy_s += max(0.0, min(now + wrap, self.horizon) - connected_at)
            self.calls.pop(cid, None)
            self.apply(acd.call_ended(cid, now), now)
        elif kind == _ABANDON:
            cid = payload
            if cid in self.waiting:     # connected or gone callers do not abandon the queue
                self.waiting.discard(cid)
                self.max_wait = max(self.max_wait, now - self.calls[cid][1])
                self.calls.pop(cid, None)
                self.apply(acd.caller_abandon(cid, now), now)
        elif kind == _UNPAUSE:
            self.apply(acd.agent_unpause(payload, now, "sim-auto-unpause"), now)  # type: ignore[arg-type]

    def deadline(self, now: float) -> float:
        """The engine's next deadline (after ``tick(now)`` it lies in the future)."""
        d = self.acd.next_deadline(now)
        if d is not None and d <= now:     # defensive: never spin
            raise RuntimeError(f"ACD engine deadline {d} does not advance past {now}")
        return math.inf if d is None else d

    def run(self) -> SimResult:
        acd, cfg = self.acd, self.cfg
        for i in range(cfg.agents):
            self.apply(acd.agent_login(self._agent(i), 0.0), 0.0)
        self.push(self.traffic.expovariate(cfg.arrival_rate_per_h / 3600.0), _ARRIVAL, 1)
        qs = acd.queues[QUEUE]
        now = 0.0
        deadline = self.deadline(now)
        heap = self.heap
        while heap or deadline != math.inf:
            if heap and heap[0][0] <= deadline:
                now, kind, _, payload = heapq.heappop(heap)
                self.event(now, kind, payload)
            else:
                now = deadline
                self.apply(acd.tick(now), now)
            self.events += 1
            if len(qs.callers) > self.max_queue:
                self.max_queue = len(qs.callers)
            deadline = self.deadline(now)
        for cid in list(self.waiting):       # nobody should be left; keep max_wait honest if so
            self._gone(cid, now)
        st = qs.stats
        return SimResult(
            config=cfg, offered=st.offered, answered=st.answered, abandoned=st.abandoned,
            timed_out=st.timed_out, overflowed=st.overflowed, left_empty=st.left_empty,
            sl_pct=st.service_level_pct, asa_s=st.asa_s, aht_s=st.aht_s,
            abandon_pct=100.0 * st.abandoned / st.offered if st.offered else 0.0,
            occupancy_pct=100.0 * self.busy_s / (cfg.agents * self.horizon),
            max_queue_len=self.max_queue, max_wait_s=self.max_wait, offers=st.offers,
            offers_no_answer=st.offers_no_answer, auto_pauses=self.auto_pauses, simulated_s=now,
            events=self.events)


def simulate(config: SimConfig | None = None, **overrides: object) -> SimResult:
    """Run one simulation: ``simulate(SimConfig(agents=12))`` or ``simulate(agents=12, seed=3)``."""
    cfg = replace(config or SimConfig(), **overrides)  # type: ignore[arg-type]
    return _Sim(cfg.validate()).run()


def sweep(base: SimConfig, variants: dict[str, Sequence[object]]) -> list[SimResult]:
    """One run per combination of ``variants`` (field name -> values), in order, all with ``base.seed``."""
    names = list(variants)
    unknown = [n for n in names if n not in {f.name for f in fields(SimConfig)}]
    if unknown:
        raise SimError(f"cannot vary unknown option(s) {', '.join(unknown)}")
    configs = [replace(base, **dict(zip(names, combo))) for combo in itertools.product(*variants.values())]
    validated = [c.validate() for c in configs]       # every error before the first (long) run
    return [_Sim(c).run() for c in validated]


# ---------------------------------------------------------------- command line

# option -> (SimConfig field, parser of one value); the comma-list capable ones form sweeps
_SWEEPABLE = {
    "strategy": ("strategy", str),
    "agents": ("agents", int),
    "arrival_rate": ("arrival_rate_per_h", float),
    "handle_time": ("handle_time_s", float),
    "patience": ("patience_s", float),
    "max_wait": ("max_wait_s", float),
    "wrap_up": ("wrap_up_s", float),
}
_COMPARE_ALIASES = {"strategies": "strategy", "agent": "agents", "rate": "arrival_rate",
                    "arrival-rate": "arrival_rate", "handle-time": "handle_time", "max-wait": "max_wait",
                    "wrap-up": "wrap_up"}
_SCALAR = {
    "handle_dist": "handle_dist", "handle_cv": "handle_cv", "duration": "duration_h",
    "service_level": "service_level_s", "seed": "seed", "overflow": "overflow", "max_len": "max_len",
    "ring_timeout": "ring_timeout_s", "ring_delay": "ring_delay_s", "no_answer_prob": "no_answer_prob",
    "max_no_answer": "max_no_answer", "no_answer_delay": "no_answer_delay_s", "pause": "pause_s",
    "speed_spread": "speed_spread",
}


def _split(option: str, text: str, conv: type) -> list[object]:
    values = []
    for part in text.split(","):
        part = part.strip()
        try:
            values.append(conv(part))
        except ValueError:
            kind = {int: "an integer", float: "a number"}.get(conv, "a value")
            raise SimError(f"--{option.replace('_', '-')}: expected {kind}, got {part!r}") from None
    if not values or any(v == "" for v in values):
        raise SimError(f"--{option.replace('_', '-')}: empty value in {text!r}")
    return values


def parse_variants(args: argparse.Namespace) -> tuple[SimConfig, dict[str, list[object]]]:
    """Turn parsed arguments into a base config and the swept fields (comma lists and ``--compare``)."""
    base: dict[str, object] = {}
    variants: dict[str, list[object]] = {}
    for opt, fld in _SCALAR.items():
        value = getattr(args, opt, None)
        if value is not None:
            base[fld] = value
    for opt, (fld, conv) in _SWEEPABLE.items():
        text = getattr(args, opt, None)
        if text is None:
            continue
        values = _split(opt, str(text), conv)
        if len(values) == 1:
            base[fld] = values[0]
        else:
            variants[fld] = values
    for spec in getattr(args, "compare", None) or []:
        key, sep, text = spec.partition("=")
        key = key.strip()
        opt = _COMPARE_ALIASES.get(key, key.replace("-", "_"))
        if not sep or opt not in _SWEEPABLE:
            raise SimError(f"--compare: expected FIELD=V1,V2,... with FIELD one of "
                           f"{', '.join(o.replace('_', '-') for o in _SWEEPABLE)}, got {spec!r}")
        fld, conv = _SWEEPABLE[opt]
        if fld in variants or getattr(args, opt, None) is not None:
            raise SimError(f"--compare {key}: also given as --{opt.replace('_', '-')}; give it once")
        variants[fld] = _split(opt, text, conv)
    return replace(SimConfig(), **base), variants   # type: ignore[arg-type]


def add_simulate_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The ``softswitch acd simulate`` options (the lead wires this into softswitch/cli.py)."""
    d = SimConfig()
    p.add_argument("--strategy", metavar="NAME[,NAME...]",
                   help=f"distribution strategy (default {d.strategy}); a comma list sweeps; known: "
                        f"{', '.join(STRATEGIES)}")
    p.add_argument("--agents", metavar="N[,N...]", help=f"agents logged in (default {d.agents})")
    p.add_argument("--arrival-rate", metavar="PER_HOUR[,...]",
                   help=f"Poisson arrivals per hour (default {d.arrival_rate_per_h:g})")
    p.add_argument("--handle-time", metavar="S[,...]", help=f"mean talk time (default {d.handle_time_s:g})")
    p.add_argument("--handle-dist", choices=HANDLE_DISTRIBUTIONS,
                   help=f"talk time distribution (default {d.handle_dist})")
    p.add_argument("--handle-cv", type=float, metavar="CV",
                   help=f"lognormal stddev/mean (default {d.handle_cv:g})")
    p.add_argument("--patience", metavar="S[,...]",
                   help="mean caller patience, exponential; 0 = never abandons (default 0)")
    p.add_argument("--duration", type=float, metavar="HOURS",
                   help=f"simulated hours of arrivals (default {d.duration_h:g}); the queue then drains")
    p.add_argument("--service-level", type=float, metavar="S",
                   help=f"SL threshold (default {d.service_level_s:g})")
    p.add_argument("--seed", type=int, help=f"random seed (default {d.seed})")
    p.add_argument("--max-wait", metavar="S[,...]", help="max wait then timeout/overflow; 0 = forever")
    p.add_argument("--overflow", metavar="DEST", help="overflow destination on max wait / full queue")
    p.add_argument("--max-len", type=int, metavar="N", help="max callers waiting; 0 = unlimited")
    p.add_argument("--wrap-up", metavar="S[,...]", help=f"wrap-up after each call (default {d.wrap_up_s:g})")
    p.add_argument("--ring-timeout", type=float, metavar="S",
                   help=f"ring timeout per offer (default {d.ring_timeout_s:g})")
    p.add_argument("--ring-delay", type=float, metavar="S",
                   help=f"seconds an agent takes to answer (default {d.ring_delay_s:g})")
    p.add_argument("--no-answer-prob", type=float, metavar="P",
                   help="probability an offered agent does not answer (default 0)")
    p.add_argument("--max-no-answer", type=int, metavar="N",
                   help=f"consecutive no-answers before auto-pause, 0 = never (default {d.max_no_answer})")
    p.add_argument("--no-answer-delay", type=float, metavar="S",
                   help=f"agent rest after a no-answer (default {d.no_answer_delay_s:g})")
    p.add_argument("--pause", type=float, metavar="S",
                   help=f"an auto-paused agent unpauses after S seconds (default {d.pause_s:g})")
    p.add_argument("--speed-spread", type=float, metavar="S",
                   help="agents' talk-time multipliers spread evenly over 1-S..1+S (default 0: identical "
                        "agents, for whom strategies that ring one agent perform alike)")
    p.add_argument("--compare", action="append", metavar="FIELD=V1,V2",
                   help="sweep a field (strategy(ies), agents, arrival-rate, handle-time, patience, "
                        "max-wait, wrap-up); repeatable, combinations are crossed")
    p.add_argument("--json", action="store_true", help="print JSON (an object, or a list for a sweep)")
    return p


def build_parser() -> argparse.ArgumentParser:
    return add_simulate_arguments(argparse.ArgumentParser(
        prog="softswitch acd simulate",
        description="Discrete-event simulation of an ACD queue with the live engine and strategies."))


_COLUMNS = [("sl_pct", "SL%", "{:.1f}"), ("asa_s", "ASA s", "{:.1f}"), ("aht_s", "AHT s", "{:.1f}"),
            ("abandon_pct", "aband%", "{:.1f}"), ("offered", "offered", "{}"), ("answered", "answered", "{}"),
            ("abandoned", "abandoned", "{}"), ("timed_out", "timeout", "{}"),
            ("overflowed", "overflow", "{}"), ("left_empty", "empty", "{}"),
            ("occupancy_pct", "occ%", "{:.1f}"), ("max_queue_len", "maxq", "{}"),
            ("max_wait_s", "max wait s", "{:.0f}")]


def _label(result: SimResult, varied: list[str]) -> str:
    c = result.config
    return " ".join(f"{f.removesuffix('_per_h').removesuffix('_s')}={getattr(c, f)}" for f in varied) or "run"


def format_table(results: list[SimResult], varied: list[str]) -> str:
    rows = [[_label(r, varied)] + [fmt.format(getattr(r, k)) for k, _, fmt in _COLUMNS] for r in results]
    head = ["variant"] + [h for _, h, _ in _COLUMNS]
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    c = results[0].config
    parts = {"strategy": c.strategy, "agents": c.agents, "arrival_rate_per_h": f"{c.arrival_rate_per_h:g}/h",
             "handle_time_s": f"{c.handle_time_s:g}s ({c.handle_dist})", "patience_s": f"{c.patience_s:g}s",
             "max_wait_s": f"{c.max_wait_s:g}s", "wrap_up_s": f"{c.wrap_up_s:g}s",
             "duration_h": f"{c.duration_h:g}h", "service_level_s": f"{c.service_level_s:g}s", "seed": c.seed}
    fixed = "# " + " ".join(f"{k.removesuffix('_per_h').removesuffix('_s').removesuffix('_h')}={v}"
                            for k, v in parts.items() if k not in varied)
    return "\n".join([fixed, line(head)] + [line(r) for r in rows])


def main_simulate(args: argparse.Namespace | Sequence[str] | None = None) -> int:
    """``softswitch acd simulate``: parsed args (from ``add_simulate_arguments``) or an argv list.
    Returns 0; a bad option prints ``softswitch acd simulate: <message>`` on stderr and returns 2."""
    if not isinstance(args, argparse.Namespace):
        args = build_parser().parse_args(list(args) if args is not None else None)
    try:
        base, variants = parse_variants(args)
        if variants:
            results = sweep(base, variants)
        else:
            results = [simulate(base)]
    except SimError as e:
        print(f"softswitch acd simulate: {e}", file=sys.stderr)
        return 2
    for r in results:
        c = r.config
        load = c.arrival_rate_per_h * c.handle_time_s / 3600
        if load >= c.agents and not c.patience_s and not c.max_wait_s and not c.max_len:
            print(f"softswitch acd simulate: note: offered load {load:.1f} Erlangs >= {c.agents} agents with no "
                  "patience, max wait or max length: the queue grows for the whole run", file=sys.stderr)
    if args.json:
        out: object = results[0].to_dict() if not variants else [r.to_dict() for r in results]
        print(json.dumps(out, indent=2))
    else:
        print(format_table(results, list(variants)))
    return 0


if __name__ == "__main__":   # python -m softswitch.acd.simulate --agents 8,10,12
    sys.exit(main_simulate())
