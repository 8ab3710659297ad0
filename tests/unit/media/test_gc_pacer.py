"""The GC pacer (callcenter/gc_pacer.py): the generational schedule as a pure decision, and
the adapter turning automatic collection off and back on."""

import gc

from twisted.internet.task import Clock

from callcenter.gc_pacer import GcPacer, GcPolicy, decide

P = GcPolicy(young=100, middle_every=3, full_every=2, full_min_interval_s=30.0)


def test_nothing_below_the_young_threshold():
    assert decide((99, 5, 5), P, 100.0, 0.0) is None


def test_young_then_middle_then_full_in_turn():
    assert decide((100, 0, 0), P, 100.0, 0.0) == 0
    assert decide((100, 1, 0), P, 100.0, 0.0) == 0
    assert decide((100, 2, 0), P, 100.0, 0.0) == 1   # third young collection: a middle one
    assert decide((100, 2, 1), P, 100.0, 0.0) == 2   # and its turn for a full one


def test_full_waits_for_its_interval():
    assert decide((100, 2, 1), P, 100.0, 80.0) == 1  # only 20 s since the last full one
    assert decide((100, 2, 1), P, 111.0, 80.0) == 2


def test_the_schedule_simulated_matches_the_counters_python_keeps():
    # gc.collect(g) resets the counters of g and younger and adds one to g+1.
    counts, done, last_full = [0, 0, 0], [0, 0, 0], float("-inf")
    for step in range(60):
        counts[0] += 50
        g = decide(tuple(counts), P, float(step), last_full)
        if g is None:
            continue
        done[g] += 1
        for i in range(g + 1):
            counts[i] = 0
        if g < 2:
            counts[g + 1] += 1
        else:
            last_full = float(step)
    assert done[0] > done[1] > 0 and done[2] >= 1


class _Cell:
    """A container object that is always a fresh GC allocation."""


def test_pacer_disables_automatic_collection_and_gives_it_back():
    assert gc.isenabled()
    clock = Clock()
    pacer = GcPacer(GcPolicy(young=1)).install().start(clock)
    try:
        assert not gc.isenabled()
        garbage = [[] for _ in range(10)]
        for a, b in zip(garbage, garbage[1:]):
            a.append(b), b.append(a)  # cycles only the collector can free
        del garbage, a, b
        pacer.after_tick(clock.seconds())
        assert sum(pacer.stats()["collections"]) >= 1
        # Live new containers since that collection, whatever else runs (instances: lists may
        # come from CPython's free list, which the collector's count does not see).
        more = [_Cell() for _ in range(50)]
        clock.advance(1.0)  # the quiet-time timer collects too
        assert sum(pacer.stats()["collections"]) >= 2
        del more
    finally:
        pacer.uninstall()
    assert gc.isenabled() and not clock.getDelayedCalls()


def test_heap_is_trimmed_once_when_the_calls_are_over():
    """After media ticks stop, the next quiet second collects fully and trims the heap, once
    per busy spell; seconds without calls before or after trim nothing."""
    clock = Clock()
    trims = []
    pacer = GcPacer(GcPolicy(young=10**9), trim=lambda: trims.append(clock.seconds())).install().start(clock)

    def quiet(seconds):  # task.Clock jumps: step through each second so the timer fires in each
        for _ in range(seconds):
            clock.advance(1.0)

    try:
        quiet(3)
        assert trims == []  # never busy: nothing to give back
        for _ in range(100):  # two seconds of calls
            clock.advance(0.02)
            pacer.after_tick(clock.seconds())
        assert trims == []  # still ticking
        quiet(2)
        assert len(trims) == 1 and pacer.stats()["trims"] == 1
        full_before = pacer.stats()["collections"][2]
        quiet(5)
        assert len(trims) == 1
        for _ in range(60):
            clock.advance(0.02)
            pacer.after_tick(clock.seconds())
        quiet(3)
        assert len(trims) == 2
        assert pacer.last_full > 0 and pacer.stats()["collections"][2] == full_before
    finally:
        pacer.uninstall()


def test_glibc_trim_is_found_here():
    """On this (glibc) system the default trim is the real malloc_trim."""
    assert GcPacer()._trim is not None
    GcPacer()._trim()
