"""Runs: create (from a package, from a pipeline function, from a stored version), get,
list, archive, terminate, retry, delete, and argument validation."""

import concurrent.futures
import datetime
import json
import re
import time

import kfp_server_api
import pytest
from kfp import dsl
from kfp.client import client as kfp_client_module

from support import (
    PIPELINES,
    api_error,
    assert_same_json,
    corpus_file,
    corpus_files,
    eq_filter,
    load_yaml_spec,
    page_through,
    pipeline_file,
    unique,
)

ADD_NUMBERS = "add.yaml"
MISSING_ID = "00000000-0000-0000-0000-000000000000"
# These modules run kfpd without an executor, so terminate/retry state changes are immediate; allow a bounded wait anyway.
STATE_WAIT_SECONDS = 10


@dsl.component(base_image="python:3.11")
def multiply(count: int, factor: float) -> float:
    return count * factor


@dsl.component(base_image="python:3.11")
def shout(text: str) -> str:
    return text.upper()


@dsl.pipeline(name="e2e-sdk-compiled", description="compiled by the e2e suite")
def sdk_pipeline(count_items: int, scale_factor: float = 1.5, greeting: str = "hi", loud: bool = True):
    product = multiply(count=count_items, factor=scale_factor)
    shout(text=greeting).after(product)


def package_run(client, experiment_id, arguments=None, relative=ADD_NUMBERS, name=None):
    """Create a run from a committed package (tests/pipelines/) and return its run_id."""
    result = client.create_run_from_pipeline_package(
        str(pipeline_file(relative)),
        arguments=arguments if arguments is not None else {"a": 1, "b": 2},
        run_name=name or unique("run"),
        experiment_id=experiment_id,
    )
    return result.run_id


def wait_for_state(client, run_id, wanted):
    deadline = time.monotonic() + STATE_WAIT_SECONDS
    while True:
        run = client.get_run(run_id)
        if run.state == wanted or time.monotonic() > deadline:
            return run
        time.sleep(0.2)


def names_parameter(body, name):
    """Whether an error body's message names the parameter: quoted, or as a word of its own."""
    try:
        message = json.loads(body).get("message", body)
    except ValueError:
        message = body
    quoted = rf"[\"'`]{re.escape(name)}[\"'`]"
    word = rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])"
    # A one-letter name is only convincing when quoted ("a" is also an English word).
    return re.search(quoted if len(name) == 1 else word, message) is not None


def runs_filter(*predicates):
    return json.dumps({"predicates": [dict(zip(("key", "operation", "string_value"), p)) for p in predicates]})


@pytest.fixture(scope="module")
def experiment(client):
    return client.create_experiment(name=unique("runs"))


# --------------------------------------------------------------------------- create / get


def test_create_run_from_package_with_arguments(client, experiment):
    name = unique("run-pkg")
    before = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)
    result = client.create_run_from_pipeline_package(
        str(pipeline_file(ADD_NUMBERS)),
        arguments={"a": 3, "b": 4},
        run_name=name,
        experiment_name=experiment.display_name,
    )
    assert result.run_id
    assert result.run_info.run_id == result.run_id
    assert result.run_info.state == "PENDING"

    run = client.get_run(result.run_id)
    assert run.run_id == result.run_id
    assert run.display_name == name
    assert run.experiment_id == experiment.experiment_id
    assert run.state == "PENDING"
    assert run.storage_state == "AVAILABLE"
    assert run.created_at > before
    assert run.scheduled_at is not None
    assert run.runtime_config.parameters == {"a": 3, "b": 4}
    assert_same_json(run.pipeline_spec, load_yaml_spec(pipeline_file(ADD_NUMBERS)))
    assert run.state_history, "state_history must record PENDING"
    assert run.state_history[0].state == "PENDING"
    assert run.state_history[0].update_time is not None


def test_create_run_without_experiment_uses_default(client):
    result = client.create_run_from_pipeline_package(
        str(pipeline_file(ADD_NUMBERS)), arguments={"a": 1, "b": 1}, run_name=unique("run-default")
    )
    default = client.get_experiment(experiment_name="Default")
    assert client.get_run(result.run_id).experiment_id == default.experiment_id
    # Using it again must not create a second "Default".
    listed = client.list_experiments(filter=eq_filter("display_name", "Default"))
    assert len(listed.experiments) == 1


def test_create_run_from_pipeline_func(client, experiment):
    name = unique("run-func")
    result = client.create_run_from_pipeline_func(
        sdk_pipeline,
        arguments={"count_items": 7, "greeting": "hello"},
        run_name=name,
        experiment_id=experiment.experiment_id,
    )
    run = client.get_run(result.run_id)
    assert run.display_name == name
    assert run.state == "PENDING"
    assert run.runtime_config.parameters == {"count_items": 7, "greeting": "hello"}
    assert run.pipeline_spec["pipelineInfo"]["name"] == "e2e-sdk-compiled"
    root_inputs = run.pipeline_spec["root"]["inputDefinitions"]["parameters"]
    assert set(root_inputs) == {"count_items", "scale_factor", "greeting", "loud"}
    assert set(run.pipeline_spec["root"]["dag"]["tasks"]) == {"multiply", "shout"}


def test_create_run_from_pipeline_func_default_name(client, experiment):
    result = client.create_run_from_pipeline_func(sdk_pipeline, arguments={"count_items": 1}, experiment_id=experiment.experiment_id)
    assert client.get_run(result.run_id).display_name.startswith("e2e-sdk-compiled ")


def test_run_pipeline_from_stored_version(client, experiment):
    pipeline = client.upload_pipeline(str(pipeline_file(ADD_NUMBERS)), pipeline_name=unique("run-src"))
    version = client.list_pipeline_versions(pipeline_id=pipeline.pipeline_id).pipeline_versions[0]
    name = unique("run-ver")
    created = client.run_pipeline(
        experiment_id=experiment.experiment_id,
        job_name=name,
        pipeline_id=pipeline.pipeline_id,
        version_id=version.pipeline_version_id,
        params={"a": 10, "b": 20},
    )
    assert created.run_id
    run = client.get_run(created.run_id)
    assert run.display_name == name
    assert run.state == "PENDING"
    assert run.pipeline_version_reference is not None
    assert run.pipeline_version_reference.pipeline_id == pipeline.pipeline_id
    assert run.pipeline_version_reference.pipeline_version_id == version.pipeline_version_id
    assert run.runtime_config.parameters == {"a": 10, "b": 20}


def test_run_pipeline_with_package_path_and_service_account(client, experiment):
    created = client.run_pipeline(
        experiment_id=experiment.experiment_id,
        job_name=unique("run-sa"),
        pipeline_package_path=str(pipeline_file(ADD_NUMBERS)),
        params={"a": 1, "b": 2},
        pipeline_root="/tmp/kfpd-e2e-root",
        service_account="custom-runner",
    )
    run = client.get_run(created.run_id)
    assert run.service_account == "custom-runner"
    assert run.runtime_config.pipeline_root == "/tmp/kfpd-e2e-root"


def test_run_gets_default_service_account(client, experiment):
    run = client.get_run(package_run(client, experiment.experiment_id))
    assert run.service_account == "pipeline-runner"


def test_get_missing_run_is_404(client):
    with api_error(404):
        client.get_run(MISSING_ID)


# --------------------------------------------------------------------------- argument validation


def test_missing_required_parameter_is_400_naming_it(client, experiment):
    with api_error(400) as err:
        client.run_pipeline(
            experiment_id=experiment.experiment_id,
            job_name=unique("run-missing"),
            pipeline_package_path=str(pipeline_file(ADD_NUMBERS)),
            params={"a": 1},
        )
    assert names_parameter(err["body"], "b"), err["body"]


def test_missing_required_parameter_of_compiled_pipeline_is_400(client, experiment):
    with api_error(400) as err:
        client.create_run_from_pipeline_func(
            sdk_pipeline, arguments={"greeting": "x"}, experiment_id=experiment.experiment_id
        )
    assert names_parameter(err["body"], "count_items"), err["body"]


def test_wrong_parameter_type_is_400_naming_it(client, experiment):
    with api_error(400) as err:
        client.run_pipeline(
            experiment_id=experiment.experiment_id,
            job_name=unique("run-type"),
            pipeline_package_path=str(pipeline_file(ADD_NUMBERS)),
            params={"a": "not-a-number", "b": 2},
        )
    assert names_parameter(err["body"], "a"), err["body"]


@pytest.mark.parametrize(
    "arguments, bad",
    [
        ({"count_items": "seven"}, "count_items"),
        ({"count_items": 1, "scale_factor": "big"}, "scale_factor"),
        ({"count_items": 1, "greeting": 5}, "greeting"),
        ({"count_items": 1, "loud": "yes"}, "loud"),
    ],
)
def test_wrong_parameter_type_of_compiled_pipeline_is_400(client, experiment, arguments, bad):
    with api_error(400) as err:
        client.create_run_from_pipeline_func(sdk_pipeline, arguments=arguments, experiment_id=experiment.experiment_id)
    assert names_parameter(err["body"], bad), err["body"]


def test_missing_required_parameter_of_stored_version_is_400(client, experiment):
    pipeline = client.upload_pipeline(str(pipeline_file(ADD_NUMBERS)), pipeline_name=unique("run-srcmiss"))
    version = client.list_pipeline_versions(pipeline_id=pipeline.pipeline_id).pipeline_versions[0]
    with api_error(400) as err:
        client.run_pipeline(
            experiment_id=experiment.experiment_id,
            job_name=unique("run-vermiss"),
            pipeline_id=pipeline.pipeline_id,
            version_id=version.pipeline_version_id,
            params={"b": 2},
        )
    assert names_parameter(err["body"], "a"), err["body"]


def test_unknown_experiment_is_404(client):
    with api_error(404):
        client.run_pipeline(
            experiment_id=MISSING_ID,
            job_name=unique("run-noexp"),
            pipeline_package_path=str(pipeline_file(ADD_NUMBERS)),
            params={"a": 1, "b": 2},
        )


def test_no_runs_created_by_rejected_requests(client, experiment):
    rejected = unique("run-rejected")
    with api_error(400):
        client.run_pipeline(
            experiment_id=experiment.experiment_id,
            job_name=rejected,
            pipeline_package_path=str(pipeline_file(ADD_NUMBERS)),
            params={},
        )
    assert not client.list_runs(filter=eq_filter("display_name", rejected)).runs


# --------------------------------------------------------------------------- list


def test_list_runs_by_experiment_pages_through_everything(client):
    exp = client.create_experiment(name=unique("runs-page"))
    created = [package_run(client, exp.experiment_id, name=f"page-{i}") for i in range(5)]

    everything = client.list_runs(experiment_id=exp.experiment_id, page_size=200)
    assert everything.total_size == 5
    assert sorted(r.run_id for r in everything.runs) == sorted(created)
    assert all(r.experiment_id == exp.experiment_id for r in everything.runs)

    items, sizes = page_through(
        lambda token: client.list_runs(experiment_id=exp.experiment_id, page_token=token, page_size=2), "runs"
    )
    assert sizes == [2, 2, 1]
    assert [r.run_id for r in items] == [r.run_id for r in everything.runs]


def test_list_all_runs_pages_through_everything(client, experiment):
    package_run(client, experiment.experiment_id)
    everything = client.list_runs(page_size=200)
    expected = [r.run_id for r in everything.runs]
    assert everything.total_size == len(expected) >= 2
    items, sizes = page_through(lambda token: client.list_runs(page_token=token, page_size=3), "runs")
    assert [r.run_id for r in items] == expected
    assert all(size == 3 for size in sizes[:-1])


def test_list_runs_sorted(client):
    exp = client.create_experiment(name=unique("runs-sort"))
    names = ["sort-b", "sort-d", "sort-a", "sort-c"]
    for name in names:
        package_run(client, exp.experiment_id, name=name)

    by_name = client.list_runs(experiment_id=exp.experiment_id, sort_by="name")
    assert [r.display_name for r in by_name.runs] == sorted(names)
    by_name_desc = client.list_runs(experiment_id=exp.experiment_id, sort_by="display_name desc")
    assert [r.display_name for r in by_name_desc.runs] == sorted(names, reverse=True)

    items, _ = page_through(
        lambda token: client.list_runs(experiment_id=exp.experiment_id, page_token=token, page_size=3, sort_by="name desc"),
        "runs",
    )
    assert [r.display_name for r in items] == sorted(names, reverse=True)

    by_created = client.list_runs(experiment_id=exp.experiment_id, sort_by="created_at desc")
    stamps = [r.created_at for r in by_created.runs]
    assert stamps == sorted(stamps, reverse=True)


def test_list_runs_filtered_by_display_name_and_state(client):
    exp = client.create_experiment(name=unique("runs-filter"))
    target = unique("filter-me")
    target_id = package_run(client, exp.experiment_id, name=target)
    other_id = package_run(client, exp.experiment_id)

    by_name = client.list_runs(filter=eq_filter("display_name", target))
    assert [r.run_id for r in by_name.runs] == [target_id]
    assert by_name.total_size == 1

    client.terminate_run(other_id)
    assert wait_for_state(client, other_id, "CANCELED").state == "CANCELED"
    pending = client.list_runs(experiment_id=exp.experiment_id, filter=eq_filter("state", "PENDING"))
    assert [r.run_id for r in pending.runs] == [target_id]
    canceled = client.list_runs(experiment_id=exp.experiment_id, filter=eq_filter("state", "CANCELED"))
    assert [r.run_id for r in canceled.runs] == [other_id]

    combined = client.list_runs(
        experiment_id=exp.experiment_id,
        filter=runs_filter(("state", "EQUALS", "PENDING"), ("display_name", "EQUALS", target)),
    )
    assert [r.run_id for r in combined.runs] == [target_id]


def test_list_runs_of_unknown_experiment_is_empty_or_404(client):
    # Upstream single-user KFP just filters (empty list); kfpd may answer 404. Both are fine.
    try:
        listed = client.list_runs(experiment_id=MISSING_ID)
    except kfp_server_api.ApiException as exc:
        assert exc.status == 404, exc
    else:
        assert not listed.runs


# --------------------------------------------------------------------------- archive / terminate / retry / delete


def test_archive_and_unarchive_run(client, experiment):
    run_id = package_run(client, experiment.experiment_id)
    client.archive_run(run_id)
    run = client.get_run(run_id)
    assert run.storage_state == "ARCHIVED"
    assert run.state == "PENDING", "archiving must not change the runtime state"
    archived = client.list_runs(
        experiment_id=experiment.experiment_id, filter=eq_filter("storage_state", "ARCHIVED"), page_size=200
    )
    assert run_id in {r.run_id for r in archived.runs}

    client.unarchive_run(run_id)
    assert client.get_run(run_id).storage_state == "AVAILABLE"
    available = client.list_runs(
        experiment_id=experiment.experiment_id, filter=eq_filter("storage_state", "AVAILABLE"), page_size=200
    )
    assert run_id in {r.run_id for r in available.runs}


def test_archive_missing_run_is_404(client):
    with api_error(404):
        client.archive_run(MISSING_ID)


def test_terminate_pending_run_becomes_canceled(client, experiment):
    run_id = package_run(client, experiment.experiment_id)
    client.terminate_run(run_id)
    run = wait_for_state(client, run_id, "CANCELED")
    assert run.state == "CANCELED"
    states = [s.state for s in run.state_history]
    assert states[0] == "PENDING"
    assert states[-1] == "CANCELED"
    assert run.finished_at is not None and run.finished_at >= run.created_at
    assert run.display_name and run.runtime_config.parameters == {"a": 1, "b": 2}


def test_terminate_finished_run_is_rejected(client, experiment):
    run_id = package_run(client, experiment.experiment_id)
    client.terminate_run(run_id)
    wait_for_state(client, run_id, "CANCELED")
    with api_error(400):
        client.terminate_run(run_id)


def test_terminate_missing_run_is_404(client):
    with api_error(404):
        client.terminate_run(MISSING_ID)


def test_retry_canceled_run_becomes_pending(client, experiment):
    run_id = package_run(client, experiment.experiment_id)
    client.terminate_run(run_id)
    assert wait_for_state(client, run_id, "CANCELED").state == "CANCELED"
    client.runs.run_service_retry_run(run_id=run_id)
    run = client.get_run(run_id)
    assert run.state == "PENDING"
    assert [s.state for s in run.state_history][-1] == "PENDING"


def test_retry_pending_run_is_rejected(client, experiment):
    run_id = package_run(client, experiment.experiment_id)
    with api_error(409):
        client.runs.run_service_retry_run(run_id=run_id)
    assert client.get_run(run_id).state == "PENDING"


def test_delete_run(client, experiment):
    run_id = package_run(client, experiment.experiment_id)
    client.delete_run(run_id)
    with api_error(404):
        client.get_run(run_id)
    listed = client.list_runs(experiment_id=experiment.experiment_id, page_size=200)
    assert run_id not in {r.run_id for r in listed.runs or []}
    with api_error(404):
        client.delete_run(run_id)


def test_experiment_records_last_run_created_at(client):
    exp = client.create_experiment(name=unique("runs-last"))
    run = client.get_run(package_run(client, exp.experiment_id))
    fetched = client.get_experiment(experiment_id=exp.experiment_id)
    assert fetched.last_run_created_at is not None
    assert abs((fetched.last_run_created_at - run.created_at).total_seconds()) <= 1


def test_archiving_experiment_archives_its_runs(client):
    exp = client.create_experiment(name=unique("runs-exparch"))
    run_id = package_run(client, exp.experiment_id)
    client.archive_experiment(exp.experiment_id)
    assert client.get_run(run_id).storage_state == "ARCHIVED"
    client.unarchive_experiment(exp.experiment_id)
    # Unarchiving the experiment leaves its runs archived (KFP behaviour).
    assert client.get_run(run_id).storage_state == "ARCHIVED"
    client.unarchive_run(run_id)
    assert client.get_run(run_id).storage_state == "AVAILABLE"


def test_run_by_pipeline_id_only_uses_latest_version(client, rest, experiment):
    pipeline = client.upload_pipeline(str(pipeline_file(ADD_NUMBERS)), pipeline_name=unique("run-latest"))
    # KFP orders versions by creation time in whole seconds; make "latest" unambiguous.
    time.sleep(1.1)
    latest = client.upload_pipeline_version(
        str(pipeline_file(ADD_NUMBERS)), pipeline_version_name=unique("latest"), pipeline_id=pipeline.pipeline_id
    )
    response = rest.post(
        "runs",
        json={
            "display_name": unique("run-latest"),
            "experiment_id": experiment.experiment_id,
            "pipeline_version_reference": {"pipeline_id": pipeline.pipeline_id},
            "runtime_config": {"parameters": {"a": 1, "b": 2}},
        },
    )
    assert response.status_code == 200, response.text
    run = client.get_run(response.json()["run_id"])
    assert run.pipeline_version_reference.pipeline_id == pipeline.pipeline_id
    assert run.pipeline_version_reference.pipeline_version_id == latest.pipeline_version_id


def test_run_with_version_of_another_pipeline_is_400(client, experiment):
    first = client.upload_pipeline(str(pipeline_file(ADD_NUMBERS)), pipeline_name=unique("run-mixa"))
    second = client.upload_pipeline(str(pipeline_file(ADD_NUMBERS)), pipeline_name=unique("run-mixb"))
    second_version = client.list_pipeline_versions(pipeline_id=second.pipeline_id).pipeline_versions[0]
    with api_error(400):
        client.run_pipeline(
            experiment_id=experiment.experiment_id,
            job_name=unique("run-mix"),
            pipeline_id=first.pipeline_id,
            version_id=second_version.pipeline_version_id,
            params={"a": 1, "b": 2},
        )


def test_unarchive_run_in_archived_experiment_is_400(client):
    exp = client.create_experiment(name=unique("runs-locked"))
    run_id = package_run(client, exp.experiment_id)
    client.archive_experiment(exp.experiment_id)
    with api_error(400):
        client.unarchive_run(run_id)
    assert client.get_run(run_id).storage_state == "ARCHIVED"


def test_deleting_experiment_keeps_its_runs(client):
    exp = client.create_experiment(name=unique("runs-orphan"))
    run_id = package_run(client, exp.experiment_id)
    client.delete_experiment(exp.experiment_id)
    assert client.get_run(run_id).run_id == run_id


def test_list_runs_filter_created_at_and_substring(client):
    exp = client.create_experiment(name=unique("runs-ops"))
    marker = unique("sub")
    first = package_run(client, exp.experiment_id, name=f"{marker}-one")
    package_run(client, exp.experiment_id, name="unrelated")
    run = client.get_run(first)
    epoch = int(run.created_at.timestamp())

    substring = client.list_runs(experiment_id=exp.experiment_id, filter=runs_filter(("display_name", "IS_SUBSTRING", marker)))
    assert [r.run_id for r in substring.runs] == [first]

    future = client.list_runs(
        experiment_id=exp.experiment_id, filter=runs_filter(("created_at", "GREATER_THAN", str(epoch + 3600)))
    )
    assert not future.runs
    past = client.list_runs(
        experiment_id=exp.experiment_id, filter=runs_filter(("created_at", "LESS_THAN", str(epoch + 3600)))
    )
    assert len(past.runs) == 2


def test_concurrent_run_creation(client, experiment):
    names = [unique("par") for _ in range(16)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        run_ids = list(pool.map(lambda name: package_run(client, experiment.experiment_id, name=name), names))
    assert len(set(run_ids)) == len(names)
    for run_id, name in zip(run_ids, names):
        assert client.get_run(run_id).display_name == name


def test_wait_for_run_completion_times_out_on_pending_run(client, experiment):
    run_id = package_run(client, experiment.experiment_id)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        client.wait_for_run_completion(run_id, timeout=1, sleep_duration=0.2)
    assert time.monotonic() - started < 10


CORPUS_YAMLS = corpus_files("*.yaml")

SAMPLE_VALUES = {
    "STRING": "text",
    "NUMBER_INTEGER": 3,
    "NUMBER_DOUBLE": 2.5,
    "BOOLEAN": True,
    "LIST": ["x"],
    "STRUCT": {"k": "v"},
}


def required_arguments(spec):
    """A value for every root parameter that has no default and is not optional."""
    parameters = spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {})
    return {
        name: SAMPLE_VALUES[definition["parameterType"]]
        for name, definition in parameters.items()
        if "defaultValue" not in definition and not definition.get("isOptional")
    }


@pytest.mark.parametrize("relative", sorted(p.name for p in PIPELINES.glob("*.yaml")))
def test_every_committed_pipeline_can_be_submitted(client, experiment, relative):
    path = pipeline_file(relative)
    arguments = required_arguments(load_yaml_spec(path))
    result = client.create_run_from_pipeline_package(
        str(path), arguments=arguments, run_name=unique("committed"), experiment_id=experiment.experiment_id
    )
    run = client.get_run(result.run_id)
    assert run.state == "PENDING"
    if arguments:
        assert run.runtime_config.parameters == arguments
    assert_same_json(run.pipeline_spec, kfp_client_module._extract_pipeline_yaml(str(path)).to_dict())


@pytest.mark.parametrize("relative", CORPUS_YAMLS)
def test_every_corpus_pipeline_can_be_submitted(client, experiment, relative):
    path = corpus_file(relative)
    arguments = required_arguments(load_yaml_spec(path))
    result = client.create_run_from_pipeline_package(
        str(path), arguments=arguments, run_name=unique("corpus"), experiment_id=experiment.experiment_id
    )
    run = client.get_run(result.run_id)
    assert run.state == "PENDING"
    if arguments:
        assert run.runtime_config.parameters == arguments
    # The server stores and returns exactly what the SDK sent: the SDK's own package reader
    # (pinned kfp 2.15.0) gives that body, with a platform_spec wrapper for two-document packages.
    assert_same_json(run.pipeline_spec, kfp_client_module._extract_pipeline_yaml(str(path)).to_dict())
