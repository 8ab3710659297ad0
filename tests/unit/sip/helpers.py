"""Builders for the SIP messages the unit tests feed to the user agent."""

from __future__ import annotations

import random

from callcenter.sip.message import SipRequest, SipResponse, parse_message
from callcenter.sip.ua import UserAgent

PHONE = ("192.0.2.10", 5062)

OFFER = (
    b"v=0\r\n"
    b"o=- 1 1 IN IP4 192.0.2.10\r\n"
    b"s=-\r\n"
    b"c=IN IP4 192.0.2.10\r\n"
    b"t=0 0\r\n"
    b"m=audio 40000 RTP/AVP 0 8 101\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-16\r\n"
    b"a=sendrecv\r\n"
)


def new_ua(**kw) -> UserAgent:
    kw.setdefault("rng", random.Random(12319))
    return UserAgent(local_host="198.51.100.1", local_port=5060, **kw)


def request(method: str, *, call_id: str = "call-1@192.0.2.10", branch: str = "z9hG4bKinv1",
            cseq: int = 1, cseq_method: str | None = None, from_tag: str = "ft1",
            to_tag: str | None = None, body: bytes = b"", content_type: str | None = None,
            extra: str = "", via_params: str = ";rport", uri: str = "sip:12319@198.51.100.1",
            ) -> bytes:
    to = "<sip:12319@198.51.100.1>" + (f";tag={to_tag}" if to_tag else "")
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: SIP/2.0/UDP 192.0.2.10:5062;branch={branch}{via_params}",
        "Max-Forwards: 70",
        f'From: "Zhang San" <sip:13800138000@192.0.2.10>;tag={from_tag}',
        f"To: {to}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {cseq_method or method}",
        "Contact: <sip:13800138000@192.0.2.10:5062>",
    ]
    if extra:
        lines.extend(extra.strip("\r\n").split("\r\n"))
    if body:
        lines.append(f"Content-Type: {content_type or 'application/sdp'}")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def invite(**kw) -> bytes:
    kw.setdefault("body", OFFER)
    return request("INVITE", **kw)


def sent(ua: UserAgent) -> list[tuple[SipRequest | SipResponse, tuple[str, int]]]:
    """Drain and parse what the UA wants to send."""
    return [(parse_message(data), addr) for data, addr in ua.datagrams_to_send()]


def statuses(ua: UserAgent) -> list[int | str]:
    return [m.status if isinstance(m, SipResponse) else m.method for m, _ in sent(ua)]
