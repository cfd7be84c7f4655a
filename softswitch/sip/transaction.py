"""RFC 3261 §17 transactions (with RFC 6026's Accepted state), sans-IO.

The layer is fed parsed messages, requests to send and the current time; it returns events:
``Transmit`` for the transport and the rest for the transaction user (TU). Timers live in one heap;
the asyncio glue asks ``next_deadline()`` and calls ``handle_timers(now)``. Nothing here reads a clock,
touches a socket or sleeps, so every timer path is unit-tested with an injected ``now``.

Beyond §17 proper, the layer also keeps the UAS core's 2xx-until-ACK retransmission (§13.3.1.4),
because it already sees every ACK and owns the timer heap.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Union

from .addr import Addr
from .message import Headers, Request, Response

MAGIC_COOKIE = "z9hG4bK"


@dataclass(frozen=True)
class Timers:
    """RFC 3261 timer base values in seconds; the rest derive from them."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0

    @property
    def b(self) -> float:  # also F, H, J, L, M
        return 64 * self.t1


class State(Enum):
    CALLING = "calling"
    TRYING = "trying"
    PROCEEDING = "proceeding"
    ACCEPTED = "accepted"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


# ---------------------------------------------------------------- events

@dataclass(slots=True)
class Transmit:
    """Bytes for the transport."""

    data: bytes
    dest: Addr


@dataclass(slots=True)
class RequestReceived:
    """A new request for the TU. ``txn`` is None for an ACK to a 2xx (it has no transaction).
    For CANCEL, ``cancels`` is the INVITE server transaction it matches (None → answer 481)."""

    request: Request
    source: Addr
    txn: "ServerTransaction | None"
    cancels: "ServerTransaction | None" = None


@dataclass(slots=True)
class ResponseReceived:
    """A response for the TU. ``txn`` is None for a 2xx retransmission after the transaction
    ended: the TU re-sends its ACK (§13.2.2.4)."""

    response: Response
    txn: "ClientTransaction | None"


@dataclass(slots=True)
class TransactionTimeout:
    """Timer B/F fired (client: act as if 408 arrived) or Timer H fired (server: no ACK came)."""

    txn: "ClientTransaction | ServerTransaction"


@dataclass(slots=True)
class AckTimeout:
    """A 2xx was retransmitted for 64*T1 without an ACK: the TU should BYE the dialog (§13.3.1.4)."""

    call_id: str
    cseq: int


@dataclass(slots=True)
class TransportFailed:
    """A client transaction's destination could not be reached (connection refused, ICMP)."""

    txn: "ClientTransaction"


Event = Union[Transmit, RequestReceived, ResponseReceived, TransactionTimeout, AckTimeout, TransportFailed]


# ---------------------------------------------------------------- transactions

@dataclass(eq=False)
class Transaction:
    key: tuple
    request: Request
    peer: Addr
    state: State
    timers: dict[str, float] = field(default_factory=dict)
    intervals: dict[str, float] = field(default_factory=dict)
    owner: Any = None  # the TU object that wants this transaction's events

    @property
    def is_invite(self) -> bool:
        return self.request.method == "INVITE"


@dataclass(eq=False)
class ClientTransaction(Transaction):
    data: bytes = b""
    last_response: Response | None = None


@dataclass(eq=False)
class ServerTransaction(Transaction):
    response_data: bytes | None = None
    last_response: Response | None = None
    dest: Addr | None = None


@dataclass(eq=False)
class _Pending2xx:
    data: bytes
    dest: Addr
    interval: float
    deadline: float


def server_key(request: Request) -> tuple:
    """§17.2.3 matching: branch + sent-by + method, ACK folded onto INVITE;
    RFC 2543 peers (no magic cookie) fall back to dialog identifiers."""
    via = request.top_via
    method = "INVITE" if request.method == "ACK" else request.method
    branch = via.branch or ""
    sent_by = (via.host.lower(), via.port or 0)
    if branch.startswith(MAGIC_COOKIE):
        return (branch, sent_by, method)
    return ("2543", request.call_id, request.cseq[0], request.from_.tag, sent_by, method)


def response_route(request: Request, source: Addr) -> Addr:
    """§18.2.2 + RFC 3581: reliable → back over the connection; rport → the source port;
    otherwise the received address with the Via's sent-by port."""
    if source.reliable or request.top_via.rport is not None:
        return source
    via = request.top_via
    return Addr(source.transport, source.host, via.port or 5060)


def stamp_received(request: Request, source: Addr) -> None:
    """§18.2.1 + RFC 3581: record where the request really came from in its top Via."""
    vias = request.headers.get_all("Via")
    via = request.top_via
    changed = False
    if via.host != source.host:
        via.params["received"] = source.host
        changed = True
    if "rport" in via.params and not via.params["rport"]:
        via.params["rport"] = str(source.port)
        via.params["received"] = source.host
        changed = True
    if changed:
        request.headers.remove("Via")
        request.headers.add("Via", str(via), first=True)
        for rest in vias[1:]:
            request.headers.add("Via", rest)


def ack_for(request: Request, response: Response) -> Request:
    """§17.1.1.3: the ACK a client INVITE transaction sends for a non-2xx final response."""
    h = Headers()
    h.add("Via", request.headers.get_all("Via")[0])
    for route in request.headers.get_all("Route"):
        h.add("Route", route)
    h.add("Max-Forwards", "70")
    h.add("From", request.headers.get("From"))
    h.add("To", response.headers.get("To"))
    h.add("Call-ID", request.headers.get("Call-ID"))
    h.add("CSeq", f"{request.cseq[0]} ACK")
    return Request("ACK", request.uri, h)


class TransactionLayer:
    """All transactions of one SIP endpoint, keyed per §17.1.3/§17.2.3."""

    def __init__(self, timers: Timers | None = None) -> None:
        self.timers = timers or Timers()
        self._client: dict[tuple, ClientTransaction] = {}
        self._server: dict[tuple, ServerTransaction] = {}
        self._pending_2xx: dict[tuple[str, int], _Pending2xx] = {}
        self._heap: list[tuple[float, int, Any, str]] = []
        self._seq = itertools.count()
        self.counters = {"retransmissions": 0, "absorbed": 0, "stray_responses": 0}

    # -- bookkeeping
    def __len__(self) -> int:
        return len(self._client) + len(self._server)

    def pending_client_requests(self) -> int:
        """Client transactions still waiting for a final response (graceful shutdown waits on them)."""
        return sum(1 for t in self._client.values() if t.state in (State.CALLING, State.TRYING, State.PROCEEDING))

    def _arm(self, txn: Transaction | _Pending2xx, name: str, deadline: float) -> None:
        if isinstance(txn, Transaction):
            txn.timers[name] = deadline
        heapq.heappush(self._heap, (deadline, next(self._seq), txn, name))

    def _terminate(self, txn: Transaction) -> None:
        txn.state = State.TERMINATED
        txn.timers.clear()
        table = self._client if isinstance(txn, ClientTransaction) else self._server
        if table.get(txn.key) is txn:
            del table[txn.key]

    def next_deadline(self) -> float | None:
        """The earliest timer, after discarding ones that were cancelled."""
        heap = self._heap
        while heap:
            deadline, _, txn, name = heap[0]
            if self._live(txn, name, deadline):
                return deadline
            heapq.heappop(heap)
        return None

    def _live(self, txn: Any, name: str, deadline: float) -> bool:
        if isinstance(txn, _Pending2xx):
            return txn.deadline > 0 and self._pending_2xx.get(name) is txn
        return txn.timers.get(name) == deadline

    # -- client side
    def send_request(self, request: Request, dest: Addr, now: float, owner: Any = None
                     ) -> tuple[ClientTransaction, list[Event]]:
        """Start a client transaction; the request's top Via must carry a fresh branch."""
        data = request.to_bytes()
        txn = ClientTransaction(key=(request.top_via.branch, request.method), request=request, peer=dest,
                                state=State.CALLING if request.method == "INVITE" else State.TRYING,
                                owner=owner, data=data)
        self._client[txn.key] = txn
        t = self.timers
        if not dest.reliable:
            txn.intervals["A" if txn.is_invite else "E"] = t.t1
            self._arm(txn, "A" if txn.is_invite else "E", now + t.t1)
        self._arm(txn, "B" if txn.is_invite else "F", now + t.b)
        return txn, [Transmit(data, dest)]

    def transport_failed(self, dest: Addr) -> list[Event]:
        """The transport could not reach ``dest``: every client transaction towards it fails."""
        failed = [txn for txn in self._client.values() if txn.peer == dest]
        for txn in failed:
            self._terminate(txn)
        return [TransportFailed(txn) for txn in failed]

    def _on_response(self, response: Response, now: float) -> list[Event]:
        via = response.top_via
        cseq_method = response.cseq[1]
        txn = self._client.get((via.branch, cseq_method))
        if txn is None:
            self.counters["stray_responses"] += 1
            if 200 <= response.status < 300 and cseq_method == "INVITE":
                return [ResponseReceived(response, None)]
            return []
        code = response.status
        events: list[Event] = []
        if txn.is_invite:
            if txn.state in (State.CALLING, State.PROCEEDING):
                txn.timers.pop("A", None)
                if code < 200:
                    txn.state = State.PROCEEDING
                    txn.timers.pop("B", None)  # the TU's ring timeout governs from here (§17.1.1.2)
                elif code < 300:
                    txn.state = State.ACCEPTED
                    txn.timers.clear()
                    self._arm(txn, "M", now + self.timers.b)
                else:
                    txn.state = State.COMPLETED
                    txn.timers.clear()
                    events.append(Transmit(ack_for(txn.request, response).to_bytes(), txn.peer))
                    self._arm(txn, "D", now + (0 if txn.peer.reliable else 32.0))
                txn.last_response = response
                events.append(ResponseReceived(response, txn))
            elif txn.state is State.ACCEPTED and 200 <= code < 300:
                events.append(ResponseReceived(response, txn))  # retransmitted 2xx: TU re-ACKs
            elif txn.state is State.COMPLETED and code >= 300:
                self.counters["absorbed"] += 1
                events.append(Transmit(ack_for(txn.request, response).to_bytes(), txn.peer))
            else:
                self.counters["absorbed"] += 1
            return events
        if txn.state in (State.TRYING, State.PROCEEDING):
            if code < 200:
                txn.state = State.PROCEEDING
            else:
                txn.state = State.COMPLETED
                txn.timers.clear()
                self._arm(txn, "K", now + (0 if txn.peer.reliable else self.timers.t4))
            txn.last_response = response
            return [ResponseReceived(response, txn)]
        self.counters["absorbed"] += 1
        return []

    # -- server side
    def receive(self, message: Request | Response, source: Addr, now: float) -> list[Event]:
        """Feed one parsed message from the transport."""
        if isinstance(message, Response):
            return self._on_response(message, now)
        request = message
        stamp_received(request, source)
        if request.method == "ACK":
            return self._on_ack(request, source, now)
        key = server_key(request)
        txn = self._server.get(key)
        if txn is not None:  # retransmission
            self.counters["absorbed"] += 1
            if txn.response_data is not None and txn.state in (State.PROCEEDING, State.COMPLETED):
                return [Transmit(txn.response_data, txn.dest or txn.peer)]
            return []
        txn = ServerTransaction(key=key, request=request, peer=source,
                                state=State.PROCEEDING if request.method == "INVITE" else State.TRYING,
                                dest=response_route(request, source))
        self._server[key] = txn
        cancels = None
        if request.method == "CANCEL":
            cancels = self._server.get(key[:-1] + ("INVITE",))
            if cancels is not None and cancels.state is not State.PROCEEDING:
                cancels = None  # already answered: nothing left to cancel
        return [RequestReceived(request, source, txn, cancels)]

    def _on_ack(self, ack: Request, source: Addr, now: float) -> list[Event]:
        txn = self._server.get(server_key(ack))
        if txn is not None and txn.state in (State.COMPLETED, State.CONFIRMED):
            if txn.state is State.COMPLETED:  # ACK for our non-2xx: absorbed (§17.2.1)
                txn.state = State.CONFIRMED
                txn.timers.clear()
                self._arm(txn, "I", now + (0 if txn.peer.reliable else self.timers.t4))
            self.counters["absorbed"] += 1
            return []
        pending = self._pending_2xx.pop((ack.call_id, ack.cseq[0]), None)
        if pending is not None:
            pending.deadline = 0.0
        return [RequestReceived(ack, source, None)]

    def send_response(self, txn: ServerTransaction, response: Response, now: float) -> list[Event]:
        """The TU answers a server transaction; the layer owns retransmission and absorption."""
        if txn.state in (State.COMPLETED, State.CONFIRMED, State.TERMINATED, State.ACCEPTED):
            return []  # a final response was already sent: a second one is a TU bug we refuse quietly
        data = response.to_bytes()
        dest = txn.dest or txn.peer
        code = response.status
        txn.last_response = response
        txn.response_data = data
        t = self.timers
        if code < 200:
            if not txn.is_invite:
                txn.state = State.PROCEEDING
            return [Transmit(data, dest)]
        if txn.is_invite:
            if code < 300:
                # RFC 6026 Accepted: absorb INVITE retransmissions; the 2xx itself is re-sent until ACK.
                txn.state = State.ACCEPTED
                txn.response_data = None
                txn.timers.clear()
                self._arm(txn, "L", now + t.b)
                if not dest.reliable:
                    pending = _Pending2xx(data, dest, t.t1, now + t.b)
                    self._pending_2xx[(response.call_id, response.cseq[0])] = pending
                    self._arm(pending, (response.call_id, response.cseq[0]), now + t.t1)
            else:
                txn.state = State.COMPLETED
                if not dest.reliable:
                    txn.intervals["G"] = t.t1
                    self._arm(txn, "G", now + t.t1)
                self._arm(txn, "H", now + t.b)
        else:
            txn.state = State.COMPLETED
            self._arm(txn, "J", now + (0 if dest.reliable else t.b))
        return [Transmit(data, dest)]

    def stop_2xx(self, call_id: str, cseq: int) -> None:
        """The TU gave up on a dialog (e.g. it is sending BYE): stop retransmitting its 2xx."""
        pending = self._pending_2xx.pop((call_id, cseq), None)
        if pending is not None:
            pending.deadline = 0.0

    # -- timers
    def handle_timers(self, now: float) -> list[Event]:
        events: list[Event] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, _, txn, name = heapq.heappop(heap)
            if not self._live(txn, name, deadline):
                continue
            if isinstance(txn, _Pending2xx):
                events.extend(self._fire_2xx(txn, name, now))
            else:
                del txn.timers[name]
                events.extend(self._fire(txn, name, now))
        return events

    def _fire_2xx(self, pending: _Pending2xx, key: tuple[str, int], now: float) -> list[Event]:
        if now >= pending.deadline:
            del self._pending_2xx[key]
            return [AckTimeout(*key)]
        self.counters["retransmissions"] += 1
        pending.interval = min(2 * pending.interval, self.timers.t2)
        heapq.heappush(self._heap, (now + pending.interval, next(self._seq), pending, key))
        return [Transmit(pending.data, pending.dest)]

    def _fire(self, txn: Transaction, name: str, now: float) -> list[Event]:
        t = self.timers
        if name in ("A", "E", "G"):
            if name == "A":
                txn.intervals["A"] *= 2
            else:
                txn.intervals[name] = min(2 * txn.intervals[name], t.t2)
            if name == "E" and txn.state is State.PROCEEDING:
                txn.intervals["E"] = t.t2
            self._arm(txn, name, now + txn.intervals[name])
            self.counters["retransmissions"] += 1
            if isinstance(txn, ClientTransaction):
                return [Transmit(txn.data, txn.peer)]
            assert isinstance(txn, ServerTransaction) and txn.response_data is not None
            return [Transmit(txn.response_data, txn.dest or txn.peer)]
        if name in ("B", "F", "H"):
            self._terminate(txn)
            return [TransactionTimeout(txn)]
        # D, I, J, K, L, M: quiet end of the absorption window
        self._terminate(txn)
        return []
