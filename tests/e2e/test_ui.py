"""The web UI in a real browser: headless Chromium (Debian's `chromium` and
`chromium-driver`, driven by Selenium) opens the links the kfp SDK prints, clicks
through runs, their graph, task panel, live log and artifact previews, and does
every action the pages offer. One browser serves the whole module; each test fails
on a console error. Screenshots of every page go to KFPD_E2E_SCREENSHOTS (default:
the test's temp dir). Without a browser the tests skip, except under CI=true."""

import pytest
import requests
from kfp import compiler, dsl
from kfp.dsl import ClassificationMetrics, Dataset, HTML, Markdown, Metrics, Output

import support
from execution_support import executing_server, wait_for_final
from ui_support import base, browser, click, confirm, console_errors, css, graph_states, printed_link, run_of, screenshots, tasks, wait  # noqa: F401

pytestmark = pytest.mark.timeout(300)


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


def test_run_link_shows_the_graph_and_follows_a_running_tasks_log(client, browser, screenshots, capsys):
    name = support.unique("ui-run")
    result = run_of(client, two_steps, name, word="from-the-sdk")
    link = printed_link(capsys.readouterr().out, "Run details")
    assert link.endswith(f"/#/runs/details/{result.run_id}")

    browser.get(link)
    wait(browser, lambda d: css(d, "#run-name").text == name, f"run name {name!r}")
    assert "from-the-sdk" in css(browser, "main").text
    # The first task's log streams while the task runs: its first line shows up
    # while the graph still says RUNNING.
    wait(browser, lambda d: graph_states(d).get("first-step") == "RUNNING", "first-step running in the graph")
    click(browser, "#graph g.node[aria-label^='first-step']", "the first-step node")
    wait(browser, lambda d: css(d, "#panel-title").text == "first-step", "the task panel")
    click(browser, "#tab-logs", "the log tab")
    wait(browser, lambda d: "start-from-the-sdk" in css(d, "#log").text, "the log's first line")
    assert "end-from-the-sdk" not in css(browser, "#log").text
    assert "following" in css(browser, "#log-count").text
    browser.save_screenshot(str(screenshots / "run-log-following.png"))
    wait(browser, lambda d: "end-from-the-sdk" in css(d, "#log").text, "the log's last line")
    css(browser, "#log-search").send_keys("end-")
    wait(browser, lambda d: css(d, "#log").text.strip() == "end-from-the-sdk", "only the matching line")

    # The stream brings the end of the run without a reload.
    wait(browser, lambda d: css(d, "h1 .state").text == "SUCCEEDED", "state SUCCEEDED")
    wait(browser, lambda d: graph_states(d).get("second-step") == "SUCCEEDED", "second-step succeeded")
    edges = browser.find_elements("css selector", "#graph path[data-edge]")
    assert len(edges) == 1, "first-step → second-step"
    final = wait_for_final(client, result.run_id)
    api_tasks = {t.display_name: t.state for t in final.run_details.task_details}
    for label, state in graph_states(browser).items():
        assert api_tasks.get(label) == state, (label, state, api_tasks)
    browser.save_screenshot(str(screenshots / "run-graph.png"))

    click(browser, "#view-timeline", "the timeline tab")
    wait(browser, lambda d: len(d.find_elements("css selector", "#timeline .gantt-bar.SUCCEEDED")) == 2, "two bars")
    browser.save_screenshot(str(screenshots / "run-timeline.png"))
    click(browser, "#view-tasks", "the tasks tab")
    table = wait(browser, lambda d: tasks(d) or None, "the task table")
    assert table["first-step"] == table["second-step"] == "SUCCEEDED", table

    click(browser, "dl.facts a[href^='#/experiments/details/']", "the experiment link")
    wait(browser, lambda d: d.find_elements("css selector", f"tr[data-run-id='{result.run_id}']"), "the run in its experiment")
    browser.save_screenshot(str(screenshots / "experiment-details.png"))
    assert console_errors(browser) == []


def test_artifact_previews_and_loop_iterations(client, browser, screenshots, base):
    result = run_of(client, with_artifacts, support.unique("ui-artifacts"))
    final = wait_for_final(client, result.run_id)
    assert final.state == "SUCCEEDED"
    browser.get(f"{base}/#/runs/details/{result.run_id}")
    wait(browser, lambda d: graph_states(d).get("report") == "SUCCEEDED", "the report task")

    # The loop is a group: Enter selects it, Enter again opens its iterations.
    loop = css(browser, "#graph g.node.group")
    loop.send_keys("\n")
    wait(browser, lambda d: "selected" in css(d, "#graph g.node.group").get_attribute("class"), "the loop selected")
    css(browser, "#graph g.node.group").send_keys("\n")
    wait(browser, lambda d: len(graph_states(d)) == 3, "three iterations")
    assert set(graph_states(browser).values()) == {"SUCCEEDED"}
    browser.save_screenshot(str(screenshots / "run-loop-iterations.png"))
    click(browser, ".crumbs a", "the way back to the root")
    wait(browser, lambda d: "report" in graph_states(d), "the root level again")

    click(browser, "#graph g.node[aria-label^='report']", "the report node")
    click(browser, "#tab-artifacts", "the artifacts tab")

    def preview(key, selector):
        click(browser, f"button[data-artifact='{key}']", f"the {key} artifact")
        return wait(browser, lambda d: d.find_element("css selector", f"#artifact-preview {selector}"), f"the {key} preview")

    metrics = preview("metrics", ".metrics table")
    assert "accuracy" in metrics.text and "0.875" in metrics.text
    matrix = preview("classes", ".confusion table")
    assert [c.text for c in matrix.find_elements("css selector", "td.count")] == ["7", "1", "2", "9"]
    assert css(browser, "#artifact-preview svg.roc polyline").get_attribute("points").count(",") == 3
    browser.save_screenshot(str(screenshots / "artifact-classification.png"))
    heading = preview("notes", ".markdown h3")
    assert heading.text == "Findings"
    assert css(browser, "#artifact-preview .markdown strong").text == "model"
    frame = preview("page", "iframe.html-preview")
    assert frame.get_attribute("sandbox") == ""
    browser.switch_to.frame(frame)
    wait(browser, lambda d: d.find_element("id", "inside").text == "from-the-html", "the html inside the frame")
    browser.switch_to.default_content()
    assert browser.title != "pwned", "the artifact's script ran"
    csv = preview("table", ".csv-preview table")
    assert "Oslo" in csv.text and "Lima" in csv.text
    browser.save_screenshot(str(screenshots / "artifact-table.png"))

    click(browser, "#tab-io", "the inputs and outputs tab")
    wait(browser, lambda d: "system.Metrics" in css(d, "#panel-body").text, "the output artifacts")
    assert console_errors(browser) == []


def test_upload_create_run_terminate_retry_clone_and_delete(client, browser, screenshots, base, tmp_path):
    package = tmp_path / "napping.yaml"
    compiler.Compiler().compile(napping, str(package))
    pipeline_name = support.unique("ui-upload")

    browser.get(f"{base}/#/pipelines")
    click(browser, "#upload-pipeline summary", "the upload form")
    css(browser, "#upload-pipeline-file").send_keys(str(package))
    css(browser, "#upload-pipeline-name").send_keys(pipeline_name)
    click(browser, "#upload-pipeline-submit", "upload")
    wait(browser, lambda d: css(d, "#pipeline-name").text == pipeline_name, "the uploaded pipeline")
    pipeline_id = browser.current_url.rsplit("/", 1)[-1]
    assert client.get_pipeline(pipeline_id).display_name == pipeline_name
    browser.save_screenshot(str(screenshots / "pipeline-details.png"))

    click(browser, "tr[data-version-id] a.button", "create run from the version")
    wait(browser, lambda d: d.find_element("id", "param-seconds"), "the typed parameters")
    assert css(browser, "#param-seconds").get_attribute("type") == "number"
    assert css(browser, "#param-fail").get_attribute("type") == "checkbox"
    name = support.unique("ui-created")
    field = css(browser, "#run-name-input")
    field.clear()
    field.send_keys(name)
    seconds = css(browser, "#param-seconds")
    seconds.clear()
    seconds.send_keys("2.5")
    click(browser, "#create-run", "create")
    wait(browser, lambda d: "must be an integer" in css(d, "#form-error").text, "the bad-integer message")
    seconds.clear()
    seconds.send_keys("60")
    css(browser, "#param-label").send_keys("-first")
    browser.save_screenshot(str(screenshots / "run-new.png"))
    click(browser, "#create-run", "create")
    wait(browser, lambda d: css(d, "#run-name").text == name, "the created run")
    run_id = browser.current_url.split("/runs/details/")[1].split("?")[0]
    run = client.get_run(run_id)
    assert run.runtime_config.parameters == {"seconds": 60, "fail": False, "label": "x-first"}

    wait(browser, lambda d: css(d, "h1 .state").text == "RUNNING", "RUNNING")
    click(browser, "#run-terminate", "terminate")
    confirm(browser)
    wait(browser, lambda d: css(d, "h1 .state").text == "CANCELED", "CANCELED")
    click(browser, "#run-retry", "retry")
    wait(browser, lambda d: css(d, "h1 .state").text in ("PENDING", "RUNNING"), "the retried run going again")
    click(browser, "#run-terminate", "terminate")
    confirm(browser)
    wait(browser, lambda d: css(d, "h1 .state").text == "CANCELED", "CANCELED again")
    history = [s.state for s in client.get_run(run_id).state_history]
    assert history.count("CANCELED") == 2, history

    click(browser, "#run-clone", "clone")
    wait(browser, lambda d: css(d, "#param-seconds").get_attribute("value") == "60", "the cloned parameters")
    assert css(browser, "#param-label").get_attribute("value") == "x-first"
    seconds = css(browser, "#param-seconds")
    seconds.clear()
    seconds.send_keys("0")
    click(browser, "#create-run", "create the clone")
    wait(browser, lambda d: css(d, "h1 .state").text == "SUCCEEDED", "the clone succeeded")
    clone_id = browser.current_url.split("/runs/details/")[1].split("?")[0]
    assert clone_id != run_id
    assert client.get_run(clone_id).runtime_config.parameters["label"] == "x-first"

    click(browser, "#run-archive", "archive")
    wait(browser, lambda d: d.find_elements("id", "run-restore"), "the restore button")
    assert client.get_run(clone_id).storage_state == "ARCHIVED"
    click(browser, "#run-delete", "delete")
    confirm(browser)
    wait(browser, lambda d: d.current_url.endswith("#/runs"), "back on the runs")
    with pytest.raises(Exception):
        client.get_run(clone_id)
    assert console_errors(browser) == []


def test_runs_list_filters_sorts_bulk_archives_and_compares(client, browser, screenshots, base):
    tag = support.unique("ui-listed")
    ids = []
    for index, label in enumerate(["b", "a"]):
        run = run_of(client, napping, f"{tag}-{label}", label=f"label-{index}")
        ids.append(run.run_id)
    for run_id in ids:
        assert wait_for_final(client, run_id).state == "SUCCEEDED"

    browser.get(f"{base}/#/runs?state=SUCCEEDED&name={tag}")
    wait(browser, lambda d: len(d.find_elements("css selector", "tbody tr[data-run-id]")) == 2, "both runs")
    names = lambda d: [r.find_element("css selector", "td a").text for r in d.find_elements("css selector", "tbody tr[data-run-id]")]
    click(browser, "th button.sort", "sort by name")
    wait(browser, lambda d: names(d) == [f"{tag}-a", f"{tag}-b"] and "sort=name" in d.current_url, "sorted by name")
    click(browser, "th button.sort", "sort by name, descending")
    wait(browser, lambda d: names(d) == [f"{tag}-b", f"{tag}-a"], "sorted by name, descending")
    browser.save_screenshot(str(screenshots / "runs.png"))

    click(browser, "#select-all", "select all")
    click(browser, "button[data-bulk='compare']", "compare")
    wait(browser, lambda d: d.find_elements("css selector", "#compare-parameters tr.differs"), "the differing parameter")
    differing = css(browser, "#compare-parameters tr.differs").text
    assert "label" in differing and "label-0" in differing and "label-1" in differing
    browser.save_screenshot(str(screenshots / "compare.png"))

    browser.get(f"{base}/#/runs?name={tag}")
    wait(browser, lambda d: len(d.find_elements("css selector", "tbody tr[data-run-id]")) == 2, "both runs")
    click(browser, "#select-all", "select all")
    click(browser, "button[data-bulk='archive']", "archive both")
    wait(browser, lambda d: "No runs match" in css(d, "#page").text, "none left among the active runs")
    assert {client.get_run(i).storage_state for i in ids} == {"ARCHIVED"}
    browser.get(f"{base}/#/runs?name={tag}&archived=1")
    wait(browser, lambda d: len(d.find_elements("css selector", "tbody tr[data-run-id]")) == 2, "both archived")
    click(browser, "#select-all", "select all")
    click(browser, "button[data-bulk='restore']", "restore both")
    wait(browser, lambda d: "No runs match" in css(d, "#page").text, "none left among the archived")
    assert {client.get_run(i).storage_state for i in ids} == {"AVAILABLE"}

    browser.get(f"{base}/#/runs?state=FAILED&name={tag}")
    wait(browser, lambda d: "No runs match" in css(d, "#page").text, "the empty state")
    assert console_errors(browser) == []


def test_experiments_create_archive_restore(client, browser, screenshots, base):
    name = support.unique("ui-experiment")
    browser.get(f"{base}/#/experiments")
    click(browser, "#new-experiment summary", "the new experiment form")
    css(browser, "#experiment-name-input").send_keys(name)
    css(browser, "#experiment-description").send_keys("made in the browser")
    click(browser, "#create-experiment", "create")
    wait(browser, lambda d: css(d, "#experiment-name").text == name, "the new experiment")
    experiment_id = browser.current_url.rsplit("/", 1)[-1]
    assert client.get_experiment(experiment_id).description == "made in the browser"
    click(browser, "button[data-action='archive']", "archive")
    wait(browser, lambda d: d.find_elements("css selector", "button[data-action='restore']"), "restore offered")
    assert client.get_experiment(experiment_id).storage_state == "ARCHIVED"
    browser.get(f"{base}/#/experiments?archived=1")
    wait(browser, lambda d: d.find_elements("css selector", f"tr[data-experiment-id='{experiment_id}']"), "among the archived")
    browser.save_screenshot(str(screenshots / "experiments.png"))
    click(browser, f"tr[data-experiment-id='{experiment_id}'] button[data-action='restore']", "restore")
    wait(browser, lambda d: not d.find_elements("css selector", f"tr[data-experiment-id='{experiment_id}']"), "gone from the archived")
    assert client.get_experiment(experiment_id).storage_state == "AVAILABLE"
    assert console_errors(browser) == []


def test_recurring_run_create_edit_disable_enable_delete(client, browser, screenshots, base, tmp_path):
    package = tmp_path / "napping.yaml"
    compiler.Compiler().compile(napping, str(package))
    pipeline = client.upload_pipeline(str(package), pipeline_name=support.unique("ui-recurring"))
    version = client.list_pipeline_versions(pipeline.pipeline_id).pipeline_versions[0]

    browser.get(f"{base}/#/runs/new?pipeline={pipeline.pipeline_id}&version={version.pipeline_version_id}&recurring=1")
    wait(browser, lambda d: d.find_element("id", "trigger-kind").is_displayed(), "the schedule fields")
    name = support.unique("ui-every-hour")
    field = css(browser, "#run-name-input")
    field.clear()
    field.send_keys(name)
    from selenium.webdriver.support.ui import Select

    Select(css(browser, "#trigger-kind")).select_by_value("periodic")
    click(browser, "#create-run", "create")
    wait(browser, lambda d: css(d, "#recurring-name").text == name, "the recurring run")
    recurring_id = browser.current_url.rsplit("/", 1)[-1]
    made = client.get_recurring_run(recurring_id)
    assert int(made.trigger.periodic_schedule.interval_second) == 3600
    assert made.status == "ENABLED"

    click(browser, "#edit-recurring", "edit")
    interval = wait(browser, lambda d: d.find_element("id", "trigger-interval"), "the edit form")
    interval.clear()
    interval.send_keys("7200")
    label = css(browser, "#param-label")
    label.clear()
    label.send_keys("edited")
    click(browser, "#save-recurring", "save")
    wait(browser, lambda d: "every 2h 0m" in css(d, "dl.facts").text, "the new trigger")
    edited = client.get_recurring_run(recurring_id)
    assert int(edited.trigger.periodic_schedule.interval_second) == 7200
    assert edited.runtime_config.parameters["label"] == "edited"
    browser.save_screenshot(str(screenshots / "recurring-run.png"))

    click(browser, "button[data-action='disable']", "disable")
    wait(browser, lambda d: css(d, "#recurring-status").text == "DISABLED", "disabled")
    assert client.get_recurring_run(recurring_id).status == "DISABLED"
    click(browser, "button[data-action='enable']", "enable")
    wait(browser, lambda d: css(d, "#recurring-status").text == "ENABLED", "enabled")
    browser.get(f"{base}/#/recurringruns")
    wait(browser, lambda d: d.find_elements("css selector", f"tr[data-recurring-run-id='{recurring_id}']"), "in the list")
    browser.save_screenshot(str(screenshots / "recurring-runs.png"))
    click(browser, f"tr[data-recurring-run-id='{recurring_id}'] button[data-action='delete']", "delete")
    confirm(browser)
    wait(browser, lambda d: not d.find_elements("css selector", f"tr[data-recurring-run-id='{recurring_id}']"), "gone")
    response = requests.get(f"{base}/apis/v2beta1/recurringruns/{recurring_id}", timeout=10)
    assert response.status_code == 404
    assert console_errors(browser) == []


def test_pipeline_version_link_shows_its_graph_and_spec(client, browser, screenshots, tmp_path, capsys):
    package = tmp_path / "two_steps.yaml"
    compiler.Compiler().compile(two_steps, str(package))
    pipeline = client.upload_pipeline(str(package), pipeline_name=support.unique("ui-pipeline"))
    version_name = support.unique("ui-version")
    version = client.upload_pipeline_version(str(package), version_name, pipeline_id=pipeline.pipeline_id)
    link = printed_link(capsys.readouterr().out, "Pipeline details")
    assert link.endswith(f"/#/pipelines/details/{pipeline.pipeline_id}/version/{version.pipeline_version_id}")

    browser.get(link)
    wait(browser, lambda d: css(d, "#version-name").text == version_name, "the version's name")
    assert '"ui-two-steps"' in css(browser, "#spec").text
    assert sorted(graph_states(browser)) == ["first-step", "second-step"]
    assert len(browser.find_elements("css selector", "#graph path[data-edge]")) == 1
    rows = browser.find_elements("css selector", "#spec-tasks tbody tr")
    assert [r.find_elements("tag name", "td")[0].text for r in rows] == ["first-step", "second-step"]
    browser.save_screenshot(str(screenshots / "pipeline-version.png"))

    click(browser, "#delete-version", "delete the version")
    confirm(browser)
    wait(browser, lambda d: d.find_elements("id", "pipeline-name"), "back on the pipeline")
    remaining = client.list_pipeline_versions(pipeline.pipeline_id).pipeline_versions or []
    assert version.pipeline_version_id not in [v.pipeline_version_id for v in remaining]

    base = client._get_url_prefix()
    browser.get(f"{base}/#/runs/details/no-such-run")
    wait(browser, lambda d: "was not found" in css(d, "#page").text, "the not-found message")
    browser.save_screenshot(str(screenshots / "run-not-found.png"))
    # A phone-width window keeps the page usable: the secondary columns go.
    browser.set_window_size(390, 844)
    browser.get(f"{base}/#/pipelines")
    wait(browser, lambda d: d.find_elements("css selector", f"tr[data-pipeline-id='{pipeline.pipeline_id}']"), "the pipelines at phone width")
    assert not css(browser, "th.wide").is_displayed()
    assert browser.execute_script("return document.documentElement.scrollWidth <= document.documentElement.clientWidth")
    browser.save_screenshot(str(screenshots / "pipelines-phone.png"))
    browser.set_window_size(1400, 1000)
    assert console_errors(browser, expected="/apis/v2beta1/runs/no-such-run") == []
