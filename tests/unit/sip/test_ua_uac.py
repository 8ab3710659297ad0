"""Tests for callcenter.sip.ua placing outbound calls (UAC): INVITE, ACK, CANCEL, auth."""

import pytest

from callcenter.sip.digest import compute_response, ha1, parse_auth_params
from callcenter.sip.events import (
    CallAnswered, CallEnded, CallFailed, CallProgressed,
)
from callcenter.sip.message import make_response, parse_name_addr, serialize
from callcenter.sip.ua import Credentials

from .helpers import OFFER, new_ua, request, sent

AGENT = ("192.0.2.20", 5070)
TARGET = "sip:1001@192.0.2.20:5070"


def place(ua, now=0.0, **kw):
    cid = ua.invite(target_uri=TARGET, remote=AGENT, from_user="12319", sdp=OFFER, now=now, **kw)
    (inv, addr), = sent(ua)
    return cid, inv, addr


def reply(ua, req, status, now, *, tag="callee", body=b"", headers=(), reason=None):
    h = [("Contact", "<sip:1001@192.0.2.20:5070;transport=udp>")] + list(headers)
    resp = make_response(req, status, reason, to_tag=tag, body=body, headers=h)
    ua.receive_datagram(serialize(resp), AGENT, now)


def test_invite_request_shape():
    """The INVITE goes to `remote` with Via/rport, From-tag, no To-tag, Contact and SDP."""
    ua = new_ua()
    cid, inv, addr = place(ua)
    assert addr == AGENT
    assert inv.method == "INVITE" and inv.uri == TARGET
    assert inv.headers.get("Call-ID") == cid
    assert inv.headers.get("Via").startswith("SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bK")
    assert parse_name_addr(inv.headers.get("From")).tag
    assert parse_name_addr(inv.headers.get("To")).tag is None
    assert inv.headers.get("CSeq") == "1 INVITE" and inv.body == OFFER


def test_timer_a_retransmits_and_timer_b_fails():
    """No answer: INVITE retransmitted at 0.5, 1.5, 3.5 …; at 64*T1 CallFailed(408)."""
    ua = new_ua()
    cid, inv, _ = place(ua)
    times = []
    while (deadline := ua.get_timer()) is not None and deadline <= 32.0:
        ua.handle_timer(deadline)
        if sent(ua):
            times.append(deadline)
    assert times[:4] == [0.5, 1.5, 3.5, 7.5]
    assert ua.events() == [CallFailed(cid, 408, "timeout")]


def test_answered_call_acks_with_to_tag_and_route_set():
    """180 → CallProgressed; 200 → ACK to the Contact with To-tag and reversed Route."""
    ua = new_ua()
    cid, inv, _ = place(ua)
    reply(ua, inv, 180, 1.0)
    assert ua.events() == [CallProgressed(cid, 180, None)]
    reply(ua, inv, 200, 2.0, body=OFFER,
          headers=[("Record-Route", "<sip:p1.example;lr>"), ("Record-Route", "<sip:p2.example;lr>")])
    (ack, addr), = sent(ua)
    assert ack.method == "ACK" and addr == AGENT
    assert ack.uri == "sip:1001@192.0.2.20:5070;transport=udp"
    assert parse_name_addr(ack.headers.get("To")).tag == "callee"
    assert ack.headers.get("CSeq") == "1 ACK"
    assert ack.headers.get_all("Route") == ["<sip:p2.example;lr>", "<sip:p1.example;lr>"]
    assert ack.headers.get("Via") != inv.headers.get("Via")
    assert ua.events() == [CallAnswered(cid, OFFER)]
    # A retransmitted 200 gets the ACK again, with no new event.
    reply(ua, inv, 200, 2.5, body=OFFER)
    assert [m.method for m, _ in sent(ua)] == ["ACK"]
    assert ua.events() == []
    # Our BYE uses the dialog: Contact as Request-URI, CSeq 2.
    assert ua.hangup(cid, 3.0)
    (bye, _), = sent(ua)
    assert bye.method == "BYE" and bye.headers.get("CSeq") == "2 BYE"
    assert bye.uri == "sip:1001@192.0.2.20:5070;transport=udp"
    assert ua.events() == [CallEnded(cid, "local", "hangup")]


@pytest.mark.parametrize("status, reason", [(486, "Busy Here"), (603, "Decline"), (480, "Temporarily Unavailable")])
def test_failure_is_acked_and_reported(status, reason):
    """A non-2xx final response is ACKed on the INVITE's branch and reported CallFailed."""
    ua = new_ua()
    cid, inv, _ = place(ua)
    reply(ua, inv, status, 1.0)
    (ack, _), = sent(ua)
    assert ack.method == "ACK" and ack.headers.get("Via") == inv.headers.get("Via")
    assert parse_name_addr(ack.headers.get("To")).tag == "callee"
    assert ua.events() == [CallFailed(cid, status, reason)]


def test_digest_challenge_is_answered_once():
    """401 → ACK + INVITE with Authorization (CSeq 2); a second 401 fails the call."""
    ua = new_ua()
    cid, inv, _ = place(ua, credentials=Credentials("12319", "secret"))
    challenge = 'Digest realm="pbx", nonce="n1", algorithm=SHA-256, qop="auth"'
    reply(ua, inv, 401, 1.0, headers=[("WWW-Authenticate", challenge)])
    (ack, _), (inv2, _) = sent(ua)
    assert ack.method == "ACK" and inv2.method == "INVITE"
    assert inv2.headers.get("CSeq") == "2 INVITE"
    assert inv2.headers.get("Call-ID") == cid
    assert inv2.headers.get("From") == inv.headers.get("From")
    _, p = parse_auth_params(inv2.headers.get("Authorization"))
    assert p["response"] == compute_response(
        algorithm="SHA-256", ha1=ha1("12319", "pbx", "secret", "SHA-256"), nonce="n1",
        method="INVITE", uri=TARGET, qop="auth", nc=p["nc"], cnonce=p["cnonce"])
    assert ua.events() == []
    reply(ua, inv2, 401, 2.0, headers=[("WWW-Authenticate", challenge)])
    assert [m.method for m, _ in sent(ua)] == ["ACK"]
    assert ua.events() == [CallFailed(cid, 401, "Unauthorized")]


def test_proxy_challenge_without_credentials_fails():
    """407 without credentials is a plain failure."""
    ua = new_ua()
    cid, inv, _ = place(ua)
    reply(ua, inv, 407, 1.0, headers=[("Proxy-Authenticate", 'Digest realm="p", nonce="n"')])
    assert ua.events() == [CallFailed(cid, 407, "Proxy Authentication Required")]


def test_hangup_before_answer_sends_cancel():
    """hangup after 180 sends CANCEL (same branch); the 487 is ACKed, no further events."""
    ua = new_ua()
    cid, inv, _ = place(ua)
    reply(ua, inv, 180, 1.0)
    ua.events()
    assert ua.hangup(cid, 2.0)
    (cancel, _), = sent(ua)
    assert cancel.method == "CANCEL" and cancel.headers.get("CSeq") == "1 CANCEL"
    assert cancel.headers.get("Via") == inv.headers.get("Via") and cancel.uri == inv.uri
    assert ua.events() == [CallEnded(cid, "local", "hangup")]
    ua.receive_datagram(serialize(make_response(cancel, 200, to_tag="callee")), AGENT, 2.1)
    reply(ua, inv, 487, 2.2)
    assert [m.method for m, _ in sent(ua)] == ["ACK"]
    assert ua.events() == []


def test_hangup_before_any_provisional_waits_for_one():
    """No CANCEL before a provisional (§9.1); it goes out when the 180 arrives."""
    ua = new_ua()
    cid, inv, _ = place(ua)
    assert ua.hangup(cid, 0.1)
    assert [m.method for m, _ in sent(ua)] == []
    reply(ua, inv, 180, 0.2)
    assert [m.method for m, _ in sent(ua)] == ["CANCEL"]


def test_answer_racing_cancel_is_acked_and_byed():
    """A 200 that crosses our CANCEL is ACKed and the call torn down with BYE."""
    ua = new_ua()
    cid, inv, _ = place(ua)
    reply(ua, inv, 180, 1.0)
    ua.hangup(cid, 2.0)
    sent(ua), ua.events()
    reply(ua, inv, 200, 2.1, body=OFFER)
    assert [m.method for m, _ in sent(ua)] == ["ACK", "BYE"]
    assert ua.events() == []


def test_bye_from_callee_ends_outbound_call():
    """The callee's BYE (To = our From with our tag) gets 200 and CallEnded(remote)."""
    ua = new_ua()
    cid, inv, _ = place(ua)
    reply(ua, inv, 200, 1.0, body=OFFER)
    sent(ua), ua.events()
    our_tag = parse_name_addr(inv.headers.get("From")).tag
    bye = request("BYE", call_id=cid, branch="z9hG4bKcb", cseq=7, from_tag="callee",
                  to_tag=our_tag)
    ua.receive_datagram(bye, AGENT, 5.0)
    (ok, _), = sent(ua)
    assert ok.status == 200
    assert ua.events() == [CallEnded(cid, "remote", "BYE")]
