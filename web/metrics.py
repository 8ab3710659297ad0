"""`GET /metrics`: the Prometheus text exposition of this hotline (callcenter/metrics.py).

Prometheus scrapes without cookies, so the route does not use the staff login. With
`[metrics] token` empty it is open to whoever reaches the web port (by default 127.0.0.1
only); with a token it wants `Authorization: Bearer <token>` (Prometheus:
`authorization: {credentials: ...}`) and answers anything else with 401.
"""

from __future__ import annotations

import hmac

from aiohttp import web

from web.ports import MetricsExposition

METRICS = web.AppKey("metrics", MetricsExposition)  # callcenter.metrics.HotlineMetrics in the hotline
METRICS_TOKEN = web.AppKey("metrics_token", str)


def authorized(header: str, token: str) -> bool:
    if not token:
        return True
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


async def metrics(request: web.Request) -> web.Response:
    if not authorized(request.headers.get("Authorization", ""), request.app[METRICS_TOKEN]):
        return web.json_response(
            {"error": "unauthorized", "message": "访问监控指标需要 Authorization: Bearer 令牌（见配置 [metrics] token）。"},
            status=401, headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    body = await request.app[METRICS].exposition()
    response = web.Response(body=body)
    response.headers["Content-Type"] = request.app[METRICS].content_type
    return response


def setup(app: web.Application, hotline_metrics: MetricsExposition, *, token: str = "") -> None:
    app[METRICS] = hotline_metrics
    app[METRICS_TOKEN] = token
    app.router.add_get("/metrics", metrics)
