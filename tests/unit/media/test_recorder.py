"""StereoMixer: caller left, agent right, silence for a missing side, bounded backlog."""

import numpy as np

from callcenter.media.recorder import StereoMixer


def _frame(value, samples=160):
    return np.full(samples, value, "<i2").tobytes()


def _lr(stereo):
    x = np.frombuffer(stereo, "<i2").reshape(-1, 2)
    return x[:, 0].tolist(), x[:, 1].tolist()


def test_pairs_caller_left_agent_right():
    """One caller frame and one agent frame become one interleaved frame, L=caller R=agent."""
    m = StereoMixer()
    m.add_caller(_frame(5))
    m.add_agent(_frame(-7))
    left, right = _lr(m.tick())
    assert left == [5] * 160 and right == [-7] * 160


def test_missing_side_is_silence():
    """With only agent audio this tick, the caller channel is zeros."""
    m = StereoMixer()
    m.add_agent(_frame(3))
    left, right = _lr(m.tick())
    assert left == [0] * 160 and right == [3] * 160
    assert _lr(m.tick()) == ([0] * 160, [0] * 160)


def test_burst_is_spread_over_ticks_and_partial_waits():
    """A 30 ms piece gives one frame now; the 10 ms rest waits for more rather than being padded."""
    m = StereoMixer()
    m.add_caller(_frame(1, 240))
    assert _lr(m.tick())[0] == [1] * 160
    assert _lr(m.tick())[0] == [0] * 160
    m.add_caller(_frame(2, 80))
    assert _lr(m.tick())[0] == [1] * 80 + [2] * 80


def test_backlog_bounded_and_drain_pads():
    """More than 10 frames queued on one side drops the oldest; drain flushes the rest padded."""
    m = StereoMixer()
    for i in range(12):
        m.add_caller(_frame(i))
    assert m.dropped_bytes == 2 * 320
    assert _lr(m.tick())[0] == [2] * 160
    m.add_agent(_frame(9, 10))
    rest = m.drain()
    left, right = _lr(rest)
    assert len(left) == 9 * 160
    assert right[:10] == [9] * 10 and right[10:] == [0] * (len(right) - 10)


def _feed(m, step):
    rng = np.random.default_rng(step)
    # Bursts, gaps, 10/20/30 ms pieces on both sides, as the network delivers them.
    for _ in range(int(rng.integers(0, 3))):
        m.add_caller(rng.integers(-30000, 30000, int(rng.choice([80, 160, 240]))).astype("<i2").tobytes())
    if rng.random() < 0.9:
        m.add_agent(rng.integers(-30000, 30000, 160).astype("<i2").tobytes())


def test_advance_and_take_give_the_bytes_of_tick():
    """Frames paired per tick and interleaved in one pass equal tick()'s frames, bit for bit."""
    ticked, held = StereoMixer(), StereoMixer()
    expected, got = [], []
    for step in range(400):
        _feed(ticked, step)
        _feed(held, step)
        expected.append(ticked.tick())
        caller, agent = held.advance()
        left, right = _lr(expected[-1])
        assert np.frombuffer(caller, "<i2").tolist() == left and np.frombuffer(agent, "<i2").tolist() == right
        if step % 50 == 49:
            got.append(held.take())
    got.append(held.take())
    assert b"".join(got) == b"".join(expected)
    assert held.take() == b""
    assert held.dropped_bytes == ticked.dropped_bytes


def test_drain_and_tick_include_held_frames_first():
    """Frames held by advance() come out before newer audio from drain() and tick()."""
    m = StereoMixer()
    m.add_caller(_frame(1))
    m.advance()
    m.add_caller(_frame(2))
    left, _ = _lr(m.tick())
    assert left == [1] * 160 + [2] * 160
    m.add_caller(_frame(3))
    m.advance()
    m.add_caller(_frame(4, 100))
    left, right = _lr(m.drain())
    assert left == [3] * 160 + [4] * 100 + [0] * 60 and right == [0] * 320


class _QueueOnlyMixer:
    """The mixer's rule with nothing but byte queues (before whole frames were kept as they
    came): the reference the kept-frame path must match."""

    def __init__(self, frame_samples=160, max_backlog_frames=10):
        self.frame = 2 * frame_samples
        self.max = self.frame * max_backlog_frames
        self.left, self.right = bytearray(), bytearray()
        self.dropped_bytes = 0

    def add(self, side, pcm):
        side += pcm
        excess = len(side) - self.max
        if excess > 0:
            del side[:excess]
            self.dropped_bytes += excess

    def take(self, side):
        if len(side) >= self.frame:
            out = bytes(side[: self.frame])
            del side[: self.frame]
            return out
        return bytes(self.frame)

    def tick(self):
        left = np.frombuffer(self.take(self.left), "<i2")
        right = np.frombuffer(self.take(self.right), "<i2")
        out = np.empty(2 * len(left), "<i2")
        out[0::2], out[1::2] = left, right
        return out.tobytes()

    def drain(self):
        out = []
        while self.left or self.right:
            for side in (self.left, self.right):
                if side and len(side) < self.frame:
                    side += bytes(self.frame - len(side))
            out.append(self.tick())
        return b"".join(out)


def test_whole_frames_kept_as_they_came_give_the_bytes_of_the_queues():
    """Over 2,000 ticks of whole frames, bursts, 10/30 ms pieces, missing packets, a backlog
    past its bound, bytearray and memoryview input, and a drain at the end: the mixer gives
    exactly the bytes (and drop count) of plain byte queues."""
    rng = np.random.default_rng(18)
    m, ref = StereoMixer(), _QueueOnlyMixer()
    got, want = [], []
    for step in range(2000):
        for side, add in (("left", "add_caller"), ("right", "add_agent")):
            r = rng.random()
            if r < 0.7:
                pieces = [160]
            elif r < 0.8:
                pieces = []
            else:
                pieces = [int(rng.choice([80, 160, 240])) for _ in range(int(rng.integers(1, 14)))]
            for samples in pieces:
                pcm = rng.integers(-30000, 30000, samples).astype("<i2").tobytes()
                kind = rng.random()
                given = bytearray(pcm) if kind < 0.05 else memoryview(pcm) if kind < 0.1 else pcm
                getattr(m, add)(given)
                ref.add(getattr(ref, side), pcm)
        if step % 7 == 3:
            got.append(m.tick())  # the frames advance() held come first
        else:
            m.advance()
            if step % 50 == 49:
                got.append(m.take())
        want.append(ref.tick())
    got.append(m.take())
    got.append(m.drain())
    want.append(ref.drain())
    assert b"".join(got) == b"".join(want)
    assert m.dropped_bytes == ref.dropped_bytes > 0
