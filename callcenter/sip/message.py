"""SIP message syntax: parsing and serialising requests, responses and header values.

Owns the wire format of RFC 3261 §7 and §25 as plain values: `Headers` (ordered,
case-insensitive, compact forms folded to canonical names), `SipRequest`/`SipResponse`,
`parse_message`/`serialize`, the structured header values (`SipUri`, `NameAddr`, `Via`,
CSeq) and `make_response` (RFC 3261 §8.2.6). No sockets, no clocks, no state.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Iterator

__all__ = [
    "SipParseError",
    "Headers",
    "SipRequest",
    "SipResponse",
    "SipUri",
    "NameAddr",
    "Via",
    "parse_message",
    "serialize",
    "parse_uri",
    "parse_name_addr",
    "parse_via",
    "parse_cseq",
    "make_response",
    "split_header_list",
    "REASON_PHRASES",
]


class SipParseError(ValueError):
    """A SIP message or header value that does not follow the grammar.

    `status` is the response a server should answer with (400 for syntax, 505 for an
    unsupported version), so the UA does not have to guess from the text.
    """

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


# RFC 3261 §7.3.3 and later RFCs' compact forms.
COMPACT_FORMS = {
    "a": "Accept-Contact",
    "b": "Referred-By",
    "c": "Content-Type",
    "d": "Request-Disposition",
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "n": "Identity-Info",
    "o": "Event",
    "r": "Refer-To",
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",
    "v": "Via",
    "x": "Session-Expires",
    "y": "Identity",
}

# Spelling used when we write a header; keyed by lower-case name.
_CANONICAL = {
    n.lower(): n
    for n in (
        "Accept", "Accept-Contact", "Accept-Encoding", "Accept-Language", "Alert-Info",
        "Allow", "Allow-Events", "Authentication-Info", "Authorization", "Call-ID",
        "Call-Info", "Contact", "Content-Disposition", "Content-Encoding",
        "Content-Language", "Content-Length", "Content-Type", "CSeq", "Date",
        "Error-Info", "Event", "Expires", "From", "Identity", "Identity-Info",
        "In-Reply-To", "Max-Forwards", "Min-Expires", "Min-SE", "MIME-Version",
        "Organization", "P-Asserted-Identity", "P-Preferred-Identity", "Path", "Priority",
        "Privacy", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Require", "RAck",
        "Reason", "Record-Route", "Refer-To", "Referred-By", "Reject-Contact",
        "Remote-Party-ID", "Reply-To", "Request-Disposition", "Require", "Retry-After",
        "Route", "RSeq", "Server", "Service-Route", "Session-Expires", "Subject",
        "Subscription-State", "Supported", "Timestamp", "To", "Unsupported",
        "User-Agent", "Via", "Warning", "WWW-Authenticate",
    )
}

# Headers whose grammar is a comma-separated list (RFC 3261 §7.3.1), so several values
# may share one line. Authentication headers are not lists: their params hold commas.
LIST_HEADERS = frozenset(
    n.lower()
    for n in (
        "Accept", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow",
        "Allow-Events", "Call-Info", "Contact", "Content-Encoding", "Content-Language",
        "Error-Info", "In-Reply-To", "Path", "Proxy-Require", "Record-Route", "Require",
        "Route", "Service-Route", "Supported", "Unsupported", "Via", "Warning",
        "P-Asserted-Identity", "Reason",
    )
)

# Headers that may appear once only; a second copy makes the message ambiguous.
_SINGLE_HEADERS = ("call-id", "cseq", "from", "to", "content-length", "max-forwards",
                   "content-type", "expires")

_TOKEN_RE = re.compile(r"^[A-Za-z0-9\-.!%*_+`'~]+$")
# Octets no header value may hold (HT is white space); NUL among them (hostile input).
_CONTROL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# Non-UTF-8 octets survive decoding as lone surrogates (surrogateescape).
_SURROGATE_RE = re.compile(r"[\udc80-\udcff]")
# Headers whose grammar is ASCII only; other text (display names, Subject) may be UTF-8.
_ASCII_ONLY = frozenset({"Call-ID", "CSeq", "Via", "Content-Length", "Max-Forwards", "Content-Type"})
# Headers the UA reads and passes on (to the call router, the database): UTF-8 only; others
# (Subject, User-Agent …) keep their octets untouched.
_UTF8_ONLY = frozenset({"From", "To", "Contact", "Route", "Record-Route", "Authorization",
                        "Proxy-Authorization", "P-Asserted-Identity", "Require", "Content-Encoding"})
# More Vias than hops a request may take (Max-Forwards' usual 70): a loop, or hostile.
MAX_VIAS = 70
_MANDATORY = ("To", "From", "Call-ID", "CSeq", "Via")


def canonical_name(name: str) -> str:
    """The spelling we use for a header name (compact forms expanded)."""
    stripped = name.strip()
    lower = stripped.lower()
    if lower in COMPACT_FORMS:
        return COMPACT_FORMS[lower]
    return _CANONICAL.get(lower, stripped)


def split_header_list(value: str) -> list[str]:
    """Split a list header value at commas that are outside quotes and <...>."""
    items: list[str] = []
    buf: list[str] = []
    in_quotes = in_angle = False
    escaped = False
    for ch in value:
        if escaped:
            buf.append(ch)
            escaped = False
            continue
        if in_quotes:
            if ch == "\\":
                escaped = True
            elif ch == '"':
                in_quotes = False
            buf.append(ch)
            continue
        if ch == '"':
            in_quotes = True
        elif ch == "<":
            in_angle = True
        elif ch == ">":
            in_angle = False
        elif ch == "," and not in_angle:
            items.append("".join(buf).strip())
            buf = []
            continue
        buf.append(ch)
    items.append("".join(buf).strip())
    return [i for i in items if i]


class Headers:
    """Ordered, case-insensitive multi-map of header fields, as they appear on the wire."""

    __slots__ = ("_fields",)

    def __init__(self, fields: Iterable[tuple[str, str]] = ()):
        self._fields: list[tuple[str, str]] = []
        for name, value in fields:
            self.add(name, value)

    def get(self, name: str, default: str | None = None) -> str | None:
        """First value of `name` (first list element for list headers), or `default`."""
        key = canonical_name(name).lower()
        if key in LIST_HEADERS:
            values = self.get_all(name)
            if values:
                return values[0]
        for n, v in self._fields:
            if n.lower() == key:
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        """Every value of `name`, list headers split at top-level commas."""
        key = canonical_name(name).lower()
        values = [v for n, v in self._fields if n.lower() == key]
        if key in LIST_HEADERS:
            return [item for v in values for item in split_header_list(v)]
        return values

    def set(self, name: str, value: str) -> None:
        """Replace every value of `name` by one value, at the first one's position."""
        cname = canonical_name(name)
        key = cname.lower()
        out: list[tuple[str, str]] = []
        placed = False
        for n, v in self._fields:
            if n.lower() == key:
                if not placed:
                    out.append((cname, str(value)))
                    placed = True
            else:
                out.append((n, v))
        if not placed:
            out.append((cname, str(value)))
        self._fields = out

    def add(self, name: str, value: str) -> None:
        self._fields.append((canonical_name(name), str(value)))

    def prepend(self, name: str, value: str) -> None:
        """Insert before the first existing value of `name` (or at the top)."""
        cname = canonical_name(name)
        key = cname.lower()
        for i, (n, _) in enumerate(self._fields):
            if n.lower() == key:
                self._fields.insert(i, (cname, str(value)))
                return
        self._fields.insert(0, (cname, str(value)))

    def remove(self, name: str) -> None:
        key = canonical_name(name).lower()
        self._fields = [(n, v) for n, v in self._fields if n.lower() != key]

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = canonical_name(name).lower()
        return any(n.lower() == key for n, _ in self._fields)

    def items(self) -> list[tuple[str, str]]:
        return list(self._fields)

    def copy(self) -> "Headers":
        h = Headers()
        h._fields = list(self._fields)
        return h

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(list(self._fields))

    def __len__(self) -> int:
        return len(self._fields)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and self._fields == other._fields

    def __repr__(self) -> str:
        return f"Headers({self._fields!r})"


@dataclass
class SipRequest:
    method: str
    uri: str
    headers: Headers
    body: bytes = b""

    @property
    def call_id(self) -> str:
        return self.headers.get("Call-ID") or ""

    @property
    def cseq(self) -> tuple[int, str]:
        return parse_cseq(self.headers.get("CSeq") or "")


@dataclass
class SipResponse:
    status: int
    reason: str
    headers: Headers
    body: bytes = b""

    @property
    def call_id(self) -> str:
        return self.headers.get("Call-ID") or ""

    @property
    def cseq(self) -> tuple[int, str]:
        return parse_cseq(self.headers.get("CSeq") or "")


# ---------------------------------------------------------------------------- values

def _split_params(text: str, what: str) -> dict[str, str | None]:
    """`;a=b;c` → {"a": "b", "c": None}; names lower-cased (they are case-insensitive)."""
    params: dict[str, str | None] = {}
    for part in _split_outside_quotes(text, ";"):
        part = part.strip()
        if not part:
            continue
        if "=" in part:
            k, v = part.split("=", 1)
            k, v = k.strip(), v.strip()
        else:
            k, v = part, None
        if not k or not _TOKEN_RE.match(k):
            raise SipParseError(f"bad parameter {part!r} in {what}")
        params[k.lower()] = v
    return params


def _split_outside_quotes(text: str, sep: str) -> list[str]:
    parts: list[str] = []
    buf: list[str] = []
    in_quotes = escaped = False
    for ch in text:
        if escaped:
            escaped = False
        elif in_quotes and ch == "\\":
            escaped = True
        elif ch == '"':
            in_quotes = not in_quotes
        elif ch == sep and not in_quotes:
            parts.append("".join(buf))
            buf = []
            continue
        buf.append(ch)
    if in_quotes:
        raise SipParseError(f"unterminated quoted string in {text!r}")
    parts.append("".join(buf))
    return parts


def _format_params(params: dict[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


def _format_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _parse_hostport(text: str, what: str) -> tuple[str, int | None]:
    text = text.strip()
    if not text:
        raise SipParseError(f"missing host in {what}")
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise SipParseError(f"unterminated IPv6 reference in {what}")
        host, rest = text[1:end], text[end + 1:]
        if not host:
            raise SipParseError(f"empty IPv6 reference in {what}")
    else:
        host, sep, port_text = text.partition(":")
        rest = sep + port_text
    port: int | None = None
    if rest:
        if not rest.startswith(":") or not rest[1:].strip().isdigit():
            raise SipParseError(f"bad port in {what}: {text!r}")
        port = int(rest[1:].strip())
        if not 0 < port < 65536:
            raise SipParseError(f"port out of range in {what}: {port}")
    host = host.strip()
    if not host or not re.match(r"^[A-Za-z0-9.\-_:%]+$", host):
        raise SipParseError(f"bad host in {what}: {host!r}")
    return host, port


@dataclass(frozen=True)
class SipUri:
    """A SIP/SIPS URI (or, loosely, tel/other URIs: the number lands in `user`)."""

    scheme: str
    user: str | None
    password: str | None
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict, hash=False)
    headers: dict[str, str] = field(default_factory=dict, hash=False)

    def __str__(self) -> str:
        if self.scheme not in ("sip", "sips"):
            return f"{self.scheme}:{self.user or ''}{_format_params(self.params)}"
        userinfo = ""
        if self.user is not None:
            userinfo = self.user
            if self.password is not None:
                userinfo += ":" + self.password
            userinfo += "@"
        hostport = _format_host(self.host)
        if self.port is not None:
            hostport += f":{self.port}"
        out = f"{self.scheme}:{userinfo}{hostport}{_format_params(self.params)}"
        if self.headers:
            out += "?" + "&".join(f"{k}={v}" for k, v in self.headers.items())
        return out

    @property
    def address(self) -> tuple[str, int]:
        """Host and port to send to (default 5060/5061)."""
        return self.host, self.port or (5061 if self.scheme == "sips" else 5060)


def parse_uri(s: str) -> SipUri:
    """Parse `sip:user:pw@host:port;params?headers` (also sips:, tel: and other schemes)."""
    text = s.strip()
    scheme, colon, rest = text.partition(":")
    if not colon or not scheme or not re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*$", scheme):
        raise SipParseError(f"URI without a scheme: {s!r}")
    if any(c in rest for c in " \t\r\n<>\""):
        raise SipParseError(f"URI contains white space or delimiters: {s!r}")
    scheme = scheme.lower()
    if scheme not in ("sip", "sips"):
        number, _, ptext = rest.partition(";")
        if not number:
            raise SipParseError(f"empty {scheme} URI: {s!r}")
        return SipUri(scheme, number, None, "", None, _split_params(ptext, "URI") if ptext else {})
    user = password = None
    # The user part may hold '?', ';' and '/' (RFC 4475 "intmeth") but never a bare '@',
    # so the first '@' ends it; URI headers are only looked for after the host.
    if "@" in rest:
        userinfo, rest = rest.split("@", 1)
        if not userinfo:
            raise SipParseError(f"empty user part in URI: {s!r}")
        if ":" in userinfo:
            user, password = userinfo.split(":", 1)
        else:
            user = userinfo
    uri_headers: dict[str, str] = {}
    if "?" in rest:
        rest, htext = rest.split("?", 1)
        for pair in htext.split("&"):
            k, _, v = pair.partition("=")
            uri_headers[k] = v
    hostport, _, ptext = rest.partition(";")
    host, port = _parse_hostport(hostport, "URI")
    params = _split_params(ptext, "URI") if ptext else {}
    return SipUri(scheme, user, password, host, port, params, uri_headers)


@dataclass(frozen=True)
class NameAddr:
    """A From/To/Contact/Route value: optional display name, URI and header params."""

    display: str | None
    uri: SipUri
    params: dict[str, str | None] = field(default_factory=dict, hash=False)

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def __str__(self) -> str:
        display = ""
        if self.display:
            display = '"' + self.display.replace("\\", "\\\\").replace('"', '\\"') + '" '
        return f"{display}<{self.uri}>{_format_params(self.params)}"


def parse_name_addr(s: str) -> NameAddr:
    """Parse `"Display" <uri>;tag=x`, `Display <uri>`, `<uri>` or a bare `uri;tag=x`."""
    text = s.strip()
    if not text:
        raise SipParseError("empty address")
    display: str | None = None
    if text.startswith('"'):
        i, buf = 1, []
        while i < len(text):
            ch = text[i]
            if ch == "\\" and i + 1 < len(text):
                buf.append(text[i + 1])
                i += 2
                continue
            if ch == '"':
                break
            buf.append(ch)
            i += 1
        else:
            raise SipParseError(f"unterminated display name in {s!r}")
        display = "".join(buf)
        text = text[i + 1:].lstrip()
        if not text.startswith("<"):
            raise SipParseError(f"quoted display name without <uri> in {s!r}")
    lt = text.find("<")
    if lt >= 0:
        if display is None:
            name = text[:lt].strip()
            if name and not re.match(r"^[A-Za-z0-9\-.!%*_+`'~ \t]+$", name):
                raise SipParseError(f"bad display name {name!r}")
            display = name or None
        gt = text.find(">", lt)
        if gt < 0:
            raise SipParseError(f"missing '>' in {s!r}")
        uri = parse_uri(text[lt + 1:gt])
        rest = text[gt + 1:].strip()
        if rest and not rest.startswith(";"):
            raise SipParseError(f"unexpected text after '>' in {s!r}")
    else:
        # addr-spec form: every ;param belongs to the header, not the URI (§20.10).
        uri_text, _, rest = text.partition(";")
        rest = ";" + rest if rest else ""
        if "?" in uri_text or "," in uri_text:
            raise SipParseError(f"URI with '?' or ',' must be enclosed in <> in {s!r}")
        uri = parse_uri(uri_text)
    return NameAddr(display, uri, _split_params(rest, "address") if rest else {})


@dataclass(frozen=True)
class Via:
    """One Via entry: `SIP/2.0/<transport> host[:port];params`."""

    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict, hash=False)

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def sent_by(self) -> tuple[str, int]:
        return self.host, self.port or 5060

    def __str__(self) -> str:
        hostport = _format_host(self.host) + (f":{self.port}" if self.port is not None else "")
        return f"SIP/2.0/{self.transport} {hostport}{_format_params(self.params)}"


def parse_via(s: str) -> Via:
    """Parse one Via value; tolerates the white space RFC 3261's LWS rules allow."""
    text = s.strip()
    m = re.match(r"^SIP\s*/\s*2\.0\s*/\s*([A-Za-z0-9\-]+)\s+(.*)$", text, re.IGNORECASE | re.S)
    if not m:
        raise SipParseError(f"bad Via: {s!r}")
    transport, rest = m.group(1).upper(), m.group(2)
    parts = _split_outside_quotes(rest, ";")
    hostport = re.sub(r"\s*:\s*", ":", parts[0].strip())
    if not hostport or " " in hostport:
        raise SipParseError(f"bad sent-by in Via: {s!r}")
    host, port = _parse_hostport(hostport, "Via")
    params = _split_params(";".join(parts[1:]), "Via")
    return Via(transport, host, port, params)


def parse_cseq(s: str) -> tuple[int, str]:
    """`"314159 INVITE"` → (314159, "INVITE")."""
    parts = (s or "").split()
    if len(parts) != 2 or not parts[0].isdigit():
        raise SipParseError(f"bad CSeq: {s!r}")
    number = int(parts[0])
    if number >= 2**31:
        raise SipParseError(f"CSeq number too large: {parts[0]}")
    if not _TOKEN_RE.match(parts[1]):
        raise SipParseError(f"bad CSeq method: {parts[1]!r}")
    return number, parts[1]


# ------------------------------------------------------------------------- messages

def _split_head_body(data: bytes) -> tuple[bytes, bytes]:
    crlf = data.find(b"\r\n\r\n")
    lf = data.find(b"\n\n")
    if crlf >= 0 and (lf < 0 or crlf < lf):
        return data[:crlf], data[crlf + 4:]
    if lf >= 0:
        return data[:lf], data[lf + 2:]
    # A datagram without the blank line: tolerated when it has no body.
    return data.rstrip(b"\r\n"), b""


def _header_lines(head: str, lenient: bool = False) -> tuple[str, list[tuple[str, str]]]:
    """Start line and (name, value) pairs; `lenient` skips broken lines instead of raising
    (to read enough of a bad request to answer it)."""
    lines = head.replace("\r\n", "\n").split("\n")
    start = lines[0]
    raw: list[str] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t"):
            if not raw:
                if lenient:
                    continue
                raise SipParseError("continuation line before any header")
            raw[-1] = raw[-1].rstrip() + " " + line.strip()
        else:
            raw.append(line)
    fields: list[tuple[str, str]] = []
    for line in raw:
        name, colon, value = line.partition(":")
        name = name.rstrip(" \t")
        if not colon or not name:
            if lenient:
                continue
            raise SipParseError(f"header line without a name and colon: {line[:40]!r}")
        if not _TOKEN_RE.match(name):
            if lenient:
                continue
            raise SipParseError(f"bad header name {name[:40]!r}")
        fields.append((name, value.strip(" \t")))
    return start, fields


def _parse_start_line(start: str, any_version: bool = False,
                      lenient: bool = False) -> SipRequest | SipResponse:
    if start[:4].upper() == "SIP/":
        parts = start.split(" ", 2)
        if len(parts) < 2:
            raise SipParseError(f"bad status line: {start!r}")
        version, code = parts[0], parts[1]
        if version.upper() != "SIP/2.0" and not any_version:
            raise SipParseError(f"unsupported SIP version {version!r}", status=505)
        if not (len(code) == 3 and code.isdigit() and 100 <= int(code) <= 699):
            raise SipParseError(f"bad status code {code!r}")
        return SipResponse(int(code), parts[2] if len(parts) > 2 else "", Headers())
    parts = start.split(" ")
    if lenient and (len(parts) != 3 or not all(parts)):
        # White space or <> around or inside the Request-URI (RFC 4475 lwsruri, ltgtruri).
        words = start.split()
        if len(words) >= 3:
            parts = [words[0], " ".join(words[1:-1]), words[-1]]
    if len(parts) != 3 or not all(parts):
        raise SipParseError(f"bad request line: {start[:80]!r}")
    method, uri, version = parts
    if _CONTROL_RE.search(start) and not lenient:
        raise SipParseError("control character in the request line")
    if not _TOKEN_RE.match(method):
        raise SipParseError(f"bad method {method!r}")
    if not re.match(r"^SIP/\d+\.\d+$", version, re.IGNORECASE):
        raise SipParseError(f"bad SIP version {version!r}")
    if version.upper() != "SIP/2.0" and not any_version:
        raise SipParseError(f"unsupported SIP version {version!r}", status=505)
    if not re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*:", uri) and not lenient:
        raise SipParseError(f"bad Request-URI {uri[:80]!r}")
    hostpart = uri.partition("@")[2] or uri.partition(":")[2]  # '?' is fine in the user part
    if "?" in hostpart and uri[:4].lower() in ("sip:", "sips") and not lenient:
        # §19.1.1: URI headers have no place in a Request-URI (RFC 4475 escruri).
        raise SipParseError("Request-URI with a header component ('?')")
    return SipRequest(method, uri, Headers())


def parse_head(data: bytes, *, any_version: bool = False,
               lenient: bool = False) -> tuple[SipRequest | SipResponse, bytes]:
    """Start line and headers without semantic checks, plus the raw rest of the datagram.

    Used by `parse_message` and by the UA to answer 400 (or 505, with `any_version`) to a
    request whose other headers are broken but whose top Via can be read; `lenient` skips
    header lines without a colon or with a bad name and reads a Request-URI with white space.
    """
    data = data.lstrip(b"\r\n")
    if not data:
        raise SipParseError("empty message")
    head_bytes, body = _split_head_body(data)
    # surrogateescape keeps non-UTF-8 octets so serialise() can write them back unchanged.
    head = head_bytes.decode("utf-8", errors="surrogateescape")
    start, fields = _header_lines(head, lenient)
    msg = _parse_start_line(start, any_version, lenient)
    for name, value in fields:
        msg.headers.add(name, value)
    return msg, body


def parse_message(data: bytes) -> SipRequest | SipResponse:
    """Parse one datagram into a request or response; SipParseError says what is wrong."""
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError("parse_message takes bytes")
    msg, body = parse_head(bytes(data))
    h = msg.headers
    for name in _MANDATORY:
        if name not in h:
            raise SipParseError(f"missing mandatory header {name}")
    for name, value in h.items():
        if _CONTROL_RE.search(value):
            raise SipParseError(f"control character in {name}")
        if name in _ASCII_ONLY and not value.isascii():
            raise SipParseError(f"{name} must be ASCII (non-UTF-8 or non-ASCII octets)")
        if name in _UTF8_ONLY and _SURROGATE_RE.search(value):
            raise SipParseError(f"non-UTF-8 octets in {name}")
    call_id = h.get("Call-ID") or ""
    if any(c.isspace() for c in call_id.strip()):
        raise SipParseError("white space in Call-ID")
    if len(h.get_all("Via")) > MAX_VIAS:
        raise SipParseError(f"more than {MAX_VIAS} Via entries", status=483)
    for key in _SINGLE_HEADERS:
        if len(h.get_all(key)) > 1:
            raise SipParseError(f"header {canonical_name(key)} appears more than once")
    lengths = h.get_all("Content-Length")
    if lengths:
        text = lengths[0].strip()
        if not text.isdigit():
            raise SipParseError(f"non-numeric Content-Length {lengths[0]!r}")
        length = int(text)
        if length > len(body):
            raise SipParseError(
                f"Content-Length {length} is larger than the body ({len(body)} bytes)")
        body = body[:length]
    number, method = parse_cseq(h.get("CSeq") or "")
    del number
    if isinstance(msg, SipRequest) and method != msg.method:
        raise SipParseError(f"CSeq method {method} does not match request method {msg.method}")
    for name in ("From", "To"):
        parse_name_addr(h.get(name) or "")
    for via in h.get_all("Via"):
        parse_via(via)
    if not (h.get("Call-ID") or "").strip():
        raise SipParseError("empty Call-ID")
    mf = h.get("Max-Forwards")
    if mf is not None and (not mf.strip().isdigit() or int(mf) > 255):
        raise SipParseError(f"bad Max-Forwards {mf!r}")
    if isinstance(msg, SipRequest):
        parse_uri(msg.uri)
    msg.body = body
    return msg


def serialize(msg: SipRequest | SipResponse) -> bytes:
    """Wire bytes for `msg`, with a Content-Length that matches the body."""
    if isinstance(msg, SipRequest):
        start = f"{msg.method} {msg.uri} SIP/2.0"
    else:
        start = f"SIP/2.0 {msg.status} {msg.reason}"
    lines = [start]
    for name, value in msg.headers.items():
        if name.lower() == "content-length":
            continue
        lines.append(f"{name}: {value}" if value else f"{name}:")
    lines.append(f"Content-Length: {len(msg.body)}")
    head = "\r\n".join(lines) + "\r\n\r\n"
    return head.encode("utf-8", errors="surrogateescape") + bytes(msg.body)


REASON_PHRASES = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 200: "OK", 202: "Accepted", 300: "Multiple Choices",
    301: "Moved Permanently", 302: "Moved Temporarily", 400: "Bad Request",
    401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    407: "Proxy Authentication Required", 408: "Request Timeout",
    413: "Request Entity Too Large", 415: "Unsupported Media Type",
    416: "Unsupported URI Scheme", 420: "Bad Extension", 423: "Interval Too Brief",
    480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist",
    482: "Loop Detected", 483: "Too Many Hops", 484: "Address Incomplete",
    486: "Busy Here", 487: "Request Terminated", 488: "Not Acceptable Here",
    491: "Request Pending", 500: "Server Internal Error", 501: "Not Implemented",
    503: "Service Unavailable", 504: "Server Time-out", 505: "Version Not Supported",
    513: "Message Too Large", 600: "Busy Everywhere", 603: "Decline",
    604: "Does Not Exist Anywhere", 606: "Not Acceptable",
}


def make_response(
    request: SipRequest,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    body: bytes = b"",
    content_type: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
) -> SipResponse:
    """A response to `request` built per RFC 3261 §8.2.6 (Via, From, To, Call-ID, CSeq)."""
    if not 100 <= status <= 699:
        raise ValueError(f"status out of range: {status}")
    h = Headers()
    for name, value in request.headers.items():
        if name.lower() == "via":
            h.add("Via", value)
    # A bad request may lack some of these: copy what is there (RFC 3261 §8.2.6.2).
    if "From" in request.headers:
        h.add("From", request.headers.get("From") or "")
    to = request.headers.get("To") or ""
    if to_tag is not None and status != 100:
        try:
            has_tag = parse_name_addr(to).tag is not None
        except SipParseError:
            has_tag = ";tag=" in to.lower()
        if not has_tag:
            to = f"{to};tag={to_tag}"
    if "To" in request.headers:
        h.add("To", to)
    for name in ("Call-ID", "CSeq"):
        if name in request.headers:
            h.add(name, request.headers.get(name) or "")
    if request.method == "INVITE" and 100 < status < 300:
        # Dialog-creating responses echo Record-Route (§12.1.1).
        for name, value in request.headers.items():
            if name.lower() == "record-route":
                h.add("Record-Route", value)
    if status == 100 and "Timestamp" in request.headers:
        h.add("Timestamp", request.headers.get("Timestamp") or "")
    for name, value in headers:
        h.add(name, value)
    if body:
        h.set("Content-Type", content_type or "application/sdp")
    elif content_type:
        h.set("Content-Type", content_type)
    return SipResponse(status, reason or REASON_PHRASES.get(status, "Unknown"), h, bytes(body))
