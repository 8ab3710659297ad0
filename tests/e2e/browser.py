"""Playwright helpers for the UI tests: Debian's chromium at 1366×768, login, screenshots.

The PyPI `playwright` package drives the system browser (its own download is not used):
`launch()` starts `/usr/bin/chromium` headless with the flags below, and stops it and the
Playwright driver when the `with` block ends, whatever happens inside. Screenshots go to
`test-artifacts/screenshots/` at the repository root (git-ignored; CI keeps them as
artifacts). Without `/usr/bin/chromium` the tests are skipped with the reason, except
under CI (`CI` set), where `.ci/install-system.sh` installs it and a skip would hide a
broken setup: there it is a failure.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--lang=zh-CN",
]
VIEWPORT = {"width": 1366, "height": 768}
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"
PASSWORD = "hotline12319"  # every demo user's password (`hotline demo seed`)
MS = 1000  # Playwright timeouts are in milliseconds


def require_chromium() -> None:
    """Skip (fail under CI) when the Debian chromium is not installed."""
    if CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK):
        return
    reason = f"{CHROMIUM} is missing (Debian package chromium; .ci/install-system.sh installs it)"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@contextmanager
def launch() -> Iterator:
    """A headless chromium (playwright Browser); closed, with its driver, on exit."""
    require_chromium()
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    try:
        # Date and time inputs follow the browser process's language (LANGUAGE, with Debian's
        # chromium-l10n), not the page's locale: an agent's Chinese browser shows 年/月/日.
        # Not LANG=zh_CN.UTF-8: without that locale generated the process falls back to an
        # ASCII charset and file names like 现场.jpg no longer reach a file input.
        env = {**os.environ, "LANGUAGE": "zh_CN"}
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True, env=env)
        try:
            yield browser
        finally:
            browser.close()
    finally:
        pw.stop()


def new_page(browser, *, locale: str = "zh-CN"):
    """A page in a fresh context (own cookies) at 1366×768 that collects JavaScript errors.

    `page.js_errors` lists uncaught exceptions and console errors (other than the browser's
    note on a 4xx/5xx answer to a request); check it is empty. The pages' CSP forbids eval:
    give `wait_for_function` an arrow function ("() => …"), not a bare expression string.
    """
    context = browser.new_context(viewport=VIEWPORT, locale=locale, timezone_id="Asia/Shanghai")
    page = context.new_page()
    page.js_errors = []
    page.on("pageerror", lambda exc: page.js_errors.append(f"uncaught: {exc}"))
    page.on("console", lambda msg: _console(page, msg))
    return page


def _console(page, msg) -> None:
    # A 4xx answer to fetch() is logged as "Failed to load resource"; the page handles it.
    if msg.type == "error" and "Failed to load resource" not in msg.text:
        page.js_errors.append(f"console: {msg.text}")


def login(page, base_url: str, user: str, password: str = PASSWORD, *, next: str = "/cases") -> None:
    """Log in through the form at /login and land on `next`."""
    base = base_url.rstrip("/")
    page.goto(f"{base}/login?next={next}")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    with page.expect_navigation():
        page.click("form[action='/login'] button[type=submit]")
    path = page.url[len(base):] if page.url.startswith(base) else page.url
    if path.startswith("/login"):
        error = page.locator(".error").all_inner_texts()
        raise AssertionError(f"login as {user} failed: {error}")
    assert path.split("?")[0] == next.split("?")[0], f"after login as {user}: at {page.url}, wanted {next}"


def screenshot(page, name: str, *, full_page: bool = False) -> Path:
    """Save a PNG of what the page shows (the 1366×768 viewport, or the whole page)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-")
    path = SCREENSHOTS / f"{safe}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def horizontal_overflow(page) -> dict:
    """How wide the document is against the viewport, and the widest elements past it."""
    return page.evaluate(
        """() => {
            const width = window.innerWidth;
            const wide = [];
            for (const el of document.body.querySelectorAll('*')) {
                const r = el.getBoundingClientRect();
                if (r.right > width + 1) {
                    wide.push((el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
                               (el.className && typeof el.className === 'string' ? '.' + el.className.split(' ').join('.') : '')) +
                              ' right=' + Math.round(r.right));
                }
            }
            return {scrollWidth: document.documentElement.scrollWidth, innerWidth: width, wide: wide.slice(0, 10)};
        }"""
    )


def assert_fits_width(page, width: int = VIEWPORT["width"]) -> None:
    """No horizontal scrollbar at 1366 px: the document is no wider than the screen."""
    info = horizontal_overflow(page)
    assert info["scrollWidth"] <= width, f"{page.url} is {info['scrollWidth']} px wide (> {width}): {info['wide']}"


def cjk_glyphs_render(page, text: str = "受理台") -> bool:
    """True when the page's font draws real Chinese glyphs, not empty boxes (tofu).

    Draws each character of `text` and a private-use character (always a missing-glyph box)
    on a canvas in the body's font and compares the pixels: with no CJK font every
    character comes out as the same box.
    """
    return page.evaluate(
        """(text) => {
            const font = '32px ' + getComputedStyle(document.body).fontFamily;
            const draw = (ch) => {
                const c = document.createElement('canvas'); c.width = 48; c.height = 48;
                const g = c.getContext('2d'); g.fillStyle = '#fff'; g.fillRect(0, 0, 48, 48);
                g.fillStyle = '#000'; g.font = font; g.textBaseline = 'top'; g.fillText(ch, 4, 4);
                return c.toDataURL();
            };
            const tofu = draw('\\uE000');
            const seen = new Set([tofu]);
            for (const ch of text) { const img = draw(ch); if (seen.has(img)) return false; seen.add(img); }
            return true;
        }""",
        text,
    )
