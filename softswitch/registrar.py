"""Registrar and location service (RFC 3261 §10).

``Location`` is plain state (aor → bindings) with an injected ``now``; ``Registrar`` answers REGISTER
through the stack and persists every change through the async store so bindings survive a restart.
Each binding remembers the *source* it registered from: INVITEs to a phone behind NAT go there, not
to the private address it wrote in its Contact.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .sip.addr import Addr
from .sip.dialog import new_tag
from .sip.message import Headers, ParseError
from .sip.transaction import RequestReceived
from .sip.uri import NameAddr, SipURI

if TYPE_CHECKING:
    from .app import Switch

log = logging.getLogger("softswitch.registrar")


@dataclass
class Binding:
    aor: str
    contact: str          # the Contact URI as the phone wrote it
    source: Addr          # where REGISTER came from (NAT-friendly target)
    expires_at: float
    call_id: str
    cseq: int
    user_agent: str = ""

    def target(self) -> tuple[SipURI, Addr]:
        """Request-URI and next hop for an INVITE to this phone."""
        uri = SipURI.parse(self.contact)
        return uri, self.source


class Location:
    """aor → {contact → Binding}, plus an index by source flow; expired bindings vanish on read."""

    def __init__(self) -> None:
        self._bindings: dict[str, dict[str, Binding]] = {}
        self._by_source: dict[Addr, Binding] = {}  # every INVITE asks "is this a registered phone?"

    def lookup(self, aor: str, now: float) -> list[Binding]:
        table = self._bindings.get(aor, {})
        for contact in [c for c, b in table.items() if b.expires_at <= now]:
            self.remove(aor, contact)
        return sorted(table.values(), key=lambda b: -b.expires_at)

    def put(self, binding: Binding) -> None:
        table = self._bindings.setdefault(binding.aor, {})
        old = table.get(binding.contact)
        if old is not None and self._by_source.get(old.source) is old:
            del self._by_source[old.source]
        table[binding.contact] = binding
        self._by_source[binding.source] = binding

    def remove(self, aor: str, contact: str | None = None) -> None:
        table = self._bindings.get(aor, {})
        gone = list(table.values()) if contact is None else [b for b in [table.get(contact)] if b is not None]
        for b in gone:
            del table[b.contact]
            if self._by_source.get(b.source) is b:
                del self._by_source[b.source]
        if not table:
            self._bindings.pop(aor, None)

    def from_source(self, source: Addr, now: float) -> Binding | None:
        """The binding a request came from, if its source is a registered phone's flow."""
        b = self._by_source.get(source)
        return b if b is not None and b.expires_at > now else None

    def count(self) -> int:
        return sum(len(t) for t in self._bindings.values())


class Registrar:
    def __init__(self, switch: "Switch") -> None:
        self.switch = switch
        self.location = Location()
        cfg = switch.config.registrar
        self.min_expires, self.max_expires, self.default_expires = cfg.min_expires, cfg.max_expires, cfg.default_expires

    def load(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            transport, host, port = row["source"]
            self.location.put(Binding(row["aor"], row["contact"], Addr(transport, host, int(port)),
                                      float(row["expires_at"]), row.get("call_id", ""), int(row.get("cseq", 0)),
                                      row.get("user_agent", "")))

    def handle(self, ev: RequestReceived) -> None:
        sw = self.switch
        req, txn = ev.request, ev.txn
        assert txn is not None
        now = sw.wall()
        tag = new_tag()

        def reply(status: int, reason: str | None = None, headers: Headers | None = None) -> None:
            sw.stack.reply(txn, status, reason, to_tag=tag, headers=headers)  # §8.2.6.2: a UAS tags To

        user = sw.authenticate(ev, www=True)
        if user is None:
            return  # challenged or refused
        to_uri = req.to.uri
        if not isinstance(to_uri, SipURI) or to_uri.user != user:
            reply(403, "Forbidden")  # one may only register one's own AOR
            return
        aor = user
        try:
            contacts = req.contacts
            star = req.contact_star
            default = req.expires if req.expires is not None else self.default_expires
        except ParseError as exc:
            reply(400, exc.reason)
            return
        call_id, cseq = req.call_id, req.cseq[0]
        if star:
            if default != 0 or contacts:  # §10.3 step 6: "*" alone, with Expires: 0
                reply(400, "Wildcard Contact needs Expires: 0 and no other Contact")
                return
            self.location.remove(aor)
            sw.store_call("delete_registration", aor, None)
            log.info("unregistered all contacts of %s", aor)
        current = {b.contact: b for b in self.location.lookup(aor, now)}
        changes: list[tuple[NameAddr, int]] = []
        for c in contacts:
            expires = default
            if c.params.get("expires") is not None:
                raw = c.params["expires"] or ""
                if not (raw.isascii() and raw.isdigit()):  # delta-seconds = 1*DIGIT (int() takes "-5", "1_0")
                    reply(400, "Bad Contact expires")
                    return
                expires = int(raw)
            if 0 < expires < self.min_expires:
                reply(423, "Interval Too Brief", headers=Headers([("Min-Expires", str(self.min_expires))]))
                return
            old = current.get(str(c.uri))
            if old is not None and old.call_id == call_id and cseq <= old.cseq:
                reply(500, "Stale CSeq")  # §10.3 step 7: an out-of-order REGISTER
                return
            changes.append((c, min(expires, self.max_expires)))
        max_contacts = sw.users[user].max_contacts
        after = (set(current) - {str(c.uri) for c, e in changes if e == 0}) | {str(c.uri) for c, e in changes if e > 0}
        if len(after) > max_contacts:
            reply(403, "Too Many Contacts")
            return
        ua = req.headers.get("User-Agent") or ""
        for c, expires in changes:
            contact = str(c.uri)
            if expires == 0:
                self.location.remove(aor, contact)
                sw.store_call("delete_registration", aor, contact)
                log.info("unregistered %s contact %s", aor, contact)
            else:
                b = Binding(aor, contact, ev.source, now + expires, call_id, cseq, ua)
                self.location.put(b)
                sw.store_call("save_registration", aor, contact, (b.source.transport, b.source.host, b.source.port),
                              b.expires_at, call_id, cseq, ua)
                log.info("registered %s at %s via %s for %ds", aor, contact, ev.source, expires)
        h = Headers()
        for b in self.location.lookup(aor, now):
            h.add("Contact", f"<{b.contact}>;expires={max(0, int(b.expires_at - now))}")
        h.add("Date", _http_date(now))
        reply(200, "OK", headers=h)


def _http_date(now: float) -> str:
    from email.utils import formatdate
    return formatdate(now, usegmt=True)
