"""Transcript routes (JSON, bearer token or login session):

- `GET /api/recordings/{id}/transcript[?suggest=1]` — the recording's status
  (`none`/`queued`/`done`/`failed` + `error`), text and timed segments with their channel
  (0 = caller, 1 = agent); with `suggest=1` also the case suggestion for what the caller
  said (category, place, phone numbers, urgency; `case_core.suggest`).
- `POST /api/recordings/{id}/transcript` — transcribe (again); 202, or 503 when this
  process runs no transcription (`app[TRANSCRIPTION]` unset).
- `GET /api/cases/{id}/transcript` — every recording of the case with its transcript.
- `GET /api/transcripts?q=&limit=&offset=` — recordings whose transcript contains `q`
  (spaces and punctuation ignored), newest first, with the segments that say it.
- `GET /api/stt/status` — the batch transcription pool: `enabled`, `workers`, `queued`,
  `running`, `completed`, `paused` (yielding to the media tick), `pauses`, `paused_s`,
  `media_busy_share` (last reading), `yield_above`, `cpu_placement`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from web import timefmt
from web.app import USER, _int_param, api_auth, json_error
from web.photos import may_see_recording
from web.ports import TRANSCRIPTS, Transcripts

__all__ = ["setup", "TRANSCRIPTION", "STT_STATUS"]

# The process's callcenter.stt.transcription.TranscriptionService, when it runs one.
TRANSCRIPTION = web.AppKey("transcription", object)
# A callable giving the pool's figures for /api/stt/status (bootstrap sets it).
STT_STATUS = web.AppKey("stt_status", object)


def _json(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status,
                             dumps=timefmt.dumps)


def _store(request: web.Request) -> Transcripts:
    return request.app[TRANSCRIPTS]


def _id(request: web.Request, name: str) -> int | None:
    try:
        return int(request.match_info[name])
    except ValueError:
        return None


def _forbidden() -> web.Response:
    return json_error(403, "forbidden", "该录音属于其他处置部门的案卷，无权查看")


@api_auth
async def recording_transcript(request: web.Request) -> web.Response:
    rec_id = _id(request, "rec_id")
    found = await _store(request).for_recording(rec_id) if rec_id is not None else None
    if found is None:
        return json_error(404, "not_found", "录音不存在")
    if not await may_see_recording(request, request[USER], found.case_id, found.call_id):
        return _forbidden()
    body = found.to_dict()
    if request.query.get("suggest") in ("1", "true", "yes"):
        from case_core.suggest import suggest_for_text

        caller_text = " ".join(s.text for s in found.segments if s.channel == 0)
        # The first call loads the reference data from disk: keep it off the loop.
        body["suggestion"] = (await asyncio.get_running_loop().run_in_executor(
            None, lambda: suggest_for_text(caller_text))) if caller_text else None
    return _json(body)


@api_auth
async def retranscribe(request: web.Request) -> web.Response:
    service = request.app.get(TRANSCRIPTION)
    if service is None:
        return json_error(503, "unavailable", "本进程未启用语音转写")
    rec_id = _id(request, "rec_id")
    rec = await _store(request).recording(rec_id) if rec_id is not None else None
    if rec is None:
        return json_error(404, "not_found", "录音不存在")
    if not await may_see_recording(request, request[USER], rec.case_id, rec.call_id):
        return _forbidden()
    service.recording_finished(rec_id)
    return _json({"recording_id": rec_id, "status": "queued"}, status=202)


@api_auth
async def case_transcript(request: web.Request) -> web.Response:
    case_id = _id(request, "case_id")
    found = await _store(request).for_case(case_id) if case_id is not None else None
    if found is None:
        return json_error(404, "not_found", "案卷不存在")
    if not await may_see_recording(request, request[USER], case_id):
        return _forbidden()
    return _json({"case_id": case_id, "recordings": [r.to_dict() for r in found]})


@api_auth
async def search(request: web.Request) -> web.Response:
    q = (request.query.get("q") or "").strip()
    if not q:
        return json_error(400, "bad_parameter", "缺少参数 q（要查找的文字）")
    limit = _int_param(request, "limit", 50, 1, 200)
    offset = _int_param(request, "offset", 0, 0, 1_000_000)
    hits = await _store(request).search(q, limit=limit, offset=offset)
    seen: dict[tuple, bool] = {}
    for h in hits:  # least privilege: only recordings of cases the user may see
        key = (h.case_id, h.call_id)
        if key not in seen:
            seen[key] = await may_see_recording(request, request[USER], h.case_id, h.call_id)
    hits = [h for h in hits if seen[(h.case_id, h.call_id)]]
    return _json({"q": q, "results": [h.to_dict() for h in hits]})


@api_auth
async def stt_status(request: web.Request) -> web.Response:
    status = request.app.get(STT_STATUS)
    return _json(status() if status is not None else {"enabled": False})


def setup(app: web.Application) -> None:
    app.router.add_get("/api/stt/status", stt_status)
    app.router.add_get("/api/recordings/{rec_id}/transcript", recording_transcript)
    app.router.add_post("/api/recordings/{rec_id}/transcript", retranscribe)
    app.router.add_get("/api/cases/{case_id}/transcript", case_transcript)
    app.router.add_get("/api/transcripts", search)
