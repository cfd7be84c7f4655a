"""Configuration schema (pydantic v2), the embedded default, and TOML loading with errors that name
file, line and key.

Every model forbids unknown keys so a typo is an error, never a silently ignored setting. ``Config()`` is the
embedded demo configuration; ``config/default.toml`` is the same thing written out with comments.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import re
import tomllib
import typing
import warnings
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, ValidationError
from pydantic import ValidationInfo, field_validator, model_validator

if typing.TYPE_CHECKING:
    from .acd import model as acd_model

KNOWN_SERVICES: tuple[str, ...] = ("echo", "playback", "dtmf", "moh")
TARGET_KINDS: tuple[str, ...] = ("user", "trunk", "service", "flow", "queue")
LISTEN_TRANSPORTS: tuple[str, ...] = ("udp", "tcp")
AUTH_ALGORITHMS: tuple[str, ...] = ("SHA-256", "MD5")

SHIPPED_PROMPTS = Path(__file__).resolve().parent.parent / "config" / "prompts"
SHIPPED_FLOWS = Path(__file__).resolve().parent.parent / "config" / "flows"
ASR_ENGINES: tuple[str, ...] = ("pocketsphinx", "vosk")
FLOW_SUFFIXES: tuple[str, ...] = (".yaml", ".yml", ".json")
Loc = tuple[str | int, ...]
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_SCALAR = re.compile(r"[^,\]}\s#]+( [0-9:.+Z-]+)?")  # numbers, booleans, dates (which may contain one space)


class ConfigError(Exception):
    """A configuration that cannot be used; ``str()`` is a ready-to-print message, one line per problem."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


class ListenAddr(NamedTuple):
    transport: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}:{host}:{self.port}"


def parse_listen(text: str) -> ListenAddr:
    """Parse ``transport:host:port`` (IPv6 hosts in brackets, e.g. ``udp:[::1]:5060``)."""
    m = re.fullmatch(r"(\w+):(\[[^\]]+\]|[^:\[\]]+):(\d{1,5})", text.strip())
    if not m:
        raise ValueError(f"{text!r} is not 'transport:host:port' (IPv6 as 'udp:[::1]:5060')")
    transport, host, port = m.group(1).lower(), m.group(2), int(m.group(3))
    if transport not in LISTEN_TRANSPORTS:
        raise ValueError(f"{text!r}: transport must be one of {', '.join(LISTEN_TRANSPORTS)}")
    if host.startswith("["):
        host = host[1:-1]
        _check_ip(host, version=6)
    elif not re.fullmatch(r"[A-Za-z0-9.-]+", host):
        raise ValueError(f"{text!r}: {host!r} is not a valid host")
    if port > 65535:
        raise ValueError(f"{text!r}: port must be 0..65535")
    return ListenAddr(transport, host, port)


def parse_target(to: str) -> tuple[str, str | None]:
    """Split a route target ``kind[:name]``; only ``user`` may omit the name."""
    kind, _, name = to.partition(":")
    if kind not in TARGET_KINDS:
        raise ValueError(f"{to!r}: target must start with one of {', '.join(TARGET_KINDS)}")
    if not name and kind != "user":
        raise ValueError(f"{to!r}: {kind} target needs a name ('{kind}:<name>')")
    return kind, name or None


def _check_ip(text: str, version: int | None = None) -> str:
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address") from None
    if version and ip.version != version:
        raise ValueError(f"{text!r} is not an IPv{version} address")
    return text


def _check_network(text: str) -> str:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address or CIDR network") from None
    return text


def _check_listen(text: str) -> str:
    parse_listen(text)
    return text


def _duplicates(names: list[str]) -> list[int]:
    """Indices of entries whose name already appeared earlier."""
    seen: set[str] = set()
    dups = []
    for i, name in enumerate(names):
        if name in seen:
            dups.append(i)
        seen.add(name)
    return dups


class _Problems(ValueError):
    """Cross-reference problems, each with its own key path, raised from a model validator."""

    def __init__(self, items: list[tuple[Loc, str]]) -> None:
        self.items = items
        super().__init__("; ".join(f"{format_loc(loc)}: {msg}" for loc, msg in items))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


Name = Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.+-]+$")]
Port = Annotated[int, Field(ge=1, le=65535)]


class SipConfig(_Model):
    listen: list[Annotated[str, AfterValidator(_check_listen)]] = Field(
        default_factory=lambda: ["udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"], min_length=1)
    domain: str = Field("127.0.0.1", min_length=1)
    realm: str = ""
    user_agent: str = "softswitch/0.1"
    max_message_bytes: int = Field(65535, ge=1024)
    t1_ms: int = Field(500, gt=0)
    t2_ms: int = Field(4000, gt=0)
    t4_ms: int = Field(5000, gt=0)
    nonce_ttl_s: int = Field(300, gt=0)
    # MD5 alone by default: deployed phones (baresip 1.0, SIPp 3.6) refuse a 401 that also offers SHA-256
    auth_algorithms: list[Literal["SHA-256", "MD5"]] = Field(default_factory=lambda: ["MD5"], min_length=1)

    @property
    def listen_addrs(self) -> list[ListenAddr]:
        return [parse_listen(s) for s in self.listen]

    @property
    def digest_realm(self) -> str:
        return self.realm or self.domain

    @model_validator(mode="after")
    def _check(self) -> SipConfig:
        problems: list[tuple[Loc, str]] = []
        if self.t2_ms < self.t1_ms:
            problems.append((("t2_ms",), f"must be >= t1_ms ({self.t1_ms})"))
        if len(set(self.auth_algorithms)) != len(self.auth_algorithms):
            problems.append((("auth_algorithms",), "lists an algorithm twice"))
        if problems:
            raise _Problems(problems)
        return self


def _check_tones(v: dict[str, str]) -> dict[str, str]:
    from .media.tones import parse_tone
    for name, text in v.items():
        try:
            parse_tone(text)
        except ValueError as exc:
            raise ValueError(f"tone {name!r}: {exc}") from None
    return v


def _check_country(v: str) -> str:
    from .media.tones import COUNTRY_TONES
    if v.lower() not in COUNTRY_TONES:
        raise ValueError(f"unknown tone country {v!r} (known: {', '.join(sorted(COUNTRY_TONES))})")
    return v.lower()


class MediaConfig(_Model):
    ip: Annotated[str, AfterValidator(_check_ip)] = "127.0.0.1"
    port_min: Port = 20000
    port_max: Port = 29999
    jitter_depth_ms: int = Field(60, ge=0, le=1000)
    jitter_adaptive: bool = True
    jitter_min_ms: int = Field(20, ge=0, le=1000)
    jitter_max_ms: int = Field(200, ge=20, le=2000)
    dtmf_inband: bool = True
    level_meter: bool = False
    tone_country: Annotated[str, AfterValidator(_check_country)] = "us"
    tones: Annotated[dict[str, str], AfterValidator(_check_tones)] = Field(default_factory=dict)
    prompts_dir: str = ""
    tts_voice: str = Field("en-us", min_length=1)
    tts_rate: int = Field(150, ge=80, le=450)
    tts_cache_dir: str = Field("data/tts-cache", min_length=1)

    @field_validator("port_min")
    @classmethod
    def _even(cls, v: int) -> int:
        if v % 2:
            raise ValueError(f"must be even (RTP uses the even port, RTCP the next odd one), got {v}")
        return v

    @model_validator(mode="after")
    def _check(self) -> MediaConfig:
        if self.port_max <= self.port_min:
            raise _Problems([(("port_max",), f"must be greater than port_min ({self.port_min})")])
        if self.jitter_max_ms < self.jitter_min_ms:
            raise _Problems([(("jitter_max_ms",), f"must not be below jitter_min_ms ({self.jitter_min_ms})")])
        return self


class ServicesConfig(_Model):
    playback_prompt: str = Field("welcome.wav", min_length=1)
    moh_prompt: str = Field("welcome.wav", min_length=1)
    dtmf_timeout_s: float = Field(2.0, gt=0, le=60)


class IvrConfig(_Model):
    flows_dir: str = ""
    asr_engine: Literal["pocketsphinx", "vosk"] = "pocketsphinx"
    vosk_model: str = ""
    asr_workers: int = Field(2, ge=1, le=64)
    inter_digit_s: float = Field(2.0, gt=0, le=30)
    max_utterance_s: float = Field(10.0, gt=0, le=120)
    recordings_dir: str = Field("data/voicemail", min_length=1)

    @model_validator(mode="after")
    def _check(self) -> IvrConfig:
        if self.asr_engine == "vosk" and not self.vosk_model:
            raise _Problems([(("vosk_model",), "asr_engine = \"vosk\" needs the path of a Vosk model directory")])
        return self


RECORD_POLICIES: tuple[str, ...] = ("off", "answer", "bridge")
RecordPolicy = Literal["off", "answer", "bridge"]
_NAME_FIELDS = ("date", "time", "call_id", "caller", "called", "queue", "agent")


def _check_name_template(v: str) -> str:
    import string
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(v) if f is not None]
    except ValueError as e:
        raise ValueError(f"{v!r}: {e}") from None
    unknown = [f for f in fields if f not in _NAME_FIELDS]
    if unknown:
        raise ValueError(f"unknown variable {{{unknown[0]}}} (known: {', '.join(_NAME_FIELDS)})")
    if "call_id" not in fields:
        raise ValueError("must contain {call_id} (two calls must never write the same file)")
    if v.startswith("/") or ".." in Path(v).parts:
        raise ValueError("must be relative to recording.dir, without '..'")
    return v


class RecordingConfig(_Model):
    dir: str = Field("data/recordings", min_length=1)
    name: Annotated[str, AfterValidator(_check_name_template)] = "{date}/{call_id}"
    format: Literal["pcm16", "ulaw"] = "pcm16"
    mono_tracks: bool = False
    fsync: Literal["always", "interval", "close", "never"] = "interval"
    fsync_interval_s: float = Field(5.0, gt=0)
    retention_days: float = Field(0.0, ge=0)
    beep: bool = False


class CallsConfig(_Model):
    ring_timeout_s: float = Field(60.0, gt=0)
    max_duration_s: float = Field(14400.0, gt=0)
    shutdown_grace_s: float = Field(2.0, ge=0)
    overload_lateness: float = Field(1.0, ge=0)  # refuse new calls (503) while media runs this late (frames)


class StoreConfig(_Model):
    path: str = Field("data/softswitch.db", min_length=1)


class RegistrarConfig(_Model):
    min_expires: int = Field(60, ge=1)
    max_expires: int = Field(3600, ge=1)
    default_expires: int = Field(3600, ge=1)

    @model_validator(mode="after")
    def _check(self) -> RegistrarConfig:
        problems: list[tuple[Loc, str]] = []
        if self.max_expires < self.min_expires:
            problems.append((("max_expires",), f"must be >= min_expires ({self.min_expires})"))
        elif not self.min_expires <= self.default_expires <= self.max_expires:
            problems.append((("default_expires",), f"must be between min_expires ({self.min_expires}) "
                                                   f"and max_expires ({self.max_expires})"))
        if problems:
            raise _Problems(problems)
        return self


class LogConfig(_Model):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    format: Literal["text", "json"] = "text"

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, v: Any) -> Any:
        return v.upper() if isinstance(v, str) else v


class UserConfig(_Model):
    name: Name
    password: str = Field(min_length=1)
    display: str = ""
    max_contacts: int = Field(5, ge=1)
    auth_calls: bool = True  # false: INVITEs from this user's registered flow skip the digest challenge


class GatewayConfig(_Model):
    host: str = Field(min_length=1)
    port: Port = 5060
    transport: Literal["udp", "tcp"] = "udp"


# `register` is the key users expect; on instances the field harmlessly shadows ABCMeta.register.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", r"Field name \"register\"", UserWarning)

    class TrunkConfig(_Model):
        name: Name
        gateways: list[GatewayConfig] = Field(default_factory=list)
        inbound_ips: list[Annotated[str, AfterValidator(_check_network)]] = Field(default_factory=list)
        username: str = ""
        password: str = ""
        realm: str = ""
        register: bool = False
        register_expires: int = Field(600, ge=60)
        max_calls: int = Field(0, ge=0)
        caller_id: str = ""
        pai: bool = False
        privacy: bool = False
        failover_on: list[Annotated[int, Field(ge=300, le=699)]] = Field(
            default_factory=lambda: [408, 500, 502, 503, 504])
        dead_backoff_s: float = Field(30.0, ge=0)

        @property
        def inbound_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
            return [ipaddress.ip_network(s, strict=False) for s in self.inbound_ips]

        def matches_source(self, ip: str) -> bool:
            """True if a request from ``ip`` comes from this trunk."""
            try:
                addr = ipaddress.ip_address(ip)
            except ValueError:
                return False
            return any(addr in net for net in self.inbound_networks)

        @model_validator(mode="after")
        def _check(self) -> TrunkConfig:
            problems: list[tuple[Loc, str]] = []
            if self.register and not (self.username and self.password):
                problems.append((("register",), "register = true needs username and password"))
            if self.register and not self.gateways:
                problems.append((("register",), "register = true needs at least one gateway"))
            if problems:
                raise _Problems(problems)
            return self


class RouteConfig(_Model):
    name: Name
    exact: str | None = Field(None, min_length=1)
    prefix: str | None = None
    regex: str | None = None
    source: str = "any"
    strip: int = Field(0, ge=0)
    prepend: str = ""
    replace: str = ""
    to: str
    record: RecordPolicy = "off"

    @property
    def target(self) -> tuple[str, str | None]:
        """``(kind, name)``, e.g. ``("trunk", "loopback")`` or ``("user", None)``."""
        return parse_target(self.to)

    @field_validator("regex")
    @classmethod
    def _compiles(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as e:
                raise ValueError(f"invalid regular expression {v!r}: {e}") from None
        return v

    @field_validator("source")
    @classmethod
    def _source(cls, v: str) -> str:
        if v not in ("any", "users", "trunks") and not re.fullmatch(r"trunk:.+", v):
            raise ValueError(f"{v!r}: must be any, users, trunks or trunk:<name>")
        return v

    @field_validator("to")
    @classmethod
    def _to(cls, v: str) -> str:
        kind, name = parse_target(v)
        if kind == "service" and name not in KNOWN_SERVICES:
            raise ValueError(f"unknown service {name!r} (known: {', '.join(KNOWN_SERVICES)})")
        return v

    @model_validator(mode="after")
    def _check(self) -> RouteConfig:
        matchers = [k for k in ("exact", "prefix", "regex") if getattr(self, k) is not None]
        if len(matchers) != 1:
            found = ", ".join(matchers) or "none"
            raise ValueError(f"a route needs exactly one of exact, prefix, regex (found: {found})")
        if self.replace and self.regex is None:
            raise _Problems([(("replace",), "replace only applies to regex routes")])
        if self.replace and self.regex is not None:
            groups = re.compile(self.regex).groups
            refs = [int(a or b) for a, b in re.findall(r"\\(\d+)|\\g<(\d+)>", self.replace)]
            if any(r > groups for r in refs):
                raise _Problems([(("replace",), f"refers to group \\{max(refs)} but regex has {groups} group(s)")])
        return self


def _check_code(v: str) -> str:
    if not re.fullmatch(r"[0-9*#]+", v):
        raise ValueError(f"{v!r}: a feature code is one or more of 0-9, * and #")
    return v


FeatureCode = Annotated[str, AfterValidator(_check_code)]
_OVERFLOW = re.compile(r"(queue|user|flow):[A-Za-z0-9_.+-]+|extension:[0-9*#]+|number:\+[1-9][0-9]{1,14}")


class AcdConfig(_Model):
    queue_log: str = "data/queue_log"
    login_code: FeatureCode = "*45"
    logout_code: FeatureCode = "*46"
    pause_code: FeatureCode = "*47"
    unpause_code: FeatureCode = "*48"

    @model_validator(mode="after")
    def _check(self) -> AcdConfig:
        problems: list[tuple[Loc, str]] = []
        keys = ("login_code", "logout_code", "pause_code", "unpause_code")
        for i, key in enumerate(keys):
            code = getattr(self, key)
            same = next((k for k in keys[:i] if getattr(self, k) == code), None)
            if same:
                problems.append(((key,), f"{code!r} is already {same}"))
            elif key != "pause_code" and code.startswith(self.pause_code):
                problems.append(((key,), f"{code!r} starts with pause_code {self.pause_code!r} "
                                         f"(the digits after pause_code are the pause reason)"))
        if problems:
            raise _Problems(problems)
        return self


class ControlConfig(_Model):
    socket: str = "data/softswitch.sock"


class AcdQueueConfig(_Model):
    """One ``[[queues]]`` entry; ``Config.queue_configs()`` turns it into the engine's ``QueueConfig``."""

    name: Name
    strategy: str = "longest-idle-agent"
    ring_timeout_s: float = Field(15.0, gt=0)
    max_wait_s: float = Field(0.0, ge=0)
    max_len: int = Field(0, ge=0)
    wrap_up_s: float = Field(0.0, ge=0)
    join_empty: bool = True
    leave_when_empty: bool = False
    service_level_s: float = Field(20.0, gt=0)
    weight: int = Field(0, ge=0)
    progressive_step_s: float = Field(10.0, gt=0)
    announce_frequency_s: float = Field(0.0, ge=0)
    announce_position: bool = True
    announce_ewt: bool = True
    periodic_announce: str = ""
    periodic_announce_s: float = Field(0.0, ge=0)
    default_handle_time_s: float = Field(180.0, gt=0)
    moh: str = ""
    overflow: str = ""
    record: RecordPolicy = "off"

    @field_validator("strategy")
    @classmethod
    def _strategy(cls, v: str) -> str:
        from .acd.strategies import canonical_name
        try:
            return canonical_name(v)
        except KeyError as e:
            raise ValueError(e.args[0]) from None

    @field_validator("overflow")
    @classmethod
    def _overflow(cls, v: str) -> str:
        if v and not _OVERFLOW.fullmatch(v):
            raise ValueError(f"{v!r}: must be \"\", queue:NAME, user:NAME, flow:NAME, extension:DIGITS "
                             f"or number:+E164")
        return v

    @model_validator(mode="after")
    def _check(self) -> AcdQueueConfig:
        problems: list[tuple[Loc, str]] = []
        if self.periodic_announce and not self.periodic_announce_s:
            problems.append((("periodic_announce_s",), "must be > 0 when periodic_announce is set"))
        elif self.periodic_announce_s and not self.periodic_announce:
            problems.append((("periodic_announce",), "needs a prompt file or \"say:TEXT\" when "
                                                     "periodic_announce_s is set"))
        elif self.periodic_announce.startswith("say:") and not self.periodic_announce[4:].strip():
            problems.append((("periodic_announce",), "\"say:\" needs the text to speak"))
        if problems:
            raise _Problems(problems)
        return self


class AcdAgentConfig(_Model):
    """One ``[[agents]]`` entry (a configured user who takes queue calls)."""

    name: Name
    queues: dict[str, Annotated[int, Field(ge=0)]] = Field(default_factory=dict)  # queue -> level
    skills: dict[str, Annotated[int, Field(ge=0)]] = Field(default_factory=dict)  # skill -> level
    wrap_up_s: float | None = Field(None, ge=0)  # None: the queue's wrap_up_s
    max_no_answer: int = Field(3, ge=0)
    no_answer_delay_s: float = Field(5.0, ge=0)
    reject_delay_s: float = Field(5.0, ge=0)
    busy_delay_s: float = Field(5.0, ge=0)
    weight: int = Field(1, ge=1)
    logged_in: bool = True

    @field_validator("queues", mode="before")
    @classmethod
    def _queue_list(cls, v: Any) -> Any:
        """``queues = ["support"]`` is short for ``queues = { support = 0 }``."""
        if isinstance(v, list) and all(isinstance(x, str) for x in v):
            if len(set(v)) != len(v):
                raise ValueError("lists a queue twice")
            return dict.fromkeys(v, 0)
        return v


def _default_users() -> list[UserConfig]:
    return [UserConfig(name="1001", password="1001pass", display="Alice"),
            UserConfig(name="1002", password="1002pass", display="Bob"),
            UserConfig(name="1003", password="1003pass", display="Carol")]


def _default_routes() -> list[RouteConfig]:
    return [RouteConfig(name="echo", exact="echo", to="service:echo"),
            RouteConfig(name="playback", exact="playback", to="service:playback"),
            RouteConfig(name="dtmf", exact="dtmf", to="service:dtmf"),
            RouteConfig(name="ivr", exact="100", to="flow:bank"),
            RouteConfig(name="queue", exact="200", to="queue:support"),
            RouteConfig(name="extensions", regex=r"^(1\d{3})$", to="user")]


def _default_queues() -> list[AcdQueueConfig]:
    return [AcdQueueConfig(name="support", announce_frequency_s=30.0)]


def _default_agents() -> list[AcdAgentConfig]:
    return [AcdAgentConfig(name=n, queues={"support": 0}) for n in ("1001", "1002", "1003")]


class Config(_Model):
    """The whole configuration. Equality compares settings only, not the file they came from."""

    sip: SipConfig = Field(default_factory=SipConfig)
    media: MediaConfig = Field(default_factory=MediaConfig)
    calls: CallsConfig = Field(default_factory=CallsConfig)
    services: ServicesConfig = Field(default_factory=ServicesConfig)
    ivr: IvrConfig = Field(default_factory=IvrConfig)
    recording: RecordingConfig = Field(default_factory=RecordingConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    registrar: RegistrarConfig = Field(default_factory=RegistrarConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    acd: AcdConfig = Field(default_factory=AcdConfig)
    control: ControlConfig = Field(default_factory=ControlConfig)
    users: list[UserConfig] = Field(default_factory=_default_users)
    trunks: list[TrunkConfig] = Field(default_factory=list)
    queues: list[AcdQueueConfig] = Field(default_factory=_default_queues)
    agents: list[AcdAgentConfig] = Field(default_factory=_default_agents)
    routes: list[RouteConfig] = Field(default_factory=_default_routes)

    _source_path: Path | None = PrivateAttr(None)

    @property
    def source_path(self) -> Path | None:
        """Absolute path of the file this was loaded from (None for the embedded default)."""
        return self._source_path

    def resolve_path(self, path: str | Path) -> Path:
        """Relative paths resolve against the config file's directory (the cwd for the embedded default)."""
        p = Path(path).expanduser()
        if not p.is_absolute():
            p = (self._source_path.parent if self._source_path else Path.cwd()) / p
        return p.resolve()

    def prompts_dir(self) -> Path:
        """Where prompts live: ``media.prompts_dir``, or the prompts shipped in ``config/prompts``."""
        if self.media.prompts_dir:
            return self.resolve_path(self.media.prompts_dir)
        return SHIPPED_PROMPTS

    def flows_dir(self, base: Path | None = None) -> Path:
        """Where IVR flows live (``flow:NAME`` is NAME.yaml/.yml/.json there): ``ivr.flows_dir`` or the
        flows shipped in ``config/flows``."""
        if not self.ivr.flows_dir:
            return SHIPPED_FLOWS
        if base is not None:
            return (base / Path(self.ivr.flows_dir).expanduser()).resolve()
        return self.resolve_path(self.ivr.flows_dir)

    def flow_path(self, name: str, base: Path | None = None) -> Path | None:
        where = self.flows_dir(base)
        return next((where / f"{name}{sfx}" for sfx in FLOW_SUFFIXES if (where / f"{name}{sfx}").is_file()), None)

    def store_path(self) -> Path:
        return self.resolve_path(self.store.path)

    def queue_log_path(self) -> Path | None:
        """The Asterisk-format queue_log file (``acd.queue_log``), None when off."""
        return self.resolve_path(self.acd.queue_log) if self.acd.queue_log else None

    def control_socket_path(self) -> Path | None:
        """The Unix socket of ``softswitch queue``/``agent`` (``control.socket``), None when off."""
        return self.resolve_path(self.control.socket) if self.control.socket else None

    def queue_configs(self) -> list[acd_model.QueueConfig]:
        """The engine's view of ``[[queues]]`` (new objects each call; periodic_announce* stay here)."""
        from .acd import model
        return [model.QueueConfig(**_common_fields(q, model.QueueConfig)) for q in self.queues]

    def agent_configs(self) -> list[acd_model.AgentConfig]:
        """The engine's view of ``[[agents]]`` (new objects and dicts each call; logged_in stays here)."""
        from .acd import model
        return [model.AgentConfig(**_common_fields(a, model.AgentConfig)) for a in self.agents]

    def queue(self, name: str) -> AcdQueueConfig | None:
        return next((q for q in self.queues if q.name == name), None)

    def agent(self, name: str) -> AcdAgentConfig | None:
        return next((a for a in self.agents if a.name == name), None)

    def user(self, name: str) -> UserConfig | None:
        return next((u for u in self.users if u.name == name), None)

    def trunk(self, name: str) -> TrunkConfig | None:
        return next((t for t in self.trunks if t.name == name), None)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Config) and self.model_dump() == other.model_dump()

    @model_validator(mode="after")
    def _cross_check(self, info: ValidationInfo) -> Config:
        base = (info.context or {}).get("base")  # the config file's directory (relative flows_dir)
        self._fit_demo_defaults()
        problems: list[tuple[Loc, str]] = []
        for section in ("users", "trunks", "routes", "queues", "agents"):
            items = getattr(self, section)
            for i in _duplicates([x.name for x in items]):
                problems.append(((section, i, "name"), f"duplicate name {items[i].name!r}"))
        trunks = {t.name: t for t in self.trunks}
        users = {u.name for u in self.users}
        queues = {q.name for q in self.queues}
        for i, route in enumerate(self.routes):
            kind, name = route.target
            if kind == "trunk" and name not in trunks:
                problems.append((("routes", i, "to"), f"unknown trunk {name!r} ({_known(trunks)})"))
            elif kind == "trunk" and not trunks[name].gateways:
                problems.append((("routes", i, "to"), f"trunk {name!r} has no gateways to send calls to"))
            elif kind == "user" and name is not None and name not in users:
                problems.append((("routes", i, "to"), f"unknown user {name!r} ({_known(users)})"))
            elif kind == "flow" and self.flow_path(name, base) is None:
                problems.append((("routes", i, "to"), self._no_flow(name, base)))
            elif kind == "queue" and name not in queues:
                problems.append((("routes", i, "to"), f"unknown queue {name!r} ({_known(queues)})"))
            if route.source.startswith("trunk:") and route.source[6:] not in trunks:
                problems.append((("routes", i, "source"), f"unknown trunk {route.source[6:]!r} ({_known(trunks)})"))
        for i, queue in enumerate(self.queues):
            kind, _, name = queue.overflow.partition(":")
            if kind == "queue" and name == queue.name:
                problems.append((("queues", i, "overflow"), "a queue cannot overflow to itself"))
            elif kind == "queue" and name not in queues:
                problems.append((("queues", i, "overflow"), f"unknown queue {name!r} ({_known(queues)})"))
            elif kind == "user" and name not in users:
                problems.append((("queues", i, "overflow"), f"unknown user {name!r} ({_known(users)})"))
            elif kind == "flow" and self.flow_path(name, base) is None:
                problems.append((("queues", i, "overflow"), self._no_flow(name, base)))
        for i, agent in enumerate(self.agents):
            if agent.name not in users:
                problems.append((("agents", i, "name"), f"{agent.name!r} is not a configured user "
                                                        f"({_known(users)})"))
            for name in agent.queues:
                if name not in queues:
                    problems.append((("agents", i, "queues", name), f"unknown queue {name!r} ({_known(queues)})"))
        if self.ivr.asr_engine == "vosk" and self.ivr.vosk_model:
            model = Path(self.ivr.vosk_model).expanduser()
            model = model if model.is_absolute() else (base or Path.cwd()) / model
            if not model.is_dir():
                problems.append((("ivr", "vosk_model"), f"{model} is not a directory (download a Vosk model, e.g. "
                                                        f"vosk-model-small-en-us-0.15, and unpack it there)"))
        if problems:
            raise _Problems(problems)
        return self

    def _fit_demo_defaults(self) -> None:
        """The demo agents and route 200 refer to users 1001-1003 and queue support: a file that leaves out
        [[agents]] / [[routes]] but has its own users or queues keeps only the demo entries it can have."""
        users, queues = {u.name for u in self.users}, {q.name for q in self.queues}
        if "agents" not in self.model_fields_set:   # __dict__: not an explicitly set field
            self.__dict__["agents"] = [a for a in self.agents if a.name in users and set(a.queues) <= queues]
        if "routes" not in self.model_fields_set:
            self.__dict__["routes"] = [r for r in self.routes if r.target[0] != "queue" or r.target[1] in queues]

    def _no_flow(self, name: str, base: Path | None) -> str:
        return f"no flow {name!r}: none of {', '.join(name + x for x in FLOW_SUFFIXES)} in {self.flows_dir(base)}"


def _common_fields(model: BaseModel, cls: type) -> dict[str, Any]:
    """The fields of ``model`` that dataclass ``cls`` also has, dicts copied."""
    values = {f.name: getattr(model, f.name) for f in dataclasses.fields(cls) if f.name in type(model).model_fields}
    return {k: dict(v) if isinstance(v, dict) else v for k, v in values.items()}


def _known(names: typing.Iterable[str]) -> str:
    names = sorted(names)
    return f"defined: {', '.join(names)}" if names else "none defined"


# ---------------------------------------------------------------------------------------------- loading

def load_config(path: str | Path | None = None) -> Config:
    """Load and validate a TOML config file; ``None`` gives the embedded default. Raises ``ConfigError``."""
    if path is None:
        return Config()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise ConfigError(f"{path}: cannot read config file: {reason}") from None
    return parse_config(text, path)


def parse_config(text: str, path: str | Path | None = None) -> Config:
    """Validate TOML ``text``; ``path`` names it in errors and anchors relative paths."""
    name = str(path) if path is not None else "<string>"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"^(.*?)\s*\(at line (\d+), column (\d+)\)$", str(e))
        where = f"{name}:{m.group(2)}:{m.group(3)}" if m else name
        raise ConfigError(f"{where}: TOML syntax error: {m.group(1) if m else e}") from None
    try:
        context = {"base": Path(path).resolve().parent} if path is not None else None
        config = Config.model_validate(data, context=context)
    except ValidationError as e:
        lines = _KeyLines(text)
        located = sorted(((lines.find(loc), loc, msg) for loc, msg in _problems(e)),
                         key=lambda x: x[0] or 1 << 30)
        problems = [f"{name}{f':{line}' if line else ''}: {format_loc(loc) or '(top level)'}: {msg}"
                    for line, loc, msg in located]
        raise ConfigError("\n".join(problems), problems) from None
    if path is not None:
        config._source_path = Path(path).resolve()
    return config


def format_loc(loc: Loc) -> str:
    """``("trunks", 0, "gateways", 1, "port")`` -> ``trunks[0].gateways[1].port``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _problems(e: ValidationError) -> list[tuple[Loc, str]]:
    """Flatten pydantic errors to (key path, human message), expanding cross-check lists."""
    out: list[tuple[Loc, str]] = []
    for err in e.errors():
        loc, kind, msg = tuple(err["loc"]), err["type"], err["msg"]
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, _Problems):
            out.extend((loc + sub, m) for sub, m in cause.items)
            continue
        out.append((loc, _unknown_key_message(loc) if kind == "extra_forbidden" else plain_message(err)))
    return out


def plain_message(err: Any) -> str:
    """One pydantic error as a user reads it: no "Value error, " prefix, the offending value shown.

    Shared by the config and the IVR flow loader, so both speak the same way about bad values.
    """
    kind, msg = err["type"], err["msg"]
    if kind == "missing":
        return "required key is missing"
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    if kind.endswith("_parsing"):
        msg = msg.split(",")[0]
    value = err.get("input")
    return msg if isinstance(value, (dict, list)) else f"{msg}, got {value!r}"


def _unknown_key_message(loc: Loc) -> str:
    allowed = _fields_at(loc[:-1])
    key = str(loc[-1])
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"allowed: {', '.join(allowed)}"
    return f"unknown key {key!r} ({hint})"


def _fields_at(loc: Loc) -> list[str]:
    """Field names of the model found at ``loc`` in the Config schema (for did-you-mean hints)."""
    tp: Any = Config
    for part in loc:
        if isinstance(part, int):
            tp = typing.get_args(tp)[0] if typing.get_args(tp) else tp
        elif isinstance(tp, type) and issubclass(tp, BaseModel) and part in tp.model_fields:
            tp = tp.model_fields[part].annotation
        else:
            return []
    return list(tp.model_fields) if isinstance(tp, type) and issubclass(tp, BaseModel) else []


class _KeyLines:
    """Best-effort map from key paths to line numbers in (syntactically valid) TOML text.

    Walks table headers, ``key = value`` lines and inline arrays/tables, counting ``[[array]]`` entries,
    so ``trunks[0].gateways[1].port`` points at the exact line even inside inline tables.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.keys: dict[Loc, tuple[int, int | None]] = {}  # path -> (offset of key, offset of value)
        try:
            self._scan()
        except (IndexError, ValueError):
            pass  # best effort: keep what was mapped so far

    def find(self, loc: Loc) -> int | None:
        for n in range(len(loc), 0, -1):
            hit = self.keys.get(loc[:n])
            if hit is None:
                continue
            offset = hit[0]
            if hit[1] is not None and n < len(loc):
                try:
                    offset = self._descend(hit[1], loc[n:]) or offset
                except (IndexError, ValueError):
                    pass
            return self.text.count("\n", 0, offset) + 1
        return None

    # -- scanning
    def _scan(self) -> None:
        t, pos, prefix = self.text, 0, ()
        counts: dict[Loc, int] = {}
        while (pos := self._skip_ws(pos, newlines=True)) < len(t):
            if t[pos] == "[":  # [table] or [[array.of.tables]]
                aot = t.startswith("[[", pos)
                parts, end = self._key(pos + (2 if aot else 1))
                prefix = self._resolve(parts, counts, aot)
                self.keys.setdefault(prefix, (pos, None))
                pos = t.index("]", end) + (2 if aot else 1)
            else:
                parts, end = self._key(pos)
                value = self._skip_ws(t.index("=", end) + 1)
                self.keys[prefix + tuple(parts)] = (pos, value)
                pos = self._skip_value(value)

    @staticmethod
    def _resolve(parts: list[str], counts: dict[Loc, int], aot: bool) -> Loc:
        path: Loc = ()
        for i, part in enumerate(parts):
            path += (part,)
            if aot and i == len(parts) - 1:
                counts[path] = counts.get(path, -1) + 1
                path += (counts[path],)
            elif path in counts:
                path += (counts[path],)
        return path

    def _skip_ws(self, pos: int, newlines: bool = False) -> int:
        t = self.text
        while pos < len(t):
            if t[pos] in " \t" or (newlines and t[pos] in "\r\n"):
                pos += 1
            elif t[pos] == "#":
                while pos < len(t) and t[pos] != "\n":
                    pos += 1
            else:
                break
        return pos

    def _key(self, pos: int) -> tuple[list[str], int]:
        """Parse a (dotted, possibly quoted) key; returns parts and the offset after it."""
        t, parts = self.text, []
        while True:
            pos = self._skip_ws(pos)
            if t[pos] in "\"'":
                end = self._skip_string(pos)
                parts.append(t[pos + 1:end - 1])
                pos = end
            else:
                m = _BARE_KEY.match(t, pos)
                if not m:
                    raise ValueError("bad key")
                parts.append(m.group())
                pos = m.end()
            pos = self._skip_ws(pos)
            if pos < len(t) and t[pos] == ".":
                pos += 1
                continue
            return parts, pos

    def _skip_string(self, pos: int) -> int:
        t, q = self.text, self.text[pos]
        if t.startswith(q * 3, pos):
            end = t.index(q * 3, pos + 3)
            while t.startswith(q, end + 3):  # up to two quotes may precede the closing delimiter
                end += 1
            return end + 3
        pos += 1
        while t[pos] != q:
            pos += 2 if (q == '"' and t[pos] == "\\") else 1
        return pos + 1

    def _skip_value(self, pos: int) -> int:
        t = self.text
        if t[pos] in "\"'":
            return self._skip_string(pos)
        if t[pos] in "[{":
            close = "]" if t[pos] == "[" else "}"
            pos += 1
            while (pos := self._skip_ws(pos, newlines=True)) < len(t) and t[pos] != close:
                if t[pos] == ",":
                    pos += 1
                elif close == "}":
                    _, end = self._key(pos)
                    pos = self._skip_value(self._skip_ws(t.index("=", end) + 1))
                else:
                    pos = self._skip_value(pos)
            return pos + 1
        m = _SCALAR.match(t, pos)
        return m.end() if m else pos + 1

    def _descend(self, pos: int, rest: Loc) -> int:
        """Offset of ``rest`` (list indices / keys) inside the inline value starting at ``pos``."""
        t = self.text
        for n, part in enumerate(rest):
            pos = self._skip_ws(pos, newlines=True)
            if isinstance(part, int) and t[pos] == "[":
                pos, index = pos + 1, 0
                while (pos := self._skip_ws(pos, newlines=True)) < len(t) and t[pos] != "]":
                    if t[pos] == ",":
                        pos += 1
                    elif index == part:
                        break
                    else:
                        pos, index = self._skip_value(pos), index + 1
                else:
                    return pos
            elif isinstance(part, str) and t[pos] == "{":
                pos += 1
                while (pos := self._skip_ws(pos, newlines=True)) < len(t) and t[pos] != "}":
                    if t[pos] == ",":
                        pos += 1
                        continue
                    start = pos
                    parts, end = self._key(pos)
                    pos = self._skip_ws(t.index("=", end) + 1)
                    if parts[0] == part:
                        if len(parts) > 1 or n == len(rest) - 1:
                            return start
                        break
                    pos = self._skip_value(pos)
                else:
                    return pos
            else:
                return pos
        return pos
