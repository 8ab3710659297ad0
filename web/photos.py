"""Photo routes and the richer case detail (category name, photos, transcripts).

- `POST /api/cases/{id}/photos` — multipart `file` (an image: JPEG, PNG, WebP or GIF,
  recognised from its bytes) and optional `stage` (before | after | report; default report)
  → `201 {"id", "url", "thumb_url", "stage", …}`; 413 over `[storage] photo_max_mb`,
  415 not an image, 403 a case of another department, 404 no such case.
- `GET /api/cases/{id}/photos` — the case's photos, oldest first.
- `GET /api/photos/{id}`, `GET /api/photos/{id}/thumb` — the image and its thumbnail, to
  whoever may see the case (logged in; department staff only their department's cases).

The photo service itself (`case_core.photos.PhotoService`) is set on the app by the
bootstrap as `app[PHOTOS]`; other front ends use it the same way.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from case_core.views import CaseView, NotFound, UserView
from case_core.photos import STAGES, PhotoError, PhotoService
from web import timefmt
from web.app import CTX, USER, api_auth, current_user, json_error
from web.ports import TRANSCRIPTS

__all__ = ["PHOTOS", "NO_DEPARTMENT", "setup", "may_see", "visible_where", "may_see_recording", "audit_access",
           "detail_extras"]

PHOTOS = web.AppKey("photos", PhotoService)

# What a department user bound to no department "belongs to": never a department code
# (codes are letters, digits and _.-), so it matches no case. Fail closed.
NO_DEPARTMENT = "!unbound"


def visible_where(user: UserView) -> dict[str, Any]:
    """The case fields a user's cases must have (least privilege); {} = every case.

    The one rule behind every list and detail: search filters (`GET /api/cases`,
    `/api/geo/cases`, Open311), SQL clauses (case list, worklists: `getattr(cases.c, k) == v`),
    single cases (`may_see`), recordings, transcripts and photos. Department staff tied to a
    department see only the cases dispatched to it; department staff tied to none see no case
    at all (`NO_DEPARTMENT`; the pages and the API say 账号未绑定部门, see `web.auth`).
    """
    if user.role == "department":
        return {"department": user.department or NO_DEPARTMENT}
    return {}


def may_see(user: UserView, case: CaseView) -> bool:
    """Whether `case` passes `visible_where(user)`."""
    return all(getattr(case, name) == value for name, value in visible_where(user).items())


async def may_see_recording(request: web.Request, user: UserView, case_id: int | None, call_id: str = "") -> bool:
    """A recording is visible with its case; one tied to no case only to users who see every case."""
    if not visible_where(user):
        return True
    ctx = request.app[CTX]
    if case_id is None and call_id:
        case_id = await ctx.repo.case_id_for_call(call_id)
    if case_id is None:
        return False
    try:
        return may_see(user, await ctx.service.get_case(case_id))
    except NotFound:
        return False


async def audit_access(request: web.Request, user: UserView, action: str, target: str,
                       detail: dict[str, Any] | None = None) -> None:
    """One audit entry (`case_core.audit`) for reading or hearing something sensitive:
    a recording download, a listen-in. Who, when, from where."""
    from web import auth

    ctx = request.app[CTX]
    source = auth.client_address(request, ctx.auth_settings.trust_proxy)
    await ctx.audit.record(user.username, action, target, source, detail or {}, ctx.local_now())


def _forbidden(user: UserView | None = None) -> web.Response:
    from web import auth

    if user is not None and auth.unbound_department(user):
        return json_error(403, "no_department", auth.NO_DEPARTMENT_MESSAGE)
    return json_error(403, "forbidden", "该案卷已派遣给其他处置部门，无权查看")


async def _case_for(request: web.Request, case_id_text: str) -> CaseView | web.Response:
    try:
        case = await request.app[CTX].service.get_case(int(case_id_text))
    except (NotFound, ValueError):
        return json_error(404, "not_found", "案卷不存在")
    if not may_see(request[USER], case):
        return _forbidden(request[USER])
    return case


def _service(request: web.Request) -> PhotoService | None:
    return request.app.get(PHOTOS)


async def _read_upload(request: web.Request, max_bytes: int) -> tuple[bytes | None, str, str | None]:
    """The `file` part (None when absent), the `stage`, and an error code ("too_large")."""
    if not request.content_type.startswith("multipart/"):
        return None, "", "not_multipart"
    reader = await request.multipart()
    data: bytes | None = None
    stage = ""
    while (part := await reader.next()) is not None:
        if part.name == "file":
            buf = bytearray()
            while chunk := await part.read_chunk(64 * 1024):
                buf += chunk
                if len(buf) > max_bytes:
                    return None, stage, "too_large"
            data = bytes(buf)
        elif part.name == "stage":
            stage = (await part.text()).strip()
        else:
            await part.release()
    return data, stage, None


@api_auth
async def upload(request: web.Request) -> web.Response:
    service = _service(request)
    if service is None:
        return json_error(503, "unavailable", "本进程未配置照片存储")
    case = await _case_for(request, request.match_info["case_id"])
    if isinstance(case, web.Response):
        return case
    data, stage, problem = await _read_upload(request, service.max_bytes)
    if problem == "not_multipart":
        return json_error(400, "bad_request", "请以 multipart/form-data 上传，文件字段名为 file")
    if problem == "too_large":
        return json_error(413, "too_large", f"照片超过 {service.max_bytes // (1024 * 1024)} MB 上限")
    if data is None:
        return json_error(400, "bad_request", "缺少文件字段 file")
    stage = stage or "report"
    if stage not in STAGES:
        return json_error(400, "bad_parameter", f"stage 必须是 {'/'.join(STAGES)} 之一")
    from web.case_api import local_now

    try:
        photo = await service.add(case.id, data, stage=stage, actor=request[USER].username,
                                  now=local_now(request))
    except PhotoError as exc:
        return json_error(exc.status, exc.code, exc.message_zh)
    return web.json_response(timefmt.with_offsets(photo.to_dict()), status=201, dumps=timefmt.dumps)


@api_auth
async def case_photos(request: web.Request) -> web.Response:
    service = _service(request)
    case = await _case_for(request, request.match_info["case_id"])
    if isinstance(case, web.Response):
        return case
    photos = await service.for_case(case.id) if service is not None else []
    return web.json_response(timefmt.with_offsets([p.to_dict() for p in photos]), dumps=timefmt.dumps)


async def _image(request: web.Request, thumb: bool) -> web.StreamResponse:
    user = await current_user(request)
    if user is None:
        return json_error(401, "unauthorized", "请先登录，或提供 Bearer 令牌")
    request[USER] = user
    service = _service(request)
    try:
        photo = await service.get(int(request.match_info["photo_id"])) if service is not None else None
    except ValueError:
        photo = None
    if photo is None:
        return json_error(404, "not_found", "照片不存在")
    case = await _case_for(request, str(photo.case_id))
    if isinstance(case, web.Response):
        return case
    path, content_type = service.file_of(photo, thumb=thumb)
    if not path.is_file():
        return json_error(410, "gone", "照片文件已不存在")
    # Content-addressed: a photo id never changes its bytes.
    return web.FileResponse(path, headers={"Content-Type": content_type,
                                           "Cache-Control": "private, max-age=86400",
                                           "X-Content-Type-Options": "nosniff"})


async def photo(request: web.Request) -> web.StreamResponse:
    return await _image(request, thumb=False)


async def photo_thumb(request: web.Request) -> web.StreamResponse:
    return await _image(request, thumb=True)


async def detail_extras(request: web.Request, case: CaseView) -> dict[str, Any]:
    """What `GET /api/cases/{id}` adds: `category_name`, `photos`, and each recording's
    `transcript` (status and time-aligned segments; channel 0 = caller, 1 = agent)."""
    ctx = request.app[CTX]
    ref = await ctx.service.reference()
    cat = ref.categories.get(case.category_kind, case.category_code) if case.category_code else None
    out: dict[str, Any] = {
        "category_name": cat.name if cat else None,
        "category_class_name": cat.class_name if cat else None,
    }
    service = _service(request)
    out["photos"] = timefmt.with_offsets([p.to_dict() for p in await service.for_case(case.id)]) if service is not None else []
    store = request.app.get(TRANSCRIPTS)  # None: this app serves no transcripts
    transcripts = {t.recording_id: t for t in ((await store.for_case(case.id)) if store is not None else None) or []}
    recordings = []
    for r in case.recordings:
        t = transcripts.get(r.id)
        recordings.append({
            "id": r.id, "kind": r.kind, "url": f"/recordings/{r.id}.wav", "duration_s": round(r.duration_s, 2),
            "channels": r.channels,
            "transcript": {"status": t.status if t else None,
                           "segments": [s.to_dict() for s in t.segments] if t else []},
        })
    out["recordings"] = recordings
    return out


def setup(app: web.Application) -> None:
    app.router.add_post("/api/cases/{case_id}/photos", upload)
    app.router.add_get("/api/cases/{case_id}/photos", case_photos)
    app.router.add_get("/api/photos/{photo_id}", photo)
    app.router.add_get("/api/photos/{photo_id}/thumb", photo_thumb)
