"""RFC 4733 telephone-events in and out, and in-band Goertzel detection."""

from pathlib import Path

import numpy as np
import pytest

from callcenter.media.dtmf import (
    DTMF_FREQUENCIES,
    DtmfError,
    DtmfReceiver,
    GoertzelDetector,
    TelephoneEvent,
    dtmf_packet_payloads,
    dtmf_tone,
    parse_telephone_event,
)
from callcenter.media.rtp import RtpPacket
from callcenter.media.wav import read_wav, to_8k_mono

SPEECH = Path(__file__).resolve().parents[4] / "shared" / "speech"


def _pkt(payload: bytes, ts: int, seq: int = 0, ssrc: int = 7) -> RtpPacket:
    return RtpPacket(101, seq, ts, ssrc, payload)


def test_telephone_event_parse_and_serialize():
    """'#' with end bit, volume 10 and duration 800 matches its 4 wire bytes."""
    ev = TelephoneEvent(event=11, end=True, volume=10, duration=800)
    assert ev.serialize() == bytes.fromhex("0b8a0320")
    assert parse_telephone_event(bytes.fromhex("0b8a0320")) == ev
    assert ev.digit == "#"


def test_short_event_payload_raises():
    """A telephone-event payload under 4 bytes raises DtmfError."""
    with pytest.raises(DtmfError):
        parse_telephone_event(b"\x01\x02")


def test_packet_train_for_one_digit():
    """100 ms digit: 4 growing-duration packets (first marked) then 3 identical end packets."""
    train = dtmf_packet_payloads("5")
    events = [parse_telephone_event(p) for p, _ in train]
    assert [m for _, m in train] == [True, False, False, False, False, False, False]
    assert [e.duration for e in events] == [160, 320, 480, 640, 800, 800, 800]
    assert [e.end for e in events] == [False] * 4 + [True] * 3
    assert {e.event for e in events} == {5} and {e.volume for e in events} == {10}


def test_short_digit_train_marks_first_end_packet():
    """A 20 ms digit is end packets only, and the first of them carries the marker."""
    train = dtmf_packet_payloads("A", duration_ms=20, end_repeats=2)
    assert [m for _, m in train] == [True, False]
    assert parse_telephone_event(train[0][0]) == TelephoneEvent(12, True, 10, 160)


def test_packet_train_rejects_bad_digit():
    """Letters outside the keypad raise DtmfError."""
    with pytest.raises(DtmfError):
        dtmf_packet_payloads("X")


def test_receiver_reports_each_event_once_on_first_packet():
    """A digit is reported on its first packet; later and repeated end packets are silent."""
    rx = DtmfReceiver()
    got = [rx.feed(_pkt(p, ts=1000, seq=i), now=i * 0.02) for i, (p, _) in enumerate(dtmf_packet_payloads("7"))]
    assert got == ["7", None, None, None, None, None, None]


def test_receiver_suppresses_retransmissions_and_counts_new_press():
    """A resent packet of the same event is dropped; same digit with a new timestamp is a new press."""
    rx = DtmfReceiver()
    end = TelephoneEvent(1, True, 10, 800).serialize()
    assert rx.feed(_pkt(end, ts=5000), 0.0) == "1"
    assert rx.feed(_pkt(end, ts=5000), 0.5) is None
    assert rx.feed(_pkt(end, ts=6600), 0.6) == "1"


def test_receiver_ignores_non_digit_events():
    """Event 16 (flash) produces no digit."""
    rx = DtmfReceiver()
    assert rx.feed(_pkt(TelephoneEvent(16, False, 10, 160).serialize(), ts=1), 0.0) is None


def test_receiver_forgets_old_events_but_stays_correct():
    """After many presses the memory is pruned, and a fresh event still reports."""
    rx = DtmfReceiver(memory_s=1.0)
    for i in range(100):
        assert rx.feed(_pkt(TelephoneEvent(i % 10, True, 10, 800).serialize(), ts=i * 2000), i * 0.5) == str(i % 10)
    assert len(rx._seen) <= 40


def _frames(pcm: bytes, size: int = 320):
    return [pcm[i : i + size] for i in range(0, len(pcm), size)]


def _detect(pcm: bytes) -> list[str]:
    det = GoertzelDetector()
    return [d for f in _frames(pcm) if (d := det.feed(f))]


@pytest.mark.parametrize("digit", list(DTMF_FREQUENCIES))
def test_goertzel_detects_every_digit_once(digit):
    """A 100 ms tone of each of the 16 keys is reported exactly once."""
    assert _detect(dtmf_tone(digit)) == [digit]


def test_goertzel_sequence_with_noise_and_twist():
    """Digits at -20 dBFS with 4 dB twist in white noise at 20 dB SNR are all found, in order."""
    rng = np.random.default_rng(1)
    out = []
    for digit in "0123456789*#":
        low, high = DTMF_FREQUENCIES[digit]
        t = np.arange(800) / 8000
        amp = 32767 * 10 ** (-20 / 20)
        tone = amp * (np.sin(2 * np.pi * low * t) + 10 ** (-4 / 20) * np.sin(2 * np.pi * high * t))
        out.append(np.concatenate([tone, np.zeros(480)]))
    x = np.concatenate(out)
    noise = rng.normal(0, np.sqrt(np.mean(x**2)) / 10, len(x))
    pcm = np.clip(x + noise, -32768, 32767).astype("<i2").tobytes()
    assert "".join(_detect(pcm)) == "0123456789*#"


def test_goertzel_holds_one_press_across_frame_misalignment():
    """A tone starting mid-frame is still reported once, not twice."""
    pcm = bytes(100) + dtmf_tone("9", duration_ms=200) + bytes(220)
    assert _detect(pcm) == ["9"]


def test_goertzel_needs_two_frames():
    """A 20 ms blip of tone is not a digit."""
    assert _detect(bytes(320) + dtmf_tone("5", duration_ms=20, pause_ms=40)) == []


def test_goertzel_ignores_quiet_tone_and_single_tone():
    """A -50 dBFS digit and a lone 1 kHz tone give nothing."""
    t = np.arange(1600) / 8000
    assert _detect(dtmf_tone("1", level_dbfs=-50)) == []
    assert _detect((8000 * np.sin(2 * np.pi * 1000 * t)).astype("<i2").tobytes()) == []


def test_goertzel_accepts_odd_sized_chunks():
    """Feeding 30 ms pieces still detects the digit (blocks are re-cut internally)."""
    det = GoertzelDetector()
    got = [d for f in _frames(dtmf_tone("3", duration_ms=120), 480) if (d := det.feed(f))]
    assert got == ["3"]


def test_goertzel_no_false_digits_on_noise():
    """Ten seconds of white and speech-shaped noise produce no digit."""
    rng = np.random.default_rng(2)
    white = rng.normal(0, 3000, 80000)
    shaped = np.convolve(rng.normal(0, 3000, 80000), np.ones(6) / 6, mode="same")
    assert _detect(np.concatenate([white, shaped]).astype("<i2").tobytes()) == []


@pytest.mark.skipif(not SPEECH.exists(), reason="shared speech set not present")
def test_goertzel_no_false_digits_on_real_speech():
    """None of the shared Mandarin speech files (8 kHz, G.711 round trip) triggers a digit."""
    from callcenter.media import g711

    files = sorted(SPEECH.glob("*.wav"))
    assert files
    for path in files:
        ch, rate, pcm = read_wav(path)
        speech = g711.alaw_decode(g711.alaw_encode(to_8k_mono(pcm, ch, rate)))
        assert _detect(speech) == [], path.name
