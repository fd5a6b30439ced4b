"""GET /healthz through the SDK and over plain HTTP."""


def test_client_healthz_is_single_user(client):
    health = client.get_kfp_healthz()
    assert health.multi_user is False


def test_healthz_reports_database_pipeline_store(rest):
    response = rest.get("healthz")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["multi_user"] is False
    assert body["pipeline_store"] == "database"


def test_v1beta1_healthz_is_served(base_url, rest):
    # Deployment probes hit the v1beta1 path.
    response = rest.session.get(f"{base_url}/apis/v1beta1/healthz", timeout=30)
    assert response.status_code == 200, response.text
    assert response.json()["multi_user"] is False


def test_healthz_carries_build_fields(rest):
    body = rest.get("healthz").json()
    assert isinstance(body.get("commit_sha"), str) and body["commit_sha"]
    assert isinstance(body.get("tag_name"), str) and body["tag_name"]
