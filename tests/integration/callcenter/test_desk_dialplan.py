"""The desk's transfer and consultation to an outside number obey the dial plan."""

from __future__ import annotations

import pytest

from callcenter.calls.ports import CallInfo
from callcenter.desk_service import DeskError, DeskService
from callcenter.dialplan import DialPlan


class _Router:
    """The desk's CallControl: calls described by id; delivering an event must not be reached here."""

    def __init__(self):
        self.dialplan = DialPlan()
        self.calls: dict[str, CallInfo] = {}

    def describe(self, call_id):
        return self.calls.get(call_id)

    def deliver(self, call_id, event) -> bool:  # pragma: no cover - must not be reached
        raise AssertionError(f"delivered {event!r}")


class _Acd:
    def __init__(self):
        self.requests = []

    def handle(self, event) -> bool:
        self.requests.append(event)
        return True


def _desk():
    acd = _Acd()
    desk = DeskService(acd_driver=acd, repo=None, router=_Router(), now_dt=lambda: None)
    desk.is_agent = lambda username: True
    return desk, acd


@pytest.mark.parametrize("number, words", [("0044207946000", "禁止外呼"), ("16812345", "禁止外呼"), ("95588", "不在允许")])
def test_transfer_to_a_refused_number_says_why(number, words):
    """转接 to an international, 声讯 or unlisted number is refused with the reason in Chinese; the ACD never hears of it."""
    desk, acd = _desk()
    with pytest.raises(DeskError) as exc:
        desk.transfer("agent1", "call-1", "number", number)
    assert words in exc.value.message_zh and acd.requests == []


def test_transfer_to_a_local_mobile_goes_to_the_acd():
    """A local mobile number passes the dial plan and becomes a transfer request."""
    desk, acd = _desk()
    desk.transfer("agent1", "call-1", "number", "13800138000")
    assert len(acd.requests) == 1


def test_consultation_to_an_international_number_is_refused():
    """咨询转接 to an outside number is checked the same way before anything is dialled."""
    desk, _ = _desk()

    desk.router.calls["call-1"] = CallInfo("call-1", "13800000001", "12319", agent="agent1")
    with pytest.raises(DeskError) as exc:
        desk.consult("agent1", "call-1", "number", "0012125550100")
    assert "国际" in exc.value.message_zh
