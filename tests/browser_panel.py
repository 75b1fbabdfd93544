"""Opens the monitoring panel in headless Chromium for the end-to-end test
`tests/tests/panel.rs`:

  python3 tests/browser_panel.py BASE_URL USER PASSWORD SCREENSHOT.png

Signs in, follows the nav link to the panel, checks the three figures'
cards, the history charts (each figure's line and its threshold) and the
event list (an alert and a reload), and saves a screenshot. Prints
{"cards": {...}, "events": [...]} on success; exits non-zero naming what
failed.
"""

import json
import sys

from selenium.webdriver.common.by import By

from browser_session import signed_in


def main(base, user, password, screenshot):
    driver, wait = signed_in(base, user, password)
    try:
        driver.find_element(By.LINK_TEXT, "Panel").click()
        wait.until(lambda d: "Self-healing" in d.page_source, "the panel did not open")
        cards = {c.get_attribute("data-figure"): c.get_attribute("class").split()[-1]
                 for c in driver.find_elements(By.CSS_SELECTOR, ".card")}
        assert sorted(cards) == ["consistency", "context_loss", "latency"], cards
        for label in ("capture to published, p99", "verdicts per second",
                      "p95 from capture to each stage"):
            charts = driver.find_elements(By.CSS_SELECTOR, f"svg[aria-label='{label}'] polyline")
            assert charts, f"no lines in the chart '{label}'"
        events = [r.find_elements(By.TAG_NAME, "td")[1].text
                  for r in driver.find_elements(By.CSS_SELECTOR, "table.events tbody tr")]
        assert "alert" in events and "reload" in events, events
        # The whole page in one picture.
        height = driver.execute_script("return document.body.scrollHeight")
        driver.set_window_size(1280, height + 120)
        driver.save_screenshot(screenshot)
        print(json.dumps({"cards": cards, "events": events}))
    finally:
        driver.quit()


if __name__ == "__main__":
    main(*sys.argv[1:5])
