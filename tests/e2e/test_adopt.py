"""Adopting an upstream KFP database, seen through the kfp SDK.

Upstream's tables (tests/adopt/upstream-mysql.sql) and rows shaped as upstream
writes them (tests/adopt/rows.sql) are loaded with the `mysql` client into a
database of this module's own on the MariaDB server; `kfpd serve --adopt-from`
brings them over before it serves, and the SDK lists and gets what the upstream
rows hold.
"""

from __future__ import annotations

import datetime
import os
import re
import shutil
import socket
import subprocess
import urllib.parse
import uuid

import kfp
import pytest
import yaml

import support

ADOPT_DIR = support.REPO_ROOT / "tests" / "adopt"
PIPELINES_DIR = support.REPO_ROOT / "tests" / "pipelines"


def _server() -> tuple[str, str, str]:
    url = urllib.parse.urlparse(os.environ.get("KFPD_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306"))
    return url.hostname or "127.0.0.1", str(url.port or 3306), url.username or "root"


def _mysql(sql: str, database: str | None = None) -> str:
    host, port, user = _server()
    command = ["mysql", "-h", host, "-P", port, "-u", user, "-B", "-N"]
    if database:
        command.append(database)
    done = subprocess.run(command, input=sql, text=True, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _rows_sql(base: int) -> str:
    def spec(name: str) -> str:
        return (PIPELINES_DIR / name).read_text().replace("'", "''")

    text = (ADOPT_DIR / "rows.sql").read_text()
    text = text.replace("${SPEC_HELLO}", spec("hello.yaml")).replace("${SPEC_PARAMETERS}", spec("parameters.yaml"))
    return re.sub(r"\$\{BASE([-+]\d+)?\}", lambda m: str(base + int(m.group(1) or 0)), text)


@pytest.fixture(scope="module")
def upstream():
    host, port, _ = _server()
    reachable = shutil.which("mysql") is not None
    if reachable:
        try:
            socket.create_connection((host, int(port)), timeout=3).close()
        except OSError:
            reachable = False
    if not reachable:
        if support.under_ci():
            pytest.fail(f"MariaDB at {host}:{port} and the mysql client are required under CI=true")
        pytest.skip(f"no MariaDB at {host}:{port} (or no mysql client); set KFPD_TEST_MYSQL_URL")
    database = f"kfp_upstream_{uuid.uuid4().hex[:10]}"
    now = int(datetime.datetime.now(datetime.timezone.utc).timestamp())
    base = now - now % 3600 - 3600
    _mysql(f"CREATE DATABASE {database}")
    try:
        _mysql((ADOPT_DIR / "upstream-mysql.sql").read_text(), database)
        _mysql(
            "SET SESSION sql_mode = CONCAT(@@sql_mode, ',ANSI_QUOTES,NO_BACKSLASH_ESCAPES');\n" + _rows_sql(base),
            database,
        )
        yield f"mysql://{_server()[2]}@{host}:{port}/{database}", database
    finally:
        _mysql(f"DROP DATABASE IF EXISTS {database}")


@pytest.fixture(scope="module")
def client(kfpd_bin, upstream):
    url, _ = upstream
    with support.running_server(kfpd_bin, extra_args=["--adopt-from", url, "--scheduler", "off"]) as server:
        yield kfp.Client(host=server.base_url)


def _select(database: str, sql: str) -> list[list[str]]:
    return [line.split("\t") for line in _mysql(sql, database).splitlines() if line]


def _time(seconds: str) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(int(seconds), tz=datetime.timezone.utc)


def test_experiments_are_upstreams(client, upstream):
    _, database = upstream
    rows = _select(database, "SELECT UUID, Name, CreatedAtInSec, StorageState FROM experiments")
    listed = client.list_experiments(page_size=100).experiments
    assert {e.experiment_id for e in listed} == {row[0] for row in rows}
    for experiment_id, name, created, storage in rows:
        got = client.get_experiment(experiment_id=experiment_id)
        assert got.display_name == name
        assert got.created_at == _time(created)
        assert got.storage_state == ("ARCHIVED" if "ARCHIVED" in storage else "AVAILABLE")


def test_runs_are_upstreams(client, upstream):
    _, database = upstream
    rows = _select(
        database,
        "SELECT UUID, DisplayName, CreatedAtInSec, FinishedAtInSec, IFNULL(State, ''), Conditions, StorageState "
        "FROM run_details",
    )
    # The two rows kfpd cannot keep: an id over 64 characters, parameters that are not JSON.
    rows = [row for row in rows if len(row[0]) <= 64 and row[0] != "2d9e7c40-0000-4000-8000-000000000006"]
    listed = client.list_runs(page_size=100).runs
    assert {run.run_id for run in listed} == {row[0] for row in rows}
    legacy = {"Succeeded": "SUCCEEDED", "Error": "FAILED", "Failed": "FAILED"}
    for run_id, name, created, finished, state, condition, storage in rows:
        got = client.get_run(run_id=run_id)
        assert got.display_name == name
        assert got.created_at == _time(created)
        assert got.finished_at == _time(finished)
        assert got.state == (state or legacy[condition])
        assert got.storage_state == ("ARCHIVED" if "ARCHIVED" in storage else "AVAILABLE")

    v2 = client.get_run(run_id="2d9e7c40-0000-4000-8000-000000000001")
    assert v2.runtime_config.parameters == {"message": "hi", "n": 3, "flags": {"fast": True}}
    assert v2.runtime_config.pipeline_root == "minio://mlpipeline/v2/artifacts"
    assert v2.pipeline_version_reference.pipeline_version_id == "6a3c9d20-0000-4000-8000-000000000001"
    tasks = {task.task_id: task for task in v2.run_details.task_details}
    echo = tasks["3e8f6a50-0000-4000-8000-000000000002"]
    assert echo.display_name == "echo"
    assert echo.execution_id == "21"
    assert echo.outputs["output"].artifact_ids == ["7", "8"]
    assert [child.pod_name for child in tasks["3e8f6a50-0000-4000-8000-000000000001"].child_tasks] == [
        "hello-world-abc12-1111"
    ]

    # The v1 run: its spec is its Argo workflow, its experiment from resource_references.
    v1 = client.get_run(run_id="2d9e7c40-0000-4000-8000-000000000002")
    assert v1.experiment_id == "8c1d0a6e-0000-4000-8000-000000000003"
    assert v1.pipeline_spec["kind"] == "Workflow"
    assert v1.runtime_config.parameters == {"param1": "from v1"}


def test_pipelines_and_recurring_runs_are_upstreams(client, upstream):
    _, database = upstream
    pipelines = client.list_pipelines(page_size=100).pipelines
    assert [p.pipeline_id for p in pipelines] == ["5b7e2f10-0000-4000-8000-000000000001"]
    versions = client.list_pipeline_versions(pipeline_id=pipelines[0].pipeline_id).pipeline_versions
    spec = yaml.safe_load((PIPELINES_DIR / "hello.yaml").read_text())
    assert {v.name for v in versions} == {"hello-world-v1", "hello-world-v2"}
    for version in versions:
        assert version.pipeline_spec == spec

    rows = _select(database, "SELECT UUID, DisplayName, IFNULL(Schedule, ''), IFNULL(IntervalSecond, ''), Enabled FROM jobs")
    listed = client.list_recurring_runs(page_size=100).recurring_runs
    assert {r.recurring_run_id for r in listed} == {row[0] for row in rows}
    for job_id, name, cron, interval, enabled in rows:
        got = client.get_recurring_run(recurring_run_id=job_id)
        assert got.display_name == name
        assert got.status == ("ENABLED" if enabled == "1" else "DISABLED")
        if cron:
            assert got.trigger.cron_schedule.cron == cron
        else:
            assert str(got.trigger.periodic_schedule.interval_second) == interval

    # Upstream's default experiment is kfpd's.
    created = client.create_run_from_pipeline_package(str(PIPELINES_DIR / "hello.yaml"), arguments={})
    assert client.get_run(run_id=created.run_id).experiment_id == "8c1d0a6e-0000-4000-8000-000000000001"
