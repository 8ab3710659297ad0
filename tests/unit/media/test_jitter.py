"""JitterBuffer: in-order release, bounded hold, duplicates, late packets, wrap and restart."""

from callcenter.media.jitter import JitterBuffer


def test_in_order_passes_straight_through():
    """Consecutive packets are released immediately."""
    jb = JitterBuffer(3)
    assert [jb.push(s, s) for s in (10, 11, 12)] == [[10], [11], [12]]


def test_reorders_within_depth():
    """A swapped pair is released in order once the missing packet arrives."""
    jb = JitterBuffer(3)
    assert jb.push(1, "a") == ["a"]
    assert jb.push(3, "c") == []
    assert jb.push(2, "b") == ["b", "c"]
    assert jb.lost == 0


def test_gives_up_on_missing_packet_after_depth():
    """When more than depth packets wait, the gap is skipped and counted lost."""
    jb = JitterBuffer(2)
    jb.push(1, 1)
    assert jb.push(3, 3) == []
    assert jb.push(4, 4) == []
    assert jb.push(5, 5) == [3, 4, 5]
    assert jb.lost == 1
    assert jb.push(2, 2) == [] and jb.late == 1


def test_duplicates_dropped():
    """A packet held twice is released once and counted as a duplicate."""
    jb = JitterBuffer(3)
    jb.push(1, 1)
    jb.push(3, 3)
    assert jb.push(3, 3) == []
    assert jb.duplicates == 1
    assert jb.drain() == [3] and jb.lost == 1


def test_wraps_at_65535():
    """Sequence numbers crossing 65535→0 stay in order."""
    jb = JitterBuffer(3)
    jb.push(65534, "a")
    assert jb.push(0, "c") == []
    assert jb.push(65535, "b") == ["b", "c"]


def test_big_jump_is_a_restart_not_loss():
    """A forward jump of thousands is treated as a new stream: released, no loss counted."""
    jb = JitterBuffer(3)
    jb.push(100, "a")
    assert jb.push(20000, "b") == ["b"]
    assert jb.lost == 0
