"""gRPC with stubs generated from the project's .proto files by grpcio-tools: create,
get and list pipelines, experiments and runs; the resources equal what REST returns;
errors arrive as NOT_FOUND / INVALID_ARGUMENT / ALREADY_EXISTS with REST's messages."""

from __future__ import annotations

import importlib
import importlib.resources
import os
import pathlib
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import types
from typing import Optional

import grpc
import pytest
from google.protobuf import json_format, struct_pb2
from grpc_tools import protoc

import support
from support import eq_filter, load_yaml_spec, pipeline_file, unique

PROTO_ROOT = support.REPO_ROOT / "proto"
PACKAGE = "kubeflow.pipelines.backend.api.v2beta1"
MISSING_ID = "00000000-0000-0000-0000-000000000000"
# Big enough for any pipeline version kfpd stores (the server's own default limit).
MAX_MESSAGE = 64 << 20
RPC_TIMEOUT = support.HTTP_TIMEOUT


# --------------------------------------------------------------------------- stubs


@pytest.fixture(scope="module")
def api():
    """The project's protos compiled with grpc_tools.protoc and imported.

    Returns a namespace with one attribute per proto file (`pipeline_pb2`,
    `pipeline_pb2_grpc`, ...)."""
    out = pathlib.Path(tempfile.mkdtemp(prefix="kfpd-e2e-stubs-"))
    protos = sorted(str(path.relative_to(PROTO_ROOT)) for path in PROTO_ROOT.rglob("*.proto"))
    assert any(p.endswith("run.proto") for p in protos), protos
    # grpcio-tools ships the google/protobuf well-known types the API imports.
    well_known = importlib.resources.files("grpc_tools") / "_proto"
    code = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"-I{well_known}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            *protos,
        ]
    )
    assert code == 0, f"protoc failed on {protos}"
    # Appended, not prepended: google.* keeps resolving to the installed protobuf
    # and googleapis packages; kubeflow.* exists only here.
    sys.path.append(str(out))
    try:
        modules = types.SimpleNamespace()
        for name in ("pipeline", "experiment", "run", "filter"):
            setattr(modules, f"{name}_pb2", importlib.import_module(f"{PACKAGE}.{name}_pb2"))
            setattr(modules, f"{name}_pb2_grpc", importlib.import_module(f"{PACKAGE}.{name}_pb2_grpc"))
        yield modules
    finally:
        sys.path.remove(str(out))
        shutil.rmtree(out, ignore_errors=True)


# --------------------------------------------------------------------------- server


class GrpcKfpd:
    """`kfpd serve` with REST and gRPC both on free loopback ports.

    The suite's shared server fixture leaves gRPC on its default port; this module
    starts its own so that it can learn the gRPC port from stdout."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.workdir = pathlib.Path(tempfile.mkdtemp(prefix="kfpd-e2e-grpc-"))
        self.stderr_path = self.workdir / "stderr.log"
        self.process: Optional[subprocess.Popen] = None
        self.base_url = ""
        self.grpc_target = ""

    def start(self) -> None:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("KFPD_", "DBCONFIG_"))
            and k not in {"MULTIUSER", "POD_NAMESPACE", "DBDRIVERNAME", "dbType"}
        }
        env["KFPD_LOG"] = "warn"
        # Like the other API suites: nothing executes the runs created here.
        env["KFPD_EXECUTOR"] = "none"
        data_dir = self.workdir / "data"
        data_dir.mkdir()
        with open(self.stderr_path, "wb") as stderr:
            self.process = subprocess.Popen(
                [
                    self.binary, "serve",
                    "--http-addr", "127.0.0.1:0",
                    "--grpc-addr", "127.0.0.1:0",
                    "--data-dir", str(data_dir),
                ],
                cwd=self.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                start_new_session=True,
            )
        lines: "queue.Queue[Optional[str]]" = queue.Queue()

        def pump() -> None:
            assert self.process is not None and self.process.stdout is not None
            for line in self.process.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, name="kfpd-grpc-stdout", daemon=True).start()
        deadline = time.monotonic() + support.STARTUP_TIMEOUT
        prefix = "kfpd listening on "
        while not (self.base_url and self.grpc_target):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(f"kfpd did not print both addresses\n{self.stderr_text()}")
            try:
                line = lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise RuntimeError(f"kfpd exited before listening\n{self.stderr_text()}")
            if line.startswith(prefix + "http://"):
                self.base_url = line[len(prefix):].strip().rstrip("/")
            elif line.startswith(prefix + "grpc://"):
                self.grpc_target = line[len(prefix + "grpc://"):].strip()

    def stderr_text(self) -> str:
        try:
            return self.stderr_path.read_bytes()[-8000:].decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self) -> Optional[int]:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        shutil.rmtree(self.workdir, ignore_errors=True)
        return self.process.returncode


@pytest.fixture(scope="module")
def kfpd(kfpd_bin):
    server = GrpcKfpd(kfpd_bin)
    try:
        server.start()
        yield server
    finally:
        code = server.stop()
    # SIGTERM must drain both servers and exit cleanly, open channels or not.
    assert code == 0, f"kfpd exited with {code} on SIGTERM\n{server.stderr_text()}"


@pytest.fixture(scope="module")
def channel(kfpd):
    options = [
        ("grpc.max_receive_message_length", MAX_MESSAGE),
        ("grpc.max_send_message_length", MAX_MESSAGE),
    ]
    with grpc.insecure_channel(kfpd.grpc_target, options=options) as ch:
        grpc.channel_ready_future(ch).result(timeout=RPC_TIMEOUT)
        yield ch


@pytest.fixture(scope="module")
def http(kfpd) -> support.Rest:
    return support.Rest(kfpd.base_url)


@pytest.fixture(scope="module")
def pipelines(api, channel):
    return api.pipeline_pb2_grpc.PipelineServiceStub(channel)


@pytest.fixture(scope="module")
def experiments(api, channel):
    return api.experiment_pb2_grpc.ExperimentServiceStub(channel)


@pytest.fixture(scope="module")
def runs(api, channel):
    return api.run_pb2_grpc.RunServiceStub(channel)


def as_json(message) -> dict:
    """A message in protobuf JSON with proto field names, as kfpd's REST writes it."""
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def rest_json(http: support.Rest, path: str) -> dict:
    response = http.get(path)
    assert response.status_code == 200, response.text
    return response.json()


# --------------------------------------------------------------------------- CRUD


def test_pipelines_create_get_list(api, pipelines, http):
    pb = api.pipeline_pb2
    name = unique("grpc-py-pipeline")
    created = pipelines.CreatePipeline(
        pb.CreatePipelineRequest(
            pipeline=pb.Pipeline(name=name, description="from Python", tags={"team": "ml"})
        ),
        timeout=RPC_TIMEOUT,
    )
    assert created.pipeline_id
    assert created.display_name == name
    assert dict(created.tags) == {"team": "ml"}

    fetched = pipelines.GetPipeline(pb.GetPipelineRequest(pipeline_id=created.pipeline_id), timeout=RPC_TIMEOUT)
    assert fetched == created
    by_name = pipelines.GetPipelineByName(pb.GetPipelineByNameRequest(name=name), timeout=RPC_TIMEOUT)
    assert by_name == created
    listed = pipelines.ListPipelines(pb.ListPipelinesRequest(filter=eq_filter("name", name)), timeout=RPC_TIMEOUT)
    assert listed.total_size == 1
    assert list(listed.pipelines) == [created]

    # The same resource over REST, field for field.
    assert as_json(fetched) == rest_json(http, f"pipelines/{created.pipeline_id}")

    # Tags can only be cleared with the x-clear-tags metadata.
    update = pb.UpdatePipelineRequest(pipeline=pb.Pipeline(pipeline_id=created.pipeline_id))
    kept = pipelines.UpdatePipeline(update, timeout=RPC_TIMEOUT)
    assert dict(kept.tags) == {"team": "ml"}
    cleared = pipelines.UpdatePipeline(update, metadata=[("x-clear-tags", "true")], timeout=RPC_TIMEOUT)
    assert dict(cleared.tags) == {}


def test_pipeline_version_read_over_grpc_after_rest_upload(api, pipelines, http):
    """A version uploaded over REST reads back over gRPC with its whole spec."""
    path = pipeline_file("hello.yaml")
    with open(path, "rb") as f:
        response = http.post(
            f"pipelines/upload?name={unique('grpc-py-upload')}",
            files={"uploadfile": (path.name, f, "application/octet-stream")},
        )
    assert response.status_code == 200, response.text
    pipeline_id = response.json()["pipeline_id"]
    pb = api.pipeline_pb2
    versions = pipelines.ListPipelineVersions(
        pb.ListPipelineVersionsRequest(pipeline_id=pipeline_id), timeout=RPC_TIMEOUT
    )
    assert versions.total_size == 1
    version = pipelines.GetPipelineVersion(
        pb.GetPipelineVersionRequest(
            pipeline_id=pipeline_id, pipeline_version_id=versions.pipeline_versions[0].pipeline_version_id
        ),
        timeout=RPC_TIMEOUT,
    )
    assert json_format.MessageToDict(version.pipeline_spec) == load_yaml_spec(path)


def test_experiments_create_get_list(api, experiments, http):
    pb = api.experiment_pb2
    name = unique("grpc-py-experiment")
    created = experiments.CreateExperiment(
        pb.CreateExperimentRequest(experiment=pb.Experiment(display_name=name, description="from Python")),
        timeout=RPC_TIMEOUT,
    )
    assert created.experiment_id
    assert created.storage_state == pb.Experiment.StorageState.AVAILABLE

    fetched = experiments.GetExperiment(pb.GetExperimentRequest(experiment_id=created.experiment_id), timeout=RPC_TIMEOUT)
    assert fetched == created
    listed = experiments.ListExperiments(
        pb.ListExperimentsRequest(filter=eq_filter("display_name", name)), timeout=RPC_TIMEOUT
    )
    assert list(listed.experiments) == [created]
    assert as_json(fetched) == rest_json(http, f"experiments/{created.experiment_id}")


def test_runs_create_get_list(api, experiments, runs, http):
    experiment = experiments.CreateExperiment(
        api.experiment_pb2.CreateExperimentRequest(
            experiment=api.experiment_pb2.Experiment(display_name=unique("grpc-py-runs"))
        ),
        timeout=RPC_TIMEOUT,
    )
    pb = api.run_pb2
    spec_dict = load_yaml_spec(pipeline_file("hello.yaml"))
    spec = struct_pb2.Struct()
    json_format.ParseDict(spec_dict, spec)
    created = runs.CreateRun(
        pb.CreateRunRequest(
            run=pb.Run(
                experiment_id=experiment.experiment_id,
                display_name=unique("grpc-py-run"),
                pipeline_spec=spec,
            )
        ),
        timeout=RPC_TIMEOUT,
    )
    assert created.run_id
    assert created.experiment_id == experiment.experiment_id
    assert created.state == pb.RuntimeState.PENDING
    assert created.WhichOneof("pipeline_source") == "pipeline_spec"
    assert json_format.MessageToDict(created.pipeline_spec) == spec_dict

    fetched = runs.GetRun(pb.GetRunRequest(run_id=created.run_id), timeout=RPC_TIMEOUT)
    assert fetched == created
    listed = runs.ListRuns(pb.ListRunsRequest(experiment_id=experiment.experiment_id), timeout=RPC_TIMEOUT)
    assert listed.total_size == 1
    assert [run.run_id for run in listed.runs] == [created.run_id]
    assert as_json(fetched) == rest_json(http, f"runs/{created.run_id}")


# --------------------------------------------------------------------------- errors


def rest_message(response) -> str:
    body = response.json()
    return body["message"]


def status_details(error: grpc.RpcError):
    """The google.rpc.Status in the call's grpc-status-details-bin trailer."""
    from google.rpc import status_pb2

    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status()
            status.ParseFromString(value)
            return status
    raise AssertionError(f"no status details in {error.trailing_metadata()!r}")


def expect_rpc_error(call, code: grpc.StatusCode) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    error = caught.value
    assert error.code() == code, f"expected {code}, got {error.code()}: {error.details()}"
    return error


def test_errors_have_upstream_codes_and_rest_messages(api, experiments, pipelines, runs, http):
    epb = api.experiment_pb2

    # NOT_FOUND
    error = expect_rpc_error(
        lambda: experiments.GetExperiment(epb.GetExperimentRequest(experiment_id=MISSING_ID), timeout=RPC_TIMEOUT),
        grpc.StatusCode.NOT_FOUND,
    )
    response = http.get(f"experiments/{MISSING_ID}")
    assert response.status_code == 404
    assert error.details() == rest_message(response)
    details = status_details(error)
    assert details.code == grpc.StatusCode.NOT_FOUND.value[0]
    assert details.message == error.details()

    error = expect_rpc_error(
        lambda: runs.GetRun(api.run_pb2.GetRunRequest(run_id=MISSING_ID), timeout=RPC_TIMEOUT),
        grpc.StatusCode.NOT_FOUND,
    )
    assert error.details() == rest_message(http.get(f"runs/{MISSING_ID}"))

    # INVALID_ARGUMENT
    error = expect_rpc_error(
        lambda: experiments.CreateExperiment(
            epb.CreateExperimentRequest(experiment=epb.Experiment(description="no name")), timeout=RPC_TIMEOUT
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    response = http.post("experiments", json={"description": "no name"})
    assert response.status_code == 400
    assert error.details() == rest_message(response)

    error = expect_rpc_error(
        lambda: pipelines.ListPipelines(api.pipeline_pb2.ListPipelinesRequest(filter="not json"), timeout=RPC_TIMEOUT),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    response = http.get("pipelines", params={"filter": "not json"})
    assert response.status_code == 400
    assert error.details() == rest_message(response)

    # ALREADY_EXISTS
    name = unique("grpc-py-taken")
    request = epb.CreateExperimentRequest(experiment=epb.Experiment(display_name=name))
    experiments.CreateExperiment(request, timeout=RPC_TIMEOUT)
    error = expect_rpc_error(
        lambda: experiments.CreateExperiment(request, timeout=RPC_TIMEOUT),
        grpc.StatusCode.ALREADY_EXISTS,
    )
    response = http.post("experiments", json={"display_name": name})
    assert response.status_code == 409
    assert error.details() == rest_message(response)
    assert status_details(error).code == grpc.StatusCode.ALREADY_EXISTS.value[0]
