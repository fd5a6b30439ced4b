"""The web UI at scale and on the wire, in headless Chromium: a run of 2,002 tasks
(a ParallelFor of 1,000 container tasks on the local engine) renders and stays
usable, every page is one request to kfpd (counted by the server's /metrics),
runs tables update while their runs are live, and nothing is fetched or held
open once nothing runs."""

import time

import pytest
import requests
from kfp import compiler, dsl

import support
from execution_support import executing_server, wait_for_final
from ui_support import (  # noqa: F401
    api_requests,
    base,
    browser,
    click,
    console_errors,
    css,
    open_streams,
    requests_since,
    run_of,
    screenshots,
    wait,
)

pytestmark = pytest.mark.timeout(400)

V2 = "/apis/v2beta1"
# Long enough for a request the page makes late to arrive (none should).
SETTLE_SECONDS = 1.5


@dsl.container_component
def echo_item(item: int):
    return dsl.ContainerSpec(image="alpine", command=["sh", "-c", 'echo "item $0"'], args=[item])


@dsl.pipeline(name="ui-thousand")
def thousand():
    with dsl.ParallelFor(items=list(range(1000))) as item:
        echo_item(item=item)


@dsl.container_component
def nap(seconds: int):
    return dsl.ContainerSpec(image="alpine", command=["sh", "-c", 'sleep "$0"'], args=[seconds])


@dsl.pipeline(name="ui-scale-nap")
def napping(seconds: int = 0, label: str = "x"):
    nap(seconds=seconds)


@pytest.fixture(scope="module")
def server(request, kfpd_bin):
    with executing_server(kfpd_bin, request) as srv:
        yield srv


def _count(driver, selector: str) -> int:
    return driver.execute_script("return document.querySelectorAll(arguments[0]).length", selector)


def _graph_state_counts(driver) -> dict[str, int]:
    """State class → number of nodes on the graph's current level, read in one call."""
    return driver.execute_script(
        """const counts = {};
        for (const node of document.querySelectorAll('#graph g.node')) {
          const state = node.getAttribute('class').split(' ')[1];
          counts[state] = (counts[state] || 0) + 1;
        }
        return counts;"""
    )


def _scroll_to_end(driver, selector: str):
    driver.execute_script("const el = document.querySelector(arguments[0]); el.scrollTop = el.scrollHeight;", selector)


def test_a_run_of_a_thousand_tasks_renders_and_stays_usable(client, browser, screenshots, base):
    result = run_of(client, thousand, support.unique("ui-thousand"))
    before = api_requests(base)
    browser.get(f"{base}/#/runs/details/{result.run_id}")
    # The page is live while the loop runs, then the stream brings the end.
    wait(browser, lambda d: css(d, "h1 .state").text == "SUCCEEDED", "the run SUCCEEDED")
    wait(browser, lambda d: css(d, "#tasks-heading").text == "Tasks (2002)", "all 2,002 tasks")
    selections = 0

    # Root level: the loop. Enter selects it, Enter again opens its 1,000 iterations.
    loop = css(browser, "#graph g.node.group")
    loop.send_keys("\n")
    selections += 1
    wait(browser, lambda d: "selected" in css(d, "#graph g.node.group").get_attribute("class"), "the loop selected")
    css(browser, "#graph g.node.group").send_keys("\n")
    wait(browser, lambda d: _graph_state_counts(d) == {"SUCCEEDED": 1000}, "1,000 succeeded iterations")
    browser.save_screenshot(str(screenshots / "thousand-iterations.png"))

    # The last iteration: select it, open it, select its task, read its log.
    last = browser.execute_script(
        "const nodes = document.querySelectorAll('#graph g.node'); const last = nodes[nodes.length - 1];"
        "last.scrollIntoView({block: 'center'}); return last;"
    )
    last.click()
    selections += 1
    wait(browser, lambda d: css(d, "#task-panel").is_displayed(), "the iteration's panel")
    last.send_keys("\n")
    wait(browser, lambda d: _graph_state_counts(d) == {"SUCCEEDED": 1}, "the iteration's one task")
    css(browser, "#graph g.node").click()
    selections += 1
    wait(browser, lambda d: css(d, "#panel-title").text == "echo-item", "the task panel")
    click(browser, "#tab-logs", "the log tab")
    wait(browser, lambda d: css(d, "#log").text.strip() == "item 999", "the last iteration's log")

    # The task table draws only the rows in view, scrolls to the last, selects it.
    click(browser, "#view-tasks", "the tasks tab")
    wait(browser, lambda d: _count(d, "#tasks tbody tr[data-task-id]") > 0, "the task table")
    drawn = _count(browser, "#tasks tbody tr[data-task-id]")
    assert 0 < drawn < 200, f"{drawn} of 2,002 rows in the DOM"
    _scroll_to_end(browser, "#tasks .table-wrap")
    nodes = requests.get(f"{base}{V2}/runs/{result.run_id}/nodes", timeout=30).json()["nodes"]
    iterations = {n["task_id"]: n for n in nodes if n["kind"] == "LOOP_ITERATION"}
    last_iteration = max(iterations.values(), key=lambda n: n["iteration_index"])
    last_task = next(n for n in nodes if n.get("parent_task_id") == last_iteration["task_id"])
    row = f"#tasks tr[data-task-id='{last_task['task_id']}']"
    # The task selected in the graph is the last row, marked.
    wait(browser, lambda d: d.find_elements("css selector", f"{row}.selected"), "the last task's row after scrolling")
    assert _count(browser, "#tasks tbody tr[data-task-id]") < 200
    first_iteration = min(iterations.values(), key=lambda n: n["iteration_index"])
    first_task = next(n for n in nodes if n.get("parent_task_id") == first_iteration["task_id"])
    browser.execute_script("document.querySelector('#tasks .table-wrap').scrollTop = 0")
    first_row = f"#tasks tr[data-task-id='{first_task['task_id']}']"
    click(browser, f"{first_row} a", "the first task's row")
    selections += 1
    wait(browser, lambda d: d.find_elements("css selector", f"{first_row}.selected"), "the first task's row selected")
    # The log tab stays open: the newly selected task's log is read.
    wait(browser, lambda d: css(d, "#log").text.strip() == "item 0", "its log")
    logs = 2
    browser.save_screenshot(str(screenshots / "thousand-tasks-table.png"))

    # The timeline draws only the bars in view too.
    click(browser, "#view-timeline", "the timeline tab")
    wait(browser, lambda d: _count(d, "#timeline .gantt-row") > 0, "the timeline")
    assert _count(browser, "#timeline .gantt-row") < 200
    assert browser.find_elements("css selector", f"#timeline .gantt-row[data-task-id='{first_task['task_id']}']")
    _scroll_to_end(browser, "#timeline")
    wait(browser, lambda d: d.find_elements("css selector", f"#timeline .gantt-row[data-task-id='{last_task['task_id']}']"),
         "the last bar after scrolling")
    browser.save_screenshot(str(screenshots / "thousand-timeline.png"))

    # One stream for the page, one record per selected task, one read per log
    # shown: nothing per row.
    time.sleep(SETTLE_SECONDS)
    made = requests_since(base, before)
    made.pop(("GET", f"{V2}/runs/{{run_id}}/nodes"), None)  # the test's own read above
    assert made == {
        ("GET", f"{V2}/runs/{{run_id}}/events"): 1,
        ("GET", f"{V2}/runs/{{run_id}}/nodes/{{node_id}}"): selections,
        ("GET", "/apis/v1alpha1/runs/{run_id}/nodes/{node_id}/log"): logs,
    }, made
    assert open_streams(base) == {"run": 0, "runs": 0}
    assert console_errors(browser) == []


def test_every_page_is_one_request_and_nothing_polls_when_nothing_runs(client, browser, base, tmp_path):
    package = tmp_path / "napping.yaml"
    compiler.Compiler().compile(napping, str(package))
    pipeline = client.upload_pipeline(str(package), pipeline_name=support.unique("ui-counted"))
    version = client.list_pipeline_versions(pipeline.pipeline_id).pipeline_versions[0]
    experiment = client.create_experiment(support.unique("ui-counted"))
    runs = [
        client.run_pipeline(experiment_id=experiment.experiment_id, job_name=support.unique("ui-counted"),
                            pipeline_id=pipeline.pipeline_id, version_id=version.pipeline_version_id,
                            params={"label": label}).run_id
        for label in ("a", "b")
    ]
    for run_id in runs:
        assert wait_for_final(client, run_id).state == "SUCCEEDED"
    recurring = client.create_recurring_run(
        experiment_id=experiment.experiment_id, job_name=support.unique("ui-counted-every"), interval_second=86400,
        pipeline_id=pipeline.pipeline_id, version_id=version.pipeline_version_id, enabled=False,
    )

    experiment_id, pipeline_id, version_id = experiment.experiment_id, pipeline.pipeline_id, version.pipeline_version_id
    watch = ("GET", f"{V2}/runs:watch")
    pages = [
        ("#/runs", "tr[data-run-id]", {watch: 1}),
        (f"#/runs/details/{runs[0]}", "#graph g.node", {("GET", f"{V2}/runs/{{run_id}}/events"): 1}),
        ("#/experiments", "tr[data-experiment-id]", {("GET", f"{V2}/experiments"): 1}),
        (f"#/experiments/details/{experiment_id}", "tr[data-run-id]", {("GET", f"{V2}/experiments/{{experiment_id}}"): 1, watch: 1}),
        ("#/pipelines", "tr[data-pipeline-id]", {("GET", f"{V2}/pipelines"): 1}),
        (f"#/pipelines/details/{pipeline_id}", "tr[data-version-id]",
         {("GET", f"{V2}/pipelines/{{pipeline_id}}"): 1, ("GET", f"{V2}/pipelines/{{pipeline_id}}/versions"): 1}),
        (f"#/pipelines/details/{pipeline_id}/version/{version_id}", "#spec",
         {("GET", f"{V2}/pipelines/{{pipeline_id}}/versions/{{pipeline_version_id}}"): 1}),
        ("#/recurringruns", "tr[data-recurring-run-id]", {("GET", f"{V2}/recurringruns"): 1}),
        (f"#/recurringruns/details/{recurring.recurring_run_id}", "#recurring-name",
         {("GET", f"{V2}/recurringruns/{{recurring_run_id}}"): 1, watch: 1}),
        # The documented exceptions: a form lists the experiments beside its
        # version; Compare reads each run's artifacts beside one ListRuns.
        (f"#/runs/new?pipeline={pipeline_id}&version={version_id}", "#param-seconds",
         {("GET", f"{V2}/experiments"): 1, ("GET", f"{V2}/pipelines/{{pipeline_id}}/versions/{{pipeline_version_id}}"): 1}),
        (f"#/compare?runs={runs[0]},{runs[1]}", "#compare-parameters tr",
         {("GET", f"{V2}/runs"): 1, ("GET", f"{V2}/artifacts"): 2}),
    ]
    for fragment, marker, expected in pages:
        browser.get("about:blank")
        before = api_requests(base)
        browser.get(f"{base}/{fragment}")
        wait(browser, lambda d: d.find_elements("css selector", marker), f"{marker} on {fragment}")
        time.sleep(SETTLE_SECONDS)
        assert requests_since(base, before) == expected, fragment
        # Every run here is finished: no stream stays open, nothing is fetched.
        assert open_streams(base) == {"run": 0, "runs": 0}, fragment
    before = api_requests(base)
    time.sleep(3)
    assert requests_since(base, before) == {}
    assert console_errors(browser) == []


def test_runs_tables_update_while_their_runs_are_live(client, browser, screenshots, base):
    tag = support.unique("ui-live-list")
    run = run_of(client, napping, f"{tag}-first", seconds=3)
    browser.get(f"{base}/#/runs?name={tag}")
    row = f"tr[data-run-id='{run.run_id}']"
    wait(browser, lambda d: css(d, f"{row} td.run-state").text in ("PENDING", "RUNNING"), "the run live in the list")
    table = css(browser, "#runs-table")
    assert "live" in css(browser, "#runs-live").text
    assert open_streams(base)["runs"] == 1
    browser.save_screenshot(str(screenshots / "runs-live.png"))
    # The row changes in place: same table, no reload, the run's end arrives.
    wait(browser, lambda d: css(d, f"{row} td.run-state").text == "SUCCEEDED", "SUCCEEDED in the list")
    assert table.is_displayed() and table == css(browser, "#runs-table")
    wait(browser, lambda d: open_streams(base)["runs"] == 0, "the runs stream closed")
    assert css(browser, "#runs-live").text == ""
    before = api_requests(base)
    time.sleep(3)
    assert requests_since(base, before) == {}, "the finished list still fetched"

    # An experiment's runs are live the same way.
    experiment_id = client.get_run(run.run_id).experiment_id
    second = run_of(client, napping, f"{tag}-second", seconds=3)
    browser.get(f"{base}/#/experiments/details/{experiment_id}")
    row = f"tr[data-run-id='{second.run_id}']"
    wait(browser, lambda d: css(d, f"{row} td.run-state").text in ("PENDING", "RUNNING"), "the run live in its experiment")
    wait(browser, lambda d: css(d, f"{row} td.run-state").text == "SUCCEEDED", "SUCCEEDED in its experiment")
    wait(browser, lambda d: open_streams(base)["runs"] == 0, "the experiment's runs stream closed")
    assert console_errors(browser) == []
