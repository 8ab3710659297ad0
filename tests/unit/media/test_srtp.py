"""SDES keys in SDP (RFC 4568) and SRTP on a leg (libsrtp): offer/answer policy and round trips."""

import base64
import re

import pytest

from callcenter.media.rtp import RtpPacket
from callcenter.media.srtp import Refuse, SdesCalls, SrtpContext, SrtpSession
from callcenter.sip.sdp import build_offer, negotiate, sdes_offer, with_sdes, without_sdes, CryptoAttribute

KEY_A = bytes(range(30))
KEY_B = bytes(range(100, 130))


def savp_offer(key: bytes = KEY_A, suite: str = "AES_CM_128_HMAC_SHA1_80", proto: str = "RTP/SAVP") -> bytes:
    b64 = base64.b64encode(key).decode()
    return (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n"
        f"m=audio 40000 {proto} 0 8 101\r\n"
        f"a=crypto:3 AES_CM_128_HMAC_SHA1_32 inline:{b64}\r\n"
        f"a=crypto:4 {suite} inline:{b64}|2^31\r\n"
        "a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
    ).encode()


def counter_bytes():
    state = {"n": 0}

    def random_bytes(n: int) -> bytes:
        state["n"] += 1
        return bytes([state["n"]]) * n
    return random_bytes


def rtp(seq: int) -> bytes:
    return RtpPacket(payload_type=8, sequence=seq, timestamp=seq * 160, ssrc=0x1234,
                     payload=b"\xd5" * 160).serialize()


def test_sdes_offer_picks_the_80_bit_suite_with_a_30_byte_key():
    """Of two crypto lines only AES_CM_128_HMAC_SHA1_80 with a 30-byte inline key is usable."""
    proto, usable = sdes_offer(savp_offer())
    assert proto == "RTP/SAVP"
    assert usable == [CryptoAttribute(4, "AES_CM_128_HMAC_SHA1_80", KEY_A)]
    assert sdes_offer(savp_offer(key=b"short"))[1] == []


def test_without_and_with_sdes_rewrite_only_the_audio_stream():
    """Stripping makes plain RTP/AVP the negotiator accepts; adding puts RTP/SAVP and one crypto line back."""
    plain = without_sdes(savp_offer())
    assert b"a=crypto" not in plain and b"m=audio 40000 RTP/AVP 0 8 101" in plain
    answer = negotiate(plain, local_host="127.0.0.1", local_port=20000, session_id=1).answer
    secured = with_sdes(answer, CryptoAttribute(4, "AES_CM_128_HMAC_SHA1_80", KEY_B))
    assert re.search(rb"^m=audio 20000 RTP/SAVP 0 101\r$", secured, re.M)
    assert secured.count(b"a=crypto:") == 1
    assert b"a=crypto:4 AES_CM_128_HMAC_SHA1_80 inline:" + base64.b64encode(KEY_B) in secured


def test_srtp_round_trip_and_tampering():
    """What one side protects the other unprotects to the same bytes; a flipped bit or a replay is refused."""
    ours, theirs = SrtpContext(KEY_A, KEY_B), SrtpContext(KEY_B, KEY_A)
    packet = rtp(1)
    protected = ours.protect(packet)
    assert protected != packet and len(protected) == len(packet) + 10  # 80-bit tag
    assert theirs.unprotect(protected) == packet
    assert theirs.unprotect(protected) is None  # replay
    bad = bytearray(ours.protect(rtp(2)))
    bad[20] ^= 1
    assert theirs.unprotect(bytes(bad)) is None
    assert theirs.unprotect(rtp(3)) is None  # plain RTP is not accepted on an SRTP leg
    assert theirs.rejected == 3


class FakeSession:
    def __init__(self):
        self.received = []
        self.remote = None

    def receive(self, data, addr, now):
        self.received.append(data)
        return ["event"]

    def tick(self, now):
        return rtp(7), []


def test_srtp_session_wraps_receive_and_tick_and_delegates_the_rest():
    """The wrapper decrypts before the session, encrypts after it, and passes other attributes through."""
    inner = FakeSession()
    wrapped = SrtpSession(inner, SrtpContext(KEY_A, KEY_B))
    peer = SrtpContext(KEY_B, KEY_A)
    assert wrapped.receive(peer.protect(rtp(1)), ("127.0.0.2", 40000), 0.0) == ["event"]
    assert inner.received == [rtp(1)]
    assert wrapped.receive(rtp(2), ("127.0.0.2", 40000), 0.0) == [] and len(inner.received) == 1
    datagram, _ = wrapped.tick(0.0)
    assert peer.unprotect(datagram) == rtp(7)
    wrapped.remote = ("127.0.0.2", 40002)
    assert inner.remote == ("127.0.0.2", 40002)


@pytest.mark.parametrize("mode, secure, offer, expected", [
    ("optional", True, "savp", "srtp"),
    ("optional", True, "avp", "plain"),
    ("optional", False, "savp", 488),   # keys in the clear: refused
    ("mandatory", True, "avp", 488),
    ("mandatory", False, "avp", "plain"),  # the policy is about TLS legs
    ("off", True, "savp", 488),
])
def test_offer_policy(mode, secure, offer, expected):
    """Which offers get SRTP, plain RTP or 488 under each mode, on TLS and on other legs."""
    calls = SdesCalls(mode, counter_bytes())
    sdp = savp_offer() if offer == "savp" else without_sdes(savp_offer())
    seen = calls.offer_in("c1", sdp, secure=secure)
    if expected == 488:
        assert isinstance(seen, Refuse) and seen.status == 488
        return
    assert b"RTP/AVP" in seen and b"crypto" not in seen
    answer = negotiate(seen, local_host="127.0.0.1", local_port=20000, session_id=1).answer
    sent, context = calls.answer_out("c1", answer)
    if expected == "plain":
        assert context is None and sent == answer
    else:
        assert context is not None and b"RTP/SAVP" in sent
        assert sdes_offer(sent)[1][0].tag == 4  # the tag of the offer line we took


def test_both_directions_of_a_placed_call():
    """Our SRTP offer and the phone's answer give contexts that talk to each other."""
    hotline = SdesCalls("optional", counter_bytes())
    phone = SdesCalls("optional", lambda n: KEY_B)
    offer, local = hotline.offer_out(build_offer(local_host="127.0.0.1", local_port=20002, session_id=1),
                                     secure=True)
    hotline.placed("out1", local)
    seen = phone.offer_in("in1", offer, secure=True)
    answer, phone_ctx = phone.answer_out(
        "in1", negotiate(seen, local_host="127.0.0.3", local_port=30000, session_id=2).answer)
    plain_answer, our_ctx = hotline.answer_in("out1", answer)
    assert b"crypto" not in plain_answer
    assert phone_ctx.unprotect(our_ctx.protect(rtp(5))) == rtp(5)
    assert our_ctx.unprotect(phone_ctx.protect(rtp(6))) == rtp(6)
    assert isinstance(hotline.answer_in("out1", without_sdes(answer)), Refuse)


def test_reoffers_keep_or_renew_the_keys():
    """A re-INVITE with the same key keeps the leg's context; a new key makes a new one; a plain re-offer is refused."""
    calls = SdesCalls("optional", counter_bytes())
    answer = negotiate(calls.offer_in("c1", savp_offer(), secure=True), local_host="127.0.0.1",
                       local_port=20000, session_id=1).answer
    first_sent, first = calls.answer_out("c1", answer)
    again_sent, again = calls.answer_out("c1", negotiate(
        calls.offer_in("c1", savp_offer(), secure=True), local_host="127.0.0.1", local_port=20000,
        session_id=1, version=1).answer)
    assert again is first and sdes_offer(again_sent)[1] == sdes_offer(first_sent)[1]  # our key unchanged
    calls.offer_in("c1", savp_offer(key=KEY_B), secure=True)
    _, renewed = calls.answer_out("c1", answer)
    assert renewed is not first and renewed.remote_key == KEY_B and renewed.local_key == first.local_key
    assert isinstance(calls.offer_in("c1", without_sdes(savp_offer()), secure=True), Refuse)
    calls.forget("c1")
    assert "c1" not in calls
