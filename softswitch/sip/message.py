"""SIP message parse/serialise (RFC 3261 §7, §8.2.6, §20), sans-IO.

parse_message() turns one datagram (or one message cut by framing.StreamFramer) into a Request or
Response, or raises ParseError carrying what it could parse so a stateless error answer can be built.
Header-level accessors (.to, .vias, ...) parse on access and raise ParseError on garbage.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar

from .uri import TOKEN, AbsoluteURI, NameAddr, ParseError, SipURI, Via, parse_uri, split_header_list

__all__ = [
    "Headers", "ParseError", "Request", "Response", "error_response", "find_header_end", "make_response",
    "parse_message", "reason_phrase",
]

_COMPACT = (
    ("i", "Call-ID"), ("m", "Contact"), ("e", "Content-Encoding"), ("l", "Content-Length"), ("c", "Content-Type"),
    ("f", "From"), ("s", "Subject"), ("k", "Supported"), ("t", "To"), ("v", "Via"), ("o", "Event"),
    ("r", "Refer-To"), ("b", "Referred-By"), ("x", "Session-Expires"), ("u", "Allow-Events"),
    ("a", "Accept-Contact"), ("j", "Reject-Contact"), ("d", "Request-Disposition"), ("y", "Identity"),
)
_KNOWN = (
    "Accept", "Accept-Contact", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow", "Allow-Events",
    "Authentication-Info", "Authorization", "Call-ID", "Call-Info", "Contact", "Content-Disposition",
    "Content-Encoding", "Content-Language", "Content-Length", "Content-Type", "CSeq", "Date", "Error-Info", "Event",
    "Expires", "From", "History-Info", "Identity", "In-Reply-To", "Max-Forwards", "MIME-Version", "Min-Expires",
    "Min-SE", "Organization", "P-Asserted-Identity", "P-Preferred-Identity", "Path", "Priority", "Privacy",
    "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Require", "RAck", "Reason", "Record-Route", "Refer-To",
    "Referred-By", "Reject-Contact", "Remote-Party-ID", "Replaces", "Reply-To", "Request-Disposition", "Require",
    "Retry-After", "Route", "RSeq", "Server", "Service-Route", "Session-Expires", "SIP-ETag", "SIP-If-Match",
    "Subject", "Subscription-State", "Supported", "Timestamp", "To", "Unsupported", "User-Agent", "Via", "Warning",
    "WWW-Authenticate",
)
# lowercased name (or compact form) -> (lookup key, canonical spelling)
_NAMES = MappingProxyType(
    {n.lower(): (n.lower(), n) for n in _KNOWN} | {c: (n.lower(), n) for c, n in _COMPACT}
)
# Headers whose comma-separated values are separate header values (RFC 3261 §7.3.1); the
# authentication headers, Date, Retry-After etc. contain commas inside one value.
_LIST_KEYS = frozenset(n.lower() for n in (
    "Via", "Contact", "Route", "Record-Route", "Path", "Service-Route", "Allow", "Supported", "Require",
    "Proxy-Require", "Unsupported", "Accept", "Accept-Encoding", "Accept-Language", "Content-Encoding",
    "Content-Language", "Allow-Events", "P-Asserted-Identity", "P-Preferred-Identity", "Call-Info", "Alert-Info",
    "Error-Info", "In-Reply-To", "Warning", "Reason", "Accept-Contact", "Reject-Contact", "Request-Disposition",
    "History-Info",
))
_SINGLE_KEYS = frozenset(("to", "from", "call-id", "cseq", "content-length", "max-forwards"))
_MANDATORY = ("from", "to", "call-id", "cseq")

_WSP = " \t"
_HEADER_ENDS = (b"\r\n\r\n", b"\n\n", b"\n\r\n")  # CRLF, bare LF and mixed blank lines
_HEADER_NAME = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_DIGITS = re.compile(r"[0-9]+")
_CSEQ = re.compile(r"[ \t]*([0-9]+)[ \t]+([A-Za-z0-9\-.!%*_+`'~]+)[ \t]*")
_STATUS_LINE = re.compile(r"(SIP/[0-9]+\.[0-9]+) +([0-9]{3})(?: (.*))?", re.I | re.S)
_SIP_VERSION = re.compile(r"SIP/[0-9]+\.[0-9]+", re.I)
_CALL_ID = re.compile(r"[^\x00-\x20\x7f]+")
_MAX_CSEQ = 2**31 - 1

_REASONS = MappingProxyType({
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued", 183: "Session Progress",
    199: "Early Dialog Terminated", 200: "OK", 202: "Accepted", 204: "No Notification",
    300: "Multiple Choices", 301: "Moved Permanently", 302: "Moved Temporarily", 305: "Use Proxy",
    380: "Alternative Service", 400: "Bad Request", 401: "Unauthorized", 402: "Payment Required",
    403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable",
    407: "Proxy Authentication Required", 408: "Request Timeout", 410: "Gone", 412: "Conditional Request Failed",
    413: "Request Entity Too Large", 414: "Request-URI Too Long", 415: "Unsupported Media Type",
    416: "Unsupported URI Scheme", 417: "Unknown Resource-Priority", 420: "Bad Extension",
    421: "Extension Required", 422: "Session Interval Too Small", 423: "Interval Too Brief",
    428: "Use Identity Header", 429: "Provide Referrer Identity", 433: "Anonymity Disallowed",
    436: "Bad Identity-Info", 437: "Unsupported Certificate", 438: "Invalid Identity Header",
    439: "First Hop Lacks Outbound Support", 440: "Max-Breadth Exceeded", 469: "Bad Info Package",
    470: "Consent Needed", 480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist",
    482: "Loop Detected", 483: "Too Many Hops", 484: "Address Incomplete", 485: "Ambiguous", 486: "Busy Here",
    487: "Request Terminated", 488: "Not Acceptable Here", 489: "Bad Event", 491: "Request Pending",
    493: "Undecipherable", 494: "Security Agreement Required", 500: "Server Internal Error",
    501: "Not Implemented", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Server Time-out",
    505: "Version Not Supported", 513: "Message Too Large", 580: "Precondition Failure", 600: "Busy Everywhere",
    603: "Decline", 604: "Does Not Exist Anywhere", 606: "Not Acceptable", 607: "Unwanted", 608: "Rejected",
})
_CLASS_REASONS = ("Provisional", "OK", "Redirection", "Client Error", "Server Error", "Global Failure")


def reason_phrase(status: int) -> str:
    """Default reason phrase; unknown codes get their class's generic phrase."""
    return _REASONS.get(status) or _CLASS_REASONS[min(max(status // 100, 1), 6) - 1]


def _name(name: str) -> tuple[str, str]:
    """(lookup key, spelling to store): compact forms expanded, known names canonical."""
    low = name.lower()
    return _NAMES.get(low) or (low, name)


_NONE: list[str] = []  # shared empty result, never mutated


class Headers:
    """Ordered multi-map of header fields with case-insensitive, compact-form-aware names."""

    __slots__ = ("_items", "parsed", "_index")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str, str]] = [(*_name(n), v) for n, v in items]
        self.parsed: dict[str, Any] = {}  # the messages' accessors cache parses here; mutation clears it
        self._index: dict[str, list[str]] | None = None  # key -> values, built on the first lookup

    def _changed(self) -> None:
        self.parsed.clear()
        self._index = None

    def _values(self, key: str) -> list[str]:
        """Every value of one (lookup) key; a message is read far more often than it is changed."""
        index = self._index
        if index is None:
            index = self._index = {}
            for k, _, v in self._items:
                index.setdefault(k, []).append(v)
        return index.get(key, _NONE)

    def get(self, name: str, default: str | None = None) -> str | None:
        """First occurrence, whole value."""
        values = self._values(_name(name)[0])
        return values[0] if values else default

    def get_all(self, name: str) -> list[str]:
        """Every occurrence; comma lists of list-type headers (Via, Contact, ...) are split."""
        key = _name(name)[0]
        values = self._values(key)
        if key in _LIST_KEYS:
            return [item for v in values for item in split_header_list(v)]
        return list(values)

    def set(self, name: str, value: str) -> None:
        """Replace every occurrence by one value at the position of the first (else append)."""
        key, spelled = _name(name)
        items, out, placed = self._items, [], False
        for item in items:
            if item[0] != key:
                out.append(item)
            elif not placed:
                out.append((key, spelled, value))
                placed = True
        if not placed:
            out.append((key, spelled, value))
        self._items = out
        self._changed()

    def add(self, name: str, value: str, first: bool = False) -> None:
        """Append, or with first=True insert before the first occurrence (else at the top)."""
        entry = (*_name(name), value)
        self._changed()
        if not first:
            self._items.append(entry)
            return
        index = next((i for i, item in enumerate(self._items) if item[0] == entry[0]), 0)
        self._items.insert(index, entry)

    def remove(self, name: str) -> None:
        key = _name(name)[0]
        self._items = [item for item in self._items if item[0] != key]
        self._changed()

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        return bool(self._values(_name(name)[0]))

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return ((name, value) for _, name, value in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and self._items == other._items

    def __repr__(self) -> str:
        return f"Headers({list(self)!r})"

    def copy(self) -> Headers:
        dup = Headers()
        dup._items = list(self._items)
        return dup


def _digits(value: str, what: str) -> int:
    value = value.strip(" \t")
    if not _DIGITS.fullmatch(value):
        raise ParseError(f"Bad {what}")
    return int(value)


def _parse_cseq(value: str) -> tuple[int, str]:
    m = _CSEQ.fullmatch(value)
    if m is None:
        raise ParseError("Bad CSeq")
    return int(m.group(1)), m.group(2)


class _Message:
    """Accessors shared by Request and Response. Each parses its header(s) once; the result is cached
    until the headers change, so treat what they return as read-only (``copy()`` it to modify)."""

    headers: Headers
    body: bytes
    is_request: ClassVar[bool]

    def _required(self, name: str) -> str:
        value = self.headers.get(name)
        if value is None:
            raise ParseError(f"Missing {name}")
        return value

    def _cached(self, key: str, parse: Callable[[], Any]) -> Any:
        parsed = self.headers.parsed
        try:
            return parsed[key]
        except KeyError:
            value = parsed[key] = parse()
            return value

    @property
    def call_id(self) -> str:
        return self._cached("call_id", lambda: self._required("Call-ID"))

    @property
    def cseq(self) -> tuple[int, str]:
        return self._cached("cseq", lambda: _parse_cseq(self._required("CSeq")))

    @property
    def vias(self) -> list[Via]:
        return [Via.parse(v) for v in self.headers.get_all("Via")]

    @vias.setter
    def vias(self, vias: list[Via]) -> None:
        """Rewrite all Via values, one header line each, where the first Via was."""
        headers = self.headers
        if not vias:
            headers.remove("Via")
            return
        headers.set("Via", str(vias[0]))
        index = next(i for i, item in enumerate(headers._items) if item[0] == "via")
        headers._items[index + 1:index + 1] = [("via", "Via", str(v)) for v in vias[1:]]
        headers._changed()

    @property
    def top_via(self) -> Via:
        return self._cached("top_via", self._top_via)

    def _top_via(self) -> Via:
        vias = self.headers.get_all("Via")
        if not vias:
            raise ParseError("Missing Via")
        return Via.parse(vias[0])

    @property
    def from_(self) -> NameAddr:
        return self._cached("from", lambda: NameAddr.parse(self._required("From")))

    @from_.setter
    def from_(self, value: NameAddr) -> None:
        self.headers.set("From", str(value))

    @property
    def to(self) -> NameAddr:
        return self._cached("to", lambda: NameAddr.parse(self._required("To")))

    @to.setter
    def to(self, value: NameAddr) -> None:
        self.headers.set("To", str(value))

    @property
    def contacts(self) -> list[NameAddr]:
        """Contact values; `Contact: *` (REGISTER wildcard) gives [] and contact_star is True."""
        return [NameAddr.parse(v) for v in self.headers.get_all("Contact") if v != "*"]

    @property
    def contact_star(self) -> bool:
        return "*" in self.headers.get_all("Contact")

    @property
    def max_forwards(self) -> int | None:
        value = self.headers.get("Max-Forwards")
        return None if value is None else _digits(value, "Max-Forwards")

    @property
    def expires(self) -> int | None:
        value = self.headers.get("Expires")
        return None if value is None else _digits(value, "Expires")

    @property
    def content_type(self) -> str | None:
        return self.headers.get("Content-Type")

    def _start_line(self) -> str:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        """Wire form with CRLFs; Content-Length always equals len(body)."""
        length = str(len(self.body))
        lines, has_length = [self._start_line()], False
        for key, name, value in self.headers._items:
            if key == "content-length":
                if has_length:
                    continue
                has_length, value = True, length
            lines.append(f"{name}: {value}")
        if not has_length:
            lines.append(f"Content-Length: {length}")
        lines += ["", ""]
        return "\r\n".join(lines).encode("utf-8", "surrogateescape") + self.body

    def __bytes__(self) -> bytes:
        return self.to_bytes()


@dataclass
class Request(_Message):
    method: str
    uri: SipURI | AbsoluteURI
    headers: Headers
    body: bytes = b""
    version: str = "SIP/2.0"
    is_request: ClassVar[bool] = True

    def _start_line(self) -> str:
        return f"{self.method} {self.uri} {self.version}"

    def copy(self) -> Request:
        return Request(self.method, self.uri.copy(), self.headers.copy(), self.body, self.version)


@dataclass
class Response(_Message):
    status: int
    reason: str
    headers: Headers
    body: bytes = b""
    version: str = "SIP/2.0"
    is_request: ClassVar[bool] = False

    def _start_line(self) -> str:
        return f"{self.version} {self.status} {self.reason}"

    def copy(self) -> Response:
        return Response(self.status, self.reason, self.headers.copy(), self.body, self.version)


def find_header_end(data: bytes | bytearray, start: int = 0) -> tuple[int, int] | None:
    """(end of the header block, start of the body) at the first blank line, else None.

    Plain finds rather than a regex: this runs on every datagram and every stream segment.
    """
    end, size = len(data), 0
    for sep in _HEADER_ENDS:
        i = data.find(sep, start, end)
        if i >= 0:
            end, size = i, len(sep)
    return (end, end + size) if size else None


def parse_message(data: bytes) -> Request | Response:
    """Parse one datagram/framed message; raise ParseError (with .headers etc. when known).

    Leading CRLFs are skipped, CRLF or bare LF line ends and folded lines are accepted. A body
    longer than Content-Length is cut to it (RFC 3261 §18.3), a shorter one is an error, and without
    Content-Length the rest of the datagram is the body.
    """
    data = data.lstrip(b"\r\n")
    found = find_header_end(data)
    head, body = (data[:found[0]].rstrip(b"\r"), data[found[1]:]) if found else (data.rstrip(b"\r\n"), b"")
    try:
        text, utf8 = head.decode(), True
    except UnicodeDecodeError:  # still parsed (bytes kept as surrogates) so the error can be answered
        text, utf8 = head.decode(errors="surrogateescape"), False
    text = text.replace("\r\n", "\n")
    first, _, rest = text.partition("\n")
    is_request = first[:4].upper() != "SIP/"
    headers = Headers()
    try:
        _parse_headers(rest, headers._items)
        if not utf8:
            raise ParseError("Invalid UTF-8 in message header")
        if "\r" in text:
            raise ParseError("Bare CR in message header")
        single, vias = _scan(headers._items)
        length = single.get("content-length")
        if length is not None:
            size = _digits(length, "Content-Length")
            if size > len(body):
                raise ParseError("Content-Length larger than body")
            body = body[:size]
        if is_request:
            return _request(first, headers, single, vias, body)
        return _response(first, headers, single, vias, body)
    except ParseError as err:
        err.headers, err.is_request = headers, is_request
        method = first.split(" ", 1)[0]
        err.method = method if is_request and TOKEN.fullmatch(method) else None
        raise


def _parse_headers(text: str, items: list[tuple[str, str, str]]) -> None:
    """Fill `items` from the header lines (folded lines joined with one SP)."""
    if not text:
        return
    known_names = _NAMES.get
    for line in text.split("\n"):
        if line[:1] in _WSP:
            if not items:
                raise ParseError("Folded start line")
            key, name, value = items[-1]
            items[-1] = (key, name, (value + " " + line.strip(_WSP)).strip(" "))
            continue
        name, colon, value = line.partition(":")
        name = name.rstrip(_WSP)
        known = known_names(name.lower())
        if known is None:
            if not _HEADER_NAME.fullmatch(name):
                raise ParseError("Malformed header line")
            known = (name.lower(), name)
        if not colon:
            raise ParseError("Malformed header line")
        items.append((*known, value.strip(_WSP)))


def _scan(items: list[tuple[str, str, str]]) -> tuple[dict[str, str], list[str]]:
    """One pass: values of the single-valued headers (rejecting repeats) and the raw Via values."""
    single: dict[str, str] = {}
    vias: list[str] = []
    for key, name, value in items:
        if key == "via":
            vias.append(value)
        elif key in _SINGLE_KEYS:
            if key in single:
                raise ParseError(f"Multiple {name}")
            single[key] = value
    return single, vias


def _check_common(single: dict[str, str], vias: list[str], parsed: dict[str, Any]) -> str:
    """Checks shared by requests and responses; returns the CSeq method. What it parses goes into the
    message's accessor cache (``parsed``), so the transaction layer and the TU do not parse it again."""
    if not vias:
        raise ParseError("Missing Via")
    for key in _MANDATORY:
        if key not in single:
            raise ParseError(f"Missing {_NAMES[key][1]}")
    cseq = _parse_cseq(single["cseq"])
    if cseq[0] > _MAX_CSEQ:
        raise ParseError("CSeq out of range")
    if not _CALL_ID.fullmatch(single["call-id"]):
        raise ParseError("Bad Call-ID")
    try:
        top = None
        for value in vias:
            for via in split_header_list(value) or [""]:
                parsed_via = Via.parse(via)
                top = top or parsed_via
    except ParseError as err:
        raise ParseError(f"Bad Via: {err.reason}") from None
    for key, name in (("from", "From"), ("to", "To")):
        try:
            parsed[key] = NameAddr.parse(single[key])
        except ParseError as err:
            raise ParseError(f"Bad {name}: {err.reason}") from None
    if "max-forwards" in single:
        _digits(single["max-forwards"], "Max-Forwards")
    parsed["top_via"], parsed["cseq"], parsed["call_id"] = top, cseq, single["call-id"]
    return cseq[1]


def _request(first: str, headers: Headers, single: dict[str, str], vias: list[str], body: bytes) -> Request:
    parts = [p for p in first.split(" ") if p]  # extra SP tolerated (RFC 4475 lwsstart, trws)
    if len(parts) != 3:
        raise ParseError("Malformed Request-Line")
    method, uri, version = parts
    if version.upper() != "SIP/2.0":
        if _SIP_VERSION.fullmatch(version):
            raise ParseError("Version Not Supported", 505)
        raise ParseError("Bad SIP-Version")
    if not TOKEN.fullmatch(method):
        raise ParseError("Bad method")
    request_uri = parse_uri(uri)
    if isinstance(request_uri, SipURI) and request_uri.headers:
        raise ParseError("Request-URI must not contain headers")
    if _check_common(single, vias, headers.parsed) != method:
        raise ParseError("CSeq method does not match request method")
    return Request(method, request_uri, headers, body)


def _response(first: str, headers: Headers, single: dict[str, str], vias: list[str], body: bytes) -> Response:
    m = _STATUS_LINE.fullmatch(first)
    if m is None or m.group(1).upper() != "SIP/2.0":
        raise ParseError("Malformed Status-Line")
    status = int(m.group(2))
    if not 100 <= status <= 699:
        raise ParseError("Status code out of range")
    _check_common(single, vias, headers.parsed)
    return Response(status, m.group(3) or "", headers, body)


def make_response(request: Request, status: int, reason: str | None = None, to_tag: str | None = None) -> Response:
    """Response per RFC 3261 §8.2.6: Via (in order), From, To (+to_tag if it has none), Call-ID, CSeq.

    A 100 also copies Timestamp (§8.2.6.1).
    """
    items: list[tuple[str, str, str]] = []
    for item in request.headers._items:
        key = item[0]
        if key == "to" and to_tag is not None and NameAddr.parse(item[2]).tag is None:
            items.append((key, item[1], f"{item[2]};tag={to_tag}"))  # params end any To value
        elif key in ("via", "from", "to", "call-id", "cseq") or (key == "timestamp" and status == 100):
            items.append(item)
    headers = Headers()
    headers._items = items
    return Response(status, reason if reason is not None else reason_phrase(status), headers)


def error_response(err: ParseError) -> Response | None:
    """Stateless answer to a request parse_message() rejected, or None when it must be dropped.

    Never for responses or ACK. Needs a top Via to route it; From, To, Call-ID and CSeq are copied
    verbatim when present (first occurrence) because the error may be in one of them (RFC 4475 quotbal, scalar02,
    multi01). If the top Via's parameters are broken (badinv01) its sent-protocol/sent-by is salvaged
    so the answer can still be routed; without a usable top Via there is nowhere to send it.
    """
    headers = err.headers
    if not err.is_request or headers is None or err.method in (None, "ACK"):
        return None
    values = {name: headers.get(name) for name in ("From", "To", "Call-ID", "CSeq")}
    vias = [v for k, _, v in headers._items if k == "via"]
    if not vias:
        return None
    top = (split_header_list(vias[0]) or [""])[0]
    try:
        Via.parse(top)
    except ParseError:
        try:
            vias = [str(Via.parse(top.split(";", 1)[0]))]
        except ParseError:
            return None
    out = Headers([("Via", v) for v in vias])
    to = values["To"]
    if to is not None:
        try:
            if NameAddr.parse(to).tag is None:
                seed = "|".join((values["Call-ID"] or "", values["From"] or "", top))
                # same request (retransmission), same tag
                to += ";tag=" + hashlib.blake2s(seed.encode("utf-8", "surrogateescape"), digest_size=6).hexdigest()
        except ParseError:
            pass  # copied verbatim: the sender's own (broken) To is all we have
    values["To"] = to
    for name, value in values.items():
        if value is not None:  # a missing one stays missing (RFC 4475 insuf): the Via alone routes the 400
            out.add(name, value)
    return Response(err.status, err.reason, out)
