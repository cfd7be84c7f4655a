"""The call detail record: one per call, written when the call ends.

Hangup causes are recorded both as the final SIP status and as a Q.850 cause (as carried in a Reason
header), so CDRs read the same way as those of PSTN switches and other PBXs.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

DISPOSITIONS = ("ANSWERED", "NO ANSWER", "BUSY", "FAILED", "CANCELLED")
DIRECTIONS = ("inbound", "outbound", "internal", "local")

# Flat column order of ``CDR.to_json_dict()`` (CSV export, tables).
CDR_COLUMNS: tuple[str, ...] = (
    "call_id", "sip_call_id", "from", "from_uri", "to", "to_uri", "direction", "trunk", "source",
    "destination", "start", "answer", "end", "start_ts", "answer_ts", "end_ts", "duration", "billsec",
    "disposition", "sip_status", "q850_cause", "hangup_by", "legs", "ivr", "queue", "recording",
    "extra",
)

# SIP final status -> Q.850 cause, RFC 3398 §8.2.6.1 (488/606 per ITU-T Q.1912.5: bearer capability).
_Q850_BY_STATUS: dict[int, int] = {
    400: 41, 401: 21, 402: 21, 403: 21, 404: 1, 405: 63, 406: 79, 407: 21, 408: 102, 410: 22,
    413: 127, 414: 127, 415: 79, 416: 127, 420: 127, 421: 127, 423: 127, 480: 18, 481: 41, 482: 25,
    483: 25, 484: 28, 485: 1, 486: 17, 487: 16, 488: 65, 500: 41, 501: 79, 502: 38, 503: 41, 504: 102,
    505: 127, 513: 127, 600: 17, 603: 21, 604: 1, 606: 58,
}


def q850_for_status(status: int) -> int:
    """Q.850 cause for a SIP final status (2xx and a cancelled 487 are 16, normal clearing)."""
    if 200 <= status < 300:
        return 16
    if status in _Q850_BY_STATUS:
        return _Q850_BY_STATUS[status]
    return 41 if 500 <= status < 600 else 31  # temporary failure / normal, unspecified


def disposition_for(status: int, cancelled: bool = False) -> str:
    """Asterisk-style disposition. ``cancelled`` means the caller gave up (CANCEL) before answer."""
    if 200 <= status < 300:
        return "ANSWERED"
    if cancelled:
        return "CANCELLED"
    if status in (486, 600):
        return "BUSY"
    if status in (408, 480, 487):  # 487 without a caller CANCEL: we stopped ringing (ring timeout)
        return "NO ANSWER"
    return "FAILED"


def iso_utc(ts: float | None) -> str | None:
    """Epoch seconds -> ``2024-05-01T12:00:00.123Z`` (None stays None)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class CDR:
    """One call. Times are epoch seconds; ``legs`` holds per-leg details (role, sip_call_id, remote, codec,
    RTP counters…), ``extra`` anything feature-specific (IVR path, queue, recording…)."""

    call_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    sip_call_id: str = ""
    from_: str = ""
    from_uri: str = ""
    to: str = ""
    to_uri: str = ""
    direction: str = "internal"
    trunk: str | None = None
    source: str = ""
    destination: str = ""
    start: float = 0.0
    answer: float | None = None
    end: float | None = None
    duration: float = 0.0
    billsec: float = 0.0
    disposition: str = "FAILED"
    sip_status: int = 0
    q850_cause: int | None = None
    hangup_by: str | None = None
    legs: list[dict[str, Any]] = field(default_factory=list)
    # The IVR flow's run: {"flow", "path": [node ids], "hits": [...], "result"}; None when no flow ran.
    ivr: dict[str, Any] | None = None
    # The ACD: {"queue", "agent", "wait_s", "outcome", "position", ...} of the last queue the call was in
    # ("previous": the earlier ones after an overflow); None when the call never joined a queue.
    queue: dict[str, Any] | None = None
    # The recorder: {"path" (stereo WAV), "stats_path", "stats": {caller_talk_s, agent_talk_s, overlap_s,
    # silence_s, ...}, "format", "duration_s", "paused", "recovered"?, "error"?}; None when not recorded.
    recording: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def finish(self, end: float, sip_status: int, *, cancelled: bool = False, hangup_by: str | None = None,
               q850_cause: int | None = None) -> CDR:
        """Fill the end-of-call fields consistently (duration, billsec, disposition, cause)."""
        self.end = end
        self.sip_status = sip_status
        self.hangup_by = hangup_by
        self.duration = round(max(0.0, end - self.start), 3)
        self.billsec = round(max(0.0, end - self.answer), 3) if self.answer is not None else 0.0
        self.disposition = disposition_for(sip_status, cancelled)
        self.q850_cause = q850_cause if q850_cause is not None else q850_for_status(sip_status)
        return self

    def to_json_dict(self) -> dict[str, Any]:
        """JSON-ready dict: ``from`` key, ISO-8601 UTC times plus the same as epoch floats (``*_ts``)."""
        return {
            "call_id": self.call_id, "sip_call_id": self.sip_call_id, "from": self.from_,
            "from_uri": self.from_uri, "to": self.to, "to_uri": self.to_uri, "direction": self.direction,
            "trunk": self.trunk, "source": self.source, "destination": self.destination,
            "start": iso_utc(self.start), "answer": iso_utc(self.answer), "end": iso_utc(self.end),
            "start_ts": self.start, "answer_ts": self.answer, "end_ts": self.end,
            "duration": self.duration, "billsec": self.billsec, "disposition": self.disposition,
            "sip_status": self.sip_status, "q850_cause": self.q850_cause, "hangup_by": self.hangup_by,
            "legs": [dict(leg) for leg in self.legs], "ivr": self.ivr, "queue": self.queue, "recording": self.recording,
            "extra": dict(self.extra),
        }

    @classmethod
    def from_json_dict(cls, d: dict[str, Any]) -> CDR:
        """Inverse of ``to_json_dict`` (times come from the ``*_ts`` floats)."""
        return cls(
            call_id=d["call_id"], sip_call_id=d["sip_call_id"], from_=d["from"], from_uri=d["from_uri"],
            to=d["to"], to_uri=d["to_uri"], direction=d["direction"], trunk=d["trunk"], source=d["source"],
            destination=d["destination"], start=d["start_ts"], answer=d["answer_ts"], end=d["end_ts"],
            duration=d["duration"], billsec=d["billsec"], disposition=d["disposition"],
            sip_status=d["sip_status"], q850_cause=d["q850_cause"], hangup_by=d["hangup_by"],
            legs=list(d["legs"]), ivr=d.get("ivr"), queue=d.get("queue"), recording=d.get("recording"),
            extra=dict(d["extra"]),
        )
