"""A signed-in headless Chromium session for the browser tests (Debian's
`chromium` and `chromium-driver`, through Selenium's WebDriver client, with
an explicit driver path so nothing is downloaded)."""

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait


def signed_in(base, user, password):
    """Opens BASE/, expects the sign-in page, signs in and waits for the
    review inbox. Returns (driver, wait); the caller quits the driver."""
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
              "--window-size=1280,1000", "--disable-gpu"):
        opts.add_argument(a)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    driver.implicitly_wait(5)
    try:
        driver.get(base + "/")
        assert driver.current_url.endswith("/login"), f"not sent to sign-in: {driver.current_url}"
        driver.find_element(By.NAME, "name").send_keys(user)
        driver.find_element(By.NAME, "password").send_keys(password)
        driver.find_element(By.TAG_NAME, "button").click()
        wait = WebDriverWait(driver, 10)
        # A click returns before the next page has loaded: wait for it.
        wait.until(lambda d: "Review inbox" in d.page_source, "no inbox after sign-in")
        return driver, wait
    except BaseException:
        driver.quit()
        raise
