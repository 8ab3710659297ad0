"""Batch recognition yields to the media tick (callcenter/stt/yielding.py, MediaYield)."""

import pytest
from twisted.internet.task import Clock

from callcenter.config import ConfigError, from_mapping
from callcenter.stt.yielding import YieldPolicy, busy_share
from callcenter.stt.transcription import MediaYield


def test_policy_pauses_above_and_resumes_only_well_below():
    p = YieldPolicy.from_threshold(0.5)
    assert p.resume_below == pytest.approx(0.35)
    assert p.next_paused(False, 0.49) is False
    assert p.next_paused(False, 0.51) is True
    # paused: stays paused in the band between the two thresholds (no flapping)
    assert p.next_paused(True, 0.45) is True
    assert p.next_paused(True, 0.36) is True
    assert p.next_paused(True, 0.34) is False


@pytest.mark.parametrize("pause, resume", [(0.5, 0.5), (0.5, 0.0), (1.5, 0.2), (0.0, 0.0)])
def test_policy_rejects_nonsense(pause, resume):
    with pytest.raises(ValueError):
        YieldPolicy(pause, resume)


def test_busy_share():
    assert busy_share(1.0, 1.3, 10.0, 10.5) == pytest.approx(0.6)
    assert busy_share(1.0, 1.0, 10.0, 10.0) == 0.0
    assert busy_share(1.0, 9.0, 10.0, 10.5) == 1.0  # clamped


class FakePool:
    def __init__(self):
        self.paused = False
        self.calls = []

    def pause(self):
        self.paused = True
        self.calls.append("pause")

    def resume(self):
        if self.paused:
            self.calls.append("resume")
        self.paused = False


def test_media_yield_follows_the_engines_busy_time():
    clock, pool = Clock(), FakePool()
    busy = {"s": 0.0}
    y = MediaYield(pool, lambda: busy["s"], clock, YieldPolicy.from_threshold(0.5), period_s=0.5).start()
    shares = [0.2, 0.6, 0.6, 0.4, 0.3, 0.55, 0.1]
    seen = []
    for share in shares:
        busy["s"] += share * 0.5
        clock.advance(0.5)
        seen.append(pool.paused)
    assert seen == [False, True, True, True, False, True, False]
    assert pool.calls.count("resume") == 2
    y.stop()
    assert not pool.paused and not clock.getDelayedCalls()


def test_media_yield_resumes_on_stop_while_paused():
    clock, pool = Clock(), FakePool()
    busy = {"s": 0.0}
    y = MediaYield(pool, lambda: busy["s"], clock, YieldPolicy.from_threshold(0.5)).start()
    busy["s"] += 0.45
    clock.advance(0.5)
    assert pool.paused
    y.stop()
    assert not pool.paused


def test_config_key():
    assert from_mapping({}).stt.yield_above == 0.5
    assert from_mapping({"stt": {"yield_above": 0}}).stt.yield_above == 0
    with pytest.raises(ConfigError, match="stt.yield_above"):
        from_mapping({"stt": {"yield_above": 1.5}})
