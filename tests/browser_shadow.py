"""Shadow mode in headless Chromium, for the end-to-end test
`tests/tests/shadow.rs`:

  python3 tests/browser_shadow.py BASE_URL USER PASSWORD CANDIDATE_DIR SCREENSHOT.png

An admin opens the panel, starts shadow mode with the candidate package
folder typed into the form, waits (reloading the panel) until the candidate
has judged at least 30 frames and disagreed on some, opens the list of
disagreements (both verdicts on each row), follows one to its verdict page
(the candidate's judgement shown beside the published one), saves a
screenshot of the panel's shadow section, and promotes the candidate. Prints
{"compared": N, "agreed": N, "disagreements": N, "rows": N, "promoted": "..."}
on success; exits non-zero naming what failed.
"""

import json
import sys
import time

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from browser_session import signed_in


def panel(driver, wait):
    driver.find_element(By.LINK_TEXT, "Panel").click()
    wait.until(lambda d: "Candidate model (shadow mode)" in d.page_source, "no shadow section on the panel")


def main(base, user, password, candidate, screenshot):
    driver, wait = signed_in(base, user, password)
    try:
        panel(driver, wait)
        start = driver.find_element(By.ID, "start-shadow")
        start.find_element(By.NAME, "package").send_keys(candidate)
        Select(start.find_element(By.NAME, "precision")).select_by_value("")
        button = start.find_element(By.TAG_NAME, "button")
        assert button.size["height"] >= 48, f"start button {button.size}"
        button.click()
        wait.until(lambda d: "in shadow mode" in d.find_element(By.ID, "said").text,
                   "no answer to starting shadow mode")
        said = driver.find_element(By.ID, "said").text
        assert "0.3.0-shadow-test" in said, said

        # The panel counts as the line runs.
        deadline = time.time() + 90
        while True:
            card = driver.find_element(By.CSS_SELECTOR, "#candidate .card[data-compared]")
            compared = int(card.get_attribute("data-compared"))
            agreed = int(card.get_attribute("data-agreed"))
            if compared >= 30 and agreed < compared:
                break
            assert time.time() < deadline, f"only {compared} compared, {agreed} agreed"
            time.sleep(1)
            driver.get(base + "/panel")
        cost = driver.find_element(By.ID, "cost").text
        assert " ms" in cost and "running model" in cost, cost
        driver.find_element(By.ID, "shadow-mode").screenshot(screenshot)

        # Each disagreement with both verdicts; one followed to its page.
        driver.find_element(By.ID, "disagreements").click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "tr.disagreement"), "no disagreements listed")
        rows = driver.find_elements(By.CSS_SELECTOR, "tr.disagreement")
        cells = rows[0].find_elements(By.TAG_NAME, "td")
        running, cand = cells[4].find_element(By.TAG_NAME, "b").text, cells[5].find_element(By.TAG_NAME, "b").text
        assert running != cand and {running, cand} <= {"PASS", "FAIL", "REVIEW"}, (running, cand)
        cells[1].find_element(By.TAG_NAME, "a").click()
        wait.until(lambda d: d.find_elements(By.ID, "candidate-verdict"), "no candidate verdict on the verdict page")
        shown = driver.find_element(By.ID, "candidate-verdict").text
        assert cand in shown and "disagree" in shown, shown

        # Promotion through the safe reload.
        panel(driver, wait)
        promote = driver.find_element(By.ID, "promote")
        assert promote.size["height"] >= 48, f"promote button {promote.size}"
        promote.click()
        wait.until(lambda d: "promoted" in d.find_element(By.ID, "said").text, "no answer to the promotion")
        promoted = driver.find_element(By.ID, "said").text
        assert "No candidate model is in shadow mode." in driver.page_source
        assert driver.find_elements(By.CSS_SELECTOR, "table.candidates tr td"), "no record of the candidate"
        print(json.dumps({"compared": compared, "agreed": agreed, "disagreements": compared - agreed,
                          "rows": len(rows), "promoted": promoted}))
    finally:
        driver.quit()


if __name__ == "__main__":
    main(*sys.argv[1:6])
