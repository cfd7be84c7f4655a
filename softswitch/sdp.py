"""SDP (RFC 4566) parse/serialise and the offer/answer helpers (RFC 3264) the B2BUA needs, sans-IO.

The B2BUA never negotiates codecs between its legs: it relays each side's SDP with the addresses
rewritten to its own relay ports (`anchor`). It only terminates media for services such as echo
(`answer_for`). Lines we do not interpret are kept in order so a relayed SDP stays faithful.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType


class SdpError(ValueError):
    """Unparseable SDP, or an offer we cannot answer (the caller answers 488)."""


DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
_PLAIN_RTP = ("RTP/AVP", "RTP/AVPF")  # what we can terminate: no SRTP keys here
_MIRROR = MappingProxyType({"sendonly": "recvonly", "recvonly": "sendonly"})
_ICE_ATTRIBUTES = frozenset(
    {"candidate", "remote-candidates", "end-of-candidates", "ice-ufrag", "ice-pwd", "ice-options", "ice-lite"}
)
# RFC 3551 static payload types: pt -> (encoding, clock rate, channels).
_STATIC_PT = MappingProxyType({
    0: ("PCMU", 8000, 1), 3: ("GSM", 8000, 1), 4: ("G723", 8000, 1), 5: ("DVI4", 8000, 1),
    6: ("DVI4", 16000, 1), 7: ("LPC", 8000, 1), 8: ("PCMA", 8000, 1), 9: ("G722", 8000, 1),
    10: ("L16", 44100, 2), 11: ("L16", 44100, 1), 12: ("QCELP", 8000, 1), 13: ("CN", 8000, 1),
    14: ("MPA", 90000, 1), 15: ("G728", 8000, 1), 16: ("DVI4", 11025, 1), 17: ("DVI4", 22050, 1),
    18: ("G729", 8000, 1),
})
_LINE = re.compile(r"([a-z])=(.*)")
_NEWLINE = re.compile(r"\r?\n|\r")
# Where uninterpreted lines go back on output (RFC 4566 §5 order): session i u e p | c | b | t | r z k...
_SESSION_BEFORE_C = frozenset("iuep")
_MEDIA_BEFORE_C = frozenset("i")


def _address_type(address: str) -> str:
    return "IP6" if ":" in address else "IP4"


def _is_unspecified(address: str | None) -> bool:
    return address in ("0.0.0.0", "::")


@dataclass
class Codec:
    pt: int
    name: str
    rate: int
    channels: int = 1
    fmtp: str | None = None


@dataclass
class Origin:
    """The o= line. A leg keeps one and bumps ``sess_version`` when what it sends changes."""

    username: str
    sess_id: str
    sess_version: int
    nettype: str
    addrtype: str
    address: str

    @classmethod
    def parse(cls, value: str) -> Origin:
        parts = value.split()
        if len(parts) != 6 or not parts[2].isdigit():
            raise SdpError(f"bad o= line: {value!r}")
        return cls(parts[0], parts[1], int(parts[2]), parts[3], parts[4], parts[5])

    @classmethod
    def fresh(cls, address: str, username: str = "-") -> Origin:
        """A new origin for a leg we originate SDP on (random id: no clock in a sans-IO core)."""
        return cls(username, str(secrets.randbits(62)), 1, "IN", _address_type(address), address)

    def __str__(self) -> str:
        return (f"{self.username} {self.sess_id} {self.sess_version} "
                f"{self.nettype} {self.addrtype} {self.address}")


@dataclass
class Media:
    """One m= section. ``connection_ip`` is the media-level c= only (see `SessionDescription.media_address`)."""

    kind: str
    port: int
    proto: str
    fmts: list[str]
    connection_ip: str | None = None
    attributes: list[tuple[str, str | None]] = field(default_factory=list)
    port_count: int | None = None  # the "/2" of "m=audio 49170/2 ..."
    other: list[tuple[str, str]] = field(default_factory=list)  # i= b= k= ... in order

    def attribute(self, name: str) -> str | None:
        """Value of the first a=name:value (None if absent or a flag)."""
        return next((v for n, v in self.attributes if n == name), None)

    @property
    def rtcp_port(self) -> int:
        value = self.attribute("rtcp")
        if value and value.split()[0].isdigit():
            return int(value.split()[0])
        return self.port + 1

    @property
    def direction(self) -> str:
        return next((n for n, _ in self.attributes if n in DIRECTIONS), "sendrecv")

    @direction.setter
    def direction(self, value: str) -> None:
        if value not in DIRECTIONS:
            raise ValueError(f"unknown direction {value!r}")
        self.attributes = [a for a in self.attributes if a[0] not in DIRECTIONS] + [(value, None)]

    @property
    def ptime(self) -> int | None:
        value = self.attribute("ptime")
        return int(value) if value and value.strip().isdigit() else None

    @property
    def codecs(self) -> list[Codec]:
        """Offered formats in preference order; dynamic types without a usable rtpmap are skipped."""
        rtpmap: dict[str, tuple[str, int, int]] = {}
        fmtp: dict[str, str] = {}
        for name, value in self.attributes:
            if value is None or name not in ("rtpmap", "fmtp"):
                continue
            pt, _, rest = value.partition(" ")
            if name == "fmtp":
                fmtp.setdefault(pt, rest.strip())
                continue
            enc = rest.strip().split("/")
            if len(enc) >= 2 and enc[1].isdigit() and (len(enc) == 2 or enc[2].isdigit()):
                rtpmap.setdefault(pt, (enc[0], int(enc[1]), int(enc[2]) if len(enc) > 2 else 1))
        codecs = []
        for fmt in self.fmts:
            if not fmt.isdigit():
                continue
            spec = rtpmap.get(fmt) or _STATIC_PT.get(int(fmt))
            if spec is not None:
                codecs.append(Codec(int(fmt), spec[0], spec[1], spec[2], fmtp.get(fmt)))
        return codecs

    def copy(self) -> Media:
        return replace(self, fmts=list(self.fmts), attributes=list(self.attributes), other=list(self.other))

    def _lines(self) -> Iterable[str]:
        port = f"{self.port}/{self.port_count}" if self.port_count is not None else str(self.port)
        yield " ".join(["m=" + self.kind, port, self.proto, *self.fmts])
        yield from (f"{t}={v}" for t, v in self.other if t in _MEDIA_BEFORE_C)
        if self.connection_ip is not None:
            yield f"c=IN {_address_type(self.connection_ip)} {self.connection_ip}"
        yield from (f"{t}={v}" for t, v in self.other if t not in _MEDIA_BEFORE_C)
        yield from _attribute_lines(self.attributes)


def _attribute_lines(attributes: list[tuple[str, str | None]]) -> Iterable[str]:
    return (f"a={n}" if v is None else f"a={n}:{v}" for n, v in attributes)


def _parse_connection(value: str) -> str:
    parts = value.split()
    if len(parts) != 3:
        raise SdpError(f"bad c= line: {value!r}")
    return parts[2]


def _parse_media(value: str) -> Media:
    parts = value.split()
    if len(parts) < 3:
        raise SdpError(f"bad m= line: {value!r}")
    port, _, count = parts[1].partition("/")
    if not port.isdigit() or int(port) > 65535 or (count and not count.isdigit()):
        raise SdpError(f"bad m= port: {value!r}")
    return Media(parts[0], int(port), parts[2], parts[3:], port_count=int(count) if count else None)


@dataclass
class SessionDescription:
    """A parsed SDP body; `to_bytes` writes it back, uninterpreted lines included, in RFC 4566 order."""

    origin: Origin
    session_name: str = "-"
    connection_ip: str | None = None  # session-level c=
    timing: str = "0 0"
    attributes: list[tuple[str, str | None]] = field(default_factory=list)
    media: list[Media] = field(default_factory=list)
    version: int = 0
    other: list[tuple[str, str]] = field(default_factory=list)  # session-level lines we do not interpret

    @classmethod
    def parse(cls, data: bytes | str) -> SessionDescription:
        if isinstance(data, bytes):
            try:
                data = data.decode("utf-8")
            except UnicodeDecodeError:
                raise SdpError("SDP is not UTF-8") from None
        lines = [line.rstrip(" \t") for line in _NEWLINE.split(data) if line.strip()]
        if not lines or lines[0] != "v=0":
            raise SdpError("SDP must start with v=0")
        origin: Origin | None = None
        fields: dict[str, str] = {}
        connection_ip: str | None = None
        attributes: list[tuple[str, str | None]] = []
        other: list[tuple[str, str]] = []
        media: list[Media] = []
        for line in lines[1:]:
            match = _LINE.fullmatch(line)
            if match is None:
                raise SdpError(f"bad SDP line: {line[:60]!r}")
            kind, value = match.groups()
            if kind in "vo" and (kind == "v" or media or origin is not None):
                raise SdpError(f"misplaced {kind}= line")
            if kind == "m":
                media.append(_parse_media(value))
            elif kind == "a":
                name, sep, attr = value.partition(":")
                (media[-1].attributes if media else attributes).append((name, attr if sep else None))
            elif kind == "c" and media:
                media[-1].connection_ip = _parse_connection(value)
            elif kind == "c":
                connection_ip = _parse_connection(value)
            elif media:
                media[-1].other.append((kind, value))
            elif kind == "o":
                origin = Origin.parse(value)
            elif kind in "st" and kind not in fields:
                fields[kind] = value
            else:
                other.append((kind, value))
        if origin is None:
            raise SdpError("SDP has no o= line")
        return cls(origin, fields.get("s", "-"), connection_ip, fields.get("t", "0 0"), attributes, media,
                   0, other)

    def to_bytes(self) -> bytes:
        lines = [f"v={self.version}", f"o={self.origin}", f"s={self.session_name}"]
        lines += (f"{t}={v}" for t, v in self.other if t in _SESSION_BEFORE_C)
        if self.connection_ip is not None:
            lines.append(f"c=IN {_address_type(self.connection_ip)} {self.connection_ip}")
        lines += (f"b={v}" for t, v in self.other if t == "b")
        lines.append(f"t={self.timing}")
        lines += (f"{t}={v}" for t, v in self.other if t not in _SESSION_BEFORE_C and t != "b")
        lines += _attribute_lines(self.attributes)
        for m in self.media:
            lines += m._lines()
        return ("\r\n".join(lines) + "\r\n").encode()

    def copy(self) -> SessionDescription:
        return replace(self, origin=replace(self.origin), attributes=list(self.attributes),
                       media=[m.copy() for m in self.media], other=list(self.other))

    def media_address(self, i: int) -> tuple[str, int]:
        """Where stream i wants its RTP: media-level c= falling back to session-level c=."""
        m = self.media[i]
        address = m.connection_ip or self.connection_ip
        if address is None:
            raise SdpError(f"no c= line for m= line {i}")
        return address.split("/")[0], m.port

    def media_direction(self, i: int) -> str:
        """Stream i's direction: a media-level attribute wins over a session-level one."""
        m = self.media[i]
        if any(n in DIRECTIONS for n, _ in m.attributes):
            return m.direction
        return next((n for n, _ in self.attributes if n in DIRECTIONS), "sendrecv")

    def is_hold(self, i: int) -> bool:
        """RFC 3264 §8.4 hold (sendonly/inactive) or the RFC 2543 style c=0.0.0.0."""
        return self.media_direction(i) in ("sendonly", "inactive") or self.media_address(i)[0] == "0.0.0.0"


@dataclass
class OriginKeeper:
    """The o= line one leg presents. RFC 3264 §8: sess-version increments only when the SDP changes."""

    origin: Origin
    _sent: SessionDescription | None = field(default=None, init=False, repr=False)

    def stamp(self, sdp: SessionDescription) -> SessionDescription:
        """A copy of ``sdp`` carrying this leg's origin, its version bumped if the content changed."""
        out = sdp.copy()
        out.origin = replace(self.origin)
        if self._sent is not None and out != self._sent:
            self.origin.sess_version += 1
            out.origin = replace(self.origin)
        self._sent = out.copy()
        return out


def anchor(sdp: SessionDescription, ip: str, ports: Sequence[int],
           origin: Origin | None = None) -> SessionDescription:
    """Rewrite ``sdp`` so the peer sends media to our relay: ``ports[i]`` for m= line i at ``ip``.

    Rejected streams (port 0) stay rejected; c=0.0.0.0 (old-style hold) is kept so the hold reaches
    the other party. ICE is stripped: the relay is the only address the peer may use.
    """
    if len(ports) != len(sdp.media):
        raise ValueError(f"{len(sdp.media)} m= lines but {len(ports)} ports")
    out = sdp.copy()
    if origin is not None:
        out.origin = replace(origin)
    out.attributes = [a for a in out.attributes if a[0] not in _ICE_ATTRIBUTES]
    if out.connection_ip is not None and not _is_unspecified(out.connection_ip):
        out.connection_ip = ip
    for m, port in zip(out.media, ports):
        if m.port != 0:
            m.port = port
        rtcp = str(m.port + 1)
        m.attributes = [("rtcp", rtcp) if n == "rtcp" else (n, v) for n, v in m.attributes
                        if n not in _ICE_ATTRIBUTES and (n != "rtcp" or m.port != 0)]
        if m.connection_ip is not None and not _is_unspecified(m.connection_ip):
            m.connection_ip = ip
        elif m.connection_ip is None and out.connection_ip is None:
            out.connection_ip = ip
    return out


def answer_for(offer: SessionDescription, ip: str, port: int, supported: Sequence[str] = ("PCMU", "PCMA"),
               telephone_event: bool = True, origin: Origin | None = None) -> SessionDescription:
    """RFC 3264 answer terminating media at ``ip:port`` (services such as echo).

    The first live audio stream gets the first offered codec we support, under the offerer's
    payload type, plus telephone-event if offered; every other stream is rejected (port 0).
    Raises SdpError when nothing matches (answer 488).
    """
    wanted = {name.upper() for name in supported}
    answer = SessionDescription(origin or Origin.fresh(ip), connection_ip=ip)
    accepted = False
    for i, offered in enumerate(offer.media):
        m = Media(offered.kind, 0, offered.proto, list(offered.fmts))
        live = offered.kind == "audio" and offered.proto in _PLAIN_RTP and offered.port != 0
        codecs = offered.codecs if live and not accepted else []
        codec = next((c for c in codecs if c.name.upper() in wanted), None)
        if codec is not None:
            accepted = True
            chosen = [codec]
            dtmf = next((c for c in codecs if c.name.lower() == "telephone-event" and c.rate == codec.rate), None)
            if telephone_event and dtmf is not None:
                chosen.append(dtmf)
            m.port, m.fmts = port, [str(c.pt) for c in chosen]
            for c in chosen:
                channels = f"/{c.channels}" if c.channels != 1 else ""
                m.attributes.append(("rtpmap", f"{c.pt} {c.name}/{c.rate}{channels}"))
                if c.fmtp is not None:
                    m.attributes.append(("fmtp", f"{c.pt} {c.fmtp}"))
            if offered.ptime is not None:  # what we will send: whole frames of our 20 ms clock
                m.attributes.append(("ptime", str(offered.ptime if offered.ptime in SEND_PTIMES else 20)))
            direction = offer.media_direction(i)
            m.direction = _MIRROR.get(direction, direction)
        answer.media.append(m)
    if not accepted:
        raise SdpError("no common audio codec")
    return answer


# ---------------------------------------------------------------------- terminated and transcoded media
G711 = ("PCMU", "PCMA")
_G711_PT = MappingProxyType({"PCMU": 0, "PCMA": 8})
SEND_PTIMES = (20, 40, 60)  # packet sizes we send: whole 20 ms frames of the media clock


@dataclass
class StreamParams:
    """What offer/answer settled for one audio stream, seen from our side."""

    remote_host: str
    remote_port: int
    remote_rtcp_port: int
    codec: str = "PCMU"            # what we send (and expect)
    pt: int = 0
    te_pt: int | None = None       # telephone-event payload type, if negotiated
    ptime: int = 20                # ms of audio per packet we send
    direction: str = "sendrecv"    # ours: "recvonly"/"inactive" means we must not send
    receive_pts: dict[int, str] = field(default_factory=dict)  # every payload type the peer may send us

    @property
    def sending(self) -> bool:
        return self.direction in ("sendrecv", "sendonly") and self.remote_port != 0 \
            and not _is_unspecified(self.remote_host)

    @property
    def receiving(self) -> bool:
        return self.direction in ("sendrecv", "recvonly")


def _first_audio(sdp: SessionDescription) -> tuple[int, Media] | None:
    return next(((i, m) for i, m in enumerate(sdp.media) if m.kind == "audio" and m.port != 0), None)


def _voice_codecs(m: Media) -> list[Codec]:
    return [c for c in m.codecs if c.name.lower() not in ("telephone-event", "cn")]


def _te(m: Media, rate: int = 8000) -> Codec | None:
    return next((c for c in m.codecs if c.name.lower() == "telephone-event" and c.rate == rate), None)


def stream_params(local: SessionDescription, remote: SessionDescription,
                  local_is_answer: bool) -> StreamParams | None:
    """Our side of the first live audio stream once offer and answer are both known (None: no audio).

    The answer's first voice codec is what both sides send (RFC 3264 §6.1), under its payload type.
    """
    ours, theirs = _first_audio(local), _first_audio(remote)
    if ours is None or theirs is None:
        return None
    (_, lm), (ti, tm) = ours, theirs
    answer = lm if local_is_answer else tm
    voice = [c for c in _voice_codecs(answer) if c.name.upper() in G711]
    if not voice:
        return None
    host, port = remote.media_address(ti)
    te = _te(answer)
    ptime = tm.ptime if tm.ptime in SEND_PTIMES else 20
    receive = {c.pt: c.name.upper() for c in _voice_codecs(lm) + _voice_codecs(tm) if c.name.upper() in G711}
    return StreamParams(host, port, tm.rtcp_port, voice[0].name.upper(), voice[0].pt,
                        te.pt if te is not None else None, ptime, lm.direction, receive)


def with_transcoding(offer: SessionDescription, codecs: Sequence[str] = G711) -> SessionDescription:
    """The offer plus the G.711 variants it lacks (after its own), which the B2BUA can transcode to."""
    out = offer.copy()
    found = _first_audio(out)
    if found is None:
        return out
    _, m = found
    offered = {c.name.upper() for c in m.codecs}
    if not offered & set(codecs):
        return out  # nothing we could transcode from
    taken = set(m.fmts)
    for name in codecs:
        pt = str(_G711_PT[name])
        if name not in offered and pt not in taken:
            te_at = next((i for i, f in enumerate(m.fmts) if any(
                c.pt == int(f) and c.name.lower() == "telephone-event" for c in m.codecs if f.isdigit())), len(m.fmts))
            m.fmts.insert(te_at, pt)
            m.attributes.append(("rtpmap", f"{pt} {name}/8000"))
    return out


def answer_codec(sdp: SessionDescription) -> Codec | None:
    """The voice codec an answer selected (its first), if any."""
    found = _first_audio(sdp)
    voice = _voice_codecs(found[1]) if found else []
    return voice[0] if voice else None


def offered_codec(offer: SessionDescription, name: str) -> Codec | None:
    found = _first_audio(offer)
    return next((c for c in (found[1].codecs if found else []) if c.name.upper() == name.upper()), None)


def retarget_answer(answer: SessionDescription, offer: SessionDescription) -> tuple[SessionDescription, Codec]:
    """Rewrite a callee's answer so it is a valid answer to the caller's ``offer``.

    Used when the callee chose a codec the caller never offered (one `with_transcoding` added): the
    caller gets the first G.711 codec of its own offer (plus telephone-event if both sides have it)
    and the bridge transcodes. Raises SdpError if the caller offered no G.711.
    """
    found_o, found_a = _first_audio(offer), _first_audio(answer)
    if found_o is None or found_a is None:
        raise SdpError("no audio stream to retarget")
    om, (ai, am) = found_o[1], found_a
    mine = next((c for c in _voice_codecs(om) if c.name.upper() in G711), None)
    if mine is None:
        raise SdpError("the caller offered no G.711 codec to transcode to")
    chosen = [mine]
    te_o, te_a = _te(om), _te(am)
    if te_o is not None and te_a is not None:
        chosen.append(te_o)
    out = answer.copy()
    m = out.media[ai]
    m.fmts = [str(c.pt) for c in chosen]
    m.attributes = [(n, v) for n, v in m.attributes if n not in ("rtpmap", "fmtp")]
    for c in chosen:
        m.attributes.append(("rtpmap", f"{c.pt} {c.name}/{c.rate}"))
        if c.fmtp is not None:
            m.attributes.append(("fmtp", f"{c.pt} {c.fmtp}"))
    return out, mine
