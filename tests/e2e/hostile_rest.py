"""Schemathesis against a running kfpd's `/openapi.json`: shared by the e2e test
(a short run) and `bench/hostile_rest.sh` (a long one).

The server is seeded first (an experiment, a pipeline with a version, a run and a
recurring run) and schemathesis draws path and query ids from those about half the
time, so the calls reach real rows and not only 404s. What counts as a failure:

- any 5xx, found by schemathesis and, independently, in kfpd's own request metrics;
- a response that breaks the document: a status, content type, header or body the
  document does not describe (schemathesis' conformance checks);
- a panic in kfpd's log.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import time
from typing import Optional

import requests

import support

# Streams stay open while what they show is live (runs stay PENDING with
# `--executor none`); the document says so and schemathesis cannot wait for them.
STREAMING = ("run_events", "watch_runs")

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    ]
)


def schemathesis_bin() -> Optional[str]:
    venv = os.environ.get("KFPD_SCHEMATHESIS_VENV", os.path.expanduser("~/.cache/kfpd-schemathesis-venv"))
    binary = pathlib.Path(venv) / "bin" / "schemathesis"
    return str(binary) if binary.exists() else None


class _Checked(support.Rest):
    """Seeding calls must succeed; a refusal says which and why."""

    def request(self, method: str, path: str, **kwargs):
        response = super().request(method, path, **kwargs)
        assert response.status_code == 200, f"seeding: {method} {path}: {response.status_code} {response.text}"
        return response


def seed(base_url: str) -> dict[str, list[str]]:
    """Rows for schemathesis to find; returns ids by parameter name."""
    rest = _Checked(base_url)
    experiment = rest.post("/experiments", json={"display_name": support.unique("hostile")}).json()
    with open(support.pipeline_file("hello.yaml"), "rb") as handle:
        pipeline = requests.post(
            f"{base_url}/apis/v2beta1/pipelines/upload",
            params={"name": support.unique("hostile")},
            files={"uploadfile": ("hello.yaml", handle)},
            timeout=support.HTTP_TIMEOUT,
        ).json()
    versions = rest.get(f"/pipelines/{pipeline['pipeline_id']}/versions").json()
    version_id = versions["pipeline_versions"][0]["pipeline_version_id"]
    reference = {"pipeline_id": pipeline["pipeline_id"], "pipeline_version_id": version_id}
    run = rest.post(
        "/runs",
        json={
            "display_name": "hostile",
            "experiment_id": experiment["experiment_id"],
            "pipeline_version_reference": reference,
        },
    ).json()
    recurring = rest.post(
        "/recurringruns",
        json={
            "display_name": "hostile",
            "experiment_id": experiment["experiment_id"],
            "pipeline_version_reference": reference,
            "mode": "DISABLE",
            "max_concurrency": "1",
            "trigger": {"periodic_schedule": {"interval_second": "3600"}},
        },
    ).json()
    ids = {
        "experiment_id": [experiment["experiment_id"]],
        "pipeline_id": [pipeline["pipeline_id"]],
        "pipeline_version_id": [version_id],
        "run_id": [run["run_id"]],
        "recurring_run_id": [recurring["recurring_run_id"]],
        "name": [pipeline["name"]],
    }
    for key, values in ids.items():
        assert all(values), f"seeding failed: no {key} in {values}"
    return ids


def write_config(directory: pathlib.Path, ids: dict[str, list[str]]) -> pathlib.Path:
    """A schemathesis.toml drawing ids from the seeded rows half the time.

    Unexpected methods are not sent: on a known path kfpd answers them 501
    "Method Not Allowed" as upstream's gateway does (docs/compatibility.md), which
    schemathesis would count as server errors; `crates/kfpd/tests/openapi.rs`
    checks those answers instead.
    """
    lines = ["[phases.coverage]", "unexpected-methods = []", ""]
    lines.append("[dictionaries]")
    for key, values in ids.items():
        lines.append(f"{key} = {{ values = {json.dumps(values)} }}")
    lines.append("")
    lines.append("[parameters]")
    for key in ids:
        lines.append(f'"path.{key}" = {{ dictionary = "{key}", probability = 0.5 }}')
    for key in ("experiment_id", "run_id", "pipeline_id"):
        lines.append(f'"query.{key}" = {{ dictionary = "{key}", probability = 0.5 }}')
    path = directory / "schemathesis.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def server_errors(base_url: str) -> dict[str, float]:
    """5xx answers kfpd counted, by route and status."""
    text = requests.get(f"{base_url}/metrics", timeout=support.HTTP_TIMEOUT).text
    errors = {}
    pattern = re.compile(r'^kfpd_http_request_duration_seconds_count\{(.*)\} (\S+)$')
    for line in text.splitlines():
        match = pattern.match(line)
        if not match:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
        if labels.get("status", "").startswith("5") and float(match.group(2)) > 0:
            errors[f'{labels.get("method")} {labels.get("route")} {labels.get("status")}'] = float(match.group(2))
    return errors


def run(
    base_url: str,
    directory: pathlib.Path,
    max_examples: int,
    max_seconds: int,
    seed_value: int = 1,
) -> dict:
    """Runs schemathesis; returns its exit code, output, counts and time."""
    binary = schemathesis_bin()
    assert binary, "schemathesis is not installed; tests/e2e/run.sh installs it"
    ids = seed(base_url)
    config = write_config(directory, ids)
    deprecated = ["--exclude-deprecated"]
    excluded = [arg for name in STREAMING for arg in ("--exclude-operation-id", name)]
    command = [
        binary,
        "--config-file",
        str(config),
        "run",
        f"{base_url}/openapi.json",
        "--checks",
        CHECKS,
        "--max-examples",
        str(max_examples),
        "--max-time",
        str(max_seconds),
        "--workers",
        "1",
        "--request-timeout",
        "20",
        "--seed",
        str(seed_value),
        "--generation-database",
        "none",
        "--no-color",
        "--output-truncate",
        "false",
        *deprecated,
        *excluded,
    ]
    started = time.monotonic()
    process = subprocess.run(
        command,
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=max_seconds + 300,
    )
    elapsed = time.monotonic() - started
    output = process.stdout + process.stderr
    generated = re.search(r"(\d+) generated", output)
    tested = re.search(r"Tested: (\d+)", output)
    return {
        "code": process.returncode,
        "output": output,
        "cases": int(generated.group(1)) if generated else 0,
        "operations": int(tested.group(1)) if tested else 0,
        "seconds": elapsed,
        "server_errors": server_errors(base_url),
    }
