"""Recurring runs that fire and execute: a periodic recurring run made with the SDK
creates runs every few seconds, which the local engine runs; each run sees its
scheduled time; disabling stops it, enabling resumes it without backfilling the
disabled period, deleting removes it.

The tasks are local processes, so they report what they saw by writing files into a
sink directory."""

import datetime
import pathlib
import time

import pytest
from kfp import compiler, dsl

from execution_support import describe_run, executing_server, wait_for_final
from support import api_error, unique

pytestmark = pytest.mark.timeout(300)

INTERVAL = 2


@pytest.fixture(scope="module")
def server(request, kfpd_bin):
    with executing_server(kfpd_bin, request) as srv:
        yield srv


@dsl.container_component
def record(sink: str, run_id: str, scheduled: str, index: str):
    """Writes what the engine substituted for the run's placeholders into `<sink>/<run id>`."""
    return dsl.ContainerSpec(
        image="alpine",
        command=["sh", "-c", 'printf "%s %s" "$2" "$3" > "$0/$1"'],
        args=[sink, run_id, scheduled, index],
    )


@dsl.pipeline
def ticking(sink: str, index: str):
    record(
        sink=sink,
        run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
        scheduled=dsl.PIPELINE_JOB_SCHEDULE_TIME_UTC_PLACEHOLDER,
        index=index,
    )


def runs_of(client, recurring_run_id):
    """The runs a recurring run created, oldest tick first (SDK filter on recurring_run_id)."""
    response = client.list_runs(page_size=200, sort_by="created_at asc",
                                filter=f'{{"predicates": [{{"operation": "EQUALS", "key": "recurring_run_id", '
                                       f'"string_value": "{recurring_run_id}"}}]}}')
    runs = response.runs or []
    return sorted(runs, key=lambda run: run.scheduled_at)


def wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout}s")
        time.sleep(0.25)


def utc(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_periodic_recurring_run_executes_stops_resumes_and_is_deleted(client, tmp_path):
    sink = tmp_path / "sink"
    sink.mkdir()
    package = tmp_path / "ticking.yaml"
    compiler.Compiler().compile(ticking, str(package))
    experiment = client.create_experiment(name=unique("ticking"))
    rr = client.create_recurring_run(
        experiment_id=experiment.experiment_id,
        job_name=unique("every-few-seconds"),
        pipeline_package_path=str(package),
        params={"sink": str(sink), "index": "[[Index]]"},
        interval_second=INTERVAL,
        max_concurrency=5,
        enable_caching=False,
    )
    assert rr.status == "ENABLED"
    rr_id = rr.recurring_run_id

    # Runs appear every INTERVAL seconds and execute.
    wait_until(lambda: len(runs_of(client, rr_id)) >= 3, 60, "three fired runs")
    fired = runs_of(client, rr_id)[:3]
    for position, run in enumerate(fired):
        final = wait_for_final(client, run.run_id, timeout=120)
        assert final.state == "SUCCEEDED", describe_run(final)
        assert final.recurring_run_id == rr_id
        assert final.experiment_id == experiment.experiment_id
        # The pipeline saw the tick (scheduled_at) and the run's index.
        scheduled, index = (sink / run.run_id).read_text().split(" ")
        assert utc(scheduled) == final.scheduled_at
        assert index == str(position + 1)
    ticks = [run.scheduled_at for run in fired]
    assert all((b - a).total_seconds() == INTERVAL for a, b in zip(ticks, ticks[1:])), ticks

    # Disabled: no new runs.
    client.disable_recurring_run(rr_id)
    assert client.get_recurring_run(rr_id).status == "DISABLED"
    time.sleep(1)
    stopped = len(runs_of(client, rr_id))
    time.sleep(3 * INTERVAL)
    assert len(runs_of(client, rr_id)) == stopped

    # Enabled again: runs resume from the next tick, the disabled period is not backfilled.
    enabled_at = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    client.enable_recurring_run(rr_id)
    wait_until(lambda: len(runs_of(client, rr_id)) > stopped, 30, "a run after enabling")
    resumed = runs_of(client, rr_id)
    last_before = resumed[stopped - 1].scheduled_at
    first_after = resumed[stopped].scheduled_at
    assert first_after >= enabled_at, (enabled_at, first_after)
    assert (first_after - last_before).total_seconds() > 3 * INTERVAL
    final = wait_for_final(client, resumed[stopped].run_id, timeout=120)
    assert final.state == "SUCCEEDED", describe_run(final)

    # Deleted: gone, and no more runs.
    client.delete_recurring_run(rr_id)
    with api_error(404):
        client.get_recurring_run(rr_id)
    time.sleep(1)
    left = len(runs_of(client, rr_id))
    time.sleep(2 * INTERVAL)
    assert len(runs_of(client, rr_id)) == left
    for run in runs_of(client, rr_id):
        wait_for_final(client, run.run_id, timeout=120)
