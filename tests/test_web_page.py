"""The web page at `/` in real headless Chromium: a text query and a .pose upload show results and animate."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import pytest

from serve_utils import live_server, untrained_model_dir

pytestmark = pytest.mark.slow  # a real headless Chromium

CHROMIUM = os.environ.get("SIGNCLIP_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install signclip[test])")
if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory, lexicon_paths, lexicon):
    model_dir = untrained_model_dir(tmp_path_factory.mktemp("web_model"), lexicon)
    with live_server(model_dir, lexicon_paths[:24], lexicon) as s:
        yield s


@pytest.fixture(scope="module")
def page(server):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium"),
                                    headless=True, args=FLAGS)
        page = browser.new_page(viewport={"width": 1100, "height": 760})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(server[0] + "/")
        page.wait_for_function("document.querySelector('#model-info').textContent.includes('index')")
        yield page
        browser.close()
        assert not errors, errors


def test_assets_are_local(server):
    html = httpx.get(server[0] + "/").text
    assert "http://" not in html.replace("http://127.0.0.1", "") and "https://" not in html  # no CDN
    for asset in ("/static/app.js", "/static/style.css"):
        assert httpx.get(server[0] + asset).status_code == 200


def test_text_query_shows_results(page):
    ARTIFACTS.mkdir(exist_ok=True)
    page.fill("#text-input", "A")
    page.fill("#k-input", "5")
    page.click("#text-search")
    page.wait_for_selector("#results tbody tr.result")
    rows = page.locator("#results tbody tr.result")
    assert rows.count() == 5
    assert rows.nth(0).locator("td").nth(0).inner_text() == "1"
    scores = [float(rows.nth(i).locator("td.score").inner_text()) for i in range(5)]
    assert scores == sorted(scores, reverse=True)
    assert "5 results" in page.inner_text("#status")
    page.screenshot(path=str(ARTIFACTS / "web_text_query.png"))


def test_pose_upload_shows_results_and_animates(page, lexicon_paths):
    page.set_input_files("#pose-input", lexicon_paths[5])
    page.click("#pose-search")
    page.wait_for_function("document.querySelector('#pose-canvas').dataset.frames > 0")
    page.wait_for_function("document.querySelector('#status').textContent.includes('pose → texts')")
    assert page.locator("#results tbody tr.result").count() == 5
    page.wait_for_function("document.querySelector('#pose-canvas').dataset.frame !== undefined")
    first = page.evaluate("document.querySelector('#pose-canvas').dataset.frame")
    # it animates: another frame is drawn soon after
    page.wait_for_function(f"document.querySelector('#pose-canvas').dataset.frame !== '{first}'", timeout=5000)
    drawn = page.evaluate("""() => { const c = document.querySelector('#pose-canvas');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; }""")
    assert drawn > 200  # a skeleton was drawn
    page.screenshot(path=str(ARTIFACTS / "web_pose_query.png"))


def test_bad_upload_shows_error_and_page_still_works(page, tmp_path):
    bad = tmp_path / "bad.pose"
    bad.write_bytes(b"not a pose file at all")
    page.set_input_files("#pose-input", str(bad))
    page.click("#pose-search")
    page.wait_for_selector("#status.error")
    assert "422" in page.inner_text("#status") and "bad.pose" in page.inner_text("#status")
    page.fill("#text-input", "B")
    page.click("#text-search")
    page.wait_for_function("!document.querySelector('#status').classList.contains('error')"
                           " && document.querySelector('#status').textContent.includes('results')")
