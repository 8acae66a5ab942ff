"""The web console in a real browser: Debian's Chromium, headless, driven by Selenium.

Set ``FRESHREC_SCREENSHOT=docs/console.png`` to keep the screenshot the
README shows.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator

import orjson
import pytest

from support import ROOT, need, wait_for


@pytest.fixture(scope="module")
def browser() -> Iterator:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    paths = need("chromium=chromium", "chromedriver=chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(paths[1]), options=options)
    yield driver
    driver.quit()


def _rows(browser, tbody: str) -> list[str]:
    """The ``data-item`` of each row of ``tbody``, read in one script (the console replaces rows as it polls)."""
    return browser.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map((tr) => tr.dataset.item)", f"#{tbody} tr[data-item]"
    )


def test_the_console_shows_live_figures_and_a_users_list_that_follows_an_event(
    browser, start_flow, start_server, tmp_path
):
    import httpx
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    flow = start_flow()
    server = start_server("--flow-metrics", f"http://127.0.0.1:{flow.metrics_port}/metrics")
    warm = [{"user": f"w{n % 30}", "item": f"i{n % 41}", "ts": 1_700_000_000 + n} for n in range(1000)]
    assert server.http.post("/events", content=orjson.dumps(warm)).json()["accepted"] == 1000
    wait_for(lambda: flow.metric("freshrec_events_total", {"outcome": "applied"}) >= 1000, timeout=60)

    # A live trickle of other users' events, so the charts move.
    stop = threading.Event()

    def trickle() -> None:
        with httpx.Client(base_url=server.url) as http:
            n = 0
            while not stop.is_set():
                batch = [{"user": f"t{(n + j) % 50}", "item": f"i{(n * 7 + j) % 41}"} for j in range(20)]
                http.post("/events", content=orjson.dumps(batch))
                n += 20
                time.sleep(0.1)

    producer = threading.Thread(target=trickle, daemon=True)
    producer.start()
    try:
        browser.get(server.url + "/")
        assert browser.title == "freshrec console"
        eps = wait_for(lambda: browser.find_element(By.ID, "stat-eps").text.replace(",", "").isdigit(), timeout=20)
        assert eps
        wait_for(lambda: "ms" in browser.find_element(By.ID, "stat-fresh").text, timeout=20)

        browser.find_element(By.ID, "user-input").send_keys("w7")
        browser.find_element(By.ID, "inspect-btn").click()
        before = wait_for(lambda: _rows(browser, "rec-list"), timeout=10)
        assert browser.find_element(By.ID, "rec-source").text == "user"
        similar = browser.execute_script("return document.querySelector('#rec-list td.similar').textContent")
        assert similar not in ("", "\N{EN DASH}")
        wait_for(lambda: _rows(browser, "events-list"), timeout=10)

        # Buy the top item: a seen item leaves the list, so the list must change.
        top = before[0]
        browser.find_element(By.ID, "send-item").send_keys(top)
        Select(browser.find_element(By.ID, "send-type")).select_by_visible_text("purchase")
        sent = time.monotonic()
        browser.find_element(By.ID, "send-btn").click()
        after = wait_for(lambda: (rows := _rows(browser, "rec-list")) != before and rows, timeout=10, every=0.05)
        took = time.monotonic() - sent
        assert top not in after
        assert "sent purchase of" in browser.find_element(By.ID, "send-result").text
        assert wait_for(lambda: _rows(browser, "events-list")[:1] == [top], timeout=10)
        print(f"list changed {took:.2f} s after the click")
        time.sleep(2.5)  # a few more chart points for the screenshot
        shot = tmp_path / "console.png"
        browser.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
        if os.environ.get("FRESHREC_SCREENSHOT"):
            shutil.copy(shot, ROOT / os.environ["FRESHREC_SCREENSHOT"])
    finally:
        stop.set()
        producer.join()
