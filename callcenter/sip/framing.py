"""Message framing for SIP over a byte stream (TCP, TLS): RFC 3261 §18.3, RFC 5626 §4.4.1.

On a stream a message ends where its Content-Length says, so the header block is found first
(up to the empty line), its Content-Length read, and that many body bytes awaited. CRLFs
between messages are skipped (§7.5); a double CRLF there is a keep-alive ping, handed on as
`PING` so the user agent answers it with a single CRLF. Pure: bytes in, whole messages out.

Anything that cannot be framed (no or several Content-Lengths, a head or body over the size
limit) raises `FramingError`: after that the stream has lost its message boundaries and the
only safe move is to close the connection.
"""

from __future__ import annotations

import re

__all__ = ["FramingError", "StreamFramer", "PING", "MAX_HEAD_BYTES", "MAX_BODY_BYTES"]

# A keep-alive ping as `StreamFramer.feed` hands it on (the UA answers b"\r\n").
PING = b"\r\n\r\n"
# Real SIP heads are far below this; the UDP side refuses messages over 16 KiB too.
MAX_HEAD_BYTES = 16_384
MAX_BODY_BYTES = 65_536

_CONTENT_LENGTH = re.compile(rb"^(?:content-length|l)[ \t]*:[ \t]*(.*?)[ \t]*$", re.IGNORECASE)


class FramingError(ValueError):
    """The stream cannot be cut into messages any more; close the connection."""


class StreamFramer:
    """Cut a SIP byte stream into messages; feed it bytes as they arrive."""

    def __init__(self, *, max_head: int = MAX_HEAD_BYTES, max_body: int = MAX_BODY_BYTES):
        self.max_head = max_head
        self.max_body = max_body
        self._buf = bytearray()
        # Set once the current message's head is read: (head length incl. blank line, body length).
        self._pending: tuple[int, int] | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet handed on (a partial message)."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return the whole messages (and `PING`s) they complete, in order."""
        self._buf += data
        out: list[bytes] = []
        while True:
            item = self._next()
            if item is None:
                return out
            out.append(item)

    def _next(self) -> bytes | None:
        buf = self._buf
        if self._pending is None:
            # Between messages: skip CRLFs, a double one being a ping.
            while buf[:1] in (b"\r", b"\n"):
                if buf[:4] == PING:
                    del buf[:4]
                    return PING
                if buf[:2] == b"\r\n":
                    if len(buf) < 4 and PING.startswith(bytes(buf)):
                        return None  # maybe the start of a ping: wait
                    del buf[:2]
                elif buf[:1] == b"\r" and len(buf) == 1:
                    return None
                else:
                    del buf[:1]
            if not buf:
                return None
            end, sep = self._head_end(buf)
            if end < 0:
                if len(buf) > self.max_head:
                    raise FramingError(f"no end of headers within {self.max_head} bytes")
                return None
            if end > self.max_head:
                raise FramingError(f"headers of {end} bytes exceed {self.max_head}")
            self._pending = (end + sep, self._content_length(bytes(buf[:end])))
        head_len, body_len = self._pending
        if len(buf) < head_len + body_len:
            return None
        message = bytes(buf[:head_len + body_len])
        del buf[:head_len + body_len]
        self._pending = None
        return message

    @staticmethod
    def _head_end(buf: bytearray) -> tuple[int, int]:
        """Where the header block ends and how long its blank-line separator is (-1: not yet)."""
        crlf = buf.find(b"\r\n\r\n")
        lf = buf.find(b"\n\n")
        if lf >= 0 and (crlf < 0 or lf < crlf):
            return lf, 2
        return crlf, 4

    def _content_length(self, head: bytes) -> int:
        values = set()
        for line in head.replace(b"\r\n", b"\n").split(b"\n")[1:]:
            m = _CONTENT_LENGTH.match(line)
            if m:
                values.add(m.group(1))
        if not values:
            raise FramingError("no Content-Length (required on a stream, RFC 3261 §18.3)")
        if len(values) > 1:
            raise FramingError("conflicting Content-Length headers")
        raw = values.pop()
        if not raw.isdigit() or len(raw) > 9:
            raise FramingError(f"bad Content-Length {raw[:20]!r}")
        length = int(raw)
        if length > self.max_body:
            raise FramingError(f"body of {length} bytes exceeds {self.max_body}")
        return length
