"""The web UI in a real browser: sign-in, a streamed reply, stopping it, a parameter that takes
effect, safe Markdown, copy as code, and the dashboard's charts (screenshots in tests/artifacts)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import API_KEY, RunningServer
from tests.webui.conftest import ADMIN_KEY, Site


def sign_in(page: Page, site: Site, key: str) -> None:
    page.goto(site.server.base + "/")
    expect(page.locator("#login")).to_be_visible()
    page.fill("#login-key", key)
    page.click("#login-form button")
    expect(page.locator("#playground")).to_be_visible()


def test_sign_in_needs_a_valid_key(page: Page, site: Site) -> None:
    page.goto(site.server.base + "/")
    expect(page).to_have_url(re.compile(r"/ui/$"))
    expect(page.locator("#login")).to_be_visible()
    expect(page.locator("#playground")).to_be_hidden()
    page.fill("#login-key", "sk-sb-wrongwrongwrongwrongwrongwrongwrongwrong")
    page.click("#login-form button")
    expect(page.locator("#login-error")).to_contain_text("not accepted")
    page.fill("#login-key", site.user_key)
    page.click("#login-form button")
    expect(page.locator("#playground")).to_be_visible()
    expect(page.locator("#model option")).to_have_count(1)
    assert page.evaluate("sessionStorage.getItem('switchboard-key')") == site.user_key
    page.reload()  # the key survives a reload of the tab
    expect(page.locator("#playground")).to_be_visible()


def test_streamed_reply_with_metrics(page: Page, site: Site) -> None:
    sign_in(page, site, site.user_key)
    page.fill("#system", "You are a concise assistant.")
    page.fill("#max_tokens", "24")
    page.fill("#prompt", "What is the capital of France?")
    page.keyboard.press("Enter")
    reply = page.locator(".msg.assistant").last
    expect(reply.locator(".metrics")).to_contain_text("tokens/s", timeout=30_000)
    expect(reply.locator(".metrics")).to_contain_text("TTFT")
    assert reply.locator(".content").inner_text().strip()
    expect(page.locator(".msg.user").last).to_have_text("What is the capital of France?")


def test_stop_a_generation(page: Page, site: Site) -> None:
    sign_in(page, site, site.user_key)
    page.fill("#max_tokens", "2000")
    page.locator("details").first.click()
    # 1,200 tokens that cannot end early, each one sampled (a grammar that forces its text,
    # like "(la ){600}", is fast-forwarded and done before the click)
    page.fill("#regex", "((la|lo) ){600}")
    page.fill("#prompt", "Sing.")
    page.click("#send")
    content = page.locator(".msg.assistant .content").last
    expect(content).to_contain_text(re.compile(r"(l[ao] ){3}"), timeout=30_000)
    expect(page.locator("#stop-btn")).to_be_visible()  # text arrived while still streaming
    partial = content.inner_text()
    page.click("#stop-btn")
    expect(page.locator(".msg.assistant .metrics").last).to_contain_text("stopped")
    expect(page.locator("#send")).to_be_enabled()
    sung = re.findall(r"l[ao] ", content.inner_text())
    assert len(sung) < 600 and len(content.inner_text()) >= len(partial)


def test_a_parameter_takes_effect(page: Page, site: Site) -> None:
    sign_in(page, site, site.user_key)
    page.locator("details").first.click()
    page.fill("#choices", "alpha, omega")
    for _ in range(2):
        page.fill("#prompt", "Pick one.")
        page.click("#send")
        expect(page.locator("#send")).to_be_enabled(timeout=30_000)
    answers = page.locator(".msg.assistant .content").all_inner_texts()
    assert answers and all(a.strip() in ("alpha", "omega") for a in answers), answers
    page.fill("#choices", "")
    page.fill("#max_tokens", "1")
    page.fill("#prompt", "Tell me a story.")
    page.click("#send")
    expect(page.locator(".msg.assistant .metrics").last).to_contain_text("/ 1 out",
                                                                         timeout=30_000)


def test_markdown_is_rendered_safely(page: Page, site: Site) -> None:
    sign_in(page, site, site.user_key)
    html = page.evaluate("""renderMarkdown(
        "Hi <img src=x onerror=alert(1)> **bold** and `x<y`\\n\\n```js\\nlet a = '<b>';\\n```\\n"
        + "- one\\n- two\\n\\n[link](javascript:alert(1)) [ok](https://example.com)")""")
    assert "<img" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<strong>bold</strong>" in html and "<code>x&lt;y</code>" in html
    assert '<pre><code class="language-js">let a = &#39;&lt;b&gt;&#39;;</code></pre>' in html
    assert "<ul><li>one</li><li>two</li></ul>" in html
    assert "javascript:" not in html.split("[link]")[0] and 'href="javascript' not in html
    assert 'href="https://example.com"' in html


def test_copy_as_code(page: Page, site: Site) -> None:
    sign_in(page, site, site.user_key)
    page.fill("#temperature", "0.3")
    page.locator("details").first.click()
    page.fill("#choices", "yes, no")
    page.fill("#prompt", "Is water wet?")
    page.click("#copy-code")
    snippet = page.locator("#code-snippet")
    expect(snippet).to_contain_text("/v1/chat/completions")
    expect(snippet).to_contain_text('"guided_choice"')
    page.click(".code-tabs button[data-lang=python]")
    expect(snippet).to_contain_text("extra_body={\"guided_choice\": [\"yes\", \"no\"]}")
    expect(snippet).to_contain_text("temperature=0.3")
    expect(snippet).to_contain_text('api_key=os.environ.get("SWITCHBOARD_KEY", "unused")')
    page.click(".code-tabs button[data-lang=node]")
    expect(snippet).to_contain_text("client.chat.completions.create")
    page.click("#code-close")


@pytest.mark.parametrize("lang", ["python", "responses", "anthropic"])
def test_copied_code_runs(page: Page, site: Site, tmp_path: Path, lang: str) -> None:
    """Each Python snippet, pasted as is, answers from the server in its own dialect."""
    sign_in(page, site, site.user_key)
    page.fill("#system", "Answer in one word.")
    page.fill("#max_tokens", "8")
    page.fill("#temperature", "0")
    page.fill("#prompt", "Say hello.")
    page.click("#copy-code")
    page.click(f".code-tabs button[data-lang={lang}]")
    code = page.locator("#code-snippet").inner_text()
    page.click("#code-close")
    script = tmp_path / "snippet.py"
    script.write_text(code)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "SWITCHBOARD_KEY": site.user_key})
    assert done.returncode == 0, code + "\n" + done.stderr
    assert done.stdout.strip(), code


def test_dashboard(page: Page, site: Site) -> None:
    sign_in(page, site, site.user_key)
    page.click("#tab-dashboard")
    expect(page.locator("#dashboard-error")).to_contain_text("admin key")
    page.click("#logout")
    sign_in(page, site, ADMIN_KEY)
    page.click("#tab-dashboard")
    chart = page.locator("#chart-requests svg")
    expect(chart).to_be_visible()
    expect(page.locator("#chart-requests polyline.series").first).to_be_attached()
    expect(page.locator("#chart-requests .legend")).to_contain_text("smollm2-135m-instruct")
    expect(page.locator("#keys")).to_contain_text("ui-user")
    expect(page.locator("#errors")).to_contain_text("403")
    expect(page.locator("#by-key")).to_contain_text("limited")
    page.select_option("#chart-group", "key")  # the same charts per key
    expect(page.locator("#chart-requests .legend")).to_contain_text("ui-user")
    expect(page.locator("#chart-requests .legend")).to_contain_text("limited")


def test_under_a_base_path(page: Page, telkom_server: RunningServer) -> None:
    """With --root-path the page calls the API under that path too."""
    page.goto(telkom_server.base + "/ui/")
    page.fill("#login-key", API_KEY)
    page.click("#login-form button")
    expect(page.locator("#playground")).to_be_visible()
    expect(page.locator("#model option")).to_have_count(1)
    page.click("#copy-code")
    expect(page.locator("#code-snippet")).to_contain_text(
        telkom_server.base + "/v1/chat/completions")
