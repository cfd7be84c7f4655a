"""Built-in services a route can send a call to ("service:<name>"): small media applications that
exercise the media engine end to end. Each runs as one task per answered call and is cancelled when
the call ends; the directory listing is the service list."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING

from . import agent, dtmf, echo, moh, playback

if TYPE_CHECKING:
    from ..calls.call import Call

Service = Callable[["Call"], Awaitable[None]]
SERVICES: Mapping[str, Service] = MappingProxyType({"echo": echo.run, "playback": playback.run, "dtmf": dtmf.run,
                                                    "moh": moh.run, "agent": agent.run})
