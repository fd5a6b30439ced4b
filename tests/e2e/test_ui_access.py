"""The web UI with a keyboard, at a laptop's and a phone's width, in another time
zone, and when things go wrong, in headless Chromium: tab order follows the page
and every focused control shows it, dialogs keep the focus and close on Escape,
no page scrolls sideways, times are the browser's, and empty pages, missing
objects, refused requests and a stopped server each say what happened."""

import datetime
import time
import zoneinfo

import pytest
import requests
import yaml
from kfp import compiler, dsl
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.keys import Keys

import support
from execution_support import SERVER_ARGS, executing_server, wait_for_final
from ui_support import base, browser, click, console_errors, css, run_of, screenshots, wait  # noqa: F401

pytestmark = pytest.mark.timeout(300)


@dsl.container_component
def nap(seconds: int):
    return dsl.ContainerSpec(image="alpine", command=["sh", "-c", 'sleep "$0"'], args=[seconds])


@dsl.pipeline(name="ui-access-nap")
def napping(seconds: int = 0):
    nap(seconds=seconds)


@pytest.fixture(scope="module")
def server(request, kfpd_bin):
    with executing_server(kfpd_bin, request) as srv:
        yield srv


def _focused(driver) -> dict:
    """The focused element: its tag, id, text, whether a focus ring shows, and
    whether it comes after the element focused before it in the document."""
    return driver.execute_script(
        """const el = document.activeElement;
        const style = getComputedStyle(el);
        const ring = (style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) > 0)
          || style.boxShadow !== 'none';
        const before = window.__lastFocused;
        const after = !before || before === el || !!(before.compareDocumentPosition(el) & Node.DOCUMENT_POSITION_FOLLOWING);
        window.__lastFocused = el;
        return {tag: el.tagName.toLowerCase(), id: el.id, text: (el.textContent || el.value || '').trim().slice(0, 40),
                href: el.getAttribute('href') || '', ring, after,
                inDialog: !!el.closest('dialog[open]'), visible: el.getBoundingClientRect().width > 0};"""
    )


def _tab(driver, shift: bool = False):
    chain = ActionChains(driver)
    if shift:
        chain.key_down(Keys.SHIFT).send_keys(Keys.TAB).key_up(Keys.SHIFT)
    else:
        chain.send_keys(Keys.TAB)
    chain.perform()


def test_keyboard_reaches_everything_in_order_with_a_visible_focus(client, browser, screenshots, base):
    tag = support.unique("ui-keys")
    run = run_of(client, napping, f"{tag}-run")
    assert wait_for_final(client, run.run_id).state == "SUCCEEDED"

    browser.get(f"{base}/#/runs?name={tag}")
    wait(browser, lambda d: d.find_elements("css selector", f"tr[data-run-id='{run.run_id}']"), "the run in the list")
    browser.execute_script("document.activeElement.blur(); window.__lastFocused = null;")
    # The first Tab shows the skip link; Enter on it moves past the header.
    _tab(browser)
    skip = _focused(browser)
    assert skip["id"] == "skip" and skip["visible"] and skip["ring"], skip
    browser.save_screenshot(str(screenshots / "keyboard-skip-link.png"))
    ActionChains(browser).send_keys(Keys.ENTER).perform()
    assert _focused(browser)["id"] == "page"
    assert browser.current_url.endswith(f"#/runs?name={tag}"), "the skip link changed the route"

    # From the top, Tab walks the page in reading order, each stop showing a ring.
    browser.execute_script("document.getElementById('skip').focus(); window.__lastFocused = null;")
    stops = [_focused(browser)]
    for _ in range(40):
        _tab(browser)
        stop = _focused(browser)
        if stop["tag"] == "body":  # past the last control
            break
        stops.append(stop)
    assert len(stops) >= 12, stops
    print("tab stops:", [stop["id"] or stop["href"] or stop["text"] for stop in stops])
    for stop in stops:
        assert stop["ring"], f"no visible focus on {stop}"
        assert stop["after"], f"tab order went backwards at {stop}"
    texts = [stop["text"] for stop in stops]
    hrefs = [stop["href"] for stop in stops]
    for section in ("Runs", "Recurring runs", "Experiments", "Pipelines"):
        assert section in texts, texts
    assert "state-filter" in [stop["id"] for stop in stops]
    assert f"#/runs/details/{run.run_id}" in hrefs, hrefs
    assert "select-all" in [stop["id"] for stop in stops]

    # The run page by keyboard: the view tabs, the graph's nodes, the panel.
    browser.get(f"{base}/#/runs/details/{run.run_id}")
    wait(browser, lambda d: d.find_elements("css selector", "#graph g.node"), "the graph")
    browser.execute_script("document.querySelector('#view-graph').focus(); window.__lastFocused = null;")
    for _ in range(6):
        _tab(browser)
        if browser.execute_script("return document.activeElement.matches('#graph g.node')"):
            break
    node = _focused(browser)
    assert node["tag"] == "g", node
    # A focused node shows it by its border, drawn thicker in the accent colour.
    border = browser.execute_script(
        "const el = document.activeElement; return el.matches(':focus-visible') && getComputedStyle(el.querySelector('rect')).strokeWidth"
    )
    assert border == "3px", border
    ActionChains(browser).send_keys(Keys.ENTER).perform()
    wait(browser, lambda d: css(d, "#panel-title").text == "nap", "the panel opened by Enter")
    browser.save_screenshot(str(screenshots / "keyboard-graph-node.png"))
    assert console_errors(browser) == []


def test_a_dialog_keeps_the_focus_and_escape_cancels_it(client, browser, base):
    run = run_of(client, napping, support.unique("ui-dialog"))
    assert wait_for_final(client, run.run_id).state == "SUCCEEDED"
    browser.get(f"{base}/#/runs/details/{run.run_id}")
    wait(browser, lambda d: d.find_elements("id", "run-delete"), "the delete button")
    browser.execute_script("document.getElementById('run-delete').focus()")
    ActionChains(browser).send_keys(Keys.ENTER).perform()
    wait(browser, lambda d: d.find_elements("css selector", "dialog[open]"), "the dialog")
    assert _focused(browser)["id"] == "confirm-yes"
    seen = set()
    for shift in (False, False, False, True, True, True):
        _tab(browser, shift)
        stop = _focused(browser)
        assert stop["inDialog"], f"focus left the dialog: {stop}"
        seen.add(stop["id"])
    assert seen == {"confirm-yes", "confirm-no"}, seen
    ActionChains(browser).send_keys(Keys.ESCAPE).perform()
    wait(browser, lambda d: not d.find_elements("css selector", "dialog"), "the dialog closed")
    assert _focused(browser)["id"] == "run-delete", "focus did not return to the button"
    assert client.get_run(run.run_id).run_id == run.run_id, "Escape deleted the run"
    assert console_errors(browser) == []


def test_every_page_fits_a_laptop_and_a_phone(client, browser, screenshots, base, tmp_path):
    package = tmp_path / "napping.yaml"
    compiler.Compiler().compile(napping, str(package))
    pipeline = client.upload_pipeline(str(package), pipeline_name=support.unique("ui-widths"))
    version = client.list_pipeline_versions(pipeline.pipeline_id).pipeline_versions[0]
    run = run_of(client, napping, support.unique("ui-widths-run-with-a-long-name-that-must-wrap"))
    assert wait_for_final(client, run.run_id).state == "SUCCEEDED"
    experiment_id = client.get_run(run.run_id).experiment_id
    pages = [
        ("runs", "#/runs", "tr[data-run-id]"),
        ("run", f"#/runs/details/{run.run_id}", "#graph g.node"),
        ("run-tasks", f"#/runs/details/{run.run_id}?view=tasks", "#tasks tr[data-task-id]"),
        ("run-timeline", f"#/runs/details/{run.run_id}?view=timeline", "#timeline .gantt-row"),
        ("experiments", "#/experiments", "tr[data-experiment-id]"),
        ("experiment", f"#/experiments/details/{experiment_id}", "tr[data-run-id]"),
        ("pipelines", "#/pipelines", "tr[data-pipeline-id]"),
        ("pipeline", f"#/pipelines/details/{pipeline.pipeline_id}", "tr[data-version-id]"),
        ("version", f"#/pipelines/details/{pipeline.pipeline_id}/version/{version.pipeline_version_id}", "#spec"),
        ("new-run", f"#/runs/new?pipeline={pipeline.pipeline_id}&version={version.pipeline_version_id}", "#param-seconds"),
        ("recurring-runs", "#/recurringruns", "main h1"),
    ]
    try:
        for width, height in ((1280, 800), (390, 844)):
            browser.set_window_size(width, height)
            for name, fragment, marker in pages:
                browser.get(f"{base}/{fragment}")
                wait(browser, lambda d: d.find_elements("css selector", marker), f"{marker} on {fragment} at {width}px")
                # Once laid out (a live page may still be drawing), nothing is wider
                # than the window.
                sideways = "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
                wait(browser, lambda d: d.execute_script(sideways) <= 0, f"{fragment} without sideways scrolling at {width}px")
                assert css(browser, "main h1").is_displayed()
                if width < 640:
                    browser.save_screenshot(str(screenshots / f"phone-{name}.png"))
    finally:
        browser.set_window_size(1400, 1000)
    assert console_errors(browser) == []


def _en_us(moment: datetime.datetime) -> str:
    """`Date.toLocaleString()` in en-US: 12/3/2026, 6:05:09 AM."""
    hour = moment.hour % 12 or 12
    half = "AM" if moment.hour < 12 else "PM"
    return f"{moment.month}/{moment.day}/{moment.year}, {hour}:{moment.minute:02}:{moment.second:02} {half}"


def test_times_are_shown_in_the_browsers_zone(client, browser, base):
    run = run_of(client, napping, support.unique("ui-zone"))
    final = wait_for_final(client, run.run_id)
    created = final.created_at.astimezone(datetime.timezone.utc)
    try:
        for zone in ("Asia/Kathmandu", "America/Los_Angeles"):
            browser.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": zone})
            browser.get("about:blank")
            browser.get(f"{base}/#/runs/details/{run.run_id}")
            wait(browser, lambda d: d.find_elements("css selector", "dl.facts time"), "the run's times")
            shown = css(browser, "dl.facts time")
            expected = _en_us(created.astimezone(zoneinfo.ZoneInfo(zone)))
            text = shown.text.replace("\u202f", " ").replace("\xa0", " ")
            assert text == expected, (zone, text, expected)
            moment = datetime.datetime.fromisoformat(shown.get_attribute("datetime").replace("Z", "+00:00"))
            assert moment == created.replace(microsecond=moment.microsecond), (moment, created)
    finally:
        browser.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": ""})
    assert console_errors(browser) == []


def test_empty_missing_refused_and_unreachable_say_so(client, browser, screenshots, base, kfpd_bin, tmp_path):
    tag = support.unique("ui-nothing")
    browser.get(f"{base}/#/runs?name={tag}")
    wait(browser, lambda d: "No runs match this filter." in css(d, "#page").text, "the empty filter")
    browser.get(f"{base}/#/experiments/details/no-such-experiment")
    wait(browser, lambda d: "was not found" in css(d, "[role=alert]").text, "the missing experiment")
    browser.get(f"{base}/#/pipelines/details/no-such-pipeline")
    wait(browser, lambda d: "was not found" in css(d, "[role=alert]").text, "the missing pipeline")
    # The server refuses a page token it did not make; the page shows its words.
    browser.get(f"{base}/#/runs?token=not-a-token")
    alert = wait(browser, lambda d: d.find_element("css selector", "[role=alert]"), "the refused page token")
    assert alert.text.startswith("Could not load runs:") and "invalid page token" in alert.text, alert.text
    browser.save_screenshot(str(screenshots / "error-refused-filter.png"))
    assert console_errors(browser, expected="/apis/v2beta1/") == []

    # A server that goes away: a live run page says it lost the connection, and
    # the next page says it could not load.
    with support.running_server(kfpd_bin, executor="none", extra_args=SERVER_ARGS) as other:
        body = {"display_name": "never runs", "pipeline_spec": _spec(tmp_path)}
        made = requests.post(f"{other.base_url}/apis/v2beta1/runs", json=body, timeout=30)
        assert made.status_code == 200, made.text
        run_id = made.json()["run_id"]
        browser.get(f"{other.base_url}/#/runs/details/{run_id}")
        wait(browser, lambda d: css(d, "h1 .state").text == "PENDING", "the pending run")
        other.stop()
        wait(browser, lambda d: "reconnecting" in css(d, "#refresh-error").text, "the lost connection")
        browser.save_screenshot(str(screenshots / "error-connection-lost.png"))
        browser.execute_script("location.hash = '#/experiments'")
        alert = wait(browser, lambda d: d.find_element("css selector", "[role=alert]"), "the unreachable server")
        assert alert.text.startswith("Could not load experiments:"), alert.text
        browser.save_screenshot(str(screenshots / "error-server-gone.png"))
        time.sleep(0.5)
        assert console_errors(browser, expected=other.base_url) == []


def _spec(directory) -> dict:
    path = directory / "nap.yaml"
    compiler.Compiler().compile(napping, str(path))
    return yaml.safe_load(path.read_text())
