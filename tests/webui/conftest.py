"""Headless Chromium (Debian's ``chromium``, driven by Playwright with ``executable_path``; no
browser download) against a server with an admin key and a user key. Every page records the
Content-Security-Policy violations the browser reports (``securitypolicyviolation`` events and
console messages); a test that ends with any fails."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import RunningServer, start_server, stop_server

ADMIN_KEY = "sb-webui-admin-0123456789"
ARTIFACTS = Path(__file__).parents[1] / "artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-quic"]


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class Site:
    server: RunningServer
    user_key: str


@pytest.fixture(scope="package")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    srv = start_server(tmp_path_factory.mktemp("webui"), "--admin-key", ADMIN_KEY)
    admin = httpx.Client(base_url=srv.base, timeout=30,
                         headers={"authorization": f"Bearer {ADMIN_KEY}"})
    user_key = admin.post("/admin/keys", json={"name": "ui-user", "rpm": 1000}).json()["key"]
    # some history for the dashboard: answers, and a refusal (a model this key may not use)
    limited = admin.post("/admin/keys", json={"name": "limited", "models": ["other"]}).json()
    for key in (user_key, limited["key"]):
        httpx.post(srv.v1 + "/chat/completions", timeout=60,
                   headers={"authorization": f"Bearer {key}"},
                   json={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4})
    admin.close()
    yield Site(srv, user_key)
    stop_server(srv)


@pytest.fixture(scope="package")
def browser() -> Iterator[object]:
    executable = chromium_path()
    if executable is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (CI must run the browser tests)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


# Runs in every document before its own scripts (Playwright's init scripts are exempt from CSP).
REPORT_CSP_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (e) => {
  window.reportCspViolation(`${e.violatedDirective} blocked ${e.blockedURI || "inline"} ` +
                            `at ${e.sourceFile}:${e.lineNumber}`);
});
"""


@pytest.fixture
def csp_violations() -> list[str]:
    """The CSP violations the current test's page reported so far."""
    return []


@pytest.fixture
def page(browser, csp_violations: list[str],  # noqa: ANN001
         request: pytest.FixtureRequest) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})

    def report(violation: str) -> None:
        csp_violations.append(violation)

    context.expose_function("reportCspViolation", report)
    context.add_init_script(REPORT_CSP_VIOLATIONS)
    page = context.new_page()
    page.on("console", lambda message: csp_violations.append(message.text)
            if "Content Security Policy" in message.text else None)
    yield page
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"webui-{request.node.name}.png"), full_page=True)
    page.wait_for_timeout(100)  # let the last reports arrive
    context.close()
    assert not csp_violations, f"the page broke its Content-Security-Policy: {csp_violations}"
