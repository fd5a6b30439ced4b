"""Helpers for the suites that execute runs (test_execution*.py): a kfpd with the
local executor, waiting for runs, reading what tasks left behind."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import pathlib
import time
from typing import Any, Callable, Iterator

import requests

import support

# A free gRPC port per server, so execution suites never fight over 8887.
SERVER_ARGS = ("--grpc-addr", "127.0.0.1:0")
FINAL_STATES = {"SUCCEEDED", "FAILED", "CANCELED", "SKIPPED"}
# Seconds a run of a few Python components may take (the first one of a session may
# create the python:3.11 environment and pip-install kfp into it).
RUN_TIMEOUT = 240


@contextlib.contextmanager
def executing_server(binary: str, request: Any) -> Iterator[support.KfpdServer]:
    """A kfpd whose local executor runs the runs, for one test module."""
    with support.running_server(binary, executor="local", extra_args=SERVER_ARGS) as srv:
        request.module._kfpd_server = srv
        yield srv
        request.module._kfpd_server = None
        code = srv.stop()
        assert code == 0, f"kfpd exited with {code} on SIGTERM\n{srv.describe()}"


def submit(client: Any, pipeline_func: Callable, arguments: dict | None = None) -> str:
    """Compiles `pipeline_func` with the SDK, creates a run of it, returns the run id.

    Caching is off so every run really executes its tasks."""
    result = client.create_run_from_pipeline_func(
        pipeline_func,
        arguments=arguments or {},
        run_name=support.unique("exec"),
        enable_caching=False,
    )
    return result.run_id


def describe_run(run: Any) -> str:
    """State, error and every task's state and error, for assertion messages."""
    lines = [f"run {run.run_id}: {run.state} error={getattr(run.error, 'message', None)!r}"]
    details = run.run_details.task_details if run.run_details else None
    for task in details or []:
        error = task.error.message if task.error else ""
        lines.append(f"  {task.display_name}: {task.state} {error}")
    return "\n".join(lines)


def wait_for_final(client: Any, run_id: str, timeout: float = RUN_TIMEOUT) -> Any:
    """Polls GetRun until the run is in a final state (CANCELED included, which the
    SDK's wait_for_run_completion does not treat as final)."""
    deadline = time.monotonic() + timeout
    while True:
        run = client.get_run(run_id)
        if run.state in FINAL_STATES:
            return run
        if time.monotonic() > deadline:
            raise AssertionError(f"run still {run.state} after {timeout}s\n{describe_run(run)}")
        time.sleep(0.25)


def run_to_end(client: Any, pipeline_func: Callable, arguments: dict | None = None,
               timeout: float = RUN_TIMEOUT) -> Any:
    return wait_for_final(client, submit(client, pipeline_func, arguments), timeout)


def assert_succeeded(run: Any) -> None:
    assert run.state == "SUCCEEDED", describe_run(run)


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout}s")
        time.sleep(interval)


def tasks(run: Any) -> list:
    return list(run.run_details.task_details or []) if run.run_details else []


def task_named(run: Any, display_name: str) -> Any:
    """The one task of the run with this display name."""
    found = [task for task in tasks(run) if task.display_name == display_name]
    assert len(found) == 1, f"{len(found)} tasks named {display_name!r}\n{describe_run(run)}"
    return found[0]


def artifact_ids(task: Any, side: str, key: str) -> list[str]:
    """Artifact ids (as strings) of a task's input or output `key`."""
    lists = getattr(task, side) or {}
    entry = lists.get(key)
    if entry is None:
        return []
    ids = entry["artifact_ids"] if isinstance(entry, dict) else entry.artifact_ids
    return [str(i) for i in ids or []]


def list_artifacts(rest: support.Rest, run_id: str) -> list[dict]:
    response = rest.get("artifacts", params={"run_id": run_id})
    assert response.status_code == 200, response.text
    return response.json().get("artifacts", [])


def get_artifact(rest: support.Rest, artifact_id: str) -> dict:
    response = rest.get(f"artifacts/{artifact_id}")
    assert response.status_code == 200, response.text
    return response.json()


def read_artifact(rest: support.Rest, run_id: str, task_id: str, name: str) -> bytes:
    """Content of output artifact `name` of a task, through the `:read` endpoint."""
    response = rest.get(f"runs/{run_id}/nodes/{task_id}/artifacts/{name}:read")
    assert response.status_code == 200, response.text
    return base64.b64decode(response.json()["data"])


def log_url(base_url: str, run_id: str, task_id: str) -> str:
    return f"{base_url}/apis/v1alpha1/runs/{run_id}/nodes/{task_id}/log"


def task_log(base_url: str, run_id: str, task_id: str) -> str:
    response = requests.get(log_url(base_url, run_id, task_id), timeout=support.HTTP_TIMEOUT)
    assert response.status_code == 200, response.text
    return response.text


def lines_of(path: pathlib.Path) -> list[str]:
    """The lines of a sink file, none if the file does not exist."""
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []


def read_json(path: pathlib.Path) -> Any:
    return json.loads(path.read_text())


def process_gone(pid: int) -> bool:
    """Whether `pid` no longer runs. A zombie counts as gone: an orphan is reaped by
    init, which in some containers never happens."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    state = stat[stat.rfind(")") + 1:].split()[0]
    return state in ("Z", "X")
