"""Where recognition workers and the media tick run (callcenter/cpus.py)."""

import os

import pytest

from callcenter import cpus
from callcenter.config import ConfigError, from_mapping

ALL2 = frozenset({0, 1})
ALL8 = frozenset(range(8))


@pytest.mark.parametrize("text, expected", [
    ("0", {0}), ("0-2,5", {0, 1, 2, 5}), (" 1 , 3 ", {1, 3}), ("4-4", {4}),
])
def test_parse_cpu_list(text, expected):
    assert cpus.parse_cpu_list(text) == frozenset(expected)


@pytest.mark.parametrize("text", ["", "a", "1,,2", "3-1", "-1", "1-", "0.5"])
def test_parse_cpu_list_rejects(text):
    with pytest.raises(ValueError):
        cpus.parse_cpu_list(text)


def test_format_round_trips():
    for cpu_set in ({0}, {0, 1, 2, 5}, {1, 3, 4, 5, 9}):
        text = cpus.format_cpu_list(frozenset(cpu_set))
        assert cpus.parse_cpu_list(text) == frozenset(cpu_set)
    assert cpus.format_cpu_list({0, 1, 2, 5}) == "0-2,5"


def test_auto_on_two_cpus_keeps_the_highest_for_media():
    p = cpus.plan("auto", ALL2, ALL2)
    assert p.media == {1} and p.workers == {0}


def test_auto_when_started_pinned_gives_workers_the_rest():
    # taskset -c 1 hotline serve: the server stays where the operator put it.
    p = cpus.plan("auto", frozenset({1}), ALL2)
    assert p.media is None and p.workers == {0}
    p = cpus.plan("auto", frozenset({2, 3}), ALL8)
    assert p.media is None and p.workers == ALL8 - {2, 3}


def test_auto_on_one_cpu_pins_nothing():
    p = cpus.plan("auto", frozenset({0}), frozenset({0}))
    assert p.media is None and p.workers is None
    assert "one CPU" in p.describe()


def test_off_pins_nothing():
    p = cpus.plan("off", ALL8, ALL8)
    assert p.media is None and p.workers is None


def test_explicit_list():
    p = cpus.plan("0-5", ALL8, ALL8)
    assert p.workers == frozenset(range(6)) and p.media == {6, 7}
    # the listed CPUs are all the server may use: workers there, the server is not moved
    p = cpus.plan("0-1", ALL2, ALL2)
    assert p.workers == ALL2 and p.media is None
    with pytest.raises(ValueError, match="not online"):
        cpus.plan("0,9", ALL8, ALL8)


def test_media_and_workers_never_overlap():
    for allowed in (ALL2, frozenset({1}), ALL8, frozenset({0, 3, 5})):
        for setting in ("auto", "0", "1-2", "off"):
            try:
                p = cpus.plan(setting, allowed, ALL8 if max(allowed) > 1 else ALL2)
            except ValueError:
                continue
            if p.media is not None and p.workers is not None:
                assert not (p.media & p.workers), (allowed, setting)


def test_config_names_the_key_for_a_bad_list():
    with pytest.raises(ConfigError, match="stt.cpus"):
        from_mapping({"stt": {"cpus": "zero"}})
    assert from_mapping({"stt": {"cpus": "0-1"}}).stt.cpus == "0-1"


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="Linux affinity")
def test_machine_cpus_reads_this_process():
    allowed, online = cpus.machine_cpus()
    assert allowed and allowed <= online


@pytest.mark.skipif(not hasattr(os, "getpriority"), reason="POSIX priorities")
def test_background_threads_run_nicer_than_the_loop():
    from concurrent.futures import ThreadPoolExecutor
    import threading

    def nice_here():
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    mine = nice_here()
    with ThreadPoolExecutor(1, initializer=cpus.background_thread) as pool:
        theirs = pool.submit(nice_here).result()
    assert theirs == min(19, mine + cpus.BACKGROUND_NICE)
    assert nice_here() == mine  # the calling thread is untouched
