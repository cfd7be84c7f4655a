"""Transport addresses: who sent a message and where a message goes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Addr:
    """A transport endpoint. ``transport`` is "udp", "tcp" (later "tls")."""

    transport: str
    host: str
    port: int

    @property
    def reliable(self) -> bool:
        """Reliable transports switch off retransmission timers (RFC 3261 §17)."""
        return self.transport != "udp"

    @property
    def hostport(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.transport}:{self.hostport}"
