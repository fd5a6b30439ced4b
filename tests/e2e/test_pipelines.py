"""Pipelines and pipeline versions: uploads of every package kind, get, list, update, delete."""

import datetime
import json
import tarfile
import zipfile

import kfp_server_api
import pytest
import yaml
from kfp import dsl

from support import (
    PIPELINES,
    api_error,
    assert_same_json,
    corpus_file,
    corpus_files,
    eq_filter,
    error_text,
    load_yaml_spec,
    page_through,
    pipeline_file,
    unique,
)

# Committed pipelines (tests/pipelines/).
ADD_NUMBERS = "add.yaml"
HELLO_WORLD = "hello.yaml"
IDENTITY = "identity.yaml"

CORPUS_YAMLS = corpus_files("*.yaml")
# Invalid packages: the committed ones always, the corpus's `invalid/` when present.
INVALID_FILES = sorted(f"invalid/{p.name}" for p in (PIPELINES / "invalid").iterdir() if p.is_file()) + [
    f"corpus:{relative}" for relative in corpus_files("invalid/*", exclude="-")
]


def invalid_file(name):
    """A committed invalid package, or (`corpus:` prefix) one of the corpus's."""
    if name.startswith("corpus:"):
        return corpus_file(name[len("corpus:"):])
    return pipeline_file(name)


def upload(client, relative, name=None, description=None):
    return client.upload_pipeline(str(pipeline_file(relative)), pipeline_name=name or unique("pl"), description=description)


def upload_corpus(client, relative, name=None):
    return client.upload_pipeline(str(corpus_file(relative)), pipeline_name=name or unique("pl"))


def only_version(client, pipeline_id):
    versions = client.list_pipeline_versions(pipeline_id=pipeline_id)
    assert versions.pipeline_versions is not None and len(versions.pipeline_versions) == 1, versions
    return versions.pipeline_versions[0]


def expected_spec_of_yaml(path):
    """What GetPipelineVersion must return as pipeline_spec for a YAML package."""
    with open(path, "r", encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d is not None]
    if len(docs) == 1:
        return docs[0]
    assert len(docs) == 2, path
    return {"pipeline_spec": docs[0], "platform_spec": docs[1]}


def substring_filter(key, value):
    return json.dumps({"predicates": [{"operation": "IS_SUBSTRING", "key": key, "string_value": value}]})


def make_tarball(tmp_path, relative, member="pipeline.yaml"):
    target = tmp_path / "package.tar.gz"
    with tarfile.open(target, "w:gz") as tar:
        tar.add(str(pipeline_file(relative)), arcname=member)
    return target


def delete_all_versions(client, pipeline_id):
    for version in client.list_pipeline_versions(pipeline_id=pipeline_id, page_size=200).pipeline_versions or []:
        client.delete_pipeline_version(pipeline_id, version.pipeline_version_id)


# --------------------------------------------------------------------------- upload


def test_upload_yaml_creates_pipeline_and_first_version(client):
    name = unique("pl-yaml")
    before = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)
    pipeline = upload(client, ADD_NUMBERS, name=name, description="adds two numbers")
    assert pipeline.pipeline_id
    assert pipeline.name == name
    assert pipeline.display_name == name
    assert pipeline.description == "adds two numbers"
    assert pipeline.created_at > before
    assert not pipeline.namespace

    version = only_version(client, pipeline.pipeline_id)
    assert version.pipeline_id == pipeline.pipeline_id
    assert version.name == name
    assert version.display_name == name
    assert version.description == "adds two numbers"
    assert version.pipeline_version_id

    full = client.get_pipeline_version(pipeline.pipeline_id, version.pipeline_version_id)
    assert isinstance(full.pipeline_spec, dict)
    assert_same_json(full.pipeline_spec, load_yaml_spec(pipeline_file(ADD_NUMBERS)))


def test_upload_without_name_uses_pipeline_info_name(client):
    # Without pipeline_name the SDK parses the file and sends pipelineInfo.name.
    pipeline = client.upload_pipeline(str(pipeline_file(HELLO_WORLD)))
    assert pipeline.name == load_yaml_spec(pipeline_file(HELLO_WORLD))["pipelineInfo"]["name"]
    assert pipeline.display_name == pipeline.name


def test_upload_with_display_name_via_raw_api(client):
    name = unique("pl-display")
    pipeline = client.pipeline_uploads.upload_pipeline(
        str(pipeline_file(IDENTITY)), name=name, display_name="Identity Pipeline", description="raw upload"
    )
    assert pipeline.name == name
    assert pipeline.display_name == "Identity Pipeline"
    assert client.get_pipeline(pipeline.pipeline_id).display_name == "Identity Pipeline"


def test_upload_json_package(client):
    path = corpus_file("pipeline_with_importer.json")
    pipeline = client.upload_pipeline(str(path), pipeline_name=unique("pl-json"))
    version = only_version(client, pipeline.pipeline_id)
    full = client.get_pipeline_version(pipeline.pipeline_id, version.pipeline_version_id)
    with open(path, "r", encoding="utf-8") as f:
        assert_same_json(full.pipeline_spec, json.load(f))


def test_upload_committed_json_package(client):
    path = pipeline_file("add.json")
    pipeline = client.upload_pipeline(str(path), pipeline_name=unique("pl-json"))
    version = only_version(client, pipeline.pipeline_id)
    full = client.get_pipeline_version(pipeline.pipeline_id, version.pipeline_version_id)
    with open(path, "r", encoding="utf-8") as f:
        assert_same_json(full.pipeline_spec, json.load(f))
    assert_same_json(full.pipeline_spec, load_yaml_spec(pipeline_file(ADD_NUMBERS)))


@pytest.mark.parametrize("member", ["pipeline.yaml", "adder.yaml"])
def test_upload_committed_zip_package(client, tmp_path, member):
    path = tmp_path / "add.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.write(pipeline_file(ADD_NUMBERS), member)
    pipeline = client.upload_pipeline(str(path), pipeline_name=unique("pl-zip"))
    version = only_version(client, pipeline.pipeline_id)
    full = client.get_pipeline_version(pipeline.pipeline_id, version.pipeline_version_id)
    assert_same_json(full.pipeline_spec, load_yaml_spec(pipeline_file(ADD_NUMBERS)))


def test_upload_zip_package(client):
    path = corpus_file("arguments_parameters.zip")
    pipeline = client.upload_pipeline(str(path), pipeline_name=unique("pl-zip"))
    version = only_version(client, pipeline.pipeline_id)
    full = client.get_pipeline_version(pipeline.pipeline_id, version.pipeline_version_id)
    with zipfile.ZipFile(path) as archive:
        (member,) = [n for n in archive.namelist() if n.endswith(".yaml")]
        expected = yaml.safe_load(archive.read(member))
    assert_same_json(full.pipeline_spec, expected)


def test_upload_tar_gz_package(client, tmp_path):
    tarball = make_tarball(tmp_path, ADD_NUMBERS)
    name = unique("pl-targz")
    pipeline = client.upload_pipeline(str(tarball), pipeline_name=name)
    assert pipeline.name == name
    version = only_version(client, pipeline.pipeline_id)
    full = client.get_pipeline_version(pipeline.pipeline_id, version.pipeline_version_id)
    assert_same_json(full.pipeline_spec, load_yaml_spec(pipeline_file(ADD_NUMBERS)))


def test_upload_tar_gz_with_other_member_name(client, tmp_path):
    # Without a pipeline.yaml member the first (YAML) entry is the pipeline.
    tarball = make_tarball(tmp_path, IDENTITY, member="identity.yaml")
    pipeline = client.upload_pipeline(str(tarball), pipeline_name=unique("pl-targz2"))
    version = only_version(client, pipeline.pipeline_id)
    full = client.get_pipeline_version(pipeline.pipeline_id, version.pipeline_version_id)
    assert_same_json(full.pipeline_spec, load_yaml_spec(pipeline_file(IDENTITY)))


COMMITTED_YAMLS = sorted(p.name for p in PIPELINES.glob("*.yaml"))


@pytest.mark.parametrize("relative", COMMITTED_YAMLS)
def test_committed_pipeline_spec_round_trips(client, relative):
    pipeline = upload(client, relative, name=unique("pl-committed"))
    version = only_version(client, pipeline.pipeline_id)
    full = client.get_pipeline_version(pipeline.pipeline_id, version.pipeline_version_id)
    assert_same_json(full.pipeline_spec, expected_spec_of_yaml(pipeline_file(relative)))


@pytest.mark.parametrize("relative", CORPUS_YAMLS)
def test_corpus_pipeline_spec_round_trips(client, relative):
    pipeline = upload_corpus(client, relative, name=unique("pl-corpus"))
    version = only_version(client, pipeline.pipeline_id)
    full = client.get_pipeline_version(pipeline.pipeline_id, version.pipeline_version_id)
    assert_same_json(full.pipeline_spec, expected_spec_of_yaml(corpus_file(relative)))


def test_duplicate_pipeline_upload_is_409(client):
    name = unique("pl-dup")
    first = upload(client, ADD_NUMBERS, name=name)
    with api_error(409):
        upload(client, IDENTITY, name=name)
    listed = client.list_pipelines(filter=eq_filter("name", name))
    assert [p.pipeline_id for p in listed.pipelines] == [first.pipeline_id]


@pytest.mark.parametrize("filename", INVALID_FILES)
def test_invalid_package_is_rejected_and_not_listed(client, filename):
    name = unique("x-invalid")
    try:
        client.upload_pipeline(str(invalid_file(filename)), pipeline_name=name)
    except kfp_server_api.ApiException as exc:
        assert 400 <= exc.status < 500, f"HTTP {exc.status}: {exc.body}"
    else:
        pytest.fail(f"{filename} was accepted")
    assert client.get_pipeline_id(name) is None
    listed = client.list_pipelines(filter=eq_filter("name", name))
    assert not listed.pipelines


@pytest.mark.parametrize("filename", INVALID_FILES)
def test_invalid_package_is_rejected_as_version(client, filename):
    pipeline = upload(client, IDENTITY, name=unique("pl-badver"))
    try:
        client.upload_pipeline_version(
            str(invalid_file(filename)), pipeline_version_name=unique("x-invalid"), pipeline_id=pipeline.pipeline_id
        )
    except kfp_server_api.ApiException as exc:
        assert 400 <= exc.status < 500, f"HTTP {exc.status}: {exc.body}"
    else:
        pytest.fail(f"{filename} was accepted")
    assert len(client.list_pipeline_versions(pipeline_id=pipeline.pipeline_id).pipeline_versions) == 1


def test_upload_error_body_has_error_message(rest):
    response = rest.post(
        "pipelines/upload",
        params={"name": unique("x-err")},
        files={"uploadfile": ("no_name.yaml", pipeline_file("invalid/no-name.yaml").read_bytes(), "application/octet-stream")},
    )
    assert response.status_code == 400, response.text
    body = response.json()
    assert body.get("error_message"), body


# --------------------------------------------------------------------------- versions


def test_upload_pipeline_version_by_pipeline_id(client):
    pipeline = upload(client, IDENTITY, name=unique("pl-ver"))
    version_name = unique("v2")
    version = client.upload_pipeline_version(
        str(pipeline_file(ADD_NUMBERS)),
        pipeline_version_name=version_name,
        pipeline_id=pipeline.pipeline_id,
        description="second version",
    )
    assert version.pipeline_id == pipeline.pipeline_id
    assert version.pipeline_version_id
    assert version.name == version_name
    assert version.display_name == version_name
    assert version.description == "second version"
    assert isinstance(version.created_at, datetime.datetime)
    assert_same_json(version.pipeline_spec, load_yaml_spec(pipeline_file(ADD_NUMBERS)))

    fetched = client.get_pipeline_version(pipeline.pipeline_id, version.pipeline_version_id)
    assert fetched.name == version_name
    assert_same_json(fetched.pipeline_spec, load_yaml_spec(pipeline_file(ADD_NUMBERS)))

    versions = client.list_pipeline_versions(pipeline_id=pipeline.pipeline_id).pipeline_versions
    assert len(versions) == 2
    assert version.pipeline_version_id in {v.pipeline_version_id for v in versions}


def test_upload_pipeline_version_by_pipeline_name(client):
    name = unique("pl-vername")
    pipeline = upload(client, IDENTITY, name=name)
    version = client.upload_pipeline_version(
        str(pipeline_file(HELLO_WORLD)), pipeline_version_name=unique("v"), pipeline_name=name
    )
    assert version.pipeline_id == pipeline.pipeline_id
    assert_same_json(version.pipeline_spec, load_yaml_spec(pipeline_file(HELLO_WORLD)))


def test_upload_pipeline_version_duplicate_name_is_409(client):
    pipeline = upload(client, IDENTITY, name=unique("pl-verdup"))
    version_name = unique("v")
    client.upload_pipeline_version(
        str(pipeline_file(IDENTITY)), pipeline_version_name=version_name, pipeline_id=pipeline.pipeline_id
    )
    with api_error(409):
        client.upload_pipeline_version(
            str(pipeline_file(IDENTITY)), pipeline_version_name=version_name, pipeline_id=pipeline.pipeline_id
        )


def test_upload_pipeline_version_to_unknown_pipeline_fails(client):
    with pytest.raises(kfp_server_api.ApiException) as info:
        client.upload_pipeline_version(
            str(pipeline_file(IDENTITY)),
            pipeline_version_name=unique("v"),
            pipeline_id="00000000-0000-0000-0000-00000000abcd",
        )
    assert info.value.status in (400, 404), info.value.body


def test_list_pipeline_versions_paging_sort_and_filter(client):
    pipeline = upload(client, IDENTITY, name=unique("pl-verlist"))
    names = [f"ver-{i}" for i in range(5)]
    for version_name in names:
        client.upload_pipeline_version(
            str(pipeline_file(IDENTITY)), pipeline_version_name=version_name, pipeline_id=pipeline.pipeline_id
        )
    all_names = sorted(names + [pipeline.name])

    items, sizes = page_through(
        lambda token: client.list_pipeline_versions(
            pipeline_id=pipeline.pipeline_id, page_token=token, page_size=4, sort_by="name desc"
        ),
        "pipeline_versions",
    )
    assert sizes == [4, 2]
    assert [v.name for v in items] == sorted(all_names, reverse=True)
    assert all(v.pipeline_id == pipeline.pipeline_id for v in items)

    first = client.list_pipeline_versions(pipeline_id=pipeline.pipeline_id, page_size=4)
    assert first.total_size == 6

    filtered = client.list_pipeline_versions(pipeline_id=pipeline.pipeline_id, filter=eq_filter("name", "ver-3"))
    assert [v.name for v in filtered.pipeline_versions] == ["ver-3"]
    assert filtered.total_size == 1


def test_list_pipeline_versions_sorted_by_created_at_desc(client):
    pipeline = upload(client, IDENTITY, name=unique("pl-vercreated"))
    for i in range(2):
        client.upload_pipeline_version(
            str(pipeline_file(IDENTITY)), pipeline_version_name=f"c-{i}", pipeline_id=pipeline.pipeline_id
        )
    listed = client.list_pipeline_versions(pipeline_id=pipeline.pipeline_id, sort_by="created_at desc")
    stamps = [v.created_at for v in listed.pipeline_versions]
    assert len(stamps) == 3
    assert stamps == sorted(stamps, reverse=True)


def test_delete_pipeline_version(client):
    pipeline = upload(client, IDENTITY, name=unique("pl-verdel"))
    version = client.upload_pipeline_version(
        str(pipeline_file(IDENTITY)), pipeline_version_name=unique("v"), pipeline_id=pipeline.pipeline_id
    )
    client.delete_pipeline_version(pipeline.pipeline_id, version.pipeline_version_id)
    with api_error(404):
        client.get_pipeline_version(pipeline.pipeline_id, version.pipeline_version_id)
    remaining = client.list_pipeline_versions(pipeline_id=pipeline.pipeline_id).pipeline_versions
    assert [v.name for v in remaining] == [pipeline.name]


# --------------------------------------------------------------------------- get / list


def test_get_pipeline(client):
    created = upload(client, IDENTITY, name=unique("pl-get"), description="get me")
    fetched = client.get_pipeline(created.pipeline_id)
    assert fetched.pipeline_id == created.pipeline_id
    assert fetched.name == created.name
    assert fetched.display_name == created.display_name
    assert fetched.description == "get me"
    assert fetched.created_at == created.created_at


def test_get_missing_pipeline_is_404(client):
    with api_error(404):
        client.get_pipeline("00000000-0000-0000-0000-000000000000")


def test_get_pipeline_id_by_name(client):
    created = upload(client, IDENTITY, name=unique("pl-id"))
    assert client.get_pipeline_id(created.name) == created.pipeline_id
    assert client.get_pipeline_id(unique("pl-nope")) is None


def test_get_pipeline_by_name_via_raw_api(client):
    created = upload(client, IDENTITY, name=unique("pl-byname"))
    fetched = client.pipelines.pipeline_service_get_pipeline_by_name(name=created.name)
    assert fetched.pipeline_id == created.pipeline_id
    assert fetched.name == created.name
    with api_error(404):
        client.pipelines.pipeline_service_get_pipeline_by_name(name=unique("pl-nope"))


def test_list_pipelines_paging_sort_and_filter(client):
    prefix = unique("pl-list")
    created = [upload(client, IDENTITY, name=f"{prefix}-{i}") for i in range(5)]
    names = sorted(p.name for p in created)

    items, sizes = page_through(
        lambda token: client.list_pipelines(
            page_token=token, page_size=2, sort_by="name desc", filter=substring_filter("name", prefix)
        ),
        "pipelines",
    )
    assert sizes == [2, 2, 1]
    assert [p.name for p in items] == sorted(names, reverse=True)

    ascending = client.list_pipelines(sort_by="name", filter=substring_filter("name", prefix))
    assert [p.name for p in ascending.pipelines] == names
    assert ascending.total_size == 5

    one = client.list_pipelines(filter=eq_filter("name", created[2].name))
    assert [p.pipeline_id for p in one.pipelines] == [created[2].pipeline_id]

    by_int_enum = client.list_pipelines(
        filter=json.dumps({"predicates": [{"operation": 1, "key": "name", "stringValue": created[3].name}]})
    )
    assert [p.pipeline_id for p in by_int_enum.pipelines] == [created[3].pipeline_id]


def test_list_pipelines_pages_through_everything(client):
    prefix = unique("pl-all")
    for i in range(3):
        upload(client, IDENTITY, name=f"{prefix}-{i}")
    everything = client.list_pipelines(page_size=200)
    expected = [p.pipeline_id for p in everything.pipelines]
    assert everything.total_size == len(expected) >= 3
    items, sizes = page_through(lambda token: client.list_pipelines(page_token=token, page_size=3), "pipelines")
    assert [p.pipeline_id for p in items] == expected
    assert all(size == 3 for size in sizes[:-1])


def test_list_pipelines_sorted_by_created_at_desc(client):
    listed = client.list_pipelines(sort_by="created_at desc", page_size=200)
    stamps = [p.created_at for p in listed.pipelines]
    assert len(stamps) >= 2
    assert stamps == sorted(stamps, reverse=True)


# --------------------------------------------------------------------------- delete


def test_delete_pipeline_with_versions_is_400_until_versions_are_gone(client):
    pipeline = upload(client, IDENTITY, name=unique("pl-del"))
    client.upload_pipeline_version(
        str(pipeline_file(ADD_NUMBERS)), pipeline_version_name=unique("v"), pipeline_id=pipeline.pipeline_id
    )
    with api_error(400):
        client.delete_pipeline(pipeline.pipeline_id)
    assert client.get_pipeline(pipeline.pipeline_id).pipeline_id == pipeline.pipeline_id

    delete_all_versions(client, pipeline.pipeline_id)
    client.delete_pipeline(pipeline.pipeline_id)
    with api_error(404):
        client.get_pipeline(pipeline.pipeline_id)
    assert client.get_pipeline_id(pipeline.name) is None


def test_delete_missing_pipeline_is_404(client):
    with api_error(404):
        client.delete_pipeline("00000000-0000-0000-0000-000000000000")


# --------------------------------------------------------------------------- update and tags


def test_patch_pipeline_tags_add_replace_clear(client, rest):
    pipeline = upload(client, IDENTITY, name=unique("pl-tags"))
    path = f"pipelines/{pipeline.pipeline_id}"

    added = rest.patch(path, json={"tags": {"team": "ml", "env": "dev"}})
    assert added.status_code == 200, added.text
    assert added.json().get("tags") == {"team": "ml", "env": "dev"}
    assert rest.get(path).json().get("tags") == {"team": "ml", "env": "dev"}

    replaced = rest.patch(path, json={"tags": {"team": "infra"}})
    assert replaced.status_code == 200, replaced.text
    assert replaced.json().get("tags") == {"team": "infra"}
    assert rest.get(path).json().get("tags") == {"team": "infra"}

    renamed = rest.patch(path, json={"display_name": "Renamed"})
    assert renamed.status_code == 200, renamed.text
    body = rest.get(path).json()
    assert body["display_name"] == "Renamed"
    assert body["name"] == pipeline.name
    assert body.get("tags") == {"team": "infra"}, "a PATCH without tags must keep them"

    cleared = rest.patch(path, json={"tags": {}})
    assert cleared.status_code == 200, cleared.text
    assert not rest.get(path).json().get("tags")
    assert rest.get(path).json()["display_name"] == "Renamed"


def test_patch_pipeline_rejects_invalid_tags(client, rest):
    pipeline = upload(client, IDENTITY, name=unique("pl-badtags"))
    path = f"pipelines/{pipeline.pipeline_id}"
    for tags in ({"a.b": "x"}, {"": "x"}, {"k": "v" * 64}, {f"k{i}": "v" for i in range(21)}):
        response = rest.patch(path, json={"tags": tags})
        assert response.status_code == 400, (tags, response.status_code, response.text)
    assert not rest.get(path).json().get("tags")


def test_patch_missing_pipeline_is_404(rest):
    response = rest.patch("pipelines/00000000-0000-0000-0000-000000000000", json={"tags": {"a": "b"}})
    assert response.status_code == 404, response.text


def test_filter_pipelines_by_tag(client, rest):
    team = unique("team")
    tagged = upload(client, IDENTITY, name=unique("pl-tagged"))
    other = upload(client, IDENTITY, name=unique("pl-other"))
    assert rest.patch(f"pipelines/{tagged.pipeline_id}", json={"tags": {"team": team}}).status_code == 200
    assert rest.patch(f"pipelines/{other.pipeline_id}", json={"tags": {"team": "someone-else"}}).status_code == 200

    listed = client.list_pipelines(filter=eq_filter("tags.team", team))
    assert [p.pipeline_id for p in listed.pipelines] == [tagged.pipeline_id]

    nothing = client.list_pipelines(filter=eq_filter("tags.team", unique("nobody")))
    assert not nothing.pipelines

    # Tags only support EQUALS on strings.
    response = rest.get(
        "pipelines", params={"filter": json.dumps({"predicates": [{"operation": "NOT_EQUALS", "key": "tags.team", "string_value": team}]})}
    )
    assert response.status_code == 400, response.text


def test_upload_with_tags_query_parameter(rest):
    name = unique("pl-uptags")
    response = rest.post(
        "pipelines/upload",
        params={"name": name, "tags": json.dumps({"team": "ml"})},
        files={"uploadfile": ("identity.yaml", pipeline_file(IDENTITY).read_bytes(), "application/octet-stream")},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["name"] == name
    assert body.get("tags") == {"team": "ml"}
    assert rest.get(f"pipelines/{body['pipeline_id']}").json().get("tags") == {"team": "ml"}


def test_upload_with_bad_tags_json_is_400(rest):
    response = rest.post(
        "pipelines/upload",
        params={"name": unique("x-badtags"), "tags": "{not json"},
        files={"uploadfile": ("identity.yaml", pipeline_file(IDENTITY).read_bytes(), "application/octet-stream")},
    )
    assert response.status_code == 400, response.text
    assert error_text(response)


def test_version_named_like_its_pipeline_is_409(client):
    pipeline = upload(client, IDENTITY, name=unique("pl-samename"))
    with api_error(409):
        client.upload_pipeline_version(
            str(pipeline_file(IDENTITY)), pipeline_version_name=pipeline.name, pipeline_id=pipeline.pipeline_id
        )


def test_name_is_reusable_after_delete(client):
    name = unique("pl-reuse")
    first = upload(client, IDENTITY, name=name)
    delete_all_versions(client, first.pipeline_id)
    client.delete_pipeline(first.pipeline_id)
    second = upload(client, ADD_NUMBERS, name=name)
    assert second.pipeline_id != first.pipeline_id
    assert client.get_pipeline_id(name) == second.pipeline_id


def test_pipeline_name_must_be_valid_for_kfp(client, tmp_path):
    # For v2 specs pipelineInfo.name must match ^[a-z0-9][a-z0-9-]{0,127}$.
    spec = load_yaml_spec(pipeline_file(IDENTITY))
    spec["pipelineInfo"]["name"] = "Not_A_Valid_Name"
    path = tmp_path / "bad-name.yaml"
    path.write_text(yaml.safe_dump(spec))
    name = unique("x-badinfo")
    with api_error(400):
        client.upload_pipeline(str(path), pipeline_name=name)
    assert client.get_pipeline_id(name) is None


@dsl.component(base_image="python:3.11")
def _echo(message: str) -> str:
    return message


@dsl.pipeline(name="e2e-uploaded-func")
def _uploaded_pipeline(message: str = "hello"):
    _echo(message=message)


def test_upload_pipeline_from_pipeline_func(client):
    name = unique("pl-func")
    pipeline = client.upload_pipeline_from_pipeline_func(_uploaded_pipeline, pipeline_name=name, description="compiled")
    assert pipeline.name == name
    assert pipeline.description == "compiled"
    version = only_version(client, pipeline.pipeline_id)
    spec = client.get_pipeline_version(pipeline.pipeline_id, version.pipeline_version_id).pipeline_spec
    assert spec["pipelineInfo"]["name"] == "e2e-uploaded-func"
    assert spec["root"]["inputDefinitions"]["parameters"]["message"]["defaultValue"] == "hello"

    second = client.upload_pipeline_version_from_pipeline_func(
        _uploaded_pipeline, pipeline_version_name=unique("v"), pipeline_id=pipeline.pipeline_id
    )
    assert second.pipeline_id == pipeline.pipeline_id
    assert second.pipeline_spec["pipelineInfo"]["name"] == "e2e-uploaded-func"


def test_upload_without_any_name_uses_file_name(rest):
    response = rest.post(
        "pipelines/upload",
        files={"uploadfile": (f"{unique('file')}.yaml", pipeline_file(IDENTITY).read_bytes(), "application/octet-stream")},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["name"].startswith("file-") and body["name"].endswith(".yaml"), body
    assert body["display_name"] == body["name"]


def test_delete_pipeline_with_cascade_removes_versions(client, rest):
    # The Client never sends cascade=true; the REST API has it.
    pipeline = upload(client, IDENTITY, name=unique("pl-cascade"))
    version = client.upload_pipeline_version(
        str(pipeline_file(IDENTITY)), pipeline_version_name=unique("v"), pipeline_id=pipeline.pipeline_id
    )
    response = rest.delete(f"pipelines/{pipeline.pipeline_id}", params={"cascade": "true"})
    assert response.status_code == 200, response.text
    with api_error(404):
        client.get_pipeline(pipeline.pipeline_id)
    with api_error(404):
        client.get_pipeline_version(pipeline.pipeline_id, version.pipeline_version_id)


@pytest.mark.parametrize("filename", ["package.tgz", "package.tar.gz"])
def test_upload_tarball_under_either_suffix(client, tmp_path, filename):
    tarball = make_tarball(tmp_path, ADD_NUMBERS)
    renamed = tarball.rename(tmp_path / filename)
    pipeline = client.upload_pipeline(str(renamed), pipeline_name=unique("pl-tgz"))
    version = only_version(client, pipeline.pipeline_id)
    full = client.get_pipeline_version(pipeline.pipeline_id, version.pipeline_version_id)
    assert_same_json(full.pipeline_spec, load_yaml_spec(pipeline_file(ADD_NUMBERS)))


def test_upload_zip_prefers_pipeline_yaml_member(client, tmp_path):
    path = tmp_path / "several.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("README.md", "not the pipeline")
        archive.write(pipeline_file(IDENTITY), "aaa-other.yaml")
        archive.write(pipeline_file(ADD_NUMBERS), "pipeline.yaml")
    pipeline = client.upload_pipeline(str(path), pipeline_name=unique("pl-zip2"))
    version = only_version(client, pipeline.pipeline_id)
    full = client.get_pipeline_version(pipeline.pipeline_id, version.pipeline_version_id)
    assert_same_json(full.pipeline_spec, load_yaml_spec(pipeline_file(ADD_NUMBERS)))


def test_upload_display_name_only_names_the_pipeline(rest):
    display = unique("pl-dn")
    response = rest.post(
        "pipelines/upload",
        params={"display_name": display},
        files={"uploadfile": ("identity.yaml", pipeline_file(IDENTITY).read_bytes(), "application/octet-stream")},
    )
    assert response.status_code == 200, response.text
    assert response.json()["name"] == display
    assert response.json()["display_name"] == display


def test_upload_version_code_source_url_is_echoed(client, rest):
    pipeline = upload(client, IDENTITY, name=unique("pl-src"))
    response = rest.post(
        "pipelines/upload_version",
        params={"pipelineid": pipeline.pipeline_id, "name": unique("v"), "code_source_url": "https://example.com/src"},
        files={"uploadfile": ("identity.yaml", pipeline_file(IDENTITY).read_bytes(), "application/octet-stream")},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["code_source_url"] == "https://example.com/src"
    fetched = client.get_pipeline_version(pipeline.pipeline_id, body["pipeline_version_id"])
    assert fetched.code_source_url == "https://example.com/src"
