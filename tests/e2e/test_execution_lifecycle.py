"""The life of an executing run, driven with the SDK: following a running task's
log, terminating a run (its processes go), retrying a failed run (what succeeded is
not run again), and a restart of `kfpd serve` in the middle of a run.

Tasks report what happened to them (PIDs, how often they ran) in a sink directory
passed as a parameter; they are local processes of this machine."""

import os
import pathlib
import signal
import time

import kfp
import pytest
import requests
from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from execution_support import (
    SERVER_ARGS,
    artifact_ids,
    assert_succeeded,
    describe_run,
    executing_server,
    lines_of,
    log_url,
    process_gone,
    submit,
    task_log,
    task_named,
    wait_for_final,
    wait_until,
)
import support
from support import KfpdServer

pytestmark = pytest.mark.timeout(600)

# Seconds a terminated task's processes may take to go away.
KILL_BOUND = 5
# Seconds until a task that was just submitted has started (environment ready).
START_BOUND = 180


@pytest.fixture(scope="module")
def server(request, kfpd_bin):
    with executing_server(kfpd_bin, request) as srv:
        yield srv


@pytest.fixture
def sink(tmp_path) -> pathlib.Path:
    path = tmp_path / "sink"
    path.mkdir()
    return path


# --------------------------------------------------------------------------- follow


@dsl.container_component
def slow_talker(marker: str, sink: str):
    """Says one line, sleeps, says another; touches `done` just before it exits."""
    return dsl.ContainerSpec(
        image="alpine",
        command=["sh", "-c", 'echo "early $0"; sleep 6; echo "late $0"; touch "$1/done"'],
        args=[marker, sink],
    )


@dsl.pipeline
def talking(marker: str, sink: str):
    slow_talker(marker=marker, sink=sink)


def running_task(client, run_id: str, display_name: str):
    """Waits until the run has a RUNNING task of that name and returns it."""
    def find():
        run = client.get_run(run_id)
        details = run.run_details.task_details if run.run_details else None
        for task in details or []:
            if task.display_name == display_name and task.state == "RUNNING":
                return task
        assert run.state not in ("SUCCEEDED", "FAILED", "CANCELED"), describe_run(run)
        return None

    return wait_until(find, START_BOUND, f"task {display_name} running")


def test_follow_streams_lines_while_the_task_runs(client, base_url, sink):
    marker = f"m{time.time_ns()}"
    run_id = submit(client, talking, {"marker": marker, "sink": str(sink)})
    task = running_task(client, run_id, "slow-talker")

    received = ""
    early_seen_while_running = None
    with requests.get(log_url(base_url, run_id, task.task_id), params={"follow": "true"},
                      stream=True, timeout=(10, 60)) as response:
        assert response.status_code == 200, response.text
        for chunk in response.iter_content(chunk_size=None):
            received += chunk.decode()
            if early_seen_while_running is None and f"early {marker}" in received:
                early_seen_while_running = not (sink / "done").exists()
    # The stream ended by itself when the task ended, with the whole log.
    assert early_seen_while_running is True, "the early line came only after the task had ended"
    assert f"early {marker}\n" in received
    assert f"late {marker}\n" in received
    assert (sink / "done").exists()
    run = wait_for_final(client, run_id)
    assert_succeeded(run)
    assert task_log(base_url, run_id, task.task_id) == received


@dsl.container_component
def held(name: str, sink: str):
    """Says hello, then waits (at most 60 s) for the test to create `release`."""
    return dsl.ContainerSpec(
        image="alpine",
        command=[
            "sh",
            "-c",
            'touch "$1/$0.started"; echo "hello $0"; i=0; '
            'while [ ! -e "$1/release" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done',
        ],
        args=[name, sink],
    )


@dsl.pipeline
def two_held(sink: str):
    held(name="one", sink=sink).set_display_name("one")
    held(name="two", sink=sink).set_display_name("two")


def test_follow_a_task_that_waits_for_a_slot(kfpd_bin, sink):
    extra = (*SERVER_ARGS, "--max-parallel-tasks", "1")
    with support.running_server(kfpd_bin, executor="local", extra_args=extra) as srv:
        client = kfp.Client(host=srv.base_url)
        run_id = submit(client, two_held, {"sink": str(sink)})

        def queued_task():
            run = client.get_run(run_id)
            states = {task.display_name: task for task in (run.run_details.task_details or [])} \
                if run.run_details else {}
            for name in ("one", "two"):
                task = states.get(name)
                other = "two" if name == "one" else "one"
                if (task is not None and task.state == "RUNNING" and (sink / f"{other}.started").exists()
                        and not (sink / f"{name}.started").exists()):
                    return task
            return None

        # One task holds the only slot; the other is RUNNING but has not started.
        task = wait_until(queued_task, START_BOUND, "one task holding the slot and the other queued")
        with requests.get(log_url(srv.base_url, run_id, task.task_id), params={"follow": "true"},
                          stream=True, timeout=(10, 60)) as response:
            (sink / "release").touch()
            assert response.status_code == 200, response.text
            received = b"".join(response.iter_content(chunk_size=None)).decode()
        assert f"hello {task.display_name}" in received
        assert_succeeded(wait_for_final(client, run_id))


# --------------------------------------------------------------------------- terminate


@dsl.component
def sleeper(sink: str, name: str, seconds: int):
    """Records its PID and how often it started, then sleeps."""
    import os
    import time

    with open(f"{sink}/{name}.starts", "a") as f:
        f.write(f"{os.getpid()}\n")
    with open(f"{sink}/{name}.pid.tmp", "w") as f:
        f.write(str(os.getpid()))
    os.replace(f"{sink}/{name}.pid.tmp", f"{sink}/{name}.pid")
    time.sleep(seconds)
    with open(f"{sink}/{name}.ends", "a") as f:
        f.write(f"{os.getpid()}\n")


@dsl.component
def count(sink: str, name: str) -> str:
    with open(f"{sink}/{name}.starts", "a") as f:
        f.write("ran\n")
    return name


@dsl.pipeline
def sleeping(sink: str, seconds: int):
    first = count(sink=sink, name="before")
    slow = sleeper(sink=sink, name="slow", seconds=seconds).after(first)
    count(sink=sink, name="after").after(slow).set_display_name("count-after")


def read_pid(sink: pathlib.Path, name: str) -> int:
    path = sink / f"{name}.pid"
    text = wait_until(lambda: path.exists() and path.read_text(), START_BOUND, f"{name} writing its PID")
    return int(text)


def test_terminate_stops_a_running_task(client, sink):
    run_id = submit(client, sleeping, {"sink": str(sink), "seconds": 300})
    pid = read_pid(sink, "slow")
    assert not process_gone(pid)

    started = time.monotonic()
    client.terminate_run(run_id)
    wait_until(lambda: process_gone(pid), KILL_BOUND, f"task process {pid} ending after terminate")
    gone_after = time.monotonic() - started

    run = wait_for_final(client, run_id, timeout=30)
    assert run.state == "CANCELED", describe_run(run)
    assert task_named(run, "sleeper").state == "CANCELED", describe_run(run)
    # Nothing after the terminated task ran, and the task did not finish its sleep.
    assert lines_of(sink / "after.starts") == []
    assert lines_of(sink / "slow.ends") == []
    assert gone_after <= KILL_BOUND


def test_terminated_run_can_be_retried_to_success(client, sink):
    run_id = submit(client, sleeping, {"sink": str(sink), "seconds": 3})
    first_pid = read_pid(sink, "slow")
    client.terminate_run(run_id)
    run = wait_for_final(client, run_id, timeout=30)
    assert run.state == "CANCELED", describe_run(run)
    wait_until(lambda: process_gone(first_pid), KILL_BOUND, "the first attempt's process ending")

    client.runs.run_service_retry_run(run_id=run_id)
    run = wait_for_final(client, run_id)
    assert_succeeded(run)
    # `count` before the sleeper had succeeded and is kept; the sleeper starts over.
    assert lines_of(sink / "before.starts") == ["ran"]
    assert len(lines_of(sink / "slow.starts")) == 2
    assert len(lines_of(sink / "slow.ends")) == 1
    assert lines_of(sink / "after.starts") == ["ran"]


# --------------------------------------------------------------------------- retry


@dsl.component
def produce(sink: str, value: str, data: Output[Dataset]) -> str:
    with open(f"{sink}/produce.runs", "a") as f:
        f.write("ran\n")
    with open(data.path, "w") as f:
        f.write(f"data of {value}")
    return value.upper()


@dsl.component
def flaky(sink: str, upper: str, data: Input[Dataset]) -> str:
    """Fails its first attempt (a marker file remembers it) and succeeds later."""
    import os

    with open(f"{sink}/flaky.attempts", "a") as f:
        f.write(f"{upper}\n")
    with open(data.path) as f:
        content = f.read()
    if not os.path.exists(f"{sink}/flaky.failed-once"):
        open(f"{sink}/flaky.failed-once", "w").close()
        raise SystemExit("flaky: failing on purpose the first time")
    return f"{upper}|{content}"


@dsl.component
def record(sink: str, text: str):
    with open(f"{sink}/record.out", "a") as f:
        f.write(f"{text}\n")


@dsl.pipeline
def retrying(sink: str, value: str):
    made = produce(sink=sink, value=value)
    unreliable = flaky(sink=sink, upper=made.outputs["Output"], data=made.outputs["data"])
    record(sink=sink, text=unreliable.output)


def test_retry_reruns_only_what_did_not_succeed(client, rest, sink):
    run_id = submit(client, retrying, {"sink": str(sink), "value": "abc"})
    run = wait_for_final(client, run_id)
    assert run.state == "FAILED", describe_run(run)
    assert 'task "flaky"' in run.error.message, describe_run(run)
    assert task_named(run, "record").state == "SKIPPED", describe_run(run)
    produced_before = task_named(run, "produce")
    data_ids_before = artifact_ids(produced_before, "outputs", "data")

    client.runs.run_service_retry_run(run_id=run_id)
    run = wait_for_final(client, run_id)
    assert_succeeded(run)

    # The succeeded upstream task did not run again; the failed one ran twice, with
    # the upstream outputs (parameter and artifact) of the first attempt.
    assert lines_of(sink / "produce.runs") == ["ran"]
    assert lines_of(sink / "flaky.attempts") == ["ABC", "ABC"]
    assert lines_of(sink / "record.out") == ["ABC|data of abc"]
    produced = task_named(run, "produce")
    assert produced.task_id == produced_before.task_id
    assert artifact_ids(produced, "outputs", "data") == data_ids_before
    assert artifact_ids(task_named(run, "flaky"), "inputs", "data") == data_ids_before
    assert {task.state for task in run.run_details.task_details} == {"SUCCEEDED"}, describe_run(run)


@dsl.component
def fail_with_retries(sink: str):
    """Fails twice, then succeeds: the task's retry policy is enough."""
    with open(f"{sink}/policy.attempts", "a") as f:
        f.write("attempt\n")
    with open(f"{sink}/policy.attempts") as f:
        attempts = len(f.read().splitlines())
    if attempts < 3:
        raise SystemExit(f"attempt {attempts} fails")


@dsl.pipeline
def retried_by_policy(sink: str):
    fail_with_retries(sink=sink).set_retry(num_retries=3, backoff_duration="0s")


def test_task_retry_policy(client, sink):
    run = wait_for_final(client, submit(client, retried_by_policy, {"sink": str(sink)}))
    assert_succeeded(run)
    assert len(lines_of(sink / "policy.attempts")) == 3


def test_every_retry_attempt_is_a_node_of_the_run(client, base_url, sink):
    """Upstream names a pod per attempt in `executor_detail`; kfpd names the attempts
    `<task_id>-attempt-<n>`, and each one's log is served under that name."""
    run = wait_for_final(client, submit(client, retried_by_policy, {"sink": str(sink)}))
    assert_succeeded(run)
    task = task_named(run, "fail-with-retries")
    attempt = [f"{task.task_id}-attempt-{n}" for n in (1, 2, 3)]
    assert task.executor_detail.main_job == attempt[2], describe_run(run)
    assert task.executor_detail.failed_main_jobs == attempt[:2], describe_run(run)
    failed = [change for change in task.state_history if change.state == "FAILED"]
    assert len(failed) == 2, task.state_history
    for n, change in enumerate(failed, start=1):
        assert f"attempt {n} fails" in change.error.message, task.state_history
    whole = task_log(base_url, run.run_id, task.task_id)
    for n, node in enumerate(attempt, start=1):
        text = task_log(base_url, run.run_id, node)
        assert text in whole
        if n < 3:
            assert f"attempt {n} fails" in text, text
    assert requests.get(log_url(base_url, run.run_id, f"{task.task_id}-attempt-4"),
                        timeout=support.HTTP_TIMEOUT).status_code == 404


# --------------------------------------------------------------------------- restart


def test_restart_mid_run_resumes_the_run(kfpd_bin, tmp_path, sink):
    workdir = tmp_path / "server"
    workdir.mkdir()
    first = KfpdServer(kfpd_bin, workdir, executor="local", extra_args=SERVER_ARGS)
    second = KfpdServer(kfpd_bin, workdir, executor="local", extra_args=SERVER_ARGS)
    try:
        client = kfp.Client(host=first.start())
        run_id = submit(client, sleeping, {"sink": str(sink), "seconds": 8})
        pid = read_pid(sink, "slow")
        assert client.get_run(run_id).state == "RUNNING"

        # SIGTERM while the task sleeps: a clean exit, and the task goes with the server.
        stopped_at = time.monotonic()
        code = first.stop()
        assert code == 0, f"kfpd exited with {code} on SIGTERM\n{first.describe()}"
        wait_until(lambda: process_gone(pid), KILL_BOUND, "the interrupted task's process ending")
        assert time.monotonic() - stopped_at < 15

        client = kfp.Client(host=second.start())
        run = wait_for_final(client, run_id)
        # Never left RUNNING: resumed to success, or failed with a reason.
        assert run.state in ("SUCCEEDED", "FAILED"), describe_run(run)
        if run.state == "FAILED":
            assert run.error and run.error.message, describe_run(run)
        assert run.state == "SUCCEEDED", describe_run(run)
        # Resumed, not restarted: the finished upstream task was kept.
        assert lines_of(sink / "before.starts") == ["ran"]
        assert len(lines_of(sink / "slow.starts")) == 2
        assert len(lines_of(sink / "slow.ends")) == 1
        assert lines_of(sink / "after.starts") == ["ran"]
    finally:
        first.stop()
        code = second.stop()
    assert code == 0, f"kfpd exited with {code} on SIGTERM\n{second.describe()}"


def test_server_killed_mid_run_resumes_the_run(kfpd_bin, tmp_path, sink):
    """SIGKILL leaves no chance to clean up: the next server must still end the run."""
    workdir = tmp_path / "server"
    workdir.mkdir()
    first = KfpdServer(kfpd_bin, workdir, executor="local", extra_args=SERVER_ARGS)
    second = KfpdServer(kfpd_bin, workdir, executor="local", extra_args=SERVER_ARGS)
    pid = None
    try:
        client = kfp.Client(host=first.start())
        run_id = submit(client, sleeping, {"sink": str(sink), "seconds": 8})
        pid = read_pid(sink, "slow")
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(timeout=10)

        client = kfp.Client(host=second.start())
        run = wait_for_final(client, run_id)
        assert run.state in ("SUCCEEDED", "FAILED"), describe_run(run)
        if run.state == "FAILED":
            assert run.error and run.error.message, describe_run(run)
        assert lines_of(sink / "before.starts") == ["ran"]
    finally:
        first.stop()
        second.stop()
        # The orphaned task of the killed server is left alone by kfpd; do not leak it.
        if pid is not None and not process_gone(pid):
            os.kill(pid, signal.SIGKILL)


@dsl.component
def ok_step(sink: str, name: str) -> str:
    with open(f"{sink}/{name}.runs", "a") as f:
        f.write("ran\n")
    return name


@dsl.component
def fails_once(sink: str, upstream: str) -> str:
    import os

    with open(f"{sink}/fails_once.runs", "a") as f:
        f.write(f"{upstream}\n")
    if not os.path.exists(f"{sink}/fails_once.marker"):
        open(f"{sink}/fails_once.marker", "w").close()
        raise SystemExit("inner task failing on purpose")
    return f"{upstream}+retried"


@dsl.pipeline
def inner_with_failure(sink: str) -> str:
    first = ok_step(sink=sink, name="inner-first")
    return fails_once(sink=sink, upstream=first.output).output


@dsl.pipeline
def outer_with_failure(sink: str):
    side = ok_step(sink=sink, name="outer-side")
    inner = inner_with_failure(sink=sink)
    record(sink=sink, text=inner.output).after(side)


def test_retry_inside_a_nested_pipeline(client, sink):
    run_id = submit(client, outer_with_failure, {"sink": str(sink)})
    run = wait_for_final(client, run_id)
    assert run.state == "FAILED", describe_run(run)

    client.runs.run_service_retry_run(run_id=run_id)
    run = wait_for_final(client, run_id)
    assert_succeeded(run)
    assert lines_of(sink / "inner-first.runs") == ["ran"]
    assert lines_of(sink / "outer-side.runs") == ["ran"]
    assert lines_of(sink / "fails_once.runs") == ["inner-first", "inner-first"]
    assert lines_of(sink / "record.out") == ["inner-first+retried"]
