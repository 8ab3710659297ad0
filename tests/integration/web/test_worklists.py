"""Role worklists and workflow action forms (web/worklists.py) through aiohttp's test client on SQLite."""

from __future__ import annotations

import html
import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from case_core.adapters import migrate
from case_core.adapters.sqlalchemy_repo import SqlRepository, make_engine, sync_url
from case_core.service import CaseService
from tests.integration.case_core.test_workflow_orm import demo_reference
from web import worklists
from callcenter.bootstrap import install_web_stores
from web.app import WebContext, create_app

NOW = datetime(2026, 11, 23, 10, 0)  # a Monday, local time
TZ = ZoneInfo("Asia/Shanghai")
ROLES = {"agent1": "agent", "shiftlead1": "shift_lead", "dispatcher1": "dispatcher", "dept1": "department",
         "inspector1": "inspector", "commander1": "commander", "admin": "admin"}


@pytest.fixture
async def clock():
    return [NOW]


@pytest.fixture
async def ctx(sqlite_url, clock):
    migrate.upgrade(sync_url(sqlite_url))
    repo = SqlRepository(make_engine(sqlite_url))
    for name, role in ROLES.items():  # department staff are bound to a department (else they see nothing)
        await repo.create_user(username=name, password="pw-123456", role=role, now=NOW,
                               department="lighting" if role == "department" else None)
    service = CaseService(repo, reference=demo_reference())
    yield WebContext(repo=repo, service=service, secret=b"k" * 32,
                     now=lambda: clock[0].replace(tzinfo=TZ).timestamp())
    await repo.close()


@pytest.fixture
async def client(aiohttp_client, ctx):
    app = create_app(ctx)
    install_web_stores(app, ctx.repo.engine)
    return await aiohttp_client(app)


async def login(client, user):
    resp = await client.post("/login", data={"username": user, "password": "pw-123456", "next": "/worklists"})
    assert resp.status == 200, await resp.text()


def hidden(page: str, name: str) -> str:
    return re.search(rf'name="{name}" value="([^"]*)"', page).group(1)


async def submit(client, case_id, action, fields=None, *, version=None, token=True):
    """Open the action's form, fill it in and post it; returns (status, location, html)."""
    form = await client.get(f"/cases/{case_id}/actions/{action}")
    page = await form.text()
    assert form.status == 200, page
    data = {"expected_version": version if version is not None else hidden(page, "expected_version"),
            **(fields or {})}
    if token:
        data["csrf_token"] = hidden(page, "csrf_token")
    resp = await client.post(f"/cases/{case_id}/actions/{action}", data=data, allow_redirects=False)
    return resp.status, resp.headers.get("Location"), html.unescape(await resp.text())


async def new_case(ctx, *, at=NOW, **kw):
    args = {"channel": "inspector_app", "description": "长江路污水井盖缺失", "address": "长江路12号",
            "category": "component:01002", "actor": "agent1", "role": "agent", "now": at, **kw}
    return await ctx.service.create_case(**args)


async def test_a_role_sees_only_its_own_worklists_with_counts(client, ctx):
    """An agent sees 待受理 with its count but not 待派遣; a dispatcher's list of another role is a 403."""
    await new_case(ctx, channel="12319")
    await login(client, "agent1")
    page = await (await client.get("/worklists")).text()
    assert "待受理" in page and "待回访" in page and "待派遣" not in page
    assert re.search(r'data-key="accepted">1<', page)
    await login(client, "dispatcher1")
    page = await (await client.get("/worklists")).text()
    assert "待派遣" in page and "待受理" not in page
    resp = await client.get("/worklists/accepted")
    assert resp.status == 403 and "不是派遣员的待办" in await resp.text()
    assert (await client.get("/worklists/nonsense")).status == 404


async def test_admin_sees_every_list_and_a_status_finds_its_list(client, ctx):
    """Admin gets all lists; /worklists/dispatched shows the 待处置 list that holds that status."""
    await login(client, "admin")
    page = await (await client.get("/worklists")).text()
    for label in ("待受理", "待核实", "待立案", "待派遣", "待处置", "待核查", "待结案", "待回访"):
        assert label in page
    page = await (await client.get("/worklists/dispatched")).text()
    assert "待处置" in page and "此列表暂无案卷" in page


async def test_case_driven_through_the_html_forms_by_each_role(client, ctx):
    """register → dispatch → report_done → check → close, each through its form as its role, ends 已结案."""
    case = await new_case(ctx)
    steps = [("shiftlead1", "register", {"case_type": "normal"}),
             ("dispatcher1", "dispatch", {"department": "lighting"}),
             ("dept1", "report_done", {"result": "井盖已更换",
                                       "photos": "https://img.example/1.jpg\nhttps://img.example/2.jpg"}),
             ("inspector1", "check", {"check_result": "passed"}),
             ("shiftlead1", "close", {"comment": "处置到位"})]
    for user, action, fields in steps:
        await login(client, user)
        listed = await (await client.get("/worklists")).text()
        assert re.search(r'data-key="\w+">1<', listed), (user, action)
        status, location, body = await submit(client, case.id, action, fields)
        assert status == 303, (action, body)
        assert location == f"/cases/{case.id}?done={action}"
    page = await (await client.get(location)).text()
    assert "“结案”已完成" in page and "已结案" in page
    assert "井盖已更换" in page and 'href="https://img.example/2.jpg"' in page
    view = await ctx.service.get_case(case.id)
    assert view.status == "closed" and view.department == "lighting"
    assert [h.actor for h in view.history][1:] == ["shiftlead1", "dispatcher1", "dept1", "inspector1", "shiftlead1"]


async def test_wrong_role_is_refused_in_chinese_with_403(client, ctx):
    """A dispatcher opening or posting 立案 gets 403 with the role message, and the case stays as it was."""
    case = await new_case(ctx)
    await login(client, "dispatcher1")
    form = await client.get(f"/cases/{case.id}/actions/register")
    text = await form.text()
    assert form.status == 403 and "“派遣员”无权“立案”（仅限值班长）" in html.unescape(text)
    assert "<form method=\"post\"" not in text
    await login(client, "shiftlead1")
    token_page = await (await client.get(f"/cases/{case.id}/actions/register")).text()
    await login(client, "dispatcher1")
    resp = await client.post(f"/cases/{case.id}/actions/register",
                             data={"expected_version": "1", "csrf_token": hidden(token_page, "csrf_token")})
    assert resp.status == 403
    assert (await ctx.service.get_case(case.id)).status == "accepted"


async def test_missing_field_rerenders_the_form_with_the_field_named(client, ctx):
    """处置反馈 without photos is a 422 naming 照片 in Chinese, marking that input and keeping what was typed."""
    case = await new_case(ctx)
    await ctx.service.act(case.id, "register", actor="shiftlead1", role="shift_lead", now=NOW)
    await ctx.service.act(case.id, "dispatch", actor="dispatcher1", role="dispatcher",
                          fields={"department": "lighting"}, now=NOW)
    await login(client, "dept1")
    status, _, body = await submit(client, case.id, "report_done", {"result": "已清理完毕"})
    assert status == 422
    assert "“处置反馈”必须填写“照片”" in body
    assert re.search(r'class="field has-error">\s*<label for="f-photos"', body)
    assert "已清理完毕" in body
    assert (await ctx.service.get_case(case.id)).status == "dispatched"


async def test_bad_deadline_is_a_clear_422(client, ctx):
    """A deadline in the past is refused with the Chinese field label, not a crash."""
    case = await new_case(ctx)
    await ctx.service.act(case.id, "register", actor="shiftlead1", role="shift_lead", now=NOW)
    await login(client, "dispatcher1")
    status, _, body = await submit(client, case.id, "dispatch", {"department": "lighting",
                                                                   "handle_deadline": "2020-01-01T10:00"})
    assert status == 422 and "“处置时限”时限必须晚于当前时间" in body


async def test_version_conflict_says_someone_else_changed_it(client, ctx):
    """A form opened before another user's change posts into a 409 and changes nothing."""
    case = await new_case(ctx)
    await ctx.service.act(case.id, "register", actor="shiftlead1", role="shift_lead", now=NOW)
    await login(client, "dispatcher1")
    form = await (await client.get(f"/cases/{case.id}/actions/dispatch")).text()
    await ctx.service.act(case.id, "urge", actor="commander1", role="commander", fields={"reason": "尽快"}, now=NOW)
    resp = await client.post(f"/cases/{case.id}/actions/dispatch", allow_redirects=False,
                             data={"expected_version": hidden(form, "expected_version"),
                                   "csrf_token": hidden(form, "csrf_token"), "department": "lighting"})
    assert resp.status == 409 and "案卷已被他人修改，请刷新后重试" in await resp.text()
    view = await ctx.service.get_case(case.id)
    assert view.status == "registered" and view.department is None


async def test_form_post_without_the_csrf_token_is_refused(client, ctx):
    """A cookie-authenticated post lacking the form token is a 403 and does nothing."""
    case = await new_case(ctx)
    await login(client, "shiftlead1")
    status, _, body = await submit(client, case.id, "register", token=False)
    assert status == 403 and "安全校验失败" in body
    assert (await ctx.service.get_case(case.id)).status == "accepted"


async def test_worklist_is_urgent_first_then_oldest_and_pages(client, ctx, monkeypatch):
    """待受理 lists the urgent case first, then the rest oldest first, over pages of PAGE_SIZE."""
    old = await new_case(ctx, channel="12319", at=NOW - timedelta(hours=3), description="最早的")
    mid = await new_case(ctx, channel="12319", at=NOW - timedelta(hours=2), description="其次的")
    urgent = await new_case(ctx, channel="12319", at=NOW - timedelta(hours=1), description="突发的",
                            case_type="urgent")
    monkeypatch.setattr(worklists, "PAGE_SIZE", 2)
    await login(client, "agent1")
    first = await (await client.get("/worklists/accepted")).text()
    assert re.findall(r'data-case-id="(\d+)"', first) == [str(urgent.id), str(old.id)]
    assert "第 1 / 2 页" in first
    second = await (await client.get("/worklists/accepted?page=2")).text()
    assert re.findall(r'data-case-id="(\d+)"', second) == [str(mid.id)]


async def test_worklist_colours_deadlines_on_time_and_overdue(client, ctx, clock):
    """A routed 派遣 deadline (1 working hour) shows 按期, then 黄灯 near it, then 超期 once passed."""
    case = await new_case(ctx)
    await ctx.service.act(case.id, "register", actor="shiftlead1", role="shift_lead", now=NOW)
    await login(client, "dispatcher1")
    page = await (await client.get("/worklists/registered")).text()
    assert 'class="dl dl-on_time"' in page
    clock[0] = NOW + timedelta(minutes=50)
    page = await (await client.get("/worklists/registered")).text()
    assert 'class="dl dl-yellow"' in page
    clock[0] = NOW + timedelta(days=10)
    await login(client, "dispatcher1")  # the session from ten days ago has expired
    page = await (await client.get("/worklists/registered")).text()
    assert 'class="dl dl-overdue"' in page and "超期 1 件" in page


async def test_case_page_shows_deadlines_and_the_roles_actions(client, ctx):
    """The case page lists the step deadlines with their colour and only the viewer's actions as form links."""
    case = await new_case(ctx)
    await ctx.service.act(case.id, "register", actor="shiftlead1", role="shift_lead", now=NOW)
    await login(client, "dispatcher1")
    page = await (await client.get(f"/cases/{case.id}")).text()
    assert f'href="/cases/{case.id}/actions/dispatch"' in page
    assert f'/cases/{case.id}/actions/register"' not in page
    assert "时限" in page and 'class="dl dl-on_time">按期<' in page
    await login(client, "inspector1")
    page = await (await client.get(f"/cases/{case.id}")).text()
    # An inspector may only add a remark here: no step of the workflow is theirs now.
    assert f'/cases/{case.id}/actions/note"' in page
    assert f'/cases/{case.id}/actions/dispatch"' not in page


async def test_pending_send_back_waits_in_the_dispatchers_approvals(client, ctx):
    """A department's 申请回退 puts the case in the dispatcher's 待审批, not the commander's."""
    case = await new_case(ctx)
    await ctx.service.act(case.id, "register", actor="shiftlead1", role="shift_lead", now=NOW)
    await ctx.service.act(case.id, "dispatch", actor="dispatcher1", role="dispatcher",
                          fields={"department": "lighting"}, now=NOW)
    await login(client, "dept1")
    status, _, body = await submit(client, case.id, "apply_send_back", {"reason": "不属于本单位职责"})
    assert status == 303, body
    await login(client, "dispatcher1")
    page = await (await client.get("/worklists/approvals")).text()
    assert re.findall(r'data-case-id="(\d+)"', page) == [str(case.id)]
    await login(client, "commander1")
    page = await (await client.get("/worklists/approvals")).text()
    assert re.findall(r'data-case-id="(\d+)"', page) == []


async def dispatched_to(ctx, *departments: str) -> dict[str, int]:
    """One registered case dispatched to each department: department → case id."""
    ids = {}
    for dept in departments:
        case = await new_case(ctx)
        await ctx.service.act(case.id, "register", actor="shiftlead1", role="shift_lead", now=NOW)
        await ctx.service.act(case.id, "dispatch", actor="dispatcher1", role="dispatcher",
                              fields={"department": dept}, now=NOW)
        ids[dept] = case.id
    return ids


async def test_handling_list_narrows_to_one_department(client, ctx):
    """待处置?department=lighting shows only the case dispatched to 路灯管理所."""
    ids = await dispatched_to(ctx, "lighting", "sanitation")
    await login(client, "admin")
    page = await (await client.get("/worklists/handling")).text()
    assert len(re.findall(r'data-case-id="(\d+)"', page)) == 2 and "路灯管理所" in page
    page = await (await client.get("/worklists/handling?department=lighting")).text()
    assert re.findall(r'data-case-id="(\d+)"', page) == [str(ids["lighting"])]


async def test_department_staff_see_and_act_on_their_own_department_only(client, ctx):
    """A department user tied to 路灯管理所 (`hotline user add --department lighting`) sees only
    that department's 待处置 cases whatever the query says, handles them, and gets a 403 with
    the reason on a case dispatched to another department (form and JSON API alike)."""
    await ctx.repo.create_user(username="lamp1", password="pw-123456", role="department",
                               department="lighting", now=NOW)
    ids = await dispatched_to(ctx, "lighting", "sanitation")
    await login(client, "lamp1")
    for query in ("", "?department=sanitation"):
        page = await (await client.get(f"/worklists/handling{query}")).text()
        assert re.findall(r'data-case-id="(\d+)"', page) == [str(ids["lighting"])], query
    status, _, body = await submit(client, ids["lighting"], "handle")
    assert status == 303, body
    # Another department's case: not even its form opens, and a post is refused (least privilege).
    assert (await client.get(f"/cases/{ids['sanitation']}/actions/handle")).status == 403
    resp = await client.post(f"/cases/{ids['sanitation']}/actions/handle", data={"expected_version": "1"})
    assert resp.status == 403
    resp = await client.post(f"/api/cases/{ids['sanitation']}/actions/handle", json={},
                             headers={"X-Requested-With": "fetch"})
    assert resp.status == 403 and (await resp.json())["error"] == "not_permitted"
    assert (await ctx.service.get_case(ids["sanitation"])).status == "dispatched"
    # …and cannot read it either: neither the case page nor the JSON detail (photos,
    # transcripts); their own department's case reads as before.
    assert (await client.get(f"/cases/{ids['sanitation']}")).status == 403
    resp = await client.get(f"/api/cases/{ids['sanitation']}")
    assert resp.status == 403 and (await resp.json())["error"] == "forbidden"
    assert (await client.get(f"/cases/{ids['lighting']}")).status == 200
    assert (await client.get(f"/api/cases/{ids['lighting']}")).status == 200
    # A department user bound to no department (made before `user add` refused it) sees no
    # case at all (fail closed), and the pages and the API say why.
    await ctx.repo.create_user(username="nodept", password="pw-123456", role="department", now=NOW)
    resp = await client.post("/login", data={"username": "nodept", "password": "pw-123456"}, allow_redirects=False)
    assert resp.status == 302  # logging in works (and logging out): there is just nothing to see
    resp = await client.get("/worklists/handling")
    page = await resp.text()
    assert resp.status == 403 and "账号未绑定部门" in page and "data-case-id" not in page
    resp = await client.get(f"/cases/{ids['lighting']}")
    assert resp.status == 403 and "账号未绑定部门" in await resp.text()
    for path in ("/api/cases", f"/api/cases/{ids['lighting']}", "/api/geo/cases"):
        resp = await client.get(path)
        body = await resp.json()
        assert resp.status == 403 and body["error"] == "no_department" and "账号未绑定部门" in body["message"], path
    for path in (f"/api/cases/{ids['lighting']}/photos", f"/api/cases/{ids['lighting']}/transcript"):
        assert (await client.get(path)).status == 403, path


async def test_case_page_names_people_departments_and_category_never_their_codes(client, ctx):
    """The case page shows who acted by display name, the department and inspector of each step
    by name and the category kind in Chinese: no username, department code or 'matter' on it."""
    await ctx.repo.create_user(username="inspector9", password="pw-123456", role="inspector", now=NOW,
                               display_name="周监督")
    for name, shown in (("shiftlead1", "陈值班长"), ("dispatcher1", "刘派遣")):
        await ctx.repo.update_user(name, display_name=shown)
    case = await new_case(ctx, category="matter:01002")
    await ctx.service.act(case.id, "send_verify", actor="agent1", role="agent", now=NOW,
                          fields={"inspector": "inspector9"})
    await ctx.service.act(case.id, "verify", actor="inspector9", role="inspector", now=NOW,
                          fields={"verify_result": "confirmed"})
    await ctx.service.act(case.id, "register", actor="shiftlead1", role="shift_lead", now=NOW)
    await ctx.service.act(case.id, "dispatch", actor="dispatcher1", role="dispatcher", now=NOW,
                          fields={"department": "lighting"})
    await login(client, "shiftlead1")
    page = html.unescape(await (await client.get(f"/cases/{case.id}")).text())
    lighting = (await ctx.service.reference()).departments.get("lighting").name
    timeline = page.split("处理过程", 1)[1]
    assert f"处置部门：{lighting}" in timeline and "：lighting<" not in timeline
    assert "监督员：周监督" in timeline and "inspector9" not in timeline
    assert "· 周监督（监督员）" in timeline and "· 刘派遣（派遣员）" in timeline and "shiftlead1" not in timeline
    category = re.search(r'<dd id="case-category">(.*?)</dd>', page, re.S).group(1)
    assert "事项" in category and "matter" not in category
    assert not re.search(r"坐标", page)
