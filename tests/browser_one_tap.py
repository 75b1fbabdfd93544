"""Three REVIEW parts decided with one tap each, in headless Chromium, for
the end-to-end test `tests/tests/browser.rs`:

  python3 tests/browser_one_tap.py BASE_URL USER PASSWORD

An operator signs in, finds three parts in the review inbox and opens the
first. Each verdict page offers the one-tap form: a reason picked from the
configured list and a large PASS or FAIL button (at least 48 px). The first
is decided at a desk with the keyboard (1 picks the first reason, P passes),
the second on a touch screen (reason picked, FAIL tapped), the third with
the keyboard again (2, F). After each, the next REVIEW part opens at once;
after the third, the list, with an empty inbox. Prints
{"decided": [{"id": ..., "decision": ...}, ...]} on success; exits non-zero
naming what failed.
"""

import json
import sys

from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from browser_session import signed_in


def verdict_id(driver):
    return driver.current_url.rstrip("/").split("/verdicts/")[1]


def main(base, user, password):
    driver, wait = signed_in(base, user, password)
    try:
        assert "Review inbox (3)" in driver.page_source, "three parts should wait for review"
        driver.find_element(By.CSS_SELECTOR, "table a[href^='/verdicts/']").click()
        wait.until(lambda d: d.find_elements(By.ID, "tap"), "no one-tap form on the first REVIEW part")
        decided = []
        for n, (how, key, decision) in enumerate([("keys", "1", "PASS"), ("tap", None, "FAIL"),
                                                   ("keys", "2", "FAIL")]):
            vid = verdict_id(driver)
            headline = driver.find_element(By.CSS_SELECTOR, "p.headline").text
            assert headline == "REVIEW", f"part {n + 1} stands at {headline}, not REVIEW"
            for b in driver.find_elements(By.CSS_SELECTOR, "form#tap button"):
                assert b.size["height"] >= 48 and b.size["width"] >= 48, f"small target {b.size}"
            if how == "keys":
                driver.execute_script("document.activeElement && document.activeElement.blur()")
                ActionChains(driver).send_keys(key).send_keys(decision[0].lower()).perform()
            else:
                Select(driver.find_element(By.ID, "reason-choice")).select_by_index(1)
                driver.find_element(By.CSS_SELECTOR, f"form#tap button[value='{decision}']").click()
            try:
                wait.until(lambda d: "/verdicts/" not in d.current_url or verdict_id(d) != vid,
                           f"part {n + 1} did not move on")
            except Exception:
                print("url", driver.current_url, "reason index",
                      driver.execute_script("return document.getElementById('reason-choice').selectedIndex"),
                      "scripts", [e.get_attribute("src") for e in driver.find_elements(By.TAG_NAME, "script")],
                      "logs", driver.get_log("browser"), file=sys.stderr)
                raise
            decided.append({"id": vid, "decision": decision})
            if n < 2:
                wait.until(lambda d: d.find_elements(By.ID, "tap"), f"part {n + 2} has no one-tap form")
        wait.until(lambda d: "Review inbox (0)" in d.page_source, "the inbox is not empty after three reviews")
        assert "Nothing waiting for review." in driver.page_source
        print(json.dumps({"decided": decided}))
    finally:
        driver.quit()


if __name__ == "__main__":
    main(*sys.argv[1:4])
