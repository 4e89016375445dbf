"""Viewer figures in real headless Chromium: time to first chart, and responsiveness during a round.

    python benchmarks/bench_viewer.py                 # default scenario + a 1,000-agent run
    python benchmarks/bench_viewer.py --agents 2000 --samples 12

1. time-to-first-chart: open the page on the Metrics view, click Start on the default scenario
   (scenarios/movies.yaml), time until the first plotly chart is drawn; split into page load,
   world built (status bar shown) and first chart.
2. responsiveness: while a larger population computes its rounds in the session's background
   thread, switch views (a full rerun of the page) and time click -> new view drawn; the same
   interactions on the idle page give the baseline.
Needs the Debian `chromium` package and Playwright for Python; prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: tests/ holds the harness
from tests import viewer_harness as harness  # noqa: E402

BIG = """\
name: bench-big
seed: 3
rounds: {rounds}
population: {{size: {agents}, source: synthetic}}
catalog: {{source: bundled}}
activity: {{model: constant, probability: 0.9}}
recommender: {{name: popularity, page_size: 10, max_pages: 3}}
policy: rule
"""


def ms(seconds: float) -> float:
    return round(seconds * 1000.0, 1)


def time_to_first_chart(url: str) -> dict:
    with harness.browser_page() as page:
        page.set_default_timeout(120_000)
        t0 = time.perf_counter()
        page.goto(f"{url}/?view=charts&scenario=movies")
        page.wait_for_selector(harness.START)
        loaded = time.perf_counter()
        page.locator(harness.START).click()
        clicked = time.perf_counter()
        page.wait_for_selector(harness.STATUS)
        built = time.perf_counter()
        page.wait_for_selector(harness.CHART)
        chart = time.perf_counter()
        page.wait_for_function("() => [...document.querySelectorAll('.sw-pill')]"
                               ".some(e => e.textContent.trim() === 'finished')", timeout=300_000)
        finished = time.perf_counter()
        return {"page_load_ms": ms(loaded - t0), "start_to_status_ms": ms(built - clicked),
                "start_to_first_chart_ms": ms(chart - clicked), "open_to_first_chart_ms": ms(chart - t0),
                "start_to_finished_s": round(finished - clicked, 2)}


def _switch(page, title: str, key: str) -> float:
    t = time.perf_counter()
    harness.click_view(page, title)
    page.wait_for_selector(harness.view_selector(key), timeout=120_000)
    return time.perf_counter() - t


def _computing(page) -> bool:
    return page.locator(".sw-pill.running").filter(has_text="computing").count() > 0


def responsiveness(url: str, samples: int) -> dict:
    targets = [("Metrics", "charts"), ("Activity feed", "feed")]
    with harness.browser_page() as page:
        page.set_default_timeout(120_000)
        page.goto(f"{url}/?view=feed&scenario=bench")
        page.wait_for_selector(harness.START)
        page.locator(harness.START).click()
        page.wait_for_selector(harness.STATUS)
        busy, other = [], []
        deadline = time.monotonic() + 240
        i = 0
        while len(busy) < samples and time.monotonic() < deadline:
            if page.locator(".sw-pill").filter(has_text="finished").count():
                break
            was_busy = _computing(page)
            title, key = targets[i % 2]
            i += 1
            took = _switch(page, title, key)
            (busy if was_busy else other).append(took)
            page.wait_for_timeout(300)
        page.wait_for_function("() => [...document.querySelectorAll('.sw-pill')]"
                               ".some(e => e.textContent.trim() === 'finished')", timeout=600_000)
        idle = []
        for j in range(samples):
            title, key = targets[j % 2]
            idle.append(_switch(page, title, key))
            page.wait_for_timeout(200)
    stats = lambda xs: ({"n": len(xs), "median_ms": ms(statistics.median(xs)), "max_ms": ms(max(xs))}
                        if xs else {"n": 0})
    return {"during_round": stats(busy), "between_rounds_while_running": stats(other), "idle": stats(idle)}


def round_seconds(agents: int) -> float:
    """One round of the big scenario without the page, for context."""
    from simworld import runner

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "b.yaml"
        path.write_text(BIG.format(agents=agents, rounds=2))
        sim = runner.start(path, out_dir=Path(tmp) / "runs")
        sim.step()
        t = time.perf_counter()
        sim.step()
        took = time.perf_counter() - t
        sim.close()
    return round(took, 3)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agents", type=int, default=1000, help="population of the responsiveness run")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--skip-ttfc", action="store_true")
    args = ap.parse_args(argv)
    if harness.chromium_path() is None:
        print("Chromium is not installed (Debian package chromium)", file=sys.stderr)
        return 2
    out: dict = {"agents_responsiveness": args.agents}
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        (cwd / "scenarios").mkdir()
        (cwd / "scenarios" / "bench.yaml").write_text(BIG.format(agents=args.agents, rounds=args.rounds))
        with harness.serve(cwd, log=cwd / "streamlit.log") as url:
            if not args.skip_ttfc:
                out["time_to_first_chart"] = time_to_first_chart(url)
            out["responsiveness"] = responsiveness(url, args.samples)
    out["round_s_without_page"] = round_seconds(args.agents)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
