"""The web UI in Chromium at 1366×768: agent desk with screen pop, wallboard, cases, worklists.

A real `hotline serve`, a registered auto-answering baresip as the agent's phone, sipp as
the citizen, and Debian's chromium driven by Playwright (tests/e2e/browser.py). Every
step leaves a screenshot in test-artifacts/screenshots/.
"""

from __future__ import annotations

import re
import threading

import pytest
from playwright.sync_api import expect

from tests.e2e.browser import MS, assert_fits_width, cjk_glyphs_render, login, new_page, screenshot
from tests.e2e.peers.pcap import build_rtp_pcap
from tests.e2e.peers.runner import Baresip, run_sipp

pytestmark = pytest.mark.e2e

class Caller:
    """sipp dialling 12319 and pressing 1, in a thread; the call lasts `seconds`."""

    def __init__(self, server, tmp_path, number: str, seconds: int = 12):
        self.pcap = tmp_path / f"caller-{number}.pcap"
        build_rtp_pcap(self.pcap, pcm_8k_mono=bytes(8000 * 2 * seconds), dtmf=[(0.5, "1")])
        self.server, self.number, self.result = server, number, None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.result = run_sipp("call_report", target=self.server.sip_target, caller=self.number,
                               pcap=self.pcap, timeout=60)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.thread.join(timeout=70)  # run_sipp kills sipp after its own timeout

    def finished_ok(self) -> bool:
        self.thread.join(timeout=70)
        return self.result is not None and self.result.ok


def _ready_agent_desk(browser, server, shot_prefix: str):
    """agent1 logs in on /desk with its WebSocket open and clicks 示闲."""
    page = new_page(browser)
    with page.expect_websocket(timeout=10 * MS):
        login(page, server.web_url, "agent1", next="/desk")
    page.click("#btn-ready")
    expect(page.locator("#agent-status")).to_have_attribute("data-status", "ready", timeout=10 * MS)
    expect(page.locator("#agent-status")).to_have_text("示闲")
    assert page.locator("#pop").is_hidden() and page.locator("#idle").is_visible()
    screenshot(page, f"{shot_prefix}-01-agent-ready")
    return page


def _wait_for_pop(page, server, phone: Baresip, caller: str) -> None:
    """The screen pop is shown with the caller's number (with the server's and phone's logs if not)."""
    try:
        expect(page.locator("#pop")).to_be_visible(timeout=40 * MS)
        expect(page.locator("#pop-caller")).to_contain_text(caller, timeout=5 * MS)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{server.log()}\n{phone.log_text()[-3000:]}") from None


def test_agent_answers_a_call_saves_the_case_and_the_supervisor_sees_it(desk_hotline, browser, tmp_path):
    """示闲 → caller presses 1 → phone rings, pop shows the number → case saved → wallboard and /cases show it."""
    server = desk_hotline
    caller = "13612345678"
    description = "幸福路与建设路交叉口井盖缺失，夜间行人易踩空，请尽快处理"
    with Baresip(user="1001", registrar=server.sip_target, password="hotline12319", answer_auto=True) as phone:
        phone.wait_log(r"200 OK|registered", timeout=10)
        desk = _ready_agent_desk(browser, server, "desk")
        assert cjk_glyphs_render(desk), "Chinese text renders as empty boxes: install fonts-wqy-microhei"
        assert_fits_width(desk)

        with Caller(server, tmp_path, caller) as call:
            _wait_for_pop(desk, server, phone, caller)
            phone.wait_event("CALL_ESTABLISHED", timeout=20)  # the agent's phone rang and answered
            assert desk.locator("#f-phone").input_value() == caller
            assert "1" in desk.locator("#pop-ivr").inner_text()
            assert desk.locator("#saved").is_hidden()
            screenshot(desk, "desk-02-screen-pop")
            desk.fill("#f-description", description)
            screenshot(desk, "desk-03-description-typed")
            assert call.finished_ok(), call.result and call.result.log_text[-2000:] + server.log()

        # The caller hung up: the desk shows wrap-up (话后处理) live, then the agent saves.
        expect(desk.locator("#agent-status")).to_have_attribute("data-status", "wrap_up", timeout=15 * MS)
        expect(desk.locator("#agent-status")).to_have_text("话后处理")
        desk.click("#case-form button[type=submit]")
        saved = desk.locator("#saved")
        try:
            saved.wait_for(state="visible", timeout=10 * MS)
        except Exception as exc:
            errors = desk.locator("#desk-message, .field-error").all_inner_texts()
            raise AssertionError(f"not saved: {errors}\n{server.log()[-3000:]}") from exc
        assert desk.locator("#saved-text").inner_text().strip() == "已登记案卷", saved.inner_text()
        number = desk.locator("#saved-link").inner_text().strip()
        assert re.fullmatch(r"\d{8}-\d{4}", number), saved.inner_text()
        assert desk.url.endswith("/desk") and desk.locator("#desk-message").is_hidden()
        # saving ends wrap-up: the agent is ready again, shown live
        expect(desk.locator("#agent-status")).to_have_attribute("data-status", "ready", timeout=10 * MS)
        screenshot(desk, "desk-04-case-saved")
        assert desk.js_errors == []

    [case] = server.wait_for_cases(reporter_phone=caller)
    assert case["number"] == number and case["description"] == description

    # The supervisor, in another browser context (own session), watches the wallboard.
    board = new_page(browser)
    with board.expect_websocket(timeout=10 * MS):
        login(board, server.web_url, "supervisor1", next="/wallboard")
    report = board.locator("#queues tbody tr[data-queue=report]")
    report.wait_for(timeout=10 * MS)
    cells = report.locator("td").all_inner_texts()
    assert cells[0] == "反映问题" and cells[3] == "1", cells  # 接通 1
    agent = board.locator("#agents tbody tr[data-agent=agent1]")
    assert agent.get_attribute("data-status") == "ready"
    agent_cells = agent.locator("td").all_inner_texts()
    assert agent_cells[1] == "1001" and agent_cells[2] == "示闲" and agent_cells[4] == "1", agent_cells
    today = server.api("/api/wallboard")[1]["cases_today"]  # the demo seed files some cases too
    assert today["total"] >= 1 and today["accepted"] >= 1, today
    expect(board.locator("#cases-today")).to_have_text(
        f"今日新增案卷 {today['total']} 件，其中已受理 {today['accepted']} 件")
    assert cjk_glyphs_render(board, "监控大屏坐席")
    assert_fits_width(board)
    screenshot(board, "desk-05-wallboard")

    board.goto(server.web_url.rstrip("/") + "/cases")
    row = board.locator(f"table.cases tr[data-number='{number}']")
    assert row.count() == 1, board.content()[:2000]
    assert description in row.inner_text() and caller in row.inner_text()
    assert_fits_width(board)
    screenshot(board, "desk-06-cases")

    with board.expect_navigation():
        row.locator(f"a:text-is('{number}')").click()
    assert board.locator("h1").first.inner_text().startswith(f"案卷 {number}")
    assert description in board.locator("dl.facts").inner_text()
    assert board.locator("audio").count() >= 1  # the call recording's player
    assert_fits_width(board)
    screenshot(board, "desk-07-case-page", full_page=True)
    assert board.js_errors == []


def test_a_bad_case_form_shows_the_error_next_to_the_field(desk_hotline, browser, tmp_path):
    """Empty 问题描述 or a bad 来电号码 gets a Chinese message beside that field; the desk stays, nothing is filed."""
    server = desk_hotline
    caller = "13700001111"
    with Baresip(user="1001", registrar=server.sip_target, password="hotline12319", answer_auto=True) as phone:
        phone.wait_log(r"200 OK|registered", timeout=10)
        desk = _ready_agent_desk(browser, server, "badform")
        with Caller(server, tmp_path, caller, seconds=8):
            _wait_for_pop(desk, server, phone, caller)
            desk.fill("#f-description", "   ")
            desk.click("#case-form button[type=submit]")
            error = desk.locator(".field-error[data-for=description]")
            expect(error).to_have_text("请填写问题描述", timeout=10 * MS)
            expect(error).to_be_visible()
            # "next to the field": right below the textarea, in the same form
            field_box = desk.locator("#f-description").bounding_box()
            error_box = error.bounding_box()
            assert 0 <= error_box["y"] - (field_box["y"] + field_box["height"]) < 40, (field_box, error_box)
            assert desk.locator("#desk-message").inner_text().strip() == "表单有误，请修改后再保存"
            assert desk.url.endswith("/desk")
            assert desk.locator("#pop").is_visible() and desk.locator("#saved").is_hidden()
            assert desk.locator("#f-phone").input_value() == caller  # what was typed is kept
            assert desk.locator(".field-error[data-for=reporter_phone]").inner_text() == ""
            screenshot(desk, "badform-02-empty-description")

            # A bad number instead: its own message beside the number; the old one is gone.
            desk.fill("#f-phone", "12ab")
            desk.fill("#f-description", "路灯不亮")
            desk.click("#case-form button[type=submit]")
            phone_error = desk.locator(".field-error[data-for=reporter_phone]")
            expect(phone_error).to_contain_text("数字", timeout=10 * MS)
            expect(phone_error).to_be_visible()
            expect(error).to_have_text("")
            assert desk.locator("#f-description").input_value() == "路灯不亮"
            assert desk.url.endswith("/desk") and desk.locator("#saved").is_hidden()
            screenshot(desk, "badform-03-bad-phone")
    assert server.api(f"/api/cases?reporter_phone={caller}")[1] == []
    assert desk.js_errors == []


def _seed_cases(server) -> list[dict]:
    """An urgent report with a long address (on 值班长's 待立案 list) and an ordinary one."""
    made = []
    for body in (
        {"description": "人民路步行街东段至解放路口沿线多处窨井盖破损下陷，已有电动车摔倒，"
                        "市民要求立即设置警示并安排抢修，同时排查周边雨水井" * 2,
         "address": "青山区人民路188号步行街东入口对面（解放路与人民路交叉口西北角）",
         "reporter_phone": "13812345678", "case_type": "urgent", "kind": "report"},
        {"description": "小区门口占道经营", "address": "和平街12号", "reporter_phone": "13900001111"},
    ):
        status, case = server.post("/api/cases", body)
        assert status == 201, case
        made.append(case)
    return made


def test_worklists_and_a_case_page_fit_1366_for_the_shift_lead(desk_hotline, browser):
    """shiftlead1's 待办, the 待立案 list, a case page and its 立案 form have no horizontal scrollbar at 1366×768."""
    server = desk_hotline
    urgent, _ = _seed_cases(server)
    page = new_page(browser)
    login(page, server.web_url, "shiftlead1", next="/worklists")
    cards = page.locator("ul.wl-cards li.wl-card")
    assert cards.count() >= 1, page.content()[:2000]
    assert cjk_glyphs_render(page, "待办立案")
    assert_fits_width(page)
    screenshot(page, "worklists-01-overview")

    register = page.locator("li.wl-card a", has_text="待立案")
    assert register.count() == 1, cards.all_inner_texts()
    assert int(register.locator(".wl-count").inner_text()) >= 1
    with page.expect_navigation():
        register.click()
    row = page.locator(f"table.worklist tr[data-case-id='{urgent['id']}']")
    assert row.count() == 1 and "突发" in row.inner_text()
    assert_fits_width(page)
    screenshot(page, "worklists-02-register-list")

    with page.expect_navigation():
        row.locator(f"a:text-is('{urgent['number']}')").click()
    assert page.locator("h1").first.inner_text().startswith(f"案卷 {urgent['number']}")
    assert_fits_width(page)
    screenshot(page, "worklists-03-case-page", full_page=True)

    register_button = page.locator("section.case-actions a.btn", has_text=re.compile("^立案$"))
    assert register_button.count() == 1, page.locator("section.case-actions").inner_text()
    with page.expect_navigation():
        register_button.click()
    assert page.url.endswith(f"/cases/{urgent['id']}/actions/register"), page.url
    assert page.locator("form.action-form").count() == 1
    assert_fits_width(page)
    screenshot(page, "worklists-04-action-form")
    assert page.js_errors == []
