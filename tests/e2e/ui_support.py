"""What the browser suites (test_ui*.py) share: headless Chromium (Debian's
`chromium` and `chromium-driver`, driven by Selenium; one browser per module),
waits that survive live re-renders, console errors, screenshots, and the server's
request counts from `/metrics`. Without a browser the tests skip, except under
CI=true."""

import os
import pathlib
import re
import shutil

import pytest
import requests

import support

BROWSER_WAIT = 60


def browser_paths() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if browser and driver:
        return browser, driver
    message = "headless browser tests need Debian's chromium and chromium-driver (tests/e2e/run.sh installs them as root)"
    if support.under_ci():
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser():
    binary, driver_path = browser_paths()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000", "--lang=en-US"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    print(f"browser: {driver.capabilities.get('browserName')} {driver.capabilities.get('browserVersion')}")
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> pathlib.Path:
    configured = os.environ.get("KFPD_E2E_SCREENSHOTS")
    path = pathlib.Path(configured) if configured else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def base(client) -> str:
    return client._get_url_prefix()


def wait(driver, condition, what: str):
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # Live pages re-render, so an element found a moment ago may be gone by the
    # time it is read; the condition is simply asked again.
    ignored = (NoSuchElementException, StaleElementReferenceException)
    try:
        wait = WebDriverWait(driver, BROWSER_WAIT, poll_frequency=0.1, ignored_exceptions=ignored)
        return wait.until(lambda d: condition(d))
    except Exception as error:
        text = driver.find_element("tag name", "body").text
        logs = "\n".join(entry["message"] for entry in driver.get_log("browser"))
        raise AssertionError(f"{what} never appeared; the page shows:\n{text}\nconsole:\n{logs}") from error


def css(driver, selector):
    return driver.find_element("css selector", selector)


def click(driver, selector, what: str):
    """Clicks the element once it is there and enabled (pages re-render)."""
    def ready(d):
        element = d.find_element("css selector", selector)
        if not element.is_enabled():
            return None
        element.click()
        return True

    wait(driver, ready, what)


def confirm(driver):
    click(driver, "dialog[open] #confirm-yes", "the confirmation dialog")


def console_errors(driver, expected: str = "") -> list[str]:
    """Errors the page logged; `expected` names a URL whose failed load is the point."""
    return [
        entry["message"]
        for entry in driver.get_log("browser")
        if entry["level"] == "SEVERE" and not (expected and expected in entry["message"])
    ]


def printed_link(output: str, label: str) -> str:
    links = re.findall(rf"{label}: (\S+)", output)
    assert links, f"the SDK printed no {label!r} link:\n{output}"
    return links[-1]


def graph_states(driver) -> dict[str, str]:
    """Node label → state class of the run graph's current level."""
    found = {}
    for node in driver.find_elements("css selector", "#graph g.node"):
        label = node.find_element("css selector", "text.label").text
        classes = node.get_attribute("class").split()
        found[label] = classes[1] if len(classes) > 1 else ""
    return found


def tasks(driver) -> dict[str, str]:
    found = {}
    for row in driver.find_elements("css selector", "#tasks tbody tr"):
        cells = row.find_elements("tag name", "td")
        found[cells[0].text.strip()] = cells[1].text.strip()
    return found


def run_of(client, func, name, **arguments):
    return client.create_run_from_pipeline_func(func, arguments=arguments, run_name=name, enable_caching=False)


_SERIES = re.compile(r'^kfpd_http_request_duration_seconds_count\{route="([^"]*)",method="([^"]*)",status="([^"]*)"\} (\d+)$')


def api_requests(base: str) -> dict[tuple[str, str], int]:
    """Requests the server answered so far under /apis/, by (method, route template)."""
    text = requests.get(f"{base}/metrics", timeout=10).text
    counts: dict[tuple[str, str], int] = {}
    for line in text.splitlines():
        match = _SERIES.match(line)
        if not match or not match.group(1).startswith("/apis/"):
            continue
        key = (match.group(2), match.group(1))
        counts[key] = counts.get(key, 0) + int(match.group(4))
    return counts


def requests_since(base: str, before: dict[tuple[str, str], int]) -> dict[tuple[str, str], int]:
    now = api_requests(base)
    return {key: count - before.get(key, 0) for key, count in now.items() if count != before.get(key, 0)}


def open_streams(base: str) -> dict[str, int]:
    """Event streams the server holds open, by kind (run, runs)."""
    text = requests.get(f"{base}/metrics", timeout=10).text
    found = {}
    for line in text.splitlines():
        match = re.match(r'^kfpd_event_streams\{kind="([^"]+)"\} (-?\d+)$', line)
        if match:
            found[match.group(1)] = int(match.group(2))
    return found
