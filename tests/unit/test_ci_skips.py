"""Under CI a test skipped for a missing tool fails (tests/conftest.py); platform skips stay skips."""

from __future__ import annotations

import pytest

from tests.conftest import missing_tool_skip_fails

TOOL_REASONS = ["Skipped: sipp not installed", "Skipped: espeak-ng and sox are needed to build prompts",
                "Skipped: Kannel (kannel, kannel-extras) is not installed",
                "Skipped: not every system package is installed here"]
OTHER_REASONS = ["Skipped: Linux /proc", "Skipped: POSIX priorities", "Skipped: shared speech set not present"]


@pytest.mark.parametrize("reason", TOOL_REASONS)
def test_a_missing_tool_fails_under_ci_and_skips_elsewhere(reason):
    """With CI set the skip becomes a failure; without it, it stays a skip."""
    assert missing_tool_skip_fails(reason, {"CI": "true"})
    assert not missing_tool_skip_fails(reason, {})


@pytest.mark.parametrize("reason", OTHER_REASONS)
def test_platform_and_data_skips_stay_skips_under_ci(reason):
    """A skip for the platform (or for data, not a program) is left alone even under CI."""
    assert not missing_tool_skip_fails(reason, {"CI": "true"})
