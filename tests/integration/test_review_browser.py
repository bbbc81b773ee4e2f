"""The review page in a real headless browser (Debian's chromium, driven by Playwright) over a
real broker: claims go through the worker, the worklist counts them per rule, a claim shows each
finding beside its line, a new result appears without a reload, a resubmission that comes back
clean closes its item; screenshots go to build/."""

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Page, async_playwright, expect

from tests.claims import default_event, event_bytes, patched
from tests.kafka_harness import (
    ROOT,
    Topics,
    WorkerProcess,
    collect,
    free_port,
    http_get,
    produce,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

TOKEN = "browser-test-token-5b2f0e7a9c"  # noqa: S105 - a test token
SHOTS = ROOT / "build" / "review"


def _claim(claim_id: str, version: int = 1, *, bad_modifier: bool = True) -> tuple[bytes, bytes]:
    changes: dict[str, object] = {
        "event_id": f"{claim_id}-v{version}",
        "claim.claim_id": claim_id,
        "claim.claim_version": version,
    }
    if bad_modifier:
        changes["claim.lines[1].modifiers"] = ["ZZ"]  # MOD-002 on line 2
    return claim_id.encode(), event_bytes(patched(default_event(), changes))


@pytest.fixture
async def browser_page() -> AsyncIterator[Page]:
    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail("chromium is missing: make test installs it (deploy/install-browser.sh)")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, headless=True)
        try:
            yield await browser.new_page(viewport={"width": 1280, "height": 900})
        finally:
            await browser.close()


async def _shot(page: Page, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 20_000, f"{path} looks blank"
    return path


async def test_a_coder_sees_the_queue_live_and_each_finding_beside_its_line(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path, browser_page: Page
) -> None:
    token_file = tmp_path / "review.token"
    token_file.write_text(TOKEN)
    port = free_port()
    env = topics.env(kafka_bootstrap)
    worker = WorkerProcess(env, "worker")
    review = WorkerProcess(
        env | {"SCRUBBER_REVIEW_TOKEN_FILE": str(token_file), "SCRUBBER_REVIEW_PORT": str(port)},
        "review",
        "review",
    )
    try:
        await worker.wait_for_event("worker.started")
        await review.wait_for_event("review.started")
        await produce(kafka_bootstrap, topics.input, [_claim(f"Q-{n}") for n in range(3)])
        await collect(kafka_bootstrap, topics, expected=3)
        base = f"http://127.0.0.1:{port}"
        assert (await asyncio.to_thread(http_get, port, "/"))[0] == 401

        page = browser_page
        await page.goto(f"{base}/login?token={TOKEN}")
        row = page.locator('#groups tr[data-rule="MOD-002"] td.count')
        await expect(row).to_have_text("3")
        await _shot(page, "worklist")

        await page.click('a[href="/claims/Q-1"]')
        finding = page.locator('tr[data-line="2"] .finding[data-rule="MOD-002"]')
        await expect(finding).to_contain_text("Why:")
        await _shot(page, "claim")

        await page.goto(f"{base}/")
        await produce(kafka_bootstrap, topics.input, [_claim("Q-NEW")])
        await expect(page.locator('tr[data-claim="Q-NEW"]')).to_be_visible(timeout=30_000)
        await expect(row).to_have_text("4")

        await produce(kafka_bootstrap, topics.input, [_claim("Q-0", 2, bad_modifier=False)])
        await expect(page.locator('tr[data-claim="Q-0"]')).to_have_count(0, timeout=30_000)
        await expect(row).to_have_text("3")
        assert TOKEN not in review.all_output()
        assert "Q-0" not in review.all_output(), "no claim in the page's logs"
    finally:
        worker.kill()
        review.kill()
