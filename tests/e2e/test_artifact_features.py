"""Artifact features of kfp 2.15 executed by kfpd's local engine, compiled here at
test time: embedded artifacts (`dsl.EmbeddedInput`, a file and a directory packed
into the component) and an output written at a path of the component's choosing
(`Artifact.set_path`), read back through the artifact API."""

import pathlib

import pytest
from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from execution_support import (
    assert_succeeded,
    describe_run,
    executing_server,
    lines_of,
    read_artifact,
    run_to_end,
    task_named,
)
from support import unique

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def server(request, kfpd_bin):
    with executing_server(kfpd_bin, request) as srv:
        yield srv


def test_embedded_file_and_directory_reach_the_component(client, tmp_path):
    token = unique("embedded")
    asset_file = tmp_path / "asset.txt"
    asset_file.write_text(f"file {token}")
    asset_dir = tmp_path / "assets"
    (asset_dir / "nested").mkdir(parents=True)
    (asset_dir / "nested" / "inner.txt").write_text(f"dir {token}")
    sink = tmp_path / "sink.txt"

    # Decorated here: the SDK packs the asset when the component is defined.
    @dsl.component(embedded_artifact_path=str(asset_file))
    def read_embedded_file(asset: dsl.EmbeddedInput[Dataset], sink: str):
        with open(asset.path) as f:
            text = f.read()
        with open(sink, "a") as f:
            f.write(text + "\n")

    @dsl.component(embedded_artifact_path=str(asset_dir))
    def read_embedded_dir(asset: dsl.EmbeddedInput[Dataset], sink: str):
        import os
        with open(os.path.join(asset.path, "nested", "inner.txt")) as f:
            text = f.read()
        with open(sink, "a") as f:
            f.write(text + "\n")

    @dsl.pipeline(name="embedded-artifacts")
    def embedded(sink: str):
        read_embedded_file(sink=sink)
        read_embedded_dir(sink=sink)

    # The asset files are gone before the run: only the compiled component has them.
    asset_file.unlink()
    (asset_dir / "nested" / "inner.txt").unlink()
    run = run_to_end(client, embedded, {"sink": str(sink)})
    assert_succeeded(run)
    assert sorted(lines_of(sink)) == [f"dir {token}", f"file {token}"]


@dsl.component
def write_at_own_path(text: str, data: Output[Dataset]):
    import os
    import tempfile
    chosen = os.path.join(tempfile.mkdtemp(), "chosen.txt")
    data.set_path(chosen)
    with open(data.path, "w") as f:
        f.write(text)
    if data.path != chosen:
        raise ValueError(f"path is {data.path}, not {chosen}")


@dsl.component
def check_text(data: Input[Dataset], expected: str):
    with open(data.path) as f:
        text = f.read()
    if text != expected:
        raise ValueError(f"{text!r} != {expected!r}")


@dsl.pipeline(name="custom-artifact-path")
def custom_path(text: str):
    written = write_at_own_path(text=text)
    check_text(data=written.outputs["data"], expected=text)


def test_an_output_written_at_a_path_the_component_chose_is_uploaded(client, rest):
    text = unique("custom-path")
    run = run_to_end(client, custom_path, {"text": text})
    assert run.state == "SUCCEEDED", describe_run(run)
    producer = task_named(run, "write-at-own-path")
    assert read_artifact(rest, run.run_id, producer.task_id, "data") == text.encode()
