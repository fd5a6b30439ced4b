"""More control flow executed by kfpd's local engine, driven with the SDK: OneOf over
artifacts, loops producing and consuming artifacts (Collected artifacts, a loop over a
list of artifacts in a nested pipeline), nested conditions and conditions inside
loops, a pipeline as exit task, a failed producer's consumer falling back to its
default, and cache hits for parameter outputs.

Compiled here at test time, these need nothing outside the repository."""

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


def states(run) -> dict:
    """Display name → sorted states of the tasks with that name."""
    found: dict = {}
    for task in tasks(run):
        found.setdefault(task.display_name, []).append(task.state)
    return {name: sorted(seen) for name, seen in found.items()}


@dsl.component
def record(value: str, sink: str):
    with open(sink, "a") as f:
        f.write(value + "\n")


@dsl.component
def write_text(text: str, data: Output[Dataset]):
    with open(data.path, "w") as f:
        f.write(text)
    data.metadata["text"] = text


@dsl.component
def read_text(data: Input[Dataset], sink: str):
    with open(data.path) as f:
        text = f.read()
    with open(sink, "a") as f:
        f.write(text + "\n")


# --------------------------------------------------------------------------- OneOf over artifacts


@dsl.pipeline(name="oneof-artifacts")
def oneof_artifacts(heads: bool, sink: str):
    with dsl.If(heads == True, name="heads"):  # noqa: E712 (a pipeline condition)
        heads_data = write_text(text="from heads").set_display_name("write-heads")
    with dsl.Else(name="tails"):
        tails_data = write_text(text="from tails").set_display_name("write-tails")
    read_text(data=dsl.OneOf(heads_data.outputs["data"], tails_data.outputs["data"]), sink=sink)


@pytest.mark.parametrize("heads, branch", [(True, "heads"), (False, "tails")])
def test_oneof_passes_the_artifact_of_the_branch_that_ran(client, sink, heads, branch):
    run = run_to_end(client, oneof_artifacts, {"heads": heads, "sink": str(sink)})
    assert run.state == "SUCCEEDED", describe_run(run)
    assert lines_of(sink) == [f"from {branch}"]
    seen = states(run)
    other = "tails" if branch == "heads" else "heads"
    assert seen[f"write-{branch}"] == ["SUCCEEDED"], describe_run(run)
    assert seen[other] == ["SKIPPED"] and f"write-{other}" not in seen, describe_run(run)


# --------------------------------------------------------------------------- loops and artifacts


@dsl.component
def join_texts(parts: Input[List[Dataset]], sink: str):
    texts = []
    for part in parts:
        with open(part.path) as f:
            texts.append(f.read())
    with open(sink, "a") as f:
        f.write("joined " + ",".join(texts) + "\n")


@dsl.pipeline(name="read-each")
def read_each(parts: Input[List[Dataset]], sink: str):
    with dsl.ParallelFor(items=parts) as part:
        read_text(data=part, sink=sink)


@dsl.pipeline(name="loop-artifacts")
def loop_artifacts(sink: str):
    with dsl.ParallelFor(items=["a", "b", "c"]) as text:
        made = write_text(text=text)
    join_texts(parts=dsl.Collected(made.outputs["data"]), sink=sink)
    read_each(parts=dsl.Collected(made.outputs["data"]), sink=sink)


def test_loops_collect_artifacts_and_loop_over_a_list_of_artifacts(client, sink):
    run = run_to_end(client, loop_artifacts, {"sink": str(sink)})
    assert run.state == "SUCCEEDED", describe_run(run)
    lines = lines_of(sink)
    assert "joined a,b,c" in lines, "Collected artifacts arrive in item order"
    assert sorted(line for line in lines if not line.startswith("joined")) == ["a", "b", "c"]
    seen = states(run)
    assert seen["write-text"] == ["SUCCEEDED"] * 3
    assert seen["read-text"] == ["SUCCEEDED"] * 3, "one iteration per collected artifact"


# --------------------------------------------------------------------------- nested conditions


@dsl.component
def number(n: int) -> int:
    return n


@dsl.pipeline(name="nested-conditions")
def nested_conditions(n: int, sink: str):
    value = number(n=n)
    with dsl.If(value.output > 1, name="above-one"):
        record(value="above one", sink=sink).set_display_name("say-above-one")
        with dsl.If(value.output > 10, name="above-ten"):
            record(value="above ten", sink=sink).set_display_name("say-above-ten")


@pytest.mark.parametrize("n, said", [(20, ["above one", "above ten"]), (5, ["above one"]), (0, [])])
def test_nested_conditions_take_only_the_branches_that_hold(client, sink, n, said):
    run = run_to_end(client, nested_conditions, {"n": n, "sink": str(sink)})
    assert run.state == "SUCCEEDED", describe_run(run)
    assert sorted(lines_of(sink)) == sorted(said)
    seen = states(run)
    if n <= 1:
        assert seen["above-one"] == ["SKIPPED"] and "above-ten" not in seen, describe_run(run)
    elif n <= 10:
        assert seen["above-ten"] == ["SKIPPED"] and "say-above-ten" not in seen, describe_run(run)


@dsl.pipeline(name="conditions-in-a-loop")
def conditions_in_a_loop(sink: str):
    with dsl.ParallelFor(items=[1, 5, 12, 30]) as item:
        with dsl.If(item > 10, name="big-item"):
            record(value="big", sink=sink).set_display_name("say-big")
        with dsl.Else(name="small-item"):
            record(value="small", sink=sink).set_display_name("say-small")


def test_each_loop_iteration_takes_its_own_branch(client, sink):
    run = run_to_end(client, conditions_in_a_loop, {"sink": str(sink)})
    assert run.state == "SUCCEEDED", describe_run(run)
    assert sorted(lines_of(sink)) == ["big", "big", "small", "small"]
    seen = states(run)
    assert seen["say-big"] == ["SUCCEEDED"] * 2 and seen["say-small"] == ["SUCCEEDED"] * 2
    assert seen["big-item"].count("SKIPPED") == 2 and seen["small-item"].count("SKIPPED") == 2


# --------------------------------------------------------------------------- a pipeline as exit task


@dsl.component
def fail(message: str):
    raise RuntimeError(message)


@dsl.component
def state_of(status: dict) -> str:
    # Inside the exit pipeline the final status arrives as a plain struct.
    return status["state"]


@dsl.pipeline(name="notify")
def notify(sink: str, status: PipelineTaskFinalStatus):
    state = state_of(status=status)
    with dsl.If(state.output == "FAILED", name="on-failure"):
        record(value="the body failed", sink=sink).set_display_name("say-failed")


@dsl.pipeline(name="pipeline-exit-task")
def pipeline_exit_task(sink: str):
    exit_pipeline = notify(sink=sink)
    with dsl.ExitHandler(exit_task=exit_pipeline, name="guarded"):
        fail(message="the guarded task broke")


def test_a_pipeline_as_exit_task_sees_the_failure(client, sink):
    run = run_to_end(client, pipeline_exit_task, {"sink": str(sink)})
    assert run.state == "FAILED", describe_run(run)
    assert "the guarded task broke" in run.error.message, describe_run(run)
    assert lines_of(sink) == ["the body failed"]
    assert task_named(run, "state-of").state == "SUCCEEDED", describe_run(run)
    assert task_named(run, "on-failure").state == "SUCCEEDED", "the exit pipeline's condition held"


# --------------------------------------------------------------------------- failure fallbacks


@dsl.component
def broken_text() -> str:
    raise RuntimeError("the producer broke")


@dsl.component
def record_or_default(sink: str, text: str = "the default"):
    with open(sink, "a") as f:
        f.write(text + "\n")


@dsl.pipeline(name="default-after-failure")
def default_after_failure(sink: str):
    produced = broken_text()
    record_or_default(sink=sink, text=produced.output).ignore_upstream_failure()


def test_a_consumer_of_a_failed_producer_uses_its_default(client, sink):
    run = run_to_end(client, default_after_failure, {"sink": str(sink)})
    assert run.state == "FAILED", describe_run(run)
    assert "the producer broke" in run.error.message
    assert lines_of(sink) == ["the default"]
    assert task_named(run, "record-or-default").state == "SUCCEEDED", describe_run(run)


# --------------------------------------------------------------------------- parameter cache


@dsl.component
def count_call(sink: str, x: int) -> int:
    with open(sink, "a") as f:
        f.write(f"called {x}\n")
    return x * 2


@dsl.component
def record_int(sink: str, value: int):
    with open(sink, "a") as f:
        f.write(f"got {value}\n")


@dsl.pipeline(name="cached-parameters")
def cached_parameters(sink: str, marker: str, x: int):
    doubled = count_call(sink=marker, x=x)
    record_int(sink=sink, value=doubled.output)


def test_a_cache_hit_gives_the_cached_parameter_output(client, tmp_path):
    marker = tmp_path / "calls.txt"
    arguments = {"marker": str(marker), "x": 21}

    def submit(sink: pathlib.Path):
        result = client.create_run_from_pipeline_func(
            cached_parameters, arguments={**arguments, "sink": str(sink)}, run_name=unique("cached"),
            enable_caching=True)
        return wait_for_final(client, result.run_id)

    first = submit(tmp_path / "first.txt")
    assert first.state == "SUCCEEDED", describe_run(first)
    # The sink is an input too, so the consumer runs both times; the producer's
    # inputs are the same, so its second run is a cache hit.
    second = submit(tmp_path / "second.txt")
    assert second.state == "SUCCEEDED", describe_run(second)
    assert lines_of(marker) == ["called 21"], "the producer ran once"
    note = task_named(second, "count-call").error.message if task_named(second, "count-call").error else ""
    assert note.startswith("cached:") and first.run_id in note, note
    assert lines_of(tmp_path / "second.txt") == ["got 42"], "the cached output reached the consumer"
