"""Cut a SIP byte stream (TCP/TLS) into messages by Content-Length (RFC 3261 §18.3), sans-IO.

Also reports RFC 5626 double-CRLF keep-alive pings seen between messages; single CRLFs there are
ignored. A framing error is unrecoverable: the caller closes the connection.
"""

from __future__ import annotations

import re

from .message import find_header_end

PING = b"\r\n\r\n"

_CONTENT_LENGTH = re.compile(rb"^(?:content-length|l)[ \t]*:[ \t]*(?:\r?\n[ \t]+)?([^\r\n]*?)[ \t]*\r?$", re.I | re.M)
_DIGITS = re.compile(rb"[0-9]+")


class FramingError(Exception):
    """The stream cannot be framed (bad/missing Content-Length, oversized message)."""


class StreamFramer:
    """Feed it received bytes; get back complete messages (and PING for keep-alives)."""

    def __init__(self, max_size: int = 65535) -> None:
        self.max_size = max_size
        self._buf = bytearray()
        self._scanned = 0  # bytes of _buf already searched for the header end, to avoid rescans

    def feed(self, data: bytes) -> list[bytes]:
        """Append `data`; return the messages (bytes, body included) and PINGs it completed."""
        buf = self._buf
        buf += data
        out: list[bytes] = []
        while buf:
            if buf[0] in b"\r\n":
                if buf.startswith(PING):
                    out.append(PING)
                    del buf[:4]
                elif len(buf) < 4 and PING.startswith(buf):
                    break  # maybe the start of a ping split across segments
                else:
                    del buf[:2 if buf.startswith(b"\r\n") else 1]
                continue
            found = find_header_end(buf, max(self._scanned - 3, 0))
            if found is None:
                if len(buf) > self.max_size:
                    raise FramingError("SIP header block too large")
                self._scanned = len(buf)
                break
            total = found[1] + self._content_length(bytes(buf[:found[0]]))
            if total > self.max_size:
                raise FramingError("SIP message too large")
            if len(buf) < total:
                break
            out.append(bytes(buf[:total]))
            del buf[:total]
            self._scanned = 0
        return out

    @staticmethod
    def _content_length(head: bytes) -> int:
        values = set(_CONTENT_LENGTH.findall(head))
        if not values:
            raise FramingError("Missing Content-Length on a stream transport")
        if len(values) > 1:
            raise FramingError("Conflicting Content-Length values")
        value = values.pop()
        if not _DIGITS.fullmatch(value):
            raise FramingError("Invalid Content-Length")
        return int(value)
