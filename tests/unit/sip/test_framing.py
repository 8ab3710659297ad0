"""SIP stream framing by Content-Length (RFC 3261 §18.3): split, coalesced and hostile input."""

import pytest

from callcenter.sip.framing import PING, FramingError, StreamFramer

INVITE = (
    b"INVITE sip:12319@127.0.0.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/TCP 127.0.0.2:5070;branch=z9hG4bK1\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 10\r\n\r\n"
    b"v=0\r\no=- 1"
)
OPTIONS = (
    b"OPTIONS sip:12319@127.0.0.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/TCP 127.0.0.2:5070;branch=z9hG4bK2\r\n"
    b"l: 0\r\n\r\n"
)


def test_one_message_in_one_read():
    """A whole message fed at once comes out whole, body included."""
    assert StreamFramer().feed(INVITE) == [INVITE]


def test_byte_by_byte():
    """A message split into single bytes comes out once, when its last body byte arrives."""
    f = StreamFramer()
    out = []
    for i in range(len(INVITE)):
        out += f.feed(INVITE[i:i + 1])
        if i < len(INVITE) - 1:
            assert out == []
    assert out == [INVITE]
    assert f.buffered == 0


def test_coalesced_messages_with_keepalives():
    """Two messages in one read, with CRLF padding and a ping between them, are cut apart."""
    data = INVITE + b"\r\n" + PING + OPTIONS + INVITE[:10]
    f = StreamFramer()
    assert f.feed(data) == [INVITE, PING, OPTIONS]
    assert f.buffered == 10
    assert f.feed(INVITE[10:]) == [INVITE]


def test_ping_split_across_reads():
    """A double-CRLF ping split in two reads is still one ping, not two skipped CRLFs."""
    f = StreamFramer()
    assert f.feed(b"\r\n") == []
    assert f.feed(b"\r\n") == [PING]


def test_compact_content_length_and_bare_lf():
    """`l:` (compact form) frames the body; a head ended by a bare LF blank line too."""
    msg = b"MESSAGE sip:a@b SIP/2.0\nl: 3\n\nabc"
    assert StreamFramer().feed(msg + OPTIONS) == [msg, OPTIONS]


@pytest.mark.parametrize("head, reason", [
    (b"INVITE sip:a@b SIP/2.0\r\nVia: x\r\n\r\n", "no Content-Length"),
    (b"INVITE sip:a@b SIP/2.0\r\nContent-Length: 1\r\nl: 2\r\n\r\n", "conflicting"),
    (b"INVITE sip:a@b SIP/2.0\r\nContent-Length: -1\r\n\r\n", "bad Content-Length"),
    (b"INVITE sip:a@b SIP/2.0\r\nContent-Length: 9999999\r\n\r\n", "exceeds"),
])
def test_unframeable_heads(head, reason):
    """Heads that lose the message boundary raise FramingError naming why."""
    with pytest.raises(FramingError, match=reason):
        StreamFramer().feed(head)


def test_garbage_without_end_of_head_is_bounded():
    """Endless bytes without a blank line stop at the head limit instead of growing the buffer."""
    f = StreamFramer(max_head=1024)
    f.feed(b"x" * 1000)
    with pytest.raises(FramingError, match="no end of headers"):
        f.feed(b"y" * 100)


def test_binary_garbage_with_a_frame_is_handed_on():
    """Framing does not judge content: a framed non-SIP blob goes to the parser, which refuses it."""
    blob = b"\x00\xffGARBAGE\r\nContent-Length: 2\r\n\r\n\x01\x02"
    assert StreamFramer().feed(blob) == [blob]
