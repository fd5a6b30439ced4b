"""Paging is consistent for every list method: the pages of any sort concatenate to the single-page answer."""

import json

import pytest

from support import page_through, pipeline_file, unique

COUNT = 7
SORTS = ["", "created_at", "created_at desc", "name", "name desc", "display_name desc"]
PAGE_SIZES = [1, 2, 3]


@pytest.fixture(scope="module")
def world(client):
    """COUNT objects of every kind, created in quick succession (many share a created_at second)."""
    prefix = unique("pg")
    experiment = client.create_experiment(name=f"{prefix}-exp")
    for i in range(COUNT):
        client.create_experiment(name=f"{prefix}-e{(i * 3) % COUNT}")
    pipeline = client.upload_pipeline(str(pipeline_file("add.yaml")), pipeline_name=f"{prefix}-p")
    for i in range(COUNT):
        client.upload_pipeline(str(pipeline_file("identity.yaml")), pipeline_name=f"{prefix}-p{(i * 3) % COUNT}")
        client.upload_pipeline_version(
            str(pipeline_file("add.yaml")),
            pipeline_version_name=f"{prefix}-v{(i * 3) % COUNT}",
            pipeline_id=pipeline.pipeline_id,
        )
    version = client.list_pipeline_versions(pipeline_id=pipeline.pipeline_id).pipeline_versions[0]
    for i in range(COUNT):
        client.run_pipeline(
            experiment_id=experiment.experiment_id,
            job_name=f"{prefix}-r{(i * 3) % COUNT}",
            pipeline_id=pipeline.pipeline_id,
            version_id=version.pipeline_version_id,
            params={"a": i, "b": 1},
        )
        client.create_recurring_run(
            experiment_id=experiment.experiment_id,
            job_name=f"{prefix}-rr{(i * 3) % COUNT}",
            pipeline_id=pipeline.pipeline_id,
            version_id=version.pipeline_version_id,
            params={"a": i, "b": 1},
            interval_second=3600,
        )
    return {"prefix": prefix, "experiment_id": experiment.experiment_id, "pipeline_id": pipeline.pipeline_id}


def lister(client, world, kind):
    """(list function taking page_token/page_size/sort_by/filter, items attribute, id attribute)."""
    if kind == "experiments":
        return client.list_experiments, "experiments", "experiment_id"
    if kind == "pipelines":
        return client.list_pipelines, "pipelines", "pipeline_id"
    if kind == "versions":
        return (
            lambda **kw: client.list_pipeline_versions(pipeline_id=world["pipeline_id"], **kw),
            "pipeline_versions",
            "pipeline_version_id",
        )
    if kind == "runs":
        return (lambda **kw: client.list_runs(experiment_id=world["experiment_id"], **kw)), "runs", "run_id"
    if kind == "recurring_runs":
        return (
            lambda **kw: client.list_recurring_runs(experiment_id=world["experiment_id"], **kw),
            "recurring_runs",
            "recurring_run_id",
        )
    raise AssertionError(kind)


KINDS = ["experiments", "pipelines", "versions", "runs", "recurring_runs"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("sort_by", SORTS)
@pytest.mark.parametrize("page_size", PAGE_SIZES)
def test_pages_concatenate_to_the_full_list(client, world, kind, sort_by, page_size):
    fetch, items_attr, id_attr = lister(client, world, kind)
    full = fetch(page_token="", page_size=200, sort_by=sort_by)
    expected = [getattr(item, id_attr) for item in getattr(full, items_attr)]
    assert len(expected) >= COUNT
    assert full.total_size == len(expected)

    items, sizes = page_through(
        lambda token: fetch(page_token=token, page_size=page_size, sort_by=sort_by), items_attr
    )
    assert [getattr(item, id_attr) for item in items] == expected
    assert all(size == page_size for size in sizes[:-1])
    assert 1 <= sizes[-1] <= page_size


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("sort_by", ["name", "created_at desc"])
def test_sort_order_is_correct(client, world, kind, sort_by):
    fetch, items_attr, _ = lister(client, world, kind)
    items = getattr(fetch(page_token="", page_size=200, sort_by=sort_by), items_attr)
    field = "created_at" if sort_by.startswith("created_at") else ("display_name" if kind in ("experiments", "runs", "recurring_runs") else "name")
    values = [getattr(item, field) for item in items]
    assert values == sorted(values, reverse=sort_by.endswith("desc"))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("repeat_filter", [True, False])
def test_filtered_paging(client, world, kind, repeat_filter):
    fetch, items_attr, id_attr = lister(client, world, kind)
    key = "name" if kind in ("pipelines", "versions") else "display_name"
    # Every object whose name has "-x3" style suffix digits 1..3 of this world's prefix.
    names = {f"{world['prefix']}-{tag}{i}" for i in (1, 2, 3) for tag in ("e", "p", "v", "r", "rr")}
    flt = json.dumps(
        {"predicates": [{"operation": "IN", "key": key, "string_values": {"values": sorted(names)}}]}
    )
    full = fetch(page_token="", page_size=200, sort_by="name desc", filter=flt)
    expected = [getattr(item, id_attr) for item in getattr(full, items_attr)]
    assert len(expected) == 3
    assert full.total_size == 3

    def page(token):
        kwargs = {"page_token": token, "page_size": 2}
        if repeat_filter or not token:
            kwargs.update(sort_by="name desc", filter=flt)
        return fetch(**kwargs)

    items, sizes = page_through(page, items_attr)
    assert [getattr(item, id_attr) for item in items] == expected
    assert sizes == [2, 1]
