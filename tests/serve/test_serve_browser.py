"""The `vaekit serve` page in a real headless Chromium (Debian's ``chromium``, driven by playwright through
``executable_path``: no browser download): a slider decodes live, the map shows thumbnails and decodes a click, an
uploaded PNG is encoded, samples and an interpolation are drawn, and the page asks nothing of another origin.

Set VAEKIT_UPDATE_SCREENSHOT=1 to also write the screenshot to docs/serve.png (shown in docs/using.md)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the serve extra (fastapi) is not installed: pip install 'vaekit[serve]'")
uvicorn = pytest.importorskip("uvicorn", reason="the serve extra (uvicorn) is not installed")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install 'vaekit[test]')")
CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (apt-get install chromium)")
DOCS = Path(__file__).resolve().parents[2] / "docs"


@contextlib.contextmanager
def _serve(explorer):
    """The app on a free loopback port, in a thread; yields its base URL."""
    from vaekit.serve.app import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(create_app(explorer), host="127.0.0.1", port=port, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the test server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def server(vae_explorer):
    with _serve(vae_explorer) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield b
        b.close()


def _open(browser, url: str):
    pg = browser.new_page(viewport={"width": 1400, "height": 1000})
    pg.set_default_timeout(15000)
    pg.requests, pg.errors = [], []
    pg.on("request", lambda r: pg.requests.append(r.url))
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))
    pg.on("console", lambda m: pg.errors.append(m.text) if m.type == "error" else None)
    pg.goto(url + "/")
    pg.wait_for_selector("body[data-ready='1']")
    pg.wait_for_function("() => document.querySelector('#decoded').src.startsWith('data:image/png')")
    return pg


@pytest.fixture(scope="module")
def page(browser, server):
    pg = _open(browser, server)
    yield pg
    pg.close()


def _src(page, sel: str) -> str:
    return page.get_attribute(sel, "src") or ""


def _changed(page, sel: str, old: str) -> str:
    page.wait_for_function("([s, old]) => { const e = document.querySelector(s); return e.src && e.src !== old "
                           "&& e.dataset.state !== 'busy'; }", arg=[sel, old])
    return _src(page, sel)


def test_slider_decodes_live(page):
    page.wait_for_function("() => document.querySelector('#decoded').src.startsWith('data:image/png')")
    before = _src(page, "#decoded")
    top = page.evaluate("state.info.order[0]")
    assert page.locator("#sliders input").count() == 3
    page.locator(f"#slider-{top}").fill("2.5")  # a range input: sets the value and fires 'input'
    after = _changed(page, "#decoded", before)
    assert after != before
    assert page.text_content(f"#value-{top}") == "2.50"


def test_map_hover_and_click(page):
    box = page.locator("#map").bounding_box()
    px, py = page.evaluate("mapScale().toPx(state.map.x[0], state.map.y[0])")
    w = page.evaluate("document.querySelector('#map').width")
    k = box["width"] / w
    page.mouse.move(box["x"] + px * k, box["y"] + py * k)
    page.wait_for_selector("#thumb:not([hidden])")
    assert _src(page, "#thumb").startswith("data:image/png")
    before = _src(page, "#decoded")
    u_before = page.evaluate("state.u.slice()")
    page.mouse.click(box["x"] + box["width"] * 0.8, box["y"] + box["height"] * 0.25)
    after = _changed(page, "#decoded", before)
    assert after != before and page.evaluate("state.u.slice()") != u_before


def test_upload_png_shows_posterior(page, tmp_path):
    from PIL import Image

    a = np.zeros((64, 64), np.uint8)
    a[8:56, 26:38] = 255  # a "1"
    path = tmp_path / "one.png"
    Image.fromarray(a, "L").save(path)
    page.set_input_files("#upload", str(path))
    page.wait_for_function("() => document.querySelector('#recon').src.startsWith('data:image/png')")
    rows = page.locator("#posterior .bar").count()
    assert rows == 3
    assert "±" in page.text_content("#posterior")
    assert page.is_enabled("#to-sliders")


def test_draw_samples_interpolate_and_screenshot(page, tmp_path):
    c = page.locator("#draw").bounding_box()
    page.mouse.move(c["x"] + 80, c["y"] + 20)
    page.mouse.down()
    page.mouse.move(c["x"] + 80, c["y"] + 140, steps=8)
    page.mouse.up()
    old = _src(page, "#recon")
    page.click("#encode-draw")
    page.wait_for_function("(old) => document.querySelector('#recon').src !== old", arg=old)
    page.click("#sample")
    page.wait_for_function("() => document.querySelectorAll('#samples img').length === 16")
    page.select_option("#method", "slerp")
    page.click("#interp")
    page.wait_for_function("() => document.querySelectorAll('#interp-out img').length === 8")
    assert page.text_content("#error") == ""
    shot = tmp_path / "serve.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10000
    if os.environ.get("VAEKIT_UPDATE_SCREENSHOT") == "1":
        DOCS.mkdir(exist_ok=True)
        shutil.copyfile(shot, DOCS / "serve.png")


def test_page_stays_on_its_origin(page, server):
    assert page.requests and all(u.startswith(server + "/") or u.startswith("data:") for u in page.requests)
    assert page.errors == []


def test_ladder_resamples_one_layer(browser, ladder_explorer):
    with _serve(ladder_explorer) as url:
        pg = _open(browser, url)
        assert pg.locator("#sliders input").count() == 5 and pg.locator("#layers button").count() == 2
        before, u = _src(pg, "#decoded"), pg.evaluate("state.u.slice()")
        pg.click("#resample-1")  # the top layer: new noise there, layer 1's kept
        after = _changed(pg, "#decoded", before)
        u2 = pg.evaluate("state.u.slice()")
        assert after != before and u2[:3] == u[:3] and u2[3:] != u[3:]
        assert pg.errors == []
        pg.close()
