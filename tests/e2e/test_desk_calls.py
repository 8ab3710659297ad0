"""The agent's desk during real calls, in Chromium (zh-CN, 1366×768): pickers, call control
from the browser, the richer pop with history, transfer, and the linked confirmation.

A real `hotline serve`; agents' phones are auto-answering baresip (1001, 1002); the citizen
is sipp, staying on the line until the hotline hangs up (`call_server_bye`), so a passing
sipp run proves the caller got the BYE. Screenshots go to test-artifacts/screenshots/.
"""

from __future__ import annotations

import re
import threading
import time

import pytest
from PIL import Image
from playwright.sync_api import expect

from tests.e2e.audio import best_correlation, wav_pcm
from tests.e2e.browser import MS, assert_fits_width, login, new_page, screenshot
from tests.e2e.peers.pcap import build_rtp_pcap
from tests.e2e.peers.runner import Baresip, run_sipp

pytestmark = pytest.mark.e2e

CALLER = "13611112222"


class StayingCaller:
    """sipp calls 12319, presses 1 and stays on the line until the hotline sends BYE."""

    def __init__(self, server, tmp_path, name: str, seconds: int = 90):
        self.pcap = tmp_path / f"{name}.pcap"
        build_rtp_pcap(self.pcap, pcm_8k_mono=bytes(8000 * 2 * seconds), dtmf=[(0.5, "1")])
        self.server, self.result = server, None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.result = run_sipp("call_server_bye", target=self.server.sip_target, caller=CALLER, pcap=self.pcap,
                               timeout=120)

    def got_bye(self, timeout: float = 20) -> bool:
        self.thread.join(timeout=timeout)
        return not self.thread.is_alive() and self.result is not None and self.result.ok


def _status(server, token: str) -> dict:
    return server.api("/api/desk/status", token=token)[1]


def _wait_status(server, token: str, wanted: str, timeout: float = 20.0) -> dict:
    body: dict = {}
    for _poll in range(round(timeout / 0.2)):
        body = _status(server, token)
        if body.get("status") == wanted:
            return body
        time.sleep(0.2)
    raise AssertionError(f"agent never became {wanted}: {body}\n{server.log()}")


def _heard_hold_tone(server, prompts_dir) -> float:
    """How well the only call recording's right channel (what the caller heard) matches the hold tone."""
    [wav] = list((server.dir / "recordings").rglob("*-call.wav"))
    right = wav_pcm(wav.read_bytes())[0][1::2]
    tone = wav_pcm((prompts_dir / "hold_tone.wav").read_bytes())[0]
    return best_correlation(right, tone)


def _pick(page, search_id: str, text: str, *, choose: int = 0, shot: str = ""):
    """Type into a picker, wait for its list, move down `choose` rows with the keyboard, Enter."""
    page.fill(f"#{search_id}", text)
    items = page.locator(f"#{search_id} ~ ul.picker-list li[role=option]")
    expect(items.first).to_be_visible(timeout=10 * MS)
    if shot:
        screenshot(page, shot)
    for _ in range(choose):
        page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    return items


def test_agent_uses_pickers_holds_and_hangs_up_from_the_browser_then_transfers_the_next_call(
        desk_hotline, browser, tmp_path, prompts_dir):
    """Pop → category by 井盖 and jinggai, place with grid cell → hold (caller hears the tone), mute,
    hang up (caller gets BYE) → saved with a linked number; the caller's next call pops with that
    call and case in its history, and is transferred to agent2 from the transfer target list."""
    server = desk_hotline
    token1, token2 = server.token_for("agent1"), server.token_for("agent2")
    with Baresip(user="1001", registrar=server.sip_target, password="hotline12319", answer_auto=True) as phone, \
            Baresip(user="1002", registrar=server.sip_target, password="hotline12319", answer_auto=True) as phone2:
        phone.wait_log(r"200 OK|registered", timeout=10)
        phone2.wait_log(r"200 OK|registered", timeout=10)
        desk = new_page(browser)
        with desk.expect_websocket(timeout=10 * MS):
            login(desk, server.web_url, "agent1", next="/desk")
        desk.click("#btn-ready")
        expect(desk.locator("#agent-status")).to_have_attribute("data-status", "ready", timeout=10 * MS)

        # -- first call ---------------------------------------------------------------------------
        first = StayingCaller(server, tmp_path, "first")
        expect(desk.locator("#pop-caller")).to_have_text(CALLER, timeout=40 * MS)
        phone.wait_event("CALL_ESTABLISHED", timeout=20)
        expect(desk.locator("#call-state")).to_have_text("通话中", timeout=10 * MS)
        expect(desk.locator("#call-timer")).not_to_have_text("00:00", timeout=5 * MS)  # the timer runs
        assert desk.locator("#pop-calls").inner_text().strip() == "无"
        screenshot(desk, "desk-calls-01-pop")

        # Category by Chinese: 部件 and 事项 with code and class name.
        items = _pick(desk, "f-category-search", "井盖", shot="desk-calls-02a-category-list")
        texts = items.all_inner_texts()
        assert len(texts) >= 10 and all("井盖" in t for t in texts), texts
        assert any("部件" in t for t in texts) and any("事项" in t for t in texts)
        assert re.search(r"\d{5} · 市政公用设施", texts[0]), texts[0]
        by_chinese = desk.locator("#f-category input[name=category]").input_value()
        # ... and by pinyin: the same list, picking the second match with the keyboard.
        desk.locator("#f-category-search").fill("")
        items = _pick(desk, "f-category-search", "jinggai", choose=1)
        assert items.all_inner_texts() == texts
        category = desk.locator("#f-category input[name=category]").input_value()
        assert re.fullmatch(r"(component|matter):\d{5}", category) and category != by_chinese
        assert "井盖" in desk.locator("#f-category-search").input_value()
        screenshot(desk, "desk-calls-02-category-picked")

        # Place from the gazetteer: its grid cell comes with it.
        _pick(desk, "f-address", "长江路")
        assert desk.locator("#f-place input[name=grid_cell]").input_value() == "320102001002001"
        expect(desk.locator("#f-place .picker-chosen")).to_contain_text("长江路东段")
        desk.fill("#f-description", "长江路人行道上井盖破损，有行人绊倒风险")

        # Hold from the browser: the caller hears the hold tone; then resume, mute, unmute.
        desk.click("#btn-hold")
        expect(desk.locator("#call-state")).to_have_text("保持中", timeout=5 * MS)
        expect(desk.locator("#btn-hold")).to_have_text("恢复")
        screenshot(desk, "desk-calls-03-on-hold")
        time.sleep(2.5)
        desk.click("#btn-hold")
        expect(desk.locator("#call-state")).to_have_text("通话中", timeout=5 * MS)
        desk.click("#btn-mute")
        expect(desk.locator("#btn-mute")).to_have_attribute("aria-pressed", "true", timeout=5 * MS)
        desk.click("#btn-mute")
        expect(desk.locator("#btn-mute")).to_have_text("静音", timeout=5 * MS)

        # The transfer panel opens under the call bar, not stretched over the page.
        desk.click("#btn-transfer-open")
        panel = desk.locator("#transfer-form")
        expect(panel).to_be_visible()
        expect(desk.locator("#transfer-target optgroup[label=坐席] option")).to_have_count(1, timeout=5 * MS)
        assert panel.bounding_box()["width"] < 1000, panel.bounding_box()
        assert desk.locator("#callbar").bounding_box()["width"] < 1000
        screenshot(desk, "desk-calls-04-transfer-panel")
        desk.click("#btn-transfer-open")

        # Hang up from the browser: the caller gets BYE, the agent's phone too, wrap-up counts down.
        desk.click("#btn-hangup")
        assert first.got_bye(), (first.result and first.result.log_text[-2000:]) or server.log()
        phone.wait_event("CALL_CLOSED", timeout=10)
        expect(desk.locator("#agent-status")).to_have_attribute("data-status", "wrap_up", timeout=10 * MS)
        expect(desk.locator("#wrap-countdown")).to_contain_text("话后处理 剩余 ", timeout=5 * MS)
        assert re.search(r"剩余 (09:\d\d|10:00)", desk.locator("#wrap-countdown").inner_text())

        # Save: a prominent confirmation with the number as a link and as it is read out.
        desk.click("#btn-register")
        expect(desk.locator("#saved")).to_be_visible(timeout=10 * MS)
        number = desk.locator("#saved-link").inner_text().strip()
        assert re.fullmatch(r"\d{8}-\d{4}", number), number
        assert desk.locator("#saved-text").inner_text().strip() == "已登记案卷"
        readout = number.replace("-", "")
        assert desk.locator("#saved-readout").inner_text() == f"请告知来电人：案卷编号 {readout[:4]} {readout[4:8]} {readout[8:]}"
        banner = desk.locator("#saved").bounding_box()
        assert banner["y"] < 300 and banner["height"] >= 40, banner  # at the top of the pop, not small
        expect(desk.locator("#btn-register")).to_be_disabled()  # no second case from a second click
        # A photo at intake (the caller's picture, forwarded): attached to the new case, stage 上报.
        photo = tmp_path / "来电人照片.jpg"
        Image.new("RGB", (320, 240), (90, 120, 160)).save(photo, "JPEG")
        expect(desk.locator("#saved-photos")).to_be_visible()
        with desk.expect_file_chooser() as chooser:
            desk.click("#saved-photos label.file-btn")
        chooser.value.set_files(str(photo))
        expect(desk.locator("#saved-photos .upload-status")).to_have_text("已上传 1 张", timeout=10 * MS)
        expect(desk.locator("#saved-photos .thumbs img")).to_have_count(1)
        screenshot(desk, "desk-calls-05-saved")
        with desk.context.expect_page() as opened:
            desk.click("#saved-link")
        case_page = opened.value
        case_page.wait_for_load_state()
        assert case_page.locator("h1").first.inner_text().startswith(f"案卷 {number}")
        case_page.close()
        assert _heard_hold_tone(server, prompts_dir) > 0.9
        [case] = server.wait_for_cases(reporter_phone=CALLER)
        assert case["category"] == {"kind": category.split(":")[0], "code": category.split(":")[1]}
        status, detail = server.api(f"/api/cases/{case['id']}")
        assert detail["grid_cell"] == "320102001002001", detail
        assert [p["stage"] for p in detail["photos"]] == ["report"], detail["photos"]
        expect(desk.locator("#agent-status")).to_have_attribute("data-status", "ready", timeout=10 * MS)

        # -- second call from the same number: history, then transfer to agent2 ---------------------
        # agent2 is signed in but paused, so the queue gives this call to agent1.
        assert server.post("/api/desk/state", {"state": "paused"}, token=token2)[0] == 200
        second = StayingCaller(server, tmp_path, "second")
        expect(desk.locator("#saved")).to_be_hidden(timeout=40 * MS)
        phone.wait_event("CALL_ESTABLISHED", timeout=20)
        earlier = desk.locator("#pop-calls li.call-item")
        expect(earlier).to_have_count(1, timeout=10 * MS)
        row = earlier.first.inner_text()
        assert "人工接听" in row and number in row, row
        assert re.match(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}", row), row  # never mm/dd/yyyy
        assert earlier.first.locator(f"a.case-link[href='/cases/{case['id']}']").count() == 1
        earlier.first.locator("button.play").click()
        audio = earlier.first.locator("audio")
        expect(audio).to_have_count(1)
        src = audio.get_attribute("src")
        assert re.fullmatch(r"/recordings/\d+\.wav", src), src
        assert server.api(src)[0] == 200
        assert number in desk.locator("#pop-cases").inner_text()
        expect(desk.locator("#btn-register")).to_be_enabled()
        # Typing the description is enough: category, place and grid cell are chosen without 识别.
        desk.locator("#f-description").type("梅园新村北门口的路灯不亮了")
        expect(desk.locator("#f-place input[name=grid_cell]")).to_have_value("320102001001001", timeout=10 * MS)
        # The suggested cell is named, not only numbered.
        expect(desk.locator("#f-place .picker-chosen")).to_contain_text("梅园新村北 320102001001001", timeout=10 * MS)
        expect(desk.locator("#f-category input[name=category]")).to_have_value(
            re.compile(r"^(component|matter):\d{5}$"), timeout=10 * MS)
        assert desk.locator("#f-category-search").input_value()  # shown by name, not as a code
        assert_fits_width(desk)
        screenshot(desk, "desk-calls-06-history")

        assert server.post("/api/desk/state", {"state": "ready"}, token=token2)[0] == 200
        desk.click("#btn-transfer-open")
        target = desk.locator("#transfer-target option[value='agent:agent2']")
        expect(target).to_contain_text("示闲", timeout=5 * MS)
        desk.select_option("#transfer-target", "agent:agent2")
        desk.click("#transfer-form button[type=submit]")
        expect(desk.locator("#call-message")).to_have_text(re.compile("^已转接给 "), timeout=10 * MS)
        assert "已转接给 " in desk.locator("#callbar").inner_text()  # said where the agent looks
        _wait_status(server, token2, "on_call")
        phone2.wait_event("CALL_ESTABLISHED", timeout=10)
        screenshot(desk, "desk-calls-07-transferred")
        # agent2 hangs up through the API: the caller gets BYE.
        status, body = server.post("/api/desk/call/hangup", {}, token=token2)
        assert status == 200 and body["ended"] is True, body
        assert second.got_bye(), (second.result and second.result.log_text[-2000:]) or server.log()
        assert desk.js_errors == []


def _seconds(mmss: str) -> int:
    minutes, seconds = mmss.strip().split(":")[-2:]
    return int(minutes) * 60 + int(seconds)


def test_agent_consults_a_colleague_from_the_browser_then_hands_the_caller_over(desk_hotline, browser, tmp_path):
    """咨询转接 with the desk's buttons: agent1 picks agent2 in the transfer panel, 咨询转接 puts the
    caller on hold and rings agent2's phone, 完成转接 hands the caller over (agent1 goes to wrap-up);
    when agent2 hangs up on the phone the caller gets BYE."""
    server = desk_hotline
    token2 = server.token_for("agent2")
    with Baresip(user="1001", registrar=server.sip_target, password="hotline12319", answer_auto=True) as phone, \
            Baresip(user="1002", registrar=server.sip_target, password="hotline12319", answer_auto=True) as phone2:
        phone.wait_log(r"200 OK|registered", timeout=10)
        phone2.wait_log(r"200 OK|registered", timeout=10)
        desk = new_page(browser)
        with desk.expect_websocket(timeout=10 * MS):
            login(desk, server.web_url, "agent1", next="/desk")
        desk.click("#btn-ready")
        expect(desk.locator("#agent-status")).to_have_attribute("data-status", "ready", timeout=10 * MS)
        # agent2 is paused while the call arrives (so the queue gives it to agent1), then ready.
        assert server.post("/api/desk/state", {"state": "paused"}, token=token2)[0] == 200
        caller = StayingCaller(server, tmp_path, "consulted")
        expect(desk.locator("#pop-caller")).to_have_text(CALLER, timeout=40 * MS)
        phone.wait_event("CALL_ESTABLISHED", timeout=20)
        expect(desk.locator("#call-state")).to_have_text("通话中", timeout=10 * MS)
        assert server.post("/api/desk/state", {"state": "ready"}, token=token2)[0] == 200

        timer = desk.locator("#call-timer")
        expect(timer).to_have_text(re.compile(r"^00:(0[3-9]|[1-5]\d)$"), timeout=15 * MS)
        before = _seconds(timer.inner_text())
        desk.click("#btn-transfer-open")
        expect(desk.locator("#transfer-target option[value='agent:agent2']")).to_contain_text("示闲", timeout=5 * MS)
        desk.select_option("#transfer-target", "agent:agent2")
        desk.click("#consult-start")
        expect(desk.locator("#call-state")).to_have_text("保持中", timeout=10 * MS)
        phone2.wait_event("CALL_ESTABLISHED", timeout=20)
        said = desk.locator("#transfer-form .field-error")
        assert said.inner_text().strip()  # what happened, in words ...
        expect(said).to_have_class(re.compile(r"\binfo\b"))  # ... and not in an error's red
        assert _seconds(timer.inner_text()) >= before  # the call timer runs on through the consultation
        expect(desk.locator("#call-state")).to_have_text("保持中")  # the caller is still on hold
        screenshot(desk, "desk-calls-08-consulting")
        desk.click("#consult-complete")
        expect(desk.locator("#call-state")).to_have_text("已结束", timeout=10 * MS)
        expect(desk.locator("#agent-status")).to_have_attribute("data-status", "wrap_up", timeout=10 * MS)
        assert desk.locator("#call-message").inner_text().strip()
        screenshot(desk, "desk-calls-09-consult-completed")
        # agent2 now has the caller: hanging up on agent2's phone ends the caller's call.
        phone2.hangup()
        assert caller.got_bye(), (caller.result and caller.result.log_text[-2000:]) or server.log()
        assert desk.js_errors == []


CODE_FIELDS = ["department", "inspector", "grid_cell", "category", "merged_into", "merged_case"]


def _typed_code_boxes(page) -> list[str]:
    """Visible text boxes of the page whose name is a code field (there must be none)."""
    return page.evaluate(
        """(names) => Array.from(document.querySelectorAll('input, textarea'))
            .filter(e => names.includes(e.name) && e.type !== 'hidden' && e.offsetParent !== null)
            .map(e => e.tagName.toLowerCase() + ' ' + e.name)""", CODE_FIELDS)


def _submit_action(page, server, user: str, case_id: int, action: str, pick, shot: str) -> None:
    """Open the action form as `user`, check it types no code, let `pick` fill it, submit."""
    page.context.clear_cookies()
    login(page, server.web_url, user, next=f"/cases/{case_id}/actions/{action}")
    assert _typed_code_boxes(page) == []
    pick(page)
    assert_fits_width(page)
    screenshot(page, shot)
    with page.expect_navigation():
        page.click("form.action-form button[type=submit]")
    assert f"/cases/{case_id}?done={action}" in page.url, page.locator("#form-error").all_inner_texts()


def test_action_forms_offer_pickers_for_inspector_category_grid_cell_and_department(desk_hotline, browser):
    """派发核实, 立案 and 派遣 in Chromium: the inspector, category (jinggai), grid cell and
    department are picked from lists, never typed, and the case gets those codes."""
    server = desk_hotline
    status, normal = server.post("/api/cases", {"description": "梅园新村北门井盖缺失", "reporter_phone": "13900002222"})
    assert status == 201, normal
    status, urgent = server.post("/api/cases", {"description": "梅园小学门口井盖破损", "case_type": "urgent",
                                                "reporter_phone": "13900003333"})
    assert status == 201, urgent
    page = new_page(browser)

    def inspector(p):
        p.click("#f-inspector-search")  # the list opens on focus: nothing to type
        option = p.locator("#f-inspector li[role=option]", has_text="inspector1")
        expect(option).to_be_visible(timeout=10 * MS)
        option.click()
        assert p.locator("#f-inspector input[name=inspector]").input_value() == "inspector1"

    _submit_action(page, server, "agent1", normal["id"], "send_verify", inspector, "forms-01-send-verify")
    assert server.api(f"/api/cases/{normal['id']}")[1]["status"] == "verifying"

    def category_and_grid(p):
        _pick(p, "f-category-search", "jinggai", shot="forms-02a-register-category-list")
        assert re.fullmatch(r"(component|matter):\d{5}", p.locator("#f-category input[name=category]").input_value())
        _pick(p, "f-grid_cell-search", "梅园新村北")
        assert p.locator("#f-grid_cell input[name=grid_cell]").input_value() == "320102001001001"

    _submit_action(page, server, "shiftlead1", urgent["id"], "register", category_and_grid, "forms-02-register")
    detail = server.api(f"/api/cases/{urgent['id']}")[1]
    assert detail["status"] == "registered" and detail["grid_cell"] == "320102001001001", detail
    assert "井盖" in (detail.get("category_name") or "") or detail["category"]["code"], detail

    def department(p):
        p.click("#f-department-search")
        option = p.locator("#f-department li[role=option]", has_text="市政设施养护中心")
        expect(option).to_be_visible(timeout=10 * MS)
        option.click()

    _submit_action(page, server, "dispatcher1", urgent["id"], "dispatch", department, "forms-03-dispatch")
    detail = server.api(f"/api/cases/{urgent['id']}")[1]
    assert detail["status"] == "dispatched" and detail["department"] == "municipal", detail
    assert page.js_errors == []
