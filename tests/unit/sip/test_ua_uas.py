"""Tests for callcenter.sip.ua as the answering side (UAS) of inbound calls."""

import pytest

from callcenter.sip.events import (
    CallAcked, CallCancelled, CallEnded, CallOffered, DtmfInfoReceived, MessageRejected,
    ReofferReceived,
)
from callcenter.sip.message import SipRequest, SipResponse, parse_name_addr

from .helpers import OFFER, PHONE, invite, new_ua, request, sent, statuses

CID = "call-1@192.0.2.10"


def offered(ua, now=0.0, **kw):
    ua.receive_datagram(invite(**kw), PHONE, now)
    out = sent(ua)
    events = ua.events()
    return out, events


def answered(ua, now=1.0):
    offered(ua)
    assert ua.answer(CID, b"v=0\r\n", now)
    (resp, _), = sent(ua)
    return parse_name_addr(resp.headers.get("To")).tag


def ack(ua, tag, now, branch="z9hG4bKack1"):
    ua.receive_datagram(request("ACK", branch=branch, to_tag=tag), PHONE, now)


def test_invite_gets_100_at_once_and_call_offered():
    """An INVITE is answered 100 Trying to its source and reported as CallOffered."""
    ua = new_ua()
    out, events = offered(ua, now=3.5)
    (resp, addr), = out
    assert resp.status == 100 and addr == PHONE
    assert "rport=5062" in resp.headers.get("Via") and "received=192.0.2.10" in resp.headers.get("Via")
    assert ";tag=" not in resp.headers.get("To")
    assert events == [CallOffered(
        call_id=CID, from_uri="sip:13800138000@192.0.2.10", from_user="13800138000",
        from_display="Zhang San", to_user="12319", request_uri="sip:12319@198.51.100.1",
        sdp=OFFER, source=PHONE, received_at=3.5)]


def test_retransmitted_invite_resends_last_provisional_only():
    """A retransmitted INVITE gets the last provisional again and no new event."""
    ua = new_ua()
    offered(ua)
    ua.receive_datagram(invite(), PHONE, 0.4)
    assert statuses(ua) == [100]
    assert ua.ringing(CID, 0.5)
    assert statuses(ua) == [180]
    ua.receive_datagram(invite(), PHONE, 0.9)
    assert statuses(ua) == [180]
    assert ua.events() == []


def test_answer_retransmits_200_until_ack():
    """200 OK is retransmitted at T1, 2T1, 4T1 (cap T2) until the ACK stops it."""
    ua = new_ua()
    offered(ua)
    ua.answer(CID, b"v=0\r\n", 1.0)
    (resp, _), = sent(ua)
    assert resp.status == 200 and resp.body == b"v=0\r\n"
    assert resp.headers.get("Contact") == "<sip:198.51.100.1:5060>"
    tag = parse_name_addr(resp.headers.get("To")).tag
    assert tag
    times = []
    now = 1.0
    for _ in range(5):
        now = ua.get_timer()
        ua.handle_timer(now)
        assert statuses(ua) == [200]
        times.append(round(now - 1.0, 3))
    assert times == [0.5, 1.5, 3.5, 7.5, 11.5]
    ack(ua, tag, now + 0.1)
    assert ua.events() == [CallAcked(CID)]
    ua.handle_timer(now + 10)
    assert statuses(ua) == []


def test_no_ack_sends_bye_and_reports_timeout():
    """Without ACK within 64*T1 the UA sends BYE and reports CallEnded(timeout)."""
    ua = new_ua()
    answered(ua, now=1.0)
    now = 1.0
    while True:
        deadline = ua.get_timer()
        if deadline > 1.0 + 32:
            break
        now = deadline
        ua.handle_timer(now)
    assert now == pytest.approx(33.0)
    out = sent(ua)
    assert [m.method for m, _ in out if isinstance(m, SipRequest)] == ["BYE"]
    assert ua.events() == [CallEnded(CID, "timeout", "no ACK")]


def test_cancel_before_answer():
    """CANCEL gets 200, the INVITE gets 487, the controller gets CallCancelled."""
    ua = new_ua()
    offered(ua)
    ua.receive_datagram(request("CANCEL", cseq=1), PHONE, 2.0)
    out = sent(ua)
    assert [(m.status, m.headers.get("CSeq")) for m, _ in out] == [(200, "1 CANCEL"), (487, "1 INVITE")]
    assert ua.events() == [CallCancelled(CID)]
    assert not ua.answer(CID, b"v=0\r\n", 2.1)
    # 487 is retransmitted until the ACK (same branch as the INVITE) arrives.
    ua.handle_timer(2.5)
    assert statuses(ua) == [487]
    tag = parse_name_addr(out[1][0].headers.get("To")).tag
    ua.receive_datagram(request("ACK", branch="z9hG4bKinv1", to_tag=tag), PHONE, 2.6)
    ua.handle_timer(5.0)
    assert statuses(ua) == []
    assert ua.events() == []


def test_cancel_for_unknown_transaction_is_481():
    """A CANCEL matching no INVITE transaction is answered 481."""
    ua = new_ua()
    ua.receive_datagram(request("CANCEL", branch="z9hG4bKnone"), PHONE, 0)
    assert statuses(ua) == [481]


def test_bye_from_caller_ends_call():
    """BYE in the dialog gets 200 and CallEnded(by=remote); a retransmission gets 200 again."""
    ua = new_ua()
    tag = answered(ua)
    ack(ua, tag, 1.1)
    ua.events()
    bye = request("BYE", branch="z9hG4bKbye1", cseq=2, to_tag=tag)
    ua.receive_datagram(bye, PHONE, 5.0)
    assert statuses(ua) == [200]
    assert ua.events() == [CallEnded(CID, "remote", "BYE")]
    ua.receive_datagram(bye, PHONE, 5.5)
    assert statuses(ua) == [200]
    assert ua.events() == []


def test_requests_in_unknown_dialog_get_481():
    """BYE, INFO and re-INVITE with a To-tag we never issued are answered 481."""
    ua = new_ua()
    answered(ua)
    for method, branch in (("BYE", "z9hG4bKb"), ("INFO", "z9hG4bKi"), ("INVITE", "z9hG4bKr")):
        ua.receive_datagram(request(method, branch=branch, cseq=5, to_tag="nope"), PHONE, 1.2)
        assert statuses(ua) == [481]
    assert ua.events() == []


def test_local_hangup_sends_bye_in_dialog():
    """hangup after answer sends a BYE with our tags, next CSeq and the peer's Contact."""
    ua = new_ua()
    tag = answered(ua)
    ack(ua, tag, 1.1)
    ua.events()
    assert ua.hangup(CID, 2.0)
    assert ua.events() == [CallEnded(CID, "local", "hangup")]
    (bye, addr), = sent(ua)
    assert addr == PHONE
    assert bye.method == "BYE" and bye.uri == "sip:13800138000@192.0.2.10:5062"
    assert parse_name_addr(bye.headers.get("From")).tag == tag
    assert parse_name_addr(bye.headers.get("To")).tag == "ft1"
    assert bye.headers.get("CSeq") == "2 BYE"
    # Timer E retransmits until a final response.
    ua.handle_timer(2.5)
    (again, _), = sent(ua)
    assert again.headers.get("Via") == bye.headers.get("Via")
    ua.receive_datagram(_response_to(bye, 200), PHONE, 2.6)
    ua.handle_timer(10.0)
    assert sent(ua) == []
    assert not ua.hangup(CID, 11.0)


def _response_to(req, status):
    from callcenter.sip.message import make_response, serialize
    return serialize(make_response(req, status, to_tag="remote"))


def test_hangup_before_answer_is_480():
    """hangup on an unanswered call rejects it with 480 and reports CallEnded(local)."""
    ua = new_ua()
    offered(ua)
    assert ua.hangup(CID, 1.0)
    assert statuses(ua) == [480]
    assert ua.events() == [CallEnded(CID, "local", "hangup")]


def test_reject_with_status_and_reason():
    """reject sends the given status and reason and ends the call."""
    ua = new_ua()
    offered(ua, body=b"", content_type=None)
    assert ua.reject(CID, 488, 1.0)
    (resp, _), = sent(ua)
    assert (resp.status, resp.reason) == (488, "Not Acceptable Here")
    assert ua.events() == [CallEnded(CID, "local", "rejected 488")]
    assert not ua.reject(CID, 486, 1.1)
    with pytest.raises(ValueError):
        ua.reject(CID, 200, 1.2)


def test_invite_without_sdp_is_offered_with_empty_sdp():
    """An INVITE without a usable SDP body is still offered, with sdp=b''."""
    ua = new_ua()
    _, events = offered(ua, body=b"not sdp", content_type="application/sdp")
    assert events[0].sdp == b""


def test_commands_on_unknown_call_are_noops():
    """Commands on a call-id the UA does not know return False and send nothing."""
    ua = new_ua()
    assert not ua.ringing("x", 0) and not ua.answer("x", b"", 0)
    assert not ua.reject("x", 486, 0) and not ua.hangup("x", 0)
    assert not ua.answer_reoffer("x", b"", 0)
    assert sent(ua) == []


def test_options_answered_with_capabilities():
    """OPTIONS gets 200 with Allow and Accept and a To-tag."""
    ua = new_ua()
    ua.receive_datagram(request("OPTIONS", branch="z9hG4bKo"), PHONE, 0)
    (resp, _), = sent(ua)
    assert resp.status == 200
    assert "INFO" in resp.headers.get_all("Allow")
    assert resp.headers.get("Accept") == "application/sdp"
    assert parse_name_addr(resp.headers.get("To")).tag


@pytest.mark.parametrize("ctype, body, digit, duration", [
    ("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n", "5", 160),
    ("application/dtmf-relay", b"Signal=11\r\nDuration=100\r\n", "#", 100),
    ("application/dtmf-relay", b"Signal= *\r\n", "*", 250),
    ("application/dtmf", b"9", "9", 250),
])
def test_info_dtmf(ctype, body, digit, duration):
    """INFO with a DTMF body gets 200 and DtmfInfoReceived."""
    ua = new_ua()
    tag = answered(ua)
    ua.receive_datagram(request("INFO", branch="z9hG4bKi1", cseq=2, to_tag=tag, body=body,
                                content_type=ctype), PHONE, 2.0)
    assert statuses(ua) == [200]
    assert ua.events() == [DtmfInfoReceived(CID, digit, duration)]


def test_info_bad_dtmf_and_other_types():
    """A bad DTMF signal is 400, an unknown content type 415, both without events."""
    ua = new_ua()
    tag = answered(ua)
    ua.receive_datagram(request("INFO", branch="z9hG4bKi1", cseq=2, to_tag=tag,
                                body=b"Signal=X\r\n", content_type="application/dtmf-relay"), PHONE, 2)
    ua.receive_datagram(request("INFO", branch="z9hG4bKi2", cseq=3, to_tag=tag,
                                body=b"<xml/>", content_type="application/xml"), PHONE, 2)
    assert statuses(ua) == [400, 415]
    assert ua.events() == []


def test_unknown_method_and_register_get_501():
    """Methods we do not implement (and REGISTER without a registrar) get 501."""
    ua = new_ua()
    ua.receive_datagram(request("PUBLISH", branch="z9hG4bKp"), PHONE, 0)
    ua.receive_datagram(request("REGISTER", branch="z9hG4bKr"), PHONE, 0)
    assert statuses(ua) == [501, 501]


def test_parse_error_with_readable_headers_gets_400():
    """A request with a bad header but readable Via/From/To/Call-ID/CSeq gets 400 + reason."""
    ua = new_ua()
    data = request("OPTIONS", extra="Max-Forwards: many").replace(b"Max-Forwards: 70\r\n", b"")
    ua.receive_datagram(data, PHONE, 0)
    (resp, addr), = sent(ua)
    assert resp.status == 400 and "Max-Forwards" in resp.reason and addr == PHONE
    (ev,) = ua.events()
    assert isinstance(ev, MessageRejected) and ev.status == 400


def test_unreadable_garbage_is_dropped():
    """Garbage and a request without Via are dropped and reported, not answered."""
    ua = new_ua()
    ua.receive_datagram(b"\x00\x01hello", PHONE, 0)
    ua.receive_datagram(request("OPTIONS").replace(b"Via:", b"X-Via:"), PHONE, 0)
    assert sent(ua) == []
    assert [e.status for e in ua.events()] == [None, None]


def test_version_505():
    """A request with SIP/3.0 is answered 505."""
    ua = new_ua()
    ua.receive_datagram(request("OPTIONS").replace(b"SIP/2.0\r\n", b"SIP/3.0\r\n", 1), PHONE, 0)
    assert statuses(ua) == [505]


def test_responses_follow_via_without_rport():
    """Without rport, responses go to the Via sent-by port at the received address."""
    ua = new_ua()
    ua.receive_datagram(request("OPTIONS", via_params=""), ("203.0.113.7", 40000), 0)
    (resp, addr), = sent(ua)
    assert addr == ("203.0.113.7", 5062)
    assert "received=203.0.113.7" in resp.headers.get("Via")


def test_keepalive_crlf():
    """A double-CRLF keep-alive gets a single CRLF back; a lone CRLF nothing."""
    ua = new_ua()
    ua.receive_datagram(b"\r\n\r\n", PHONE, 0)
    ua.receive_datagram(b"\r\n", PHONE, 0)
    assert ua.datagrams_to_send() == [(b"\r\n", PHONE)]


def test_reinvite_reoffer_and_answer():
    """A re-INVITE is reported as ReofferReceived and answered with answer_reoffer."""
    ua = new_ua()
    tag = answered(ua)
    ack(ua, tag, 1.1)
    ua.events()
    ua.receive_datagram(invite(branch="z9hG4bKre", cseq=2, to_tag=tag), PHONE, 3.0)
    assert statuses(ua) == [100]
    assert ua.events() == [ReofferReceived(CID, OFFER)]
    # A second offer while one is pending gets 491.
    ua.receive_datagram(invite(branch="z9hG4bKre2", cseq=3, to_tag=tag), PHONE, 3.1)
    assert statuses(ua) == [491]
    ua.receive_datagram(request("ACK", branch="z9hG4bKre2", cseq=3, to_tag=tag), PHONE, 3.15)
    assert ua.answer_reoffer(CID, b"v=0\r\n", 3.2)
    (resp, _), = sent(ua)
    assert resp.status == 200 and resp.headers.get("CSeq") == "2 INVITE"
    ack(ua, tag, 3.3, branch="z9hG4bKack2")
    ua.handle_timer(4.0)
    assert sent(ua) == []
    assert ua.events() == []


def test_reoffer_rejected_keeps_call():
    """reject during a pending re-INVITE answers it (488) and the call stays up."""
    ua = new_ua()
    tag = answered(ua)
    ack(ua, tag, 1.1)
    ua.events()
    ua.receive_datagram(invite(branch="z9hG4bKre", cseq=2, to_tag=tag), PHONE, 3.0)
    sent(ua), ua.events()
    assert ua.reject(CID, 488, 3.1)
    assert statuses(ua) == [488]
    assert ua.events() == []
    assert ua.hangup(CID, 4.0)
    assert statuses(ua) == ["BYE"]


def test_merged_invite_gets_482():
    """A second INVITE with the same Call-ID, no To-tag and a new branch gets 482."""
    ua = new_ua()
    offered(ua)
    ua.receive_datagram(invite(branch="z9hG4bKfork2"), PHONE, 0.1)
    assert statuses(ua) == [482]
    assert ua.events() == []


def test_state_is_purged_after_timers():
    """After a call ends and all timers fire, no timer remains and the call-id is free."""
    ua = new_ua()
    tag = answered(ua)
    ack(ua, tag, 1.1)
    ua.receive_datagram(request("BYE", branch="z9hG4bKbye1", cseq=2, to_tag=tag), PHONE, 2.0)
    sent(ua), ua.events()
    guard = 0
    while (deadline := ua.get_timer()) is not None:
        ua.handle_timer(deadline)
        guard += 1
        assert guard < 50
    assert sent(ua) == []
    # The same Call-ID is now a brand-new call.
    ua.receive_datagram(invite(branch="z9hG4bKnew"), PHONE, 100.0)
    assert [type(e) for e in ua.events()] == [CallOffered]


def test_require_unknown_extension_gets_420():
    """A Require header naming an extension we lack is answered 420 with Unsupported."""
    ua = new_ua()
    ua.receive_datagram(invite(extra="Require: 100rel"), PHONE, 0)
    (resp, _), = sent(ua)
    assert resp.status == 420 and resp.headers.get("Unsupported") == "100rel"
    assert ua.events() == []


def test_invite_again_after_407_with_a_new_from_tag_is_a_new_call():
    """svcrack's retry after our 407 keeps the Call-ID but changes the From tag (it encodes
    the guess there): a new call reaching admission, not 482; a merged copy of the refused
    INVITE (same From tag and CSeq, new branch) still gets 482."""
    ua = new_ua()
    offered(ua)
    assert ua.reject(CID, 407, 0.1)
    assert statuses(ua) == [407]
    ua.events()
    ua.receive_datagram(invite(branch="z9hG4bKguess1", cseq=2, from_tag="guess1"), PHONE, 0.2)
    assert statuses(ua) == [100]
    assert [type(e) for e in ua.events()] == [CallOffered]
    assert ua.reject(CID, 403, 0.3)
    assert statuses(ua) == [403]
    ua.events()
    # Another guess on a retransmitted challenge: same Call-ID and CSeq, another From tag.
    ua.receive_datagram(invite(branch="z9hG4bKguess2", cseq=2, from_tag="guess2"), PHONE, 0.4)
    assert statuses(ua) == [100]
    assert [type(e) for e in ua.events()] == [CallOffered]
    assert ua.reject(CID, 403, 0.5)
    sent(ua), ua.events()
    ua.receive_datagram(invite(branch="z9hG4bKmerged", cseq=2, from_tag="guess2"), PHONE, 0.6)
    assert statuses(ua) == [482]
    assert ua.events() == []


@pytest.mark.parametrize("method", ["INVITE", "REGISTER", "OPTIONS"])
def test_sips_request_uri_over_udp_gets_416(method):
    """RFC 3261 §26.2.2: a sips: Request-URI must come over TLS; over UDP (or plain TCP) it is
    refused with 416 (§8.2.2.1) and reaches nobody; over TLS it is served."""
    uri = "sips:12319@198.51.100.1"
    ua = new_ua()
    body = {"body": OFFER} if method == "INVITE" else {}
    ua.receive_datagram(request(method, uri=uri, **body), PHONE, 0)
    (resp, addr), = sent(ua)
    assert resp.status == 416 and addr == PHONE and "TLS" in resp.reason
    assert ua.events() == []

    tcp = new_ua()
    tcp.stream_of = lambda a: ("TCP", 5060) if a == PHONE else None
    tcp.receive_datagram(request(method, uri=uri, **body), PHONE, 0)
    assert statuses(tcp) == [416]

    tls = new_ua()
    tls.stream_of = lambda a: ("TLS", 5061) if a == PHONE else None
    tls.receive_datagram(request(method, uri=uri, **body), PHONE, 0)
    assert 416 not in statuses(tls)
