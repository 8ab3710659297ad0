"""Photo upload and serving (web/photos.py, case_core/photos.py) through aiohttp's test client,
on SQLite and PostgreSQL: good image, wrong type, too big, EXIF rotation, permissions, and the
case detail's category name, photos and recording transcripts."""

from __future__ import annotations

import hashlib
import io
from datetime import datetime
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from PIL import Image
from sqlalchemy import update

from case_core.adapters import migrate, orm
from case_core.adapters.sqlalchemy_repo import SqlRepository, make_engine, sync_url
from case_core.photos import PhotoFiles, PhotoService
from case_core.service import CaseService
from tests.integration.case_core.test_workflow_orm import demo_reference
from callcenter.bootstrap import install_web_stores
from web.app import CTX, WebContext, create_app
from web.photos import PHOTOS

NOW = datetime(2026, 11, 23, 10, 0)
USERS = {"agent1": ("agent", None), "dept_a": ("department", "D01"), "dept_b": ("department", "D02"),
         "dept_any": ("department", None)}
MAX_MB = 1


def jpeg(width=64, height=32, orientation=None, colour=(200, 30, 30)) -> bytes:
    img = Image.new("RGB", (width, height), colour)
    buf = io.BytesIO()
    if orientation is None:
        img.save(buf, "JPEG")
    else:
        exif = Image.Exif()
        exif[0x0112] = orientation
        img.save(buf, "JPEG", exif=exif.tobytes())
    return buf.getvalue()


@pytest.fixture
async def env(db_url, tmp_path, aiohttp_client):
    migrate.upgrade(sync_url(db_url))
    repo = SqlRepository(make_engine(db_url))
    for name, (role, dept) in USERS.items():
        await repo.create_user(username=name, password="pw-123456", role=role, now=NOW, department=dept)
    service = CaseService(repo, reference=demo_reference())
    ts = NOW.replace(tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()
    ctx = WebContext(repo=repo, service=service, secret=b"k" * 32, now=lambda: ts)
    app = create_app(ctx)
    photos_dir = tmp_path / "photos"
    app[PHOTOS] = PhotoService(PhotoFiles(photos_dir, MAX_MB * 1024 * 1024), repo.engine)
    install_web_stores(app, repo.engine)
    client = await aiohttp_client(app)
    tokens = {name: await repo.create_token(name, NOW) for name in USERS}

    class Env:
        dir = photos_dir

        async def call(self, method, path, user="agent1", **kw):
            resp = await client.request(method, path, headers={"Authorization": f"Bearer {tokens[user]}"}, **kw)
            body = await resp.read()
            return resp, body

        async def upload(self, case_id, data, user="agent1", stage=None, filename="photo.jpg",
                         content_type="image/jpeg"):
            form = aiohttp.FormData()
            form.add_field("file", data, filename=filename, content_type=content_type)
            if stage is not None:
                form.add_field("stage", stage)
            resp, body = await self.call("POST", f"/api/cases/{case_id}/photos", user, data=form)
            return resp.status, (await resp.json() if resp.content_type == "application/json" else body)

        async def new_case(self, department=None, **body):
            resp, raw = await self.call("POST", "/api/cases", json={
                "description": "长江路污水井盖缺失", "address": "长江路12号", **body})
            assert resp.status == 201, raw
            case_id = (await resp.json())["id"]
            if department:
                async with repo.engine.begin() as conn:
                    await conn.execute(update(orm.cases).where(orm.cases.c.id == case_id)
                                       .values(department=department))
            return case_id

        client_ = client

    yield Env()
    await repo.close()


async def test_a_jpeg_is_stored_by_hash_with_a_thumbnail_and_served(env):
    case_id = await env.new_case()
    data = jpeg(800, 600)
    status, body = await env.upload(case_id, data, stage="before")
    assert status == 201, body
    assert body["url"] == f"/api/photos/{body['id']}" and body["thumb_url"] == f"/api/photos/{body['id']}/thumb"
    assert body["stage"] == "before" and (body["width"], body["height"]) == (800, 600)
    assert body["uploaded_at"] == "2026-11-23T10:00:00+08:00" and body["uploaded_by"] == "agent1"
    sha = hashlib.sha256(data).hexdigest()
    assert (env.dir / sha[:2] / f"{sha}.jpg").read_bytes() == data
    resp, image = await env.call("GET", body["url"])
    assert resp.status == 200 and resp.content_type == "image/jpeg" and image == data
    resp, thumb = await env.call("GET", body["thumb_url"])
    assert resp.status == 200 and resp.content_type == "image/jpeg"
    assert max(Image.open(io.BytesIO(thumb)).size) == 320


async def test_the_same_image_twice_is_stored_once(env):
    case_id = await env.new_case()
    data = jpeg()
    first = (await env.upload(case_id, data))[1]
    second = (await env.upload(case_id, data))[1]
    assert first["id"] != second["id"] and first["sha256"] == second["sha256"]
    assert len([p for p in env.dir.rglob("*") if p.is_file()]) == 2  # the image and its thumbnail


async def test_a_text_file_named_jpg_is_refused_by_its_bytes(env):
    case_id = await env.new_case()
    status, body = await env.upload(case_id, b"<html>not a photo</html>" * 10, filename="x.jpg")
    assert status == 415 and body["error"] == "not_image" and "图片" in body["message"]
    status, body = await env.upload(case_id, b"%PDF-1.4 fake", filename="scan.jpg")
    assert status == 415
    assert not env.dir.exists() or not any(p.is_file() for p in env.dir.rglob("*"))


async def test_an_image_over_the_cap_is_refused_with_413(env):
    case_id = await env.new_case()
    img = Image.effect_noise((1200, 1200), 90).convert("RGB")
    buf = io.BytesIO()
    img.save(buf, "PNG")
    assert len(buf.getvalue()) > MAX_MB * 1024 * 1024
    status, body = await env.upload(case_id, buf.getvalue(), filename="big.png", content_type="image/png")
    assert status == 413 and body["error"] == "too_large" and "1 MB" in body["message"]


async def test_exif_orientation_is_honoured_in_the_thumbnail(env):
    """A phone photo 400×200 stored sideways with Orientation 6 (rotate 90°) is 200×400 upright."""
    case_id = await env.new_case()
    status, body = await env.upload(case_id, jpeg(400, 200, orientation=6))
    assert status == 201 and (body["width"], body["height"]) == (200, 400)
    resp, thumb = await env.call("GET", body["thumb_url"])
    w, h = Image.open(io.BytesIO(thumb)).size
    assert h > w


async def test_bad_stage_and_missing_file_are_400(env):
    case_id = await env.new_case()
    assert (await env.upload(case_id, jpeg(), stage="during"))[0] == 400
    form = aiohttp.FormData()
    form.add_field("stage", "after")
    resp, _ = await env.call("POST", f"/api/cases/{case_id}/photos", data=form)
    assert resp.status == 400
    assert (await env.upload(999999, jpeg()))[0] == 404


async def test_department_staff_see_only_their_departments_photos(env):
    case_id = await env.new_case(department="D01")
    status, body = await env.upload(case_id, jpeg(), user="dept_a", stage="after")
    assert status == 201
    assert (await env.upload(case_id, jpeg(colour=(1, 2, 3)), user="dept_b"))[0] == 403
    # dept_any: a department user bound to no department sees no case (fail closed, issue 14 G1)
    for user, expected in (("dept_a", 200), ("agent1", 200), ("dept_any", 403), ("dept_b", 403)):
        resp, _ = await env.call("GET", body["url"], user)
        assert resp.status == expected, user
        resp, _ = await env.call("GET", body["thumb_url"], user)
        assert resp.status == expected, user
    resp = await env.client_.get(body["url"])  # no login at all
    assert resp.status == 401


async def test_case_detail_has_category_name_photos_and_recording_transcripts(env):
    case_id = await env.new_case(category="component:01002")
    await env.upload(case_id, jpeg(), stage="before")
    resp, _ = await env.call("GET", f"/api/cases/{case_id}")
    detail = await resp.json()
    assert detail["category_name"] == "污水井盖"
    assert [p["stage"] for p in detail["photos"]] == ["before"]
    assert detail["photos"][0]["thumb_url"].endswith("/thumb")
    assert detail["recordings"] == []


async def test_case_detail_recordings_carry_their_time_aligned_transcript(env):
    """Each recording of GET /api/cases/{id} has `transcript` with segments (times, channel)."""
    from callcenter.stt.port import Segment, Transcript
    from callcenter.stt.store import TranscriptStore

    ctx_service = env.client_.app[CTX].service
    rec = await ctx_service.recording_started(call_id="call-9", kind="call", path="/nowhere/call-9.wav",
                                              channels=2, now=NOW)
    number = await ctx_service.file_report(channel="12319", reporter_phone="13800000001", call_id="call-9",
                                           recording_ids=(rec,), variables={}, now=NOW)
    case_id = await ctx_service.repo.case_id_for_number(number)
    store = TranscriptStore(ctx_service.repo.engine)
    await store.mark_queued(rec, engine="whisper", now=NOW)
    await store.save(rec, Transcript.from_segments(
        (Segment(0.5, 3.0, "长江路十二号的井盖坏了", 0), Segment(3.5, 5.0, "好的，马上派人", 1)),
        engine="whisper", language="zh", duration_s=6.0, elapsed_s=1.0), now=NOW)
    resp, _ = await env.call("GET", f"/api/cases/{case_id}")
    [recording] = (await resp.json())["recordings"]
    assert recording["url"] == f"/recordings/{rec}.wav" and recording["transcript"]["status"] == "done"
    assert recording["transcript"]["segments"] == [
        {"channel": 0, "start_s": 0.5, "end_s": 3.0, "text": "长江路十二号的井盖坏了"},
        {"channel": 1, "start_s": 3.5, "end_s": 5.0, "text": "好的，马上派人"}]
