"""The web UI in a real browser: headless Chromium (Debian's `chromium` and
`chromium-driver`, driven by Selenium) opens the links the kfp SDK prints and reads
what the pages show. Screenshots go to KFPD_E2E_SCREENSHOTS (default: the test's
temp dir). Without a browser the tests skip, except under CI=true, where they fail."""

import os
import pathlib
import re
import shutil

import pytest
from kfp import compiler, dsl

import support
from execution_support import executing_server, wait_for_final

pytestmark = pytest.mark.timeout(300)

BROWSER_WAIT = 60


@dsl.container_component
def first_step(word: str):
    """Sleeps first, so the page is opened while the run is still running."""
    return dsl.ContainerSpec(image="alpine", command=["sh", "-c", 'sleep 3; echo "$0"'], args=[word])


@dsl.container_component
def second_step(word: str):
    return dsl.ContainerSpec(image="alpine", command=["sh", "-c", 'echo "$0"'], args=[word])


@dsl.pipeline(name="ui-two-steps")
def two_steps(word: str = "hello"):
    first = first_step(word=word)
    second_step(word=word).after(first)


@pytest.fixture(scope="module")
def server(request, kfpd_bin):
    with executing_server(kfpd_bin, request) as srv:
        yield srv


def _browser_paths() -> tuple[str, str]:
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
    binary, driver_path = _browser_paths()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
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


def _wait(driver, condition, what: str):
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # The run page re-renders while the run is live, so an element found a moment
    # ago may be gone by the time it is read; the condition is simply asked again.
    ignored = (NoSuchElementException, StaleElementReferenceException)
    try:
        wait = WebDriverWait(driver, BROWSER_WAIT, poll_frequency=0.1, ignored_exceptions=ignored)
        return wait.until(lambda d: condition(d))
    except Exception as error:
        text = driver.find_element("tag name", "body").text
        logs = "\n".join(entry["message"] for entry in driver.get_log("browser"))
        raise AssertionError(f"{what} never appeared; the page shows:\n{text}\nconsole:\n{logs}") from error


def _console_errors(driver, expected: str = "") -> list[str]:
    """Errors the page logged; `expected` names a URL whose failed load is the point."""
    return [
        entry["message"]
        for entry in driver.get_log("browser")
        if entry["level"] == "SEVERE" and not (expected and expected in entry["message"])
    ]


def _printed_link(output: str, label: str) -> str:
    """The last link the SDK printed after `label:`."""
    links = re.findall(rf"{label}: (\S+)", output)
    assert links, f"the SDK printed no {label!r} link:\n{output}"
    return links[-1]


def _tasks(driver) -> dict[str, str]:
    rows = driver.find_elements("css selector", "#tasks tbody tr")
    found = {}
    for row in rows:
        cells = row.find_elements("tag name", "td")
        found[cells[0].text.strip()] = cells[1].text.strip()
    return found


def test_run_link_shows_the_run_and_its_tasks_live(client, browser, screenshots, capsys):
    name = support.unique("ui-run")
    result = client.create_run_from_pipeline_func(
        two_steps, arguments={"word": "from-the-sdk"}, run_name=name, enable_caching=False
    )
    link = _printed_link(capsys.readouterr().out, "Run details")
    assert link.endswith(f"/#/runs/details/{result.run_id}")

    browser.get(link)
    _wait(browser, lambda d: d.find_element("id", "run-name").text == name, f"run name {name!r}")
    parameters = browser.find_element("css selector", "main").text
    assert "from-the-sdk" in parameters
    # The page refreshes itself until the run ends; no reload here.
    _wait(browser, lambda d: d.find_element("css selector", "h1 .state").text == "SUCCEEDED", "state SUCCEEDED")
    def both_done(driver):
        shown = _tasks(driver)
        return shown if shown.get("second-step") == "SUCCEEDED" and "first-step" in shown else None

    tasks = _wait(browser, both_done, "both tasks succeeded")
    assert tasks["first-step"] == "SUCCEEDED", tasks
    final = wait_for_final(client, result.run_id)
    assert final.state == "SUCCEEDED"
    api_tasks = {t.display_name: t.state for t in final.run_details.task_details}
    for task_name, state in tasks.items():
        assert api_tasks.get(task_name) == state, (tasks, api_tasks)
    browser.save_screenshot(str(screenshots / "run-details.png"))

    # The run's experiment, through the link on the page.
    browser.find_element("css selector", "dl.facts a[href^='#/experiments/details/']").click()
    _wait(browser, lambda d: d.find_elements("css selector", f"tr[data-run-id='{result.run_id}']"),
          "the run in its experiment's list")
    browser.save_screenshot(str(screenshots / "experiment-details.png"))
    assert _console_errors(browser) == []


def test_runs_list_filters_by_state_and_name(client, browser, screenshots):
    name = support.unique("ui-listed")
    result = client.create_run_from_pipeline_func(two_steps, run_name=name, enable_caching=False)
    assert wait_for_final(client, result.run_id).state == "SUCCEEDED"
    base = client._get_url_prefix()
    row = f"tr[data-run-id='{result.run_id}']"

    browser.get(f"{base}/#/runs?state=SUCCEEDED&name={name}")
    _wait(browser, lambda d: d.find_elements("css selector", row), "the run under its state and name")
    assert len(browser.find_elements("css selector", "tbody tr")) == 1
    browser.save_screenshot(str(screenshots / "runs.png"))

    browser.get(f"{base}/#/runs?state=FAILED&name={name}")
    _wait(browser, lambda d: "No runs match" in d.find_element("id", "page").text, "the empty state")
    assert not browser.find_elements("css selector", row)
    assert _console_errors(browser) == []


def test_pipeline_version_link_shows_its_spec(client, browser, screenshots, tmp_path, capsys):
    package = tmp_path / "two_steps.yaml"
    compiler.Compiler().compile(two_steps, str(package))
    pipeline = client.upload_pipeline(str(package), pipeline_name=support.unique("ui-pipeline"))
    version_name = support.unique("ui-version")
    version = client.upload_pipeline_version(str(package), version_name, pipeline_id=pipeline.pipeline_id)
    link = _printed_link(capsys.readouterr().out, "Pipeline details")
    assert link.endswith(f"/#/pipelines/details/{pipeline.pipeline_id}/version/{version.pipeline_version_id}")

    browser.get(link)
    _wait(browser, lambda d: d.find_element("id", "version-name").text == version_name, "the version's name")
    spec = browser.find_element("id", "spec").text
    assert '"ui-two-steps"' in spec
    rows = browser.find_elements("css selector", "main table tbody tr")
    assert [r.find_elements("tag name", "td")[0].text for r in rows] == ["first-step", "second-step"]
    browser.save_screenshot(str(screenshots / "pipeline-version.png"))

    browser.get(f"{client._get_url_prefix()}/#/runs/details/no-such-run")
    _wait(browser, lambda d: "was not found" in d.find_element("id", "page").text, "the not-found message")
    assert _console_errors(browser, expected="/apis/v2beta1/runs/no-such-run") == []
