"""End to end in real headless Chromium: serve app.py on 127.0.0.1, start a run, see a chart and a feed row.

Skips without Chromium unless SIMWORLD_REQUIRE_BROWSER=1 (CI), where a missing browser fails.
The screenshots land in test-artifacts/ (viewer.png and one per view).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests import viewer_harness as harness
from tests.helpers import viewer_scenario  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
SMALL = viewer_scenario("e2e-small", seed=11, social=True)


def _need_browser() -> None:
    problems = []
    if harness.chromium_path() is None:
        problems.append("Chromium is not installed (Debian packages chromium and chromium-driver)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        problems.append("Playwright for Python is not installed (pip install '.[test]')")
    if problems:
        if os.environ.get("SIMWORLD_REQUIRE_BROWSER") == "1":
            pytest.fail("SIMWORLD_REQUIRE_BROWSER=1 but " + "; ".join(problems))
        pytest.skip("; ".join(problems))


@pytest.mark.slow
def test_start_a_run_in_chromium_and_see_chart_and_feed(tmp_path):
    _need_browser()
    (tmp_path / "scenarios").mkdir()
    (tmp_path / "scenarios" / "small.yaml").write_text(SMALL)
    ARTIFACTS.mkdir(exist_ok=True)
    with harness.serve(tmp_path, log=tmp_path / "streamlit.log") as url, harness.browser_page() as page:
        page.set_default_timeout(60_000)
        page.goto(f"{url}/?scenario=small")
        page.wait_for_selector(harness.START)
        page.locator(harness.START).click()
        page.wait_for_selector(harness.FEED_ROW)  # the default view is the activity feed
        assert "R" in page.locator(harness.FEED_ROW).first.inner_text()
        page.wait_for_function("() => [...document.querySelectorAll('.sw-pill')]"
                               ".some(e => e.textContent.trim() === 'finished')", timeout=90_000)
        page.wait_for_selector(harness.FEED_ROW)
        assert page.locator(f"{harness.FEED_ROW}:has-text('chatted with')").count() > 0  # chats in the feed
        page.screenshot(path=str(ARTIFACTS / "viewer-feed.png"), full_page=True)
        cut = page.evaluate("""() => [...document.querySelectorAll('[data-testid="stSidebar"] .stButton button')]
            .filter(b => [b, ...b.querySelectorAll('*')].some(e => e.scrollWidth > e.clientWidth + 1))
            .map(b => b.innerText)""")
        assert cut == [], f"sidebar buttons with cut labels: {cut}"  # not "Re…", "S…"
        harness.click_view(page, "Metrics")
        page.wait_for_selector(harness.view_selector("charts"))
        page.wait_for_selector(harness.CHART)
        assert page.locator(harness.CHART).count() >= 3
        page.wait_for_timeout(800)  # let plotly finish drawing before the picture
        page.screenshot(path=str(ARTIFACTS / "viewer.png"), full_page=True)
        harness.click_view(page, "Social")
        page.wait_for_selector(f'{harness.view_selector("social")} {harness.CHART}')
        page.wait_for_selector(".sw-chat")
        page.wait_for_timeout(1200)
        page.screenshot(path=str(ARTIFACTS / "viewer-social.png"), full_page=True)
        harness.click_view(page, "Population map")
        page.wait_for_selector(f'{harness.view_selector("map")} {harness.CHART}')
        page.wait_for_timeout(800)
        page.screenshot(path=str(ARTIFACTS / "viewer-map.png"), full_page=True)
        harness.click_view(page, "Agent inspector")
        page.wait_for_selector(harness.view_selector("inspector"))
        page.wait_for_timeout(800)
        page.screenshot(path=str(ARTIFACTS / "viewer-inspector.png"), full_page=True)
        _branch_from_the_slider(page)
        assert "Traceback" not in page.content()
    log = (tmp_path / "streamlit.log").read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]
    assert len(list((tmp_path / "runs").glob("e2e-small-*/events.parquet"))) == 2  # the run and its branch
    assert len(list((tmp_path / "runs").glob("e2e-small-*-branch-r3/events.parquet"))) == 1


def _branch_from_the_slider(page) -> None:
    """Pull the Branch page's round slider back from 5 to 3, set recommender.name to mf, press
    Branch: the branch opens as the live run and runs to its end."""
    harness.click_view(page, "Branch")
    thumb = page.locator('.st-key-branch_round input[type="range"]')  # the slider's thumb, for the keyboard
    thumb.wait_for(state="attached")
    for shown in (4, 3):
        thumb.focus()
        thumb.press("ArrowLeft")
        page.wait_for_selector(f".st-key-branch_go button:has-text('after round {shown}')")
    value = page.locator(".st-key-branch_value input")
    value.fill("mf")
    value.press("Enter")
    page.wait_for_timeout(500)
    page.screenshot(path=str(ARTIFACTS / "viewer-branch.png"), full_page=True)
    page.locator(".st-key-branch_go button").click()
    page.wait_for_function("() => [...document.querySelectorAll('.sw-pill')]"
                           ".some(e => e.textContent.trim().endsWith('after round 3'))", timeout=90_000)
    page.wait_for_function("() => [...document.querySelectorAll('.sw-pill')]"
                           ".some(e => e.textContent.trim() === 'finished')", timeout=90_000)
    assert "-branch-r3" in page.locator("h3").first.inner_text()


CRS = """
name: e2e-crs
seed: 4
dialogues: 20
population: {size: 20}
seeker: {knobs: {patience: {dist: choice, values: [3, 6, 9]}, chit_chat: 0.5}}
crs: {kind: retrieval}
generation: {batch_size: 10}
"""


@pytest.mark.slow
def test_generate_crs_dialogues_in_chromium_and_read_one(tmp_path):
    _need_browser()
    (tmp_path / "scenarios").mkdir()
    (tmp_path / "scenarios" / "crs.yaml").write_text(CRS)
    ARTIFACTS.mkdir(exist_ok=True)
    with harness.serve(tmp_path, log=tmp_path / "streamlit.log") as url, harness.browser_page() as page:
        page.set_default_timeout(60_000)
        page.goto(f"{url}/?view=crs")  # the CRS page needs no simulation run
        page.wait_for_selector(".st-key-crs_generate button")
        page.screenshot(path=str(ARTIFACTS / "viewer-crs-empty.png"), full_page=True)
        page.locator(".st-key-crs_generate button").click()
        page.wait_for_selector('[data-testid="stChatMessage"]', timeout=90_000)
        assert page.locator('[data-testid="stChatMessage"]').count() >= 3
        text = page.locator(harness.view_selector("crs")).inner_text()
        assert "Generated 10 dialogues" in text and "proposed:" in text and "patience left" in text
        page.wait_for_timeout(800)
        page.screenshot(path=str(ARTIFACTS / "viewer-crs.png"), full_page=True)
        page.locator('[data-testid="stChatMessage"]').last.scroll_into_view_if_needed()
        page.wait_for_timeout(500)
        page.screenshot(path=str(ARTIFACTS / "viewer-crs-chat.png"))
        assert "Traceback" not in page.content()
    log = (tmp_path / "streamlit.log").read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]
    assert len(list((tmp_path / "runs").glob("e2e-crs-*/dialogues.parquet"))) == 1
