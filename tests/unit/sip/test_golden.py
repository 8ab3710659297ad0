"""Golden-file tests: the exact bytes the UA emits in scripted scenarios (seeded rng).

Regenerate after an intended change with `SIP_UPDATE_GOLDEN=1 pytest tests/unit/sip`.
"""

import os
from pathlib import Path

from callcenter.sip.message import parse_message

from .helpers import PHONE, invite, new_ua, request

GOLDEN = Path(__file__).parent / "golden"
CID = "call-1@192.0.2.10"
ANSWER = b"v=0\r\no=- 42 0 IN IP4 198.51.100.1\r\ns=hotline12319\r\n"


def _transcript(steps) -> str:
    """Run (label, action) steps; record what the UA sends after each."""
    ua = new_ua()
    out = []
    for label, action in steps:
        action(ua)
        for data, addr in ua.datagrams_to_send():
            out.append(f"### {label} -> {addr[0]}:{addr[1]}\n")
            out.append(data.decode("utf-8").replace("\r\n", "\n"))
            if not data.endswith(b"\n"):
                out.append("\n")
        for ev in ua.events():
            out.append(f"### {label} event {ev!r}\n")
    return "".join(out)


def _check(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("SIP_UPDATE_GOLDEN"):
        path.write_text(text)
    assert path.read_text() == text


def _tag(ua):
    return ua._calls[CID].local_tag


def test_golden_inbound_call_answered_and_hung_up_by_us():
    """INVITE → 100, 180, 200, ACK, local BYE: the exact messages we send."""
    steps = [
        ("INVITE", lambda ua: ua.receive_datagram(invite(), PHONE, 0.0)),
        ("ringing", lambda ua: ua.ringing(CID, 0.1)),
        ("answer", lambda ua: ua.answer(CID, ANSWER, 1.0)),
        ("timer", lambda ua: ua.handle_timer(1.5)),
        ("ACK", lambda ua: ua.receive_datagram(
            request("ACK", branch="z9hG4bKack", to_tag=_tag(ua)), PHONE, 1.6)),
        ("hangup", lambda ua: ua.hangup(CID, 5.0)),
    ]
    _check("uas_answer_hangup.txt", _transcript(steps))


def test_golden_inbound_call_cancelled():
    """INVITE → 100, CANCEL → 200 + 487, ACK."""
    steps = [
        ("INVITE", lambda ua: ua.receive_datagram(invite(), PHONE, 0.0)),
        ("CANCEL", lambda ua: ua.receive_datagram(request("CANCEL"), PHONE, 1.0)),
    ]
    _check("uas_cancel.txt", _transcript(steps))


def test_golden_options_and_bad_request():
    """OPTIONS → 200 with capabilities; a broken request → 400 with the reason."""
    bad = request("OPTIONS", branch="z9hG4bKbad").replace(b"CSeq: 1 OPTIONS", b"CSeq: 1 INVITE")
    steps = [
        ("OPTIONS", lambda ua: ua.receive_datagram(request("OPTIONS", branch="z9hG4bKo"), PHONE, 0)),
        ("bad", lambda ua: ua.receive_datagram(bad, PHONE, 0)),
    ]
    _check("uas_options_bad.txt", _transcript(steps))


def test_golden_files_parse():
    """Every message in the golden transcripts is itself parseable."""
    for path in GOLDEN.glob("uas_*.txt"):
        for chunk in path.read_text().split("### ")[1:]:
            header, _, body = chunk.partition("\n")
            if " event " in header:
                continue
            parse_message(body.replace("\n", "\r\n").encode())
