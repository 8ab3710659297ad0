"""Shared prompt clips: one copy per distinct audio, sessions send the same frames as before."""

import numpy as np

from callcenter.media import g711
from callcenter.media.clips import ClipStore
from callcenter.media.session import AudioSent, MediaSession


def _speech(seed: int, seconds: float = 1.0) -> bytes:
    return np.random.default_rng(seed).integers(-12000, 12000, int(8000 * seconds)).astype("<i2").tobytes()


def _session(store: ClipStore, codec: str = "PCMU") -> MediaSession:
    return MediaSession(codec=codec, payload_type=g711.PAYLOAD_TYPES[codec], dtmf_payload_type=101,
                        remote=("127.0.0.1", 4000), ssrc=1, initial_sequence=0, initial_timestamp=0,
                        record_sent=True, clips=store)


def test_equal_audio_in_distinct_objects_is_one_clip():
    """Two calls playing equal PCM built separately hold one shared copy."""
    store = ClipStore()
    a = _speech(1)
    b = bytes(bytearray(a))  # equal content, another object
    assert a is not b
    first, second = store.intern(a), store.intern(b)
    assert first is second
    assert first.encoded("PCMU") is second.encoded("PCMU")
    assert (store.hits, store.misses) == (1, 1)


def test_different_audio_with_the_same_probes_is_not_shared():
    """Clips that agree on length and sampled bytes but differ elsewhere stay apart."""
    store = ClipStore()
    a = bytearray(_speech(2))
    b = bytearray(a)
    b[100] ^= 0xFF  # away from the start, middle and end probes
    assert store.intern(bytes(a)) is not store.intern(bytes(b))
    assert store.intern(bytes(b)).pcm == bytes(b)


def test_padding_is_part_of_the_frames_not_of_the_identity():
    """A clip is padded to whole frames; audio that equals the padded form is another clip."""
    store = ClipStore()
    short = _speech(3)[:3330]
    clip = store.intern(short)
    assert len(clip.pcm) % 320 == 0 and clip.pcm.startswith(short)
    assert store.intern(bytes(short)) is clip
    assert store.intern(clip.pcm) is not clip


def test_store_is_bounded_and_forgets_the_least_recently_used():
    """Beyond max_bytes the oldest clips leave the table; a clip in use still plays."""
    store = ClipStore(max_bytes=3 * 16000)
    clips = [store.intern(_speech(10 + i)) for i in range(5)]
    assert store.nbytes <= 3 * 16000
    assert store.intern(_speech(14)) is clips[4]
    assert store.intern(_speech(10)) is not clips[0]
    assert clips[0].pcm == _speech(10)


def test_sessions_send_bit_exact_frames_from_a_shared_clip():
    """Frames and recorded PCM from an interned clip equal encoding the prompt directly."""
    store = ClipStore()
    prompt = _speech(4, 0.5)
    for codec in ("PCMU", "PCMA"):
        one, two = _session(store, codec), _session(store, codec)
        one.play(prompt, "p")
        two.play(bytes(bytearray(prompt)), "p")
        encoded = g711.encoder(codec)(prompt)
        for i in range(25):
            d1, e1 = one.tick(i * 0.02)
            d2, e2 = two.tick(i * 0.02)
            assert d1[12:] == d2[12:] == encoded[160 * i : 160 * (i + 1)]
            sent = [e.pcm for e in e1 if isinstance(e, AudioSent)]
            assert sent == [prompt[320 * i : 320 * (i + 1)]]
        assert sorted(type(e).__name__ for e in e1) == ["AudioSent", "PlaybackFinished"]


def test_codec_switch_re_encodes_queued_prompts_from_the_clip():
    """A re-INVITE to the other law sends the rest of the prompt in that law."""
    store = ClipStore()
    prompt = _speech(5, 0.2)
    s = _session(store, "PCMU")
    s.play(prompt, "p")
    s.tick(0.0)
    s.set_codec("PCMA", 8, 101)
    datagram, _ = s.tick(0.02)
    assert datagram[1] & 0x7F == 8
    assert datagram[12:] == g711.alaw_encode(prompt[320:640])


def test_bytearray_and_memoryview_audio_intern_like_bytes():
    """Callers may hand over any bytes-like PCM; it is shared with equal bytes audio."""
    store = ClipStore()
    a = _speech(6)
    clip = store.intern(bytearray(a))
    assert store.intern(memoryview(a)) is clip and store.intern(a) is clip
    s = _session(store)
    s.play(bytearray(a), "p")
    assert s.tick(0.0)[0][12:] == g711.ulaw_encode(a[:320])
