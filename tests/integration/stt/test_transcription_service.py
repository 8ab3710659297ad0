"""Post-call transcription (callcenter.stt.transcription) on SQLite: recordings through the pool
into the `transcripts` table, attached to call and case, and searchable."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path

import pytest

from callcenter.config import Settings, SttSettings
from callcenter.stt.pool import Priority
from callcenter.stt.port import Segment, SttError, Transcript
from callcenter.stt.quality import cer, normalize_for_cer
from callcenter.stt.store import TranscriptStore
from callcenter.stt.transcription import TranscriptionService, start_transcription
from case_core.adapters import migrate
from case_core.adapters.sqlalchemy_repo import SqlRepository, make_engine, sync_url
from case_core.service import CaseService

from .conftest import AGENT_CLIP, MESSAGE_CLIP, reference

NOW = datetime(2026, 11, 23, 10, 0)


@pytest.fixture
async def db(sqlite_url):
    migrate.upgrade(sync_url(sqlite_url))
    repo = SqlRepository(make_engine(sqlite_url))
    yield repo, CaseService(repo)
    await repo.close()


class Spawner:
    """The bootstrap's spawn: runs coroutines as tasks and lets the test wait for them."""

    def __init__(self):
        self.tasks: list[asyncio.Task] = []

    def __call__(self, coro):
        task = asyncio.ensure_future(coro)
        self.tasks.append(task)
        return task

    async def settle(self):
        while not all(t.done() for t in self.tasks):
            await asyncio.wait_for(asyncio.gather(*self.tasks), timeout=300)


class ScriptedPool:
    """Stands in for the worker pool: answers from a dict of path → Transcript or error."""

    def __init__(self, answers: dict[str, Transcript | Exception]):
        self.answers = answers
        self.priorities: list[tuple[str, int]] = []
        self.closed = False

    async def transcribe(self, path, *, priority):
        self.priorities.append((Path(path).name, int(priority)))
        answer = self.answers[str(path)]
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def close(self, *, cancel_queued=True):
        self.closed = True


def _longest_common(a: str, b: str) -> str:
    best = ""
    for i in range(len(a)):
        for j in range(i + len(best) + 1, len(a) + 1):
            if a[i:j] in b:
                best = a[i:j]
            else:
                break
    return best


@pytest.mark.slow
async def test_call_recording_is_transcribed_by_whisper_stored_attached_and_searchable(db, stereo_call, whisper_cache):
    """A finished stereo call recording goes through the whisper pool; both speakers' text is stored
    per channel, shows on the case filed for the call, and a search finds it."""
    repo, service = db
    settings = Settings(stt=SttSettings(workers=1, models_dir=str(whisper_cache.parent)))
    spawn = Spawner()
    events: list[tuple[str, dict]] = []
    transcription = start_transcription(settings, repo.engine, spawn, on_event=lambda k, d: events.append((k, d)))
    assert transcription is not None
    service.on_recording_finished = transcription.recording_finished
    try:
        rec_id = await service.recording_started(call_id="call-7", kind="call", path=str(stereo_call),
                                                 channels=2, now=NOW)
        number = await service.file_report(channel="12319", reporter_phone="13800000001", call_id="call-7",
                                           recording_ids=(rec_id,), variables={}, now=NOW)
        await service.recording_finished(rec_id, 9.0)
        await spawn.settle()
    finally:
        await transcription.stop()
    stored = await transcription.for_recording(rec_id)
    assert stored.status == "done" and stored.engine == "whisper"
    caller = "".join(s.text for s in stored.segments if s.channel == 0)
    agent = "".join(s.text for s in stored.segments if s.channel == 1)
    assert cer(reference(MESSAGE_CLIP), caller) < 0.5
    # Channel separation, not accuracy: the agent's text is closer to the agent's script.
    assert agent and cer(reference(AGENT_CLIP), agent) < cer(reference(MESSAGE_CLIP), agent)
    case_id = await repo.case_id_for_number(number)
    [on_case] = await transcription.for_case(case_id)
    assert on_case.recording_id == rec_id and on_case.segments == stored.segments
    phrase = _longest_common(normalize_for_cer(reference(MESSAGE_CLIP)), normalize_for_cer(caller))
    assert len(phrase) >= 3
    [hit] = await transcription.search(phrase)
    assert hit.recording_id == rec_id and hit.case_number == number and hit.segments
    assert all(s.channel == 0 for s in hit.segments)
    assert events[-1][0] == "transcript_ready" and events[-1][1]["case_id"] == case_id


async def test_messages_go_first_and_failures_are_kept_with_their_reason(db, tmp_path):
    """A voice message is queued at message priority, a call at recording priority; an engine
    error and a missing file leave status failed with the reason."""
    repo, service = db
    paths = {name: tmp_path / f"{name}.wav" for name in ("msg", "call", "broken")}
    for p in paths.values():
        p.write_bytes(b"RIFF")
    said = Transcript.from_segments([Segment(0.2, 2.0, "路灯不亮", 0)], engine="whisper", language="zh",
                                    duration_s=2.0, elapsed_s=0.5)
    pool = ScriptedPool({str(paths["msg"]): said, str(paths["call"]): said,
                         str(paths["broken"]): SttError("cannot read audio broken.wav")})
    transcription = TranscriptionService(TranscriptStore(repo.engine), pool, now=lambda: NOW)
    ids = {}
    for name, kind in (("msg", "message"), ("call", "call"), ("broken", "message"), ("gone", "call")):
        ids[name] = await service.recording_started(call_id=f"c-{name}", kind=kind,
                                                    path=str(tmp_path / f"{name}.wav"), channels=1, now=NOW)
        await transcription.submit(ids[name])
    assert pool.priorities == [("msg.wav", Priority.MESSAGE), ("call.wav", Priority.RECORDING),
                               ("broken.wav", Priority.MESSAGE)]
    assert (await transcription.for_recording(ids["msg"])).text == "路灯不亮"
    broken = await transcription.for_recording(ids["broken"])
    assert broken.status == "failed" and "cannot read audio" in broken.error and broken.segments == ()
    gone = await transcription.for_recording(ids["gone"])
    assert gone.status == "failed" and "missing" in gone.error
    assert await transcription.submit(9999) is None


async def test_resubmitting_replaces_segments_and_unfinished_jobs_resume(db, tmp_path):
    """A second transcription replaces the first one's segments; a job left queued by a stopped
    process is queued again by resume()."""
    repo, service = db
    path = tmp_path / "m.wav"
    path.write_bytes(b"RIFF")
    first = Transcript.from_segments([Segment(0, 1, "第一遍", 0), Segment(1, 2, "重复", 0)],
                                     engine="whisper", language="zh", duration_s=2.0, elapsed_s=0.5)
    second = Transcript.from_segments([Segment(0, 1, "第二遍", 0)], engine="whisper", language="zh",
                                      duration_s=2.0, elapsed_s=0.5)
    store = TranscriptStore(repo.engine)
    rec_id = await service.recording_started(call_id="c1", kind="message", path=str(path), channels=1, now=NOW)
    pool = ScriptedPool({str(path): first})
    transcription = TranscriptionService(store, pool, now=lambda: NOW)
    await transcription.submit(rec_id)
    pool.answers[str(path)] = second
    await transcription.submit(rec_id)
    assert (await transcription.for_recording(rec_id)).text == "第二遍"
    assert await transcription.search("第一遍") == []
    await store.mark_queued(rec_id, engine="whisper", now=NOW)  # as if the process stopped mid-job
    spawn = Spawner()
    restarted = TranscriptionService(store, ScriptedPool({str(path): first}), spawn=spawn, now=lambda: NOW)
    assert await restarted.resume() == 1
    await spawn.settle()
    assert (await restarted.for_recording(rec_id)).text == "第一遍 重复"


def test_disabled_setting_starts_nothing():
    """With [stt] enabled = false there is no transcription service."""
    settings = Settings(stt=SttSettings(enabled=False))
    assert start_transcription(settings, engine=None, spawn=lambda coro: None) is None


async def test_a_message_transcribed_before_its_case_still_describes_it(db, tmp_path):
    """The rare order: the voice message's transcript is stored before the IVR files the
    case. When the case is created its description becomes the transcript, once; a case
    whose description an agent already wrote keeps it."""
    repo, service = db
    wav = tmp_path / "msg.wav"
    wav.write_bytes(b"RIFF")
    said = Transcript.from_segments([Segment(0.2, 2.0, "建设路井盖丢了", 0)], engine="whisper",
                                    language="zh", duration_s=2.0, elapsed_s=0.5)
    transcription = TranscriptionService(TranscriptStore(repo.engine), ScriptedPool({str(wav): said}),
                                         now=lambda: NOW)
    rec = await service.recording_started(call_id="c-early", kind="message", path=str(wav),
                                          channels=1, now=NOW)
    await transcription.submit(rec)  # before the case exists
    number = await service.file_report(channel="12319", reporter_phone="13800138000", call_id="c-early",
                                       recording_ids=(rec,), variables={}, now=NOW)
    case_id = (await repo.find_case_by_number(number)).id
    assert await transcription.describe_new_case(service, case_id, NOW) is True
    view = await repo.find_case_by_number(number)
    assert view.description == "【留言转写】建设路井盖丢了"
    # the transcript_ready path arriving late changes nothing more
    assert await service.describe_from_transcript(case_id, "建设路井盖丢了", NOW) is False
    assert await transcription.describe_new_case(service, case_id, NOW) is False
    # no transcript yet: nothing happens
    other = await service.file_report(channel="12319", reporter_phone="13800138001", call_id="c-none",
                                      recording_ids=(), variables={}, now=NOW)
    assert await transcription.describe_new_case(service, (await repo.find_case_by_number(other)).id,
                                                 NOW) is False
