"""The dashboard in Debian's headless Chromium (Selenium + chromium-driver) against the real server.

EDGEEMO_SCREENSHOTS=docs writes the README's screenshots (docs/dashboard-*.png); otherwise they go
to the test's temporary folder.
"""

from __future__ import annotations

import csv
import math
import os
import re
import shutil
import threading
import time
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from edgeemo import LABELS
from edgeemo.config.load import load_config
from edgeemo.service.daemon import Daemon
from edgeemo.core.metrics import Metrics
from testkit.webclient import ADMIN_PW, VIEWER_PW, first_password, make_event, sample_clip, start_server

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"
DESKTOP, PHONE = (1280, 900), (390, 844)
CHROMIUM, DRIVER = shutil.which("chromium") or "/usr/bin/chromium", shutil.which("chromedriver") or "/usr/bin/chromedriver"


def shots(tmp: Path) -> Path:
    return ROOT / "docs" if os.environ.get("EDGEEMO_SCREENSHOTS") == "docs" else tmp


@pytest.fixture(scope="module")
def downloads(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(downloads):
    if not (Path(CHROMIUM).exists() and Path(DRIVER).exists()):
        pytest.fail("the browser tests need Debian's chromium and chromium-driver (apt-get install chromium "
                    "chromium-driver)", pytrace=False)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


@pytest.fixture()
def web(tmp_path):
    server, journal = start_server(tmp_path, events=600, t0=time.time() - 3 * 3600, tick_s=0.2)
    metrics = Metrics(["default"], "onnxruntime")
    metrics.fps.labels(source="default").set(29.8)
    metrics.stage_seconds.labels(stage="classify").observe(0.004)
    metrics.source_up.labels(source="default").set(1)
    server.ctx.metrics = metrics
    server.history.sample()  # the System page's ring: one sample now, with these metrics
    yield server
    server.stop()
    journal.close()


def login(driver, server, user="admin", password=ADMIN_PW) -> None:
    driver.delete_all_cookies()
    driver.get(f"http://127.0.0.1:{server.port}/live")
    wait(driver).until(lambda d: "/login" in d.current_url)
    driver.find_element(By.ID, "username").send_keys(user)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.ID, "submit").click()
    wait(driver).until(lambda d: d.current_url.endswith("/live"))


def wait(driver, seconds: float = 10) -> WebDriverWait:
    return WebDriverWait(driver, seconds)


def face(track: int, t: float) -> dict:
    happy = 0.5 + 0.4 * math.sin(t * 3 + track)
    probs = {label: (1 - happy) / (len(LABELS) - 1) for label in LABELS} | {"happy": happy}
    top = max(probs, key=probs.get)
    return {"track": track, "source": "default", "emotion": top, "confidence": probs[top], "probs": probs,
            "box": [40 * track, 30, 90, 90]}


def test_login_and_live_bars_move_while_events_flow(browser, web, tmp_path):
    stop = threading.Event()

    def play() -> None:  # the pipeline's side: a state after every frame at 30 frames/s, events now and then
        seq = 10_000
        while not stop.wait(1 / 30):
            now = time.time()
            web.feed.state([face(1, now), face(2, now)])
            if int(now * 30) % 30 == 0:
                seq += 1
                web.feed.publish([make_event(seq, now, "sad", track=7, modality="voice")])

    player = threading.Thread(target=play, daemon=True)
    login(browser, web)
    wait(browser).until(lambda d: "No face in view on source default." in d.find_element(By.ID, "nobody").text)
    assert "Nobody has spoken on source default yet." in browser.find_element(By.ID, "silent").text
    player.start()
    try:
        wait(browser).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#faces .card")) == 2)
        bar = '#faces .card[data-key="face/default/1"] .fill[data-emotion="happy"]'
        first = browser.find_element(By.CSS_SELECTOR, bar).get_attribute("style")
        wait(browser).until(lambda d: d.find_element(By.CSS_SELECTOR, bar).get_attribute("style") != first)
        wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, '#voice .card[data-key="voice/default"]'))
    finally:
        stop.set()
        player.join(2)
    web.feed.state([face(2, time.time())])  # track 1 left: its card goes
    wait(browser).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#faces .card")) == 1)
    voice = '#voice .card[data-key="voice/default"]'
    assert "ended" not in browser.find_element(By.CSS_SELECTOR, voice).get_attribute("class")
    web.feed.publish([make_event(20_000, time.time() - 12, "sad", track=7, modality="voice", kind="end")])
    wait(browser).until(lambda d: "ended" in d.find_element(By.CSS_SELECTOR, voice).get_attribute("class"))
    wait(browser).until(lambda d: re.search(r"ended 1[2-9] s ago", d.find_element(By.CSS_SELECTOR, voice).text))
    wait(browser).until(lambda d: float(d.execute_script(
        "return getComputedStyle(document.querySelector(arguments[0])).opacity", voice)) < 0.6)


def test_the_sample_in_the_real_daemon_live_then_history(browser, tmp_path, caplog):
    """The sample plays (like a camera): live bars move with it; then History draws its events."""
    caplog.set_level("INFO")
    cfg = load_config(None, {"device_id": "browser", "sources.0.url": "sample", "metrics.port": 0, "web.port": 0, "event_log.stdout": False,
                             "journal.path": str(tmp_path / "journal.db"), "event_log.path": str(tmp_path / "e.jsonl")})
    daemon = Daemon(cfg)
    daemon.start()
    try:
        password = first_password(tmp_path)
        login(browser, daemon.web, "admin", password)
        wait(browser, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#faces .card"))
        bars = "#faces .card .fill"
        first = [b.get_attribute("style") for b in browser.find_elements(By.CSS_SELECTOR, bars)]
        wait(browser, 20).until(lambda d: [b.get_attribute("style") for b in d.find_elements(By.CSS_SELECTOR, bars)] != first)
        time.sleep(1.5)  # a voice reading joins once someone has spoken for a window
        browser.save_screenshot(str(shots(tmp_path) / "dashboard-live.png"))
        daemon.pipeline.stop()  # the sample loops like a camera: stop reading, so the journal holds still
        daemon.pipeline.join(10)
        browser.get(f"http://127.0.0.1:{daemon.web.port}/history")
        wait(browser).until(lambda d: int(d.find_element(By.ID, "timeline").get_attribute("data-segments") or 0) > 0)
        wait(browser).until(lambda d: int(d.find_element(By.ID, "chart").get_attribute("data-points") or 0) > 0)
        shown = int(browser.find_element(By.ID, "count").text.strip("( events)"))
        assert shown == len(daemon.events.journal.query(limit=100_000)) > 0
        browser.save_screenshot(str(shots(tmp_path) / "dashboard-history.png"))
        browser.get(f"http://127.0.0.1:{daemon.web.port}/system")
        wait(browser).until(lambda d: "frames/s" in d.find_element(By.ID, "system").text)
        wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#chart-fps .uplot"))
        browser.save_screenshot(str(shots(tmp_path) / "dashboard-system.png"))
    finally:
        daemon.stop_requested.set()
        daemon.shutdown()


def test_history_draws_the_journal_and_exports_csv(browser, web, downloads, tmp_path):
    login(browser, web)
    browser.get(f"http://127.0.0.1:{web.port}/history")
    wait(browser).until(lambda d: int(d.find_element(By.ID, "chart").get_attribute("data-points") or 0) > 0)
    wait(browser).until(lambda d: int(d.find_element(By.ID, "timeline").get_attribute("data-segments") or 0) > 0)
    assert browser.find_elements(By.CSS_SELECTOR, "#chart .uplot canvas")
    assert "(600 events)" in browser.find_element(By.ID, "count").text
    browser.find_element(By.ID, "modality").send_keys("voice")
    browser.find_element(By.CSS_SELECTOR, "#filters button").click()
    wait(browser).until(lambda d: "(120 events)" in d.find_element(By.ID, "count").text)
    browser.find_element(By.ID, "csv").click()
    target = downloads / "edgeemo-events.csv"
    wait(browser).until(lambda d: target.exists() and target.stat().st_size > 0)
    rows = list(csv.DictReader(target.open()))
    assert len(rows) == 120 and {r["modality"] for r in rows} == {"voice"}


def test_suggestions_and_system_pages(browser, web, tmp_path):
    deadline = time.time() + 5
    while time.time() < deadline and not web.engine.alerts:
        web.feed.state([face(1, 0.5)])  # happy: the test rule fires
        time.sleep(0.05)
    login(browser, web)
    browser.get(f"http://127.0.0.1:{web.port}/suggestions")
    wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, '#alerts .alert[data-rule="happy-now"]'))
    wait(browser).until(lambda d: d.find_element(By.ID, "rules-editor").is_displayed())
    browser.save_screenshot(str(shots(tmp_path) / "dashboard-suggestions.png"))
    browser.get(f"http://127.0.0.1:{web.port}/system")
    wait(browser).until(lambda d: "29.8" in d.find_element(By.ID, "system").text)
    badges = browser.find_element(By.ID, "badges").text
    assert "default: up · 29.8 frames/s" in badges and "MQTT off" in badges
    for chart in ("fps", "cpu", "stages"):  # from the ring's sample; charts without data are left out
        assert int(browser.find_element(By.ID, f"chart-{chart}").get_attribute("data-points")) >= 1
    assert not browser.find_elements(By.ID, "chart-lag")  # nothing delivered over MQTT here: no empty chart
    assert "Queues" not in browser.find_element(By.ID, "system").text  # no empty section
    assert "journal backlog 0" in badges
    web.ctx.metrics.journal_writable.set(0)  # what the journal reports while its disk is full or read-only
    web.ctx.metrics.journal_held.set(42)
    wait(browser).until(lambda d: "journal: disk not writable · 42 held in memory" in d.find_element(By.ID, "badges").text)


def test_a_viewer_cannot_open_the_rules_editor(browser, web):
    login(browser, web, "viewer", VIEWER_PW)
    browser.get(f"http://127.0.0.1:{web.port}/suggestions")
    wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#rules tbody tr"))
    assert not browser.find_element(By.ID, "rules-editor").is_displayed()
    # and forcing it open does not help: the server refuses the save
    browser.execute_script("document.getElementById('rules-editor').hidden = false")
    browser.find_element(By.ID, "rules-save").click()
    wait(browser).until(lambda d: "admins only" in d.find_element(By.ID, "rules-msg").text)


def test_analyse_a_picture_then_a_video(browser, web, tmp_path):
    login(browser, web, "viewer", VIEWER_PW)  # viewers may analyse
    browser.get(f"http://127.0.0.1:{web.port}/analyze")
    browser.find_element(By.ID, "file").send_keys(str(FIXTURES / "two_faces.jpg"))
    # the first upload also loads the models in the analysis worker, which runs at a lower priority
    wait(browser, 90).until(lambda d: d.find_element(By.ID, "overlay").get_attribute("data-boxes") == "2")
    cards = browser.find_elements(By.CSS_SELECTOR, "#faces .card")
    assert len(cards) == 2
    for card in cards:  # seven bars each, filled from the reading
        widths = [float(f.get_attribute("style").split("width:")[1].split("%")[0])
                  for f in card.find_elements(By.CSS_SELECTOR, ".fill")]
        assert len(widths) == 7 and sum(widths) == pytest.approx(100, abs=2)
    overlay = browser.find_element(By.ID, "overlay")
    painted = browser.execute_script(
        "const c = arguments[0], d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n;", overlay)
    assert painted > 500  # the boxes and labels are drawn, not just counted
    browser.save_screenshot(str(shots(tmp_path) / "dashboard-analyze-image.png"))

    browser.find_element(By.ID, "file").send_keys(str(sample_clip(tmp_path)))
    wait(browser, 60).until(lambda d: d.find_element(By.ID, "timeline").get_attribute("data-rows") == "3")  # face, voice, fused
    wait(browser).until(lambda d: d.find_element(By.ID, "overlay").get_attribute("data-boxes") == "1")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#segment-table tr")) == 2  # header + one utterance
    timeline = browser.find_element(By.ID, "timeline")
    webdriver.ActionChains(browser).move_to_element_with_offset(timeline, timeline.size["width"] // 4, 0).click().perform()
    wait(browser).until(lambda d: d.execute_script("return document.getElementById('media').currentTime") > 1.0)
    assert "at 0:" in browser.find_element(By.CSS_SELECTOR, "#faces .card .status").text
    browser.save_screenshot(str(shots(tmp_path) / "dashboard-analyze.png"))


@pytest.mark.parametrize("size", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_every_page_fits_the_screen(browser, web, tmp_path, size):
    """Each page at a desktop and a 390 px phone width: nothing wider than the screen, Log out in view."""
    login(browser, web)
    browser.set_window_size(*size)
    try:
        for page in ("live", "analyze", "history", "suggestions", "system"):
            browser.get(f"http://127.0.0.1:{web.port}/{page}")
            wait(browser).until(lambda d: d.find_elements(By.ID, "logout"))
            width = browser.execute_script("return document.documentElement.clientWidth")
            wait(browser).until(lambda d: d.execute_script("return document.documentElement.scrollWidth") <= width)
            right = browser.execute_script("return document.getElementById('logout').getBoundingClientRect().right")
            assert 0 < right <= width, (page, right, width)
            on = browser.find_element(By.CSS_SELECTOR, "nav .links a.on")
            assert on.get_attribute("href").endswith(f"/{page}")
            icon = browser.execute_script("return document.querySelector('link[rel=icon]').href")
            assert icon.endswith("/static/favicon.svg")
            if size == PHONE:
                browser.save_screenshot(str(shots(tmp_path) / f"dashboard-{page}-phone.png"))
    finally:
        browser.set_window_size(*DESKTOP)
