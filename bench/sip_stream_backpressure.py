"""SIP over TCP: memory when a peer floods requests and never reads our answers.

One process per mode, each with the real SIP driver on a real loopback TCP port and a client
thread that sends `--requests` OPTIONS over one connection without reading (its receive
buffer shrunk to 4 KiB). Mode `producer` is the driver as shipped (the connection pauses
reading while its answers are unsent); mode `baseline` turns that pause into a no-op, so
answers pile up in the process. Prints one JSON object: per mode, requests the client got
through within the time limit, how often reading was paused, answers still queued in the
process, and the RSS growth. All traffic stays on 127.0.0.1; each child stops by itself.

    .venv/bin/python bench/sip_stream_backpressure.py [--requests 12000] [--seconds 60]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import socket
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _child(mode: str, requests: int, seconds: float) -> None:
    sys.path.insert(0, str(ROOT))
    from twisted.internet import reactor

    from callcenter.sip.ua import UserAgent
    from callcenter.twisted_sip import SipEndpoint, SipStreamFactory, SipStreamProtocol
    from tests.unit.sip.helpers import request

    if mode == "baseline":
        SipStreamProtocol.pauseProducing = lambda self: None
    ua = UserAgent(local_host="127.0.0.1", local_port=0, rng=random.Random(1))
    endpoint = SipEndpoint(ua, reactor)
    reactor.listenUDP(0, endpoint, interface="127.0.0.1")
    factory = SipStreamFactory(endpoint, reactor, "TCP")
    port = reactor.listenTCP(0, factory, interface="127.0.0.1").getHost().port
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = {"sent": 0}

    def flood() -> None:
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(5.0)
        batch = 200
        try:
            for start in range(0, requests, batch):
                sock.sendall(b"".join(
                    request("OPTIONS", branch=f"z9hG4bK{i}", call_id=f"c{i}", via_params="")
                    for i in range(start, start + batch)))
                result["sent"] += batch
        except OSError:
            pass  # 5 s without progress: the server stopped reading us
        reactor.callFromThread(finish)

    def finish() -> None:
        if not reactor.running:
            return
        queued = sum(len(b"".join(c.transport._tempDataBuffer)) + len(c.transport.dataBuffer)
                     for c in endpoint.streams.values())
        print(json.dumps({
            "mode": mode,
            "requests_sent": result["sent"],
            "times_paused": factory.paused,
            "answer_bytes_queued_in_process": queued,
            "rss_growth_mb": round((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024, 1),
        }))
        reactor.stop()

    threading.Thread(target=flood, daemon=True).start()
    reactor.callLater(seconds, finish)
    reactor.run()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=12000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--child", choices=("producer", "baseline"))
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.requests, args.seconds)
        return
    out = {"requests": args.requests, "load_before": os.getloadavg()}
    for mode in ("baseline", "producer"):
        proc = subprocess.run([sys.executable, __file__, "--child", mode, "--requests", str(args.requests),
                               "--seconds", str(args.seconds)], capture_output=True, text=True,
                              timeout=args.seconds + 30, cwd=ROOT)
        out[mode] = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.stdout.strip() else proc.stderr[-500:]
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
