"""Batch UDP I/O for the RTP engine: the C helper `callcenter/_rtpio.c`, if it was built.

`send_many(fds, datagrams, remotes)` sends each datagram from its descriptor to its remote
in one call for all legs and returns the items not sent as (index, errno) (errno 0: the
remote is not an IPv4 literal, the caller sends it itself); `recv_ready(epfd, maxevents)`
asks epoll once which descriptors have a packet and reads one from each, returning
(fd, data, addr) as `socket.recvfrom` would; `forget(fd)` drops what it keeps for a
descriptor. The engine (`callcenter.twisted_rtp`) uses it when it is there and its own pure
Python loops otherwise; tests run both and compare the datagrams bit for bit.

Built by `.ci/setup-venv.sh` (`python -m callcenter.rtpio_build`). `HOTLINE_RTPIO=pure`
in the environment turns it off (for A/B runs).
"""

from __future__ import annotations

import os

try:
    if os.environ.get("HOTLINE_RTPIO", "").lower() == "pure":
        raise ImportError("turned off by HOTLINE_RTPIO=pure")
    from callcenter import _rtpio as helper  # type: ignore[attr-defined]
except ImportError as exc:
    helper = None
    WHY_NOT: str | None = str(exc)
else:
    WHY_NOT = None
