"""[storage] photo_max_mb and the [wallboard] thresholds: defaults, and bad values named."""

from __future__ import annotations

import pytest

from callcenter import config


def test_defaults_and_values_from_toml():
    s = config.from_mapping({})
    assert s.storage.photo_max_mb == 10 and s.wallboard.longest_wait_red_s == 60.0
    s = config.from_mapping({"storage": {"photo_max_mb": 3},
                             "wallboard": {"longest_wait_amber_s": 20, "longest_wait_red_s": 45,
                                           "service_level_amber": 0.9, "service_level_red": 0.7}})
    assert s.storage.photo_max_mb == 3
    assert (s.wallboard.longest_wait_amber_s, s.wallboard.longest_wait_red_s) == (20.0, 45.0)
    assert s.wallboard.service_level_red == 0.7


@pytest.mark.parametrize("mapping, fragment", [
    ({"storage": {"photo_max_mb": 0}}, "storage.photo_max_mb"),
    ({"storage": {"photo_max_mb": "big"}}, "storage.photo_max_mb"),
    ({"wallboard": {"longest_wait_amber_s": 90, "longest_wait_red_s": 60}}, "wallboard.longest_wait_red_s"),
    ({"wallboard": {"waiting_red": -1, "waiting_amber": -2}}, "wallboard.waiting_red"),
    ({"wallboard": {"service_level_amber": 1.5}}, "wallboard.service_level_amber"),
    ({"wallboard": {"service_level_amber": 0.6, "service_level_red": 0.8}}, "wallboard.service_level_red"),
    ({"wallboard": {"abandon_rate_amber": 0.2, "abandon_rate_red": 0.1}}, "wallboard.abandon_rate_red"),
    ({"wallboard": {"red_s": 1}}, "wallboard.red_s"),
])
def test_bad_values_are_refused_with_the_key_named(mapping, fragment):
    with pytest.raises(config.ConfigError) as exc:
        config.from_mapping(mapping)
    assert fragment in str(exc.value)
