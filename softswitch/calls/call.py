"""A call: one inbound leg, the outbound attempts made for it, and the media relay between them.

Attempts come in *groups*: the forks of one group ring in parallel (every contact of a user),
the groups are tried in order (trunk gateways, failing over). Every outcome funnels into ``_end``,
which runs once and hands the call to the switch for its CDR — so no path leaves a call half-open.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from enum import Enum
from typing import TYPE_CHECKING, Any

from ..cdr import disposition_for, q850_for_status
from ..log import CallLogger
from ..routing.dialplan import RouteDecision, Source
from ..media.dtmf import parse_info
from ..media.g711 import transcode_table
from ..media.meter import LevelMeter
from ..media.ports import PortsExhausted
from ..sdp import (SdpError, SessionDescription, anchor, answer_codec, answer_for, offered_codec, retarget_answer,
                   stream_params, with_transcoding)
from ..sip.message import Headers, Response
from ..sip.transaction import ClientTransaction, RequestReceived
from ..sip.uri import NameAddr, SipURI
from .leg import SDP, InboundLeg, Leg, OutboundLeg, Target, sdp_of

if TYPE_CHECKING:
    from ..app import Switch

log = logging.getLogger("softswitch.calls")

# What the caller hears when every attempt failed with this status (a B2BUA does not pass
# redirects or our own authentication trouble through).
_MAP_TO_CALLER = {401: 403, 407: 403, 300: 480, 301: 480, 302: 480, 305: 480, 380: 480}


class CallState(Enum):
    ROUTING = "routing"
    RINGING = "ringing"
    ANSWERED = "answered"
    ENDED = "ended"


class Call:
    def __init__(self, switch: "Switch", ev: RequestReceived, source: Source, decision: RouteDecision) -> None:
        self.sw = switch
        self.id = uuid.uuid4().hex
        self.log = CallLogger(log, self.id)
        self.source = source
        self.decision = decision
        self.media_ip = switch.config.media.ip
        self.a = InboundLeg(self, ev, self.media_ip)
        self.groups: list[list[Target]] = []
        self.forks: list[OutboundLeg] = []   # the group ringing now
        self.tried: list[OutboundLeg] = []   # every attempt, for the CDR
        self.b: OutboundLeg | None = None
        self.relay: Any = None
        self.session: Any = None   # terminated media (services, IVR)
        self.service_task: asyncio.Task[None] | None = None
        self.meter: LevelMeter | None = None
        self.meter_task: asyncio.Task[None] | None = None
        self.state = CallState.ROUTING
        self.start_ts = switch.wall()
        self.answer_ts: float | None = None
        self.end_ts: float | None = None
        self.status: int | None = None
        self.q850: int | None = None
        self.cancelled = False
        self.hangup_by: str | None = None
        self.trunk_in = source.name if source.kind == "trunk" else None
        self.trunk_out: Any = None
        self._timers: list[Any] = []
        self._deferred_ack = False
        self.finished = False
        self.dtmf: list[dict[str, Any]] = []  # SIP INFO digits; media DTMF is in the session's stats
        self.a_answer: SessionDescription | None = None  # what we answered the caller (terminated media)
        self.ivr_run: Any = None          # the IVR flow's Run, for the CDR
        self.session_stats: dict | None = None  # the terminated stretch of a call later bridged
        self._transfer: asyncio.Future[str | None] | None = None  # a flow's transfer in progress
        self._transfer_side: Any = None   # its callee-facing relay side
        self._queue: Any = None           # the ACD stay (acd.service.QueueWait) while waiting in a queue
        self.queue_attempts: list[dict[str, Any]] = []   # one record per queue joined, for the CDR
        self.busy_users: list[str] = []   # agents this call makes busy (counted by the ACD at start)
        self.recording: Any = None        # recorder.live.CallRecording, while this call is recorded
        self.record_at_bridge = False     # a queue (or route) wants the bridged part recorded
        self.recording_error: str | None = None   # why a wanted recording could not start

    # ------------------------------------------------------------------ setup
    async def start(self, groups: list[list[Target]] | None) -> None:
        """Answer a service, or start ringing the first group of targets."""
        try:
            if self.decision.kind in ("service", "flow", "queue"):
                await self._start_terminated()
                return
            assert groups
            self.groups = groups
            self.relay = await self.sw.relay.create_call()
            if self.state is CallState.ENDED:  # cancelled while the sockets were bound
                self.relay.close()
                return
            self._set_remote(self.a, self.a.offer)
            self._arm(self.sw.config.calls.ring_timeout_s, self._ring_timeout)
            self._next_group()
        except PortsExhausted as exc:  # overload, not a bug: one line, and a status that says "try later"
            self.log.warning("call refused: %s", exc)
            self.fail(503, "Service Unavailable", Headers([("Retry-After", "5")]))
        except Exception as exc:  # never leave the caller hanging on our bug
            self.log.exception("call setup failed: %s", exc)
            self.fail(500, "Server Internal Error")

    async def _start_terminated(self) -> None:
        """Answer with media terminated here and run the service's (or flow's) task until the call ends."""
        offer = self.a.offer
        if offer is None:
            self.fail(488, "Not Acceptable Here")  # late offer: services need the caller's codecs up front
            return
        self.session = await self.sw.media.create_session()
        self.session.log = self.log
        if self.state is CallState.ENDED:
            self.session.close()
            return
        answer = self._terminate(offer)
        if answer is None:
            self.fail(488, "Not Acceptable Here")
            return
        self.a.answer(answer)
        self._answered()
        if self.record_policy() == "answer":
            self.start_recording(self.session)
            await self.recording_beep()
            if self.state is CallState.ENDED or self.session is None:
                return
        if self.sw.config.media.level_meter:
            self.meter = LevelMeter(self.session.tap(wake_batch=50))  # 2 frames a tick: every 0.5 s
            self.meter_task = asyncio.ensure_future(self.meter.run())
        if self.decision.kind == "flow":
            self.service_task = asyncio.ensure_future(self._run_service(self._run_flow))
            return
        if self.decision.kind == "queue":
            self.service_task = asyncio.ensure_future(self._run_service(self._run_queue))
            return
        from ..services import SERVICES
        self.service_task = asyncio.ensure_future(self._run_service(SERVICES[self.decision.target]))

    def _terminate(self, offer: SessionDescription) -> bytes | None:
        """Answer ``offer`` for the terminated session and (re)start its stream; None = nothing in common."""
        try:
            answer = answer_for(offer, self.media_ip, self.session.local_port, origin=self.a.origin.origin)
        except SdpError:
            return None
        params = stream_params(answer, offer, local_is_answer=True)
        if params is None:
            return None
        try:
            self.session.start(params)
        except ValueError as exc:  # e.g. a remote address of the wrong family
            self.log.warning("cannot start media: %s", exc)
            return None
        self.a.codec = f"{params.codec}/8000"
        self.a_answer = answer
        return self.a.origin.stamp(answer).to_bytes()

    async def _run_flow(self, _call: Call, name: str | None = None) -> None:
        """The IVR: run the routed flow on this call's media; hang up when it ends without a transfer."""
        from ivr.interpreter import run_flow
        from ivr.runtime import Run, clock_variables
        from .channel import CallChannel
        flow = self.sw.flows.get(name or self.decision.target)
        assert flow is not None  # the switch routes only to loaded flows (config checks overflow flows)
        req = self.a.request
        channel = CallChannel(self, flow)
        variables = {"caller": _user(req.from_.uri) or "", "caller_name": req.from_.display or "",
                     "called": self.decision.number, "call_id": self.id, **clock_variables()}
        self.ivr_run = Run(flow, channel, variables)
        try:
            await run_flow(flow, channel, run=self.ivr_run)
        finally:
            channel.close()
        self.log.info("flow %s: %s via %s", flow.name, self.ivr_run.result, " > ".join(self.ivr_run.path))
        if not self.ivr_run.result.startswith("transferred"):
            self.hangup(16, "system")

    async def _run_queue(self, _call: Call) -> None:
        """A route straight to a queue: wait there; hang up if the stay ends without an agent."""
        problem = await self._queue_transfer(self.decision.target)
        if problem is not None:
            self.log.info("queue %s: %s", self.decision.target, problem)
            if self.session is not None:
                pcm = await self.sw.media.say("Sorry, no agent is available to take your call. Goodbye.")
                from ..media.players import BufferSource
                await self.session.play(BufferSource(pcm))
            self.hangup(16, "system")

    def queue_summary(self) -> dict | None:
        if not self.queue_attempts:
            return None
        last = {k: v for k, v in self.queue_attempts[-1].items() if not k.startswith("_")}
        if len(self.queue_attempts) > 1:
            last["previous"] = [{k: v for k, v in a.items() if not k.startswith("_")}
                                for a in self.queue_attempts[:-1]]
        return last

    def caller_number(self) -> str:
        return _user(self.a.request.from_.uri) or ""

    def users(self) -> list[str]:
        """The local users this call involves (its caller, the user it rings): busy for the ACD."""
        out = [self.source.name] if self.source.kind == "user" else []
        if self.decision.kind == "user" and self.decision.target:
            out.append(self.decision.target)
        return out

    def ivr_summary(self) -> dict | None:
        if self.ivr_run is None:
            return None
        summary = self.ivr_run.summary()
        if summary["result"] == "running":  # the call ended inside the flow (its task is being cancelled)
            summary["result"] = "abandoned"
        return summary

    # ------------------------------------------------------------------ transfer (from a flow)
    async def transfer(self, to: str, trunk: str | None = None, *, priority: int = 0,
                       skills: dict[str, int] | None = None) -> str | None:
        """Bridge the caller, now talking to a flow, to ``to`` ("extension:N", "number:+E164" or
        "queue:NAME"). None once the callee answered; otherwise why not (the flow goes on)."""
        kind, _, value = to.partition(":")
        if self.session is None or self.state is not CallState.ANSWERED or self._transfer is not None:
            return "the call cannot be transferred now"
        if kind == "queue":
            return await self._queue_transfer(value, priority, skills)
        if kind == "user":
            kind, value = "extension", value
        if trunk is not None:
            if trunk not in self.sw.trunks:
                return f"unknown trunk {trunk!r}"
            decision = RouteDecision(f"transfer:{trunk}", "trunk", trunk, value)
        else:
            found = self.sw.dialplan.route(value.lstrip("+") if kind == "extension" else value, self.source)
            if found is None:
                return f"no route for {value}"
            decision = found
        if decision.kind not in ("user", "trunk"):
            return f"{value} routes to {decision.kind}:{decision.target}, which a transfer cannot reach"
        groups, status, reason = self.sw.targets(decision)
        if status or not groups:
            return f"{value}: {status} {reason}".strip()
        self._transfer = self.sw.loop.create_future()
        try:
            self._transfer_side = await self.sw.relay.side()
        except Exception as exc:  # noqa: BLE001 - e.g. ports exhausted: the flow takes its failure edge
            self._transfer = None
            return f"no media port: {exc}"
        self.groups = groups
        self.log.info("transferring to %s (%s:%s)", to, decision.kind, decision.target)
        timer = self.sw.loop.call_later(self.sw.config.calls.ring_timeout_s, self._transfer_timeout)
        ringback = asyncio.ensure_future(self.session.play(self.sw.media.tone("ringback")))
        self._next_group()
        try:
            return await self._transfer
        finally:
            timer.cancel()
            ringback.cancel()
            if self.session is not None:  # not bridged: the flow goes on, without the ringback
                self.session.stop_playback()
            self._transfer = None
            if self.relay is None and self._transfer_side is not None:
                self._transfer_side.close()
            self._transfer_side = None

    # ------------------------------------------------------------------ queues (the ACD)
    async def _queue_transfer(self, queue: str, priority: int = 0, skills: dict[str, int] | None = None,
                              hops: int = 0) -> str | None:
        """Wait in ``queue`` until an agent answers (None) or the stay ends; follow overflow destinations."""
        outcome = await self._wait_in_queue(queue, priority, skills)
        if outcome.kind == "connected":
            return None
        if outcome.kind != "overflow" or not outcome.destination:
            return f"queue {queue!r}: {outcome.reason or outcome.kind}"
        dest = outcome.destination
        if hops >= 5:
            return f"queue {queue!r}: overflow chain too long at {dest}"
        self.log.info("queue %s: overflow (%s) to %s", queue, outcome.reason, dest)
        kind, _, value = dest.partition(":")
        if kind == "queue":
            return await self._queue_transfer(value, priority, skills, hops + 1)
        if kind == "flow":
            await self._run_flow(self, value)
            return None if self.state is CallState.ENDED or self.relay is not None else \
                f"overflow flow {value!r} ended without a transfer"
        return await self.transfer(dest)

    async def _wait_in_queue(self, queue: str, priority: int, skills: dict[str, int] | None) -> Any:
        from ..acd.service import QueueOutcome
        try:
            self._transfer_side = await self.sw.relay.side()
        except Exception as exc:  # noqa: BLE001 - ports exhausted: the stay fails, the call goes on
            return QueueOutcome("error", reason=f"no media port: {exc}")
        wait = self.sw.acd.join(self, queue, priority, skills)
        self._queue = wait
        policy = self.sw.acd.settings[queue].record if queue in self.sw.acd.settings else "off"
        if policy == "answer" and self.recording is None and self.session is not None:
            self.start_recording(self.session)
            await self.recording_beep()
        self.record_at_bridge = self.record_at_bridge or policy == "bridge"
        music = asyncio.ensure_future(self._hold(wait))
        try:
            return await asyncio.shield(wait.outcome)
        finally:
            self._queue = None
            music.cancel()
            if self.session is not None:
                self.session.stop_playback()
            if self.relay is None and self._transfer_side is not None:
                self._transfer_side.close()
            self._transfer_side = None

    async def _hold(self, wait: Any) -> None:
        """Music on hold, interrupted by position/EWT and periodic announcements."""
        from ..media.players import BufferSource, PromptError
        session = self.session
        settings = self.sw.acd.settings.get(wait.queue)
        moh_name = (settings.moh if settings is not None else "") or self.sw.config.services.moh_prompt
        try:
            moh = BufferSource(await self.sw.media.prompt(moh_name), loop=True)
        except PromptError as exc:
            self.log.error("queue %s: music on hold: %s", wait.queue, exc)
            moh = None
        periodic = settings.periodic_announce if settings is not None else ""
        every = settings.periodic_announce_s if settings is not None and periodic else 0.0
        next_periodic = self.sw.now() + every if every > 0 else None
        while session is not None and not session.closed:
            if not wait.announcements.empty():
                text = wait.announcements.get_nowait()
            else:
                playing = asyncio.ensure_future(session.play(moh)) if moh is not None else None
                try:
                    timeout = None if next_periodic is None else max(0.0, next_periodic - self.sw.now())
                    text = await asyncio.wait_for(wait.announcements.get(), timeout)
                except asyncio.TimeoutError:
                    text = periodic
                    next_periodic = self.sw.now() + every
                finally:
                    if playing is not None:  # it may not have started yet: cancel it, then stop the music
                        session.stop_playback()
                        playing.cancel()
                        await asyncio.gather(playing, return_exceptions=True)
                        session.stop_playback()
            try:  # "say:TEXT" is spoken (the ACD's position/EWT), anything else is a prompt file
                pcm = await (self.sw.media.say(text[4:]) if text.startswith("say:") else self.sw.media.prompt(text))
            except Exception as exc:  # noqa: BLE001 - a broken announcement never ends the wait
                self.log.error("queue %s: announcement %r: %s", wait.queue, text, exc)
                continue
            await session.play(BufferSource(pcm))

    def offer_agent(self, agent: str) -> list[OutboundLeg]:
        """Ring every registered phone of ``agent`` for this waiting caller (the ACD's Offer)."""
        groups, _status, _reason = self.sw.targets(RouteDecision("acd", "user", agent, agent))
        if not groups or self.state is not CallState.ANSWERED or self._transfer_side is None:
            return []
        legs = []
        for target in groups[0]:
            target.label = f"agent:{agent}"
            leg = OutboundLeg(self, target, self.media_ip)
            self.sw.register_leg(leg.call_id, leg.tag, self, leg)
            self.forks.append(leg)
            self.tried.append(leg)
            self.log.info("offering to agent %s (%s)", agent, target.dest)
            from_, to, max_forwards, extra = self._b_identity(target)
            leg.start(from_, to, max_forwards, self._offer_for_b(leg), extra)
            legs.append(leg)
        return legs

    def leg_failed(self, leg: OutboundLeg) -> None:
        self._leg_done(leg)
        self._maybe_finish()

    def queue_connect(self, leg: OutboundLeg, response: Response) -> None:
        """The ACD connected this caller to the agent whose phone answered on ``leg``."""
        self._transfer_answered(leg, response)

    # ------------------------------------------------------------------ recording
    def record_policy(self) -> str:
        """The route's recording policy (off | answer | bridge); a queue's adds to it when the call joins."""
        return self.sw.route_record_policy(self.decision.rule)

    def start_recording(self, source: Any) -> None:
        """Record this call from ``source`` on (the caller leg's session or relay: what the caller says left,
        what it hears right)."""
        if self.recording is not None:
            self.recording.attach(source)
            return
        from datetime import datetime
        now = datetime.now().astimezone()
        attempt = self.queue_attempts[-1] if self.queue_attempts else {}
        variables = {"date": now.strftime("%Y-%m-%d"), "time": now.strftime("%H%M%S"),
                     "caller": self.caller_number(), "called": self.decision.number,
                     "queue": attempt.get("queue") or "", "agent": attempt.get("agent") or ""}
        from ..app import build_cdr
        meta = {"call_id": self.id, "cdr": build_cdr(self, {}).to_json_dict()}
        self.recording = self.sw.recorder.start(self.id, variables, meta)
        if self.recording is None:   # disk full, no permission...: the call goes on, the CDR says why
            self.recording_error = self.sw.recorder.last_error
            return
        self.recording.attach(source)

    async def recording_beep(self) -> None:
        """``[recording] beep``: a short tone to the caller once a recording has started on media the switch plays
        (a flow, a queue's hold). A recording that starts at the bridge gets none: the relay forwards the two
        parties' audio untouched (a flow can announce it before its transfer)."""
        if self.sw.config.recording.beep and self.recording is not None and self.session is not None:
            await self.session.play(self.sw.media.tone("beep"))

    def set_recording_paused(self, paused: bool) -> bool:
        """Pause (the stretch is kept as silence and marked) or resume; False if nothing changed."""
        if self.recording is None:
            return False
        done = self.recording.pause() if paused else self.recording.resume()
        if done:
            self.log.info("recording %s", "paused" if paused else "resumed")
        return done

    def _transfer_timeout(self) -> None:
        self.log.info("transfer: no answer within %ss", self.sw.config.calls.ring_timeout_s)
        self.groups.clear()
        for leg in self.forks:
            leg.cancel()
        self._transfer_done("no answer")

    def _transfer_done(self, outcome: str | None) -> None:
        if self._transfer is not None and not self._transfer.done():
            self._transfer.set_result(outcome)

    def _transfer_answered(self, leg: OutboundLeg, response: Response) -> None:
        """The transfer target answered: the session's sockets become the relay's caller side."""
        self.b = leg
        for other in self.forks:
            if other is not leg:
                other.cancel()
        leg.ack()
        session, side = self.session, self._transfer_side
        self.session_stats = self.rtp_stats().get("a", {})
        if self.meter_task is not None:
            self.meter_task.cancel()
        self.relay = self.sw.relay.join(session, side)
        self.session = None
        self._set_remote(leg, sdp_of(response))
        self._transcode_to_caller(sdp_of(response))
        if self.recording is not None:   # recording since the answer: the same file goes on
            self.recording.attach(self.relay)
        elif self.record_at_bridge or self.record_policy() in ("answer", "bridge"):
            self.start_recording(self.relay)
        self.log.info("transferred: bridged to %s", leg.target.label or leg.target.uri)
        self._transfer_done(None)

    def _transcode_to_caller(self, sdp: SessionDescription | None) -> None:
        """The caller keeps the codec it agreed with the flow; translate when the callee chose the other law."""
        mine = answer_codec(self.a_answer) if self.a_answer is not None else None
        chosen = answer_codec(sdp) if sdp is not None else None
        if mine is None or chosen is None or mine.name.upper() == chosen.name.upper():
            return
        self.relay.a.transcode({mine.pt: (chosen.pt, transcode_table(mine.name, chosen.name))})
        self.relay.b.transcode({chosen.pt: (mine.pt, transcode_table(chosen.name, mine.name))})
        self.log.info("transcoding %s (caller) <-> %s (callee)", mine.name, chosen.name)

    async def _run_service(self, service: Any) -> None:
        try:
            await service(self)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a service bug ends its call, never the switch
            self.log.exception("service %s failed: %s", self.decision.target, exc)
            self.hangup(41, "system")

    def _next_group(self) -> None:
        while self.groups:
            group = self.groups.pop(0)
            trunk = group[0].trunk
            if trunk is not None and trunk is not self.trunk_out and trunk.at_capacity():
                self.log.warning("trunk %s at its %d-call cap", trunk.name, trunk.config.max_calls)
                self.status = 503
                continue
            if trunk is not None and trunk is not self.trunk_out:  # one slot per call, failovers included
                if self.trunk_out is not None:
                    self.trunk_out.active -= 1
                trunk.active += 1
                self.trunk_out = trunk
            self.forks = [OutboundLeg(self, t, self.media_ip) for t in group]
            for leg in self.forks:
                self.sw.register_leg(leg.call_id, leg.tag, self, leg)
                self.tried.append(leg)
                self.log.info("trying %s (%s)", leg.target.label or leg.target.uri, leg.target.dest)
                from_, to, max_forwards, extra = self._b_identity(leg.target)
                leg.start(from_, to, max_forwards, self._offer_for_b(leg), extra)
            return
        if self._transfer is not None:
            self._transfer_done(f"{self.status or 480} (every target failed)")
            return
        self.fail(self.status or 480, None)

    def _b_identity(self, target: Target) -> tuple[NameAddr, NameAddr, int, Headers]:
        """From/To/Max-Forwards/extra headers of a B-leg INVITE, with trunk caller-ID rules."""
        a_req = self.a.request
        caller = a_req.from_
        from_ = NameAddr(caller.display, SipURI(user=_user(caller.uri), host=self.sw.config.sip.domain), {})
        extra = Headers()
        trunk = target.trunk
        if trunk is not None:
            cfg = trunk.config
            identity = f"<{SipURI(user=_user(caller.uri), host=self.sw.config.sip.domain)}>"
            if cfg.caller_id:
                from_ = NameAddr(None, SipURI(user=cfg.caller_id, host=self.sw.config.sip.domain), {})
            if cfg.privacy:
                from_ = NameAddr("Anonymous", SipURI(user="anonymous", host="anonymous.invalid"), {})
                extra.add("Privacy", "id")
            if cfg.pai or cfg.privacy:
                extra.add("P-Asserted-Identity", identity)
        to = NameAddr(None, target.uri.copy(), {})
        to.uri.params.clear()
        mf = a_req.max_forwards
        return from_, to, (69 if mf is None else mf - 1), extra

    def _offer_for_b(self, leg: OutboundLeg) -> bytes:
        if self._transfer_side is not None and self.a_answer is not None:
            # the caller's media stays as agreed with the flow: offer its codec (and the other law)
            offer = with_transcoding(self.a_answer)
            return leg.origin.stamp(self._anchored(offer, self._transfer_side.local_port)).to_bytes()
        offer = self.a.offer
        if offer is None:
            return b""  # late offer: the callee's 2xx will carry it
        return leg.origin.stamp(self._anchored(with_transcoding(offer), self.relay.b.local_port)).to_bytes()

    def _toward_a(self, sdp: SessionDescription) -> SessionDescription:
        """B's answer as an answer to A's offer, transcoding when B chose a codec A never offered."""
        offer = self.a.offer
        chosen = answer_codec(sdp)
        if offer is None or chosen is None or offered_codec(offer, chosen.name) is not None:
            self.relay.a.transcode(None)
            self.relay.b.transcode(None)
            return sdp
        try:
            answer, mine = retarget_answer(sdp, offer)
        except SdpError as exc:
            self.log.warning("cannot transcode: %s", exc)
            return sdp
        to_b, to_a = transcode_table(mine.name, chosen.name), transcode_table(chosen.name, mine.name)
        self.relay.a.transcode({mine.pt: (chosen.pt, to_b)})
        self.relay.b.transcode({chosen.pt: (mine.pt, to_a)})
        self.a.codec = f"{mine.name}/{mine.rate}"
        self.log.info("transcoding %s (caller) <-> %s (callee)", mine.name, chosen.name)
        return answer

    def _anchored(self, sdp: SessionDescription, port: int) -> SessionDescription:
        """Point the first audio stream at our relay; other streams are declined (one relay per call)."""
        ports, used = [], False
        for m in sdp.media:
            take = not used and m.kind == "audio" and m.port != 0
            used = used or take
            ports.append(port if take else 0)
        return anchor(sdp, self.media_ip, ports)

    def _set_remote(self, leg: Leg, sdp: SessionDescription | None, side: Any = None) -> None:
        if sdp is None:
            return
        side = side or (self.relay.a if leg is self.a else self.relay.b)
        for i, m in enumerate(sdp.media):
            if m.kind == "audio" and m.port != 0:
                host, port = sdp.media_address(i)
                try:
                    side.set_remote(host, port, m.rtcp_port)
                except ValueError as exc:  # a host name or the wrong IP family: no media, but no crash
                    self.log.warning("cannot relay to %s:%s: %s", host, port, exc)
                return

    # ------------------------------------------------------------------ B-leg events
    def on_b_response(self, leg: OutboundLeg, response: Response) -> None:
        code = response.status
        if code == 100:
            return
        late = (self.state is CallState.ANSWERED and self._transfer is None and self._queue is None
                and leg is not self.b)
        if self.state is CallState.ENDED or (self.b is not None and leg is not self.b) or late:
            if 200 <= code < 300:  # a fork answered too late: take the call and hang it up
                leg.ack()
                leg.bye()
            self._leg_done(leg)
            self._maybe_finish()
            return
        if leg is self.b and 200 <= code < 300:  # a retransmitted 2xx: our ACK was lost, nothing else changed
            if not self._deferred_ack:
                leg.ack()
            return
        if self._queue is not None:
            self.sw.acd.agent_response(self._queue, leg, response)
            return
        if self._transfer is not None:
            if 200 <= code < 300:
                self._transfer_answered(leg, response)
            elif code >= 300:
                self._b_failed(leg, code, response)
            return
        if code < 200:
            self._b_provisional(leg, code, response)
        elif code < 300:
            self._b_answered(leg, response)
        else:
            self._b_failed(leg, code, response)

    def _b_provisional(self, leg: OutboundLeg, code: int, response: Response) -> None:
        self.state = CallState.RINGING
        sdp = sdp_of(response)
        body = b""
        if sdp is not None and self.a.offer is not None:
            self._set_remote(leg, sdp)
            body = self.a.origin.stamp(self._anchored(self._toward_a(sdp), self.relay.a.local_port)).to_bytes()
        self.a.provisional(183 if body else 180, None, body)

    def _b_answered(self, leg: OutboundLeg, response: Response) -> None:
        self.b = leg
        for other in self.forks:
            if other is not leg:
                other.cancel()
        sdp = sdp_of(response)
        self._set_remote(leg, sdp)
        body = b""
        if sdp is not None:
            body = self.a.origin.stamp(self._anchored(self._toward_a(sdp), self.relay.a.local_port)).to_bytes()
        if self.a.offer is None:
            self._deferred_ack = True  # late offer: B's ACK carries the caller's answer
        else:
            leg.ack()
        self.a.answer(body)
        self._answered()
        if self.record_policy() in ("answer", "bridge"):
            self.start_recording(self.relay)

    def _b_failed(self, leg: OutboundLeg, code: int, response: Response) -> None:
        self._leg_done(leg)
        self.status = code
        self.q850 = _reason_cause(response) or q850_for_status(code)
        trunk = leg.target.trunk
        if trunk is not None and leg.target.gateway is not None and (code in (408, 503) or leg.local_response):
            trunk.mark_dead(leg.target.gateway, self.sw.now(), f"{code} {response.reason}")
        if any(f.status is None for f in self.forks):
            return  # other forks are still ringing
        if trunk is not None and (trunk.fails_over_on(code) or leg.local_response) and self.groups:
            self.log.info("failing over after %d from %s", code, leg.target.dest)
            self._next_group()
            return
        if self._transfer is not None:
            self._transfer_done(f"{code} {response.reason}")
            return
        self.fail(_MAP_TO_CALLER.get(code, code), None if code in _MAP_TO_CALLER else response.reason)

    def _leg_done(self, leg: OutboundLeg) -> None:
        if leg.status is not None and leg is not self.b:
            self.sw.unregister_leg(leg.call_id, leg.tag)

    # ------------------------------------------------------------------ caller events
    def on_cancel(self) -> None:
        if self.state in (CallState.ANSWERED, CallState.ENDED):
            return
        self.cancelled = True
        self.hangup_by = "caller"
        for leg in self.forks:
            leg.cancel()
        self.a.reject(487, "Request Terminated", cause=16)
        self._end(487)

    def on_request(self, leg: Leg, ev: RequestReceived) -> None:
        """An in-dialog request on one of our legs."""
        req, txn = ev.request, ev.txn
        method = req.method
        if method == "ACK":
            if leg is self.a and self._deferred_ack and self.b is not None:
                self._deferred_ack = False
                sdp = sdp_of(req)
                self._set_remote(self.a, sdp)
                body = b"" if sdp is None else self.b.origin.stamp(
                    self._anchored(sdp, self.relay.b.local_port)).to_bytes()
                self.b.ack(body)
            return
        assert txn is not None
        if leg.dialog is not None and not leg.dialog.check_request(req):
            self.sw.stack.reply(txn, 500, "CSeq Out of Order")
            return
        if method == "BYE":
            self.sw.stack.reply(txn, 200, "OK")
            leg.ended = True
            self.hangup_by = "caller" if leg is self.a else "callee"
            self.q850 = _reason_cause(req) or 16
            if leg is self.a:
                self.hangup(16, "caller")
            elif self.state is CallState.ANSWERED:
                self.hangup(16, "callee")
            else:  # BYE on an early dialog from a fork: that fork is gone
                leg.status = leg.status or 487
                if all(f.status is not None for f in self.forks):
                    self.fail(480, None)
            return
        if method == "OPTIONS":
            self.sw.stack.reply(txn, 200, "OK", headers=Headers([("Allow", _ALLOW)]))
            return
        if method in ("INVITE", "UPDATE", "INFO", "MESSAGE", "NOTIFY"):
            self._forward(leg, ev)
            return
        self.sw.stack.reply(txn, 405, "Method Not Allowed", headers=Headers([("Allow", _ALLOW)]))

    def _forward(self, leg: Leg, ev: RequestReceived) -> None:
        """Pass an in-dialog request (re-INVITE for hold/unhold, UPDATE, INFO …) to the other leg."""
        req, txn = ev.request, ev.txn
        assert txn is not None
        method = req.method
        if method == "INFO":
            event = self._info_dtmf(leg, req, txn)
            if event is False:
                return  # answered 400
            if self.session is not None:
                if event is not None:
                    self.session.info_dtmf(event)
                self.sw.stack.reply(txn, 200, "OK")
                return
        if self.session is not None and method in ("INVITE", "UPDATE"):
            self._service_reoffer(txn, req)
            return
        other: Leg | None = self.b if leg is self.a else self.a
        if other is None or other.dialog is None or self.state is not CallState.ANSWERED:
            self.sw.stack.reply(txn, 491 if method == "INVITE" else 481,
                                None if method == "INVITE" else "Call Does Not Exist")
            return
        if method in ("INVITE", "UPDATE") and (leg.pending is not None or other.pending is not None):
            self.sw.stack.reply(txn, 491, "Request Pending")
            return
        body, ctype = req.body, req.content_type
        sdp = sdp_of(req) if method in ("INVITE", "UPDATE") else None
        if sdp is not None:
            self._set_remote(leg, sdp)
            leg.remember_sdp(sdp)
            other_port = self.relay.b.local_port if other is self.b else self.relay.a.local_port
            body, ctype = other.origin.stamp(self._anchored(sdp, other_port)).to_bytes(), SDP
        if method in ("INVITE", "UPDATE"):
            leg.pending = txn

        def relay_back(ctxn: ClientTransaction, response: Response) -> None:
            code = response.status
            if code < 200:
                return
            leg.pending = None
            answer_sdp = sdp_of(response)
            out = b""
            if answer_sdp is not None and self.relay is not None:
                self._set_remote(other, answer_sdp)
                other.remember_sdp(answer_sdp)
                my_port = self.relay.a.local_port if leg is self.a else self.relay.b.local_port
                out = leg.origin.stamp(self._anchored(answer_sdp, my_port)).to_bytes()
            elif response.body and method not in ("INVITE", "UPDATE"):
                out = response.body
            if method == "INVITE" and 200 <= code < 300 and other.dialog is not None:
                ack = other.dialog.create_request("ACK")
                ack.headers.set("CSeq", f"{ctxn.request.cseq[0]} ACK")  # the re-INVITE's, not the first one's
                self.sw.stack.send_ack(ack, other.dialog.peer)
            h = Headers()
            if leg.dialog is not None and code < 300:
                h.add("Contact", leg.dialog.contact)
            if out:
                h.add("Content-Type", SDP if answer_sdp is not None else (response.content_type or SDP))
            self.sw.stack.reply(txn, code, response.reason, headers=h, body=out)

        other.send(method, body, ctype, on_response=relay_back)

    def _info_dtmf(self, leg: Leg, req: Any, txn: Any) -> Any:
        """A SIP INFO DTMF digit (dtmf-relay / dtmf bodies): the event, None for other INFO, False if
        the body was malformed (answered 400 here)."""
        try:
            event = parse_info(req.content_type or "", req.body)
        except ValueError as exc:
            self.sw.stack.reply(txn, 400, f"Bad DTMF Body ({exc})"[:80])
            return False
        if event is not None and self.session is None:  # a terminated session logs its own digits
            self.dtmf.append({"leg": leg.role, "digit": event.digit, "source": event.source,
                              "duration_ms": event.duration_ms,
                              "at": round(self.sw.wall() - (self.answer_ts or self.start_ts), 3)})
            self.log.info("dtmf %s (info) from leg %s", event.digit, leg.role)
        return event

    def _service_reoffer(self, txn: Any, req: Any) -> None:
        sdp = sdp_of(req)
        body = self._terminate(sdp) if sdp is not None else None
        if body is None:
            self.sw.stack.reply(txn, 488, "Not Acceptable Here")
            return
        self.sw.stack.reply(txn, 200, "OK", headers=Headers([("Contact", self.a.dialog.contact),
                                                             ("Content-Type", SDP)]), body=body)

    # ------------------------------------------------------------------ endings
    def _answered(self) -> None:
        self.state = CallState.ANSWERED
        self.answer_ts = self.sw.wall()
        self.status = 200
        self._cancel_timers()
        self._arm(self.sw.config.calls.max_duration_s, self._max_duration)
        self.log.info("answered")

    def _ring_timeout(self) -> None:
        if self.state in (CallState.ROUTING, CallState.RINGING):
            self.log.info("no answer within %ss", self.sw.config.calls.ring_timeout_s)
            for leg in self.forks:
                leg.cancel()
            self.groups.clear()
            self.q850 = 19
            self.a.reject(480, "Temporarily Unavailable", cause=19)
            self._end(480)

    def _max_duration(self) -> None:
        self.log.info("max duration %ss reached", self.sw.config.calls.max_duration_s)
        self.hangup(102, "system")

    def hangup(self, cause: int = 16, by: str = "system") -> None:
        """End the call from any state: BYE answered legs, CANCEL ringing ones, 4xx/5xx the caller."""
        if self.state is CallState.ENDED:
            return
        self.hangup_by = self.hangup_by or by
        if self.state is CallState.ANSWERED:
            self.a.bye(cause)
            if self.b is not None:
                self.b.bye(cause)
            for leg in self.forks:  # a flow's transfer still ringing
                if leg is not self.b:
                    leg.cancel()
            self._transfer_done("the call ended")
            self._end(200)
            return
        for leg in self.forks:
            leg.cancel()
        if by == "caller":
            self.cancelled = True
            self.a.reject(487, "Request Terminated", cause=cause)
            self._end(487)
        else:
            self.a.reject(503, "Service Unavailable", cause=cause)
            self._end(503)

    def fail(self, status: int, reason: str | None, headers: Headers | None = None) -> None:
        if self.state is CallState.ENDED:
            return
        self.q850 = self.q850 or q850_for_status(status)
        self.a.reject(status, reason, cause=self.q850, headers=headers)
        self._end(status)

    def on_ack_timeout(self) -> None:
        """The caller never ACKed our 2xx (§13.3.1.4): tear the call down."""
        self.log.warning("no ACK for our 200 OK")
        self.hangup(102, "system")

    def _end(self, status: int) -> None:
        if self.state is CallState.ENDED:
            return
        if self.state is not CallState.ANSWERED:
            self.status = status
        self.state = CallState.ENDED
        self.end_ts = self.sw.wall()
        self.sw.acd.call_gone(self)
        self._cancel_timers()
        if self.trunk_out is not None:
            self.trunk_out.active -= 1
        self._arm(FORK_WAIT_S, self.finish)
        self._maybe_finish()

    def _maybe_finish(self) -> None:
        """The CDR waits for the forks still ringing to give their final status (487 after CANCEL)."""
        if self.state is CallState.ENDED and all(f.status is not None for f in self.forks):
            self.finish()

    def finish(self) -> None:
        """Hand the ended call to the switch for its CDR, exactly once."""
        if self.finished:
            return
        self.finished = True
        self._cancel_timers()
        self.sw.call_ended(self)

    def disposition(self) -> str:
        if self.answer_ts is not None:
            return "ANSWERED"
        return disposition_for(self.status or 500, self.cancelled)

    def _arm(self, delay: float, fn: Any) -> None:
        self._timers.append(self.sw.loop.call_later(delay, fn))

    def _cancel_timers(self) -> None:
        for t in self._timers:
            t.cancel()
        self._timers.clear()

    def rtp_stats(self) -> dict:
        if self.relay is not None:
            stats = self.relay.stats()
            if self.session_stats is not None:  # the flow's stretch: digits it heard, levels
                stats["a"]["dtmf"] = self.session_stats.get("dtmf", [])
                if "levels" in self.session_stats:
                    stats["a"]["levels"] = self.session_stats["levels"]
            return stats
        if self.session is not None:
            stats = self.session.stats()
            if self.meter is not None:
                self.meter.drain()
                stats["levels"] = self.meter.stats()
            return {"a": stats}
        return {}

    def close_media(self) -> None:
        for task in (self.service_task, self.meter_task):
            if task is not None and not task.done():
                task.cancel()
        for thing in (self.relay, self.session):
            if thing is not None:
                thing.close()


_ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE"
FORK_WAIT_S = 5.0  # how long an ended call's CDR waits for forks to confirm they stopped ringing


def _user(uri: Any) -> str | None:
    return uri.user if isinstance(uri, SipURI) else None


def _reason_cause(message: Any) -> int | None:
    """The Q.850 cause of a Reason header (RFC 3326), if any."""
    for value in message.headers.get_all("Reason"):
        if value.strip().upper().startswith("Q.850"):
            for part in value.split(";")[1:]:
                name, _, v = part.strip().partition("=")
                if name.lower() == "cause" and v.strip().isdigit():
                    return int(v.strip())
    return None
