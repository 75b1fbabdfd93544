"""Drives the review UI in headless Chromium (Debian's `chromium` and
`chromium-driver`, through Selenium's WebDriver client) as an operator
would, for the end-to-end test `tests/tests/browser.rs`:

  python3 tests/browser_review.py BASE_URL USER PASSWORD SCREENSHOT.png

Signs in, filters the list to FAIL (its thumbnail loaded), opens the first
FAIL verdict, checks the finding's box and the quoted clause are on the page,
saves a screenshot, zooms with the wheel, pans by dragging and fits again,
draws a missed defect on the image, overrides the verdict to PASS with a
reason, checks the review is shown,
and opens the charts (saved as a second screenshot, `…-charts.png`).
Prints {"verdict_id": ...} on success; exits non-zero naming what failed.
"""

import json
import sys

from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from browser_session import signed_in


def main(base, user, password, screenshot):
    driver, wait = signed_in(base, user, password)
    try:
        Select(driver.find_element(By.NAME, "decision")).select_by_value("FAIL")
        driver.find_element(By.CSS_SELECTOR, "form.filters button").click()
        wait.until(lambda d: "decision=FAIL" in d.current_url, "the filter was not applied")
        rows = driver.find_elements(By.XPATH, "//h2[text()='All verdicts']/following::table[1]//tbody/tr")
        assert rows, "no FAIL verdicts listed"
        # Columns: picture, decided, decision, part, station, camera, recipe, findings, reviewed.
        decisions = {r.find_elements(By.TAG_NAME, "td")[2].text for r in rows}
        assert decisions == {"FAIL"}, f"the filter let through {decisions}"
        # The first FAIL verdict with findings.
        link = next(r for r in rows if r.find_elements(By.TAG_NAME, "td")[7].text != "0")
        thumb = link.find_element(By.CSS_SELECTOR, "td.pic img")
        wait.until(lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", thumb),
                   "the list's thumbnail did not load")
        assert thumb.get_attribute("naturalWidth") not in (None, "0") and int(thumb.get_attribute("naturalWidth")) <= 240, \
            "the list shows the small picture, not the camera frame"
        link.find_element(By.TAG_NAME, "a").click()
        wait.until(lambda d: "/verdicts/" in d.current_url, "the verdict did not open")

        verdict_id = driver.current_url.rsplit("/", 1)[1]
        boxes = driver.find_elements(By.CSS_SELECTOR, "figure svg rect")
        assert boxes, "no finding box drawn"
        clause = driver.find_element(By.TAG_NAME, "blockquote").text
        assert clause.startswith("Clause ") and "permitted" in clause, clause
        img = driver.find_element(By.CSS_SELECTOR, "figure img")
        loaded = driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", img)
        assert loaded, "the part image did not load"
        driver.save_screenshot(screenshot)

        # Zoom and pan: the wheel zooms about the pointer, a drag pans, the
        # boxes stay on the picture, "Fit" shows it whole.
        view = driver.find_element(By.CSS_SELECTOR, "div.zoom")
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", view)
        zoom = lambda: float(view.get_attribute("data-zoom") or "1")
        driver.execute_script("""
            var v = arguments[0], b = v.getBoundingClientRect();
            v.dispatchEvent(new WheelEvent('wheel', {deltaY: -400, clientX: b.left + b.width / 2,
                clientY: b.top + b.height / 2, bubbles: true, cancelable: true}));""", view)
        assert zoom() > 1.5, f"the wheel did not zoom: {zoom()}"
        box = boxes[0]
        before = box.rect
        ActionChains(driver).move_to_element(view).click_and_hold().move_by_offset(-40, -30).release().perform()
        after = box.rect
        assert after["x"] < before["x"] - 20 and after["y"] < before["y"] - 15, \
            f"the drag did not pan the picture with its boxes: {before} -> {after}"
        scale = driver.execute_script("return getComputedStyle(document.getElementById('part')).transform")
        assert scale.startswith("matrix(") and scale != "matrix(1, 0, 0, 1, 0, 0)", scale
        driver.find_element(By.CSS_SELECTOR, "button[data-zoom-by=fit]").click()
        assert zoom() == 1.0, f"Fit did not show the whole picture: {zoom()}"

        # A missed defect, drawn on the image with the pointer, in the
        # detailed review (folded under the one-tap one).
        driver.find_element(By.XPATH, "//summary[starts-with(text(), 'Detailed review')]").click()
        driver.find_element(By.ID, "missed-name").send_keys("dent")
        figure = driver.find_element(By.ID, "part")
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", figure)
        ActionChains(driver).move_to_element_with_offset(figure, -60, -60).click_and_hold() \
            .move_by_offset(50, 35).release().perform()
        missed = driver.find_element(By.ID, "missed").get_attribute("value").split()
        assert missed[0] == "dent" and len(missed) == 5, f"the drawn box is not in the form: {missed}"
        x0, y0, x1, y1 = map(float, missed[1:])
        assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1, missed
        assert len(driver.find_elements(By.CSS_SELECTOR, "figure svg rect")) > len(boxes), "box not drawn"

        driver.find_element(By.CSS_SELECTOR, "input[name=decision][value=PASS]").click()
        driver.find_element(By.CSS_SELECTOR, "textarea[name=reason]").send_keys("scratch is a fixture mark, not a defect")
        driver.find_element(By.XPATH, "//button[text()='Record review']").click()
        wait.until(lambda d: "(overridden): scratch is a fixture mark, not a defect" in d.page_source,
                   "the review is not shown")
        driver.find_element(By.LINK_TEXT, "Charts").click()
        wait.until(lambda d: "Defect Pareto" in d.page_source, "the charts did not open")
        assert driver.find_elements(By.CSS_SELECTOR, "svg[aria-label='defect Pareto'] rect"), "no Pareto bars"
        driver.save_screenshot(screenshot.replace(".png", "-charts.png"))
        print(json.dumps({"verdict_id": verdict_id}))
    finally:
        driver.quit()


if __name__ == "__main__":
    main(*sys.argv[1:5])
