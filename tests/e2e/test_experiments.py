"""Experiments through kfp.Client: create (get-or-create), get, list, archive, delete."""

import datetime
import json

import kfp_server_api
import pytest

from support import api_error, eq_filter, page_through, unique


def create_experiments(client, prefix, count):
    """Create `count` experiments named prefix-00, prefix-01, ... and return them."""
    return [client.create_experiment(name=f"{prefix}-{i:02d}") for i in range(count)]


def substring_filter(value):
    return json.dumps(
        {"predicates": [{"operation": "IS_SUBSTRING", "key": "display_name", "string_value": value}]}
    )


def test_default_experiment_exists(client):
    found = client.list_experiments(filter=eq_filter("display_name", "Default"))
    assert found.experiments is not None and len(found.experiments) == 1
    default = found.experiments[0]
    assert default.display_name == "Default"
    assert default.experiment_id
    assert default.storage_state == "AVAILABLE"
    assert client.get_experiment(experiment_name="Default").experiment_id == default.experiment_id


def test_create_experiment_returns_fields(client):
    name = unique("exp-fields")
    before = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)
    experiment = client.create_experiment(name=name, description="made by the e2e suite")
    assert experiment.experiment_id
    assert experiment.display_name == name
    assert experiment.description == "made by the e2e suite"
    assert experiment.storage_state == "AVAILABLE"
    assert not experiment.namespace
    assert isinstance(experiment.created_at, datetime.datetime)
    assert experiment.created_at > before


def test_create_experiment_is_get_or_create(client):
    name = unique("exp-twice")
    first = client.create_experiment(name=name)
    second = client.create_experiment(name=name)
    assert second.experiment_id == first.experiment_id
    listed = client.list_experiments(filter=eq_filter("display_name", name))
    assert [e.experiment_id for e in listed.experiments] == [first.experiment_id]
    assert listed.total_size == 1


def test_duplicate_experiment_name_via_raw_api_is_409(client):
    name = unique("exp-dup")
    client.create_experiment(name=name)
    with api_error(409):
        client.experiments.experiment_service_create_experiment(
            experiment=kfp_server_api.V2beta1Experiment(display_name=name)
        )


def test_get_experiment_by_id(client):
    created = client.create_experiment(name=unique("exp-get"), description="d")
    fetched = client.get_experiment(experiment_id=created.experiment_id)
    assert fetched.experiment_id == created.experiment_id
    assert fetched.display_name == created.display_name
    assert fetched.description == "d"
    assert fetched.created_at == created.created_at
    assert fetched.storage_state == "AVAILABLE"


def test_get_experiment_by_name(client):
    created = client.create_experiment(name=unique("exp-byname"))
    fetched = client.get_experiment(experiment_name=created.display_name)
    assert fetched.experiment_id == created.experiment_id


def test_get_experiment_by_missing_name_is_value_error(client):
    with pytest.raises(ValueError, match="No experiment is found"):
        client.get_experiment(experiment_name=unique("exp-missing"))


def test_get_experiment_by_missing_id_is_404(client):
    with api_error(404):
        client.get_experiment(experiment_id="00000000-0000-0000-0000-000000000000")


def test_list_experiments_pages_through_everything(client):
    create_experiments(client, unique("exp-page"), 7)
    everything = client.list_experiments(page_size=200)
    expected_ids = [e.experiment_id for e in everything.experiments]
    assert everything.total_size == len(expected_ids) >= 8  # 7 + Default
    assert not everything.next_page_token

    items, sizes = page_through(
        lambda token: client.list_experiments(page_token=token, page_size=3), "experiments"
    )
    ids = [e.experiment_id for e in items]
    assert len(ids) == len(set(ids)), "an experiment was returned on two pages"
    assert ids == expected_ids
    assert all(size == 3 for size in sizes[:-1]) and 1 <= sizes[-1] <= 3


def test_list_experiments_total_size_on_every_page(client):
    prefix = unique("exp-total")
    create_experiments(client, prefix, 5)
    first = client.list_experiments(page_size=2, filter=substring_filter(prefix))
    assert first.total_size == 5
    assert len(first.experiments) == 2
    assert first.next_page_token
    second = client.list_experiments(page_size=2, page_token=first.next_page_token)
    assert second.total_size == 5
    assert {e.display_name for e in second.experiments}.isdisjoint(
        {e.display_name for e in first.experiments}
    )


def test_list_experiments_sorted_by_name_desc(client):
    prefix = unique("exp-sort")
    created = create_experiments(client, prefix, 5)
    listed = client.list_experiments(sort_by="name desc", filter=substring_filter(prefix))
    names = [e.display_name for e in listed.experiments]
    assert names == sorted((e.display_name for e in created), reverse=True)


def test_list_experiments_sorted_by_name_across_pages(client):
    prefix = unique("exp-sortpage")
    created = create_experiments(client, prefix, 5)
    items, sizes = page_through(
        lambda token: client.list_experiments(
            page_token=token, page_size=2, sort_by="name desc", filter=substring_filter(prefix)
        ),
        "experiments",
    )
    assert sizes == [2, 2, 1]
    assert [e.display_name for e in items] == sorted((e.display_name for e in created), reverse=True)


def test_list_experiments_sorted_by_created_at_desc(client):
    create_experiments(client, unique("exp-created"), 3)
    listed = client.list_experiments(sort_by="created_at desc", page_size=200)
    stamps = [e.created_at for e in listed.experiments]
    assert len(stamps) >= 4
    assert stamps == sorted(stamps, reverse=True)
    ascending = client.list_experiments(sort_by="created_at", page_size=200)
    assert [e.created_at for e in ascending.experiments] == sorted(stamps)


def test_list_experiments_filter_equals_by_enum_name(client):
    created = create_experiments(client, unique("exp-eq"), 3)
    target = created[1]
    listed = client.list_experiments(
        filter=json.dumps(
            {"predicates": [{"operation": "EQUALS", "key": "display_name", "string_value": target.display_name}]}
        )
    )
    assert [e.experiment_id for e in listed.experiments] == [target.experiment_id]
    assert listed.total_size == 1


def test_list_experiments_filter_equals_by_enum_number(client):
    # The SDK itself sends {"operation": 1, "stringValue": ...}.
    created = create_experiments(client, unique("exp-eqint"), 2)
    target = created[0]
    listed = client.list_experiments(
        filter=json.dumps(
            {"predicates": [{"operation": 1, "key": "display_name", "stringValue": target.display_name}]}
        )
    )
    assert [e.experiment_id for e in listed.experiments] == [target.experiment_id]


def test_list_experiments_filter_matching_nothing_is_empty(client):
    listed = client.list_experiments(filter=eq_filter("display_name", unique("exp-none")))
    assert not listed.experiments
    assert not listed.total_size
    assert not listed.next_page_token


def test_archive_and_unarchive_experiment(client):
    experiment = client.create_experiment(name=unique("exp-archive"))
    client.archive_experiment(experiment.experiment_id)
    assert client.get_experiment(experiment_id=experiment.experiment_id).storage_state == "ARCHIVED"
    archived = client.list_experiments(
        filter=json.dumps(
            {
                "predicates": [
                    {"operation": "EQUALS", "key": "storage_state", "string_value": "ARCHIVED"},
                    {"operation": "EQUALS", "key": "display_name", "string_value": experiment.display_name},
                ]
            }
        )
    )
    assert [e.experiment_id for e in archived.experiments] == [experiment.experiment_id]

    client.unarchive_experiment(experiment.experiment_id)
    assert client.get_experiment(experiment_id=experiment.experiment_id).storage_state == "AVAILABLE"


def test_archive_missing_experiment_is_404(client):
    with api_error(404):
        client.archive_experiment("00000000-0000-0000-0000-000000000001")


def test_delete_experiment(client):
    experiment = client.create_experiment(name=unique("exp-delete"))
    client.delete_experiment(experiment.experiment_id)
    with api_error(404):
        client.get_experiment(experiment_id=experiment.experiment_id)
    listed = client.list_experiments(filter=eq_filter("display_name", experiment.display_name))
    assert not listed.experiments
    # The name is free again.
    again = client.create_experiment(name=experiment.display_name)
    assert again.experiment_id != experiment.experiment_id


def test_delete_missing_experiment_is_404(client):
    with api_error(404):
        client.delete_experiment("00000000-0000-0000-0000-000000000002")


def test_delete_default_experiment_is_409(client):
    default = client.get_experiment(experiment_name="Default")
    with api_error(409):
        client.delete_experiment(default.experiment_id)
    assert client.get_experiment(experiment_id=default.experiment_id).display_name == "Default"


def test_namespace_is_ignored_in_single_user_mode(client):
    experiment = client.create_experiment(name=unique("exp-ns"))
    listed = client.list_experiments(namespace="someone", filter=eq_filter("display_name", experiment.display_name))
    assert [e.experiment_id for e in listed.experiments] == [experiment.experiment_id]


def test_list_experiments_filter_created_at(client):
    experiment = client.create_experiment(name=unique("exp-time"))
    created = experiment.created_at
    epoch = int(created.timestamp())

    def ids(predicate):
        listed = client.list_experiments(page_size=200, filter=json.dumps({"predicates": [predicate]}))
        return {e.experiment_id for e in listed.experiments or []}

    assert experiment.experiment_id in ids(
        {"operation": "GREATER_THAN_EQUALS", "key": "created_at", "timestamp_value": created.isoformat()}
    )
    assert experiment.experiment_id not in ids(
        {"operation": "GREATER_THAN", "key": "created_at", "long_value": str(epoch + 3600)}
    )
    assert experiment.experiment_id in ids(
        {"operation": "LESS_THAN", "key": "created_at", "string_value": str(epoch + 3600)}
    )
    # Upstream KFP accepts an RFC 3339 string here too; it must at least not fail.
    assert experiment.experiment_id in ids(
        {"operation": "GREATER_THAN", "key": "created_at", "string_value": "2000-01-01T00:00:00Z"}
    )


def test_list_experiments_filter_not_equals_and_substring(client):
    prefix = unique("exp-ops")
    created = create_experiments(client, prefix, 3)
    not_first = client.list_experiments(
        filter=json.dumps(
            {
                "predicates": [
                    {"operation": "IS_SUBSTRING", "key": "display_name", "string_value": prefix},
                    {"operation": "NOT_EQUALS", "key": "display_name", "string_value": created[0].display_name},
                ]
            }
        )
    )
    assert sorted(e.display_name for e in not_first.experiments) == [created[1].display_name, created[2].display_name]


def test_unicode_experiment_name_round_trips(client):
    name = unique("实验-éxp")
    experiment = client.create_experiment(name=name, description="описание")
    fetched = client.get_experiment(experiment_name=name)
    assert fetched.experiment_id == experiment.experiment_id
    assert fetched.display_name == name
    assert fetched.description == "описание"


def test_new_experiment_has_epoch_last_run_created_at(client):
    experiment = client.create_experiment(name=unique("exp-norun"))
    fetched = client.get_experiment(experiment_id=experiment.experiment_id)
    assert fetched.last_run_created_at is None or fetched.last_run_created_at.timestamp() == 0
