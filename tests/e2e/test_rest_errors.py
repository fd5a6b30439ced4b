"""Error answers on the REST surface, checked with plain HTTP: status codes and body shapes.

Every malformed request must be a 4xx, never a 500."""

import base64
import json

import pytest

from support import load_yaml_spec, pipeline_file, unique

MiB = 1024 * 1024
MISSING_ID = "00000000-0000-0000-0000-000000000000"


def assert_grpc_error(response, status, code):
    """KFP's grpc-gateway error body: {"code": <grpc code>, "message": "...", ...}."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers.get("content-type", "").startswith("application/json"), response.headers
    body = response.json()
    assert body.get("code") == code, body
    assert isinstance(body.get("message"), str) and body["message"], body
    return body


@pytest.fixture(scope="module")
def experiment_id(rest):
    response = rest.post("experiments", json={"display_name": unique("errors")})
    assert response.status_code == 200, response.text
    return response.json()["experiment_id"]


@pytest.fixture(scope="module")
def pipeline_id(rest):
    response = rest.post(
        "pipelines/upload",
        params={"name": unique("errors")},
        files={"uploadfile": ("identity.yaml", pipeline_file("identity.yaml").read_bytes(), "application/octet-stream")},
    )
    assert response.status_code == 200, response.text
    return response.json()["pipeline_id"]


# --------------------------------------------------------------------------- request bodies


def test_valid_json_body_is_accepted(rest):
    response = rest.post("experiments", json={"display_name": unique("ok"), "description": "d"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["display_name"].startswith("ok-")
    assert body["storage_state"] == "AVAILABLE"
    assert "experimentId" not in body, "responses use proto (snake_case) field names"


def test_camel_case_request_fields_are_accepted(rest):
    name = unique("camel")
    response = rest.post("experiments", json={"displayName": name})
    assert response.status_code == 200, response.text
    assert response.json()["display_name"] == name


def test_unknown_json_field_is_400(rest):
    response = rest.post("experiments", json={"display_name": unique("x"), "no_such_field": 1})
    assert_grpc_error(response, 400, 3)


def test_malformed_json_is_400(rest):
    response = rest.post("experiments", data=b'{"display_name": ', headers={"Content-Type": "application/json"})
    assert_grpc_error(response, 400, 3)


def test_json_of_wrong_type_is_400(rest):
    response = rest.post("experiments", json={"display_name": 42})
    assert_grpc_error(response, 400, 3)


def test_wrong_content_type_is_400(rest):
    response = rest.post(
        "experiments", data=json.dumps({"display_name": unique("x")}), headers={"Content-Type": "text/plain"}
    )
    assert response.status_code == 400, (response.status_code, response.text)


def test_unknown_enum_name_in_body_is_400(rest, experiment_id):
    response = rest.post(
        "recurringruns",
        json={
            "display_name": unique("x"),
            "experiment_id": experiment_id,
            "mode": "SOMETIMES",
            "trigger": {"periodic_schedule": {"interval_second": 60}},
        },
    )
    assert_grpc_error(response, 400, 3)


def test_empty_post_on_action_endpoint_is_accepted(rest, experiment_id):
    # The SDK sends `:archive` with Content-Length 0 and no body.
    response = rest.post(f"experiments/{experiment_id}:archive", data=b"")
    assert response.status_code == 200, response.text
    assert response.json() == {}
    response = rest.post(f"experiments/{experiment_id}:unarchive", data=b"")
    assert response.status_code == 200, response.text


def test_body_over_32_mib_is_413(rest):
    payload = b"#" * (33 * MiB)
    response = rest.post(
        "pipelines/upload",
        params={"name": unique("x-huge")},
        files={"uploadfile": ("huge.yaml", payload, "application/octet-stream")},
        timeout=60,
    )
    assert response.status_code == 413, (response.status_code, response.text[:500])


def test_json_body_over_32_mib_is_413(rest):
    payload = json.dumps({"display_name": unique("x"), "description": "d" * (33 * MiB)})
    response = rest.post("experiments", data=payload, headers={"Content-Type": "application/json"}, timeout=60)
    assert response.status_code == 413, (response.status_code, response.text[:500])


def test_server_still_serves_after_oversized_body(rest):
    assert rest.get("healthz").status_code == 200


# --------------------------------------------------------------------------- uploads


def test_upload_without_file_is_400(rest):
    response = rest.post("pipelines/upload", params={"name": unique("x-nofile")}, files={"other": ("a", b"b")})
    assert response.status_code == 400, response.text
    assert response.json().get("error_message"), response.text


def test_upload_version_without_pipelineid_is_400(rest):
    response = rest.post(
        "pipelines/upload_version",
        params={"name": unique("x-noid")},
        files={"uploadfile": ("identity.yaml", pipeline_file("identity.yaml").read_bytes(), "application/octet-stream")},
    )
    assert response.status_code == 400, response.text
    assert response.json().get("error_message"), response.text


def test_duplicate_upload_is_409_with_error_message(rest):
    name = unique("dup")
    files = {"uploadfile": ("identity.yaml", pipeline_file("identity.yaml").read_bytes(), "application/octet-stream")}
    assert rest.post("pipelines/upload", params={"name": name}, files=files).status_code == 200
    response = rest.post("pipelines/upload", params={"name": name}, files=files)
    assert response.status_code == 409, response.text
    assert response.json().get("error_message"), response.text


# --------------------------------------------------------------------------- not found


@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", f"experiments/{MISSING_ID}"),
        ("GET", f"pipelines/{MISSING_ID}"),
        ("GET", f"pipelines/{MISSING_ID}/versions/{MISSING_ID}"),
        ("GET", f"runs/{MISSING_ID}"),
        ("GET", f"recurringruns/{MISSING_ID}"),
        ("DELETE", f"runs/{MISSING_ID}"),
        ("POST", f"runs/{MISSING_ID}:archive"),
        ("POST", f"recurringruns/{MISSING_ID}:disable"),
    ],
)
def test_missing_resource_is_404_with_status_body(rest, method, path):
    response = rest.request(method, path)
    body = assert_grpc_error(response, 404, 5)
    assert MISSING_ID in body["message"], body


def test_unknown_path_is_404(rest):
    response = rest.get("no/such/endpoint")
    assert response.status_code == 404, response.text


# --------------------------------------------------------------------------- list parameters

LIST_ENDPOINTS = ["experiments", "pipelines", "runs", "recurringruns", "versions"]


def list_path(endpoint, pipeline_id):
    return f"pipelines/{pipeline_id}/versions" if endpoint == "versions" else endpoint


def predicate(**fields):
    return json.dumps({"predicates": [fields]})


BAD_FILTERS = {
    "not-json": "{not json",
    "unknown-key": predicate(operation="EQUALS", key="no_such_key", string_value="x"),
    "empty-key": predicate(operation="EQUALS", key="", string_value="x"),
    "unknown-operation": predicate(operation="SOMETIMES", key="display_name", string_value="x"),
    "in-with-scalar": predicate(operation="IN", key="display_name", string_value="x"),
    "equals-with-list": predicate(operation="EQUALS", key="display_name", string_values={"values": ["x"]}),
    "unknown-field": json.dumps({"predicates": [], "bogus": 1}),
}


@pytest.mark.parametrize("endpoint", LIST_ENDPOINTS)
@pytest.mark.parametrize("case", sorted(BAD_FILTERS))
def test_bad_filter_is_400(rest, pipeline_id, endpoint, case):
    response = rest.get(list_path(endpoint, pipeline_id), params={"filter": BAD_FILTERS[case]})
    assert_grpc_error(response, 400, 3)


@pytest.mark.parametrize("endpoint", LIST_ENDPOINTS)
@pytest.mark.parametrize("sort_by", ["no_such_field", "name sideways", "name desc extra", "created_at descending"])
def test_bad_sort_by_is_400(rest, pipeline_id, endpoint, sort_by):
    response = rest.get(list_path(endpoint, pipeline_id), params={"sort_by": sort_by})
    assert_grpc_error(response, 400, 3)


@pytest.mark.parametrize("endpoint", LIST_ENDPOINTS)
@pytest.mark.parametrize(
    "token",
    [
        "not-base64!!",
        base64.b64encode(b"not json").decode(),
        base64.b64encode(b'{"SortByFieldName": "x; DROP TABLE", "KeyFieldName": "1"}').decode(),
        base64.b64encode(b"[1, 2, 3]").decode(),
    ],
)
def test_bad_page_token_is_400(rest, pipeline_id, endpoint, token):
    response = rest.get(list_path(endpoint, pipeline_id), params={"page_token": token})
    assert_grpc_error(response, 400, 3)


@pytest.mark.parametrize("endpoint", LIST_ENDPOINTS)
def test_negative_page_size_is_400(rest, pipeline_id, endpoint):
    response = rest.get(list_path(endpoint, pipeline_id), params={"page_size": "-1"})
    assert_grpc_error(response, 400, 3)


@pytest.mark.parametrize("endpoint", LIST_ENDPOINTS)
def test_non_numeric_page_size_is_400(rest, pipeline_id, endpoint):
    response = rest.get(list_path(endpoint, pipeline_id), params={"page_size": "ten"})
    assert_grpc_error(response, 400, 3)


def test_page_token_with_different_sort_is_400(rest):
    for i in range(3):
        assert rest.post("experiments", json={"display_name": unique("tok")}).status_code == 200
    first = rest.get("experiments", params={"page_size": 1, "sort_by": "name"})
    assert first.status_code == 200, first.text
    token = first.json()["next_page_token"]
    response = rest.get("experiments", params={"page_size": 1, "page_token": token, "sort_by": "created_at desc"})
    assert_grpc_error(response, 400, 3)
    # Without sort_by the token's own sort applies.
    again = rest.get("experiments", params={"page_size": 1, "page_token": token})
    assert again.status_code == 200, again.text


def test_large_page_size_is_clamped_not_rejected(rest):
    response = rest.get("experiments", params={"page_size": 100000})
    assert response.status_code == 200, response.text


def test_empty_list_answer_is_an_object(rest):
    response = rest.get("runs", params={"filter": predicate(operation="EQUALS", key="display_name", string_value=unique("none"))})
    assert response.status_code == 200, response.text
    body = response.json()
    assert isinstance(body, dict)
    assert not body.get("runs")
    assert not body.get("next_page_token")


def test_filter_with_string_values_in(rest):
    names = [unique("in") for _ in range(3)]
    for name in names:
        assert rest.post("experiments", json={"display_name": name}).status_code == 200
    response = rest.get(
        "experiments",
        params={"filter": predicate(operation="IN", key="display_name", string_values={"values": names[:2]})},
    )
    assert response.status_code == 200, response.text
    assert sorted(e["display_name"] for e in response.json()["experiments"]) == sorted(names[:2])


# --------------------------------------------------------------------------- wire encoding


def test_recurring_run_int64_fields_are_strings_on_the_wire(rest, experiment_id):
    spec = load_yaml_spec(pipeline_file("identity.yaml"))
    response = rest.post(
        "recurringruns",
        json={
            "display_name": unique("wire"),
            "experiment_id": experiment_id,
            "pipeline_spec": spec,
            "runtime_config": {"parameters": {"value": "x"}},
            "max_concurrency": "2",
            "mode": "ENABLE",
            "trigger": {"periodic_schedule": {"interval_second": "60"}},
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["max_concurrency"] in ("2", 2)
    assert body["trigger"]["periodic_schedule"]["interval_second"] in ("60", 60)
    assert body["status"] == "ENABLED"
