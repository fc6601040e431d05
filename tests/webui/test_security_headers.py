"""The web UI's security headers (CSP, framing, sniffing, referrer), ``nosniff`` on API answers,
and that the browser enforces the CSP and reports a breach (which every other UI test, through
the ``page`` fixture, asserts does not happen while the UI is used)."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.conftest import RunningServer
from tests.webui.conftest import Site

UI_FILES = ["/ui/", "/ui/index.html", "/ui/app.js", "/ui/style.css", "/ui/charts.js"]


def assert_ui_headers(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    csp = response.headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"


@pytest.mark.parametrize("path", UI_FILES)
def test_ui_files_carry_security_headers(site: Site, path: str) -> None:
    assert_ui_headers(httpx.get(site.server.base + path))


def test_ui_headers_under_a_base_path(telkom_server: RunningServer) -> None:
    assert_ui_headers(httpx.get(telkom_server.base + "/ui/"))


def test_api_answers_are_not_sniffed(site: Site) -> None:
    auth = {"authorization": f"Bearer {site.user_key}"}
    for response in (httpx.get(site.server.v1 + "/models", headers=auth),
                     httpx.get(site.server.v1 + "/models"),  # a 401
                     httpx.get(site.server.base + "/metrics"),
                     httpx.get(site.server.base + "/health"),
                     httpx.get(site.server.base + "/no-such-page")):
        assert response.headers["x-content-type-options"] == "nosniff", response.url
        assert len(response.headers.get_list("x-content-type-options")) == 1


def test_the_browser_enforces_the_policy(page: Page, site: Site,
                                         csp_violations: list[str]) -> None:
    """An inline script (what an injected tag would be) does not run, and the breach is
    reported, so the other tests' silence means the UI itself complies."""
    page.goto(site.server.base + "/ui/")
    expect(page.locator("#login")).to_be_visible()
    page.evaluate("""() => {
        const script = document.createElement("script");
        script.textContent = "window.inlineRan = true";
        document.body.append(script);
        const styled = document.createElement("div");
        styled.setAttribute("style", "color: red");
        document.body.append(styled);
    }""")
    page.wait_for_timeout(200)  # the reports arrive asynchronously
    assert page.evaluate("window.inlineRan") is None
    assert any("script-src" in v for v in csp_violations), csp_violations
    assert any("style-src" in v for v in csp_violations), csp_violations
    csp_violations.clear()  # provoked on purpose

