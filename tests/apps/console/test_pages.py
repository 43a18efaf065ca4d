"""The console's pages in a real headless browser (Debian's chromium and
chromium-driver through selenium): sign in, watch a HIGH case arrive in the queue
without a reload, resolve it with the keyboard, and find its label on the labels
topic, in the job's labels table and in the audit trail.

Screenshots go to the test's directory, and also to $FRAUDSTREAM_SCREENSHOTS
when set (docs/img holds the ones docs/console.md shows)."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.apps.console.conftest import Console
from tests.support import consume

pytestmark = pytest.mark.integration

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
SHOPS = [
    ("Corner Deli", "grocery_pos"),
    ("Skyline Electronics", "shopping_net"),
    ("Metro Fuel", "gas_transport"),
]


@pytest.fixture
def browser() -> Iterator[object]:
    if not (CHROMIUM and DRIVER):
        pytest.skip("needs Debian's chromium and chromium-driver (.ci/run installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1440,900",
        "--lang=en-US",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def shot(driver, tmp_path: Path, name: str) -> None:
    driver.save_screenshot(str(tmp_path / name))
    if target := os.environ.get("FRAUDSTREAM_SCREENSHOTS"):
        Path(target).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(target) / name))


def test_sign_in_see_a_case_arrive_live_and_resolve_it_with_the_keyboard(console: Console, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver, t = browser, uuid.uuid4().hex[:8]
    wait = WebDriverWait(driver, 45)
    # Some traffic first, so the queue looks like a working day.
    earlier = []
    for i, (shop, category) in enumerate(SHOPS):
        ev = console.high(f"{t}{i}", amount=180.0 + 97 * i)
        earlier.append(
            {**ev, "merchant_name": shop, "merchant_category": category, "currency": "EUR" if i else "USD"}
        )
    for pair in (console.medium_pair(f"{t}m1"), console.medium_pair(f"{t}m2")):
        earlier += [{**e, "merchant_name": "Night Owl Taxi"} for e in pair]
    console.produce(earlier)
    console.wait_case(f"ny-{t}m2")

    driver.get(console.url + "/cases/anything")
    wait.until(ec.url_contains("/login"))  # signed out: sent to sign in, then back
    driver.find_element(By.ID, "token").send_keys("not-a-token", Keys.ENTER)
    wait.until(ec.text_to_be_present_in_element((By.ID, "message"), "unknown or revoked token"))
    driver.get(console.url + "/login")
    driver.find_element(By.ID, "token").send_keys(console.tokens["ana"], Keys.ENTER)
    wait.until(ec.url_to_be(console.url + "/"))
    wait.until(ec.text_to_be_present_in_element((By.ID, "live"), "live"))
    assert "ana (analyst)" in driver.find_element(By.TAG_NAME, "header").text
    driver.execute_script("window.__sameDocument = true;")

    case_id = f"kp-{t}"
    console.produce(
        [
            {
                **console.high(t, 2450.0),
                "merchant_name": "Lux Watches Online",
                "merchant_category": "shopping_net",
            }
        ]
    )
    row = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, f'tr[data-event="{case_id}"]')))
    assert driver.execute_script("return window.__sameDocument === true"), (
        "the queue reloaded instead of updating live"
    )
    cells = row.find_elements(By.TAG_NAME, "td")
    assert cells[0].text == "HIGH" and cells[1].text == "85.0" and cells[2].text == "$2,450.00"
    first = driver.find_element(By.CSS_SELECTOR, "tbody tr").get_attribute("data-event")
    assert console.wait_case(first)["risk_level"] == "HIGH"
    shot(driver, tmp_path, "console-queue.png")

    row.click()
    wait.until(ec.url_contains(f"/cases/{case_id}"))
    wait.until(ec.text_to_be_present_in_element((By.ID, "rules"), "country_blacklist: transaction from KP"))
    title = driver.find_element(By.ID, "title").text
    assert "HIGH" in title and "$2,450.00" in title and "open" in title
    assert (
        "GMT" in driver.find_element(By.ID, "decision").text
        or "UTC" in driver.find_element(By.ID, "decision").text
    )
    shot(driver, tmp_path, "console-case.png")
    driver.find_element(By.TAG_NAME, "body").send_keys("f")
    wait.until(ec.text_to_be_present_in_element((By.ID, "status"), "closed: fraud"))
    assert "label published" in driver.find_element(By.ID, "message").text

    k = console.settings.kafka
    labels = [
        v
        for key, v in consume(k.bootstrap_servers, k.labels_topic, k.partitions, 10_000, timeout_s=5)
        if key == case_id.encode()
    ]
    assert [(v["is_fraud"], v["source"]) for v in labels] == [(True, "analyst")]
    assert console.wait_label(case_id) == [(True, "analyst")]
    with console.client() as http:
        audit = http.get("/api/audit", params={"subject": f"case/{case_id}"}).json()
    assert [(a["actor"], a["action"], a["after"]["disposition"]) for a in audit] == [
        ("ana", "case.resolve", "fraud")
    ]

    driver.find_element(By.TAG_NAME, "body").send_keys("n")
    wait.until(lambda d: "/cases/" in d.current_url and not d.current_url.endswith(f"/cases/{case_id}"))
    driver.get(console.url + "/audit")
    wait.until(ec.text_to_be_present_in_element((By.ID, "rows"), f"case/{case_id}"))
    driver.get(console.url + f"/search?user_id=user-{t}")
    wait.until(ec.text_to_be_present_in_element((By.ID, "events"), "closed"))
