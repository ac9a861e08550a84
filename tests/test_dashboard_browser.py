"""The dashboard in headless Chromium against a real gateway, worker and Redis."""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import urlsplit

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
        blocked: list[str] = []

        async def only_local(route):  # the dashboard must work with no internet
            if urlsplit(route.request.url).hostname in ("127.0.0.1", "localhost"):
                await route.continue_()
            else:
                blocked.append(route.request.url)
                await route.abort()

        await context.route("**/*", only_local)
        pg = await context.new_page()
        pg.set_default_timeout(20_000)
        pg.blocked = blocked
        yield pg
        assert blocked == []
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


async def sign_in(page, gateway):
    await page.goto(f"{gateway}/dashboard")
    await page.fill("#key", API_KEY)
    await page.click("#login-form button")


async def test_live_pill_follows_the_socket_and_a_running_job_shows_progress_and_a_growing_duration(
        page, gateway, worker, stub):
    steps = [{"event": "progress", "percent": p, "phase": f"step {p}"} for p in (10, 30, 50, 70, 90)]
    stub.will("/ifcconvert", Behaviour(delay=0.8, stream=[*steps, {"event": "result", "result": {"ok": 1}}]))
    await sign_in(page, gateway)
    # "live" as soon as the socket is open, before any job event arrives.
    await page.wait_for_selector("#live.on:has-text('live')")
    assert await page.locator("#jobs tbody tr").count() == 0

    async with httpx.AsyncClient(base_url=gateway, headers={"X-API-Key": API_KEY}) as api:
        job = (await api.post("/ifcconvert", json=CONVERT)).json()["job_id"]
        row = f"#jobs tr[data-id='{job}']"
        await page.click(row)
        bar = f"{row} progress"
        seen: list[float] = []
        while len(seen) < 3:  # the bar moves at least twice while the job runs
            await page.wait_for_function(
                "([sel, last]) => { const b = document.querySelector(sel); return b && Number(b.value) > last; }",
                arg=[bar, max(seen, default=0)])
            seen.append(float(await page.get_attribute(bar, "value")))
            # The detail panel shows the same progress, and the counts agree with the table.
            assert float(await page.get_attribute("#d-progress progress", "value")) >= seen[-1] - 20
            await page.wait_for_function(
                "() => [...document.querySelectorAll('#queues tbody tr')].some(r => r.children[3].textContent === '1')")
        assert seen == sorted(seen) and seen[-1] > seen[0]
        # The duration of the running job grows between events (ticks every second).
        first = await page.inner_text(f"{row} td.duration")
        await page.wait_for_function("([sel, t]) => document.querySelector(sel).textContent !== t",
                                     arg=[f"{row} td.duration", first])
        await page.wait_for_selector(f"{row} .status.complete", timeout=15_000)
        assert await page.locator(f"{row} progress").count() == 0
        await page.wait_for_function(
            "() => [...document.querySelectorAll('#queues tbody tr')].every(r => r.children[3].textContent === '0')")

    # The socket closing turns the pill off; the page reconnects and it is live again.
    await page.evaluate("state.socket.close()")
    await page.wait_for_selector("#live:not(.on):has-text('offline')")
    await page.wait_for_selector("#live.on:has-text('live')")


async def test_tables_fit_at_1400_and_390_px_and_the_favicon_is_served(page, gateway, worker, stub):
    assert httpx.get(f"{gateway}/favicon.ico").headers["content-type"] == "image/png"
    stub.will("/ifcconvert", Behaviour(body={"output_files": ["output/ifcconvert/model.glb"]}), Behaviour(delay=30))
    await sign_in(page, gateway)
    await page.wait_for_selector("#workers tbody tr td:has-text('arq:queue')")
    async with httpx.AsyncClient(base_url=gateway, headers={"X-API-Key": API_KEY}) as api:
        done = (await api.post("/ifcconvert", json=CONVERT)).json()["job_id"]
        await page.wait_for_selector(f"#jobs tr[data-id='{done}'] a.view[href='/viewer?job={done}']")
        running = (await api.post("/ifcconvert", json=CONVERT)).json()["job_id"]
        await page.wait_for_selector(f"#jobs tr[data-id='{running}'] .status.in_progress")
        await page.click(f"#jobs tr[data-id='{done}']")
    clipped = """() => [...document.querySelectorAll('section, section.two > div')]
        .filter(s => s.scrollWidth > s.clientWidth + 1).map(s => s.querySelector('h2')?.textContent)"""
    for width, height in ((1400, 900), (390, 844)):
        await page.set_viewport_size({"width": width, "height": height})
        assert await page.evaluate(clipped) == [], width
        assert await page.evaluate("document.documentElement.scrollWidth") <= width
        SCREENSHOT_DIR.mkdir(exist_ok=True)
        await page.screenshot(path=str(SCREENSHOT_DIR / f"dashboard-{width}.png"), full_page=True)
