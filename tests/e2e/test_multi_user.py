"""Multi-user mode through the SDK: two users of kfp.Client, each naming a
namespace and sending the user header an authenticating proxy would set."""

from __future__ import annotations

import pytest
from kfp_server_api.exceptions import ApiException

import multi_user_support
import support
from multi_user_support import client_as


@pytest.fixture(scope="module")
def multi_user_server(kfpd_bin):
    with multi_user_support.multi_user_server(kfpd_bin, executor="local") as server:
        yield server


def status_of(call) -> int:
    with pytest.raises(ApiException) as raised:
        call()
    return raised.value.status


def test_users_see_their_namespace_only(multi_user_server):
    alice = client_as(multi_user_server, "alice@example.com", "team-a")
    bob = client_as(multi_user_server, "bob@example.com", "team-b")
    assert alice.get_kfp_healthz().multi_user is True
    assert alice.get_user_namespace() == "team-a"

    experiment = alice.create_experiment("alice's", namespace="team-a")
    assert experiment.namespace == "team-a"
    result = alice.create_run_from_pipeline_package(
        str(support.pipeline_file("hello.yaml")),
        arguments={},
        run_name="alice's run",
        experiment_name="alice's",
        namespace="team-a",
    )
    run = alice.wait_for_run_completion(result.run_id, timeout=300)
    assert run.state == "SUCCEEDED"

    listed = alice.list_runs(namespace="team-a", page_size=50)
    assert result.run_id in [r.run_id for r in listed.runs or []]
    assert bob.list_runs(namespace="team-b", page_size=50).runs in (None, [])

    # Another namespace's run is not there for bob; its namespace is refused.
    assert status_of(lambda: bob.get_run(result.run_id)) == 404
    assert status_of(lambda: bob.get_experiment(experiment_id=experiment.experiment_id)) == 404
    assert status_of(lambda: bob.list_runs(namespace="team-a")) == 403
    assert status_of(lambda: bob.create_experiment("intruder", namespace="team-a")) == 403

    # Without the header nobody is known.
    anonymous = client_as(multi_user_server, None, "team-a")
    assert status_of(lambda: anonymous.list_experiments(namespace="team-a")) == 401
