"""MediaSession: one packet per tick, prompts, bridge, DTMF out/in, latching and counters."""

from pathlib import Path

import numpy as np
import pytest

from callcenter.media import g711
from callcenter.media.dtmf import dtmf_tone, parse_telephone_event
from callcenter.media.events import (
    AudioReceived,
    AudioSent,
    DtmfReceived,
    PlaybackFinished,
    PlaybackStopped,
    RemoteLatched,
)
from callcenter.media.rtp import RtpPacket, parse_rtp
from callcenter.media.session import MediaSession

PEER = ("192.0.2.10", 40000)


def _session(**kw) -> MediaSession:
    args = dict(codec="PCMU", payload_type=0, dtmf_payload_type=101, remote=PEER, ssrc=0x1234,
                initial_sequence=100, initial_timestamp=5000)
    args.update(kw)
    return MediaSession(**args)


def _pcm(values) -> bytes:
    return np.asarray(values, dtype="<i2").tobytes()


def _ramp(samples: int) -> bytes:
    return _pcm((np.arange(samples) * 37 % 20000) - 10000)


def _run(session, ticks, start=0.0):
    out = []
    for i in range(ticks):
        out.append(session.tick(start + i * 0.02))
    return out


def test_fifty_packets_per_second_with_steady_clock():
    """One simulated second gives exactly 50 packets, seq +1 and timestamp +160 each, wrapping."""
    s = _session(initial_sequence=65530, initial_timestamp=0xFFFFFF00)
    packets = [parse_rtp(d) for d, _ in _run(s, 50)]
    assert len(packets) == 50
    assert [p.sequence for p in packets] == [(65530 + i) & 0xFFFF for i in range(50)]
    assert [p.timestamp for p in packets] == [(0xFFFFFF00 + 160 * i) & 0xFFFFFFFF for i in range(50)]
    assert {p.ssrc for p in packets} == {0x1234}


def test_silence_when_idle():
    """With nothing queued the session sends encoded silence, unmarked."""
    datagram, events = _session(codec="PCMA", payload_type=8).tick(0.0)
    p = parse_rtp(datagram)
    assert (p.payload_type, p.payload, p.marker, events) == (8, b"\xd5" * 160, False, [])


def test_no_packet_until_remote_known():
    """remote=None sends nothing and keeps the prompt for later."""
    s = _session(remote=None)
    s.play(_ramp(160), "hello")
    assert s.tick(0.0) == (None, [])
    s.set_remote(PEER)
    datagram, events = s.tick(0.02)
    assert parse_rtp(datagram).payload == g711.ulaw_encode(_ramp(160))
    assert events == [PlaybackFinished("hello")]


def test_prompt_frames_padding_marker_and_finish():
    """A 2.5-frame prompt goes out as 3 frames (last padded), marked first, finished once."""
    s = _session()
    prompt = _ramp(400)
    s.tick(0.0)
    s.play(prompt, "p1")
    results = _run(s, 4, 0.02)
    packets = [parse_rtp(d) for d, _ in results]
    sent = b"".join(p.payload for p in packets[:3])
    assert sent == g711.ulaw_encode(prompt + bytes(160))
    assert [p.marker for p in packets] == [True, False, False, False]
    assert [e for _, ev in results for e in ev] == [PlaybackFinished("p1")]
    assert results[2][1] == [PlaybackFinished("p1")]
    assert packets[3].payload == b"\xff" * 160


def test_plays_queue_in_order_and_stop_reports_dropped():
    """Plays go out in order; stop_playback drops the rest and reports each dropped play."""
    s = _session()
    s.play(_ramp(160), "a")
    s.play(_ramp(320), "b")
    s.play(_ramp(160), "c")
    first = s.tick(0.0)
    assert first[1] == [PlaybackFinished("a")]
    s.tick(0.02)
    assert s.playing == "b"
    assert s.stop_playback() == [PlaybackStopped("b"), PlaybackStopped("c")]
    assert parse_rtp(s.tick(0.04)[0]).payload == b"\xff" * 160


def test_odd_length_prompt_rejected():
    """A prompt with half a sample raises ValueError."""
    with pytest.raises(ValueError):
        _session().play(b"\x00\x01\x02", "bad")


def test_bridge_audio_sent_and_prompt_wins():
    """Bridged frames are sent when idle; while a prompt plays the prompt is sent instead."""
    s = _session()
    bridged = _pcm(np.full(160, 1000))
    s.feed_bridge(bridged)
    assert parse_rtp(s.tick(0.0)[0]).payload == g711.ulaw_encode(bridged)
    s.play(_ramp(160), "p")
    s.feed_bridge(bridged)
    assert parse_rtp(s.tick(0.02)[0]).payload == g711.ulaw_encode(_ramp(160))
    assert parse_rtp(s.tick(0.04)[0]).payload == b"\xff" * 160


def test_bridge_reassembles_30ms_packets():
    """Two 30 ms pieces of bridged audio come out as three exact 20 ms frames."""
    s = _session()
    audio = _ramp(480)
    s.feed_bridge(audio[:480])
    s.feed_bridge(audio[480:])
    sent = b"".join(parse_rtp(d).payload for d, _ in _run(s, 3))
    assert sent == g711.ulaw_encode(audio)


def test_bridge_backlog_is_bounded():
    """A burst of 20 bridged frames is trimmed to the newest 6 so delay stays bounded."""
    s = _session()
    for i in range(20):
        s.feed_bridge(_pcm(np.full(160, 100 * i)))
    payloads = [parse_rtp(d).payload for d, _ in _run(s, 7)]
    assert payloads[0] == g711.ulaw_encode(_pcm(np.full(160, 1400)))
    assert payloads[6] == b"\xff" * 160


def test_transcoded_bridge_between_laws():
    """Audio received on a PCMA leg, bridged into a PCMU leg, arrives as the same µ-law bytes."""
    caller = _session(codec="PCMA", payload_type=8)
    agent = _session(codec="PCMU", payload_type=0)
    speech = _ramp(160)
    alaw = g711.alaw_encode(speech)
    packet = RtpPacket(8, 1, 160, 99, alaw).serialize()
    (audio,) = caller.receive(packet, PEER, 0.0)
    agent.feed_bridge(audio.pcm)
    assert parse_rtp(agent.tick(0.0)[0]).payload == g711.transcode(alaw, "PCMA", "PCMU")


def test_send_dtmf_rfc4733_train_then_audio_resumes():
    """A digit goes out as 7 telephone-event packets with one timestamp; the audio clock keeps running."""
    s = _session(initial_timestamp=1000)
    s.send_dtmf("#")
    packets = [parse_rtp(d) for d, _ in _run(s, 8)]
    events = packets[:7]
    assert {p.payload_type for p in events} == {101}
    assert {p.timestamp for p in events} == {1000}
    assert [p.marker for p in events] == [True] + [False] * 6
    assert {parse_telephone_event(p.payload).event for p in events} == {11}
    assert packets[7].payload_type == 0 and packets[7].timestamp == 1000 + 7 * 160
    assert [p.sequence for p in packets] == list(range(100, 108))


def test_two_digits_get_distinct_timestamps_and_are_received_once_each():
    """'55' sent back to back arrives at a peer session as two presses."""
    a, b = _session(), _session(remote=None)
    a.send_dtmf("5")
    a.send_dtmf("5")
    got = []
    for i, (d, _) in enumerate(_run(a, 16)):
        got += [e for e in b.receive(d, PEER, i * 0.02) if isinstance(e, DtmfReceived)]
    assert got == [DtmfReceived("5", "rfc4733"), DtmfReceived("5", "rfc4733")]


def test_send_dtmf_inband_without_telephone_event():
    """With no telephone-event type the digit is sent as tones a peer's in-band detector hears."""
    a = _session(dtmf_payload_type=None, codec="PCMA", payload_type=8)
    b = _session(dtmf_payload_type=None, codec="PCMA", payload_type=8, inband_dtmf=True)
    a.send_dtmf("8")
    got = []
    for i, (d, _) in enumerate(_run(a, 12)):
        assert parse_rtp(d).payload_type == 8
        got += [e for e in b.receive(d, PEER, i * 0.02) if isinstance(e, DtmfReceived)]
    assert got == [DtmfReceived("8", "inband")]


def test_send_dtmf_rejects_non_digit():
    """send_dtmf('x') raises instead of queueing garbage."""
    from callcenter.media.dtmf import DtmfError

    with pytest.raises(DtmfError):
        _session().send_dtmf("x")


def test_hold_sends_nothing_and_keeps_clock():
    """While held no packets go out and prompts wait; after resume the timestamp reflects the gap."""
    s = _session(initial_timestamp=0)
    s.play(_ramp(160), "p")
    s.hold(True)
    assert _run(s, 5) == [(None, [])] * 5
    s.hold(False)
    d, events = s.tick(0.1)
    p = parse_rtp(d)
    assert (p.timestamp, p.sequence, p.marker, events) == (800, 100, True, [PlaybackFinished("p")])


def test_record_sent_reports_linear_audio():
    """record_sent emits the exact PCM sent: prompt, then silence during a DTMF event."""
    s = _session(record_sent=True)
    s.play(_ramp(160), "p")
    _, ev = s.tick(0.0)
    assert ev == [PlaybackFinished("p"), AudioSent(_ramp(160))]
    s.send_dtmf("1")
    _, ev = s.tick(0.02)
    assert ev == [AudioSent(bytes(320))]


def test_set_codec_reencodes_queued_prompt():
    """After a re-INVITE to PCMA, the rest of the prompt goes out A-law with the new type."""
    s = _session()
    s.play(_ramp(320), "p")
    s.tick(0.0)
    s.set_codec("PCMA", 8, 101)
    p = parse_rtp(s.tick(0.02)[0])
    assert (p.payload_type, p.payload) == (8, g711.alaw_encode(_ramp(320)[320:]))


def _audio_packet(seq, ts=None, pt=0, ssrc=77, payload=b"\xff" * 160) -> bytes:
    return RtpPacket(pt, seq & 0xFFFF, (ts if ts is not None else seq * 160) & 0xFFFFFFFF, ssrc, payload).serialize()


def test_receive_decodes_audio_and_tracks_time():
    """A µ-law packet becomes AudioReceived with decoded PCM; last_received_at follows now."""
    s = _session()
    speech = _ramp(160)
    ev = s.receive(_audio_packet(9, payload=g711.ulaw_encode(speech)), PEER, 12.5)
    assert ev == [AudioReceived(g711.ulaw_decode(g711.ulaw_encode(speech)), 9, 9 * 160)]
    assert s.last_received_at == 12.5


def test_receive_accepts_other_law_on_static_type():
    """A PCMU session decodes PCMA packets (PT 8) correctly too."""
    s = _session()
    ev = s.receive(_audio_packet(1, pt=8, payload=b"\xd5" * 160), PEER, 0.0)
    assert ev[0].pcm == g711.alaw_decode(b"\xd5" * 160)


def test_symmetric_rtp_latches_once_and_rejects_strays():
    """First valid packet from a NATed address re-points sending; later strays are dropped and counted."""
    s = _session()
    nat = ("203.0.113.5", 61000)
    ev = s.receive(_audio_packet(1), nat, 0.0)
    assert ev[0] == RemoteLatched(nat) and s.remote == nat
    assert s.receive(_audio_packet(2), ("198.51.100.1", 9), 0.02) == []
    assert s.packets_foreign == 1
    assert s.tick(0.04)[0] is not None and s.remote == nat
    s.set_remote(("192.0.2.99", 5000))
    assert s.receive(_audio_packet(3), ("192.0.2.99", 5000), 0.06)[0] == AudioReceived(
        g711.ulaw_decode(b"\xff" * 160), 3, 480)


def test_no_latch_event_when_source_matches_sdp():
    """A packet from the SDP address is delivered without RemoteLatched."""
    ev = _session().receive(_audio_packet(1), PEER, 0.0)
    assert [type(e) for e in ev] == [AudioReceived]


def test_bad_and_foreign_datagrams_are_counted_not_raised():
    """Garbage, RTCP, unknown payload types and bad DTMF payloads are counted and ignored."""
    s = _session()
    assert s.receive(b"\x00\x01garbage", PEER, 0.0) == []
    assert s.receive(b"", PEER, 0.0) == []
    assert s.receive(bytes.fromhex("81cb0001deadbeef"), PEER, 0.0) == []
    assert s.receive(_audio_packet(1, pt=13, payload=b"\x40"), PEER, 0.0) == []
    assert s.receive(_audio_packet(2, pt=101, payload=b"\x01"), PEER, 0.0) == []
    st = s.stats()
    assert (st.packets_malformed, st.packets_rtcp, st.packets_unknown_payload) == (3, 1, 1)
    assert s.remote == PEER


def test_loss_and_late_counting_drops_late_audio():
    """A gap counts as loss; the late packet filling it is counted late, undoes one loss, and is not played."""
    s = _session()
    for seq in (1, 2, 5):
        assert s.receive(_audio_packet(seq), PEER, 0.0)
    assert s.packets_lost == 2
    assert s.receive(_audio_packet(3), PEER, 0.0) == []
    assert s.receive(_audio_packet(5), PEER, 0.0) == []
    assert (s.packets_lost, s.packets_late, s.packets_received) == (1, 2, 5)


def test_sequence_wrap_and_new_ssrc_are_not_loss():
    """Crossing 65535→0 and a sender restart with a new SSRC count no loss."""
    s = _session()
    for seq in (65534, 65535, 0, 1):
        assert s.receive(_audio_packet(seq), PEER, 0.0)
    assert s.receive(_audio_packet(40000, ssrc=5), PEER, 0.0)
    assert s.packets_lost == 0 and s.packets_late == 0


def test_jitter_buffer_reorders_received_audio():
    """With jitter_frames=2, packets 1,3,2 come out as 1,2,3; a stall flushes the held rest on tick."""
    s = _session(jitter_frames=2)
    seqs = []
    for seq in (1, 3, 2, 5):
        seqs += [e.sequence for e in s.receive(_audio_packet(seq), PEER, 0.0) if isinstance(e, AudioReceived)]
    assert seqs == [1, 2, 3]
    _, events = s.tick(0.1)
    assert [e.sequence for e in events if isinstance(e, AudioReceived)] == [5]


def test_rfc4733_disables_inband_detection():
    """After an RFC 4733 digit the in-band detector is off, so a leaked tone is not a second digit."""
    s = _session(inband_dtmf=True)
    ev = RtpPacket(101, 1, 160, 77, bytes.fromhex("040a00a0"), True).serialize()
    assert s.receive(ev, PEER, 0.0) == [DtmfReceived("4", "rfc4733")]
    tone = dtmf_tone("4")
    got = []
    for i in range(0, len(tone), 320):
        pkt = _audio_packet(2 + i // 320, payload=g711.ulaw_encode(tone[i : i + 320]))
        got += [e for e in s.receive(pkt, PEER, 0.0) if isinstance(e, DtmfReceived)]
    assert got == []


def test_constructor_rejects_bad_codec():
    """An unsupported codec name raises UnknownCodecError at construction."""
    from callcenter.media.g711 import UnknownCodecError

    with pytest.raises(UnknownCodecError):
        _session(codec="opus")


def test_reinvite_with_same_sdp_address_keeps_latch():
    """set_remote with the unchanged SDP address keeps sending to the latched NAT source."""
    s = _session()
    nat = ("203.0.113.5", 61000)
    s.receive(_audio_packet(1), nat, 0.0)
    s.set_remote(PEER)
    assert s.remote == nat
    assert s.receive(_audio_packet(2), nat, 0.02)[0].sequence == 2


def test_new_source_followed_after_steady_stream():
    """A different source is followed only after 5 consecutive in-sequence packets; strays never are."""
    s = _session()
    s.receive(_audio_packet(1), PEER, 0.0)
    moved = ("198.51.100.7", 7000)
    for seq in range(100, 104):
        assert s.receive(_audio_packet(seq, ssrc=9), moved, 0.0) == []
    ev = s.receive(_audio_packet(104, ssrc=9), moved, 0.0)
    assert ev[0] == RemoteLatched(moved) and isinstance(ev[1], AudioReceived)
    assert s.remote == moved
    for seq in (1, 5, 9, 13, 17, 21):
        assert s.receive(_audio_packet(seq, ssrc=3), ("192.0.2.66", 1), 0.0) == []
    assert s.remote == moved


def test_receive_never_raises_on_random_or_mutated_datagrams():
    """3000 random and bit-flipped datagrams are all counted, none raises, none latches a bogus type."""
    rng = np.random.default_rng(5)
    s = _session(inband_dtmf=True)
    base = [_audio_packet(1), RtpPacket(101, 2, 160, 77, bytes.fromhex("050a00a0")).serialize(),
            bytes.fromhex("b208000100000002000000030000000a0000000bbede000110ff0000d5d5d5000003")]
    for i in range(3000):
        if i % 2:
            data = bytes(rng.integers(0, 256, int(rng.integers(0, 60)), dtype=np.uint8))
        else:
            data = bytearray(base[i % 3])
            data[int(rng.integers(0, len(data)))] ^= 1 << int(rng.integers(0, 8))
            data = bytes(data)
        s.receive(data, PEER, i * 0.02)
    st = s.stats()
    total = (st.packets_received + st.packets_malformed + st.packets_rtcp + st.packets_unknown_payload
             + st.packets_foreign)
    assert total >= 3000 and st.packets_malformed > 0


GOLDEN_SESSION = Path(__file__).parent / "session_golden.txt"


def test_scripted_session_matches_golden_datagrams():
    """A fixed script (silence, prompt, DTMF, bridge, hold) produces the saved datagrams byte for byte."""
    s = _session(codec="PCMA", payload_type=8, initial_sequence=65533, initial_timestamp=0xFFFFFE00)
    lines = []
    s.tick(0.0)
    s.play(_ramp(400), "p")
    s.send_dtmf("9")
    for i in range(12):
        if i == 10:
            s.feed_bridge(_ramp(160))
        if i == 11:
            s.hold(True)
        d, ev = s.tick(0.02 * (i + 1))
        lines.append(f"{d.hex() if d else '-'} {' '.join(type(e).__name__ for e in ev)}".rstrip())
    expected = GOLDEN_SESSION.read_text().splitlines()
    assert lines == expected


def test_per_packet_event_builders_equal_the_dataclasses():
    """audio_sent/audio_received give the same frozen, equal values as the constructors."""
    import dataclasses

    import pytest

    from callcenter.media.events import audio_received, audio_sent

    pcm = bytes(range(256)) + bytes(64)
    assert audio_sent(pcm) == AudioSent(pcm) and type(audio_sent(pcm)) is AudioSent
    assert audio_received(pcm, 7, 1120) == AudioReceived(pcm, 7, 1120)
    assert audio_received(pcm, 7, 1120) != AudioReceived(pcm, 8, 1120)
    with pytest.raises(dataclasses.FrozenInstanceError):
        audio_sent(pcm).pcm = b""
