"""The line view through a station restart, in headless Chromium, for the
end-to-end test `tests/tests/browser.rs`:

  python3 tests/browser_line_drop.py BASE_URL USER PASSWORD BEFORE AFTER

Signs in, opens /line and prints "ready"; the test feeds BEFORE parts. Once
the counters show them the page prints "seen"; the test stops the station
(its event stream ends) and the page must say it is reconnecting: it prints
"dropped". The test starts the station again on the same port and feeds
AFTER parts; the page must reconnect by itself, without a reload, and count
all BEFORE + AFTER parts, its lamp on the newest. Prints
{"parts", "lamp", "reconnected_s"}; exits non-zero naming what failed.
"""

import json
import sys
import time

from selenium.webdriver.common.by import By

from browser_session import signed_in


def counted(driver):
    return int(driver.find_element(By.ID, "counters").get_attribute("data-parts"))


def main(base, user, password, before, after):
    before, after = int(before), int(after)
    driver, wait = signed_in(base, user, password)
    try:
        driver.get(base + "/line")
        wait.until(lambda d: d.find_element(By.ID, "live").text == "live", "the stream did not open")
        driver.execute_script("window.__notReloaded = true;")
        print("ready", flush=True)
        long = 90
        wait._timeout = long
        wait.until(lambda d: counted(d) >= before, f"the first {before} parts were not shown")
        print("seen", flush=True)
        wait.until(lambda d: "down" in d.find_element(By.ID, "live").get_attribute("class"),
                   "the page did not notice the station stop")
        dropped = time.time()
        print("dropped", flush=True)
        wait.until(lambda d: d.find_element(By.ID, "live").text == "live", "the page did not reconnect")
        reconnected = time.time() - dropped
        wait.until(lambda d: counted(d) >= before + after, "the parts after the restart were not counted")
        assert driver.execute_script("return window.__notReloaded === true"), "the page reloaded"
        lamp = driver.find_element(By.ID, "lamp").get_attribute("data-id")
        print(json.dumps({"parts": counted(driver), "lamp": lamp, "reconnected_s": round(reconnected, 1)}))
    finally:
        driver.quit()


if __name__ == "__main__":
    main(*sys.argv[1:6])
