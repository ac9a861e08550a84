"""The dashboard in headless Chromium against a real gateway, worker and Redis."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest

from tests.conftest import API_KEY, REPO, Behaviour

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip("playwright.async_api", reason="pip install playwright")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
SCREENSHOT_DIR = REPO / "test-artifacts"
CONVERT = {"input_filename": "model.ifc", "output_filename": "model.glb"}


@pytest.fixture
async def page():
    async with playwright.async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"],
        )
        context = await browser.new_context(viewport={"width": 1280, "height": 900})
        pg = await context.new_page()
        pg.set_default_timeout(20_000)
        yield pg
        await browser.close()


async def test_dashboard_shows_jobs_live_and_cancels_and_requeues_with_its_buttons(page, gateway, worker, stub):
    stub.will("/ifcconvert", Behaviour(delay=2, body={"ok": 1}), Behaviour(status=422, body={"detail": "bad model"}),
              Behaviour(body={"ok": "requeued"}))
    await page.goto(f"{gateway}/dashboard")
    await page.fill("#key", API_KEY)
    await page.click("#login-form button")
    await page.wait_for_selector("#workers tbody tr td:has-text('arq:queue')")

    async with httpx.AsyncClient(base_url=gateway, headers={"X-API-Key": API_KEY}) as api:
        # A job moves from queued/in progress to complete without a reload.
        job = (await api.post("/ifcconvert", json=CONVERT)).json()["job_id"]
        row = f"#jobs tr[data-id='{job}']"
        await page.wait_for_selector(f"{row} .status.in_progress")
        await page.wait_for_selector(f"{row} .status.complete", timeout=15_000)

        # Cancel a queued (deferred) job with the button, confirming the dialog.
        later = (await api.post("/ifcconvert", json={**CONVERT, "defer_by": 600})).json()["job_id"]
        await page.wait_for_selector(f"#jobs tr[data-id='{later}']")
        await page.click(f"#jobs tr[data-id='{later}']")
        await page.wait_for_selector("#d-status .status.deferred")
        page.once("dialog", lambda dialog: dialog.accept())
        await page.click("#d-cancel")
        await page.wait_for_selector("#d-status .status.aborted")
        assert (await api.get(f"/jobs/{later}")).json()["status"] == "aborted"

        # Requeue a failed job with the button.
        failed = (await api.post("/ifcconvert", json=CONVERT)).json()["job_id"]
        await page.wait_for_selector(f"#jobs tr[data-id='{failed}'] .status.failed", timeout=15_000)
        await page.click(f"#jobs tr[data-id='{failed}']")
        await page.wait_for_selector("#d-error:has-text('bad model')")
        page.once("dialog", lambda dialog: dialog.accept())
        await page.click("#d-requeue")
        await page.wait_for_selector(f"#jobs tr[data-id='{failed}'] .status.complete", timeout=15_000)
        assert (await api.get(f"/jobs/{failed}")).json()["result"] == {"ok": "requeued"}

    await page.wait_for_selector("#services tbody .status.complete:has-text('healthy')")
    assert await page.locator("#jobs tbody tr", has_text="check_services").count() == 0
    SCREENSHOT_DIR.mkdir(exist_ok=True)
    await page.screenshot(path=str(SCREENSHOT_DIR / "dashboard.png"), full_page=True)
    await page.set_viewport_size({"width": 390, "height": 844})
    await page.screenshot(path=str(SCREENSHOT_DIR / "dashboard-phone.png"), full_page=True)


async def test_a_wrong_key_is_refused_at_the_login_form(page, gateway):
    await page.goto(f"{gateway}/dashboard")
    await page.fill("#key", "wrong")
    await page.click("#login-form button")
    await page.wait_for_selector("#login-error:has-text('refused')")
    assert await page.is_hidden("#app")


def test_screenshot_dir_is_ignored_by_git():
    assert "test-artifacts/" in Path(REPO / ".gitignore").read_text()
