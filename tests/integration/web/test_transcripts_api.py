"""Transcript routes (web/transcripts.py) through aiohttp's test client on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime

import pytest

from callcenter.stt.port import Segment, Transcript
from callcenter.stt.store import TranscriptStore
from case_core.adapters import migrate
from case_core.adapters.sqlalchemy_repo import SqlRepository, make_engine, sync_url
from case_core.service import CaseService
from callcenter.bootstrap import install_web_stores
from web.app import WebContext, create_app
from web.transcripts import TRANSCRIPTION

NOW = datetime(2026, 11, 23, 10, 0)


def _transcript(*segments: Segment) -> Transcript:
    return Transcript.from_segments(segments, engine="whisper", language="zh", duration_s=12.0, elapsed_s=3.0)


class RecordingSubmissions:
    """Stands in for the TranscriptionService: remembers what was queued."""

    def __init__(self):
        self.queued: list[int] = []

    def recording_finished(self, recording_id: int) -> None:
        self.queued.append(recording_id)


@pytest.fixture
async def env(aiohttp_client, db_url):
    migrate.upgrade(sync_url(db_url))
    repo = SqlRepository(make_engine(db_url))
    await repo.create_user(username="agent1", password="pw-123456", role="agent", now=NOW)
    service = CaseService(repo)
    store = TranscriptStore(repo.engine)
    call = await service.recording_started(call_id="call-1", kind="call", path="/nowhere/call-1.wav",
                                           channels=2, now=NOW)
    message = await service.recording_started(call_id="call-2", kind="message", path="/nowhere/call-2.wav",
                                              channels=1, now=NOW)
    number = await service.file_report(channel="12319", reporter_phone="13800000001", call_id="call-1",
                                       recording_ids=(call,), variables={}, now=NOW)
    case_id = await repo.case_id_for_number(number)
    await store.mark_queued(call, engine="whisper", now=NOW)
    await store.save(call, _transcript(
        Segment(0.5, 3.0, "长江路十二号的井盖坏了，", 0),
        Segment(3.5, 5.0, "好的，我们马上派人。", 1),
        Segment(5.5, 8.0, "电话一三八零零一三八零零零", 0)), now=NOW)
    submissions = RecordingSubmissions()
    app = create_app(WebContext(repo=repo, service=service, secret=b"k" * 32, now=lambda: 0.0))
    app[TRANSCRIPTION] = submissions
    install_web_stores(app, repo.engine)
    client = await aiohttp_client(app)
    token = await repo.create_token("agent1", NOW)

    async def get(path, method="GET", auth=True):
        headers = {"Authorization": f"Bearer {token}"} if auth else {}
        resp = await client.request(method, path, headers=headers)
        return resp.status, await resp.json()

    yield {"get": get, "call": call, "message": message, "case_id": case_id, "number": number,
           "submissions": submissions}
    await repo.close()


async def test_recording_transcript_lists_timed_segments_per_channel(env):
    """A transcribed recording answers with status done and its segments, caller and agent apart."""
    status, body = await env["get"](f"/api/recordings/{env['call']}/transcript")
    assert status == 200 and body["status"] == "done" and body["case_id"] == env["case_id"]
    assert [(s["channel"], s["start_s"]) for s in body["segments"]] == [(0, 0.5), (1, 3.5), (0, 5.5)]
    assert body["text"].startswith("长江路十二号")


async def test_untranscribed_and_unknown_recordings(env):
    """A recording never submitted says status none; an unknown id is 404."""
    status, body = await env["get"](f"/api/recordings/{env['message']}/transcript")
    assert status == 200 and body["status"] == "none" and body["segments"] == []
    status, body = await env["get"]("/api/recordings/9999/transcript")
    assert status == 404 and body["error"] == "not_found"


async def test_suggestion_reads_what_the_caller_said(env):
    """With suggest=1 the caller's channel yields a manhole-cover category, the place and the phone number."""
    status, body = await env["get"](f"/api/recordings/{env['call']}/transcript?suggest=1")
    assert status == 200
    prefill = body["suggestion"]["prefill"]
    assert "井盖" in body["suggestion"]["category"]["name"]
    assert prefill["reporter_phone"] == "13800138000" and prefill["address"].startswith("长江路")


async def test_case_transcript_includes_its_recordings(env):
    """The case's transcript holds the recording filed with it, not other calls' recordings."""
    status, body = await env["get"](f"/api/cases/{env['case_id']}/transcript")
    assert status == 200
    assert [r["recording_id"] for r in body["recordings"]] == [env["call"]]
    assert len(body["recordings"][0]["segments"]) == 3
    status, _ = await env["get"]("/api/cases/9999/transcript")
    assert status == 404


async def test_search_ignores_spaces_and_punctuation(env):
    """A query with spaces and punctuation finds the recording, its case number and the matching segment."""
    status, body = await env["get"]("/api/transcripts?q=井盖 坏了！")
    assert status == 200
    [hit] = body["results"]
    assert hit["recording_id"] == env["call"] and hit["case_number"] == env["number"]
    assert [s["start_s"] for s in hit["segments"]] == [0.5]
    status, body = await env["get"]("/api/transcripts?q=垃圾")
    assert status == 200 and body["results"] == []


async def test_search_finds_a_phrase_split_over_segments(env):
    """A phrase spanning two consecutive segments still matches, with both segments returned."""
    status, body = await env["get"]("/api/transcripts?q=坏了好的")
    assert status == 200
    [hit] = body["results"]
    assert [s["start_s"] for s in hit["segments"]] == [0.5, 3.5]


async def test_search_needs_a_query_and_a_login(env):
    """No q is 400; no token is 401."""
    assert (await env["get"]("/api/transcripts"))[0] == 400
    assert (await env["get"]("/api/transcripts?q=井盖", auth=False))[0] == 401


async def test_post_queues_a_transcription(env):
    """POST on a recording's transcript hands it to the transcription service; unknown ids are 404."""
    status, body = await env["get"](f"/api/recordings/{env['message']}/transcript", method="POST")
    assert status == 202 and body["status"] == "queued"
    assert env["submissions"].queued == [env["message"]]
    status, _ = await env["get"]("/api/recordings/9999/transcript", method="POST")
    assert status == 404
