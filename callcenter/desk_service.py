"""What the agent desk asks of the call center: availability, screen-pop data, wrap-up.

The web layer (`web/desk.py`) calls this; it talks to the ACD driver and the repository.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Callable

from callcenter import acd
from callcenter.calls import model as calls_model
from callcenter.calls.ports import CallInfo
from case_core.domain.workflow import STATUS_LABELS

STATES = ("ready", "paused", "logged_out")
PAUSE_REASONS = {"break": "小休", "meal": "用餐", "meeting": "会议", "training": "培训", "no_answer": "未接听"}


def call_outcome(answered: bool, ivr_path: str, left_message: bool) -> str:
    """An earlier call in one word or two, as the agent reads it in the pop."""
    steps = ivr_path.split()
    if not answered:
        return "未接通"
    if any(s.startswith("agent:") for s in steps):
        return "人工接听"
    if left_message:
        return "语音留言"
    if any(s.startswith("queue:") for s in steps):
        return "排队放弃"
    if "callback" in steps:
        return "预约回拨"
    return "自助语音"


class DeskError(ValueError):
    """A desk request that cannot be done; `message_zh` is shown to the agent."""

    def __init__(self, message: str, message_zh: str):
        super().__init__(message)
        self.message_zh = message_zh


class DeskService:
    # The web's view of this service (web.ports.Desk): what a refusal raises, the pause reasons.
    Error = DeskError
    pause_reasons = PAUSE_REASONS

    def __init__(self, *, acd_driver, repo, router, now_dt: Callable[[], datetime]):
        self.acd = acd_driver
        self.repo = repo
        self.router = router
        self.now_dt = now_dt
        # Every profile's extension (agents and supervisors), for listen-in.
        self.extensions: dict[str, str] = {}

    def listen_in(self, username: str, call_id: str) -> None:
        """Silent monitoring (监听): ring the supervisor's own phone into a live call."""
        extension = self.extensions.get(username)
        if extension is None:
            raise DeskError(f"{username} has no extension", "您没有配置分机，无法监听。")
        if not self.router.bindings_for(extension):
            raise DeskError(f"extension {extension} is not registered", f"您的分机 {extension} 未注册，请先登录话机。")
        if not self.router.listen_in(call_id, extension):
            raise DeskError(f"no live call {call_id}", "该通话已结束或尚未接通。")

    def transfer(self, username: str, call_id: str, kind: str, target: str) -> None:
        """Blind transfer (转接) of the agent's current call to a queue, another agent or a number."""
        if kind not in ("queue", "agent", "number"):
            raise DeskError(f"bad transfer kind {kind!r}", "转接类型只能是队列、坐席或外线号码。")
        if not target:
            raise DeskError("no target", "请填写转接目标。")
        if kind == "number" and not (target.isdigit() and 3 <= len(target) <= 20):
            raise DeskError("bad number", "外线号码只能是3到20位数字。")
        if kind == "number":
            self._check_dial_plan(target)
        if not self.is_agent(username) or not self.acd.handle(acd.TransferRequested(username, call_id, kind, target)):
            raise DeskError("transfer refused", "不能转接：通话已结束，或目标坐席未签入、队列不存在。")

    def _check_dial_plan(self, number: str) -> None:
        """The [dialplan] (callcenter/dialplan.py) refuses international and premium numbers."""
        checked = self.router.dialplan.check(number)
        if not checked.allowed:
            raise DeskError(f"dial plan: {checked.reason}", checked.message_zh)

    # -- attended transfer (咨询转接) -------------------------------------------------------------
    def _own_call(self, username: str, call_id: str) -> CallInfo:
        """The agent's own live call (not a callback), as a snapshot; events go by its id."""
        info = self.router.describe(call_id)
        if info is None or info.callback or info.agent != username:
            raise DeskError("not your live call", "该通话已结束，或不是您正在处理的通话。")
        return info

    def consult(self, username: str, call_id: str, kind: str, target: str) -> None:
        """Put the caller on hold and call a colleague (an agent) or an outside number first."""
        self._own_call(username, call_id)
        if kind == "agent":
            other = self.acd.state.agents.get(target)
            if other is None or target == username or other.status != "ready":
                raise DeskError("target agent not ready", "目标坐席不存在或不在示闲状态。")
            # Keep the queue from giving them a call while they talk to us.
            self.acd.handle(acd.AgentPaused(target, "consult"))
            ok = self.router.deliver(call_id, calls_model.ConsultRequested(other.extension, False, target))
            if not ok:
                self.acd.handle(acd.AgentReady(target))
        elif kind == "number":
            if not (target.isdigit() and 3 <= len(target) <= 20):
                raise DeskError("bad number", "外线号码只能是3到20位数字。")
            self._check_dial_plan(target)
            ok = self.router.deliver(call_id, calls_model.ConsultRequested(target, True))
        else:
            raise DeskError(f"bad consult kind {kind!r}", "咨询转接只能转给坐席或外线号码。")
        if not ok:
            raise DeskError("consult failed", "无法呼叫转接目标（未注册或没有外线中继）。")

    def consult_complete(self, username: str, call_id: str) -> None:
        """Hand the caller over to the consulted party; the agent's leg ends (wrap-up)."""
        self._own_call(username, call_id)
        if not self.router.deliver(call_id, calls_model.ConsultCompleted()):
            raise DeskError("consult not answered", "对方尚未接听，不能完成转接。")
        # The call forgot its queue agent (outside the queue's accounting from here).
        self.acd.handle(acd.CallEnded(username, call_id, hung_up_by="agent"))

    def consult_cancel(self, username: str, call_id: str) -> None:
        target = self._own_call(username, call_id).consult_agent
        self.router.deliver(call_id, calls_model.ConsultCancelled())
        if target is not None and self.acd.state.agents[target].status == "paused":
            self.acd.handle(acd.AgentReady(target))

    # -- call control from the browser (挂断, 保持/恢复, 静音) ---------------------------------------
    CALL_ACTIONS = ("hangup", "hold", "resume", "mute", "unmute")

    def call_control(self, username: str, action: str, call_id: str = "") -> dict[str, Any]:
        """Act on the agent's current call; the answer says whether it is held and muted now."""
        if action not in self.CALL_ACTIONS:
            raise DeskError(f"unknown call action {action!r}", "未知的通话操作。")
        if not call_id:
            status = self.status(username) or {}
            call_id = status.get("call") or ""
        info = self.router.describe(call_id) if call_id else None
        if info is not None and info.callback and info.agent == username:
            raise DeskError("callback call", "预约回拨的通话请在话机上挂断、保持或静音。")
        if info is None or info.callback or info.agent != username:
            raise DeskError("no live call", "您当前没有接通的通话。")
        if action == "hangup":
            event = calls_model.DeskHangupRequested()
        elif action in ("hold", "resume"):
            event = calls_model.DeskHoldRequested(action == "hold")
        else:
            event = calls_model.DeskMuteRequested(action == "mute")
        if not self.router.deliver(call_id, event):
            raise DeskError(f"{action} refused", "通话尚未接通、已结束，或正在咨询转接，不能执行此操作。")
        now = self.router.describe(call_id)
        return {"call_id": call_id, "action": action, "ended": action == "hangup",
                "held": bool(now is not None and now.desk_held), "muted": bool(now is not None and now.muted)}

    def is_agent(self, username: str) -> bool:
        return self.acd is not None and username in self.acd.state.agents

    def status(self, username: str) -> dict | None:
        return self.acd.agent_status(username) if self.acd is not None else None

    def set_state(self, username: str, state: str, reason: str | None = None) -> dict:
        if not self.is_agent(username):
            raise DeskError(f"{username} has no agent profile", "您不是受理员，或尚未配置分机。")
        if state not in STATES:
            raise DeskError(f"unknown state {state!r}", "未知的状态。")
        agent = self.acd.state.agents[username]
        if state == "ready":
            if agent.status == "logged_out":
                if not self.acd.handle(acd.AgentLoggedIn(username)):
                    raise DeskError("cannot log in", "当前不能签入。")
                # Logged in is ready: a waiting caller or a kept-place callback may already
                # ring this agent, which is what 示闲 asked for.
                ok = True
            elif agent.status == "wrap_up":
                ok = self.acd.handle(acd.WrapUpDone(username))
            else:
                ok = self.acd.state.agents[username].status == "ready" or self.acd.handle(acd.AgentReady(username))
        elif state == "paused":
            if agent.status == "logged_out":
                self.acd.handle(acd.AgentLoggedIn(username))
            reason = reason if reason in PAUSE_REASONS else "break"
            ok = self.acd.handle(acd.AgentPaused(username, reason))
        else:
            ok = agent.status == "logged_out" or self.acd.handle(acd.AgentLoggedOut(username))
        if not ok:
            current = self.acd.state.agents[username].status
            raise DeskError(f"cannot go {state} while {current}", "通话中或振铃中不能切换状态，请在通话结束后再试。")
        return self.status(username)

    def wrap_up_done(self, username: str) -> None:
        if self.is_agent(username) and self.acd.state.agents[username].status == "wrap_up":
            self.acd.handle(acd.WrapUpDone(username))

    async def cases_today(self) -> dict[str, int]:
        """Today's case figures for the wallboard, beside the call figures."""
        from sqlalchemy import func, select

        from case_core.adapters.orm import cases

        since = self.now_dt().replace(hour=0, minute=0, second=0, microsecond=0)
        async with self.repo.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(cases.c.status, func.count()).where(cases.c.created_at >= since).group_by(cases.c.status)
                )
            ).all()
        by_status = {status: count for status, count in rows}
        return {"total": sum(by_status.values()), **by_status}

    async def screen_pop(self, username: str, call) -> dict[str, Any]:
        """The case form's first content: who calls, what they did in the IVR, their history
        (each earlier call with its outcome, duration, case, recording and message transcript)."""
        caller = call.caller or ""
        history_calls = await self.earlier_calls(caller, exclude=call.call_id) if caller else []
        cases = await self.repo.list_cases(reporter_phone=caller, limit=10) if caller else []
        return {
            "call_id": call.call_id,
            "caller": caller,
            "did": call.did,
            "ivr_path": list(call.ivr_path),
            "transcript": list(getattr(call, "transcript_lines", ()) or ()),
            "earlier_calls": history_calls,
            "earlier_cases": [
                {
                    "id": c.id,
                    "number": c.number,
                    "status": c.status,
                    "status_label": STATUS_LABELS.get(c.status, c.status),
                    "description": c.description,
                    "created_at": c.created_at.strftime("%Y-%m-%d %H:%M"),
                }
                for c in cases
            ],
        }

    async def earlier_calls(self, caller: str, *, exclude: str | None = None, limit: int = 10) -> list[dict]:
        """The caller's last calls, newest first: one read for the calls with their case and
        recordings, and one more only when some left a voice message (its transcript)."""
        from sqlalchemy import select

        from callcenter.stt.store import transcripts
        from case_core.adapters.orm import calls, cases, recordings

        last = (select(calls).where(calls.c.caller == caller)
                .order_by(calls.c.started_at.desc()).limit(limit + 1).subquery())
        query = (
            select(last, cases.c.number.label("case_number"), recordings.c.id.label("rec_id"),
                   recordings.c.kind.label("rec_kind"))
            .select_from(last.outerjoin(cases, cases.c.id == last.c.case_id)
                         .outerjoin(recordings, recordings.c.call_id == last.c.call_id))
            .order_by(last.c.started_at.desc(), recordings.c.id)
        )
        async with self.repo.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
            message_ids = [r.rec_id for r in rows if r.rec_kind == "message" and r.call_id != exclude]
            segs = (await conn.execute(
                select(transcripts.c.recording_id, transcripts.c.text)
                .where(transcripts.c.recording_id.in_(message_ids))
                .order_by(transcripts.c.recording_id, transcripts.c.start_s)
            )).all() if message_ids else []
        texts: dict[int, list[str]] = {}
        for seg in segs:
            texts.setdefault(seg.recording_id, []).append(seg.text)
        by_call: dict[str, dict[str, Any]] = {}
        for r in rows:
            if r.call_id == exclude:
                continue
            entry = by_call.get(r.call_id)
            if entry is None:
                duration = (r.ended_at - r.answered_at).total_seconds() if r.ended_at and r.answered_at else None
                entry = by_call[r.call_id] = {
                    "call_id": r.call_id,
                    "started_at": r.started_at.strftime("%Y-%m-%d %H:%M"),
                    "did": r.did,
                    "direction": r.direction,
                    "end_reason": r.end_reason,
                    "duration_s": round(duration) if duration is not None else None,
                    "case_id": r.case_id,
                    "case_number": r.case_number,
                    "recording_url": None,
                    "message_url": None,
                    "message_transcript": "",
                    "_answered": r.answered_at is not None,
                    "_ivr": r.ivr_path or "",
                }
            if r.rec_kind == "call":
                entry["recording_url"] = f"/recordings/{r.rec_id}.wav"
            elif r.rec_kind == "message":
                entry["message_url"] = f"/recordings/{r.rec_id}.wav"
                entry["message_transcript"] = "".join(texts.get(r.rec_id, []))
        out = []
        for entry in list(by_call.values())[:limit]:
            answered, ivr_path = entry.pop("_answered"), entry.pop("_ivr")
            entry["outcome"] = call_outcome(answered, ivr_path, entry["message_url"] is not None)
            out.append(entry)
        return out

    async def link_call(self, call_id: str | None, case_id: int) -> bool:
        """Store a call on an existing case (关联已有案卷): `SqlRepository.link_call`."""
        return await self.repo.link_call(call_id, case_id)
