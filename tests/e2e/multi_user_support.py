"""What the multi-user suites share: two users, each an editor of one namespace
by a policy file (and an admin of the shared pipelines, in the server's own namespace), a server in multi-user mode believing the user header from
127.0.0.1, and kfp clients sending that header as an authenticating proxy would."""

from __future__ import annotations

import contextlib
import pathlib
import tempfile

import kfp

import support

POLICY = """
bindings:
  - namespace: team-a
    role: editor
    users: [alice@example.com]
  - namespace: team-b
    role: editor
    users: [bob@example.com]
  - namespace: kubeflow
    role: editor
    users: [admin@example.com]
"""


@contextlib.contextmanager
def multi_user_server(kfpd_bin: str, executor: str):
    policy = pathlib.Path(tempfile.mkdtemp(prefix="kfpd-e2e-policy-")) / "policy.yaml"
    policy.write_text(POLICY)
    args = ["--multi-user", "true", "--policy-file", str(policy), "--trusted-proxies", "127.0.0.1"]
    with support.running_server(kfpd_bin, executor=executor, extra_args=args) as server:
        yield server


def client_as(server, user: str | None, namespace: str) -> kfp.Client:
    client = kfp.Client(host=server.base_url, namespace=namespace)
    if user is not None:
        # Every generated API of the client shares one ApiClient.
        client._run_api.api_client.set_default_header("kubeflow-userid", user)
    return client
