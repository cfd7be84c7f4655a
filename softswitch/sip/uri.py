"""SIP/SIPS/tel URIs, name-addr values and Via values (RFC 3261 §19.1, §20, §25), sans-IO.

Parsers are strict where RFC 3261 is unambiguous (so RFC 4475 invalid messages are rejected) and
raise ParseError on anything else; they never raise another exception on bad text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote

if TYPE_CHECKING:
    from .message import Headers


class ParseError(Exception):
    """Malformed SIP input; `status` is the response code a server owes the sender (400, 505...).

    parse_message() fills `headers`, `is_request` and `method` so a caller can answer statelessly.
    """

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.headers: Headers | None = None
        self.is_request = False
        self.method: str | None = None


_TOKEN_CHARS = r"A-Za-z0-9\-.!%*_+`'~"
_QUOTED = r'"(?:[^"\\]|\\[\s\S])*"'
TOKEN = re.compile(f"[{_TOKEN_CHARS}]+")
_TOKEN_WORDS = re.compile(f"[{_TOKEN_CHARS}]+(?:[ \\t]+[{_TOKEN_CHARS}]+)*")
# generic-param: token [ "=" ( token / host / quoted-string ) ], LWS allowed around ";" and "=".
_VALUE_CHARS = f"{_TOKEN_CHARS}:\\[\\]/"
_VALUE = re.compile(f"[{_VALUE_CHARS}]+|{_QUOTED}")
_PARAM = re.compile(f"[ \\t]*;[ \\t]*([{_TOKEN_CHARS}]+)(?:[ \\t]*=[ \\t]*({_QUOTED}|[{_VALUE_CHARS}]+))?[ \\t]*")
# name-addr = [ display-name ] "<" URI ">" params; display-name = quoted-string / *(token LWS).
_NAME_ADDR = re.compile(
    f"[ \\t]*(?:({_QUOTED})[ \\t]*|([{_TOKEN_CHARS}]+(?:[ \\t]+[{_TOKEN_CHARS}]+)*)?[ \\t]*)<([^<>]*)>([\\s\\S]*)"
)
_NAME_ADDR_START = re.compile(f"(?:[{_TOKEN_CHARS}]+[ \\t]*)*<")
_QUOTE_ESC = re.compile(r'["\\\x00-\x08\x0b\x0c\x0e-\x1f\x7f]')

# SIP-URI pieces; "%" HEX HEX escapes are validated here and decoded into the dataclass fields.
_ESC = "%[0-9A-Fa-f]{2}"
_USER_SAFE = "-_.!~*'()&=+$,;?/"
_PASSWORD_SAFE = "-_.!~*'()&=+$,"
_PARAM_SAFE = "-_.!~*'()[]/:&+$"
_HEADER_SAFE = "-_.!~*'()[]/?:+$"
_USER = f"(?:[A-Za-z0-9{re.escape(_USER_SAFE)}]|{_ESC})+"
_PASSWORD = f"(?:[A-Za-z0-9{re.escape(_PASSWORD_SAFE)}]|{_ESC})*"
_PCHARS = f"(?:[A-Za-z0-9{re.escape(_PARAM_SAFE)}]|{_ESC})+"
_PARAMCHARS = re.compile(_PCHARS)
# Header values also accept unescaped ";@,=" as sent in the wild (Replaces=id@host;to-tag=...); the
# header part ends the URI, so this is unambiguous. They are emitted escaped.
_HNVCHARS = re.compile(f"(?:[A-Za-z0-9{re.escape(_HEADER_SAFE)}]|{_ESC})*")
_HVALUE = re.compile(f"(?:[A-Za-z0-9{re.escape(_HEADER_SAFE)};@,=]|{_ESC})*")
_HOST = r"\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9_.\-]*"
# One match validates userinfo, host, port and parameters; '@' ends the userinfo (user may hold ';?').
_SIP_URI = re.compile(
    f"(?:({_USER})(?::({_PASSWORD}))?@)?({_HOST})(?::([0-9]{{1,5}}))?"
    f"((?:;{_PCHARS}(?:={_PCHARS})?)*)(?:\\?([\\s\\S]*))?"
)
_TEL = re.compile(r"[0-9A-Za-z+*#().\-%]+")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*")
_OPAQUE = re.compile(r"[^\x00-\x20\x7f<>\"]+")
_VIA = re.compile(
    f"[ \\t]*([{_TOKEN_CHARS}]+)[ \\t]*/[ \\t]*([{_TOKEN_CHARS}]+)[ \\t]*/[ \\t]*([{_TOKEN_CHARS}]+)"
    f"[ \\t]+({_HOST})(?:[ \\t]*:[ \\t]*([0-9]{{1,5}}))?([\\s\\S]*)"
)
_SIP_SCHEMES = frozenset(("sip", "sips", "tel"))
_STRICT_PARAMS = frozenset({"user", "ttl", "method", "maddr", "transport"})


def _unescape(text: str) -> str:
    """Decode %XX escapes; surrogateescape keeps non-UTF-8 octets (e.g. %FF) round-trippable."""
    return unquote(text, errors="surrogateescape") if "%" in text else text


def _escape(text: str, safe: str) -> str:
    """Percent-encode what the grammar does not allow unescaped in this URI component."""
    if text.isalnum() and text.isascii():
        return text
    return quote(text, safe=safe, errors="surrogateescape")


def _host_ref(host: str, port: int | None) -> str:
    ref = f"[{host}]" if ":" in host else host
    return ref if port is None else f"{ref}:{port}"


def _port(text: str) -> int:
    port = int(text)
    if port > 65535:
        raise ParseError("Port out of range")
    return port


def unquote_string(value: str) -> str:
    """The content of a quoted-string with quoted-pairs resolved (a token is returned as is)."""
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\([\s\S])", r"\1", value[1:-1])
    return value


def quote_string(text: str) -> str:
    """A quoted-string for `text`; CR/LF cannot be represented and become spaces."""
    text = text.replace("\r", " ").replace("\n", " ")
    return '"' + _QUOTE_ESC.sub(lambda m: "\\" + m.group(), text) + '"'


def parse_params(text: str) -> dict[str, str | None]:
    """Parse `;a=b;c` header parameters: names lowercased, order kept, quoted values kept quoted.

    Keeping the quotes makes serialisation exact (a quoted and an unquoted value may differ in
    meaning, e.g. feature tags); use unquote_string() to read a quoted value.
    """
    params: dict[str, str | None] = {}
    pos, end = 0, len(text.rstrip(" \t"))
    while pos < end:
        m = _PARAM.match(text, pos)
        if m is None:
            raise ParseError("Malformed header parameter")
        params[m.group(1).lower()] = m.group(2)
        pos = m.end()
    return params


def params_str(params: dict[str, str | None]) -> str:
    """Serialise header parameters, quoting values that are neither token/host nor quoted."""
    out = []
    for name, value in params.items():
        if value is None:
            out.append(f";{name}")
        elif _VALUE.fullmatch(value):
            out.append(f";{name}={value}")
        else:
            out.append(f";{name}={quote_string(value)}")
    return "".join(out)


def split_header_list(value: str) -> list[str]:
    """Split a comma-separated header value on commas outside quotes and <>; drop empty items."""
    if "," not in value:
        value = value.strip(" \t")
        return [value] if value else []
    items, start, quoted, bracket, escaped = [], 0, False, False, False
    for i, ch in enumerate(value):
        if escaped:
            escaped = False
        elif quoted:
            if ch == "\\":
                escaped = True
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == "<":
            bracket = True
        elif ch == ">":
            bracket = False
        elif ch == "," and not bracket:
            items.append(value[start:i])
            start = i + 1
    items.append(value[start:])
    return [item for item in (raw.strip(" \t") for raw in items) if item]


@dataclass
class SipURI:
    """sip:/sips: URI (tel: parses into user=number, host=""); user/params/headers are decoded."""

    scheme: str = "sip"
    user: str | None = None
    password: str | None = None
    host: str = ""
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> SipURI:
        scheme, colon, rest = text.partition(":")
        scheme = scheme.lower()
        if not colon or scheme not in _SIP_SCHEMES:
            raise ParseError("Not a SIP URI")
        return cls._parse(scheme, rest)

    @classmethod
    def _parse(cls, scheme: str, rest: str) -> SipURI:
        if scheme == "tel":
            number, semi, params = rest.partition(";")
            if not _TEL.fullmatch(number):
                raise ParseError("Malformed tel URI")
            return cls("tel", number, None, "", None, _uri_params(semi + params) if semi else {})
        m = _SIP_URI.fullmatch(rest)
        if m is None:
            raise ParseError("Malformed SIP URI")
        user, password, host, port, params, headers = m.groups()
        return cls(
            scheme,
            None if user is None else _unescape(user),
            None if password is None else _unescape(password),
            host.strip("[]").lower(),
            None if port is None else _port(port),
            _uri_params(params) if params else {},
            {} if headers is None else _uri_headers(headers),
        )

    def __str__(self) -> str:
        if self.scheme == "tel":
            return f"tel:{self.user}{_uri_params_str(self.params)}"
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(_escape(self.user, _USER_SAFE))
            if self.password is not None:
                out += [":", _escape(self.password, _PASSWORD_SAFE)]
            out.append("@")
        out.append(_host_ref(self.host, self.port))
        if self.params:
            out.append(_uri_params_str(self.params))
        if self.headers:
            pairs = (f"{_escape(k, _HEADER_SAFE)}={_escape(v, _HEADER_SAFE)}" for k, v in self.headers.items())
            out += ["?", "&".join(pairs)]
        return "".join(out)

    @property
    def host_port(self) -> str:
        """`host[:port]` with IPv6 in brackets, as written in Via sent-by or a URI."""
        return _host_ref(self.host, self.port)

    def copy(self) -> SipURI:
        return SipURI(
            self.scheme, self.user, self.password, self.host, self.port, dict(self.params), dict(self.headers)
        )

    def matches(self, other: SipURI | AbsoluteURI) -> bool:
        """URI equivalence per RFC 3261 §19.1.4 (not dataclass equality, which is exact)."""
        if not isinstance(other, SipURI):
            return False
        if (self.scheme, self.user, self.password, self.host, self.port) != (
            other.scheme, other.user, other.password, other.host, other.port
        ):
            return False
        for name in self.params.keys() | other.params.keys():
            if name in self.params and name in other.params:
                a, b = self.params[name], other.params[name]
                if (a or "").lower() != (b or "").lower():
                    return False
            elif name in _STRICT_PARAMS:
                return False
        return {k.lower(): v for k, v in self.headers.items()} == {k.lower(): v for k, v in other.headers.items()}


def _uri_params(text: str) -> dict[str, str | None]:
    """`;a=b;c` URI parameters, decoded, names lowercased."""
    params: dict[str, str | None] = {}
    for part in text[1:].split(";"):
        name, eq, value = part.partition("=")
        if not _PARAMCHARS.fullmatch(name) or (eq and not _PARAMCHARS.fullmatch(value)):
            raise ParseError("Malformed URI parameter")
        params[_unescape(name).lower()] = _unescape(value) if eq else None
    return params


def _uri_params_str(params: dict[str, str | None]) -> str:
    return "".join(
        f";{_escape(k, _PARAM_SAFE)}" if v is None else f";{_escape(k, _PARAM_SAFE)}={_escape(v, _PARAM_SAFE)}"
        for k, v in params.items()
    )


def _uri_headers(text: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    for part in text.split("&"):
        name, eq, value = part.partition("=")
        if not eq or not name or not _HNVCHARS.fullmatch(name) or not _HVALUE.fullmatch(value):
            raise ParseError("Malformed URI header")
        headers[_unescape(name)] = _unescape(value)
    return headers


@dataclass
class AbsoluteURI:
    """A URI of a scheme we do not interpret (RFC 4475 unkscm/novelsc/unksm2); kept opaque."""

    scheme: str
    opaque: str

    @classmethod
    def parse(cls, text: str) -> AbsoluteURI:
        scheme, colon, opaque = text.partition(":")
        if not colon or not _SCHEME.fullmatch(scheme) or not _OPAQUE.fullmatch(opaque):
            raise ParseError("Malformed URI")
        return cls(scheme.lower(), opaque)

    def __str__(self) -> str:
        return f"{self.scheme}:{self.opaque}"

    def copy(self) -> AbsoluteURI:
        return AbsoluteURI(self.scheme, self.opaque)


def parse_uri(text: str) -> SipURI | AbsoluteURI:
    """SipURI for sip/sips/tel, AbsoluteURI for any other well-formed scheme."""
    scheme, colon, rest = text.partition(":")
    scheme = scheme.lower()
    if colon and scheme in _SIP_SCHEMES:
        return SipURI._parse(scheme, rest)
    return AbsoluteURI.parse(text)


@dataclass
class NameAddr:
    """From/To/Contact/Route-style value: optional display name, URI, header parameters."""

    display: str | None
    uri: SipURI | AbsoluteURI
    params: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> NameAddr:
        """Accept name-addr (quoted or token display name) and addr-spec (params belong to us)."""
        m = _NAME_ADDR.fullmatch(text)
        if m is not None:
            quoted, tokens, uri, params = m.groups()
            display = tokens if quoted is None else unquote_string(quoted)
            return cls(display or None, parse_uri(uri), parse_params(params) if params else {})
        text = text.strip(" \t")
        if text.startswith('"') or _NAME_ADDR_START.match(text):
            raise ParseError("Malformed name-addr")
        uri, semi, params = text.partition(";")
        if any(ch in uri for ch in ",?<>"):
            raise ParseError("URI with ',' or '?' must be enclosed in <>")
        return cls(None, parse_uri(uri.rstrip(" \t")), parse_params(semi + params) if semi else {})

    def __str__(self) -> str:
        out = f"<{self.uri}>"
        if self.display:
            name = self.display if _TOKEN_WORDS.fullmatch(self.display) else quote_string(self.display)
            out = f"{name} {out}"
        return out + params_str(self.params) if self.params else out

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    @tag.setter
    def tag(self, value: str | None) -> None:
        if value is None:
            self.params.pop("tag", None)
        else:
            self.params["tag"] = value

    def copy(self) -> NameAddr:
        return NameAddr(self.display, self.uri.copy(), dict(self.params))


@dataclass
class Via:
    """One Via value: sent-protocol, sent-by and parameters (branch, received, rport, ...)."""

    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    protocol: str = "SIP/2.0"

    @classmethod
    def parse(cls, text: str) -> Via:
        m = _VIA.fullmatch(text)
        if m is None:
            raise ParseError("Malformed Via")
        name, version, transport, host, port, params = m.groups()
        return cls(
            transport.upper(),
            host.strip("[]").lower(),
            None if port is None else _port(port),
            parse_params(params) if params else {},
            f"{name.upper()}/{version}",
        )

    def __str__(self) -> str:
        out = f"{self.protocol}/{self.transport} {_host_ref(self.host, self.port)}"
        return out + params_str(self.params) if self.params else out

    @property
    def host_port(self) -> str:
        return _host_ref(self.host, self.port)

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        return self.params.get("received")

    @received.setter
    def received(self, value: str | None) -> None:
        if value is None:
            self.params.pop("received", None)
        else:
            self.params["received"] = value

    @property
    def rport(self) -> str | None:
        """None if absent, "" if present without a value (a request for RFC 3581), else the port."""
        if "rport" not in self.params:
            return None
        return self.params["rport"] or ""

    @rport.setter
    def rport(self, value: str | None) -> None:
        if value is None:
            self.params.pop("rport", None)
        else:
            self.params["rport"] = value or None

    def copy(self) -> Via:
        return Via(self.transport, self.host, self.port, dict(self.params), self.protocol)
