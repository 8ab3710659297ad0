"""The case page, photo upload, case list filters and the wallboard in Chromium (Playwright),
against a real `hotline serve`; the wallboard with a real call (sipp caller, baresip agent).

Screenshots: test-artifacts/screenshots/pages-*.png.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
import subprocess
from urllib.parse import parse_qs, urlparse

import pytest
from playwright.sync_api import expect
from PIL import Image

from tests.e2e.browser import MS, assert_fits_width, login, new_page, screenshot
from tests.e2e.conftest import DESK_CONFIG, running_server
from tests.e2e.peers.runner import Baresip
from tests.e2e.test_desk_ui import Caller, _ready_agent_desk, _wait_for_pop

pytestmark = pytest.mark.e2e

SEGMENTS = (  # (start, end, text, channel): 0 = caller, 1 = agent
    (0.4, 2.6, "您好，这里是12319城建服务热线，请讲。", 1),
    (2.8, 6.0, "幸福路和建设路交叉口有个井盖不见了，晚上很危险。", 0),
    (6.2, 8.0, "好的，是幸福路和建设路交叉口对吗？", 1),
    (8.2, 10.5, "对，就在公交站旁边，麻烦尽快来处理。", 0),
)


def _seed_transcribed_call(server, tmp_path) -> int:
    """A filed case whose stereo call recording (a real WAV) has a finished transcript."""
    from sqlalchemy import update

    from callcenter.stt.port import Segment, Transcript
    from callcenter.stt.store import TranscriptStore
    from case_core.adapters import orm
    from case_core.adapters.sqlalchemy_repo import SqlRepository, make_engine
    from case_core.service import CaseService

    wav = tmp_path / "call.wav"
    subprocess.run(["sox", "-n", "-r", "8000", "-c", "2", str(wav), "synth", "12", "sine", "300", "vol", "0.1"],
                   check=True)

    async def seed() -> int:
        from datetime import datetime
        from zoneinfo import ZoneInfo

        repo = SqlRepository(make_engine(server.db_url))
        try:
            service = CaseService(repo)
            now = datetime.now(ZoneInfo("Asia/Shanghai")).replace(tzinfo=None)  # the center's local time, as the server's
            rec = await service.recording_started(call_id="e2e-call-1", kind="call", path=str(wav), channels=2,
                                                  now=now)
            await repo.update_recording(rec, duration_s=12.0)
            number = await service.file_report(channel="12319", reporter_phone="13612340000", call_id="e2e-call-1",
                                               recording_ids=(rec,), variables={}, now=now)
            case_id = await repo.case_id_for_number(number)
            async with repo.engine.begin() as conn:
                await conn.execute(update(orm.cases).where(orm.cases.c.id == case_id).values(
                    category_kind="component", category_code="01002", address="幸福路与建设路交叉口",
                    description="交叉口井盖缺失"))
            store = TranscriptStore(repo.engine)
            await store.mark_queued(rec, engine="whisper", now=now)
            await store.save(rec, Transcript.from_segments(tuple(Segment(*s) for s in SEGMENTS), engine="whisper",
                                                           language="zh", duration_s=12.0, elapsed_s=1.0), now=now)
            return case_id
        finally:
            await repo.close()

    # Playwright's sync API runs an event loop in this thread: seed from another one.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, seed()).result()


def test_case_page_transcript_follows_the_player_and_photos_upload_from_the_file_chooser(hotline, browser, tmp_path):
    server = hotline
    case_id = _seed_transcribed_call(server, tmp_path)
    page = new_page(browser)
    login(page, server.web_url, "shiftlead1", next=f"/cases/{case_id}")
    expect(page.locator("#case-category")).to_contain_text("污水井盖")
    expect(page.locator("#case-category")).to_contain_text("01002")
    lines = page.locator("section.recording ol.transcript li")
    expect(lines).to_have_count(len(SEGMENTS))
    expect(lines.nth(1)).to_contain_text("来电人")
    expect(lines.nth(1)).to_contain_text(SEGMENTS[1][2])

    # Click the third line: the player jumps there and that line is the highlighted one.
    page.evaluate("document.querySelector('section.recording audio').muted = true")
    lines.nth(2).click()
    expect(lines.nth(2)).to_have_class(re.compile(r"\bcurrent\b"))
    position = page.evaluate("document.querySelector('section.recording audio').currentTime")
    assert SEGMENTS[2][0] <= position < SEGMENTS[3][1], position
    # Seeking the player elsewhere moves the highlight with it.
    page.evaluate(f"(() => {{ const a = document.querySelector('section.recording audio'); a.pause();"
                  f" a.currentTime = {SEGMENTS[0][0] + 0.5}; }})()")
    expect(lines.nth(0)).to_have_class(re.compile(r"\bcurrent\b"))
    expect(lines.nth(2)).not_to_have_class(re.compile(r"\bcurrent\b"))
    screenshot(page, "pages-01-case-transcript")

    # A phone photo (stored sideways, EXIF says rotate) chosen in the file chooser, as 处置前.
    photo = tmp_path / "现场.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (400, 200), (200, 60, 40)).save(photo, "JPEG", exif=exif.tobytes())
    page.select_option(".photo-add select.photo-stage", "before")
    with page.expect_file_chooser() as chooser:
        page.click(".photo-add label.file-btn")
    with page.expect_navigation():  # the page reloads with the new photo
        chooser.value.set_files(str(photo))
    thumb = page.locator(".photo-group[data-stage=before] .thumbs img")
    expect(thumb).to_have_count(1)
    size = page.evaluate("(() => { const i = document.querySelector('.photo-group[data-stage=before] img');"
                         " return [i.naturalWidth, i.naturalHeight]; })()")
    assert size[1] > size[0] > 0, size  # the thumbnail is upright
    thumb.click()
    viewer = page.locator(".lightbox img")
    expect(viewer).to_be_visible()
    assert page.evaluate("document.querySelector('.lightbox img').naturalWidth") > 0
    screenshot(page, "pages-02-photo-full-size")
    page.keyboard.press("Escape")
    expect(page.locator(".lightbox")).to_have_count(0)
    assert_fits_width(page)
    screenshot(page, "pages-03-case-page", full_page=True)

    # The JSON detail carries the same: category name, photos, transcript segments.
    status, detail = server.api(f"/api/cases/{case_id}")
    assert status == 200 and detail["category_name"] == "污水井盖"
    assert [p["stage"] for p in detail["photos"]] == ["before"]
    assert [s["text"] for s in detail["recordings"][0]["transcript"]["segments"]] == [s[2] for s in SEGMENTS]
    # Someone not logged in gets no photo.
    anonymous = new_page(browser)
    response = anonymous.goto(server.web_url.rstrip("/") + detail["photos"][0]["url"])
    assert response.status == 401
    assert page.js_errors == []


def test_report_done_form_takes_photos_from_the_file_chooser(hotline, browser, tmp_path):
    """The department's 处置反馈 form: no URL box, photos chosen as files, shown as 处置后 on the case."""
    server = hotline
    status, case = server.post("/api/cases", {"description": "长江路污水井盖缺失", "address": "长江路12号",
                                              "category": "component:01002", "channel": "inspector_app"})
    assert status == 201, case
    for action, user, fields in (("register", "shiftlead1", {}), ("dispatch", "dispatcher1", {"department": "municipal"}),
                                 ("handle", "dept1", {})):
        status, case = server.post(f"/api/cases/{case['id']}/actions/{action}",
                                   {"fields": fields, "expected_version": case["version"]},
                                   token=server.token_for(user))
        assert status == 200, case
    page = new_page(browser)
    login(page, server.web_url, "dept1", next=f"/cases/{case['id']}/actions/report_done")
    assert page.locator("textarea[name=photos]").is_hidden()
    photo = tmp_path / "after.png"
    Image.new("RGB", (640, 480), (60, 160, 80)).save(photo, "PNG")
    with page.expect_file_chooser() as chooser:
        page.click("label.file-btn")
    chooser.value.set_files(str(photo))
    expect(page.locator(".photo-input .thumbs img")).to_have_count(1)
    expect(page.locator(".upload-status")).to_have_text("已上传 1 张")
    page.fill("#f-result", "已更换新井盖")
    screenshot(page, "pages-04-report-done-with-photo")
    with page.expect_navigation():
        page.click("form.action-form button[type=submit]")
    assert "/cases/" in page.url and "done=report_done" in page.url
    expect(page.locator(".photo-group[data-stage=after] .thumbs img")).to_have_count(1)
    expect(page.locator("ul.h-fields img.h-thumb")).to_have_count(1)  # the timeline shows it too
    assert page.js_errors == []


def test_case_list_filters_live_in_the_url(hotline, browser):
    server = hotline
    made = []
    for body in ({"description": "长江路污水井盖缺失", "category": "component:01002", "channel": "12319"},
                 {"description": "幸福路路灯不亮", "channel": "12319"},
                 {"description": "人民路垃圾堆放", "channel": "inspector_app"}):
        status, case = server.post("/api/cases", body)
        assert status == 201, case
        made.append(case)
    page = new_page(browser)
    login(page, server.web_url, "shiftlead1", next="/cases")
    page.select_option("select[name=channel]", "12319")
    page.wait_for_url(re.compile(r"channel=12319"))
    # the category from the picker: typed by name, chosen from the list
    page.fill("#filter-category", "井盖")
    option = page.locator(".picker-list li", has_text="污水井盖").first
    option.wait_for(timeout=10 * MS)
    with page.expect_navigation():
        option.click()
    query = parse_qs(urlparse(page.url).query)
    assert query["channel"] == ["12319"] and query["category"] == ["component:01002"], page.url
    rows = page.locator("table.cases tbody tr")
    expect(rows).to_have_count(1)
    assert rows.first.get_attribute("data-number") == made[0]["number"]
    # sorting keeps the filters
    with page.expect_navigation():
        page.click("th a[data-sort=number]")
    query = parse_qs(urlparse(page.url).query)
    assert query["sort"] == ["number"] and query["category"] == ["component:01002"], page.url
    # a link reproduces the view in a fresh browser session
    other = new_page(browser)
    login(other, server.web_url, "shiftlead1", next="/healthz")
    other.goto(page.url)
    expect(other.locator("table.cases tbody tr")).to_have_count(1)
    assert other.locator("select[name=channel]").input_value() == "12319"
    numbers = other.locator("td.case-no a")
    box = numbers.first.bounding_box()
    assert box["height"] < 30, box  # the number is on one line
    assert_fits_width(other)
    screenshot(other, "pages-05-case-list-filtered")
    assert page.js_errors == [] and other.js_errors == []


WALLBOARD_CONFIG = DESK_CONFIG + (
    "[wallboard]\nagent_state_amber_s = 1.0\nagent_state_red_s = 2.0\n"
    "longest_wait_amber_s = 30.0\nlongest_wait_red_s = 60.0\n"
)


@pytest.fixture
def board_hotline(tmp_path, prompts_dir):
    with running_server(tmp_path, prompts_dir, extra=WALLBOARD_CONFIG) as server:
        yield server


def test_wallboard_shows_a_real_call_with_names_thresholds_and_charts(board_hotline, browser, tmp_path):
    server = board_hotline
    names = None
    with Baresip(user="1001", registrar=server.sip_target, password="hotline12319", answer_auto=True) as phone:
        phone.wait_log(r"200 OK|registered", timeout=10)
        desk = _ready_agent_desk(browser, server, "pages-wb")
        with Caller(server, tmp_path, "13612345000", seconds=10) as call:
            _wait_for_pop(desk, server, phone, "13612345000")
            phone.wait_event("CALL_ESTABLISHED", timeout=20)
            board = browser.new_context(viewport={"width": 1920, "height": 1080}, locale="zh-CN",
                                        timezone_id="Asia/Shanghai").new_page()
            login(board, server.web_url, "supervisor1", next="/wallboard")
            names = server.api("/api/wallboard/today")[1]["names"]
            agent = board.locator("#agents tbody tr[data-agent=agent1]")
            expect(agent).to_have_attribute("data-status", "on_call", timeout=10 * MS)
            cells = agent.locator("td")
            expect(cells.nth(0)).to_have_text(names["agent1"])
            assert names["agent1"] != "agent1"
            expect(cells.nth(2)).to_have_text("通话中")
            expect(cells.nth(3)).to_have_text(re.compile(r"^\d\d:\d\d$"))
            # [wallboard] agent_state_red_s = 2: on the call longer than that, the time turns red
            expect(cells.nth(3)).to_have_class(re.compile(r"lvl-red"), timeout=10 * MS)
            report = board.locator("#queues tbody tr[data-queue=report]")
            expect(report.locator("td").nth(3)).to_have_text("1")  # 接通
            expect(report.locator("td").nth(2)).to_have_text("00:00")  # nobody waiting now
            expect(report.locator("td").nth(6)).to_have_class(re.compile(r"lvl-green"))  # answered within 15 s
            screenshot(board, "pages-06-wallboard-1920")
            assert call.finished_ok(), call.result and call.result.log_text[-2000:] + server.log()

    # The charts of the day come from the queue log: one call offered and answered.
    board.reload()
    board.wait_for_function("() => document.getElementById('wallboard').dataset.offered !== undefined")
    assert board.evaluate("document.getElementById('wallboard').dataset.offered") == "1"
    answered = board.evaluate("Chart.getChart('chart-calls').data.datasets[1].data.reduce((a, b) => a + b, 0)")
    assert answered == 1
    # 接听 counts today's answered calls from the queue log (not the process's own counter).
    expect(board.locator("#agents tbody tr[data-agent=agent1] td").nth(4)).to_have_text("1")
    sl = board.evaluate("Chart.getChart('chart-sl').data.datasets[0].data.filter(v => v !== null)")
    assert sl and sl[-1] == 100, sl
    assert board.evaluate("document.querySelector('script[src*=chart]').src").startswith(server.web_url.rstrip("/"))
    # The TV mode: no navigation bar, the figures remain.
    board.goto(server.web_url.rstrip("/") + "/wallboard?tv=1")
    expect(board.locator("header.top")).to_be_hidden()
    expect(board.locator("#queues tbody tr[data-queue=report]")).to_be_visible()
    screenshot(board, "pages-07-wallboard-tv-1920")
    small = new_page(browser)
    login(small, server.web_url, "supervisor1", next="/wallboard")
    expect(small.locator("#agents tbody tr[data-agent=agent1]")).to_be_visible()
    assert_fits_width(small)
    screenshot(small, "pages-08-wallboard-1366")
    assert small.js_errors == []
