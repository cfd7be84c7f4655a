"""HTTP Digest authentication for SIP (RFC 3261 §22, RFC 2617, RFC 7616, RFC 8760), sans-IO.

Works on header *values* only, so it does not depend on the message classes. Note that
WWW-Authenticate / Authorization values contain commas but are not comma lists
(RFC 3261 §7.3.1): take each header value whole, never split it.

Server nonces are stateless: ``base64url(timestamp || HMAC(secret, timestamp || realm))``, so
any process holding the secret can verify them without storage; only the optional nonce-count
replay memory is state, and it is bounded.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
import secrets
import struct
from collections import OrderedDict
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable

__all__ = [
    "AuthError",
    "AuthResult",
    "DigestClient",
    "DigestServer",
    "SUPPORTED_ALGORITHMS",
    "answer_challenge",
    "choose_challenge",
    "digest_response",
    "parse_digest",
]

_HASHES: MappingProxyType[str, Callable[[bytes], Any]] = MappingProxyType(
    {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}
)
#: Canonical spelling of every algorithm we implement (RFC 7616 §3.3, RFC 8760).
SUPPORTED_ALGORITHMS: tuple[str, ...] = ("MD5", "MD5-sess", "SHA-256", "SHA-256-sess")
_CANON = MappingProxyType({a.lower(): a for a in SUPPORTED_ALGORITHMS})
_STRENGTH = MappingProxyType({"MD5": 1, "SHA-256": 2})  # choose_challenge: higher wins

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_SCHEME_RE = re.compile(rf"\s*({_TOKEN})(?:\s+|$)")
# value: quoted-string or a lenient token (some UAs leave base64 nonces unquoted).
_PARAM_RE = re.compile(rf'\s*({_TOKEN})\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]+))\s*(,|$)', re.S)
_SEP_RE = re.compile(r"[\s,]*")  # empty list elements are legal (RFC 7230 §7)
_UNESCAPE_RE = re.compile(r"\\(.)", re.S)
_NONCE_RE = re.compile(r"[A-Za-z0-9_-]{32}")
_NC_RE = re.compile(r"[0-9A-Fa-f]{8}")
_HEX_RE = re.compile(r"[0-9A-Fa-f]+")
_FUTURE_SKEW = 1.0  # seconds a nonce timestamp may lead `now` (same clock, so only rounding)


class AuthError(ValueError):
    """A Digest header value that cannot be parsed or answered."""


def parse_digest(value: str) -> dict[str, str]:
    """Parse a ``Digest k=v, k="v"`` value into {lowercased name: unescaped value}.

    Raises AuthError for another scheme, syntax errors or duplicate parameters, so callers
    only ever need to catch one exception type.
    """
    if not isinstance(value, str):
        raise AuthError("header value is not a string")
    m = _SCHEME_RE.match(value)
    if not m or m.group(1).lower() != "digest":
        raise AuthError("not a Digest credential/challenge")
    params: dict[str, str] = {}
    pos, end = m.end(), len(value)
    while (pos := _SEP_RE.match(value, pos).end()) < end:  # type: ignore[union-attr]
        p = _PARAM_RE.match(value, pos)
        if not p:
            raise AuthError(f"malformed Digest parameter at offset {pos}")
        name = p.group(1).lower()
        if name in params:
            raise AuthError(f"duplicate Digest parameter {name!r}")
        quoted = p.group(2)
        params[name] = _UNESCAPE_RE.sub(r"\1", quoted) if quoted is not None else p.group(3)
        pos = p.end()
    if not params:
        raise AuthError("Digest without parameters")
    return params


def _split_algorithm(algorithm: str | None) -> tuple[str, str, bool]:
    """Return (canonical name, base hash name, is_sess); absent means MD5 (RFC 2617 §3.2.1)."""
    canon = _CANON.get((algorithm or "MD5").lower())
    if canon is None:
        raise AuthError(f"unsupported algorithm {algorithm!r}")
    base, sess = (canon[:-5], True) if canon.endswith("-sess") else (canon, False)
    return canon, base, sess


def _h(base: str, data: str) -> str:
    return _HASHES[base](data.encode("utf-8", "surrogatepass")).hexdigest()


def digest_response(
    *,
    algorithm: str | None,
    username: str,
    realm: str,
    password: str,
    method: str,
    uri: str,
    nonce: str,
    qop: str | None = None,
    nc: str = "",
    cnonce: str = "",
    body: bytes = b"",
) -> str:
    """Compute request-digest (RFC 7616 §3.4.1); qop None is the RFC 2069 legacy form."""
    _, base, sess = _split_algorithm(algorithm)
    ha1 = _h(base, f"{username}:{realm}:{password}")
    if sess:
        ha1 = _h(base, f"{ha1}:{nonce}:{cnonce}")
    a2 = f"{method}:{uri}"
    if qop == "auth-int":
        a2 += ":" + _HASHES[base](body).hexdigest()
    elif qop not in (None, "auth"):
        raise AuthError(f"unsupported qop {qop!r}")
    ha2 = _h(base, a2)
    if qop is None:
        return _h(base, f"{ha1}:{nonce}:{ha2}")
    return _h(base, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --------------------------------------------------------------------------- server


@dataclass(frozen=True)
class AuthResult:
    """Outcome of DigestServer.verify; `uri` is the digest-uri the caller must match to the R-URI."""

    ok: bool
    username: str | None = None
    stale: bool = False
    reason: str = ""
    uri: str | None = None


class DigestServer:
    """Issues challenges and verifies credentials for one realm.

    State is limited to a bounded LRU of (nonce, cnonce) -> highest nc, for replay protection.
    Retransmissions must be absorbed by the transaction layer before reaching verify(), since
    a repeated nc is rejected as a replay.
    """

    def __init__(
        self,
        realm: str,
        secret: bytes,
        nonce_ttl: float = 300,
        algorithms: tuple[str, ...] = ("SHA-256", "MD5"),
        *,
        opaque: str | None = None,
        allow_no_qop: bool = True,
        replay_cache: int = 4096,
    ) -> None:
        if not secret:
            raise ValueError("DigestServer needs a non-empty secret")
        if not algorithms:
            raise ValueError("DigestServer needs at least one algorithm")
        try:
            self.algorithms = tuple(_split_algorithm(a)[0] for a in algorithms)
        except AuthError as e:
            raise ValueError(str(e)) from None
        self.realm = realm
        self.nonce_ttl = float(nonce_ttl)
        self.opaque = opaque
        self.allow_no_qop = allow_no_qop
        self._secret = bytes(secret)
        self._accepted = set(self.algorithms) | {a + "-sess" for a in self.algorithms if a in _HASHES}
        self._nc: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._nc_max = max(0, replay_cache)

    # nonces ---------------------------------------------------------------
    def _mac(self, ts: bytes) -> bytes:
        return hmac.new(self._secret, ts + self.realm.encode(), hashlib.sha256).digest()[:16]

    def make_nonce(self, now: float) -> str:
        """A nonce that proves it was issued by us at `now` (no storage needed)."""
        ts = struct.pack(">d", now)
        return base64.urlsafe_b64encode(ts + self._mac(ts)).decode("ascii")

    def nonce_time(self, nonce: str) -> float | None:
        """Issue time of an authentic nonce, or None when forged/garbled."""
        if not _NONCE_RE.fullmatch(nonce):
            return None
        raw = base64.urlsafe_b64decode(nonce)
        ts, mac = raw[:8], raw[8:]
        if not hmac.compare_digest(mac, self._mac(ts)):
            return None
        t = struct.unpack(">d", ts)[0]
        return t if math.isfinite(t) else None

    # challenges -----------------------------------------------------------
    def challenges(self, now: float, stale: bool = False) -> list[str]:
        """One WWW-/Proxy-Authenticate value per algorithm, most preferred first."""
        nonce = self.make_nonce(now)
        tail = (f", opaque={_quote(self.opaque)}" if self.opaque is not None else "") + (
            ", stale=true" if stale else ""
        )
        return [
            f'Digest realm={_quote(self.realm)}, nonce="{nonce}", algorithm={alg}, qop="auth"{tail}'
            for alg in self.algorithms
        ]

    # verification ---------------------------------------------------------
    def verify(
        self,
        method: str,
        authorization: str,
        now: float,
        password_for: Callable[[str], str | None],
        *,
        body: bytes | None = None,
    ) -> AuthResult:
        """Check an Authorization/Proxy-Authorization value; never raises on bad input.

        `body` enables qop=auth-int (we only offer auth, but accept auth-int when we can check it).
        On stale=True the caller re-challenges with challenges(now, stale=True).
        """
        try:
            p = parse_digest(authorization)
        except AuthError as e:
            return AuthResult(False, reason=f"malformed credentials: {e}")
        username, uri = p.get("username"), p.get("uri")

        def fail(reason: str, stale: bool = False) -> AuthResult:
            return AuthResult(False, username, stale, reason, uri)

        missing = [k for k in ("username", "realm", "nonce", "uri", "response") if k not in p]
        if missing:
            return fail("missing " + ", ".join(missing))
        assert username is not None and uri is not None
        if p["realm"] != self.realm:
            return fail("wrong realm")
        try:
            algorithm = _split_algorithm(p.get("algorithm"))[0]
        except AuthError as e:
            return fail(str(e))
        if algorithm not in self._accepted:
            return fail(f"algorithm {algorithm} not offered")
        if p.get("userhash", "false").lower() == "true":
            return fail("userhash not supported")
        qop = p.get("qop")
        nc = cnonce = ""
        if qop is None:
            if not self.allow_no_qop:
                return fail("qop required")
            if algorithm.endswith("-sess"):
                cnonce = p.get("cnonce", "")
        else:
            qop = qop.lower()
            if qop not in ("auth", "auth-int") or (qop == "auth-int" and body is None):
                return fail(f"unsupported qop {qop}")
            nc, cnonce = p.get("nc", ""), p.get("cnonce", "")
            if not _NC_RE.fullmatch(nc) or not cnonce:
                return fail("bad nc/cnonce")
        if self.opaque is not None and p.get("opaque") != self.opaque:
            return fail("opaque mismatch")
        issued = self.nonce_time(p["nonce"])
        if issued is None or issued > now + _FUTURE_SKEW:
            return fail("invalid nonce")
        password = password_for(username)
        if password is None:
            return fail("unknown user")
        expected = digest_response(
            algorithm=algorithm, username=username, realm=self.realm, password=password,
            method=method, uri=uri, nonce=p["nonce"], qop=qop, nc=nc, cnonce=cnonce,
            body=body or b"",
        )
        got = p["response"]
        if not _HEX_RE.fullmatch(got) or not hmac.compare_digest(got.lower().encode(), expected.encode()):
            return fail("wrong response")
        if now - issued > self.nonce_ttl:
            return fail("stale nonce", stale=True)  # right password, old nonce: retry silently
        if qop is not None and not self._check_nc(p["nonce"], cnonce, int(nc, 16)):
            return fail("replayed nonce count")
        return AuthResult(True, username, False, "ok", uri)

    def _check_nc(self, nonce: str, cnonce: str, nc: int) -> bool:
        """Require nc to grow per (nonce, cnonce); the memory is an LRU bounded by replay_cache."""
        if self._nc_max == 0:
            return True
        key = (nonce, cnonce)
        last = self._nc.get(key)
        if last is not None and nc <= last:
            return False
        self._nc[key] = nc
        self._nc.move_to_end(key)
        while len(self._nc) > self._nc_max:
            self._nc.popitem(last=False)
        return True


# --------------------------------------------------------------------------- client


def _usable(params: dict[str, str]) -> tuple[str, str | None]:
    """(canonical algorithm, chosen qop) for a challenge, or AuthError if we cannot answer it."""
    if "realm" not in params or "nonce" not in params:
        raise AuthError("challenge lacks realm or nonce")
    algorithm = _split_algorithm(params.get("algorithm"))[0]
    if "qop" not in params:
        return algorithm, None
    offered = {q.strip().lower() for q in params["qop"].split(",")}
    for qop in ("auth", "auth-int"):
        if qop in offered:
            return algorithm, qop
    raise AuthError(f"no supported qop in {params['qop']!r}")


def answer_challenge(
    challenge: str,
    method: str,
    uri: str,
    username: str,
    password: str,
    cnonce: str,
    nc: int = 1,
    body: bytes = b"",
) -> str:
    """Build the (Proxy-)Authorization value answering one (WWW|Proxy)-Authenticate value.

    Prefers qop=auth, falls back to auth-int (hashing `body`), or the RFC 2069 form when the
    challenge has no qop. Raises AuthError when the challenge is unusable.
    """
    ch = parse_digest(challenge)
    algorithm, qop = _usable(ch)
    realm, nonce = ch["realm"], ch["nonce"]
    _, base, sess = _split_algorithm(algorithm)
    user_field = username
    userhash = ch.get("userhash", "").lower() == "true"
    if userhash:  # RFC 7616 §3.4.4
        user_field = _h(base, f"{username}:{realm}")
    ncs = f"{nc:08x}"
    response = digest_response(
        algorithm=algorithm, username=username, realm=realm, password=password, method=method,
        uri=uri, nonce=nonce, qop=qop, nc=ncs, cnonce=cnonce, body=body,
    )
    parts = [
        f"username={_quote(user_field)}",
        f"realm={_quote(realm)}",
        f"nonce={_quote(nonce)}",
        f"uri={_quote(uri)}",
        f'response="{response}"',
        f"algorithm={algorithm}",
    ]
    if qop is not None:
        parts += [f"cnonce={_quote(cnonce)}", f"qop={qop}", f"nc={ncs}"]
    elif sess:
        parts.append(f"cnonce={_quote(cnonce)}")
    if "opaque" in ch:
        parts.append(f"opaque={_quote(ch['opaque'])}")
    if userhash:
        parts.append("userhash=true")
    return "Digest " + ", ".join(parts)


def choose_challenge(values: list[str]) -> str:
    """Pick the strongest challenge we can answer (SHA-256 over MD5; ties keep server order).

    Unparseable or unsupported values are skipped (RFC 8760 §2.4: use the first supported,
    preferring the strongest). Raises AuthError when none is usable.
    """
    best: tuple[tuple[int, int], str] | None = None
    for value in values:
        try:
            algorithm, qop = _usable(parse_digest(value))
        except AuthError:
            continue
        rank = (_STRENGTH[_split_algorithm(algorithm)[1]], qop is not None)
        if best is None or rank > best[0]:
            best = (rank, value)
    if best is None:
        raise AuthError("no usable Digest challenge")
    return best[1]


def _new_cnonce() -> str:
    return secrets.token_hex(8)


@dataclass
class DigestClient:
    """Credentials plus per-nonce (nc, cnonce) so repeated requests on one nonce count up.

    The nonce memory is bounded (a UA only ever talks to a handful of realms at once).
    """

    username: str
    password: str
    cnonce_factory: Callable[[], str] = field(default=_new_cnonce, repr=False)
    max_nonces: int = 32
    _nonces: OrderedDict[str, tuple[int, str]] = field(default_factory=OrderedDict, init=False, repr=False)

    def authorize(self, challenges: list[str] | str, method: str, uri: str, body: bytes = b"") -> str:
        """Answer the best of the given challenge value(s) for one request."""
        challenge = choose_challenge([challenges] if isinstance(challenges, str) else challenges)
        nonce = parse_digest(challenge)["nonce"]
        nc, cnonce = self._nonces.pop(nonce, (0, ""))
        nc, cnonce = nc + 1, cnonce or self.cnonce_factory()
        self._nonces[nonce] = (nc, cnonce)
        while len(self._nonces) > self.max_nonces:
            self._nonces.popitem(last=False)
        return answer_challenge(challenge, method, uri, self.username, self.password, cnonce, nc, body)
