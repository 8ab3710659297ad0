"""Recordings of calls and voice messages: WAV writers fed from the media tick, batched to
the writer thread, closed and registered without polling.

A recording is finished when two things have happened, in either order: its file is closed
(the duration is known) and its database row was registered (`recording_registered`, the
one event that carries the row id). Whichever comes second completes it.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from callcenter.media.wav import WavWriter

log = logging.getLogger("callcenter.calls")

# Received audio louder than this RMS counts as speech for "end on silence" (about -36 dBFS).
SPEECH_RMS = 500.0
# Flush recordings to disk about once a second so a crash loses at most that much.
FLUSH_EVERY_FRAMES = 50
# ... and force them onto the disk (fdatasync) this often: a power cut loses at most that much.
SYNC_EVERY_S = 5.0


@dataclass
class _Recording:
    """A WAV being written; bytes are handed to the writer thread in chunks."""

    recording_id: int | None
    writer: WavWriter
    pending: bytearray
    frames: int = 0
    ivr_id: str | None = None
    stop_digits: str = ""
    silence_s: float | None = None
    last_voice_at: float = 0.0
    max_timer: Any = None
    registered: bool = False  # the row insert has answered (recording_id None if it failed)
    duration: float | None = None  # set once the file is closed
    on_complete: list[Callable[["_Recording"], None]] = field(default_factory=list)
    on_registered: list[Callable[["_Recording"], None]] = field(default_factory=list)

    def recording_registered(self, recording_id: int | None) -> None:
        """The row exists (or could not be made): complete the recording if its file is closed."""
        self.recording_id = recording_id
        self.registered = True
        for hook in self.on_registered:
            hook(self)
        self._complete_if_done()

    def closed(self, duration: float) -> None:
        self.duration = duration
        self._complete_if_done()

    def _complete_if_done(self) -> None:
        if not self.registered or self.duration is None:
            return
        hooks, self.on_complete = self.on_complete, []
        for hook in hooks:
            try:
                hook(self)
            except Exception:
                log.exception("recording %s: completion failed", self.writer.path)


def _safe_name(call_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", call_id)[:80]


class RecordingIO:
    """The router's recording files: paths by day, per-tick batched writes, closing.

    Mixed into `CallRouter`; it needs `storage_dir`, `now_dt`, `clock`, `executor`,
    `_flushes` and `_synced_at`.
    """

    def recording_path(self, call_id: str, kind: str) -> Path:
        day = self.now_dt().strftime("%Y/%m/%d")
        path = self.storage_dir / day / f"{_safe_name(call_id)}-{kind}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def flush(self, rec: _Recording) -> None:
        # Every recording due in this tick goes to the writer thread in one job: a job per
        # recording cost a thread hand-off each (1,000 a second at 1,000 calls).
        self._flushes.append((rec.writer, bytes(rec.pending)))
        rec.pending.clear()
        if len(self._flushes) == 1:
            self.clock.callLater(0, self._write_flushes)

    def _write_flushes(self) -> None:
        batch, self._flushes = self._flushes, []
        if not batch:
            return

        now = self.clock.seconds()
        due = [w for w, _ in batch if now - self._synced_at.get(w, float("-inf")) >= SYNC_EVERY_S]
        for w in due:
            self._synced_at[w] = now

        def write() -> None:
            for writer, chunk in batch:
                try:
                    writer.write(chunk)
                    writer.flush()
                except Exception:  # one bad file must not cost the others their audio
                    log.exception("recording %s: write failed", writer.path)
            for writer in due:  # to the disk itself every few seconds: a power cut keeps it
                try:
                    writer.sync()
                except (OSError, ValueError):
                    log.exception("recording %s: sync failed", writer.path)

        self.executor.submit(write)

    async def close_recording(self, rec: _Recording) -> float:
        self._write_flushes()  # queued chunks reach the file before it is closed
        chunk = bytes(rec.pending)
        rec.pending.clear()
        writer = rec.writer

        self._synced_at.pop(writer, None)

        def close() -> float:
            writer.write(chunk)
            writer.flush()
            writer.sync()
            return writer.close()

        return await asyncio.wrap_future(self.executor.submit(close))

    def start_recording(self, *, call_id: str, kind: str, name: str, channels: int, **fields) -> _Recording:
        """Open the WAV and register its row in the background (`recording_registered`)."""
        path = self.recording_path(call_id, name)
        rec = _Recording(recording_id=None, writer=WavWriter(path, channels=channels), pending=bytearray(), **fields)

        async def register() -> None:
            row = None
            try:
                row = await self.services.recording_started(
                    call_id=call_id, kind=kind, path=str(path), channels=channels, now=self.now_dt())
            finally:
                rec.recording_registered(row)

        self.spawn(register())
        return rec

    def finish_recording(self, rec: _Recording, then: Callable[[_Recording], None] | None = None) -> None:
        """Close the file; once its row is registered too, store the duration, then `then`."""

        def complete(rec: _Recording) -> None:
            async def store() -> None:
                if rec.recording_id is not None:
                    await self.services.recording_finished(rec.recording_id, rec.duration)
                if then is not None:
                    then(rec)

            self.spawn(store())

        rec.on_complete.append(complete)

        async def close() -> None:
            duration = 0.0
            try:
                duration = await self.close_recording(rec)
            finally:
                rec.closed(duration)

        self.spawn(close())
