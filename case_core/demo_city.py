"""The demo city (`hotline demo seed --city`): reference data and 90 days of case history.

`plan_city` is pure: from the seed time and a fixed random seed it plans several hundred
cases — who reported what, where, through which channel — and every workflow action on
them with its actor and time (working hours from the calendar). `seed_city` then plays the
plan through the real `CaseService` in time order, with `now` moved to each action's time,
so history, deadlines (按期/黄灯/超期), follow-up answers and the evaluation rollup are what
the hotline would have recorded. Actions planned after the seed time are left out, which
leaves the recent cases in every state of the workflow.

Idempotent and safe on a database in use: reference tables are only filled when empty
(a table with other rows is the operator's own data, and then no demo cases are added),
users and cases only when missing (the city's cases carry ``source = demo_city``).
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from case_core.domain.calendar import WorkCalendar

DEMO_DATA = Path(__file__).resolve().parent / "demo_data"
SOURCE = "demo_city"
SEED = 12319
CASES = 420
DAYS = 90

# (import kind, file) in dependency order: grid cells need areas, routing needs departments.
REFERENCE_FILES = (
    ("departments", "city_departments.csv"),
    ("areas", "city_areas.csv"),
    ("grid_cells", "grid_cells.geojson"),    # polygons (地理编码); same cells as city_grid_cells.csv
    ("gazetteer", "city_gazetteer.csv"),
    ("categories", "local_categories.csv"),
    ("routing", "city_routing_rules.csv"),
    ("holidays", "holidays.csv"),
)

# Staff of the demo city beyond the basic demo users (password as theirs).
# (username, role, display name, department)
CITY_USERS = [
    ("agent3", "agent", "受理员三", None),
    ("shiftlead2", "shift_lead", "值班长二", None),
    ("inspector2", "inspector", "监督员二", None),
    ("inspector3", "inspector", "监督员三", None),
    ("inspector4", "inspector", "监督员四", None),
    ("municipal1", "department", "市政设施养护中心", "municipal"),
    ("lighting1", "department", "路灯管理所", "lighting"),
    ("sanitation1", "department", "环境卫生管理所", "sanitation"),
    ("enforcement1", "department", "城管执法大队", "enforcement"),
    ("water1", "department", "示范水务公司", "water"),
    ("gardens1", "department", "园林绿化管理所", "gardens"),
    ("traffic1", "department", "交通设施管理所", "traffic"),
    ("meiyuan1", "department", "梅园街道办事处", "street_meiyuan"),
    ("xinjiekou1", "department", "新街口街道办事处", "street_xinjiekou"),
    ("xuanhu1", "department", "玄湖街道办事处", "street_xuanhu"),
    ("qingxi1", "department", "清溪街道办事处", "street_qingxi"),
]
DEPARTMENT_USERS = {dept: user for user, _role, _name, dept in CITY_USERS if dept}
AGENTS = ("agent1", "agent2", "agent3")
SHIFT_LEADS = ("shiftlead1", "shiftlead2")

# Category → what citizens say about it and what the department reports back.
TOPICS: list[tuple[str, int, list[str], list[str]]] = [
    ("component:01003", 6, ["{p}雨水井盖破损，中间裂开一道缝，怕有人踩空。", "{p}有个雨水井盖被车压翻了，井口敞着。",
                            "{p}雨水井盖松动，车一过就哐哐响。"], ["已更换雨水井盖并设警示", "已复位并加固井盖"]),
    ("component:01002", 3, ["{p}污水井盖缺失，路面留了个大洞。", "{p}污水井冒水，井盖被顶起来了。"],
     ["已补装污水井盖", "已疏通管道并复位井盖"]),
    ("component:01001", 2, ["{p}供水井盖下陷，周围路面塌了一块。"], ["已调平供水井盖并修补路面"]),
    ("component:01037", 9, ["{p}路灯连续三晚不亮，晚上走路很黑。", "{p}一排路灯白天一直亮着，浪费电。",
                            "{p}路灯灯杆歪了，有倒下来的危险。", "{p}路灯一闪一闪的，晚上很晃眼。"],
     ["已更换灯具，恢复照明", "已修复线路，路灯恢复正常", "已扶正灯杆并加固"]),
    ("component:01039", 2, ["{p}景观灯坏了一半，晚上黑乎乎的。"], ["已更换景观灯灯带"]),
    ("component:02014", 3, ["{p}红绿灯坏了，只亮黄灯，路口很乱。", "{p}人行横道信号灯不亮。"],
     ["已修复信号灯控制器", "已更换信号灯灯组"]),
    ("component:02010", 2, ["{p}交通标志牌被撞倒在路边。"], ["已重新安装标志牌"]),
    ("component:03005", 3, ["{p}垃圾箱被烧坏了，垃圾撒了一地。", "{p}垃圾箱盖子掉了，味道很大。"],
     ["已更换垃圾箱", "已维修垃圾箱并清理周边"]),
    ("component:03001", 2, ["{p}公共厕所水龙头坏了，一直流水。", "{p}公厕太脏了，好几天没人打扫。"],
     ["已维修供水设施", "已安排保洁并加密保洁频次"]),
    ("component:04002", 4, ["{p}行道树被风刮断了，树枝挡住人行道。", "{p}行道树长歪了，压着电线。"],
     ["已清理断枝并修剪", "已修剪树冠，消除隐患"]),
    ("matter:06010", 6, ["{p}路边有一堆暴露垃圾，好几天没人清。", "{p}绿化带里堆满了垃圾。"],
     ["已清运暴露垃圾", "已清理并加强巡查"]),
    ("matter:06042", 4, ["{p}垃圾站满溢了，垃圾堆到路上。", "{p}小区门口垃圾桶满了一直没清运。"],
     ["已清运并增加清运频次", "已清运完毕"]),
    ("matter:06013", 5, ["{p}人行道砖松动翘起，老人差点绊倒。", "{p}路面有个大坑，下雨积水。"],
     ["已修补路面", "已重新铺设人行道砖"]),
    ("matter:06014", 2, ["{p}渣土车遗撒，路面全是泥。"], ["已冲洗路面，对运输单位立案处罚"]),
    ("matter:06027", 3, ["{p}饭店油烟直排，楼上住户窗户都不敢开。"], ["已责令加装油烟净化设施"]),
    ("matter:06028", 4, ["{p}晚上十点以后还有广场舞音响，噪声扰民。", "{p}商铺用大喇叭叫卖，吵得很。"],
     ["已现场劝导，音响已降低音量", "已责令停止使用高音喇叭"]),
    ("matter:06001", 3, ["{p}有人在楼顶私搭乱建，正在施工。", "{p}一楼住户在绿地上搭了个棚子。"],
     ["已责令自行拆除，已拆除完毕", "已依法拆除违法搭建"]),
    ("matter:07001", 4, ["{p}电线杆上贴满了小广告。", "{p}墙上喷涂了办证小广告。"],
     ["已清除小广告", "已清理并覆盖喷涂"]),
    ("matter:08001", 3, ["{p}工地夜间施工，凌晨一点还在打桩。"], ["已责令停止夜间施工"]),
    ("matter:08004", 2, ["{p}工地扬尘很大，没有围挡也没洒水。"], ["已责令覆盖裸土并洒水降尘"]),
    ("matter:09006", 6, ["{p}有摊贩占道经营，人行道走不过去。", "{p}早点摊占道，早高峰很堵。"],
     ["已劝离占道摊贩", "已规范摊点经营范围"]),
    ("matter:09009", 4, ["{p}机动车乱停放，把消防通道堵住了。", "{p}车辆停在人行道上。"],
     ["已联系车主挪车并张贴告知", "已会同交警处理"]),
    ("matter:09010", 3, ["{p}非机动车乱停放，盲道都被占了。"], ["已整理非机动车并设置停放区"]),
    ("matter:06901", 4, ["{p}共享单车堆成一堆，挡住路口。", "{p}共享单车乱停，人都过不去。"],
     ["已通知运营企业清理调度", "已清理调度共享单车"]),
    ("matter:10001", 1, ["{p}路面结冰，已经有人滑倒了。"], ["已撒融雪剂并清理"]),
]

CONSULTATIONS = [
    ("装修垃圾应该怎么处理，要放到哪里？", "装修垃圾请装袋后投放到小区指定的装修垃圾堆放点，或预约清运。"),
    ("店门口想摆放广告牌，需要办什么手续？", "设置户外广告需向城管部门申请审批，可登录政务服务网办理。"),
    ("小区里的路灯归谁管？", "小区内路灯由物业负责维护，市政道路路灯由路灯管理所负责。"),
    ("垃圾分类的投放时间是几点？", "本区垃圾定时定点投放时间为每天7:00-9:00、18:00-20:00。"),
    ("我想在门口搭个雨棚，要审批吗？", "临街搭建雨棚需符合规划并经审批，请先咨询街道城管科。"),
    ("共享单车停放有什么规定？", "请停放在白线停放区内，不要占用盲道和消防通道。"),
    ("夜间施工的许可怎么查？", "夜间施工许可可在区生态环境部门网站查询，也可拨打本热线核实。"),
]
SURVEY = (("satisfied", 70), ("basically_satisfied", 17), ("dissatisfied", 9), ("unreachable", 4))
CHANNELS = (("12319", 50), ("96310", 20), ("wechat", 12), ("website", 6), ("mayor_line", 5), ("video", 3),
            ("iot", 2), ("media", 1), ("leader", 1))
# (last action, how many cases, oldest creation in hours before the seed time)
STOPS = (("accept", 3, 20), ("send_verify", 4, 48), ("verify", 3, 72), ("register", 3, 72), ("dispatch", 3, 96),
         ("handle", 6, 150), ("report_done", 4, 150), ("check", 3, 150), ("apply_extension", 2, 200),
         ("approve_extension", 2, 200), ("approve_suspend", 2, 300), ("approve_defer", 2, 300), ("direct_answer", 2, 30))
_STOP_SCENARIO = {"apply_extension": "extension", "approve_extension": "extension", "approve_suspend": "suspend",
                  "approve_defer": "defer", "direct_answer": "consultation"}
SUFFIXES = ("门口", "东侧", "西侧", "南门", "北门", "附近", "对面", "路口", "人行道上", "公交站旁")


@dataclass
class Step:
    at: datetime
    action: str
    actor: str
    role: str
    fields: dict[str, Any] = field(default_factory=dict)
    department: str | None = None
    merge_target: int | None = None   # plan index whose number becomes `merged_into`


@dataclass
class CasePlan:
    index: int
    created_at: datetime
    channel: str
    kind: str
    case_type: str
    reporter_phone: str
    description: str
    address: str
    category: str | None
    actor: str
    role: str
    steps: list[Step] = field(default_factory=list)
    inspector: str = ""   # who walks the case's grid: 核实 and 核查 are theirs


def _pick(rng: random.Random, weighted) -> Any:
    items, weights = zip(*[(x[:-1] if len(x) > 2 else x[0], x[-1]) for x in weighted])
    return rng.choices(items, weights)[0]


def plan_city(now: datetime, places: list[tuple[str, str, str]], *, route,
              cases: int = CASES, days: int = DAYS, seed: int = SEED,
              calendar: WorkCalendar | None = None) -> list[CasePlan]:
    """Plan ``cases`` cases created over the ``days`` before ``now``; steps after ``now`` are dropped.

    ``places``: (name, kind, grid_id) from the gazetteer; ``route(category, grid_id,
    case_type)`` the department the routing rules pick and its handling limit in working hours.
    """
    rng = random.Random(seed)
    cal = calendar or WorkCalendar()
    phones = [f"13{rng.randint(0, 9)}{rng.randint(10000000, 99999999)}" for _ in range(260)]
    regulars = phones[:25]   # people who call often
    streets = {"001": "inspector1", "002": "inspector2", "003": "inspector3", "004": "inspector4"}
    roads = [p for p in places if p[1] in ("road", "landmark")]
    start = now - timedelta(days=days)
    plans: list[CasePlan] = []

    def work(t: datetime, lo: float, hi: float) -> datetime:
        return cal.add_working_hours(t, rng.uniform(lo, hi))

    def created_time() -> datetime:
        # Calls come between 07:00 and 21:00, fewer at weekends; a few cases are very recent.
        while True:
            t = start + timedelta(seconds=rng.uniform(0, (now - start).total_seconds()))
            if not 7 <= t.hour < 21 or t >= now:
                continue
            if not cal.is_workday(t.date()) and rng.random() < 0.5:
                continue
            return t.replace(microsecond=0)

    def one(i: int, created: datetime, scenario: str | None = None, street: str | None = None) -> CasePlan:
        agent = rng.choice(AGENTS)
        lead = rng.choice(SHIFT_LEADS)
        if scenario == "consultation" or (scenario is None and rng.random() < 0.08):
            q, a = rng.choice(CONSULTATIONS)
            p = CasePlan(i, created, _pick(rng, CHANNELS[:4]), "consultation", "normal",
                         rng.choice(regulars if rng.random() < 0.3 else phones), q, "", "matter:10901", agent, "agent")
            t = work(created, 0.05, 0.5)
            p.steps.append(Step(t, "direct_answer", agent, "agent", {"answer": a}))
            _follow_up(rng, p, t, work)
            return p
        cat, _w, texts, results = _pick_topic(rng)
        name, _kind, grid = rng.choice(([r for r in roads if r[2][6:9] == street] or roads) if street else roads)
        address = f"{name}{rng.choice(SUFFIXES)}" if rng.random() < 0.7 else f"{name}{rng.randint(1, 188)}号"
        scenario = scenario or _pick(rng, (("full", 60), ("inspector", 8), ("not_confirmed", 5), ("decline", 3),
                               ("rework", 5), ("void", 3), ("send_back", 3), ("extension", 4), ("urgent", 4),
                               ("suspend", 0.5), ("defer", 0.5), ("stuck", 4)))
        if scenario in ("stuck", "suspend", "defer") and created < now - timedelta(days=20):
            scenario = "full"   # long-parked cases would be a scandal, not a demo
        channel = "inspector_app" if scenario == "inspector" else _pick(rng, CHANNELS)
        phone = "" if channel in ("inspector_app", "video", "iot") else rng.choice(
            regulars if rng.random() < 0.3 else phones)
        inspector = streets[grid[6:9]]
        ctype = "urgent" if scenario == "urgent" else ("complex" if rng.random() < 0.04 else "normal")
        p = CasePlan(i, created, channel, "report", ctype, phone, rng.choice(texts).format(p=name), address, cat,
                     inspector if channel == "inspector_app" else agent,
                     "inspector" if channel == "inspector_app" else "agent")
        p.inspector = inspector
        steps = p.steps
        t = created
        late = rng.random() < 0.15   # this case runs late somewhere
        if scenario == "decline":
            t = work(t, 0.2, 1.5)
            steps.append(Step(t, "decline", lead, "shift_lead", {"reason": "不属于城市管理职责范围，已告知市民向相关部门反映"}))
            return p
        if channel != "inspector_app" and ctype != "urgent":
            t = work(t, 0.05, 0.6)
            steps.append(Step(t, "send_verify", agent, "agent"))
            t = work(t, 0.3, 2.8 if late else 1.9)
            confirmed = scenario != "not_confirmed"
            steps.append(Step(t, "verify", inspector, "inspector",
                              {"verify_result": "confirmed" if confirmed else "not_confirmed",
                               "photos": [f"核实照片 HS{created:%m%d}{i:03d}"]}))
            if not confirmed:
                t = work(t, 0.2, 1.0)
                steps.append(Step(t, "decline", lead, "shift_lead", {"reason": "经监督员现场核实，问题不存在"}))
                return p
        t = work(t, 0.1, 1.4 if late else 0.9)
        steps.append(Step(t, "register", lead, "shift_lead"))
        if scenario == "void":
            t = work(t, 0.2, 1.0)
            steps.append(Step(t, "apply_void", "dispatcher1", "dispatcher", {"reason": "与已办结案卷重复，市民确认已解决"}))
            t = work(t, 0.5, 3.0)
            steps.append(Step(t, "approve_void", "commander1", "commander"))
            return p
        dept, handle_h = route(cat, grid, ctype)
        if scenario == "send_back":
            wrong = rng.choice([d for d in ("municipal", "sanitation", "gardens", "traffic") if d != dept])
            t = work(t, 0.1, 0.8)
            steps.append(Step(t, "dispatch", "dispatcher1", "dispatcher", {"department": wrong}))
            t = work(t, 0.5, 4)
            steps.append(Step(t, "apply_send_back", DEPARTMENT_USERS[wrong], "department",
                              {"reason": "不属于本单位管辖，请重新派遣"}, department=wrong))
            t = work(t, 0.3, 2)
            steps.append(Step(t, "approve_send_back", "dispatcher1", "dispatcher"))
        t = work(t, 0.1, 1.3 if late else 0.9)
        steps.append(Step(t, "dispatch", "dispatcher1", "dispatcher"))
        handler = DEPARTMENT_USERS[dept]
        t = work(t, 0.2, 2.0)
        steps.append(Step(t, "handle", handler, "department", department=dept))
        if scenario in ("suspend", "defer"):
            t = work(t, 2, 8)
            kind = "apply_suspend" if scenario == "suspend" else "apply_defer"
            reason = "涉及产权单位改造，需纳入年度计划" if scenario == "suspend" else "需待雨季结束后施工"
            steps.append(Step(t, kind, handler, "department", {"reason": reason}, department=dept))
            t = work(t, 1, 6)
            steps.append(Step(t, kind.replace("apply", "approve"), "commander1", "commander"))
            return p
        limit_h = handle_h
        if scenario == "stuck":
            # Still with the department: the limit ran out, the commander urged it.
            t_urge = work(t, limit_h * 1.05, limit_h * 1.6)
            steps.append(Step(t_urge, "urge", "commander1", "commander", {"reason": "已超期，请尽快处置并反馈"}))
            if rng.random() < 0.5:
                t2 = work(t_urge, 0.5, 4)
                steps.append(Step(t2, "apply_extension", handler, "department",
                                  {"reason": "需协调产权单位，申请延期", "handle_deadline": cal.add_working_days(t2, 5)},
                                  department=dept))
            return p
        if scenario == "extension":
            t = work(t, 4, 12)
            steps.append(Step(t, "apply_extension", handler, "department",
                              {"reason": "需采购配件，申请延期", "handle_deadline": cal.add_working_days(t, 5)},
                              department=dept))
            t = work(t, 0.5, 4)
            steps.append(Step(t, "approve_extension", "commander1", "commander"))
        done_h = rng.uniform(1.0, 1.6 if late else 1.3) if scenario == "extension" else \
            rng.uniform(0.15, 1.35 if late else 0.9)
        done_h *= limit_h
        t = work(t, done_h, done_h)
        steps.append(Step(t, "report_done", handler, "department",
                          {"result": rng.choice(results), "photos": [f"处置照片 CZ{created:%m%d}{i:03d}"]},
                          department=dept))
        t = work(t, 0.5, 5.0 if late else 3.5)
        if scenario == "rework":
            steps.append(Step(t, "check", inspector, "inspector", {"check_result": "failed"}))
            t = work(t, 0.3, 1.5)
            steps.append(Step(t, "rework", lead, "shift_lead", {"reason": "核查未通过：现场仍未处理到位"}))
            t = work(t, 0.1, 0.8)
            steps.append(Step(t, "dispatch", "dispatcher1", "dispatcher"))
            t = work(t, 0.2, 2)
            steps.append(Step(t, "handle", handler, "department", department=dept))
            t = work(t, 2, 14)
            steps.append(Step(t, "report_done", handler, "department",
                              {"result": "已返工处理到位", "photos": [f"返工照片 FG{created:%m%d}{i:03d}"]},
                              department=dept))
            t = work(t, 0.5, 3)
        steps.append(Step(t, "check", inspector, "inspector",
                          {"check_result": "passed", "photos": [f"核查照片 HC{created:%m%d}{i:03d}"]}))
        t = work(t, 0.2, 2.4 if late else 1.8)
        steps.append(Step(t, "close", lead, "shift_lead"))
        if phone:
            _follow_up(rng, p, t, work)
        return p

    for i in range(cases):
        plans.append(one(i, created_time()))
    # A few recent cases stopped at each step, so every worklist has something in it
    # (some on time, some 黄灯, some 超期 — whatever their age makes them). The inspectors'
    # steps (核实, 核查) go round the streets, so every inspector signs in to a task of each.
    for stop, count, max_age_h in STOPS:
        for k in range(count):
            street = sorted(streets)[k % len(streets)] if stop in ("send_verify", "report_done") else None
            for _attempt in range(100):
                created = _daytime_before(rng, now - timedelta(hours=rng.uniform(0.2, max_age_h)))
                p = one(len(plans), created, _STOP_SCENARIO.get(stop, "full"), street)
                if stop == "accept":
                    p.steps = []
                    break
                n = next((n for n, s in enumerate(p.steps) if s.action == stop), None)
                if n is not None and p.steps[n].at < now:
                    p.steps = p.steps[:n + 1]
                    break
            plans.append(p)

    _add_duplicates(rng, plans, now, work)
    for p in plans:
        p.steps = [s for s in p.steps if s.at < now]
    plans.sort(key=lambda p: p.created_at)
    return plans


def _daytime_before(rng: random.Random, t: datetime) -> datetime:
    """``t`` if people call then (07:00–21:00), else a time the evening before."""
    if t.hour >= 21:
        t = t.replace(hour=rng.randint(8, 20), minute=rng.randint(0, 59))
    elif t.hour < 7:
        t = (t - timedelta(days=1)).replace(hour=rng.randint(8, 20), minute=rng.randint(0, 59))
    return t.replace(microsecond=0)


def _pick_topic(rng: random.Random):
    weights = [t[1] for t in TOPICS]
    return rng.choices(TOPICS, weights)[0]


def _follow_up(rng: random.Random, p: CasePlan, t: datetime, work) -> None:
    t = work(t, 1, 16)
    answer = _pick(rng, SURVEY)
    p.steps.append(Step(t, "follow_up", rng.choice(AGENTS), "agent", {"satisfaction": answer}))
    if rng.random() < 0.9:
        p.steps.append(Step(work(t, 1, 24), "evaluate", rng.choice(SHIFT_LEADS), "shift_lead"))


def _add_duplicates(rng: random.Random, plans: list[CasePlan], now: datetime, work) -> None:
    """A few citizens report a problem already being handled: the agent merges the new case."""
    live_until = {}
    for p in plans:
        closing = next((s.at for s in p.steps if s.action in ("close", "decline", "approve_void")), None)
        if p.kind == "report" and any(s.action == "dispatch" for s in p.steps):
            live_until[p.index] = closing or now
    targets = sorted(live_until)
    for _ in range(10):
        target = plans[rng.choice(targets)]
        created = target.created_at + timedelta(hours=rng.uniform(2, 40))
        merge_at = work(created, 0.05, 0.5)
        if merge_at >= min(live_until[target.index], now):
            continue
        dup = CasePlan(len(plans), created.replace(microsecond=0), "12319", "report", "normal",
                       f"13{rng.randint(0, 9)}{rng.randint(10000000, 99999999)}",
                       f"又有人反映：{target.description}", target.address, target.category, rng.choice(AGENTS), "agent")
        dup.steps.append(Step(merge_at, "merge", dup.actor, "agent", {"comment": "与在办案卷为同一问题"},
                              merge_target=target.index))
        plans.append(dup)


# ------------------------------------------------------------------------------ seeding
async def seed_city(repo, *, now: datetime, password: str, cases: int = CASES,
                    staged: bool = True) -> dict[str, int]:
    """Import the city's reference data, create its staff and play its case history.

    Returns counts of what was added (all zero on a second run) and ``kept``: reference
    tables holding the operator's own data, which are never replaced (then no cases are
    added either: a database with its own city gets no demo city). ``staged=False`` stores
    every action in its own transaction, as the running hotline does (slow; tests compare).
    """
    from case_core.service import CaseService, load_reference

    changed, kept = await _import_reference(repo)
    added = {"reference_tables": changed, "users": 0, "cases": 0, "actions": 0, "kept": kept}
    have = {u.username for u in await repo.list_users()}
    for username, role, name, dept in CITY_USERS:
        if username not in have:
            await repo.create_user(username=username, password=password, role=role, display_name=name,
                                   department=dept, now=now)
            added["users"] += 1
    if kept or await _city_cases(repo) > 0:
        # Cases routed by someone else's reference data would not be the demo city.
        return added
    ref = await load_reference(repo)
    target = _StagedRepo(repo) if staged else repo
    service = CaseService(target, reference=ref)
    places = [(p.name, p.kind, p.grid_id) for p in ref.gazetteer.places]

    def route(category, grid, ctype):
        kind, code = category.split(":", 1)
        r = ref.routing.route(kind, code, grid, ctype)
        limit = r.limits.get("handle")
        hours = 21.0 if limit is None else limit.amount * (ref.calendar.hours_per_day if limit.unit == "d" else 1)
        return r.department, hours

    plans = plan_city(now, places, route=route, cases=cases, calendar=ref.calendar)
    if staged:
        await target.reserve_numbers([p.created_at.date() for p in plans])
    events: list[tuple[datetime, int, int, CasePlan, Step | None]] = []
    for p in plans:
        events.append((p.created_at, p.index, -1, p, None))
        events += [(s.at, p.index, n, p, s) for n, s in enumerate(p.steps)]
    events.sort(key=lambda e: (e[0], e[1], e[2]))
    ids: dict[int, int] = {}
    numbers: dict[int, str] = {}
    for at, index, _n, p, step in events:
        if step is None:
            view = await service.create_case(
                channel=p.channel, description=p.description, actor=p.actor, role=p.role, now=at, kind=p.kind,
                case_type=p.case_type, reporter_phone=p.reporter_phone, address=p.address, category=p.category,
                extra={"source": SOURCE, **_position(ref, p)})
            ids[index], numbers[index] = view.id, view.number
            added["cases"] += 1
            continue
        fields = dict(step.fields)
        if step.merge_target is not None:
            fields["merged_into"] = numbers[step.merge_target]
        await service.act(ids[index], step.action, actor=step.actor, role=step.role, fields=fields, now=at,
                          department=step.department)
        added["actions"] += 1
    if staged:
        await target.store()
    return added


class _StagedRepo:
    """The repository as `CaseService` sees it while the history is played: case numbers
    come from the real repository (so they never collide), states stay in memory, and
    `store` writes each case once, as it ended, with its whole history and evaluation facts
    (the same rows the step-by-step updates would have left; thousands of small
    transactions would make the seed take many seconds)."""

    def __init__(self, repo) -> None:
        self.repo = repo
        self.states: dict[int, Any] = {}
        self.extra: dict[int, dict] = {}
        self.by_number: dict[str, int] = {}

    async def reserve_numbers(self, days: list) -> None:
        self.numbers = await self.repo.allocate_case_numbers(Counter(days))

    async def allocate_case_number(self, day) -> str:
        return self.numbers[day].pop(0)

    async def insert_case_state(self, state, *, call_id=None, recording_ids=(), extra=None, events=()) -> int:
        case_id = len(self.states) + 1
        self.states[case_id] = state
        self.extra[case_id] = dict(extra or {})
        self.by_number[state.number] = case_id
        return case_id

    async def get_case(self, case_id: int):
        return _View(case_id, self.states[case_id].number)

    async def case_id_for_number(self, number: str) -> int | None:
        return self.by_number.get(number)

    async def update_states(self, case_ids, mutate):
        new_states, result = mutate([self.states[i] for i in case_ids])
        for i, state in zip(case_ids, new_states):
            self.states[i] = state
        return result, [_View(i, self.states[i].number) for i in case_ids]

    async def store(self) -> None:
        await self.repo.insert_case_states([(state, self.extra[i]) for i, state in self.states.items()])


@dataclass(frozen=True)
class _View:
    id: int
    number: str


def _position(ref, p: CasePlan) -> dict:
    """Where a report was found (地理编码 for the map): a point inside its place's grid cell,
    from a generator of its own so that the plan's random stream stays as it was."""
    grid = ref.gazetteer.grid_cell_for(p.address) if p.kind == "report" and p.address else None
    shape = ref.geo.geometry(grid) if ref.geo is not None and grid else None
    if shape is None:
        return {}
    rng = random.Random(SEED * 1000 + p.index)
    w, s, e, n = shape.bounds
    lon, lat = w + (e - w) * rng.uniform(0.12, 0.88), s + (n - s) * rng.uniform(0.12, 0.88)
    if ref.geo.cell_at(lon, lat) != grid:   # a cell that is not a rectangle: no position rather than a wrong one
        return {}
    return {"location": {"lat": round(lat, 6), "long": round(lon, 6)}}


async def _city_cases(repo) -> int:
    from sqlalchemy import func, select

    from case_core.adapters import orm

    async with repo.engine.connect() as conn:
        return (await conn.execute(select(func.count()).select_from(orm.cases).where(
            orm.cases.c.state_json.like(f'%"source": "{SOURCE}"%')))).scalar_one()


async def _import_reference(repo) -> tuple[int, list[str]]:
    """Load each city file into its ref table when that table is empty. A table holding other
    rows is the operator's own data: it is never replaced (returned in the second list)."""
    from case_core.commands import _validate

    changed, kept = 0, []
    for kind, name in REFERENCE_FILES:
        local = kind == "categories"
        rows, errors = await _validate(repo, kind, DEMO_DATA / name, local)
        stored = [r for r in await repo.reference_rows(kind) if not local or r.get("local")]
        if stored:
            if errors or not _same_rows(stored, rows):
                kept.append(kind)
            continue
        if errors:   # the demo files are valid on their own: another table holds other data
            kept.append(kind)
            continue
        await repo.replace_reference(kind, rows, local=local)
        changed += 1
    return changed, kept


def _same_rows(stored: list[dict], rows: list[dict]) -> bool:
    def key(r: dict) -> str:
        return json.dumps({k: v for k, v in sorted(r.items()) if k != "id"}, ensure_ascii=False, default=str)

    return sorted(map(key, stored)) == sorted(map(key, rows))
