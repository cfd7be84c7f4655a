"""Call legs: the two independent SIP dialogs a B2BUA joins.

``InboundLeg`` is the UAS side (the caller's INVITE), ``OutboundLeg`` a UAC side (one fork towards a
phone or one attempt on a trunk gateway). Legs know SIP; the ``Call`` decides what to do with them.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from ..sdp import Origin, OriginKeeper, SdpError, SessionDescription
from ..sip.addr import Addr
from ..sip.auth import AuthError, answer_challenge, choose_challenge
from ..sip.dialog import Dialog, DialogState, new_tag
from ..sip.message import Headers, ParseError, Request, Response
from ..sip.transaction import ClientTransaction, RequestReceived, ServerTransaction
from ..sip.uri import NameAddr, SipURI

if TYPE_CHECKING:
    from ..routing.trunks import Gateway, Trunk
    from .call import Call

log = logging.getLogger("softswitch.calls")

SDP = "application/sdp"


def sdp_of(message: Request | Response) -> SessionDescription | None:
    """The SDP body of a message, or None (no body, other type, or garbage)."""
    if not message.body or (message.content_type or "").split(";")[0].strip().lower() != SDP:
        return None
    try:
        return SessionDescription.parse(message.body)
    except SdpError:
        return None


def q850_reason(cause: int) -> str:
    return f"Q.850;cause={cause}"


class Leg:
    """What both sides share: the dialog, our o= line, and in-dialog requests."""

    role = "?"

    def __init__(self, call: "Call", media_ip: str) -> None:
        self.call = call
        self.dialog: Dialog | None = None
        self.origin = OriginKeeper(Origin.fresh(media_ip))
        self.remote_sdp: SessionDescription | None = None
        self.codec: str | None = None
        self.pending: ServerTransaction | None = None  # an in-dialog INVITE/UPDATE we are answering
        self.ended = False

    @property
    def stack(self):
        return self.call.sw.stack

    def send(self, method: str, body: bytes = b"", content_type: str | None = None,
             headers: Headers | None = None,
             on_response: Callable[[ClientTransaction, Response], None] | None = None) -> ClientTransaction | None:
        """An in-dialog request on this leg's flow."""
        if self.dialog is None:
            return None
        request = self.dialog.create_request(method, body, content_type, headers)
        return self.stack.send_request(request, self.dialog.peer, on_response or _ignore)

    def bye(self, cause: int = 16) -> None:
        if self.dialog is not None and not self.ended:
            self.ended = True
            self.send("BYE", headers=Headers([("Reason", q850_reason(cause))]))
            self.dialog.state = DialogState.TERMINATED

    def remember_sdp(self, sdp: SessionDescription | None) -> None:
        if sdp is None:
            return
        self.remote_sdp = sdp
        for m in sdp.media:
            if m.kind == "audio" and m.port:
                codecs = [c for c in m.codecs if c.name.lower() != "telephone-event"]
                if codecs:
                    self.codec = f"{codecs[0].name}/{codecs[0].rate}"
                break


class InboundLeg(Leg):
    """The caller's side: we are the UAS of its INVITE."""

    role = "a"

    def __init__(self, call: "Call", ev: RequestReceived, media_ip: str) -> None:
        super().__init__(call, media_ip)
        assert ev.txn is not None
        self.txn: ServerTransaction = ev.txn
        self.request = ev.request
        self.source = ev.source
        self.tag = new_tag()
        contact = self.stack.contact(ev.source.transport)
        self.dialog = Dialog.as_uas(ev.request, ev.source, self.tag, contact)
        self.offer = sdp_of(ev.request)
        self.remember_sdp(self.offer)
        self.answered = False
        self.final_sent = False

    def _headers(self, body: bytes) -> Headers:
        h = Headers([("Contact", self.dialog.contact if self.dialog else "")])
        if body:
            h.add("Content-Type", SDP)
        return h

    def provisional(self, status: int, reason: str | None = None, body: bytes = b"") -> None:
        if not self.final_sent:
            self.stack.reply(self.txn, status, reason, self.tag, self._headers(body), body)

    def answer(self, body: bytes) -> None:
        if self.final_sent:
            return
        self.final_sent = self.answered = True
        h = self._headers(body)
        h.add("Allow", ALLOW)
        self.stack.reply(self.txn, 200, "OK", self.tag, h, body)
        if self.dialog:
            self.dialog.state = DialogState.CONFIRMED

    def reject(self, status: int, reason: str | None = None, cause: int | None = None,
               headers: Headers | None = None) -> None:
        if self.final_sent:
            return
        self.final_sent = True
        h = headers.copy() if headers else Headers()
        if cause is not None:
            h.add("Reason", q850_reason(cause))
        self.stack.reply(self.txn, status, reason, self.tag, h)
        self.ended = True


@dataclass
class Target:
    """Where one outbound attempt goes."""

    uri: SipURI
    dest: Addr
    trunk: "Trunk | None" = None
    gateway: "Gateway | None" = None
    label: str = ""


class OutboundLeg(Leg):
    """One fork / one gateway attempt: we are the UAC."""

    role = "b"

    def __init__(self, call: "Call", target: Target, media_ip: str) -> None:
        super().__init__(call, media_ip)
        self.target = target
        self.call_id = secrets.token_hex(12)
        self.tag = new_tag()
        self.request: Request | None = None
        self.txn: ClientTransaction | None = None
        self.status: int | None = None       # final status, once known
        self.early = False
        self.cancel_wanted = False
        self.cancelled = False
        self.auth_tried = False
        self.local_response = False           # the final status was synthesised (timeout, transport)

    def start(self, from_: NameAddr, to: NameAddr, max_forwards: int, body: bytes,
              extra: Headers | None = None) -> None:
        h = Headers()
        self.from_ = from_.copy()
        self.from_.tag = self.tag
        h.add("From", str(self.from_))
        h.add("To", str(to))
        h.add("Call-ID", self.call_id)
        h.add("CSeq", "1 INVITE")
        h.add("Max-Forwards", str(max_forwards))
        h.add("Contact", self.stack.contact(self.target.dest.transport))
        h.add("Allow", ALLOW)
        if extra is not None:
            for name, value in extra:
                h.add(name, value)
        if body:
            h.add("Content-Type", SDP)
        self.request = Request("INVITE", self.target.uri.copy(), h, body)
        self._send(self.request)

    def _send(self, request: Request) -> None:
        self.txn = self.stack.send_request(request, self.target.dest, self._on_response)

    def _on_response(self, txn: ClientTransaction, response: Response) -> None:
        if txn is not self.txn and response.status < 200:
            return  # a stale attempt (before an auth retry)
        code = response.status
        if code in (401, 407) and not self.auth_tried and self._retry_with_auth(response):
            return
        if code >= 200:
            self.status = code
            self.local_response = response.headers.get("X-Local-Response") == "1"
        if 100 < code < 300 and response.to.tag and self.request is not None:
            if self.dialog is None or self.dialog.remote_tag != response.to.tag:
                self.dialog = Dialog.as_uac(self.request, response, self.target.dest,
                                            self.request.headers.get("Contact") or "")
            else:
                self.dialog.on_response(response)
            self.remember_sdp(sdp_of(response))
        if code < 200:
            if code > 100:
                self.early = True
            if self.cancel_wanted and not self.cancelled:
                self._send_cancel()
        try:
            self.call.on_b_response(self, response)
        except ParseError as exc:
            log.warning("bad response from %s: %s", self.target.dest, exc.reason)

    def _retry_with_auth(self, response: Response) -> bool:
        """Trunks challenge us: answer once with the trunk's credentials (§22.2)."""
        trunk = self.target.trunk
        if trunk is None or not trunk.config.username or self.request is None:
            return False
        header = "Proxy-Authenticate" if response.status == 407 else "WWW-Authenticate"
        challenges = response.headers.get_all(header)
        if not challenges:
            return False
        self.auth_tried = True
        request = self.request
        fresh = Request("INVITE", request.uri.copy(), Headers([(n, v) for n, v in request.headers if n != "Via"]),
                        request.body)
        cseq = request.cseq[0] + 1
        fresh.headers.set("CSeq", f"{cseq} INVITE")
        auth_header = "Proxy-Authorization" if response.status == 407 else "Authorization"
        try:
            fresh.headers.add(auth_header, answer_challenge(
                choose_challenge(challenges), "INVITE", str(request.uri), trunk.config.username,
                trunk.config.password, cnonce=secrets.token_hex(8)))
        except AuthError as exc:  # an unusable challenge: fall through to normal failure handling
            log.warning("cannot answer %s challenge from trunk %s: %s", header, trunk.name, exc)
            return False
        self.request = fresh
        self._send(fresh)
        return True

    def cancel(self) -> None:
        """Stop ringing: CANCEL once a provisional arrived (§9.1), or as soon as one does."""
        if self.status is not None or self.cancelled:
            return
        self.cancel_wanted = True
        if self.early or (self.txn is not None and self.txn.last_response is not None):
            self._send_cancel()

    def _send_cancel(self) -> None:
        if self.request is None or self.txn is None:
            return
        self.cancelled = True
        r = self.request
        h = Headers()
        for name in ("From", "To", "Call-ID"):
            h.add(name, r.headers.get(name) or "")
        h.add("CSeq", f"{r.cseq[0]} CANCEL")
        for route in r.headers.get_all("Route"):
            h.add("Route", route)
        h.add("Reason", q850_reason(16))
        cancel = Request("CANCEL", r.uri.copy(), h)
        self.stack.send_request(cancel, self.target.dest, _ignore, via=r.headers.get_all("Via")[0])

    def ack(self, body: bytes = b"") -> None:
        """ACK a 2xx: end-to-end, new branch, same CSeq number (§13.2.2.4)."""
        if self.dialog is None:
            return
        ack = self.dialog.create_request("ACK", body, SDP if body else None)
        self.stack.send_ack(ack, self.dialog.peer)


ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REGISTER"


def _ignore(txn: ClientTransaction, response: Response) -> None:
    return None
