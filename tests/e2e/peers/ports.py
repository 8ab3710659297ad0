"""Free loopback ports for peers started by tests."""

from __future__ import annotations

import socket

__all__ = ["free_udp_port", "free_tcp_port", "free_udp_port_block"]


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_udp_port() -> int:
    """A UDP port on 127.0.0.1 whose TCP twin is free too, a moment ago (the usual race
    applies): the hotline listens for SIP over TCP on its UDP port number."""
    for _ in range(50):
        port = _free_port(socket.SOCK_DGRAM)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no UDP port with a free TCP twin on 127.0.0.1")


def free_tcp_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    return _free_port(socket.SOCK_STREAM)


def free_udp_port_block(count: int = 4) -> int:
    """An even UDP port followed by count-1 free ones (sipp's -mp binds audio and video
    RTP + RTCP: port .. port+3)."""
    for _ in range(50):
        port = free_udp_port() & ~1
        if port < 1024:
            continue
        socks = []
        try:
            for p in range(port, port + count):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return port
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError(f"no {count} free consecutive UDP ports on 127.0.0.1")
