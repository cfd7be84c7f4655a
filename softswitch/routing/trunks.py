"""Trunks: outbound gateways with failover and back-off, inbound identification, registration.

A ``Trunk`` is the live state beside its (immutable) config: which gateways are resting after a
failure, how many calls are up. ``TrunkRegistration`` keeps us registered with a provider that wants it,
answering digest challenges with the trunk's credentials.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..sip.addr import Addr
from ..sip.auth import AuthError, DigestClient
from ..sip.dialog import new_tag
from ..sip.message import Headers, Request, Response
from ..sip.uri import SipURI

if TYPE_CHECKING:
    from ..sip.stack import SipStack

log = logging.getLogger("softswitch.trunks")


@dataclass
class Gateway:
    addr: Addr
    dead_until: float = 0.0

    def __str__(self) -> str:
        return str(self.addr)


class Trunk:
    def __init__(self, config: Any) -> None:
        self.config = config
        self.name: str = config.name
        self.gateways = [Gateway(Addr(g.transport, g.host, g.port)) for g in config.gateways]
        self.active = 0

    def matches_source(self, ip: str) -> bool:
        return self.config.matches_source(ip)

    def at_capacity(self) -> bool:
        return 0 < self.config.max_calls <= self.active

    def gateways_to_try(self, now: float) -> list[Gateway]:
        """Live gateways in order; when all are resting, all of them (better a late try than none)."""
        live = [g for g in self.gateways if g.dead_until <= now]
        return live or list(self.gateways)

    def mark_dead(self, gateway: Gateway, now: float, why: str) -> None:
        gateway.dead_until = now + self.config.dead_backoff_s
        log.warning("trunk %s gateway %s resting %ss: %s", self.name, gateway, self.config.dead_backoff_s, why)

    def fails_over_on(self, status: int) -> bool:
        return status in self.config.failover_on


class TrunkRegistration:
    """REGISTER to the trunk's first gateway, refreshed before expiry, retried after failures."""

    RETRY_S = 30.0

    def __init__(self, stack: "SipStack", trunk: Trunk, domain: str) -> None:
        self.stack = stack
        self.trunk = trunk
        cfg = trunk.config
        self.client = DigestClient(cfg.username, cfg.password)
        self.call_id = new_tag() + new_tag()
        self.tag = new_tag()
        self.cseq = 0
        self.registered = False
        self.expires = cfg.register_expires
        self.gateway = trunk.gateways[0]
        self._timer = None
        self._challenged = False

    def start(self) -> None:
        self._send(Headers())

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _send(self, extra: Headers) -> None:
        cfg = self.trunk.config
        host = cfg.realm or self.gateway.addr.host
        aor = SipURI(user=cfg.username or None, host=host)
        self.cseq += 1
        h = Headers([("From", f"<{aor}>;tag={self.tag}"), ("To", f"<{aor}>"), ("Call-ID", self.call_id),
                     ("CSeq", f"{self.cseq} REGISTER"),
                     ("Contact", self.stack.contact(self.gateway.addr.transport, cfg.username or None)),
                     ("Expires", str(self.expires))])
        for name, value in extra:
            h.add(name, value)
        self.request = Request("REGISTER", SipURI(host=self.gateway.addr.host, port=self.gateway.addr.port), h)
        self.stack.send_request(self.request, self.gateway.addr, self._on_response)

    def _on_response(self, txn: Any, response: Response) -> None:
        code = response.status
        if code < 200:
            return
        if code in (401, 407) and not self._challenged:
            self._challenged = True
            header = "Proxy-Authenticate" if code == 407 else "WWW-Authenticate"
            try:
                value = self.client.authorize(response.headers.get_all(header), "REGISTER", str(self.request.uri))
            except AuthError as exc:
                log.warning("trunk %s: unusable challenge: %s", self.trunk.name, exc)
                self._schedule(self.RETRY_S)
                return
            self._send(Headers([("Proxy-Authorization" if code == 407 else "Authorization", value)]))
            return
        self._challenged = False
        if 200 <= code < 300:
            granted = self.expires
            for c in response.contacts:
                if c.params.get("expires"):
                    try:
                        granted = int(c.params["expires"] or granted)
                    except ValueError:
                        pass
                    break
            self.registered = True
            log.info("trunk %s registered at %s for %ds", self.trunk.name, self.gateway, granted)
            self._schedule(max(granted * 0.8, 5.0))
        else:
            self.registered = False
            log.warning("trunk %s registration failed: %d %s", self.trunk.name, code, response.reason)
            self._schedule(self.RETRY_S)

    def _schedule(self, delay: float) -> None:
        self.stop()
        self._timer = self.stack.loop.call_later(delay, self.start)
