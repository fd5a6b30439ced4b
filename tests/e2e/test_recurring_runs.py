"""Recurring runs: create (periodic, cron, disabled), validation, get, list, enable/disable, delete."""

import datetime
import json

import pytest

from support import api_error, assert_same_json, eq_filter, load_yaml_spec, page_through, pipeline_file, unique

ADD_NUMBERS = "add.yaml"
MISSING_ID = "00000000-0000-0000-0000-000000000000"


@pytest.fixture(scope="module")
def experiment(client):
    return client.create_experiment(name=unique("rr"))


def periodic(client, experiment_id, name=None, interval_second=3600, **kwargs):
    kwargs.setdefault("params", {"a": 1, "b": 2})
    return client.create_recurring_run(
        experiment_id=experiment_id,
        job_name=name or unique("rr"),
        pipeline_package_path=str(pipeline_file(ADD_NUMBERS)),
        interval_second=interval_second,
        **kwargs,
    )


def cron(client, experiment_id, expression, name=None, **kwargs):
    kwargs.setdefault("params", {"a": 1, "b": 2})
    return client.create_recurring_run(
        experiment_id=experiment_id,
        job_name=name or unique("rr-cron"),
        pipeline_package_path=str(pipeline_file(ADD_NUMBERS)),
        cron_expression=expression,
        **kwargs,
    )


def error_message(body):
    try:
        return json.loads(body).get("message", body)
    except ValueError:
        return body


# --------------------------------------------------------------------------- create / get


def test_create_periodic_recurring_run(client, experiment):
    name = unique("rr-periodic")
    before = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)
    rr = periodic(client, experiment.experiment_id, name=name, interval_second=90, description="every 90 s")
    assert rr.recurring_run_id
    assert rr.display_name == name
    assert rr.description == "every 90 s"
    assert rr.experiment_id == experiment.experiment_id
    assert rr.mode == "ENABLE"
    assert rr.status == "ENABLED"
    assert rr.max_concurrency == "1"
    assert rr.trigger.periodic_schedule.interval_second == "90"
    assert rr.trigger.cron_schedule is None
    assert rr.created_at > before
    assert rr.updated_at is not None
    assert rr.runtime_config.parameters == {"a": 1, "b": 2}
    assert_same_json(rr.pipeline_spec, load_yaml_spec(pipeline_file(ADD_NUMBERS)))

    fetched = client.get_recurring_run(rr.recurring_run_id)
    assert fetched.recurring_run_id == rr.recurring_run_id
    assert fetched.display_name == name
    assert fetched.mode == "ENABLE"
    assert fetched.status == "ENABLED"
    assert fetched.max_concurrency == "1"
    assert fetched.trigger.periodic_schedule.interval_second == "90"
    assert not fetched.no_catchup
    assert fetched.created_at == rr.created_at
    assert fetched.runtime_config.parameters == {"a": 1, "b": 2}


def test_create_cron_recurring_run(client, experiment):
    rr = cron(client, experiment.experiment_id, "0 0 * * * *", max_concurrency=3, no_catchup=True)
    fetched = client.get_recurring_run(rr.recurring_run_id)
    assert fetched.trigger.cron_schedule.cron == "0 0 * * * *"
    assert fetched.trigger.periodic_schedule is None
    assert fetched.max_concurrency == "3"
    assert fetched.no_catchup is True
    assert fetched.status == "ENABLED"


@pytest.mark.parametrize("expression", ["0 * * * * ?", "0 30 9 * * 1-5", "@every 1h", "@daily"])
def test_cron_forms_accepted_by_kfp(client, experiment, expression):
    rr = cron(client, experiment.experiment_id, expression)
    assert client.get_recurring_run(rr.recurring_run_id).trigger.cron_schedule.cron == expression


def test_create_with_start_and_end_time(client, experiment):
    rr = periodic(
        client,
        experiment.experiment_id,
        start_time="2030-01-01T00:00:00Z",
        end_time="2030-01-02T00:00:00Z",
    )
    schedule = client.get_recurring_run(rr.recurring_run_id).trigger.periodic_schedule
    assert schedule.start_time == datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc)
    assert schedule.end_time == datetime.datetime(2030, 1, 2, tzinfo=datetime.timezone.utc)


def test_create_disabled_recurring_run(client, experiment):
    rr = periodic(client, experiment.experiment_id, enabled=False)
    assert rr.mode == "DISABLE"
    assert rr.status == "DISABLED"
    fetched = client.get_recurring_run(rr.recurring_run_id)
    assert fetched.mode == "DISABLE"
    assert fetched.status == "DISABLED"


def test_create_recurring_run_from_stored_version(client, experiment):
    pipeline = client.upload_pipeline(str(pipeline_file(ADD_NUMBERS)), pipeline_name=unique("rr-src"))
    version = client.list_pipeline_versions(pipeline_id=pipeline.pipeline_id).pipeline_versions[0]
    rr = client.create_recurring_run(
        experiment_id=experiment.experiment_id,
        job_name=unique("rr-ver"),
        pipeline_id=pipeline.pipeline_id,
        version_id=version.pipeline_version_id,
        params={"a": 5, "b": 6},
        interval_second=600,
        max_concurrency=10,
    )
    fetched = client.get_recurring_run(rr.recurring_run_id)
    assert fetched.pipeline_version_reference.pipeline_id == pipeline.pipeline_id
    assert fetched.pipeline_version_reference.pipeline_version_id == version.pipeline_version_id
    assert fetched.runtime_config.parameters == {"a": 5, "b": 6}
    assert fetched.max_concurrency == "10"


def test_get_missing_recurring_run_is_404(client):
    with api_error(404):
        client.get_recurring_run(MISSING_ID)


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize("max_concurrency", [0, 11, -1])
def test_max_concurrency_out_of_range_is_400(client, experiment, max_concurrency):
    name = unique("rr-conc")
    with api_error(400) as err:
        periodic(client, experiment.experiment_id, name=name, max_concurrency=max_concurrency)
    assert "concurrency" in error_message(err["body"]).lower(), err["body"]
    assert not client.list_recurring_runs(filter=eq_filter("display_name", name)).recurring_runs


def test_five_field_cron_is_400_suggesting_six_fields(client, experiment):
    with api_error(400) as err:
        cron(client, experiment.experiment_id, "0 * * * *")
    message = error_message(err["body"]).lower()
    assert "cron" in message, err["body"]
    assert any(hint in message for hint in ("six", "6 fields", "6-field", "seconds")), err["body"]


@pytest.mark.parametrize("expression", ["not a cron", "61 * * * * *", "* * * * * * * *"])
def test_invalid_cron_is_400(client, experiment, expression):
    with api_error(400):
        cron(client, experiment.experiment_id, expression)


def test_negative_interval_is_400(client, experiment):
    with api_error(400):
        periodic(client, experiment.experiment_id, interval_second=-5)


def test_recurring_run_missing_required_parameter_is_400(client, experiment):
    with api_error(400):
        periodic(client, experiment.experiment_id, params={"a": 1})


def test_recurring_run_in_unknown_experiment_is_404(client):
    with api_error(404):
        periodic(client, MISSING_ID)


# --------------------------------------------------------------------------- list


def test_list_recurring_runs_returns_a_list(client, experiment):
    rr = periodic(client, experiment.experiment_id)
    listed = client.list_recurring_runs(page_size=200)
    # The SDK reads the camelCase `recurringRuns` key; a snake_case key would give None here.
    assert isinstance(listed.recurring_runs, list)
    assert rr.recurring_run_id in {r.recurring_run_id for r in listed.recurring_runs}
    assert listed.total_size == len(listed.recurring_runs)


def test_list_recurring_runs_wire_key_is_camel_case(client, experiment, rest):
    periodic(client, experiment.experiment_id)
    body = rest.get("recurringruns").json()
    assert isinstance(body.get("recurringRuns"), list), body


def test_list_recurring_runs_by_experiment_with_paging(client):
    exp = client.create_experiment(name=unique("rr-page"))
    other = client.create_experiment(name=unique("rr-other"))
    created = [periodic(client, exp.experiment_id, name=f"page-{i}").recurring_run_id for i in range(5)]
    periodic(client, other.experiment_id)

    everything = client.list_recurring_runs(experiment_id=exp.experiment_id, page_size=200)
    assert everything.total_size == 5
    assert sorted(r.recurring_run_id for r in everything.recurring_runs) == sorted(created)
    assert all(r.experiment_id == exp.experiment_id for r in everything.recurring_runs)

    items, sizes = page_through(
        lambda token: client.list_recurring_runs(experiment_id=exp.experiment_id, page_token=token, page_size=2),
        "recurring_runs",
    )
    assert sizes == [2, 2, 1]
    assert [r.recurring_run_id for r in items] == [r.recurring_run_id for r in everything.recurring_runs]

    by_name = client.list_recurring_runs(experiment_id=exp.experiment_id, sort_by="name desc")
    assert [r.display_name for r in by_name.recurring_runs] == [f"page-{i}" for i in reversed(range(5))]


def test_list_all_recurring_runs_pages_through_everything(client, experiment):
    periodic(client, experiment.experiment_id)
    everything = client.list_recurring_runs(page_size=200)
    expected = [r.recurring_run_id for r in everything.recurring_runs]
    assert len(expected) >= 2
    items, sizes = page_through(
        lambda token: client.list_recurring_runs(page_token=token, page_size=3), "recurring_runs"
    )
    assert [r.recurring_run_id for r in items] == expected
    assert all(size == 3 for size in sizes[:-1])


def test_list_recurring_runs_filter_by_display_name(client, experiment):
    target = periodic(client, experiment.experiment_id, name=unique("rr-target"))
    listed = client.list_recurring_runs(filter=eq_filter("display_name", target.display_name))
    assert [r.recurring_run_id for r in listed.recurring_runs] == [target.recurring_run_id]
    none = client.list_recurring_runs(filter=eq_filter("display_name", unique("rr-nobody")))
    assert not none.recurring_runs


# --------------------------------------------------------------------------- enable / disable / delete


def test_disable_and_enable_recurring_run(client, experiment):
    rr = periodic(client, experiment.experiment_id)
    client.disable_recurring_run(rr.recurring_run_id)
    disabled = client.get_recurring_run(rr.recurring_run_id)
    assert disabled.status == "DISABLED"
    assert disabled.mode == "DISABLE"
    assert disabled.updated_at >= rr.updated_at

    client.enable_recurring_run(rr.recurring_run_id)
    enabled = client.get_recurring_run(rr.recurring_run_id)
    assert enabled.status == "ENABLED"
    assert enabled.mode == "ENABLE"


def test_deprecated_job_aliases(client, experiment):
    rr = periodic(client, experiment.experiment_id)
    client.disable_job(rr.recurring_run_id)
    assert client.get_recurring_run(rr.recurring_run_id).status == "DISABLED"
    client.enable_job(rr.recurring_run_id)
    assert client.get_recurring_run(rr.recurring_run_id).status == "ENABLED"
    client.delete_job(rr.recurring_run_id)
    with api_error(404):
        client.get_recurring_run(rr.recurring_run_id)


def test_enable_missing_recurring_run_is_404(client):
    with api_error(404):
        client.enable_recurring_run(MISSING_ID)


def test_delete_recurring_run(client, experiment):
    rr = periodic(client, experiment.experiment_id)
    client.delete_recurring_run(rr.recurring_run_id)
    with api_error(404):
        client.get_recurring_run(rr.recurring_run_id)
    listed = client.list_recurring_runs(experiment_id=experiment.experiment_id, page_size=200)
    assert rr.recurring_run_id not in {r.recurring_run_id for r in listed.recurring_runs or []}
    with api_error(404):
        client.delete_recurring_run(rr.recurring_run_id)


def test_archiving_experiment_disables_its_recurring_runs(client):
    exp = client.create_experiment(name=unique("rr-exparch"))
    rr = periodic(client, exp.experiment_id)
    client.archive_experiment(exp.experiment_id)
    assert client.get_recurring_run(rr.recurring_run_id).status == "DISABLED"
    client.unarchive_experiment(exp.experiment_id)
    # KFP leaves them disabled after unarchiving.
    assert client.get_recurring_run(rr.recurring_run_id).status == "DISABLED"


def test_recurring_run_by_pipeline_id_only(client, rest, experiment):
    pipeline = client.upload_pipeline(str(pipeline_file(ADD_NUMBERS)), pipeline_name=unique("rr-latest"))
    response = rest.post(
        "recurringruns",
        json={
            "display_name": unique("rr-latest"),
            "experiment_id": experiment.experiment_id,
            "pipeline_version_reference": {"pipeline_id": pipeline.pipeline_id},
            "runtime_config": {"parameters": {"a": 1, "b": 2}},
            "max_concurrency": 1,
            "mode": "ENABLE",
            "trigger": {"periodic_schedule": {"interval_second": 3600}},
        },
    )
    assert response.status_code == 200, response.text
    fetched = client.get_recurring_run(response.json()["recurring_run_id"])
    # Not pinned: the reference names the pipeline only, so each run takes the latest version.
    assert fetched.pipeline_version_reference.pipeline_id == pipeline.pipeline_id
    assert not fetched.pipeline_version_reference.pipeline_version_id


def test_recurring_run_echoes_service_account_and_pipeline_root(client, experiment):
    rr = periodic(client, experiment.experiment_id, service_account="sa-e2e", pipeline_root="/tmp/kfpd-e2e-rr")
    fetched = client.get_recurring_run(rr.recurring_run_id)
    assert fetched.service_account == "sa-e2e"
    assert fetched.runtime_config.pipeline_root == "/tmp/kfpd-e2e-rr"


def test_recurring_run_namespace_in_single_user_mode(client, experiment):
    # Single-user KFP reports recurring runs in its own namespace (POD_NAMESPACE, "kubeflow").
    rr = periodic(client, experiment.experiment_id)
    assert client.get_recurring_run(rr.recurring_run_id).namespace == "kubeflow"
