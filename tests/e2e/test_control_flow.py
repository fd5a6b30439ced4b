"""Control flow executed by kfpd's local engine, driven with the SDK: dsl.If/Elif/Else
with OneOf, ParallelFor (fan-out sums, item fields, nested loops, parallelism),
ExitHandler with PipelineTaskFinalStatus, retries and caching.

Values are checked through a sink directory the tasks write to (they are local
processes), through the task details of GetRun and through the artifact API."""

import json
import pathlib
from typing import List

import pytest
from kfp import dsl
from kfp.dsl import Dataset, Input, Output, PipelineTaskFinalStatus

from execution_support import (
    describe_run,
    executing_server,
    lines_of,
    list_artifacts,
    run_to_end,
    task_named,
    tasks,
    wait_for_final,
)
from support import unique

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def server(request, kfpd_bin):
    with executing_server(kfpd_bin, request) as srv:
        yield srv


@pytest.fixture
def sink(tmp_path) -> pathlib.Path:
    """A file the tasks of one test append what they saw to."""
    return tmp_path / "sink.txt"


@dsl.component
def record(value: str, sink: str):
    with open(sink, "a") as f:
        f.write(value + "\n")


def states(run) -> dict:
    """Display name → list of the states of the tasks with that name."""
    found: dict = {}
    for task in tasks(run):
        found.setdefault(task.display_name, []).append(task.state)
    return found


# --------------------------------------------------------------------------- conditions


@dsl.component
def number(n: int) -> int:
    return n


@dsl.component
def tag(text: str) -> str:
    return text


@dsl.pipeline(name="branches")
def branches(n: int, sink: str):
    value = number(n=n)
    with dsl.If(value.output > 10, name="big"):
        big = tag(text="big").set_display_name("say-big")
    with dsl.Elif(value.output > 5, name="medium"):
        medium = tag(text="medium").set_display_name("say-medium")
    with dsl.Else(name="small"):
        small = tag(text="small").set_display_name("say-small")
    record(value=dsl.OneOf(big.output, medium.output, small.output), sink=sink)


@pytest.mark.parametrize("n, branch", [(20, "big"), (7, "medium"), (1, "small")])
def test_if_elif_else_takes_one_branch_and_oneof_passes_its_output(client, sink, n, branch):
    run = run_to_end(client, branches, {"n": n, "sink": str(sink)})
    assert run.state == "SUCCEEDED", describe_run(run)
    assert lines_of(sink) == [branch]
    seen = states(run)
    assert seen[branch] == ["SUCCEEDED"] and seen[f"say-{branch}"] == ["SUCCEEDED"], describe_run(run)
    for other in {"big", "medium", "small"} - {branch}:
        # The branch is SKIPPED as a whole; its tasks never exist, as upstream.
        assert seen[other] == ["SKIPPED"], describe_run(run)
        assert f"say-{other}" not in seen, describe_run(run)
        assert "condition is false" in task_named(run, other).error.message


# --------------------------------------------------------------------------- loops


@dsl.component
def square(x: int) -> int:
    return x * x


@dsl.component
def add(x: int, y: int) -> int:
    return x + y


@dsl.component
def total(numbers: List[int], sink: str) -> int:
    import json
    result = int(sum(numbers))
    with open(sink, "a") as f:
        f.write(json.dumps({"numbers": numbers, "total": result}) + "\n")
    return result


@dsl.pipeline(name="fan-out-sum")
def fan_out_sum(numbers: List[int], sink: str):
    with dsl.ParallelFor(items=numbers, parallelism=3) as item:
        squared = square(x=item)
    total(numbers=dsl.Collected(squared.output), sink=sink)


def test_parallel_for_over_a_parameter_collects_a_fan_out_sum(client, sink):
    numbers = list(range(1, 11))
    run = run_to_end(client, fan_out_sum, {"numbers": numbers, "sink": str(sink)})
    assert run.state == "SUCCEEDED", describe_run(run)
    [line] = lines_of(sink)
    seen = json.loads(line)
    assert seen["numbers"] == [n * n for n in numbers], "collected in item order"
    assert seen["total"] == 385
    assert states(run)["square"] == ["SUCCEEDED"] * 10


@dsl.pipeline(name="item-fields")
def item_fields(sink: str):
    with dsl.ParallelFor(items=[{"a": 1, "b": 2}, {"a": 30, "b": 40}]) as item:
        summed = add(x=item.a, y=item.b)
    total(numbers=dsl.Collected(summed.output), sink=sink)


def test_parallel_for_over_dicts_reads_item_fields(client, sink):
    run = run_to_end(client, item_fields, {"sink": str(sink)})
    assert run.state == "SUCCEEDED", describe_run(run)
    assert json.loads(lines_of(sink)[0]) == {"numbers": [3, 70], "total": 73}


@dsl.component
def multiply(x: int, y: int) -> int:
    return x * y


@dsl.component
def record_nested(rows: List[List[int]], sink: str):
    import json
    with open(sink, "a") as f:
        f.write(json.dumps(rows) + "\n")


@dsl.pipeline(name="inner-loop")
def inner_loop(x: int) -> List[int]:
    with dsl.ParallelFor(items=[10, 20]) as factor:
        product = multiply(x=x, y=factor)
    return dsl.Collected(product.output)


@dsl.pipeline(name="nested-loops")
def nested_loops(sink: str):
    with dsl.ParallelFor(items=[1, 2, 3]) as outer:
        row = inner_loop(x=outer)
    record_nested(rows=dsl.Collected(row.output), sink=sink)


def test_nested_loops_collect_out_of_a_nested_pipeline(client, sink):
    run = run_to_end(client, nested_loops, {"sink": str(sink)})
    assert run.state == "SUCCEEDED", describe_run(run)
    assert json.loads(lines_of(sink)[0]) == [[10, 20], [20, 40], [30, 60]]
    assert states(run)["multiply"] == ["SUCCEEDED"] * 6


@dsl.component
def touch(sink: str, text: str):
    with open(sink, "a") as f:
        f.write(text + "\n")


@dsl.pipeline(name="after-a-loop")
def after_a_loop(sink: str):
    with dsl.ParallelFor(items=["a", "b", "c"]) as item:
        inside = touch(sink=sink, text=item)
    touch(sink=sink, text="after").after(inside)


def test_after_across_a_loop_waits_for_every_iteration(client, sink):
    run = run_to_end(client, after_a_loop, {"sink": str(sink)})
    assert run.state == "SUCCEEDED", describe_run(run)
    lines = lines_of(sink)
    assert sorted(lines[:3]) == ["a", "b", "c"] and lines[3] == "after", lines


# --------------------------------------------------------------------------- exit handlers


@dsl.component
def fail(message: str):
    raise RuntimeError(message)


@dsl.component
def report_status(status: PipelineTaskFinalStatus, sink: str, label: str):
    import json
    with open(sink, "a") as f:
        f.write(json.dumps({
            "label": label,
            "state": status.state,
            "job": status.pipeline_job_resource_name,
            "task": status.pipeline_task_name,
            "code": status.error_code,
            "message": status.error_message,
        }) + "\n")


@dsl.pipeline(name="exit-status")
def exit_status(sink: str, broken: bool):
    exit_task = report_status(sink=sink, label="only")
    with dsl.ExitHandler(exit_task=exit_task, name="guarded"):
        with dsl.If(broken == True):  # noqa: E712 (a pipeline condition, not Python)
            fail(message="the guarded task broke")
        with dsl.Else():
            touch(sink=sink, text="body ran")


def test_exit_task_gets_the_final_status_of_a_failed_body(client, sink):
    run = run_to_end(client, exit_status, {"sink": str(sink), "broken": True})
    assert run.state == "FAILED", describe_run(run)
    assert "the guarded task broke" in run.error.message, describe_run(run)
    [line] = lines_of(sink)
    status = json.loads(line)
    assert status["state"] == "FAILED"
    assert status["task"] == "exit-handler-1"
    assert status["job"].startswith("exit-status-"), status
    assert status["code"] == 2
    assert "the guarded task broke" in status["message"]
    assert states(run)["report-status"] == ["SUCCEEDED"], describe_run(run)


def test_exit_task_gets_the_final_status_of_a_successful_body(client, sink):
    run = run_to_end(client, exit_status, {"sink": str(sink), "broken": False})
    assert run.state == "SUCCEEDED", describe_run(run)
    lines = lines_of(sink)
    assert lines[0] == "body ran"
    status = json.loads(lines[1])
    assert status["state"] == "COMPLETE", "upstream's Go backend state names"
    assert status["code"] is None and status["message"] is None


@dsl.pipeline(name="two-exit-handlers")
def two_exit_handlers(sink: str):
    first_exit = report_status(sink=sink, label="first")
    with dsl.ExitHandler(exit_task=first_exit):
        touch(sink=sink, text="first body")
    second_exit = report_status(sink=sink, label="second")
    with dsl.ExitHandler(exit_task=second_exit):
        fail(message="second body broke")


def test_several_exit_handlers_each_see_their_own_body(client, sink):
    run = run_to_end(client, two_exit_handlers, {"sink": str(sink)})
    assert run.state == "FAILED", describe_run(run)
    statuses = {}
    for line in lines_of(sink):
        if line.startswith("{"):
            status = json.loads(line)
            statuses[status["label"]] = status
    assert statuses["first"]["state"] == "COMPLETE", statuses
    assert statuses["second"]["state"] == "FAILED", statuses
    assert statuses["first"]["task"] != statuses["second"]["task"]


@dsl.component
def may_fail(fail_it: bool) -> str:
    if fail_it:
        raise RuntimeError("upstream broke")
    return "fine"


@dsl.pipeline(name="ignore-upstream-failure")
def ignore_upstream(sink: str):
    upstream = may_fail(fail_it=True)
    touch(sink=sink, text="ran anyway").after(upstream).ignore_upstream_failure()


def test_ignore_upstream_failure_runs_the_task_and_the_run_still_fails(client, sink):
    run = run_to_end(client, ignore_upstream, {"sink": str(sink)})
    assert run.state == "FAILED", describe_run(run)
    assert lines_of(sink) == ["ran anyway"]
    assert "upstream broke" in run.error.message


# --------------------------------------------------------------------------- retries


@dsl.component
def flaky(counter: str, succeed_on: int) -> int:
    import os
    attempt = int(open(counter).read()) + 1 if os.path.exists(counter) else 1
    with open(counter, "w") as f:
        f.write(str(attempt))
    if attempt < succeed_on:
        raise RuntimeError(f"attempt {attempt} fails")
    return attempt


@dsl.pipeline(name="retried")
def retried(counter: str, succeed_on: int):
    flaky(counter=counter, succeed_on=succeed_on).set_retry(
        num_retries=3, backoff_duration="0s", backoff_factor=1.0)


def retry_history(run) -> List[str]:
    task = task_named(run, "flaky")
    return [change.state for change in task.state_history]


def test_retry_reruns_until_success_and_keeps_every_attempt(client, tmp_path):
    counter = tmp_path / "counter"
    run = run_to_end(client, retried, {"counter": str(counter), "succeed_on": 3})
    assert run.state == "SUCCEEDED", describe_run(run)
    assert counter.read_text() == "3"
    assert retry_history(run) == ["RUNNING", "FAILED", "RUNNING", "FAILED", "RUNNING", "SUCCEEDED"]


def test_retry_gives_up_after_the_last_attempt(client, tmp_path):
    counter = tmp_path / "counter"
    run = run_to_end(client, retried, {"counter": str(counter), "succeed_on": 99})
    assert run.state == "FAILED", describe_run(run)
    assert counter.read_text() == "4", "one attempt and three retries"
    assert retry_history(run).count("RUNNING") == 4
    assert "attempt 4 fails" in run.error.message and "attempt 4 of 4" in run.error.message


# --------------------------------------------------------------------------- caching


@dsl.component
def produce(sink: str, data: Output[Dataset]):
    import uuid
    token = uuid.uuid4().hex
    with open(data.path, "w") as f:
        f.write(token)
    with open(sink, "a") as f:
        f.write("produced " + token + "\n")


@dsl.component
def consume(sink: str, data: Input[Dataset]):
    with open(data.path) as f:
        token = f.read()
    with open(sink, "a") as f:
        f.write("consumed " + token + "\n")


@dsl.pipeline(name="cached")
def cached(sink: str):
    data = produce(sink=sink)
    consume(sink=sink, data=data.outputs["data"])


def submit_cached(client, sink: pathlib.Path, enable_caching: bool = True):
    result = client.create_run_from_pipeline_func(
        cached, arguments={"sink": str(sink)}, run_name=unique("cached"), enable_caching=enable_caching)
    return wait_for_final(client, result.run_id)


def cache_notes(run) -> dict:
    return {task.display_name: (task.error.message if task.error else "") for task in tasks(run)
            if task.display_name in ("produce", "consume")}


def test_cache_hit_on_an_identical_run_and_miss_once_its_artifact_is_gone(client, rest, sink):
    first = submit_cached(client, sink)
    assert first.state == "SUCCEEDED", describe_run(first)
    assert len(lines_of(sink)) == 2
    assert all(note == "" for note in cache_notes(first).values()), cache_notes(first)

    second = submit_cached(client, sink)
    assert second.state == "SUCCEEDED", describe_run(second)
    assert len(lines_of(sink)) == 2, "nothing ran again"
    for name, note in cache_notes(second).items():
        assert note.startswith("cached:") and first.run_id in note, (name, note)
        assert task_named(second, name).state == "SUCCEEDED", "cached tasks show as SUCCEEDED"

    off = submit_cached(client, sink, enable_caching=False)
    assert off.state == "SUCCEEDED", describe_run(off)
    assert len(lines_of(sink)) == 4, "enable_caching=False runs every task"

    # Upstream bug #7939: reusing an artifact whose object is gone would break the
    # consumer; the hit is refused instead and the producer runs again.
    produced = [a for a in list_artifacts(rest, first.run_id) if a["name"] == "data"]
    assert len(produced) == 1, produced
    path = pathlib.Path(produced[0]["uri"].removeprefix("file://"))
    path.unlink()
    third = submit_cached(client, sink)
    assert third.state == "SUCCEEDED", describe_run(third)
    lines = lines_of(sink)
    assert len(lines) == 6, lines
    produced_token = lines[4].split()[1]
    assert lines[5] == f"consumed {produced_token}"
    assert all(note == "" for note in cache_notes(third).values()), cache_notes(third)


# --------------------------------------------------------------------------- the loop limit


@dsl.component
def occupy(item: int, sink: str):
    import os
    import time
    running = sink + ".running"
    os.makedirs(running, exist_ok=True)
    mine = os.path.join(running, str(item))
    open(mine, "w").close()
    with open(sink, "a") as f:
        f.write(f"{len(os.listdir(running))}\n")
    time.sleep(0.5)
    with open(sink, "a") as f:
        f.write(f"{len(os.listdir(running))}\n")
    os.remove(mine)


@dsl.pipeline(name="limited")
def limited(sink: str):
    with dsl.ParallelFor(items=[1, 2, 3, 4, 5, 6], parallelism=2) as item:
        occupy(item=item, sink=sink)


def test_parallelism_limits_iterations_running_at_once(client, sink):
    run = run_to_end(client, limited, {"sink": str(sink)})
    assert run.state == "SUCCEEDED", describe_run(run)
    counts = [int(line) for line in lines_of(sink)]
    assert len(counts) == 12
    assert max(counts) <= 2, counts
