"""Size limits of the user agent: oversized datagrams are refused whole."""

from callcenter.sip.ua import MAX_MESSAGE_BYTES, UserAgent

INVITE = (
    "INVITE sip:12319@127.0.0.1 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKbig1\r\n"
    "From: <sip:13800000000@127.0.0.1>;tag=a\r\nTo: <sip:12319@127.0.0.1>\r\n"
    "Call-ID: big@127.0.0.1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
    "X-Huge: {pad}\r\nContent-Length: 0\r\n\r\n"
)


def test_oversized_invite_gets_513_and_no_call():
    """An INVITE above the size limit is answered 513 Message Too Large and offers no call."""
    ua = UserAgent(local_host="127.0.0.1", local_port=5060)
    ua.receive_datagram(INVITE.format(pad="a" * (MAX_MESSAGE_BYTES + 10)).encode(), ("127.0.0.1", 5070), 0.0)
    [(data, addr)] = ua.datagrams_to_send()
    assert data.startswith(b"SIP/2.0 513 ") and addr == ("127.0.0.1", 5070)
    assert not [e for e in ua.events() if type(e).__name__ == "CallOffered"]


def test_large_but_allowed_invite_is_offered():
    """An INVITE just under the limit is a normal call."""
    ua = UserAgent(local_host="127.0.0.1", local_port=5060)
    ua.receive_datagram(INVITE.format(pad="a" * 8000).encode(), ("127.0.0.1", 5070), 0.0)
    assert [e for e in ua.events() if type(e).__name__ == "CallOffered"]
