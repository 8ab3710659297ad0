"""The real server's web edge: no CSP violation on any page in Chromium, login throttling,
`hotline user sessions revoke` and `GET /api/audit` over HTTP."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from tests.e2e.browser import MS, login, new_page
from tests.e2e.conftest import run_hotline

# Record every Content-Security-Policy violation the page reports (inline script, eval, a
# style or image from elsewhere …) besides the console errors new_page already collects.
CSP_LISTENER = """
window.__csp = [];
document.addEventListener('securitypolicyviolation',
  e => window.__csp.push(e.violatedDirective + ' ' + (e.blockedURI || 'inline') + ' ' + (e.sourceFile || '')));
"""

PAGES = {  # user → pages that user works on
    "agent1": ["/desk", "/cases", "/worklists"],
    "supervisor1": ["/wallboard", "/callbacks"],
    "dispatcher1": ["/map", "/worklists/registered"],
    "inspector1": ["/m/"],
}


def _violations(page) -> list[str]:
    return page.evaluate("window.__csp || []")


def test_pages_load_without_csp_violations(hotline, browser):
    """Each role's pages load with the CSP header and report no violation and no script error."""
    base = hotline.web_url.rstrip("/")
    problems = []
    for user, paths in PAGES.items():
        page = new_page(browser)
        page.context.add_init_script(CSP_LISTENER)
        login(page, base, user, next=paths[0] if paths[0] != "/m/" else "/cases")
        for path in paths:
            resp = page.goto(base + path)
            assert resp is not None and resp.status == 200, (user, path, resp and resp.status)
            assert "script-src 'self'" in resp.headers["content-security-policy"]
            page.wait_for_load_state("networkidle", timeout=15 * MS)
            problems += [f"{user} {path}: {v}" for v in _violations(page)]
        problems += [f"{user}: {e}" for e in page.js_errors]
        page.context.close()
    case_id = hotline.api("/api/cases")[1][0]["id"]
    page = new_page(browser)
    page.context.add_init_script(CSP_LISTENER)
    login(page, base, "admin", next=f"/cases/{case_id}")
    page.wait_for_load_state("networkidle", timeout=15 * MS)
    problems += [f"admin case page: {v}" for v in _violations(page)] + page.js_errors
    page.context.close()
    assert problems == [], "\n".join(problems)


def _post_login(base: str, user: str, password: str) -> tuple[int, dict, str]:
    body = json.dumps({"username": user, "password": password}).encode()
    req = urllib.request.Request(base + "/login", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.headers.get("Set-Cookie", "")
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), ""


def _get(base: str, path: str, headers: dict) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(base + path, headers=headers), timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_throttle_revoke_and_audit_over_http(hotline):
    """Wrong passwords lead to 429 + Retry-After; the CLI revokes a live session; admins read the audit log."""
    base = hotline.web_url.rstrip("/")
    status, _, set_cookie = _post_login(base, "agent2", "hotline12319")
    assert status == 200 and "hotline_session=" in set_cookie and "HttpOnly" in set_cookie
    cookie = {"Cookie": set_cookie.split(";", 1)[0]}
    assert _get(base, "/api/cases", cookie) == 200
    run_hotline("user", "sessions", "revoke", "agent2", "--config", str(hotline.config))
    assert _get(base, "/api/cases", cookie) == 401

    statuses = [_post_login(base, "commander1", "wrong-password")[0] for _ in range(5)]
    status, headers, _ = _post_login(base, "commander1", "hotline12319")
    assert statuses == [401] * 5 and status == 429 and int(headers["Retry-After"]) > 0

    admin = run_hotline("token", "create", "admin", "--scope", "admin", "--config", str(hotline.config)).stdout.strip()
    assert _get(base, "/api/audit", {"Authorization": f"Bearer {hotline.token_for('agent1')}"}) == 403
    status, entries = hotline.api("/api/audit?action=login_failed", token=admin)
    assert status == 200 and entries["total"] == 5 and entries["entries"][0]["target"] == "commander1"
    status, entries = hotline.api("/api/audit?actor=cli&action=session_revoked", token=admin)
    assert status == 200 and entries["entries"][0]["target"] == "agent2"
