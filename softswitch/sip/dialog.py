"""Dialog state (RFC 3261 §12), sans-IO: identifiers, route set, CSeq, remote target.

In-dialog requests follow the *flow* the dialog was made on (``peer``): the source address of the
peer's INVITE, or the address we sent ours to. That is what keeps phones behind NAT reachable
(the Contact they write is often a private address) — the RFC 5626 idea without the extension.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from enum import Enum

from .addr import Addr
from .message import Headers, Request, Response
from .uri import NameAddr, SipURI


def new_tag() -> str:
    return secrets.token_hex(6)


class DialogState(Enum):
    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


@dataclass(eq=False)
class Dialog:
    call_id: str
    local_tag: str
    remote_tag: str | None
    local: NameAddr           # our From (UAC) / To (UAS), with our tag
    remote: NameAddr          # their To (UAC) / From (UAS), with their tag
    remote_target: SipURI     # their Contact
    route_set: list[str]
    local_cseq: int
    remote_cseq: int | None
    peer: Addr                # the flow in-dialog requests go out on
    contact: str              # our Contact header value
    state: DialogState = DialogState.EARLY
    invite_cseq: int = 0      # CSeq of the INVITE that made the dialog (2xx ACK matching)
    extra: dict = field(default_factory=dict)

    @property
    def id(self) -> tuple[str, str, str | None]:
        return (self.call_id, self.local_tag, self.remote_tag)

    @classmethod
    def as_uas(cls, request: Request, source: Addr, local_tag: str, contact: str) -> "Dialog":
        """§12.1.1: the dialog a UAS creates when it answers an INVITE."""
        local = request.to.copy()
        local.tag = local_tag
        targets = request.contacts
        return cls(
            call_id=request.call_id, local_tag=local_tag, remote_tag=request.from_.tag,
            local=local, remote=request.from_,
            remote_target=_target(targets, request), route_set=request.headers.get_all("Record-Route"),
            local_cseq=secrets.randbelow(10000) + 1, remote_cseq=request.cseq[0],
            peer=source, contact=contact, invite_cseq=request.cseq[0])

    @classmethod
    def as_uac(cls, request: Request, response: Response, peer: Addr, contact: str) -> "Dialog":
        """§12.1.2: the dialog a UAC creates from a 1xx/2xx with a To tag."""
        targets = response.contacts
        return cls(
            call_id=request.call_id, local_tag=request.from_.tag or "", remote_tag=response.to.tag,
            local=request.from_, remote=response.to,
            remote_target=_target(targets, request),
            route_set=list(reversed(response.headers.get_all("Record-Route"))),
            local_cseq=request.cseq[0], remote_cseq=None, peer=peer, contact=contact,
            state=DialogState.CONFIRMED if 200 <= response.status < 300 else DialogState.EARLY,
            invite_cseq=request.cseq[0])

    def create_request(self, method: str, body: bytes = b"", content_type: str | None = None,
                       headers: Headers | None = None) -> Request:
        """§12.2.1.1. ACK reuses the INVITE's CSeq number; everything else takes the next one.
        The stack adds Via and Max-Forwards."""
        if method == "ACK":
            cseq = self.invite_cseq
        else:
            self.local_cseq += 1
            cseq = self.local_cseq
        h = headers.copy() if headers is not None else Headers()
        for route in self.route_set:
            h.add("Route", route)
        h.add("From", str(self.local))
        h.add("To", str(self.remote))
        h.add("Call-ID", self.call_id)
        h.add("CSeq", f"{cseq} {method}")
        h.add("Contact", self.contact)
        if content_type and body:
            h.add("Content-Type", content_type)
        return Request(method, self.remote_target.copy(), h, body)

    def check_request(self, request: Request) -> bool:
        """§12.2.2: in-dialog requests must have rising CSeq; also refresh the remote target."""
        cseq = request.cseq[0]
        if request.method not in ("ACK", "CANCEL"):
            if self.remote_cseq is not None and cseq <= self.remote_cseq:
                return False
            self.remote_cseq = cseq
        if request.method in ("INVITE", "UPDATE") and request.contacts:
            self.remote_target = _target(request.contacts, request)
        return True

    def on_response(self, response: Response) -> None:
        """A 2xx to a target-refresh request (re-INVITE, UPDATE) carries the new remote target."""
        if 200 <= response.status < 300 and response.cseq[1] in ("INVITE", "UPDATE") and response.contacts:
            uri = response.contacts[0].uri
            if isinstance(uri, SipURI):
                self.remote_target = uri
        if 200 <= response.status < 300 and response.cseq[1] == "INVITE":
            self.state = DialogState.CONFIRMED
            self.remote = response.to


def _target(contacts: list[NameAddr], request: Request) -> SipURI:
    for c in contacts:
        if isinstance(c.uri, SipURI):
            return c.uri.copy()
    uri = request.uri
    return uri.copy() if isinstance(uri, SipURI) else SipURI(host="invalid")
