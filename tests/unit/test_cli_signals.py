"""`hotline serve` stops once on Ctrl-C/SIGTERM: a second signal while it stops is not a traceback."""

from __future__ import annotations

import signal

from twisted.internet.error import ReactorNotRunning

from callcenter.cli import stop_once_on_signals


class FakeReactor:
    """What the handlers use of a reactor: stop() refuses a second call, as Twisted's does."""

    def __init__(self) -> None:
        self.stops = 0
        self.queued: list = []

    def callFromThread(self, f, *args) -> None:
        self.queued.append((f, args))

    def stop(self) -> None:
        if self.stops:
            raise ReactorNotRunning("Can't stop reactor that isn't running.")
        self.stops += 1

    def run_queued(self) -> None:
        while self.queued:
            f, args = self.queued.pop(0)
            f(*args)


def test_a_second_signal_while_stopping_is_ignored(caplog):
    """SIGTERM then Ctrl-C (and SIGTERM again): the reactor is stopped once, nothing raises, the log says so."""
    reactor = FakeReactor()
    stop_once_on_signals(reactor)
    caplog.set_level("INFO", logger="hotline")
    reactor.sigTerm(signal.SIGTERM, None)
    reactor.run_queued()
    reactor.sigInt(signal.SIGINT, None)
    reactor.sigTerm(signal.SIGTERM, None)
    reactor.run_queued()
    assert reactor.stops == 1
    assert "already stopping" in caplog.text and f"signal {int(signal.SIGTERM)}: stopping" in caplog.text


def test_the_handlers_replace_twisteds_own():
    """sigInt, sigTerm and sigBreak are all the stop-once handler (Twisted installs them at reactor.run)."""
    reactor = FakeReactor()
    stop_once_on_signals(reactor)
    assert reactor.sigInt is reactor.sigTerm is reactor.sigBreak
