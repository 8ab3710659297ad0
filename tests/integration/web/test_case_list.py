"""Case list filters, sorting and paging in the URL (web/case_list.py) through aiohttp's test client."""

from __future__ import annotations

import re
from datetime import date, timedelta

from sqlalchemy import update

from case_core.adapters import orm
from tests.integration.web.test_worklists import NOW, client, clock, ctx, login, new_case  # noqa: F401
from web.case_list import PAGE_SIZE, ListQuery, parse_query


def ids(page: str) -> list[int]:
    return [int(x) for x in re.findall(r'<tr data-case-id="(\d+)"', page)]


async def page(client, url: str) -> str:
    resp = await client.get(url)
    text = await resp.text()
    assert resp.status == 200, text
    return text


def test_a_query_survives_the_round_trip_through_its_url():
    lq = parse_query({"status": "dispatched,handling", "category": "component:01002", "department": "lighting",
                      "deadline": "yellow", "channel": "12319", "from": "2026-11-01", "to": "2026-11-30",
                      "q": "井盖", "sort": "due", "dir": "desc", "page": "3"})
    assert lq.errors == () and lq.date_from == date(2026, 11, 1) and lq.status == ("dispatched", "handling")
    assert parse_query(lq.params()) == lq
    assert lq.url("/cases", page=1).count("page=") == 0
    assert "dir=asc" in lq.sort_url("/cases", "due") and "sort=number" in lq.sort_url("/cases", "number")
    assert parse_query({}) == ListQuery() and ListQuery().url("/cases") == "/cases"
    bad = parse_query({"status": "nonsense", "deadline": "purple", "from": "2026-13-01", "sort": "x"})
    assert len(bad.errors) == 3 and bad.status == () and bad.deadline == "" and bad.sort == "created"


async def test_filters_by_status_channel_category_text_and_date_range(client, ctx):
    lamp = await new_case(ctx, channel="12319", category="component:03001", description="路灯不亮",
                          address="幸福路")
    cover = await new_case(ctx, channel="12319", description="井盖缺失")
    app_case = await new_case(ctx, channel="inspector_app", description="井盖松动")
    await ctx.service.act(cover.id, "send_verify", actor="agent1", role="agent", now=NOW)
    async with ctx.repo.engine.begin() as conn:
        await conn.execute(update(orm.cases).where(orm.cases.c.id == lamp.id)
                           .values(created_at=NOW - timedelta(days=10)))
    await login(client, "admin")
    assert ids(await page(client, "/cases")) == [app_case.id, cover.id, lamp.id]
    assert ids(await page(client, "/cases?channel=12319")) == [cover.id, lamp.id]
    assert ids(await page(client, "/cases?status=verifying")) == [cover.id]
    assert ids(await page(client, "/cases?status=accepted,verifying&channel=12319")) == [cover.id, lamp.id]
    assert ids(await page(client, "/cases?category=component:03001")) == [lamp.id]
    assert ids(await page(client, "/cases?q=井盖")) == [app_case.id, cover.id]
    day = NOW.date()
    assert ids(await page(client, f"/cases?from={day}&to={day}")) == [app_case.id, cover.id]
    assert ids(await page(client, f"/cases?to={day - timedelta(days=1)}")) == [lamp.id]
    text = await page(client, "/cases?channel=nowhere")
    assert ids(text) == [] and "没有符合条件的案卷" in text
    # the form shows the filters of the URL, so the view can be refined from a shared link
    text = await page(client, "/cases?status=verifying&channel=12319")
    assert '<option value="verifying" selected>' in text and '<option value="12319" selected>' in text


async def test_sortable_columns_and_paging_keep_the_filters(client, ctx):
    made = [await new_case(ctx, channel="12319", at=NOW + timedelta(minutes=i)) for i in range(PAGE_SIZE + 2)]
    await login(client, "admin")
    first = await page(client, "/cases?channel=12319")
    assert ids(first) == [c.id for c in reversed(made)][:PAGE_SIZE] and "共 32 件" in first
    assert 'href="/cases?channel=12319&amp;page=2"' in first
    second = await page(client, "/cases?channel=12319&page=2")
    assert ids(second) == [made[1].id, made[0].id]
    by_number = await page(client, "/cases?channel=12319&sort=number&dir=asc")
    assert ids(by_number)[:3] == [made[0].id, made[1].id, made[2].id]
    # the header of the sorted column flips the direction and keeps the filter
    assert 'href="/cases?channel=12319&amp;sort=number&amp;dir=desc"' in by_number
    assert ids(await page(client, "/cases?channel=12319&page=99")) == [made[1].id, made[0].id]  # last page


async def test_deadline_filter_finds_yellow_and_overdue_cases(client, ctx, clock):
    """A registered case's 派遣 step (1 working hour) is 黄灯 after 50 minutes and 超期 after 10 days."""
    registered = await new_case(ctx)
    await ctx.service.act(registered.id, "register", actor="shiftlead1", role="shift_lead", now=NOW)
    await new_case(ctx, channel="12319")  # no deadline running
    await login(client, "admin")
    assert ids(await page(client, "/cases?deadline=yellow")) == []
    clock[0] = NOW + timedelta(minutes=50)
    assert ids(await page(client, "/cases?deadline=yellow")) == [registered.id]
    assert ids(await page(client, "/cases?deadline=overdue")) == []
    clock[0] = NOW + timedelta(days=10)
    await login(client, "admin")
    text = await page(client, "/cases?deadline=overdue")
    assert ids(text) == [registered.id] and 'class="dl dl-overdue"' in text
    assert ids(await page(client, "/cases?deadline=yellow")) == []


async def test_department_staff_list_only_their_departments_cases(client, ctx):
    from tests.integration.web.test_worklists import dispatched_to

    by_dept = await dispatched_to(ctx, "lighting", "sanitation")
    await ctx.repo.update_user("dept1", department="lighting")
    await login(client, "dept1")
    assert ids(await page(client, "/cases")) == [by_dept["lighting"]]
    assert ids(await page(client, "/cases?department=sanitation")) == []


async def test_worklists_take_the_same_filters_and_sorting(client, ctx):
    """待处置 filtered by department and text, sorted by number; the pager and headers keep the filters."""
    from tests.integration.web.test_worklists import dispatched_to

    by_dept = await dispatched_to(ctx, "lighting", "sanitation", "lighting")
    await login(client, "admin")
    text = await page(client, "/worklists/handling?department=sanitation")
    assert ids(text) == [by_dept["sanitation"]]
    text = await page(client, "/worklists/handling?deadline=overdue")
    assert ids(text) == [] and "没有符合条件的案卷" in text
    text = await page(client, "/worklists/handling?sort=number&dir=desc")
    numbers = re.findall(r'<td class="case-no"><a href="/cases/\d+">([\d-]+)</a>', text)
    assert numbers == sorted(numbers, reverse=True) and len(numbers) == 3
    assert 'href="/worklists/handling?sort=number&amp;dir=asc"' in text
