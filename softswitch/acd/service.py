"""The ACD on live calls: the thin asyncio layer around the sans-IO ``Acd`` engine.

It feeds the engine events (callers joining and hanging up, agents' phones answering or failing, feature
codes and CLI commands) with the wall clock, and executes the actions it returns: an ``Offer`` becomes
INVITEs to the agent's registered phones (forks of the caller's ``Call``), ``Connect`` bridges, ``Announce``
queues a position/EWT prompt for the caller's hold music. The engine's timers run from one ``call_later``
re-armed after every event. Every engine call goes through ``_feed`` so the queue_log is written and the
timer re-armed in one place; nothing here keeps agent or queue state of its own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from ..sip.message import Response
from .engine import (Acd, Action, AgentPaused, Announce, CancelOffer, Connect, LeftEmpty, Offer, Overflow,
                     Timeout)
from .model import QueueConfig

if TYPE_CHECKING:
    from ..app import Switch
    from ..calls.call import Call
    from ..calls.leg import OutboundLeg

log = logging.getLogger("softswitch.acd")

# An agent's phone answered with this status: how the engine counts the failed offer.
_BUSY = {486, 600}
_REJECTED = {403, 603}


def announcement_text(position: int, ewt_s: float | None, *, say_position: bool = True) -> str:
    """What a waiting caller hears (tests render the same text to find it in the caller's audio)."""
    parts = []
    if say_position:
        parts.append(f"You are number {position} in the queue.")
    if ewt_s is not None:
        minutes = round(ewt_s / 60)
        if minutes < 1:
            parts.append("Your estimated wait time is less than a minute.")
        else:
            parts.append(f"Your estimated wait time is about {minutes} minute{'s' if minutes != 1 else ''}.")
    return " ".join(parts)


@dataclass(frozen=True)
class QueueOutcome:
    """How one stay in a queue ended, for the caller's ``Call``."""

    kind: str            # connected | overflow | timeout | left_empty | gone | error
    destination: str = ""
    reason: str = ""
    agent: str = ""
    wait_s: float = 0.0


@dataclass(eq=False)
class QueueWait:
    """One caller's stay in one queue: the outcome the call awaits, and the agent legs ringing for it."""

    call: "Call"
    queue: str
    joined_at: float
    outcome: "asyncio.Future[QueueOutcome]"
    legs: dict[str, list["OutboundLeg"]] = field(default_factory=dict)   # agent -> its phones' forks
    answered: dict[str, tuple["OutboundLeg", Response]] = field(default_factory=dict)
    announcements: "asyncio.Queue[str]" = field(default_factory=asyncio.Queue)   # "say:TEXT" or a prompt
    record: dict[str, Any] = field(default_factory=dict)                  # the CDR's queue object

    @property
    def caller_id(self) -> str:
        return self.call.id


class AcdService:
    """All queues and agents of one switch on live calls (single owner: the event loop)."""

    def __init__(self, switch: "Switch", clock: Callable[[], float] = time.time) -> None:
        self.sw = switch
        self.clock = clock
        self.acd = Acd()
        self.waits: dict[str, QueueWait] = {}          # caller (call id) -> its stay
        self.connected: dict[str, QueueWait] = {}      # caller -> stay, while bridged to an agent
        self.busy_calls: Counter[str] = Counter()      # agent -> non-ACD calls its user is on
        self._timer: asyncio.TimerHandle | None = None
        self._log_file: Any = None
        config = switch.config
        self.settings = {q.name: q for q in config.queues}
        for qc in config.queue_configs():
            self.acd.add_queue(qc)
        for ac in config.agent_configs():
            self.acd.add_agent(ac)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        path = self.sw.config.queue_log_path()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._log_file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - lives as long as the switch
        now = self.clock()
        self._qlog_raw(now, "NONE", "NONE", "NONE", "QUEUESTART")
        for agent in self.sw.config.agents:
            if agent.logged_in:
                self._feed(self.acd.agent_login(agent.name, now))

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for wait in list(self.waits.values()):
            self._resolve(wait, QueueOutcome("gone", reason="the switch is stopping"))
        self._flush_log()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    # ------------------------------------------------------------------ callers
    def join(self, call: "Call", queue: str, priority: int = 0, skills: dict[str, int] | None = None) -> QueueWait:
        """Put a call (answered, media terminated here) in ``queue``; await ``wait.outcome``."""
        now = self.clock()
        wait = QueueWait(call, queue, now, asyncio.get_running_loop().create_future())
        wait.record = {"queue": queue, "agent": None, "wait_s": None, "outcome": "waiting", "position": None}
        call.queue_attempts.append(wait.record)
        if queue not in self.acd.queues:
            self._resolve(wait, QueueOutcome("error", reason=f"no queue {queue!r}"))
            return wait
        self.waits[call.id] = wait
        cid = call.caller_number()
        self._feed(self.acd.caller_join(queue, call.id, now, priority=priority, skills=skills, cid=cid))
        caller = self.acd.callers.get(call.id)
        if caller is not None and caller.agent is None:
            qs = self.acd.queues[queue]
            wait.record["position"] = caller.orig_position
            if qs.config.announce_frequency_s > 0:   # the first announcement at once, then periodically
                pos = qs.position(caller)
                self._announce(wait, pos, qs.ewt_s(pos) if qs.config.announce_ewt else None, qs.config)
        return wait

    def call_gone(self, call: "Call") -> None:
        """The call ended (either side hung up): an abandon while waiting, the end of a connected call."""
        by = "agent" if call.hangup_by == "callee" else "caller"
        now = self.clock()
        if call.id in self.waits:
            wait = self.waits[call.id]
            caller = self.acd.callers.get(call.id)
            if caller is not None:
                wait.record["position_at_exit"] = self.acd.queues[caller.queue].position(caller)
            wait.record["wait_s"] = round(now - wait.joined_at, 3)
            wait.record["outcome"] = "abandoned"
            self._feed(self.acd.caller_abandon(call.id, now))
            del self.waits[call.id]
            self._resolve(wait, QueueOutcome("gone", reason="the caller hung up"))
        elif call.id in self.connected:
            wait = self.connected.pop(call.id)
            wait.record["talk_s"] = round(now - wait.record.pop("_connected_at", now), 3)
            wait.record["ended_by"] = by
            self._feed(self.acd.call_ended(call.id, now, by=by))
        for user in call.busy_users:   # only what call_started counted for this call
            if self.busy_calls[user] > 0:
                self.busy_calls[user] -= 1
                if not self.busy_calls[user]:
                    del self.busy_calls[user]
                    self._feed(self.acd.agent_busy(user, False, now))

    def call_started(self, call: "Call") -> None:
        """A call the ACD did not place involves a user: while it lasts, that agent is never offered."""
        now = self.clock()
        call.busy_users = [user for user in call.users() if user in self.acd.agents]
        for user in call.busy_users:
            self.busy_calls[user] += 1
            if self.busy_calls[user] == 1:
                self._feed(self.acd.agent_busy(user, True, now))

    # ------------------------------------------------------------------ agent phones
    def agent_response(self, wait: QueueWait, leg: "OutboundLeg", response: Response) -> None:
        """A response on one of the forks ringing an agent for ``wait``'s caller."""
        code = response.status
        agent = leg.target.label.partition(":")[2]
        if code < 200:
            return
        if leg not in wait.legs.get(agent, ()):   # withdrawn (cancelled, or from an earlier queue): too late
            if code < 300:
                leg.ack()
                leg.bye()
            wait.call.leg_failed(leg)
            return
        now = self.clock()
        if code < 300:
            if agent in wait.answered or wait.outcome.done():   # another phone of the same agent, or too late
                leg.ack()
                leg.bye()
                return
            wait.answered[agent] = (leg, response)
            for other in wait.legs.get(agent, []):
                if other is not leg:
                    other.cancel()
            self._feed(self.acd.offer_answered(wait.caller_id, agent, now, leg.call_id))
            return
        wait.call.leg_failed(leg)
        legs = wait.legs[agent]
        if any(other.status is None or 200 <= other.status < 300 for other in legs):
            return   # cancelled by us, or another phone of this agent is still ringing
        codes = {other.status for other in legs}
        reason = "busy" if codes & _BUSY else "rejected" if codes & _REJECTED else "no_answer"
        wait.legs.pop(agent, None)
        self._feed(self.acd.offer_failed(wait.caller_id, agent, reason, now))

    # ------------------------------------------------------------------ agents (feature codes, CLI)
    def agent_command(self, command: str, name: str, reason: str = "") -> list[Action]:
        if name not in self.acd.agents:
            raise KeyError(f"no agent {name!r}")
        if command in ("pause", "unpause") and not self.acd.agents[name].logged_in:
            raise ValueError(f"agent {name} is logged out")
        now = self.clock()
        if command == "login":
            actions = self.acd.agent_login(name, now)
        elif command == "logout":
            actions = self.acd.agent_logout(name, now)
        elif command == "pause":
            actions = self.acd.agent_pause(name, now, reason)
        elif command == "unpause":
            actions = self.acd.agent_unpause(name, now, reason)
        else:
            raise ValueError(f"unknown agent command {command!r}")
        self._feed(actions)
        return actions

    def feature_code(self, user: str, number: str) -> str:
        """An agent dialled a feature code from its phone: apply it, return what to say back."""
        codes = self.sw.config.acd
        if user not in self.acd.agents:
            return "This phone is not an agent."
        if number == codes.login_code:
            self.agent_command("login", user)
            return f"Agent {_spaced(user)} logged in."
        if number == codes.logout_code:
            self.agent_command("logout", user)
            return f"Agent {_spaced(user)} logged out."
        if number == codes.unpause_code:
            self.agent_command("unpause", user)
            return f"Agent {_spaced(user)} is available."
        if number.startswith(codes.pause_code):
            reason = number[len(codes.pause_code):]
            self.agent_command("pause", user, reason)
            return f"Agent {_spaced(user)} paused." + (f" Reason {_spaced(reason)}." if reason else "")
        return "Unknown feature code."

    def is_feature_code(self, number: str) -> bool:
        codes = self.sw.config.acd
        return number in (codes.login_code, codes.logout_code, codes.unpause_code) or (
            number.startswith(codes.pause_code) and number[len(codes.pause_code):].isdigit()
            or number == codes.pause_code)

    # ------------------------------------------------------------------ status and run-time changes
    def queue_status(self, name: str | None = None) -> list[dict[str, object]]:
        now = self.clock()
        names = [name] if name else sorted(self.acd.queues)
        for n in names:
            if n not in self.acd.queues:
                raise KeyError(f"no queue {n!r} (queues: {', '.join(sorted(self.acd.queues)) or 'none'})")
        return [self.acd.queue_status(n, now) for n in names]

    def agent_list(self) -> list[dict[str, object]]:
        now = self.clock()
        return [self.acd.agent_status(n, now) for n in sorted(self.acd.agents)]

    def queue_set(self, name: str, changes: dict[str, Any]) -> dict[str, object]:
        """Change a queue's settings at run time (callers, members and statistics stay)."""
        if name not in self.acd.queues:
            raise KeyError(f"no queue {name!r}")
        from dataclasses import fields, replace
        current = self.acd.queues[name].config
        known = {f.name for f in fields(QueueConfig)} - {"name"}
        typed: dict[str, Any] = {}
        for key, value in changes.items():
            if key not in known:
                raise ValueError(f"unknown queue setting {key!r} (settings: {', '.join(sorted(known))})")
            kind = type(getattr(current, key))
            try:
                typed[key] = _coerce(kind, value)
            except (TypeError, ValueError):
                raise ValueError(f"{key}: {value!r} is not a {kind.__name__}") from None
        if "overflow" in typed and typed["overflow"]:
            problem = self.sw.destination_problem(typed["overflow"])
            if problem:
                raise ValueError(f"overflow: {problem}")
        new = replace(current, **typed)
        try:
            self.acd.update_queue(new)
        except KeyError:
            raise ValueError(f"strategy: unknown strategy {typed.get('strategy')!r}") from None
        self._feed(self.acd.tick(self.clock()))
        log.info("queue %s changed: %s", name, ", ".join(f"{k}={v!r}" for k, v in typed.items()))
        return self.queue_status(name)[0]

    def add_member(self, queue: str, agent: str, level: int = 0) -> None:
        self._check(queue, agent)
        self._feed(self.acd.add_member(queue, agent, self.clock(), level))

    def remove_member(self, queue: str, agent: str) -> None:
        self._check(queue, agent)
        self._feed(self.acd.remove_member(queue, agent, self.clock()))

    def _check(self, queue: str, agent: str) -> None:
        if queue not in self.acd.queues:
            raise KeyError(f"no queue {queue!r}")
        if agent not in self.acd.agents:
            raise KeyError(f"no agent {agent!r}")

    # ------------------------------------------------------------------ executing the engine's actions
    def _feed(self, actions: list[Action]) -> None:
        for action in actions:
            try:
                self._execute(action)
            except Exception:  # noqa: BLE001 - one call's trouble never stops the dispatcher
                log.exception("ACD action %r failed", action)
        self._flush_log()
        self._arm()

    def _execute(self, action: Action) -> None:
        if isinstance(action, AgentPaused):
            log.warning("agent %s paused by the ACD: %s", action.agent, action.reason)
            return
        wait = self.waits.get(action.caller_id)
        if isinstance(action, Offer):
            if wait is None:   # cannot happen: the engine only offers callers it holds
                log.error("offer for unknown caller %s", action.caller_id)
                return
            for agent in action.agents:
                self._ring(wait, agent)
        elif isinstance(action, CancelOffer):
            if wait is None:
                wait = self.connected.get(action.caller_id)
            if wait is None:
                return
            for agent in action.agents:
                for leg in wait.legs.pop(agent, []):
                    answered = wait.answered.get(agent)
                    if answered is not None and answered[0] is leg:
                        leg.ack()
                        leg.bye()
                    else:
                        leg.cancel()
                wait.answered.pop(agent, None)
        elif isinstance(action, Connect):
            if wait is None or action.agent not in wait.answered:
                log.error("connect for unknown caller/agent %s/%s", action.caller_id, action.agent)
                return
            leg, response = wait.answered.pop(action.agent)
            wait.legs.pop(action.agent, None)
            del self.waits[action.caller_id]
            self.connected[action.caller_id] = wait
            wait.record.update(agent=action.agent, wait_s=round(action.wait_s, 3), outcome="answered",
                               _connected_at=self.clock())
            wait.call.queue_connect(leg, response)
            self._resolve(wait, QueueOutcome("connected", agent=action.agent, wait_s=action.wait_s))
        elif isinstance(action, Announce):
            if wait is not None:
                self._announce(wait, action.position, action.ewt_s, self.acd.queues[action.queue].config)
        elif isinstance(action, (Overflow, Timeout, LeftEmpty)):
            if wait is None:
                return
            self.waits.pop(action.caller_id, None)
            wait.record["wait_s"] = round(self.clock() - wait.joined_at, 3)
            if isinstance(action, Overflow):
                wait.record.update(outcome="overflowed", overflow=action.destination, reason=action.reason)
                outcome = QueueOutcome("overflow", action.destination, action.reason)
            elif isinstance(action, Timeout):
                wait.record["outcome"] = "timed_out"
                outcome = QueueOutcome("timeout", reason=f"no agent answered within {action.wait_s:.0f} s")
            else:
                wait.record.update(outcome="left_empty", reason=action.reason)
                outcome = QueueOutcome("left_empty", reason=f"no agent is staffed ({action.reason})")
            self._resolve(wait, outcome)

    def _ring(self, wait: QueueWait, agent: str) -> None:
        legs = wait.call.offer_agent(agent)
        if legs:
            wait.legs[agent] = legs
            return
        # No registered phone: the offer fails at once (deferred: we are inside the engine's actions).
        log.info("agent %s has no registered phone: offer to %s fails", agent, wait.caller_id)
        self.sw.loop.call_soon(self._unreachable, wait, agent)

    def _unreachable(self, wait: QueueWait, agent: str) -> None:
        self._feed(self.acd.offer_failed(wait.caller_id, agent, "no_answer", self.clock()))

    def _announce(self, wait: QueueWait, position: int, ewt_s: float | None, config: QueueConfig) -> None:
        text = announcement_text(position, ewt_s, say_position=config.announce_position)
        if text:
            wait.announcements.put_nowait(f"say:{text}")

    def _resolve(self, wait: QueueWait, outcome: QueueOutcome) -> None:
        for agent, legs in list(wait.legs.items()):
            if outcome.kind == "connected" and agent == outcome.agent:
                continue
            for leg in legs:
                leg.cancel()
        if outcome.kind != "connected":
            wait.legs.clear()
        if not wait.outcome.done():
            wait.outcome.set_result(outcome)

    # ------------------------------------------------------------------ timers and the queue_log
    def _arm(self) -> None:
        now = self.clock()
        deadline = self.acd.next_deadline(now)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if deadline is not None:
            self._timer = self.sw.loop.call_later(max(0.0, deadline - now), self._tick)

    def _tick(self) -> None:
        self._timer = None
        self._feed(self.acd.tick(self.clock()))

    def _flush_log(self) -> None:
        entries = self.acd.drain_queue_log()
        if not entries or self._log_file is None:
            return
        try:
            self._log_file.write("".join(e.line() + "\n" for e in entries))
            self._log_file.flush()
        except OSError as exc:   # a full disk loses queue_log lines, never calls
            log.error("queue_log write failed: %s", exc)

    def _qlog_raw(self, now: float, callid: str, queue: str, agent: str, event: str) -> None:
        if self._log_file is not None:
            self._log_file.write(f"{int(now)}|{callid}|{queue}|{agent}|{event}\n")
            self._log_file.flush()

    # ------------------------------------------------------------------ the control socket
    def control(self, request: dict[str, Any]) -> Any:
        """Commands of `softswitch queue ...` / `softswitch agent ...` (see softswitch/control.py)."""
        cmd = request.get("cmd")
        if cmd == "queue.status":
            return self.queue_status(request.get("name"))
        if cmd == "queue.set":
            return self.queue_set(request["name"], dict(request.get("changes") or {}))
        if cmd in ("queue.add_member", "queue.remove_member"):
            name = request.get("name") or request.get("queue")
            if cmd == "queue.add_member":
                self.add_member(name, request["agent"], int(request.get("level") or 0))
            else:
                self.remove_member(name, request["agent"])
            return self.queue_status(name)[0]
        if cmd == "agent.list":
            return self.agent_list()
        if isinstance(cmd, str) and cmd.startswith("agent."):
            self.agent_command(cmd[6:], request["name"], request.get("reason") or "")
            return self.acd.agent_status(request["name"], self.clock())
        raise ValueError(f"unknown command {cmd!r}")


def _spaced(digits: str) -> str:
    """Digits read one by one ("1 0 0 1"), not as a number."""
    return " ".join(digits)


def _coerce(kind: type, value: Any) -> Any:
    if kind is bool:
        if isinstance(value, str):
            if value.lower() in ("true", "yes", "on", "1"):
                return True
            if value.lower() in ("false", "no", "off", "0"):
                return False
            raise ValueError(value)
        return bool(value)
    if kind in (int, float):
        if isinstance(value, bool):
            raise TypeError(value)
        return kind(value)
    return str(value)


__all__ = ["AcdService", "QueueOutcome", "QueueWait", "announcement_text"]
