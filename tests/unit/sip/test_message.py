"""Tests for callcenter.sip.message: parsing, header access, values and responses."""

import pytest

from callcenter.sip.message import (
    Headers, SipParseError, SipRequest, SipResponse, make_response, parse_cseq,
    parse_message, parse_name_addr, parse_uri, parse_via, serialize,
)

from .helpers import invite, request

BARESIP_INVITE = (
    b"INVITE sip:12319@127.0.0.1:5060 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:38211;branch=z9hG4bK0f1a;rport\r\n"
    b"Contact: <sip:agent01-0x5599@127.0.0.1:38211>\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: <sip:12319@127.0.0.1>\r\n"
    b"From: <sip:agent01@127.0.0.1>;tag=7a4e\r\n"
    b"Call-ID: 9d2f1c\r\n"
    b"CSeq: 36210 INVITE\r\n"
    b"User-Agent: baresip v3.10.1 (x86_64/Linux)\r\n"
    b"Allow: INVITE,ACK,BYE,CANCEL,OPTIONS,NOTIFY,SUBSCRIBE,INFO,MESSAGE,UPDATE,REFER\r\n"
    b"Supported:\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 4\r\n"
    b"\r\n"
    b"v=0\r\n"
)


def test_baresip_invite_with_empty_supported_parses():
    """baresip's empty `Supported:` header is kept as an empty value, not an error."""
    msg = parse_message(BARESIP_INVITE)
    assert isinstance(msg, SipRequest)
    assert msg.method == "INVITE"
    assert "Supported" in msg.headers
    assert msg.headers.get_all("Supported") == []
    assert msg.headers.get("Supported") == ""
    assert msg.body == b"v=0\r"


def test_allow_list_is_split_at_commas():
    """A list header on one line yields one value per comma-separated element."""
    msg = parse_message(BARESIP_INVITE)
    assert msg.headers.get_all("Allow")[:3] == ["INVITE", "ACK", "BYE"]
    assert len(msg.headers.get_all("allow")) == 11


def test_compact_forms_and_bare_lf_and_folding():
    """Compact names map to canonical ones; LF-only lines and folded lines parse."""
    data = (
        b"\r\n\r\nOPTIONS sip:x@example.com SIP/2.0\n"
        b"v: SIP/2.0/UDP a.example.com;branch=z9hG4bK1\n"
        b"f: <sip:u@example.com>;tag=1\n"
        b"t: <sip:x@example.com>\n"
        b"i: abc\n"
        b"CSeq: 1\n"
        b"  OPTIONS\n"
        b"Subject: hello\n"
        b"\tworld\n"
        b"l: 0\n\n"
    )
    msg = parse_message(data)
    assert msg.headers.get("Call-ID") == "abc"
    assert msg.headers.get("cseq") == "1 OPTIONS"
    assert msg.headers.get("Subject") == "hello world"
    assert [n for n, _ in msg.headers.items()][:3] == ["Via", "From", "To"]


def test_missing_content_length_takes_rest_of_datagram():
    """On UDP a missing Content-Length means the body is the rest of the datagram."""
    data = invite().replace(b"Content-Length: ", b"X-Len: ")
    msg = parse_message(data)
    assert msg.body.startswith(b"v=0") and msg.body.endswith(b"a=sendrecv\r\n")


def test_content_length_shorter_truncates_body():
    """Bytes after Content-Length are discarded."""
    data = request("OPTIONS", body=b"hello", content_type="text/plain") + b"junk"
    assert parse_message(data).body == b"hello"


@pytest.mark.parametrize("mutate, fragment", [
    (lambda d: d.replace(b"Content-Length: 0", b"Content-Length: 99"), "larger than the body"),
    (lambda d: d.replace(b"Content-Length: 0", b"Content-Length: abc"), "non-numeric"),
    (lambda d: d.replace(b"CSeq: 1 OPTIONS", b"CSeq: 1 INVITE"), "does not match"),
    (lambda d: d.replace(b"CSeq: 1 OPTIONS", b"CSeq: one OPTIONS"), "bad CSeq"),
    (lambda d: d.replace(b"Call-ID", b"X-Call-ID"), "missing mandatory header Call-ID"),
    (lambda d: d.replace(b"Via:", b"X-Via:"), "missing mandatory header Via"),
    (lambda d: d.replace(b"OPTIONS sip:", b"OPTIONS  sip:"), "bad request line"),
    (lambda d: d.replace(b"SIP/2.0\r\n", b"SIP/7.0\r\n", 1), "unsupported SIP version"),
    (lambda d: d.replace(b"Max-Forwards: 70", b"Max-Forwards 70"), "without a name and colon"),
    (lambda d: d.replace(b"sip:12319@198", b"12319@198", 1), "bad Request-URI"),
    (lambda d: d + b"", None),
])
def test_invalid_messages_raise_specific_errors(mutate, fragment):
    """Each kind of broken message raises SipParseError naming the problem."""
    data = mutate(request("OPTIONS"))
    if fragment is None:
        assert isinstance(parse_message(data), SipRequest)
        return
    with pytest.raises(SipParseError, match=fragment):
        parse_message(data)


def test_version_error_carries_505():
    """An unsupported SIP version maps to status 505, syntax errors to 400."""
    with pytest.raises(SipParseError) as info:
        parse_message(request("OPTIONS").replace(b"SIP/2.0\r\n", b"SIP/3.0\r\n", 1))
    assert info.value.status == 505


def test_duplicate_single_header_rejected():
    """Two Call-ID headers make the message ambiguous."""
    data = request("OPTIONS", extra="Call-ID: other")
    with pytest.raises(SipParseError, match="more than once"):
        parse_message(data)


def test_empty_datagram_and_non_bytes():
    """Empty input is a parse error; str input is a programming error (TypeError)."""
    with pytest.raises(SipParseError):
        parse_message(b"\r\n\r\n")
    with pytest.raises(TypeError):
        parse_message("OPTIONS")  # type: ignore[arg-type]


def test_response_parses_with_status_and_reason():
    """A status line gives status and the full reason phrase."""
    resp = make_response(parse_message(request("OPTIONS")), 481)
    msg = parse_message(serialize(resp))
    assert isinstance(msg, SipResponse)
    assert (msg.status, msg.reason) == (481, "Call/Transaction Does Not Exist")


def test_serialize_rewrites_content_length():
    """serialize writes the real body length whatever the headers said."""
    msg = parse_message(request("MESSAGE", body=b"abc", content_type="text/plain"))
    msg.headers.set("Content-Length", "999")
    msg.body = b"abcdef"
    out = serialize(msg)
    assert b"Content-Length: 6\r\n\r\nabcdef" in out
    assert out.count(b"Content-Length") == 1


def test_serialize_round_trip_keeps_non_utf8_octets():
    """Header bytes that are not UTF-8 survive parse → serialize unchanged."""
    data = request("OPTIONS", extra="Subject: X").replace(b"Subject: X", b"Subject: \xff")
    assert b"Subject: \xff\r\n" in serialize(parse_message(data))


def test_headers_multimap_operations():
    """set/add/prepend/remove/copy keep order and ignore case."""
    h = Headers([("via", "SIP/2.0/UDP a"), ("To", "<sip:b@c>")])
    h.prepend("Via", "SIP/2.0/UDP first")
    h.add("v", "SIP/2.0/UDP last")
    assert h.get_all("VIA") == ["SIP/2.0/UDP first", "SIP/2.0/UDP a", "SIP/2.0/UDP last"]
    c = h.copy()
    h.set("Via", "SIP/2.0/UDP only")
    assert h.get_all("Via") == ["SIP/2.0/UDP only"]
    assert len(c.get_all("Via")) == 3
    h.remove("to")
    assert "To" not in h and "t" not in h
    assert h.get("To", "none") == "none"


def test_list_split_respects_quotes_and_angle_brackets():
    """Commas inside quotes or <> do not split list headers."""
    h = Headers([("Contact", '"Li, Si" <sip:a@b;x=1,2>;q=0.5, <sip:c@d>')])
    assert h.get_all("m") == ['"Li, Si" <sip:a@b;x=1,2>;q=0.5', "<sip:c@d>"]


@pytest.mark.parametrize("text", [
    "sip:alice@example.com",
    "sip:alice:secret@example.com:5070;transport=udp;lr?subject=hi",
    "sips:[2001:db8::1]:5061",
    "sip:192.0.2.1;maddr=239.1.1.1",
    "tel:+8610123;phone-context=example.com",
])
def test_uri_round_trips(text):
    """str(parse_uri(s)) gives s back for canonical URIs."""
    assert str(parse_uri(text)) == text


def test_uri_fields():
    """parse_uri splits user, password, host, port, params and headers."""
    u = parse_uri("sip:alice:pw@example.com:5070;transport=udp;lr?subject=x")
    assert (u.scheme, u.user, u.password, u.host, u.port) == ("sip", "alice", "pw", "example.com", 5070)
    assert u.params == {"transport": "udp", "lr": None}
    assert u.headers == {"subject": "x"}
    assert parse_uri("sip:[::1]").host == "::1"


@pytest.mark.parametrize("bad", ["alice@example.com", "sip:", "sip:a@b:99999", "sip:a b@c", "sip:a@b:x"])
def test_bad_uris_raise(bad):
    """URIs without scheme, host or with a bad port raise SipParseError."""
    with pytest.raises(SipParseError):
        parse_uri(bad)


def test_name_addr_forms():
    """Quoted, token and bare display forms; params after > and after addr-spec."""
    a = parse_name_addr('"Zhang \\"San\\"" <sip:138@example.com;user=phone>;tag=abc')
    assert a.display == 'Zhang "San"' and a.tag == "abc"
    assert a.uri.params == {"user": "phone"}
    b = parse_name_addr("Bob <sip:bob@example.com>")
    assert b.display == "Bob" and b.tag is None
    c = parse_name_addr("sip:carol@example.com;tag=9")
    assert c.display is None and c.tag == "9" and c.uri.params == {}
    assert str(parse_name_addr("<sip:x@y>;tag=1")) == "<sip:x@y>;tag=1"


def test_name_addr_errors():
    """Unterminated quotes or missing > raise SipParseError."""
    for bad in ['"Zhang <sip:a@b>', "<sip:a@b", "", '"Z" sip:a@b']:
        with pytest.raises(SipParseError):
            parse_name_addr(bad)


def test_via_with_white_space_and_params():
    """Via tolerates LWS around / : ; and reads branch, rport, received."""
    v = parse_via("SIP / 2.0 / UDP  host.example.com : 5070 ; branch = z9hG4bK1 ;rport;received=1.2.3.4")
    assert (v.transport, v.host, v.port) == ("UDP", "host.example.com", 5070)
    assert v.branch == "z9hG4bK1" and v.params["rport"] is None
    assert v.params["received"] == "1.2.3.4"
    assert str(parse_via("SIP/2.0/UDP [::1]:5060;branch=z9hG4bKx")) == "SIP/2.0/UDP [::1]:5060;branch=z9hG4bKx"
    with pytest.raises(SipParseError):
        parse_via("SIP/2.0 host")


def test_cseq():
    """CSeq parses to (number, method); garbage and overflow raise."""
    assert parse_cseq("314159 INVITE") == (314159, "INVITE")
    for bad in ["INVITE", "1 2 3", "-1 INVITE", f"{2**31} INVITE"]:
        with pytest.raises(SipParseError):
            parse_cseq(bad)


def test_make_response_copies_rfc3261_headers():
    """make_response copies all Vias, From, To (+tag), Call-ID, CSeq; RR on 2xx INVITE."""
    req = parse_message(invite(extra="Record-Route: <sip:p1;lr>, <sip:p2;lr>\r\n"
                                     "Via: SIP/2.0/UDP proxy;branch=z9hG4bKp"))
    resp = make_response(req, 200, to_tag="tt", body=b"v=0\r\n", headers=[("Contact", "<sip:me>")])
    assert resp.reason == "OK"
    assert resp.headers.get_all("Via") == req.headers.get_all("Via")
    assert resp.headers.get("To").endswith(";tag=tt")
    assert resp.headers.get("From") == req.headers.get("From")
    assert resp.headers.get_all("Record-Route") == ["<sip:p1;lr>", "<sip:p2;lr>"]
    assert resp.headers.get("Content-Type") == "application/sdp"
    trying = make_response(req, 100, to_tag="tt")
    assert ";tag=" not in trying.headers.get("To")
    assert "Record-Route" not in trying.headers
    tagged = make_response(parse_message(request("BYE", to_tag="old")), 200, to_tag="new")
    assert tagged.headers.get("To").endswith(";tag=old")
    with pytest.raises(ValueError):
        make_response(req, 99)
