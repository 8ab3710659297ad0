"""The IVR interpreter: node behaviours, hang-up handling, event validation, say expansion."""

from __future__ import annotations

import dataclasses
import datetime as dt
import textwrap

import pytest

from ivr_flows import engine as e
from ivr_flows.loader import load_flow

T0 = dt.datetime(2025, 3, 3, 9, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))
PROMPTS = {"hello", "menu", "bye", "invalid", "timeout", "beep", "enter", "sorry", "q"} | {
    f"digit_{d}" for d in range(10)} | {f"num_{d}" for d in range(10)} | {
    "num_ten", "num_hundred", "num_thousand", "num_ten_thousand", "unit_year", "unit_month",
    "unit_day"}
VARS = {"caller": "13800138000", "did": "4000", "business_hours": True, "agents_ready": 1,
        "is_holiday": False}


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def flow_from(tmp_path, nodes: str, start: str = "a"):
    text = f"name: t\nstart: {start}\nnodes:\n" + textwrap.indent(textwrap.dedent(nodes), "  ")
    path = tmp_path / "t.yaml"
    path.write_text(text, encoding="utf-8")
    return load_flow(path, prompts=PROMPTS)


def run(state, *events, t=1.0):
    """Feed events one second apart; return the final state and all actions."""
    actions = []
    for ev in events:
        state, acts = e.step(state, ev, at(t))
        actions += acts
        t += 1.0
    return state, actions


BARGE_PLAY_THEN_MENU = """\
a:
  type: play
  prompts: [hello]
  barge_in: true
  next: m
m:
  type: menu
  prompts: [menu]
  options: {"1": bye}
  fallback: bye
bye: {type: hangup, reason: done}
"""


def test_barge_in_digit_on_play_node_is_used_by_next_menu(tmp_path):
    """A key during a barge-in play stops it and selects in the following menu, unplayed."""
    state, acts = e.start(flow_from(tmp_path, BARGE_PLAY_THEN_MENU), now=T0, variables=VARS)
    assert acts == [e.Play("play:a:1", ("hello",), True)]
    state, acts = e.step(state, e.DigitReceived("1"), at(1))
    assert acts == [e.StopPlayback(), e.Hangup("done")]
    assert state.finished and state.end_reason == "done"


def test_digit_during_non_barge_in_prompt_is_ignored(tmp_path):
    """Keys pressed while a prompt that may not be interrupted plays do nothing."""
    flow = flow_from(tmp_path, BARGE_PLAY_THEN_MENU.replace("barge_in: true", "barge_in: false"))
    state, _ = e.start(flow, now=T0, variables=VARS)
    after, acts = e.step(state, e.DigitReceived("1"), at(1))
    assert acts == [] and after == state


MENU_RETRY = """\
a:
  type: menu
  prompts: [hello, menu]
  reprompts: [menu]
  max_retries: 1
  timeout_s: 4
  options: {"1": bye}
  fallback: sorry
bye: {type: hangup}
sorry: {type: hangup, reason: no_input}
"""


def test_menu_retries_then_falls_back(tmp_path):
    """One retry allowed: the second failure goes to the fallback, cancelling the timer."""
    state, _ = e.start(flow_from(tmp_path, MENU_RETRY), now=T0, variables=VARS)
    state, acts = e.step(state, e.PlaybackFinished("play:a:1"), at(5))
    assert acts == [e.SetTimer("timer:a:2", at(9))]
    state, acts = e.step(state, e.TimerFired("timer:a:2"), at(9))
    assert acts == [e.Play("play:a:3", ("timeout", "menu"), True)]
    assert state.retries == 1
    state, acts = e.step(state, e.DigitReceived("5"), at(10))
    assert acts[0] == e.StopPlayback()
    assert acts[-1] == e.Hangup("no_input")


def test_stale_timer_and_play_ids_are_ignored(tmp_path):
    """Events for another play or timer id leave the state unchanged."""
    state, _ = e.start(flow_from(tmp_path, MENU_RETRY), now=T0, variables=VARS)
    for ev in (e.PlaybackFinished("play:x:9"), e.TimerFired("timer:a:99"),
               e.ReportFiled("1"), e.QueueResult("answered")):
        after, acts = e.step(state, ev, at(1))
        assert (after, acts) == (state, [])


COLLECT = """\
a:
  type: collect
  prompts: [enter]
  min_digits: 3
  max_digits: 4
  variable: number
  next: done
  fallback: sorry
done: {type: hangup}
sorry: {type: hangup, reason: no_input}
"""


def test_collect_stops_at_max_digits(tmp_path):
    """Reaching max_digits ends the input without waiting for # and stores the variable."""
    state, _ = e.start(flow_from(tmp_path, COLLECT), now=T0, variables=VARS)
    state, acts = run(state, *(e.DigitReceived(d) for d in "1234"))
    assert state.variables["number"] == "1234"
    assert acts[-1] == e.Hangup("normal")


def test_collect_too_short_then_star_are_invalid(tmp_path):
    """Fewer than min_digits before # and a * each cost a retry with the invalid prompt."""
    state, _ = e.start(flow_from(tmp_path, COLLECT), now=T0, variables=VARS)
    state, acts = run(state, e.DigitReceived("1"), e.DigitReceived("#"))
    assert acts[-1] == e.Play("play:a:3", ("invalid", "enter"), True)
    assert state.digits == "" and state.retries == 1
    state, acts = run(state, e.DigitReceived("*"))
    assert acts[-1] == e.Play("play:a:4", ("invalid", "enter"), True)
    assert state.retries == 2


def test_collect_min_zero_accepts_bare_terminator(tmp_path):
    """With min_digits 0, # alone is a valid empty answer."""
    flow = flow_from(tmp_path, COLLECT.replace("min_digits: 3", "min_digits: 0"))
    state, _ = e.start(flow, now=T0, variables=VARS)
    state, acts = run(state, e.DigitReceived("#"))
    assert state.variables["number"] == "" and state.finished


RECORD = """\
a:
  type: record
  max_s: 60
  silence_s: null
  stop_digits: "#*"
  beep: false
  next: f
  on_hangup: f
f: {type: file_report, channel: web, next: s}
s: {type: say, kind: digits, variable: case_number, next: bye}
bye: {type: hangup}
"""


def test_record_without_prompt_starts_at_once_with_options(tmp_path):
    """A record node with no prompts starts recording immediately with its parameters."""
    _, acts = e.start(flow_from(tmp_path, RECORD), now=T0, variables=VARS)
    assert acts == [e.StartRecording("rec:a:1", 60.0, None, "#*", False)]


def test_hangup_reported_by_recorder_first_still_files(tmp_path):
    """RecordingStopped(hangup) before CallerHungUp: report filed, then the flow ends."""
    state, _ = e.start(flow_from(tmp_path, RECORD), now=T0, variables=VARS)
    state, acts = e.step(state, e.RecordingStopped("rec:a:1", "hangup", 3.5), at(4))
    assert [type(a) for a in acts] == [e.FileReport]
    assert acts[0].recording_id == "rec:a:1" and acts[0].channel == "web"
    assert acts[0].variables["recording_duration_s"] == 3.5
    state, acts = e.step(state, e.CallerHungUp(), at(4.1))
    assert acts == [] and not state.finished
    state, acts = e.step(state, e.ReportFiled("77"), at(5))
    assert acts == [] and state.finished and state.end_reason == "caller_hung_up"
    assert state.variables["case_number"] == "77"


def test_hangup_while_awaiting_report_waits_for_it(tmp_path):
    """A hang-up after the report was requested keeps waiting for ReportFiled."""
    state, _ = e.start(flow_from(tmp_path, RECORD), now=T0, variables=VARS)
    state, _ = e.step(state, e.RecordingStopped("rec:a:1", "digit", 3.5), at(4))
    state, acts = e.step(state, e.CallerHungUp(), at(5))
    assert acts == [] and not state.finished and state.hung_up
    state, acts = e.step(state, e.ReportFiled("77"), at(6))
    assert state.finished and acts == []


def test_finished_state_ignores_everything(tmp_path):
    """After the flow ended, events yield no actions and no change."""
    state, _ = e.start(flow_from(tmp_path, BARGE_PLAY_THEN_MENU), now=T0, variables=VARS)
    state, _ = e.step(state, e.CallerHungUp(), at(1))
    assert state.finished
    for ev in (e.DigitReceived("1"), e.PlaybackFinished("play:a:1"), e.CallerHungUp()):
        assert e.step(state, ev, at(2)) == (state, [])


ROUTING = """\
a:
  type: branch
  cases:
    - {if: "is_holiday or not business_hours", next: closed}
    - {if: "agents_ready >= 2", next: q}
  else: cb
closed: {type: transfer, target: "sip:night@pbx"}
q:
  type: enqueue
  queue: report
  skill: mandarin
  outcomes: {full: cb}
  default: closed
cb: {type: offer_callback, queue: report, next: bye}
bye: {type: hangup}
"""


@pytest.mark.parametrize("variables, expected", [
    ({"is_holiday": True, "business_hours": True, "agents_ready": 5},
     [e.Transfer("sip:night@pbx")]),
    ({"is_holiday": False, "business_hours": True, "agents_ready": 2},
     [e.Enqueue("report", "mandarin")]),
    ({"is_holiday": False, "business_hours": True, "agents_ready": 1},
     [e.OfferCallback("report"), e.Hangup("normal")]),
    ({"is_holiday": False, "business_hours": True, "agents_ready": "many"},
     [e.OfferCallback("report"), e.Hangup("normal")]),  # type mismatch compares False
])
def test_branch_routes_on_variables(tmp_path, variables, expected):
    """Branch conditions pick the first true case, else the default."""
    _, acts = e.start(flow_from(tmp_path, ROUTING), now=T0, variables=variables)
    assert acts == expected


def test_queue_outcomes(tmp_path):
    """`answered` ends the IVR without a hang-up; mapped and unmapped outcomes route on."""
    flow = flow_from(tmp_path, ROUTING)
    start_vars = {"agents_ready": 3, "business_hours": True}
    state, _ = e.start(flow, now=T0, variables=start_vars)
    done, acts = e.step(state, e.QueueResult("answered"), at(1))
    assert acts == [] and done.finished and done.end_reason == "answered"
    _, acts = e.step(state, e.QueueResult("full"), at(1))
    assert acts == [e.OfferCallback("report"), e.Hangup("normal")]
    end, acts = e.step(state, e.QueueResult("timeout"), at(1))
    assert acts == [e.Transfer("sip:night@pbx")] and end.end_reason == "transferred"


def test_variables_changed_updates_later_decisions(tmp_path):
    """VariablesChanged during a prompt is seen by the branch taken afterwards."""
    flow = flow_from(tmp_path, """\
        a: {type: play, prompts: [hello], next: r}
        r:
          type: branch
          cases: [{if: agents_ready > 0, next: q}]
          else: bye
        q: {type: enqueue, queue: report, default: bye}
        bye: {type: hangup}
        """)
    state, _ = e.start(flow, now=T0, variables={"agents_ready": 0})
    state, acts = e.step(state, e.VariablesChanged({"agents_ready": 4}), at(1))
    assert acts == []
    _, acts = e.step(state, e.PlaybackFinished("play:a:1"), at(2))
    assert acts == [e.Enqueue("report", None)]


def test_lookup_without_number_goes_not_found_with_log(tmp_path):
    """lookup_case with no number in the variable logs and takes not_found."""
    flow = flow_from(tmp_path, """\
        a: {type: lookup_case, found: x, not_found: y}
        x: {type: hangup, reason: found}
        y: {type: hangup, reason: missing}
        """)
    state, acts = e.start(flow, now=T0, variables={})
    assert isinstance(acts[0], e.Log) and acts[-1] == e.Hangup("missing")
    assert state.variables["case_found"] is False


def test_say_with_unsayable_value_logs_and_continues(tmp_path):
    """A say node whose variable is missing logs it and goes on instead of stalling."""
    flow = flow_from(tmp_path, """\
        a: {type: say, kind: digits, variable: case_number, before: [hello], next: bye}
        bye: {type: hangup}
        """)
    state, acts = e.start(flow, now=T0, variables={})
    assert isinstance(acts[0], e.Log) and "case_number" in acts[0].message
    assert acts[-1] == e.Hangup("normal")


@pytest.mark.parametrize("n, words", [
    (0, "0"), (7, "7"), (10, "ten"), (15, "ten 5"), (20, "2 ten"), (105, "1 hundred 0 5"),
    (110, "1 hundred 1 ten"), (1005, "1 thousand 0 5"), (2300, "2 thousand 3 hundred"),
    (10015, "1 ten_thousand 0 1 ten 5"), (120000, "ten 2 ten_thousand"),
    (99999999, "9 thousand 9 hundred 9 ten 9 ten_thousand 9 thousand 9 hundred 9 ten 9"),
])
def test_say_number_in_chinese(n, words):
    """Cardinals follow Chinese reading: 十五, 一百零五, 一万零一十五, 十二万."""
    assert e.say_prompts("number", n) == tuple(f"num_{w}" for w in words.split())


def test_say_digits_date_and_status():
    """Digits skip separators; dates read the year digit by digit; unknown statuses fall back."""
    assert e.say_prompts("digits", "12-30") == ("digit_1", "digit_2", "digit_3", "digit_0")
    assert e.say_prompts("date", "2025-03-18") == (
        "num_2", "num_0", "num_2", "num_5", "unit_year", "num_3", "unit_month",
        "num_ten", "num_8", "unit_day")
    assert e.say_prompts("case_status", "closed") == ("status_closed",)
    assert e.say_prompts("case_status", "weird") == ("status_unknown",)
    with pytest.raises(ValueError):
        e.say_prompts("digits", "abc")
    with pytest.raises(ValueError):
        e.say_prompts("number", -3)


@pytest.mark.parametrize("make", [
    lambda: e.DigitReceived("12"),
    lambda: e.DigitReceived("x"),
    lambda: e.RecordingStopped("r", "tired", 1.0),
    lambda: e.RecordingStopped("r", "digit", -1),
    lambda: e.ReportFiled(""),
    lambda: e.CaseLookedUp("yes", "1", None),
    lambda: e.VariablesChanged(["a"]),
    lambda: e.PlaybackFinished(None),
    lambda: e.TimerFired(""),
    lambda: e.QueueResult(3),
    lambda: e.CaseLookedUp(True, "1", 5),
])
def test_malformed_events_raise(make):
    """Events with impossible values are refused when built, with IvrEventError."""
    with pytest.raises(e.IvrEventError):
        make()


def test_step_rejects_non_events_and_bad_now(tmp_path):
    """step() refuses things that are not events, and a `now` that is not a datetime."""
    state, _ = e.start(flow_from(tmp_path, MENU_RETRY), now=T0, variables=VARS)
    with pytest.raises(e.IvrEventError, match="not an IVR event"):
        e.step(state, "1", at(1))
    with pytest.raises(e.IvrEventError, match="now must be a datetime"):
        e.step(state, e.DigitReceived("1"), 12.0)
    with pytest.raises(e.IvrEventError, match="variables must be a mapping"):
        e.start(state.flow, now=T0, variables=[("caller", "1")])


def test_state_and_variables_are_immutable(tmp_path):
    """IvrState cannot be changed in place, nor can its variables."""
    state, _ = e.start(flow_from(tmp_path, MENU_RETRY), now=T0, variables=VARS)
    with pytest.raises(dataclasses.FrozenInstanceError):
        state.node = "bye"  # type: ignore[misc]
    with pytest.raises(TypeError):
        state.variables["caller"] = "x"  # type: ignore[index]


def test_lookup_without_answer_times_out_to_not_found(tmp_path):
    """If the case store never answers, the lookup gives up after timeout_s."""
    flow = flow_from(tmp_path, """\
        a: {type: lookup_case, found: x, not_found: y, timeout_s: 3}
        x: {type: hangup, reason: found}
        y: {type: hangup, reason: missing}
        """)
    state, acts = e.start(flow, now=T0, variables={"case_number": "42"})
    assert acts == [e.LookupCase("42"), e.SetTimer("timer:a:1", at(3))]
    state, acts = e.step(state, e.TimerFired("timer:a:1"), at(3))
    assert isinstance(acts[0], e.Log) and acts[-1] == e.Hangup("missing")
    late, acts = e.step(state, e.CaseLookedUp(True, "42", "closed"), at(4))
    assert acts == [] and late.end_reason == "missing"
