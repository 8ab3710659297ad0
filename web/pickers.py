"""What the pickers offer, so that nobody types a code: categories, departments, places,
grid cells, inspectors and transfer targets, each as ranked JSON for `static/picker.js`.

- `GET /api/categories?q=` (served by `web.case_api`, ranked here): GB/T 47678.5 by name,
  pinyin (``jinggai``), initials (``jg``), class name or code.
- `GET /api/reference/departments?category=&grid_cell=&case_type=`: every department, the
  ones the routing rules name for that category and grid cell first (``suggested``).
- `GET /api/reference/places?q=`: gazetteer places (name, alias or a whole address) with
  their grid cell.
- `GET /api/reference/grid_cells?q=`: grid cells by name or code, with the inspector.
- `GET /api/reference/inspectors?grid_cell=&case_id=`: inspector accounts, with `case_id` those
  on duty (城管通 position) nearest to the case first (`distance_m`), then the cell's own.
- `GET /api/desk/transfer-targets`: queues (with callers waiting), agents with their
  state, and numbers recently transferred to.

Departments, places and grid cells come from the imported reference data; with none imported
they come from the demo district (as the desk's 识别 does), so a fresh `make run` has
something to pick.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from aiohttp import web

from case_core.domain.category_search import CategoryIndex
from web.app import CTX, USER, api_auth, json_error

# Names as UTF-8, not \\u escapes: what a person reading the answer (curl, the browser's network tab) sees.
_json = functools.partial(web.json_response, dumps=lambda o: json.dumps(o, ensure_ascii=False))

LIMIT = 30
QUEUE_LABELS = {"report": "反映问题", "consult": "咨询", "general": "人工服务"}
AGENT_STATE_LABELS = {"logged_out": "未签入", "ready": "示闲", "ringing": "振铃中", "on_call": "通话中",
                      "wrap_up": "话后处理", "paused": "示忙", "dialing": "外呼中"}

_index_cache: dict[int, tuple[Any, CategoryIndex]] = {}


def category_index(directory) -> CategoryIndex:
    """The pinyin index of a category directory, built once per loaded directory."""
    key = id(directory)
    hit = _index_cache.get(key)
    if hit is None or hit[0] is not directory:
        _index_cache.clear()  # the service reloads reference data now and then; keep the newest
        hit = (directory, CategoryIndex(directory))
        _index_cache[key] = hit
    return hit[1]


def _limit(request: web.Request) -> int:
    try:
        return max(1, min(100, int(request.query.get("limit", LIMIT))))
    except ValueError:
        return LIMIT


@functools.lru_cache(maxsize=1)
def _demo_departments() -> dict:
    from case_core.suggest import DEMO_DATA
    from case_core.domain.reference import load_departments

    depts, _ = load_departments(DEMO_DATA / "departments.csv")
    return {d.code: d for d in depts}


@functools.lru_cache(maxsize=1)
def _demo_places_and_cells() -> tuple[tuple, dict]:
    from case_core.suggest import DEMO_DATA
    from case_core.domain.reference import load_gazetteer, load_grid_cells

    places, _ = load_gazetteer(DEMO_DATA / "gazetteer.csv")
    cells, _ = load_grid_cells(DEMO_DATA / "grid_cells.csv")
    return tuple(places), {c.grid_id: c for c in cells}


async def places_and_cells(request: web.Request) -> tuple[tuple, dict]:
    ref = await request.app[CTX].service.reference()
    places = tuple(ref.gazetteer.places)
    cells = dict(ref.grid_cells)
    if not places and not cells:
        return _demo_places_and_cells()
    return places, cells


def _cell_json(cell, grid_id: str) -> dict[str, Any]:
    return {"grid_cell": grid_id, "grid_name": cell.name if cell else "", "inspector": cell.inspector if cell else ""}


@api_auth
async def api_places(request: web.Request) -> web.Response:
    q = request.query.get("q", "").strip()
    places, cells = await places_and_cells(request)
    ranked = []
    for order, p in enumerate(places):
        names = (p.name, *p.aliases)
        if not q:
            tier = 4
        elif q in names:
            tier = 0
        elif any(n.startswith(q) for n in names):
            tier = 1
        elif any(q in n for n in names):
            tier = 2
        elif any(n in q for n in names):  # a whole address that mentions it: the longest name first
            ranked.append(((3, -max(len(n) for n in names if n in q), order), p))
            continue
        else:
            continue
        ranked.append(((tier, len(p.name), order), p))
    ranked.sort(key=lambda r: r[0])
    out = [{"name": p.name, "kind": p.kind, "aliases": list(p.aliases), **_cell_json(cells.get(p.grid_id), p.grid_id)}
           for _, p in ranked[:_limit(request)]]
    return _json(out)


@api_auth
async def api_grid_cells(request: web.Request) -> web.Response:
    q = request.query.get("q", "").strip()
    _, cells = await places_and_cells(request)
    out = [_cell_json(c, grid_id) for grid_id, c in sorted(cells.items())
           if not q or q in c.name or grid_id.startswith(q)]
    return _json(out[:_limit(request)])


@api_auth
async def api_departments(request: web.Request) -> web.Response:
    ref = await request.app[CTX].service.reference()
    kind = code = None
    category = request.query.get("category", "")
    if ":" in category:
        kind, code = category.split(":", 1)
    grid = request.query.get("grid_cell") or None
    case_type = request.query.get("case_type") or "normal"
    suggested: list[str] = []
    for rule in ref.routing.rules:  # most specific first
        if rule.department and rule.matches(kind, code, grid, case_type) and rule.department not in suggested:
            suggested.append(rule.department)
    rank = {c: i for i, c in enumerate(suggested)}
    known = ref.departments or _demo_departments()  # none imported: the demo district's
    depts = sorted(known.values(), key=lambda d: (rank.get(d.code, len(rank)), d.code))
    return _json({
        "suggested": suggested[0] if suggested else None,
        "departments": [{"code": d.code, "name": d.name, "suggested": d.code in rank, "phone": d.phone}
                        for d in depts],
    })


@api_auth
async def api_inspectors(request: web.Request) -> web.Response:
    _, cells = await places_and_cells(request)
    cell = cells.get(request.query.get("grid_cell", ""))
    own = cell.inspector if cell else ""
    users = [u for u in await request.app[CTX].repo.list_users() if u.role == "inspector"]
    # With `case_id`: inspectors on duty (a recent position from 城管通) nearest to the case first.
    near = await _inspector_distances(request, request.query.get("case_id", ""))
    users.sort(key=lambda u: (u.username not in near, near.get(u.username, 0), u.username != own, u.username))
    return _json([{"username": u.username, "name": u.display_name or u.username,
                               "suggested": u.username == own, "on_duty": u.username in near,
                               "distance_m": near.get(u.username)} for u in users])


async def _inspector_distances(request: web.Request, case_id: str) -> dict[str, int]:
    """username → metres from the case (its position, else its cell's centre) for inspectors on duty."""
    if not case_id.isdigit():
        return {}
    from case_core.views import NotFound
    from web.field import field_service, position_max_age_s

    ctx = request.app[CTX]
    try:
        case = await ctx.service.get_case(int(case_id))
    except NotFound:
        return {}
    lat, lon = case.lat, case.lon
    ref = await ctx.service.reference()
    if (lat is None or lon is None) and case.grid_cell and ref.geo is not None and ref.geo.centre(case.grid_cell):
        lon, lat = ref.geo.centre(case.grid_cell)
    if lat is None or lon is None:
        return {}
    from web.case_api import local_now

    found = await field_service(request).nearest_inspectors(lat, lon, now=local_now(request),
                                                            max_age_s=position_max_age_s())
    return {p["username"]: p["distance_m"] for p in found}


@api_auth
async def api_transfer_targets(request: web.Request) -> web.Response:
    from web.desk import DESK_ROLES  # it lists outside numbers dialled lately: only for those who transfer

    if request[USER].role not in DESK_ROLES:
        return json_error(403, "forbidden", "只有受理员、值班长或班长可以查看转接目标")
    desk = request.app[CTX].desk
    if desk is None or desk.acd is None:
        return _json({"queues": [], "agents": [], "numbers": []})
    state = desk.acd.state
    names = {u.username: (u.display_name or u.username) for u in await request.app[CTX].repo.list_users()}
    queues = [{"name": q, "label": QUEUE_LABELS.get(q, q), "waiting": len(state.queue_entries(q))}
              for q in state.config.queues]
    agents = [{"agent": a.id, "name": names.get(a.id, a.id), "extension": a.extension, "status": a.status,
               "status_label": AGENT_STATE_LABELS.get(a.status, a.status)}
              for a in sorted(state.agents.values(), key=lambda a: (a.status != "ready", a.id))]
    numbers: list[str] = []
    for event in reversed(list(desk.acd.log)):
        detail = getattr(event, "detail", "") or ""
        if getattr(event, "kind", "") == "transfer" and detail.startswith("number:"):
            number = detail.split(":", 1)[1]
            if number not in numbers:
                numbers.append(number)
        if len(numbers) >= 8:
            break
    return _json({"queues": queues, "agents": agents, "numbers": numbers})


def setup(app: web.Application) -> None:
    app.router.add_get("/api/reference/departments", api_departments)
    app.router.add_get("/api/reference/places", api_places)
    app.router.add_get("/api/reference/grid_cells", api_grid_cells)
    app.router.add_get("/api/reference/inspectors", api_inspectors)
    app.router.add_get("/api/desk/transfer-targets", api_transfer_targets)
