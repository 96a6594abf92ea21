"""Browser tests: Playwright for Python driving Debian's chromium against pytest-django's live
server (the real Django stack in a thread of this process, on the test database) and, where a
flow reaches AMSI, the eSite sandbox over loopback HTTP.

- The browser is the one Debian installs (`/usr/bin/chromium`; `CHROMIUM` names another).
  Playwright's own browser download cannot work here and is never used.
- Where no browser or no Playwright exists the tests skip with a message that says what to
  install; under CI (`CI` set) they fail instead, because CI must run them (`.ci/run` installs
  chromium).
- Each step a person would look at is saved as a PNG under `var/screenshots/` (or the folder
  `SCREENSHOTS_DIR` names; `make screenshots` then copies the ones a doc shows into
  docs/screenshots/).
- Playwright's sync API runs an event loop in this thread; Django refuses ORM calls from a
  thread with a running loop unless told it is safe. Here it is: the test's own ORM calls
  and the browser's requests never share a connection (the live server has its own thread).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection

WIDTH, HEIGHT = 1400, 900  # the screen width issue 13 names for list columns


def chromium_path() -> str | None:
    named = os.environ.get("CHROMIUM")
    if named:
        return named if Path(named).exists() else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _missing(what: str) -> None:
    message = (
        f"browser tests need {what}: on Debian `apt-get install chromium` and "
        "`pip install -e '.[dev]'` (Playwright); `.ci/run` installs both"
    )
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the browser tests, but {message}", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """One chromium per test module (Playwright's loop runs in this thread while it is open:
    module scope keeps that, and the switch below, away from the rest of the suite)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("Playwright for Python")
    executable = chromium_path()
    if executable is None:
        _missing("a chromium binary")
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # see the module's docstring
    try:
        yield from _launch(sync_playwright, executable)
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


def _launch(sync_playwright, executable: str) -> Iterator[object]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable,
            args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser, live_server) -> Iterator[object]:
    """A fresh browser context (no cookies) at 1,400 x 900 with the live server as base URL.
    Downloads are accepted; a page's uncaught JavaScript error fails the test."""
    context = browser.new_context(
        base_url=live_server.url, viewport={"width": WIDTH, "height": HEIGHT}, accept_downloads=True
    )
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def screenshots_dir() -> Path:
    """$SCREENSHOTS_DIR, else var/screenshots/ (var/screenshots/<database>/ on a database other
    than SQLite: CI runs its SQLite and PostgreSQL passes side by side)."""
    folder = Path(os.environ.get("SCREENSHOTS_DIR") or django_settings.VAR_DIR / "screenshots")
    vendor = connection.vendor
    if not os.environ.get("SCREENSHOTS_DIR") and vendor != "sqlite":
        folder = folder / vendor
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def shot():
    """``shot(page, "operator-03-console")`` saves the whole page as it is now and checks it
    fits the 1,400 px screen (nothing to scroll sideways to); ``full_page=False`` keeps what
    the screen shows (a long list's first rows); a locator instead of the page saves that part
    (a form section). Returns the file's path."""

    def take(target, name: str, *, full_page: bool = True) -> Path:
        path = screenshots_dir() / f"{name}.png"
        if hasattr(target, "viewport_size"):  # a page
            target.screenshot(path=str(path), full_page=full_page)
            wide = target.evaluate("() => document.documentElement.scrollWidth")
            assert wide <= target.viewport_size["width"], f"{name}: the page is {wide} px wide"
        else:
            target.screenshot(path=str(path))
        assert path.stat().st_size > 1000, f"{path} is empty"
        return path

    return take


def log_in(page, username: str, password: str, *, admin: bool = False) -> None:
    """Log in through the real login form (the admin's or the portal's)."""
    page.goto("/admin/login/" if admin else "/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.locator("form input[type=submit], form button[type=submit]").first.click()
    page.wait_for_load_state()
