"""Live transcripts during calls: vosk streaming recognition in worker processes, fed from
the event loop without ever blocking it.

``LiveTranscriber.open(call_id, channel)`` gives a `LiveStream`; call control hands it each
decoded 20 ms frame (``feed(pcm)``, 16-bit mono at the stream's rate) and ``close()``s it
at hang-up. Partial and final results come back as ``on_event(call_id, channel, event)``
on the event loop (``event`` is a `PartialTranscript` or `FinalTranscript`; a coroutine
returned by ``on_event`` is scheduled).

How the loop stays free:
- ``feed`` only appends to a buffer; every ``batch_ms`` of audio becomes one message put on
  a `multiprocessing.Queue`, whose feeder thread pickles and writes it to the pipe.
- Each worker acknowledges the audio it has recognised; a stream with more than
  ``max_backlog_s`` unacknowledged audio drops new batches instead of queueing them (the
  worker lags: live text is worth less than the RTP tick). Drops are counted per stream
  and in `stats()`; a drop shifts that stream's later result times earlier.
- Results come back over a pipe read by one thread, which hands them to the loop with
  ``call_soon_threadsafe``; several partials of one stream in one batch collapse to the last.

One worker process holds one model and serves many calls (streams are spread over
``workers`` by count). A worker that dies is logged; its streams stop getting results and
their audio is dropped and counted.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import multiprocessing
import os
import queue as queue_mod
import threading
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait as wait_connections
from typing import Any, Callable

from callcenter.stt.port import FinalTranscript, PartialTranscript, SttError, SttEvent

log = logging.getLogger(__name__)

__all__ = ["LiveTranscriber", "LiveStream", "start_live_transcriber", "load_vosk_model"]

OnEvent = Callable[[str, int, SttEvent], Any]


def load_vosk_model(spec: str, language: str):
    """Default model factory (top-level, so a spawned worker can import it)."""
    from callcenter.stt.vosk_stt import VoskModel

    return VoskModel(spec, language=language)


# ---------------------------------------------------------------- worker process side
def _worker_main(inbox, outbox: Connection, factory, spec: str, language: str, nice: int,
                 cpus: frozenset[int] | None = None) -> None:
    from callcenter.cpus import settle_worker

    # Off the media core (callcenter/cpus.py) and niced; not SCHED_IDLE: live text is awaited.
    settle_worker(cpus, nice=nice)
    try:
        model = factory(spec, language)
    except Exception as exc:  # report any load failure to the parent instead of dying silently
        outbox.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    outbox.send(("ready",))
    streams: dict[int, Any] = {}
    stop = False
    while not stop:
        items = [inbox.get()]
        while True:  # take everything already here: one answer per round, not per message
            try:
                items.append(inbox.get_nowait())
            except queue_mod.Empty:
                break
        events: list[tuple] = []
        acked: dict[int, int] = {}
        closed: list[tuple[int, str | None]] = []
        for item in items:
            if item is None:
                stop = True
                break
            kind, key = item[0], item[1]
            try:
                if kind == "open":
                    streams[key] = model.stream(item[2])
                elif kind == "audio":
                    acked[key] = acked.get(key, 0) + len(item[2])
                    stream = streams.get(key)
                    if stream is not None:
                        events += [(key, e) for e in stream.feed(item[2])]
                elif kind == "close":
                    stream = streams.pop(key, None)
                    if stream is not None:
                        events += [(key, e) for e in stream.finish()]
                    closed.append((key, None))
            except Exception as exc:  # one broken stream must not end the others
                streams.pop(key, None)
                closed.append((key, f"{type(exc).__name__}: {exc}"))
        outbox.send(("results", _collapse_partials(events), acked, closed))
    outbox.close()


def _collapse_partials(events: list[tuple[int, SttEvent]]) -> list[tuple]:
    """Keep a partial only if it is the stream's last event in this round."""
    last = {key: i for i, (key, _e) in enumerate(events)}
    out = []
    for i, (key, e) in enumerate(events):
        if isinstance(e, PartialTranscript):
            if last[key] == i:
                out.append((key, "partial", e.text, 0.0, 0.0))
        else:
            out.append((key, "final", e.text, e.start_s, e.end_s))
    return out


# ---------------------------------------------------------------- parent side
@dataclass
class _Worker:
    index: int
    process: Any
    inbox: Any
    results: Connection
    ready: asyncio.Future
    alive: bool = True
    streams: set[int] = field(default_factory=set)


class LiveStream:
    """One channel of one call. ``feed`` and ``close`` never block and never raise on a
    lagging or dead worker: the audio is dropped and counted in ``dropped_bytes``."""

    def __init__(self, owner: "LiveTranscriber", key: int, worker: _Worker, call_id: str,
                 channel: int, sample_rate: int) -> None:
        self._owner = owner
        self._key = key
        self._worker = worker
        self.call_id = call_id
        self.channel = channel
        self.sample_rate = sample_rate
        self._buf = bytearray()
        self._batch_bytes = max(2, int(sample_rate * owner.batch_ms / 1000) * 2)
        self._max_backlog = int(sample_rate * owner.max_backlog_s) * 2
        self.backlog = 0  # bytes sent, not yet recognised
        self.sent_bytes = 0
        self.dropped_bytes = 0
        self.closed = False
        # Resolves when the worker has flushed this stream after close() (or it died).
        self.finished: asyncio.Future = owner._loop.create_future()

    @property
    def dropped_s(self) -> float:
        return self.dropped_bytes / 2 / self.sample_rate

    def feed(self, pcm: bytes) -> None:
        if self.closed:
            return
        self._buf += pcm
        if len(self._buf) >= self._batch_bytes:
            self._flush()

    def close(self) -> None:
        """Send what is buffered and ask for the final result of the utterance in progress."""
        if self.closed:
            return
        self._flush()
        self.closed = True
        self._owner._send_control(self._worker, ("close", self._key), self)

    def _flush(self) -> None:
        whole = len(self._buf) - len(self._buf) % 2
        if not whole:
            return
        data = bytes(self._buf[:whole])
        del self._buf[:whole]
        self._owner._send_audio(self, data)


class LiveTranscriber:
    """Live vosk recognition for many calls in ``workers`` processes; see the module doc.

    ``await start()`` launches the workers and waits until each has loaded the model
    (raises `SttError` if one cannot); ``await stop()`` ends them.
    """

    def __init__(self, model: str | os.PathLike, on_event: OnEvent, *, language: str = "zh",
                 workers: int = 1, batch_ms: int = 200, max_backlog_s: float = 3.0, nice: int = 5,
                 model_factory: Callable[[str, str], Any] = load_vosk_model,
                 start_timeout_s: float = 120.0, cpus: frozenset[int] | None = None,
                 mp_context: Any = None) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        if batch_ms < 20:
            raise ValueError(f"batch_ms {batch_ms} is below one 20 ms frame")
        self.model = os.fspath(model)
        self.on_event = on_event
        self.language = language
        self.workers_wanted = workers
        self.batch_ms = batch_ms
        self.max_backlog_s = max_backlog_s
        self.nice = nice
        self.model_factory = model_factory
        self.start_timeout_s = start_timeout_s
        self.cpus = cpus
        # spawn: a forked child would inherit the reactor, sockets and threads of the parent.
        self._ctx = mp_context or multiprocessing.get_context("spawn")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._workers: list[_Worker] = []
        self._streams: dict[int, LiveStream] = {}
        self._next_key = 0
        self._reader: threading.Thread | None = None
        self._stopping = False
        self.sent_bytes = 0
        self.dropped_bytes = 0
        self.dropped_batches = 0
        self.events = 0

    # -- lifecycle
    async def start(self) -> "LiveTranscriber":
        self._loop = asyncio.get_running_loop()
        for index in range(self.workers_wanted):
            inbox = self._ctx.Queue()
            receiver, sender = self._ctx.Pipe(duplex=False)
            process = self._ctx.Process(
                target=_worker_main, name=f"live-stt-{index}", daemon=True,
                args=(inbox, sender, self.model_factory, self.model, self.language, self.nice,
                      self.cpus))
            process.start()
            sender.close()  # the child holds the write end; EOF then means it is gone
            self._workers.append(_Worker(index, process, inbox, receiver, self._loop.create_future()))
        self._reader = threading.Thread(target=self._read_results, name="live-stt-results", daemon=True)
        self._reader.start()
        try:
            await asyncio.wait_for(asyncio.gather(*(w.ready for w in self._workers)), self.start_timeout_s)
        except BaseException as exc:
            await self.stop()
            if isinstance(exc, asyncio.TimeoutError):
                raise SttError(f"live transcription workers did not load {self.model} "
                               f"within {self.start_timeout_s:.0f} s") from None
            raise
        return self

    async def stop(self) -> None:
        """End every stream and worker; safe to call twice."""
        if self._stopping:
            return
        self._stopping = True
        for w in self._workers:
            if w.alive:
                try:
                    w.inbox.put(None)
                except (ValueError, OSError):
                    pass
        await asyncio.get_running_loop().run_in_executor(None, self._join_workers)
        for stream in list(self._streams.values()):
            _settle(stream.finished)
        self._streams.clear()

    def _join_workers(self) -> None:
        for w in self._workers:
            w.process.join(timeout=10)
            if w.process.is_alive():
                w.process.terminate()
                w.process.join(timeout=5)
        if self._reader is not None:
            self._reader.join(timeout=10)
        for w in self._workers:
            w.inbox.close()
            w.inbox.cancel_join_thread()  # a dead worker never reads what is left
            w.results.close()

    # -- streams
    def open(self, call_id: str, channel: int = 0, *, sample_rate: int = 8000) -> LiveStream:
        """A stream for one channel of ``call_id`` (0 = caller, 1 = agent)."""
        if self._loop is None or self._stopping:
            raise RuntimeError("LiveTranscriber is not running (call start() first)")
        if sample_rate <= 0:
            raise ValueError(f"sample rate {sample_rate} must be positive")
        worker = min((w for w in self._workers if w.alive), key=lambda w: len(w.streams),
                     default=self._workers[0])
        key = self._next_key
        self._next_key += 1
        stream = LiveStream(self, key, worker, call_id, channel, sample_rate)
        self._streams[key] = stream
        worker.streams.add(key)
        self._send_control(worker, ("open", key, sample_rate), stream)
        return stream

    def stats(self) -> dict[str, Any]:
        return {
            "workers_alive": sum(w.alive for w in self._workers),
            "streams": len(self._streams),
            "sent_bytes": self.sent_bytes,
            "dropped_bytes": self.dropped_bytes,
            "dropped_batches": self.dropped_batches,
            "events": self.events,
        }

    def _send_audio(self, stream: LiveStream, data: bytes) -> None:
        worker = stream._worker
        if not worker.alive or self._stopping or stream.backlog + len(data) > stream._max_backlog:
            stream.dropped_bytes += len(data)
            self.dropped_bytes += len(data)
            self.dropped_batches += 1
            return
        stream.backlog += len(data)
        stream.sent_bytes += len(data)
        self.sent_bytes += len(data)
        worker.inbox.put(("audio", stream._key, data))

    def _send_control(self, worker: _Worker, message: tuple, stream: LiveStream) -> None:
        if not worker.alive or self._stopping:
            if message[0] == "close":
                self._finish_stream(stream._key)
            return
        worker.inbox.put(message)

    # -- results (reader thread → loop)
    def _read_results(self) -> None:
        pending = {w.results: w for w in self._workers}
        sentinels = {w.process.sentinel: w for w in self._workers}
        while pending:
            for ready in wait_connections(list(pending) + list(sentinels)):
                if ready in sentinels:
                    # Drain what the worker wrote before it exited, then report it gone.
                    worker = sentinels.pop(ready)
                    conn = worker.results
                    while conn in pending and conn.poll():
                        if not self._receive(conn, worker):
                            break
                    if pending.pop(conn, None) is not None:
                        self._to_loop(self._worker_gone, worker)
                elif ready in pending:
                    worker = pending[ready]
                    if not self._receive(ready, worker):
                        pending.pop(ready, None)
                        sentinels.pop(worker.process.sentinel, None)
                        self._to_loop(self._worker_gone, worker)

    def _receive(self, conn: Connection, worker: _Worker) -> bool:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return False
        self._to_loop(self._on_message, worker, message)
        return True

    def _to_loop(self, fn, *args) -> None:
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            pass

    def _on_message(self, worker: _Worker, message: tuple) -> None:
        kind = message[0]
        if kind == "ready":
            _settle(worker.ready, result=True)
        elif kind == "error":
            _settle(worker.ready, exc=SttError(f"live transcription cannot load {self.model}: {message[1]}"))
        elif kind == "results":
            _, events, acked, closed = message
            for key, count in acked.items():
                stream = self._streams.get(key)
                if stream is not None:
                    stream.backlog = max(0, stream.backlog - count)
            for key, what, text, start_s, end_s in events:
                stream = self._streams.get(key)
                if stream is None:
                    continue
                event = PartialTranscript(text) if what == "partial" else FinalTranscript(text, start_s, end_s)
                self._deliver(stream, event)
            for key, error in closed:
                if error is not None:
                    log.warning("live transcript of %s stopped: %s", self._describe(key), error)
                self._finish_stream(key)

    def _deliver(self, stream: LiveStream, event: SttEvent) -> None:
        self.events += 1
        try:
            result = self.on_event(stream.call_id, stream.channel, event)
            if inspect.isawaitable(result):
                asyncio.ensure_future(result)
        except Exception:  # a broken listener must not stop other calls' transcripts
            log.exception("live transcript listener failed for call %s", stream.call_id)

    def _finish_stream(self, key: int) -> None:
        stream = self._streams.pop(key, None)
        if stream is not None:
            stream._worker.streams.discard(key)
            _settle(stream.finished)

    def _worker_gone(self, worker: _Worker) -> None:
        worker.alive = False
        if not worker.ready.done():
            _settle(worker.ready, exc=SttError(
                f"live transcription worker exited while loading {self.model}"))
        elif not self._stopping:
            log.error("live transcription worker %d exited; its %d call(s) lose live text",
                      worker.index, len(worker.streams))
        for key in list(worker.streams):
            stream = self._streams.get(key)
            if stream is not None and stream.closed:
                self._finish_stream(key)

    def _describe(self, key: int) -> str:
        stream = self._streams.get(key)
        return f"call {stream.call_id} channel {stream.channel}" if stream else f"stream {key}"


def _settle(future: asyncio.Future, *, result: Any = None, exc: BaseException | None = None) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
        future.exception()  # retrieved: a failed start is reported by start(), not at GC
    else:
        future.set_result(result)


async def start_live_transcriber(settings, on_event: OnEvent, **options) -> LiveTranscriber | None:
    """A running LiveTranscriber for ``[stt] vosk_model`` (None when it is empty).

    Raises `ModelNotFound` (an `SttError`) when the model is not where the setting says,
    and `SttError` when a worker cannot load it.
    """
    spec = settings.stt.vosk_model
    if not spec:
        return None
    from callcenter.stt.models import find_vosk_model

    # A path (relative to the config's folder), a model name under models_dir, or a package.
    as_path = settings.path(spec)
    path = find_vosk_model(as_path if as_path.exists() else spec,
                           models_dir=settings.path(settings.stt.models_dir))
    return await LiveTranscriber(path, on_event, **options).start()
