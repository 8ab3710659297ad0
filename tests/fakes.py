"""Small fakes for driver tests: a clock that can also 'listen' on UDP ports."""

from __future__ import annotations

from twisted.internet.error import CannotListenError
from twisted.internet.task import Clock


class FakeUdpPort:
    def __init__(self, reactor: "FakeReactor", port: int, protocol, interface: str):
        self.reactor = reactor
        self.port = port
        self.protocol = protocol
        self.interface = interface
        self.written: list[tuple[float, bytes, tuple[str, int]]] = []
        self.listening = True
        protocol.transport = self

    def write(self, data: bytes, addr) -> None:
        self.written.append((self.reactor.seconds(), data, addr))

    def stopListening(self):
        self.listening = False
        self.reactor.ports.pop(self.port, None)

    def getHost(self):
        class _Host:
            port = self.port

        return _Host()


class FakeReactor(Clock):
    """twisted.internet.task.Clock plus listenUDP into memory; `busy` ports refuse to bind."""

    def __init__(self, busy: set[int] | None = None):
        super().__init__()
        self.ports: dict[int, FakeUdpPort] = {}
        self.busy = set(busy or ())

    def listenUDP(self, port: int, protocol, interface: str = ""):
        if port in self.busy or port in self.ports:
            raise CannotListenError(interface, port, OSError("in use"))
        p = FakeUdpPort(self, port, protocol, interface)
        self.ports[port] = p
        return p

    def run_for(self, seconds: float, step: float = 0.001) -> None:
        """Advance in small steps, like a real loop that wakes up about on time."""
        end = self.seconds() + seconds
        while self.seconds() < end - 1e-9:
            self.advance(min(step, end - self.seconds()))
