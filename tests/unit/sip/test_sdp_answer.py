"""Reading the far end's answer to our own offer (agent legs, outbound calls)."""

import pytest

from callcenter.sip.sdp import NoCommonCodec, read_answer

ANSWER = (
    b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 40000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
)


def test_answer_gives_codec_dtmf_and_remote():
    """PCMU chosen by the answerer, its DTMF type and address are read back."""
    n = read_answer(ANSWER)
    assert (n.codec, n.payload_type, n.dtmf_payload_type, n.remote, n.direction) == (
        "PCMU", 0, 101, ("127.0.0.1", 40000), "sendrecv"
    )


def test_answer_without_a_codec_we_offered_is_refused():
    """An answer with only G.729 cannot be used."""
    with pytest.raises(NoCommonCodec):
        read_answer(ANSWER.replace(b"RTP/AVP 0 101", b"RTP/AVP 18"))
