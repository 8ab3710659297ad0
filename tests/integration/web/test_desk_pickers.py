"""The pickers' JSON (web/pickers.py, /api/categories?q=) and call control from the desk
(`POST /api/desk/call/{action}`), through aiohttp's test client on SQLite with a real ACD
driver; the SIP call is a small fake that records what the desk asked of it."""

from __future__ import annotations

from datetime import timedelta

from callcenter import acd
from callcenter.calls import model as calls_model
from callcenter.calls.ports import CallInfo
from case_core.adapters import orm
from tests.integration.web.test_desk_actions import CALLER, FETCH, NOW, client, env, in_wrap_up  # noqa: F401


async def get(client, path):
    resp = await client.get(path)
    return resp.status, await resp.json()


async def test_categories_by_chinese_and_by_pinyin_are_ranked_with_kind_code_and_class(client):
    """井盖 and jinggai find the same manhole covers, 部件 and 事项, each with code, name and class."""
    status, by_name = await get(client, "/api/categories?q=井盖&limit=100")
    assert status == 200 and len(by_name) >= 20
    assert {"kind", "code", "name", "class_name", "kind_label"} <= set(by_name[0])
    assert {c["kind"] for c in by_name} == {"component", "matter"}
    assert all("井盖" in c["name"] for c in by_name)
    assert len(by_name[0]["name"]) <= len(by_name[-1]["name"])  # short names first
    _, by_pinyin = await get(client, "/api/categories?q=jinggai&limit=100")
    assert {c["key"] for c in by_pinyin} == {c["key"] for c in by_name}
    _, few = await get(client, "/api/categories?q=井盖&kind=component&limit=3")
    assert len(few) == 3 and {c["kind_label"] for c in few} == {"部件"}
    _, bad = await get(client, "/api/categories?q=井盖&limit=x")
    assert "limit" in bad["message"]


async def test_departments_suggested_by_the_routing_rules_for_category_and_grid_come_first(client):
    """A manhole cover (component class 01) routes to 市政设施养护中心: suggested and listed first."""
    status, body = await get(client, "/api/reference/departments?category=component:01002&grid_cell=320102001002001")
    assert status == 200 and body["suggested"] == "municipal"
    first = body["departments"][0]
    assert first["code"] == "municipal" and first["suggested"] and first["name"] == "市政设施养护中心"
    assert len(body["departments"]) >= 4 and not body["departments"][-1]["suggested"]
    raw = await (await client.get("/api/reference/departments")).text()
    assert "市政设施养护中心" in raw and "\\u" not in raw  # UTF-8, not \\u-escaped
    _, none = await get(client, "/api/reference/departments")
    assert none["suggested"] is None or none["suggested"] != "municipal" or len(none["departments"]) >= 4


async def test_places_come_with_their_grid_cell_and_grid_cells_with_their_inspector(client):
    """长江路 finds the road with grid cell and its name; a whole address finds the place in it."""
    status, places = await get(client, "/api/reference/places?q=长江路")
    assert status == 200 and places[0]["name"] == "长江路"
    assert places[0]["grid_cell"] == "320102001002001" and places[0]["grid_name"] == "长江路东段"
    _, in_address = await get(client, "/api/reference/places?q=长江路西段12号门口")
    assert in_address and in_address[0]["name"] == "长江路西段"
    _, cells = await get(client, "/api/reference/grid_cells?q=梅园")
    assert {c["grid_cell"] for c in cells} == {"320102001001001", "320102001001002"}
    assert all(c["inspector"] for c in cells)
    _, none = await get(client, "/api/reference/places?q=火星")
    assert none == []


async def test_transfer_targets_list_queues_agents_with_state_and_numbers_transferred_to(client, env):
    """Queues with their label, agent1 with its state in Chinese, and a number once transferred to."""
    env.desk.acd.handle(acd.AgentLoggedIn("agent1"))
    status, body = await get(client, "/api/desk/transfer-targets")
    assert status == 200
    assert {q["name"]: q["label"] for q in body["queues"]}["report"] == "反映问题"
    [agent] = body["agents"]
    assert agent["agent"] == "agent1" and agent["status"] == "ready" and agent["status_label"] == "示闲"
    assert body["numbers"] == []
    driver = env.desk.acd
    for event in (acd.CallerJoined("report", "call-9", CALLER), acd.AgentAnswered("agent1", "call-9"),
                  acd.TransferRequested("agent1", "call-9", "number", "02588886666")):
        assert driver.handle(event), event
    _, body = await get(client, "/api/desk/transfer-targets")
    assert body["numbers"] == ["02588886666"]


class DeskCall:
    """A bridged call as the desk sees it through CallControl: records hold, mute and hang-up requests."""

    def __init__(self, call_id, agent):
        self.call_id, self.bridged_agent, self.done = call_id, agent, []
        self.desk_held = self.muted = False

    def describe(self):
        return CallInfo(self.call_id, CALLER, "12319", agent=self.bridged_agent, desk_held=self.desk_held,
                        muted=self.muted)

    def deliver(self, event):
        if isinstance(event, calls_model.DeskHoldRequested):
            self.desk_held = event.held
            self.done.append("hold" if event.held else "resume")
        elif isinstance(event, calls_model.DeskMuteRequested):
            self.muted = event.muted
            self.done.append("mute" if event.muted else "unmute")
        elif isinstance(event, calls_model.DeskHangupRequested):
            self.done.append("hangup")
        else:
            return False
        return True


async def test_call_control_acts_on_the_agents_own_call_only(client, env):
    """hold/resume/mute/unmute/hangup reach the agent's live call and say its state; others get 409/404."""
    status, body = await client.post("/api/desk/call/hold", headers=FETCH), None
    body = await status.json()
    assert status.status == 409 and body["message"] == "您当前没有接通的通话。"
    driver = env.desk.acd
    for event in (acd.AgentLoggedIn("agent1"), acd.CallerJoined("report", "call-5", CALLER),
                  acd.AgentAnswered("agent1", "call-5")):
        assert driver.handle(event), event
    call = DeskCall("call-5", "agent1")
    env.desk.router.calls["call-5"] = call
    answers = {}
    for action in ("hold", "resume", "mute", "unmute", "hangup"):
        resp = await client.post(f"/api/desk/call/{action}", headers=FETCH)
        answers[action] = (resp.status, await resp.json())
    assert call.done == ["hold", "resume", "mute", "unmute", "hangup"]
    assert answers["hold"][1]["held"] is True and answers["resume"][1]["held"] is False
    assert answers["mute"][1]["muted"] is True and answers["unmute"][1]["muted"] is False
    assert answers["hangup"][1]["ended"] is True and all(s == 200 for s, _ in answers.values())
    resp = await client.post("/api/desk/call/park", headers=FETCH)
    assert resp.status == 404
    call.bridged_agent = "agent2"  # someone else's call
    resp = await client.post("/api/desk/call/hold", json={"call_id": "call-5"}, headers=FETCH)
    assert resp.status == 409
    resp = await client.post("/api/desk/call/hold")  # a cookie write without X-Requested-With
    assert resp.status == 403


async def test_screen_pop_history_has_outcome_duration_case_and_recording(env):
    """An earlier call filed as a case shows 人工接听, its duration, the case number and the recording URL."""
    repo = env.repo
    case = await env.service.create_case(channel="12319", description="长江路路灯不亮", actor="agent1", role="agent",
                                         now=NOW - timedelta(days=1), reporter_phone=CALLER)
    start = NOW - timedelta(days=1)
    await repo.call_started(call_id="old-1", direction="inbound", did="12319", caller=CALLER, now=start)
    await repo.call_answered("old-1", start + timedelta(seconds=2))
    await repo.call_ended("old-1", start + timedelta(seconds=95), "remote:bye", "1 queue:report agent:1001")
    rec = await repo.add_recording(call_id="old-1", kind="call", path="/tmp/x.wav", channels=2, duration_s=93.0,
                                   now=start)
    async with repo.engine.begin() as conn:
        await conn.execute(orm.calls.update().where(orm.calls.c.call_id == "old-1").values(case_id=case.id))
    await repo.call_started(call_id="now-1", direction="inbound", did="12319", caller=CALLER, now=NOW)
    live = type("Live", (), {"call_id": "now-1", "caller": CALLER, "did": "12319", "ivr_path": ["1"],
                             "transcript_lines": ["长江路的井盖坏了"]})()
    pop = await env.desk.screen_pop("agent1", live)
    [old] = pop["earlier_calls"]
    assert old["outcome"] == "人工接听" and old["duration_s"] == 93 and old["case_number"] == case.number
    assert old["recording_url"] == f"/recordings/{rec}.wav" and old["started_at"] == start.strftime("%Y-%m-%d %H:%M")
    assert pop["transcript"] == ["长江路的井盖坏了"]
    assert pop["earlier_cases"][0]["number"] == case.number


async def test_suggestions_offer_only_categories_a_case_can_be_saved_under(client, env):
    """With only the national table imported, 识别 never offers the demo district's local codes
    (matter:09901 夜间施工噪声扰民): what it offers saves."""
    import dataclasses

    from case_core.domain.categories import load_category_directory

    national, _ = load_category_directory()
    ref = await env.service.reference()
    env.service._fixed_reference = dataclasses.replace(ref, categories=national)
    env.service.reload_reference()
    resp = await client.post("/api/desk/suggest", json={"text": "工地夜间施工噪声扰民，影响休息"}, headers=FETCH)
    body = await resp.json()
    assert resp.status == 200, body
    keys = [c["key"] for c in body["candidates"]]
    assert "matter:09901" not in keys and all(national.by_key(k) for k in keys), keys
    if body["category"]:
        resp = await client.post("/api/desk/cases", json={"description": "工地夜间施工噪声扰民",
                                                           "category": body["category"]["key"]}, headers=FETCH)
        assert resp.status == 201, await resp.json()


async def test_screen_pop_history_has_a_voice_message_with_its_transcript(env):
    """An earlier call that left a voice message shows 语音留言, the message's URL and its transcript."""
    from callcenter.stt.port import Segment, Transcript
    from callcenter.stt.store import TranscriptStore

    repo = env.repo
    start = NOW - timedelta(hours=3)
    await repo.call_started(call_id="msg-1", direction="inbound", did="12319", caller=CALLER, now=start)
    await repo.call_answered("msg-1", start + timedelta(seconds=1))
    await repo.call_ended("msg-1", start + timedelta(seconds=40), "remote:bye", "1 message")
    rec = await repo.add_recording(call_id="msg-1", kind="message", path="/tmp/m.wav", channels=1, duration_s=20.0,
                                   now=start)
    store = TranscriptStore(repo.engine)
    await store.mark_queued(rec, engine="whisper", now=start)
    await store.save(rec, Transcript.from_segments((Segment(0.0, 2.0, "梅园新村的路灯"), Segment(2.0, 4.0, "不亮了")),
                                                   engine="whisper", language="zh", duration_s=4.0, elapsed_s=1.0),
                     now=start)
    [old] = await env.desk.earlier_calls(CALLER)
    assert old["outcome"] == "语音留言" and old["message_url"] == f"/recordings/{rec}.wav"
    assert old["message_transcript"] == "梅园新村的路灯不亮了"
