"""Fixtures: one fresh `kfpd serve` per test module, and a kfp.Client pointed at it."""

from __future__ import annotations

import os
import pathlib
import shutil
import tempfile

import pytest

import support

# Keep the developer's SDK settings out of the tests: the client reads
# ~/.config/kfp/context.json (namespace, auth header) and several env variables.
_SDK_HOME = pathlib.Path(tempfile.mkdtemp(prefix="kfpd-e2e-sdk-"))
for _name in (
    "KF_PIPELINES_ENDPOINT",
    "KF_PIPELINES_UI_ENDPOINT",
    "KF_PIPELINES_DEFAULT_EXPERIMENT_NAME",
    "KF_PIPELINES_OVERRIDE_EXPERIMENT_NAME",
):
    os.environ.pop(_name, None)

import kfp  # noqa: E402
from kfp.client import auth as _auth  # noqa: E402
from kfp_server_api import rest as _rest  # noqa: E402

kfp.Client._LOCAL_KFP_CONTEXT = str(_SDK_HOME / ".config" / "kfp" / "context.json")
_auth.LOCAL_KFP_CREDENTIAL = str(_SDK_HOME / ".config" / "kfp" / "credentials.json")

# The SDK sets no HTTP timeout anywhere; give every request one.
_original_request = _rest.RESTClientObject.request


def _request_with_timeout(self, *args, **kwargs):
    if not kwargs.get("_request_timeout"):
        kwargs["_request_timeout"] = support.HTTP_TIMEOUT
    return _original_request(self, *args, **kwargs)


_rest.RESTClientObject.request = _request_with_timeout


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_SDK_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def kfpd_bin() -> str:
    binary = os.environ.get("KFPD_BIN")
    if not binary:
        pytest.fail("KFPD_BIN is not set; run the suite through tests/e2e/run.sh")
    if not os.access(binary, os.X_OK):
        pytest.fail(f"KFPD_BIN={binary} is not an executable")
    return binary


@pytest.fixture(scope="module")
def server(request, kfpd_bin):
    """A fresh kfpd for this module (own data directory, own port)."""
    with support.running_server(kfpd_bin) as srv:
        request.module._kfpd_server = srv
        yield srv
        request.module._kfpd_server = None
        code = srv.stop()
        # SIGTERM must shut the server down cleanly.
        assert code == 0, f"kfpd exited with {code} on SIGTERM\n{srv.describe()}"


@pytest.fixture(scope="module")
def base_url(server) -> str:
    return server.base_url


@pytest.fixture(scope="module")
def client(base_url) -> kfp.Client:
    return kfp.Client(host=base_url)


@pytest.fixture(scope="module")
def rest(base_url) -> support.Rest:
    return support.Rest(base_url)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        srv = getattr(item.module, "_kfpd_server", None)
        if srv is not None:
            report.sections.append(("kfpd stderr", srv.stderr_text(limit=8000) or "(empty)"))
