"""Runs executed by kfpd's local engine, driven with the SDK: parameters of every
type, outputs, artifacts, container components and their placeholders, nested
pipelines, importers, logs and `kfpd run`.

The v2beta1 API does not expose output parameter values, so values are checked
inside the pipelines (`check_*` components fail the run on a mismatch), through a
sink directory the tasks write to (the tasks are local processes), and through the
artifact API and its `:read` endpoint. Components use the SDK's defaults, so every
Python task starts with its own `pip install kfp==2.15.0`."""

import json
import os
import pathlib
import subprocess
from typing import NamedTuple, Optional

import kfp_server_api
import pytest
from kfp import compiler, dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from execution_support import (
    artifact_ids,
    assert_succeeded,
    describe_run,
    executing_server,
    get_artifact,
    lines_of,
    list_artifacts,
    read_artifact,
    read_json,
    run_to_end,
    task_log,
    task_named,
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
    """A directory the tasks of one test write what they saw into."""
    path = tmp_path / "sink"
    path.mkdir()
    return path


# --------------------------------------------------------------------------- parameters

EXPECTED_TYPES = {"n": "int", "x": "float", "s": "str", "b": "bool", "items": "list", "mapping": "dict"}


@dsl.component
def check_values(n: int, x: float, s: str, b: bool, items: list, mapping: dict,
                 expected: str, sink: str, label: str):
    """Fails the task unless every input has the expected Python type and value."""
    import json

    got = {"n": n, "x": x, "s": s, "b": b, "items": items, "mapping": mapping}
    types = {key: type(value).__name__ for key, value in got.items()}
    with open(f"{sink}/{label}.json", "w") as f:
        json.dump({"values": got, "types": types}, f)
    want_types = {"n": "int", "x": "float", "s": "str", "b": "bool", "items": "list", "mapping": "dict"}
    if types["x"] == "int":
        # Upstream's executor input carries a whole float as `3` (protobuf JSON), and
        # the SDK hands it over as it was parsed.
        want_types["x"] = "int"
    if types != want_types:
        raise SystemExit(f"check {label}: types {types} != {want_types}")
    want = json.loads(expected)
    if got != want:
        raise SystemExit(f"check {label}: values {got} != {want}")
    print(f"check {label}: ok")


class Typed(NamedTuple):
    n: int
    x: float
    s: str
    b: bool
    items: list
    mapping: dict


@dsl.component
def transform(n: int, x: float, s: str, b: bool, items: list, mapping: dict) -> NamedTuple(
    "Typed", [("n", int), ("x", float), ("s", str), ("b", bool), ("items", list), ("mapping", dict)]
):
    from collections import namedtuple

    typed = namedtuple("Typed", ["n", "x", "s", "b", "items", "mapping"])
    return typed(n * 10, x / 4, s.upper(), not b, items + [{"nested": [1, 2]}], {**mapping, "added": None})


@dsl.container_component
def echo_parameters(n: int, x: float, s: str, b: bool, items: list, mapping: dict, sink: str):
    """Writes each `{{$.inputs.parameters[...]}}` as the engine rendered it into a file."""
    return dsl.ContainerSpec(
        image="alpine",
        command=[
            "sh",
            "-c",
            'd="$0"; printf %s "$1" > "$d/n"; printf %s "$2" > "$d/x"; printf %s "$3" > "$d/s"; '
            'printf %s "$4" > "$d/b"; printf %s "$5" > "$d/items"; printf %s "$6" > "$d/mapping"',
        ],
        args=[sink, n, x, s, b, items, mapping],
    )


@dsl.pipeline
def typed_parameters(n: int, x: float, s: str, b: bool, items: list, mapping: dict,
                     expected: str, expected_after: str, sink: str):
    check_values(n=n, x=x, s=s, b=b, items=items, mapping=mapping, expected=expected,
                 sink=sink, label="inputs").set_display_name("check-inputs")
    changed = transform(n=n, x=x, s=s, b=b, items=items, mapping=mapping)
    check_values(
        n=changed.outputs["n"], x=changed.outputs["x"], s=changed.outputs["s"], b=changed.outputs["b"],
        items=changed.outputs["items"], mapping=changed.outputs["mapping"],
        expected=expected_after, sink=sink, label="outputs",
    ).set_display_name("check-outputs")
    echo_parameters(n=n, x=x, s=s, b=b, items=items, mapping=mapping, sink=sink)


@dsl.pipeline
def typed_defaults(sink: str, expected: str, n: int = 7, x: float = 0.25, s: str = "déjà vu",
                   b: bool = False, items: list = [3, "three", 3.5], mapping: dict = {"k": {"deep": True}}):
    check_values(n=n, x=x, s=s, b=b, items=items, mapping=mapping, expected=expected,
                 sink=sink, label="defaults")


def test_parameters_of_every_type_arrive_typed(client, sink):
    values = {"n": 3, "x": 2.5, "s": "hello 'world' \"quoted\" $HOME", "b": True,
              "items": [1, "two", 3.5, {"four": 4}], "mapping": {"a": 1, "b": [True, None], "c": "x"}}
    after = {"n": 30, "x": 0.625, "s": values["s"].upper(), "b": False,
             "items": values["items"] + [{"nested": [1, 2]}], "mapping": {**values["mapping"], "added": None}}
    run = run_to_end(client, typed_parameters, {
        **values, "expected": json.dumps(values), "expected_after": json.dumps(after), "sink": str(sink),
    })
    assert_succeeded(run)

    seen = read_json(sink / "inputs.json")
    assert seen["types"] == EXPECTED_TYPES
    assert seen["values"] == values
    seen = read_json(sink / "outputs.json")
    assert seen["types"] == EXPECTED_TYPES
    assert seen["values"] == after

    # Placeholders render as upstream's launcher does: numbers without a trailing
    # ".0" for integers, booleans in lower case, lists and structs as JSON.
    assert (sink / "n").read_text() == "3"
    assert (sink / "x").read_text() == "2.5"
    assert (sink / "s").read_text() == values["s"]
    assert (sink / "b").read_text() == "true"
    assert json.loads((sink / "items").read_text()) == values["items"]
    assert json.loads((sink / "mapping").read_text()) == values["mapping"]


def test_whole_numbers_for_float_inputs_and_defaults(client, sink):
    # An int that went through protobuf JSON as 4.0 arrives as an int; a whole number
    # for a float input arrives as upstream passes it, `3` (an int once parsed).
    values = {"n": 4.0, "x": 3, "s": "", "b": False, "items": [], "mapping": {}}
    expected = {"n": 4, "x": 3.0, "s": "", "b": False, "items": [], "mapping": {}}
    run = run_to_end(client, typed_parameters, {
        **values, "expected": json.dumps(expected), "expected_after": json.dumps(
            {"n": 40, "x": 0.75, "s": "", "b": True, "items": [{"nested": [1, 2]}], "mapping": {"added": None}}),
        "sink": str(sink),
    })
    assert_succeeded(run)
    seen = read_json(sink / "inputs.json")
    assert seen["values"] == expected
    assert seen["types"] == {**EXPECTED_TYPES, "x": "int"}
    assert (sink / "n").read_text() == "4"
    assert (sink / "x").read_text() == "3"
    assert (sink / "b").read_text() == "false"

    defaults = {"n": 7, "x": 0.25, "s": "déjà vu", "b": False, "items": [3, "three", 3.5],
                "mapping": {"k": {"deep": True}}}
    run = run_to_end(client, typed_defaults, {"sink": str(sink), "expected": json.dumps(defaults)})
    assert_succeeded(run)
    seen = read_json(sink / "defaults.json")
    assert seen["types"] == EXPECTED_TYPES
    assert seen["values"] == defaults


def test_a_failed_check_fails_the_run_naming_the_task(client, base_url, sink):
    # The check components above are not vacuous: a wrong expectation fails the run.
    values = {"n": 1, "x": 1.5, "s": "s", "b": True, "items": [1], "mapping": {"a": 1}}
    wrong = {**values, "n": 2}
    run = run_to_end(client, typed_defaults, {
        "sink": str(sink), "expected": json.dumps(wrong), **values,
    })
    assert run.state == "FAILED", describe_run(run)
    assert 'task "check-values"' in run.error.message, describe_run(run)
    assert "exit code 1" in run.error.message, describe_run(run)
    task = task_named(run, "check-values")
    assert task.state == "FAILED"
    assert "exit code 1" in task.error.message
    assert "check defaults: values" in task_log(base_url, run.run_id, task.task_id)


@dsl.component
def fail_with_reason(reason: str):
    print("the last line on stdout")
    raise SystemExit(reason)


@dsl.pipeline
def failing_with_reason(reason: str):
    fail_with_reason(reason=reason)


@dsl.pipeline
def failing_with_reason_in_own_process(reason: str):
    # A task whose environment sets PYTHON* runs as its own process (kfpd's warm
    # interpreter does not take it).
    fail_with_reason(reason=reason).set_env_variable("PYTHONDONTWRITEBYTECODE", "1")


def test_the_run_error_quotes_the_reason_a_python_task_gave(client):
    reason = unique("the reason")
    run = run_to_end(client, failing_with_reason, {"reason": reason})
    assert run.state == "FAILED", describe_run(run)
    assert reason in run.error.message, describe_run(run)


def test_the_run_error_quotes_the_reason_of_a_python_task_in_its_own_process(client):
    reason = unique("the reason")
    run = run_to_end(client, failing_with_reason_in_own_process, {"reason": reason})
    assert run.state == "FAILED", describe_run(run)
    assert reason in run.error.message, describe_run(run)


# --------------------------------------------------------------------------- artifacts


@dsl.component
def make_artifacts(rows: int, data: Output[Dataset], model: Output[Model], metrics: Output[Metrics]):
    with open(data.path, "w") as f:
        f.write("".join(f"row {i}\n" for i in range(rows)))
    data.metadata["rows"] = rows
    import os

    # A directory artifact.
    os.makedirs(model.path, exist_ok=True)
    with open(os.path.join(model.path, "weights.txt"), "w") as f:
        f.write("w=0.5\n")
    with open(os.path.join(model.path, "config.json"), "w") as f:
        f.write('{"layers": 2}')
    model.metadata["framework"] = "none"
    metrics.log_metric("accuracy", 0.875)
    metrics.log_metric("loss", 2)


@dsl.component
def use_artifacts(data: Input[Dataset], model: Input[Model], rows: int, sink: str) -> int:
    import json
    import os

    with open(data.path) as f:
        lines = f.read().splitlines()
    if lines != [f"row {i}" for i in range(rows)]:
        raise SystemExit(f"dataset content {lines!r}")
    with open(os.path.join(model.path, "weights.txt")) as f:
        weights = f.read()
    with open(f"{sink}/consumer.json", "w") as f:
        json.dump({
            "rows": len(lines),
            "data_metadata": dict(data.metadata),
            "model_metadata": dict(model.metadata),
            "model_files": sorted(os.listdir(model.path)),
            "weights": weights,
            "data_schema": data.schema_title,
            "model_schema": model.schema_title,
        }, f)
    return len(lines)


@dsl.pipeline
def artifact_flow(rows: int, sink: str):
    made = make_artifacts(rows=rows)
    use_artifacts(data=made.outputs["data"], model=made.outputs["model"], rows=rows, sink=sink)


def test_input_and_output_artifacts(client, rest, sink):
    run = run_to_end(client, artifact_flow, {"rows": 4, "sink": str(sink)})
    assert_succeeded(run)

    seen = read_json(sink / "consumer.json")
    assert seen["rows"] == 4
    assert seen["data_metadata"]["rows"] == 4
    assert seen["model_metadata"]["framework"] == "none"
    assert seen["model_files"] == ["config.json", "weights.txt"]
    assert seen["weights"] == "w=0.5\n"
    assert seen["data_schema"] == "system.Dataset"
    assert seen["model_schema"] == "system.Model"

    producer = task_named(run, "make-artifacts")
    consumer = task_named(run, "use-artifacts")
    (data_id,) = artifact_ids(producer, "outputs", "data")
    (model_id,) = artifact_ids(producer, "outputs", "model")
    (metrics_id,) = artifact_ids(producer, "outputs", "metrics")
    assert artifact_ids(consumer, "inputs", "data") == [data_id]
    assert artifact_ids(consumer, "inputs", "model") == [model_id]

    # The artifact API: types, metadata (log_metric included), lineage.
    by_id = {artifact["artifact_id"]: artifact for artifact in list_artifacts(rest, run.run_id)}
    assert set(by_id) == {data_id, model_id, metrics_id}
    data = by_id[data_id]
    assert data["type"]["schema_title"] == "system.Dataset"
    assert data["metadata"] == {"rows": 4}
    assert data["producer"]["task_id"] == producer.task_id
    assert data["producer"]["key"] == "data"
    assert [(c["task_id"], c["key"]) for c in data["consumers"]] == [(consumer.task_id, "data")]
    assert by_id[model_id]["type"]["schema_title"] == "system.Model"
    assert by_id[model_id]["metadata"] == {"framework": "none"}
    metrics = get_artifact(rest, metrics_id)
    assert metrics["type"]["schema_title"] == "system.Metrics"
    assert metrics["metadata"] == {"accuracy": 0.875, "loss": 2}
    assert metrics["run_id"] == run.run_id

    # Content through the `:read` endpoint.
    content = read_artifact(rest, run.run_id, producer.task_id, "data")
    assert content == b"row 0\nrow 1\nrow 2\nrow 3\n"


@dsl.component
def make_text(text: str) -> Dataset:
    """A pythonic output artifact (returned, not an Output[...] parameter)."""
    from kfp import dsl as kfp_dsl

    out = kfp_dsl.Dataset(uri=kfp_dsl.get_uri())
    with open(out.path, "w") as f:
        f.write(text)
    out.metadata["length"] = len(text)
    return out


@dsl.component
def check_text(data: Dataset, expected: str) -> str:
    with open(data.path) as f:
        text = f.read()
    if text != expected:
        raise SystemExit(f"text {text!r} != {expected!r}")
    return text


@dsl.pipeline
def pythonic_artifacts(text: str) -> str:
    return check_text(data=make_text(text=text).output, expected=text).output


def test_pythonic_artifacts(client, rest):
    text = unique("pythonic")
    run = run_to_end(client, pythonic_artifacts, {"text": text})
    assert_succeeded(run)
    producer = task_named(run, "make-text")
    assert read_artifact(rest, run.run_id, producer.task_id, "Output") == text.encode()
    (artifact,) = list_artifacts(rest, run.run_id)
    assert artifact["metadata"] == {"length": len(text)}


def test_artifacts_under_a_pipeline_root_of_ones_own(client, rest, sink, tmp_path):
    """A `pipeline_root` outside kfpd's data dir, as `kfp.local` allows: the artifacts
    are written there, listed with those URIs and read back from there."""
    root = tmp_path / "experiments"
    result = client.create_run_from_pipeline_func(
        artifact_flow,
        arguments={"rows": 3, "sink": str(sink)},
        run_name=unique("own-root"),
        enable_caching=False,
        pipeline_root=str(root),
    )
    run = wait_for_final(client, result.run_id)
    assert_succeeded(run)
    assert read_json(sink / "consumer.json")["rows"] == 3
    artifacts = list_artifacts(rest, run.run_id)
    assert artifacts
    for artifact in artifacts:
        assert artifact["uri"].startswith(f"file://{root}/"), artifact["uri"]
    producer = task_named(run, "make-artifacts")
    (data,) = [a for a in artifacts if a["producer"]["key"] == "data"]
    on_disk = pathlib.Path(data["uri"].removeprefix("file://")).read_bytes()
    assert on_disk == b"row 0\nrow 1\nrow 2\n"
    assert read_artifact(rest, run.run_id, producer.task_id, "data") == on_disk


def test_a_pipeline_root_kfpd_cannot_use_is_refused_by_name(client, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    for root in ["relative/dir", "gs://bucket/root", f"{blocker}/sub"]:
        with pytest.raises(kfp_server_api.ApiException) as refused:
            client.create_run_from_pipeline_func(
                artifact_flow,
                arguments={"rows": 1, "sink": str(tmp_path)},
                run_name=unique("bad-root"),
                pipeline_root=root,
            )
        assert refused.value.status == 400, refused.value
        assert root in refused.value.body, refused.value.body


# --------------------------------------------------------------------------- container components


@dsl.container_component
def container_outputs(word: str, count: dsl.OutputPath(int), text: dsl.OutputPath(str),
                      config: dsl.OutputPath(dict), data: Output[Dataset]):
    return dsl.ContainerSpec(
        image="alpine",
        command=[
            "sh",
            "-c",
            'printf 42 > "$0"; printf "%s-out" "$4" > "$1"; printf \'{"word": "%s", "n": [1, 2]}\' "$4" > "$2"; '
            'printf "container data for %s" "$4" > "$3"',
        ],
        args=[count, text, config, data.path, word],
    )


@dsl.component
def check_container_outputs(count: int, text: str, config: dict, data: Input[Dataset], word: str):
    with open(data.path) as f:
        content = f.read()
    got = (type(count).__name__, count, text, config, content)
    want = ("int", 42, f"{word}-out", {"word": word, "n": [1, 2]}, f"container data for {word}")
    if got != want:
        raise SystemExit(f"container outputs {got!r} != {want!r}")


@dsl.container_component
def placeholders(sink: str, word: str, number: int, optional_text: Optional[str] = None):
    """Writes its argv, one argument per line; Concat and IfPresent resolved by the engine."""
    return dsl.ContainerSpec(
        image="alpine",
        command=["sh", "-c", 'out="$0"; for a in "$@"; do printf "%s\\n" "$a"; done > "$out"'],
        args=[
            dsl.ConcatPlaceholder([sink, "/argv-", word]),
            dsl.ConcatPlaceholder(["prefix-", word, "-", number]),
            dsl.IfPresentPlaceholder(
                input_name="optional_text",
                then=["--text", optional_text, dsl.ConcatPlaceholder(["text=", optional_text])],
                else_=["--no-text"],
            ),
            "last",
        ],
    )


@dsl.pipeline
def container_pipeline(word: str, sink: str):
    made = container_outputs(word=word)
    check_container_outputs(
        count=made.outputs["count"], text=made.outputs["text"], config=made.outputs["config"],
        data=made.outputs["data"], word=word,
    )
    placeholders(sink=sink, word="with", number=5, optional_text="hi there")
    placeholders(sink=sink, word="without", number=6)


def test_container_components_and_placeholders(client, rest, sink):
    run = run_to_end(client, container_pipeline, {"word": "lark", "sink": str(sink)})
    assert_succeeded(run)
    producer = task_named(run, "container-outputs")
    assert read_artifact(rest, run.run_id, producer.task_id, "data") == b"container data for lark"

    assert lines_of(sink / "argv-with") == ["prefix-with-5", "--text", "hi there", "text=hi there", "last"]
    assert lines_of(sink / "argv-without") == ["prefix-without-6", "--no-text", "last"]


# --------------------------------------------------------------------------- nested pipelines


@dsl.component
def add(a: int, b: int) -> int:
    return a + b


@dsl.component
def write_report(total: int, report: Output[Dataset]):
    with open(report.path, "w") as f:
        f.write(f"total={total}")
    report.metadata["total"] = total


@dsl.pipeline
def inner_sum(a: int, b: int, c: int = 100) -> NamedTuple("InnerOutputs", [("total", int), ("report", Dataset)]):
    first = add(a=a, b=b)
    second = add(a=first.output, b=c)
    report = write_report(total=second.output)
    outputs = NamedTuple("InnerOutputs", [("total", int), ("report", Dataset)])
    return outputs(total=second.output, report=report.outputs["report"])


@dsl.pipeline
def middle(x: int) -> NamedTuple("MiddleOutputs", [("total", int), ("report", Dataset)]):
    inner = inner_sum(a=x, b=x)
    outputs = NamedTuple("MiddleOutputs", [("total", int), ("report", Dataset)])
    return outputs(total=inner.outputs["total"], report=inner.outputs["report"])


@dsl.component
def check_nested(total: int, report: Input[Dataset], expected: int, sink: str, label: str):
    import json

    with open(report.path) as f:
        text = f.read()
    with open(f"{sink}/{label}.json", "w") as f:
        json.dump({"total": total, "type": type(total).__name__, "report": text,
                   "metadata": dict(report.metadata)}, f)
    if total != expected or text != f"total={expected}":
        raise SystemExit(f"nested outputs {total!r} {text!r}, expected {expected}")


@dsl.pipeline
def outer(x: int, expected: int, sink: str) -> int:
    nested = middle(x=x)
    direct = inner_sum(a=1, b=2, c=3)
    check_nested(total=nested.outputs["total"], report=nested.outputs["report"], expected=expected,
                 sink=sink, label="nested")
    check_nested(total=direct.outputs["total"], report=direct.outputs["report"], expected=6,
                 sink=sink, label="direct").set_display_name("check-direct")
    return nested.outputs["total"]


def test_nested_pipelines_pass_their_outputs(client, rest, sink):
    run = run_to_end(client, outer, {"x": 21, "expected": 142, "sink": str(sink)})
    assert_succeeded(run)
    # x + x + 100 through two levels of nesting; 1 + 2 + 3 through one.
    assert read_json(sink / "nested.json") == {
        "total": 142, "type": "int", "report": "total=142", "metadata": {"total": 142}}
    assert read_json(sink / "direct.json") == {
        "total": 6, "type": "int", "report": "total=6", "metadata": {"total": 6}}
    names = sorted(task.display_name for task in run.run_details.task_details)
    for expected in ("middle", "inner-sum", "add", "write-report", "check-nested", "check-direct"):
        assert expected in names, names
    # Every task ran and succeeded, DAG tasks included.
    assert {task.state for task in run.run_details.task_details} == {"SUCCEEDED"}, describe_run(run)
    # Parent links: the nested DAG's tasks hang under it.
    by_id = {task.task_id: task for task in run.run_details.task_details}
    middle_task = task_named(run, "middle")
    inner_under_middle = [t for t in by_id.values() if t.display_name == "inner-sum"
                          and t.parent_task_id == middle_task.task_id]
    assert len(inner_under_middle) == 1, describe_run(run)


# --------------------------------------------------------------------------- importer


@dsl.component
def read_imported(data: Input[Dataset], expected: str, sink: str, label: str):
    import json

    with open(data.path) as f:
        text = f.read()
    with open(f"{sink}/{label}.json", "w") as f:
        json.dump({"text": text, "metadata": dict(data.metadata), "uri": data.uri}, f)
    if text != expected:
        raise SystemExit(f"imported {text!r} != {expected!r}")


def constant_importer(uri: str):
    @dsl.pipeline(name="import-constant")
    def pipeline(expected: str, sink: str, tag: str):
        imported = dsl.importer(artifact_uri=uri, artifact_class=Dataset, reimport=False,
                                metadata={"source": "e2e", "tag": tag})
        read_imported(data=imported.output, expected=expected, sink=sink, label="constant")

    return pipeline


@dsl.pipeline
def parameter_importer(uri: str, expected: str, sink: str):
    imported = dsl.importer(artifact_uri=uri, artifact_class=Dataset, reimport=True)
    read_imported(data=imported.output, expected=expected, sink=sink, label="parameter")


def test_importer_of_a_file_under_the_artifact_root(client, rest, server, sink):
    # The local artifact store serves file:// URIs under <data-dir>/artifacts.
    root = server.data_dir / "artifacts" / "imports"
    root.mkdir(parents=True, exist_ok=True)
    content = unique("imported content")
    (root / "data.txt").write_text(content)
    uri = f"file://{root / 'data.txt'}"

    run = run_to_end(client, constant_importer(uri), {"expected": content, "sink": str(sink), "tag": "t1"})
    assert_succeeded(run)
    seen = read_json(sink / "constant.json")
    assert seen["text"] == content
    assert seen["metadata"] == {"source": "e2e", "tag": "t1"}

    (imported,) = [a for a in list_artifacts(rest, run.run_id) if a["uri"] == uri]
    assert imported["type"]["schema_title"] == "system.Dataset"
    assert imported["metadata"] == {"source": "e2e", "tag": "t1"}
    consumer = task_named(run, "read-imported")
    assert [c["task_id"] for c in imported["consumers"]] == [consumer.task_id]
    # Importing copies nothing: the file is where it was.
    assert (root / "data.txt").read_text() == content


def test_importer_of_an_artifact_of_an_earlier_run(client, rest, sink):
    first = run_to_end(client, artifact_flow, {"rows": 2, "sink": str(sink)})
    assert_succeeded(first)
    producer = task_named(first, "make-artifacts")
    (data_id,) = artifact_ids(producer, "outputs", "data")
    uri = get_artifact(rest, data_id)["uri"]

    run = run_to_end(client, parameter_importer, {"uri": uri, "expected": "row 0\nrow 1\n", "sink": str(sink)})
    assert_succeeded(run)
    assert read_json(sink / "parameter.json")["text"] == "row 0\nrow 1\n"
    assert uri in [a["uri"] for a in list_artifacts(rest, run.run_id)]


def test_importer_of_a_uri_the_store_does_not_serve_fails_naming_it(client, sink):
    run = run_to_end(client, parameter_importer, {
        "uri": "file:///nonexistent-kfpd-e2e/elsewhere.txt", "expected": "", "sink": str(sink),
    })
    assert run.state == "FAILED", describe_run(run)
    assert "file:///nonexistent-kfpd-e2e/elsewhere.txt" in run.error.message, describe_run(run)


# --------------------------------------------------------------------------- logs


@dsl.component
def say(marker: str):
    import sys

    print(f"stdout says {marker}")
    print(f"stderr says {marker}", file=sys.stderr)


@dsl.pipeline
def saying(marker: str):
    say(marker=marker)


def test_task_log_after_the_run(client, base_url):
    marker = unique("marker")
    run = run_to_end(client, saying, {"marker": marker})
    assert_succeeded(run)
    task = task_named(run, "say")
    log = task_log(base_url, run.run_id, task.task_id)
    assert f"stdout says {marker}" in log
    assert f"stderr says {marker}" in log
    # follow=true on a finished task returns the whole log and ends.
    import requests

    followed = requests.get(f"{base_url}/apis/v1alpha1/runs/{run.run_id}/nodes/{task.task_id}/log",
                            params={"follow": "true"}, timeout=30)
    assert followed.status_code == 200
    assert followed.text == log


def test_log_of_an_unknown_task_is_404(client, base_url):
    run = run_to_end(client, saying, {"marker": "x"})
    import requests

    response = requests.get(
        f"{base_url}/apis/v1alpha1/runs/{run.run_id}/nodes/00000000-0000-0000-0000-000000000000/log", timeout=30)
    assert response.status_code == 404, response.text


# --------------------------------------------------------------------------- kfpd run


def test_kfpd_run_executes_a_pipeline_file(kfpd_bin, tmp_path, sink):
    package = tmp_path / "typed.yaml"
    compiler.Compiler().compile(typed_defaults, str(package))
    expected = {"n": 12, "x": 0.5, "s": "from the command line", "b": True, "items": [1, [2]],
                "mapping": {"k": "v"}}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KFPD_", "DBCONFIG_"))}
    result = subprocess.run(
        [kfpd_bin, "run", str(package), "--data-dir", str(tmp_path / "data"),
         "-p", f"sink={sink}", "-p", f"expected={json.dumps(expected)}", "-p", "n=12", "-p", "x=0.5",
         "-p", "s=from the command line", "-p", "b=true", "-p", "items=[1, [2]]", "-p", 'mapping={"k": "v"}'],
        env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    seen = read_json(sink / "defaults.json")
    assert seen["types"] == EXPECTED_TYPES
    assert seen["values"] == expected

    # A failing pipeline exits non-zero and says why.
    result = subprocess.run(
        [kfpd_bin, "run", str(package), "-p", f"sink={sink}", "-p", "expected={}"],
        env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )
    assert result.returncode != 0
    assert 'run FAILED: task "check-values"' in result.stderr, result.stderr


# --------------------------------------------------------------------------- more data flow


@dsl.component
def stringly(text: str) -> NamedTuple("Stringly", [("digits", str), ("word", str), ("listish", str),
                                                   ("empty", str), ("multiline", str)]):
    from collections import namedtuple

    out = namedtuple("Stringly", ["digits", "word", "listish", "empty", "multiline"])
    return out("007", "true", "[1, 2]", "", f"{text}\nsecond line\n")


@dsl.component
def check_strings(digits: str, word: str, listish: str, empty: str, multiline: str, text: str):
    got = [digits, word, listish, empty, multiline]
    want = ["007", "true", "[1, 2]", "", f"{text}\nsecond line\n"]
    if got != want or any(type(value) is not str for value in got):
        raise SystemExit(f"strings {got!r} != {want!r}")


@dsl.pipeline
def string_outputs(text: str):
    made = stringly(text=text)
    check_strings(digits=made.outputs["digits"], word=made.outputs["word"], listish=made.outputs["listish"],
                  empty=made.outputs["empty"], multiline=made.outputs["multiline"], text=text)


def test_string_outputs_that_look_like_other_types_stay_strings(client):
    run = run_to_end(client, string_outputs, {"text": "first line"})
    assert_succeeded(run)


@dsl.component
def job_facts(job_name: str, job_id: str, task_name: str, sink: str):
    import json
    import os

    with open(f"{sink}/facts.json", "w") as f:
        json.dump({"job_name": job_name, "job_id": job_id, "task_name": task_name,
                   "env": os.environ.get("E2E_GREETING"), "env2": os.environ.get("E2E_OTHER")}, f)


@dsl.pipeline
def placeholders_and_env(sink: str):
    task = job_facts(job_name=dsl.PIPELINE_JOB_NAME_PLACEHOLDER, job_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                     task_name=dsl.PIPELINE_TASK_NAME_PLACEHOLDER, sink=sink)
    task.set_env_variable("E2E_GREETING", "hello from the spec")
    task.set_env_variable("E2E_OTHER", "second")


def test_job_placeholders_and_environment_variables(client, sink):
    run = run_to_end(client, placeholders_and_env, {"sink": str(sink)})
    assert_succeeded(run)
    facts = read_json(sink / "facts.json")
    assert facts["job_id"] == run.run_id
    assert facts["job_name"] == run.display_name
    assert facts["task_name"] == "job-facts"
    assert facts["env"] == "hello from the spec"
    assert facts["env2"] == "second"


@dsl.component
def rendezvous(sink: str, me: str, other: str):
    """Waits (bounded) for its sibling to have started: only passes if both run at once."""
    import os
    import time

    open(f"{sink}/{me}.started", "w").close()
    deadline = time.time() + 60
    while not os.path.exists(f"{sink}/{other}.started"):
        if time.time() > deadline:
            raise SystemExit(f"{other} did not start while {me} was running")
        time.sleep(0.05)


@dsl.pipeline
def side_by_side(sink: str):
    rendezvous(sink=sink, me="left", other="right").set_display_name("left")
    rendezvous(sink=sink, me="right", other="left").set_display_name("right")


def test_independent_tasks_run_at_the_same_time(client, sink):
    run = run_to_end(client, side_by_side, {"sink": str(sink)})
    assert_succeeded(run)


def test_artifact_endpoints_for_unknown_things(client, rest):
    run = run_to_end(client, saying, {"marker": "unknowns"})
    assert_succeeded(run)
    task = task_named(run, "say")
    assert rest.get(f"runs/{run.run_id}/nodes/{task.task_id}/artifacts/nothing:read").status_code == 404
    assert rest.get("artifacts/123456789").status_code == 404
    assert rest.get("artifacts", params={"run_id": "00000000-0000-0000-0000-000000000000"}).status_code == 404
    assert rest.get("artifacts").status_code == 400
    assert rest.get("artifacts", params={"run_id": run.run_id}).json().get("artifacts", []) == []
