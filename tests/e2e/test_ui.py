"""The web UI in a real browser: headless Chromium (Debian's `chromium` and
`chromium-driver`, driven by Selenium) opens the links the kfp SDK prints, clicks
through runs, their graph, task panel, live log and artifact previews, and does
every action the pages offer. One browser serves the whole module; each test fails
on a console error. Screenshots of every page go to KFPD_E2E_SCREENSHOTS (default:
the test's temp dir). Without a browser the tests skip, except under CI=true."""

import os
import pathlib
import re
import shutil

import pytest
import requests
from kfp import compiler, dsl
from kfp.dsl import ClassificationMetrics, Dataset, HTML, Markdown, Metrics, Output

import support
from execution_support import executing_server, wait_for_final

pytestmark = pytest.mark.timeout(300)

BROWSER_WAIT = 60


@dsl.container_component
def first_step(word: str):
    """Writes a line, then sleeps, so its log is followed while it runs."""
    return dsl.ContainerSpec(image="alpine", command=["sh", "-c", 'echo "start-$0"; sleep 4; echo "end-$0"'], args=[word])


@dsl.container_component
def second_step(word: str):
    return dsl.ContainerSpec(image="alpine", command=["sh", "-c", 'echo "$0"'], args=[word])


@dsl.pipeline(name="ui-two-steps")
def two_steps(word: str = "hello"):
    first = first_step(word=word)
    second_step(word=word).after(first)


@dsl.container_component
def nap(seconds: int, fail: bool):
    return dsl.ContainerSpec(
        image="alpine", command=["sh", "-c", 'sleep "$0"; [ "$1" = "false" ] || [ "$1" = "False" ]'], args=[seconds, fail]
    )


@dsl.pipeline(name="ui-nap")
def napping(seconds: int = 0, fail: bool = False, label: str = "x"):
    nap(seconds=seconds, fail=fail)


@dsl.component
def report(
    metrics: Output[Metrics],
    classes: Output[ClassificationMetrics],
    notes: Output[Markdown],
    page: Output[HTML],
    table: Output[Dataset],
):
    metrics.log_metric("accuracy", 0.875)
    classes.log_confusion_matrix(["cat", "dog"], [[7, 1], [2, 9]])
    classes.log_roc_curve([0.0, 0.2, 1.0], [0.0, 0.8, 1.0], [1.0, 0.5, 0.0])
    with open(notes.path, "w") as f:
        f.write("# Findings\n\n- the **model** works\n")
    with open(page.path, "w") as f:
        f.write("<html><body><h1 id='inside'>from-the-html</h1><script>parent.document.title='pwned'</script></body></html>")
    with open(table.path, "w") as f:
        f.write("city,count\nOslo,3\nLima,5\n")


@dsl.component
def square(x: int) -> int:
    return x * x


@dsl.pipeline(name="ui-artifacts")
def with_artifacts():
    report()
    with dsl.ParallelFor(items=[1, 2, 3]) as item:
        square(x=item)


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
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
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


def _wait(driver, condition, what: str):
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


def _css(driver, selector):
    return driver.find_element("css selector", selector)


def _click(driver, selector, what: str):
    """Clicks the element once it is there and enabled (pages re-render)."""
    def ready(d):
        element = d.find_element("css selector", selector)
        if not element.is_enabled():
            return None
        element.click()
        return True

    _wait(driver, ready, what)


def _confirm(driver):
    _click(driver, "dialog[open] #confirm-yes", "the confirmation dialog")


def _console_errors(driver, expected: str = "") -> list[str]:
    """Errors the page logged; `expected` names a URL whose failed load is the point."""
    return [
        entry["message"]
        for entry in driver.get_log("browser")
        if entry["level"] == "SEVERE" and not (expected and expected in entry["message"])
    ]


def _printed_link(output: str, label: str) -> str:
    links = re.findall(rf"{label}: (\S+)", output)
    assert links, f"the SDK printed no {label!r} link:\n{output}"
    return links[-1]


def _graph_states(driver) -> dict[str, str]:
    """Node label → state class of the run graph's current level."""
    found = {}
    for node in driver.find_elements("css selector", "#graph g.node"):
        label = node.find_element("css selector", "text.label").text
        classes = node.get_attribute("class").split()
        found[label] = classes[1] if len(classes) > 1 else ""
    return found


def _tasks(driver) -> dict[str, str]:
    found = {}
    for row in driver.find_elements("css selector", "#tasks tbody tr"):
        cells = row.find_elements("tag name", "td")
        found[cells[0].text.strip()] = cells[1].text.strip()
    return found


def _run_of(client, func, name, **arguments):
    return client.create_run_from_pipeline_func(func, arguments=arguments, run_name=name, enable_caching=False)


def test_run_link_shows_the_graph_and_follows_a_running_tasks_log(client, browser, screenshots, capsys):
    name = support.unique("ui-run")
    result = _run_of(client, two_steps, name, word="from-the-sdk")
    link = _printed_link(capsys.readouterr().out, "Run details")
    assert link.endswith(f"/#/runs/details/{result.run_id}")

    browser.get(link)
    _wait(browser, lambda d: _css(d, "#run-name").text == name, f"run name {name!r}")
    assert "from-the-sdk" in _css(browser, "main").text
    # The first task's log streams while the task runs: its first line shows up
    # while the graph still says RUNNING.
    _wait(browser, lambda d: _graph_states(d).get("first-step") == "RUNNING", "first-step running in the graph")
    _click(browser, "#graph g.node[aria-label^='first-step']", "the first-step node")
    _wait(browser, lambda d: _css(d, "#panel-title").text == "first-step", "the task panel")
    _click(browser, "#tab-logs", "the log tab")
    _wait(browser, lambda d: "start-from-the-sdk" in _css(d, "#log").text, "the log's first line")
    assert "end-from-the-sdk" not in _css(browser, "#log").text
    assert "following" in _css(browser, "#log-count").text
    browser.save_screenshot(str(screenshots / "run-log-following.png"))
    _wait(browser, lambda d: "end-from-the-sdk" in _css(d, "#log").text, "the log's last line")
    _css(browser, "#log-search").send_keys("end-")
    _wait(browser, lambda d: _css(d, "#log").text.strip() == "end-from-the-sdk", "only the matching line")

    # The stream brings the end of the run without a reload.
    _wait(browser, lambda d: _css(d, "h1 .state").text == "SUCCEEDED", "state SUCCEEDED")
    _wait(browser, lambda d: _graph_states(d).get("second-step") == "SUCCEEDED", "second-step succeeded")
    edges = browser.find_elements("css selector", "#graph path[data-edge]")
    assert len(edges) == 1, "first-step → second-step"
    final = wait_for_final(client, result.run_id)
    api_tasks = {t.display_name: t.state for t in final.run_details.task_details}
    for label, state in _graph_states(browser).items():
        assert api_tasks.get(label) == state, (label, state, api_tasks)
    browser.save_screenshot(str(screenshots / "run-graph.png"))

    _click(browser, "#view-timeline", "the timeline tab")
    _wait(browser, lambda d: len(d.find_elements("css selector", "#timeline .gantt-bar.SUCCEEDED")) == 2, "two bars")
    browser.save_screenshot(str(screenshots / "run-timeline.png"))
    _click(browser, "#view-tasks", "the tasks tab")
    tasks = _wait(browser, lambda d: _tasks(d) or None, "the task table")
    assert tasks["first-step"] == tasks["second-step"] == "SUCCEEDED", tasks

    _click(browser, "dl.facts a[href^='#/experiments/details/']", "the experiment link")
    _wait(browser, lambda d: d.find_elements("css selector", f"tr[data-run-id='{result.run_id}']"), "the run in its experiment")
    browser.save_screenshot(str(screenshots / "experiment-details.png"))
    assert _console_errors(browser) == []


def test_artifact_previews_and_loop_iterations(client, browser, screenshots, base):
    result = _run_of(client, with_artifacts, support.unique("ui-artifacts"))
    final = wait_for_final(client, result.run_id)
    assert final.state == "SUCCEEDED"
    browser.get(f"{base}/#/runs/details/{result.run_id}")
    _wait(browser, lambda d: _graph_states(d).get("report") == "SUCCEEDED", "the report task")

    # The loop is a group: Enter selects it, Enter again opens its iterations.
    loop = _css(browser, "#graph g.node.group")
    loop.send_keys("\n")
    _wait(browser, lambda d: "selected" in _css(d, "#graph g.node.group").get_attribute("class"), "the loop selected")
    _css(browser, "#graph g.node.group").send_keys("\n")
    _wait(browser, lambda d: len(_graph_states(d)) == 3, "three iterations")
    assert set(_graph_states(browser).values()) == {"SUCCEEDED"}
    browser.save_screenshot(str(screenshots / "run-loop-iterations.png"))
    _click(browser, ".crumbs a", "the way back to the root")
    _wait(browser, lambda d: "report" in _graph_states(d), "the root level again")

    _click(browser, "#graph g.node[aria-label^='report']", "the report node")
    _click(browser, "#tab-artifacts", "the artifacts tab")

    def preview(key, selector):
        _click(browser, f"button[data-artifact='{key}']", f"the {key} artifact")
        return _wait(browser, lambda d: d.find_element("css selector", f"#artifact-preview {selector}"), f"the {key} preview")

    metrics = preview("metrics", ".metrics table")
    assert "accuracy" in metrics.text and "0.875" in metrics.text
    matrix = preview("classes", ".confusion table")
    assert [c.text for c in matrix.find_elements("css selector", "td.count")] == ["7", "1", "2", "9"]
    assert _css(browser, "#artifact-preview svg.roc polyline").get_attribute("points").count(",") == 3
    browser.save_screenshot(str(screenshots / "artifact-classification.png"))
    heading = preview("notes", ".markdown h3")
    assert heading.text == "Findings"
    assert _css(browser, "#artifact-preview .markdown strong").text == "model"
    frame = preview("page", "iframe.html-preview")
    assert frame.get_attribute("sandbox") == ""
    browser.switch_to.frame(frame)
    _wait(browser, lambda d: d.find_element("id", "inside").text == "from-the-html", "the html inside the frame")
    browser.switch_to.default_content()
    assert browser.title != "pwned", "the artifact's script ran"
    csv = preview("table", ".csv-preview table")
    assert "Oslo" in csv.text and "Lima" in csv.text
    browser.save_screenshot(str(screenshots / "artifact-table.png"))

    _click(browser, "#tab-io", "the inputs and outputs tab")
    _wait(browser, lambda d: "system.Metrics" in _css(d, "#panel-body").text, "the output artifacts")
    assert _console_errors(browser) == []


def test_upload_create_run_terminate_retry_clone_and_delete(client, browser, screenshots, base, tmp_path):
    package = tmp_path / "napping.yaml"
    compiler.Compiler().compile(napping, str(package))
    pipeline_name = support.unique("ui-upload")

    browser.get(f"{base}/#/pipelines")
    _click(browser, "#upload-pipeline summary", "the upload form")
    _css(browser, "#upload-pipeline-file").send_keys(str(package))
    _css(browser, "#upload-pipeline-name").send_keys(pipeline_name)
    _click(browser, "#upload-pipeline-submit", "upload")
    _wait(browser, lambda d: _css(d, "#pipeline-name").text == pipeline_name, "the uploaded pipeline")
    pipeline_id = browser.current_url.rsplit("/", 1)[-1]
    assert client.get_pipeline(pipeline_id).display_name == pipeline_name
    browser.save_screenshot(str(screenshots / "pipeline-details.png"))

    _click(browser, "tr[data-version-id] a.button", "create run from the version")
    _wait(browser, lambda d: d.find_element("id", "param-seconds"), "the typed parameters")
    assert _css(browser, "#param-seconds").get_attribute("type") == "number"
    assert _css(browser, "#param-fail").get_attribute("type") == "checkbox"
    name = support.unique("ui-created")
    field = _css(browser, "#run-name-input")
    field.clear()
    field.send_keys(name)
    seconds = _css(browser, "#param-seconds")
    seconds.clear()
    seconds.send_keys("2.5")
    _click(browser, "#create-run", "create")
    _wait(browser, lambda d: "must be an integer" in _css(d, "#form-error").text, "the bad-integer message")
    seconds.clear()
    seconds.send_keys("60")
    _css(browser, "#param-label").send_keys("-first")
    browser.save_screenshot(str(screenshots / "run-new.png"))
    _click(browser, "#create-run", "create")
    _wait(browser, lambda d: _css(d, "#run-name").text == name, "the created run")
    run_id = browser.current_url.split("/runs/details/")[1].split("?")[0]
    run = client.get_run(run_id)
    assert run.runtime_config.parameters == {"seconds": 60, "fail": False, "label": "x-first"}

    _wait(browser, lambda d: _css(d, "h1 .state").text == "RUNNING", "RUNNING")
    _click(browser, "#run-terminate", "terminate")
    _confirm(browser)
    _wait(browser, lambda d: _css(d, "h1 .state").text == "CANCELED", "CANCELED")
    _click(browser, "#run-retry", "retry")
    _wait(browser, lambda d: _css(d, "h1 .state").text in ("PENDING", "RUNNING"), "the retried run going again")
    _click(browser, "#run-terminate", "terminate")
    _confirm(browser)
    _wait(browser, lambda d: _css(d, "h1 .state").text == "CANCELED", "CANCELED again")
    history = [s.state for s in client.get_run(run_id).state_history]
    assert history.count("CANCELED") == 2, history

    _click(browser, "#run-clone", "clone")
    _wait(browser, lambda d: _css(d, "#param-seconds").get_attribute("value") == "60", "the cloned parameters")
    assert _css(browser, "#param-label").get_attribute("value") == "x-first"
    seconds = _css(browser, "#param-seconds")
    seconds.clear()
    seconds.send_keys("0")
    _click(browser, "#create-run", "create the clone")
    _wait(browser, lambda d: _css(d, "h1 .state").text == "SUCCEEDED", "the clone succeeded")
    clone_id = browser.current_url.split("/runs/details/")[1].split("?")[0]
    assert clone_id != run_id
    assert client.get_run(clone_id).runtime_config.parameters["label"] == "x-first"

    _click(browser, "#run-archive", "archive")
    _wait(browser, lambda d: d.find_elements("id", "run-restore"), "the restore button")
    assert client.get_run(clone_id).storage_state == "ARCHIVED"
    _click(browser, "#run-delete", "delete")
    _confirm(browser)
    _wait(browser, lambda d: d.current_url.endswith("#/runs"), "back on the runs")
    with pytest.raises(Exception):
        client.get_run(clone_id)
    assert _console_errors(browser) == []


def test_runs_list_filters_sorts_bulk_archives_and_compares(client, browser, screenshots, base):
    tag = support.unique("ui-listed")
    ids = []
    for index, label in enumerate(["b", "a"]):
        run = _run_of(client, napping, f"{tag}-{label}", label=f"label-{index}")
        ids.append(run.run_id)
    for run_id in ids:
        assert wait_for_final(client, run_id).state == "SUCCEEDED"

    browser.get(f"{base}/#/runs?state=SUCCEEDED&name={tag}")
    _wait(browser, lambda d: len(d.find_elements("css selector", "tbody tr[data-run-id]")) == 2, "both runs")
    names = lambda d: [r.find_element("css selector", "td a").text for r in d.find_elements("css selector", "tbody tr[data-run-id]")]
    _click(browser, "th button.sort", "sort by name")
    _wait(browser, lambda d: names(d) == [f"{tag}-a", f"{tag}-b"] and "sort=name" in d.current_url, "sorted by name")
    _click(browser, "th button.sort", "sort by name, descending")
    _wait(browser, lambda d: names(d) == [f"{tag}-b", f"{tag}-a"], "sorted by name, descending")
    browser.save_screenshot(str(screenshots / "runs.png"))

    _click(browser, "#select-all", "select all")
    _click(browser, "button[data-bulk='compare']", "compare")
    _wait(browser, lambda d: d.find_elements("css selector", "#compare-parameters tr.differs"), "the differing parameter")
    differing = _css(browser, "#compare-parameters tr.differs").text
    assert "label" in differing and "label-0" in differing and "label-1" in differing
    browser.save_screenshot(str(screenshots / "compare.png"))

    browser.get(f"{base}/#/runs?name={tag}")
    _wait(browser, lambda d: len(d.find_elements("css selector", "tbody tr[data-run-id]")) == 2, "both runs")
    _click(browser, "#select-all", "select all")
    _click(browser, "button[data-bulk='archive']", "archive both")
    _wait(browser, lambda d: "No runs match" in _css(d, "#page").text, "none left among the active runs")
    assert {client.get_run(i).storage_state for i in ids} == {"ARCHIVED"}
    browser.get(f"{base}/#/runs?name={tag}&archived=1")
    _wait(browser, lambda d: len(d.find_elements("css selector", "tbody tr[data-run-id]")) == 2, "both archived")
    _click(browser, "#select-all", "select all")
    _click(browser, "button[data-bulk='restore']", "restore both")
    _wait(browser, lambda d: "No runs match" in _css(d, "#page").text, "none left among the archived")
    assert {client.get_run(i).storage_state for i in ids} == {"AVAILABLE"}

    browser.get(f"{base}/#/runs?state=FAILED&name={tag}")
    _wait(browser, lambda d: "No runs match" in _css(d, "#page").text, "the empty state")
    assert _console_errors(browser) == []


def test_experiments_create_archive_restore(client, browser, screenshots, base):
    name = support.unique("ui-experiment")
    browser.get(f"{base}/#/experiments")
    _click(browser, "#new-experiment summary", "the new experiment form")
    _css(browser, "#experiment-name-input").send_keys(name)
    _css(browser, "#experiment-description").send_keys("made in the browser")
    _click(browser, "#create-experiment", "create")
    _wait(browser, lambda d: _css(d, "#experiment-name").text == name, "the new experiment")
    experiment_id = browser.current_url.rsplit("/", 1)[-1]
    assert client.get_experiment(experiment_id).description == "made in the browser"
    _click(browser, "button[data-action='archive']", "archive")
    _wait(browser, lambda d: d.find_elements("css selector", "button[data-action='restore']"), "restore offered")
    assert client.get_experiment(experiment_id).storage_state == "ARCHIVED"
    browser.get(f"{base}/#/experiments?archived=1")
    _wait(browser, lambda d: d.find_elements("css selector", f"tr[data-experiment-id='{experiment_id}']"), "among the archived")
    browser.save_screenshot(str(screenshots / "experiments.png"))
    _click(browser, f"tr[data-experiment-id='{experiment_id}'] button[data-action='restore']", "restore")
    _wait(browser, lambda d: not d.find_elements("css selector", f"tr[data-experiment-id='{experiment_id}']"), "gone from the archived")
    assert client.get_experiment(experiment_id).storage_state == "AVAILABLE"
    assert _console_errors(browser) == []


def test_recurring_run_create_edit_disable_enable_delete(client, browser, screenshots, base, tmp_path):
    package = tmp_path / "napping.yaml"
    compiler.Compiler().compile(napping, str(package))
    pipeline = client.upload_pipeline(str(package), pipeline_name=support.unique("ui-recurring"))
    version = client.list_pipeline_versions(pipeline.pipeline_id).pipeline_versions[0]

    browser.get(f"{base}/#/runs/new?pipeline={pipeline.pipeline_id}&version={version.pipeline_version_id}&recurring=1")
    _wait(browser, lambda d: d.find_element("id", "trigger-kind").is_displayed(), "the schedule fields")
    name = support.unique("ui-every-hour")
    field = _css(browser, "#run-name-input")
    field.clear()
    field.send_keys(name)
    from selenium.webdriver.support.ui import Select

    Select(_css(browser, "#trigger-kind")).select_by_value("periodic")
    _click(browser, "#create-run", "create")
    _wait(browser, lambda d: _css(d, "#recurring-name").text == name, "the recurring run")
    recurring_id = browser.current_url.rsplit("/", 1)[-1]
    made = client.get_recurring_run(recurring_id)
    assert int(made.trigger.periodic_schedule.interval_second) == 3600
    assert made.status == "ENABLED"

    _click(browser, "#edit-recurring", "edit")
    interval = _wait(browser, lambda d: d.find_element("id", "trigger-interval"), "the edit form")
    interval.clear()
    interval.send_keys("7200")
    label = _css(browser, "#param-label")
    label.clear()
    label.send_keys("edited")
    _click(browser, "#save-recurring", "save")
    _wait(browser, lambda d: "every 2h 0m" in _css(d, "dl.facts").text, "the new trigger")
    edited = client.get_recurring_run(recurring_id)
    assert int(edited.trigger.periodic_schedule.interval_second) == 7200
    assert edited.runtime_config.parameters["label"] == "edited"
    browser.save_screenshot(str(screenshots / "recurring-run.png"))

    _click(browser, "button[data-action='disable']", "disable")
    _wait(browser, lambda d: _css(d, "#recurring-status").text == "DISABLED", "disabled")
    assert client.get_recurring_run(recurring_id).status == "DISABLED"
    _click(browser, "button[data-action='enable']", "enable")
    _wait(browser, lambda d: _css(d, "#recurring-status").text == "ENABLED", "enabled")
    browser.get(f"{base}/#/recurringruns")
    _wait(browser, lambda d: d.find_elements("css selector", f"tr[data-recurring-run-id='{recurring_id}']"), "in the list")
    browser.save_screenshot(str(screenshots / "recurring-runs.png"))
    _click(browser, f"tr[data-recurring-run-id='{recurring_id}'] button[data-action='delete']", "delete")
    _confirm(browser)
    _wait(browser, lambda d: not d.find_elements("css selector", f"tr[data-recurring-run-id='{recurring_id}']"), "gone")
    response = requests.get(f"{base}/apis/v2beta1/recurringruns/{recurring_id}", timeout=10)
    assert response.status_code == 404
    assert _console_errors(browser) == []


def test_pipeline_version_link_shows_its_graph_and_spec(client, browser, screenshots, tmp_path, capsys):
    package = tmp_path / "two_steps.yaml"
    compiler.Compiler().compile(two_steps, str(package))
    pipeline = client.upload_pipeline(str(package), pipeline_name=support.unique("ui-pipeline"))
    version_name = support.unique("ui-version")
    version = client.upload_pipeline_version(str(package), version_name, pipeline_id=pipeline.pipeline_id)
    link = _printed_link(capsys.readouterr().out, "Pipeline details")
    assert link.endswith(f"/#/pipelines/details/{pipeline.pipeline_id}/version/{version.pipeline_version_id}")

    browser.get(link)
    _wait(browser, lambda d: _css(d, "#version-name").text == version_name, "the version's name")
    assert '"ui-two-steps"' in _css(browser, "#spec").text
    assert sorted(_graph_states(browser)) == ["first-step", "second-step"]
    assert len(browser.find_elements("css selector", "#graph path[data-edge]")) == 1
    rows = browser.find_elements("css selector", "#spec-tasks tbody tr")
    assert [r.find_elements("tag name", "td")[0].text for r in rows] == ["first-step", "second-step"]
    browser.save_screenshot(str(screenshots / "pipeline-version.png"))

    _click(browser, "#delete-version", "delete the version")
    _confirm(browser)
    _wait(browser, lambda d: d.find_elements("id", "pipeline-name"), "back on the pipeline")
    remaining = client.list_pipeline_versions(pipeline.pipeline_id).pipeline_versions or []
    assert version.pipeline_version_id not in [v.pipeline_version_id for v in remaining]

    base = client._get_url_prefix()
    browser.get(f"{base}/#/runs/details/no-such-run")
    _wait(browser, lambda d: "was not found" in _css(d, "#page").text, "the not-found message")
    browser.save_screenshot(str(screenshots / "run-not-found.png"))
    # A phone-width window keeps the page usable: the secondary columns go.
    browser.set_window_size(390, 844)
    browser.get(f"{base}/#/pipelines")
    _wait(browser, lambda d: d.find_elements("css selector", f"tr[data-pipeline-id='{pipeline.pipeline_id}']"), "the pipelines at phone width")
    assert not _css(browser, "th.wide").is_displayed()
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    browser.save_screenshot(str(screenshots / "pipelines-phone.png"))
    browser.set_window_size(1400, 1000)
    assert _console_errors(browser, expected="/apis/v2beta1/runs/no-such-run") == []
