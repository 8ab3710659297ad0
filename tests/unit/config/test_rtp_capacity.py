"""[admission] limits against the [rtp] port range (issue 14 point 4: RTP ports always left for
real callers): an inconsistent file is refused at start with a clear error; limits left at their
defaults follow a small range."""

from __future__ import annotations

import pytest

from callcenter import config

from .helpers import load_error


def _rtp(ports: int) -> str:
    return f"[rtp]\nport_min = 30000\nport_max = {30000 + ports - 1}\n"


def test_max_calls_beyond_the_port_range_is_refused(tmp_path):
    """200 calls cannot fit 20 ports: the error names both sections, the need and the fix."""
    _, msg = load_error(tmp_path, _rtp(20) + "[admission]\nmax_calls = 200\n")
    assert "admission.max_calls" in msg and "220 RTP ports" in msg and "has 20" in msg
    assert "at most 18" in msg


def test_max_calls_without_a_reserve_is_refused(tmp_path):
    """As many calls as ports leaves nothing for agent legs and outbound calls."""
    _, msg = load_error(tmp_path, _rtp(20) + "[admission]\nmax_calls = 20\nmax_calls_per_source = 5\n")
    assert "admission.max_calls" in msg and "reserve" in msg


def test_one_source_taking_every_call_port_is_refused(tmp_path):
    """A per-source limit that lets one source hold all but the reserve leaves real callers nothing."""
    _, msg = load_error(tmp_path, _rtp(20) + "[admission]\nmax_calls = 18\nmax_calls_per_source = 18\n")
    assert "admission.max_calls_per_source" in msg and "at most 17" in msg


def test_consistent_limits_load(tmp_path):
    """Limits that fit (with the reserve) load unchanged."""
    p = tmp_path / "ok.toml"
    p.write_text(_rtp(20) + "[admission]\nmax_calls = 18\nmax_calls_per_source = 10\n")
    a = config.load(p).admission
    assert (a.max_calls, a.max_calls_per_source) == (18, 10)


@pytest.mark.parametrize("ports,calls,per_source", [(4, 3, 2), (8, 7, 6), (20, 18, 10), (1000, 200, 10)])
def test_default_limits_follow_a_small_range(tmp_path, ports, calls, per_source):
    """Without [admission] limits in the file, max_calls (and the per-source limit) shrink to the
    range; the defaults are kept when the range is large enough."""
    p = tmp_path / "small.toml"
    p.write_text(_rtp(ports))
    a = config.load(p).admission
    assert (a.max_calls, a.max_calls_per_source) == (calls, per_source)
    assert a.max_calls + config.rtp_reserve(a.max_calls) <= ports


def test_defaults_fit_the_default_range():
    """The product defaults (200 calls, 1,000 ports) pass the check as they are."""
    s = config.load(None)
    assert (s.admission.max_calls, s.rtp.port_max - s.rtp.port_min + 1) == (200, 1000)


def test_an_explicit_per_source_limit_is_kept_when_max_calls_is_fitted(tmp_path):
    """A per-source limit the file sets is checked against the fitted max_calls, not changed."""
    _, msg = load_error(tmp_path, _rtp(8) + "[admission]\nmax_calls_per_source = 10\n")
    assert "admission.max_calls_per_source" in msg
