"""The asyncio glue around the sans-IO SIP core: parse, run transactions, keep one timer armed.

``SipStack`` is the one place where bytes, the event loop's clock and the transaction layer meet.
The transaction user (the ``Switch``) gets requests through ``TransactionUser`` and responses
through the callback it passed with each request it sent.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Callable, Protocol

from .addr import Addr
from .message import Headers, ParseError, Request, Response, error_response, make_response, parse_message
from .transaction import (
    MAGIC_COOKIE, AckTimeout, ClientTransaction, Event, RequestReceived, ResponseReceived, ServerTransaction,
    Timers, TransactionLayer, TransactionTimeout, Transmit, TransportFailed,
)
from .transport import Transports
from .uri import Via

log = logging.getLogger("softswitch.sip")

OnResponse = Callable[[ClientTransaction, Response], None]


class TransactionUser(Protocol):
    def on_request(self, event: RequestReceived) -> None: ...
    def on_stray_2xx(self, response: Response) -> None: ...
    def on_ack_timeout(self, call_id: str, cseq: int) -> None: ...


def new_branch() -> str:
    return MAGIC_COOKIE + secrets.token_hex(8)


class _LogLimiter:
    """Bad input is logged once per message, but never floods the log: at most `rate` lines/s."""

    def __init__(self, rate: int = 20) -> None:
        self.rate = rate
        self.window = 0
        self.count = 0
        self.suppressed = 0

    def allow(self) -> bool:
        now = int(time.monotonic())
        if now != self.window:
            if self.suppressed:
                log.warning("%d more bad messages not logged", self.suppressed)
            self.window, self.count, self.suppressed = now, 0, 0
        self.count += 1
        if self.count > self.rate:
            self.suppressed += 1
            return False
        return True


class SipStack:
    def __init__(self, loop: asyncio.AbstractEventLoop, tu: TransactionUser, timers: Timers | None = None,
                 max_message_bytes: int = 65535, user_agent: str = "softswitch") -> None:
        self.loop = loop
        self.tu = tu
        self.layer = TransactionLayer(timers)
        self.transports = Transports(loop, self._on_bytes, self._on_transport_error, max_message_bytes)
        self.max_message_bytes = max_message_bytes
        self.user_agent = user_agent
        self.counters = {"bad_messages": 0, "oversize": 0, "received": 0}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._bad_log = _LogLimiter()

    async def listen(self, transport: str, host: str, port: int) -> None:
        await self.transports.listen(transport, host, port)

    def close(self) -> None:
        if self._timer:
            self._timer.cancel()
        self.transports.close()

    # -- addresses
    def local_hostport(self, transport: str) -> str:
        listener = self.transports.local(transport)
        host = f"[{listener.host}]" if ":" in listener.host else listener.host
        return f"{host}:{listener.port}"

    def contact(self, transport: str, user: str | None = None) -> str:
        param = "" if transport == "udp" else f";transport={transport}"
        user_part = f"{user}@" if user else ""
        return f"<sip:{user_part}{self.local_hostport(transport)}{param}>"

    # -- inbound
    def _on_bytes(self, data: bytes, source: Addr) -> None:
        self.counters["received"] += 1
        if len(data) > self.max_message_bytes:
            self.counters["oversize"] += 1
            if self._bad_log.allow():
                log.warning("dropped %d-byte message from %s: over the %d-byte cap",
                            len(data), source, self.max_message_bytes)
            return
        if not data.strip(b"\r\n \t\x00"):
            return  # keep-alive
        try:
            message = parse_message(data)
            events = self.layer.receive(message, source, self.loop.time())
        except ParseError as exc:
            self.counters["bad_messages"] += 1
            if self._bad_log.allow():
                log.warning("bad message from %s: %s (%d)", source, exc.reason, exc.status)
            answer = error_response(exc)
            if answer is not None:
                self.transports.send(answer.to_bytes(), source)
            return
        self._process(events)

    def _on_transport_error(self, dest: Addr, exc: Exception) -> None:
        log.warning("transport error to %s: %s", dest, exc)
        self._process(self.layer.transport_failed(dest))

    def _process(self, events: list[Event]) -> None:
        for ev in events:
            try:
                self._dispatch(ev)
            except Exception:  # a TU bug must not take the stack down with it
                log.exception("error handling %s", type(ev).__name__)
        self._rearm()

    def _dispatch(self, ev: Event) -> None:
        if isinstance(ev, Transmit):
            self.transports.send(ev.data, ev.dest)
        elif isinstance(ev, RequestReceived):
            self.tu.on_request(ev)
        elif isinstance(ev, ResponseReceived):
            if ev.txn is None:
                self.tu.on_stray_2xx(ev.response)
            elif ev.txn.owner is not None:
                ev.txn.owner(ev.txn, ev.response)
        elif isinstance(ev, TransactionTimeout):
            txn = ev.txn
            if isinstance(txn, ClientTransaction) and txn.owner is not None:
                txn.owner(txn, _local_response(txn.request, 408, "Request Timeout"))
        elif isinstance(ev, TransportFailed):
            if ev.txn.owner is not None:
                ev.txn.owner(ev.txn, _local_response(ev.txn.request, 503, "Service Unavailable"))
        elif isinstance(ev, AckTimeout):
            self.tu.on_ack_timeout(ev.call_id, ev.cseq)

    def _rearm(self) -> None:
        deadline = self.layer.next_deadline()
        if deadline == self._timer_at:
            return
        if self._timer:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = None if deadline is None else self.loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self._process(self.layer.handle_timers(self.loop.time()))

    # -- outbound
    def _stamp(self, request: Request, dest: Addr, via: str | None = None) -> None:
        if via is None:
            listener = self.transports.local(dest.transport)
            via = str(Via(transport=dest.transport.upper(), host=listener.host, port=listener.port,
                          params={"branch": new_branch(), "rport": None}))
        request.headers.add("Via", via, first=True)
        if "Max-Forwards" not in request.headers:
            request.headers.add("Max-Forwards", "70")
        if "User-Agent" not in request.headers and self.user_agent:
            request.headers.add("User-Agent", self.user_agent)

    def send_request(self, request: Request, dest: Addr, on_response: OnResponse,
                     via: str | None = None) -> ClientTransaction:
        """Start a client transaction; ``on_response`` also gets a local 408/503 on timeout/failure.
        ``via`` reuses a Via (and so the branch): CANCEL must match its INVITE (§9.1)."""
        self._stamp(request, dest, via)
        txn, events = self.layer.send_request(request, dest, self.loop.time(), on_response)
        self._process(events)
        return txn

    def send_ack(self, ack: Request, dest: Addr) -> None:
        """ACK for a 2xx is its own transaction-less request (§13.2.2.4)."""
        self._stamp(ack, dest)
        self.transports.send(ack.to_bytes(), dest)

    def respond(self, txn: ServerTransaction, response: Response) -> None:
        if "Server" not in response.headers and self.user_agent:
            response.headers.add("Server", self.user_agent)
        self._process(self.layer.send_response(txn, response, self.loop.time()))

    def reply(self, txn: ServerTransaction, status: int, reason: str | None = None, to_tag: str | None = None,
              headers: Headers | None = None, body: bytes = b"") -> Response:
        response = make_response(txn.request, status, reason, to_tag)
        if headers is not None:
            for name, value in headers:
                response.headers.add(name, value)
        response.body = body
        self.respond(txn, response)
        return response


def _local_response(request: Request, status: int, reason: str) -> Response:
    """What the TU sees when no response came: RFC 3261 says act as if this status arrived."""
    response = make_response(request, status, reason)
    response.headers.set("X-Local-Response", "1")
    return response
