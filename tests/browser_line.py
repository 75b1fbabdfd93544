"""Watches the line view in headless Chromium while parts are judged, for
the end-to-end test `tests/tests/browser.rs`:

  python3 tests/browser_line.py BASE_URL USER PASSWORD PARTS SCREENSHOT.png

Signs in, opens /line, prints "ready" (the test then feeds PARTS parts) and
watches, without reloading, the lamp, the counters and the strip follow each
verdict: every verdict the lamp shows is timed from its `decided_at` to the
moment the page shows it. Saves a screenshot at 1280 x 1000 and one at a
tablet held upright (800 x 1280), where nothing may scroll sideways; then
switches the person to Chinese and checks the line view (its script's texts
included) and the list speak it (`…-zh.png`). Prints
{"parts", "pass", "fail", "review", "thumbs", "lamps_seen", "max_lag_ms"}.
"""

import datetime
import json
import sys
import time

from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from browser_session import signed_in


def main(base, user, password, parts, screenshot):
    parts = int(parts)
    driver, wait = signed_in(base, user, password)
    try:
        driver.get(base + "/line")
        wait.until(lambda d: d.find_elements(By.ID, "lamp"), "no lamp on /line")
        driver.execute_script("window.__notReloaded = true;")
        # The stream is open before the first part is fed.
        wait.until(lambda d: d.find_element(By.ID, "live").text == "live", "the stream did not open")
        print("ready", flush=True)
        lags, seen = [], set()
        deadline = time.time() + 90
        while time.time() < deadline:
            lamp = driver.find_element(By.ID, "lamp")
            vid = lamp.get_attribute("data-id")
            if vid and vid not in seen:
                seen.add(vid)
                at = lamp.get_attribute("data-decided-at")
                decided = datetime.datetime.fromisoformat(at.replace("Z", "+00:00"))
                now = datetime.datetime.now(datetime.timezone.utc)
                lags.append((now - decided).total_seconds() * 1000)
            counted = int(driver.find_element(By.ID, "counters").get_attribute("data-parts"))
            if counted >= parts:
                break
            time.sleep(0.05)
        assert driver.execute_script("return window.__notReloaded === true"), "the page reloaded"
        counters = driver.find_element(By.ID, "counters")
        thumbs = driver.find_elements(By.CSS_SELECTOR, "#strip a.thumb")
        img = driver.find_element(By.CSS_SELECTOR, "#latest img")
        wait.until(lambda d: d.execute_script(
            "return arguments[0].complete && arguments[0].naturalWidth > 0", img), "the latest picture did not load")
        driver.save_screenshot(screenshot)
        driver.set_window_size(800, 1280)
        time.sleep(0.3)
        wide = driver.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert wide <= 0, f"the line view scrolls sideways by {wide} px at 800 px"
        driver.save_screenshot(screenshot.replace(".png", "-tablet.png"))
        report = {
            "parts": int(counters.get_attribute("data-parts")),
            "pass": int(counters.get_attribute("data-pass")),
            "fail": int(counters.get_attribute("data-fail")),
            "review": int(counters.get_attribute("data-review")),
            "thumbs": len(thumbs),
            "lamps_seen": len(seen),
            "max_lag_ms": max(lags) if lags else None,
        }

        # The same person in Chinese: picked in the navigation bar, kept with
        # the account; the line view and the verdict list speak Chinese, the
        # script's own texts too, and the tablet still does not scroll sideways.
        Select(driver.find_element(By.NAME, "language")).select_by_value("zh")
        driver.find_element(By.CSS_SELECTOR, "form.lang button").click()
        def page_lang(d):
            # The old page may be going away while it is asked.
            try:
                return d.execute_script("return document.documentElement.lang")
            except WebDriverException:
                return None
        wait.until(lambda d: page_lang(d) == "zh-CN", "the page did not switch to Chinese")
        assert driver.find_element(By.TAG_NAME, "h1").text == "产线", driver.find_element(By.TAG_NAME, "h1").text
        wait.until(lambda d: d.find_element(By.ID, "live").text == "实时", "the script's texts are not Chinese")
        labels = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#counters span")]
        assert "一次合格率" in labels, labels
        wide = driver.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert wide <= 0, f"the Chinese line view scrolls sideways by {wide} px at 800 px"
        driver.save_screenshot(screenshot.replace(".png", "-zh.png"))
        driver.get(base + "/")
        assert "全部判定" in driver.page_source, "the verdict list is not Chinese"
        print(json.dumps(report))
    finally:
        driver.quit()


if __name__ == "__main__":
    main(*sys.argv[1:6])
