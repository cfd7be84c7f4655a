"""Failure evidence for end-to-end tests: the switch log tail plus every peer's own log or state."""

from __future__ import annotations

from typing import Any, TypeVar

import pytest

from .baresip import Baresip
from .pyvoip_phone import PyVoipPhone
from .sipp import Sipp

T = TypeVar("T")


class Evidence:
    """``with ev:`` turns any exception in the block into an AssertionError whose message ends with
    what every added item saw (why: an end-to-end failure is unreadable without both sides' view).

    Items are peers from this package, or anything with an ``evidence() -> str`` method (the switch
    process, a test's own raw UA)."""

    def __init__(self) -> None:
        self.items: list[Any] = []

    def add(self, item: T) -> T:
        self.items.append(item)
        return item

    def sections(self) -> list[tuple[str, str]]:
        """``(key, text)`` per item; ``key`` is how the item's own error messages start."""
        out = []
        for item in self.items:
            if isinstance(item, Baresip):
                out.append((f"baresip '{item.name}' (", item.describe(25)))
            elif isinstance(item, PyVoipPhone):
                calls = ", ".join(f"{c.direction} {c.call_id} {c.state}" for c in item.calls) or "none"
                out.append(("", f"--- pyVoIP {item.username} sip={item.sip_port} status={item.status} calls: {calls}"))
            elif isinstance(item, Sipp):
                result = item._result
                out.append((f"SIPp '{item.name}' exit", result.describe() if result is not None
                            else f"SIPp '{item.name}' (not finished): {' '.join(item.command)}"))
            else:
                out.append(("", item.evidence()))
        return out

    def __enter__(self) -> "Evidence":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None or isinstance(exc, (KeyboardInterrupt, pytest.fail.Exception)):
            return False
        message = str(exc)
        # a peer's own error (BaresipError, SippResult.describe) already carries its log: not twice
        extra = "\n".join(text for key, text in self.sections() if not key or key not in message)
        raise AssertionError(f"{type(exc).__name__}: {message}\n\n{extra}") from exc
