"""Shared helpers for the kfpd end-to-end tests (imported by the test modules)."""

from __future__ import annotations

import contextlib
import json
import numbers
import os
import pathlib
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from typing import Any, Callable, Iterator, Optional, Sequence

import kfp_server_api
import pytest
import requests
import yaml

HERE = pathlib.Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
# Pipelines committed with the project (hand-written IR; always present).
PIPELINES = REPO_ROOT / "tests" / "pipelines"

# Seconds any single HTTP request may take before the test fails.
HTTP_TIMEOUT = 30
# Seconds the server may take to print its listening line.
STARTUP_TIMEOUT = 30


# --------------------------------------------------------------------------- test data
#
# The reference directory beside the repository (`../shared`, with the upstream
# pipeline corpus) is not part of a clone. As in the Rust tests (crate kfpd-testdata):
# KFPD_SHARED_DIR names it (default: `shared` beside the repository root) and
# KFPD_CORPUS_DIR the corpus (default: $KFPD_SHARED_DIR/testdata/pipelines); relative
# values are taken from the repository root. A test needing a missing corpus is skipped
# with a message, except under CI=true, where it fails. A setting naming a missing
# directory always fails.

SHARED_DIR_VAR = "KFPD_SHARED_DIR"
CORPUS_DIR_VAR = "KFPD_CORPUS_DIR"
# Stands in for the corpus's file list when it is absent, so its tests skip (or fail under CI).
NO_CORPUS = "(no corpus)"


def under_ci() -> bool:
    return os.environ.get("CI") == "true"


def _setting(variable: str) -> Optional[pathlib.Path]:
    value = os.environ.get(variable, "")
    if not value:
        return None
    path = pathlib.Path(value)
    return path if path.is_absolute() else REPO_ROOT / path


def _expected_shared() -> tuple[pathlib.Path, Optional[str]]:
    named = _setting(SHARED_DIR_VAR)
    if named is not None:
        return named, SHARED_DIR_VAR
    return (REPO_ROOT / ".." / "shared").resolve(), None


def _expected_corpus() -> tuple[pathlib.Path, Optional[str]]:
    named = _setting(CORPUS_DIR_VAR)
    if named is not None:
        return named, CORPUS_DIR_VAR
    shared, shared_var = _expected_shared()
    return shared / "testdata" / "pipelines", shared_var


def _find(expected: tuple[pathlib.Path, Optional[str]], what: str) -> Optional[pathlib.Path]:
    path, named_by = expected
    if path.is_dir():
        return path
    if named_by is not None:
        raise AssertionError(f"{named_by} is set, but {what} is not at {path}")
    return None


def shared_dir() -> Optional[pathlib.Path]:
    """The reference directory, or None when absent."""
    return _find(_expected_shared(), "the shared reference directory")


def find_corpus() -> Optional[pathlib.Path]:
    """The upstream pipeline corpus, or None when absent (no skip: for collection time)."""
    return _find(_expected_corpus(), "the upstream pipeline corpus")


def corpus_dir() -> pathlib.Path:
    """The upstream pipeline corpus; skips the calling test when absent (fails under CI=true)."""
    found = find_corpus()
    if found is not None:
        return found
    path, _ = _expected_corpus()
    message = (
        f"the upstream pipeline corpus is not at {path}; set {CORPUS_DIR_VAR} to a copy of it "
        f"(or {SHARED_DIR_VAR} to the reference directory holding testdata/pipelines)"
    )
    if under_ci():
        pytest.fail(f"required under CI=true: {message}")
    pytest.skip(message)


def corpus_file(relative: str) -> pathlib.Path:
    """A file of the upstream corpus; skips the calling test when the corpus is absent."""
    path = corpus_dir() / relative
    assert path.is_file(), f"corpus file missing: {path}"
    return path


def corpus_files(pattern: str, exclude: str = "invalid") -> list[str]:
    """Corpus files matching `pattern` (relative paths, outside `exclude/`), for parametrize.

    Without the corpus: [NO_CORPUS], whose test then skips (or fails under CI) in corpus_file."""
    corpus = find_corpus()
    if corpus is None:
        return [NO_CORPUS]
    excluded = corpus / exclude
    return sorted(str(p.relative_to(corpus)) for p in corpus.rglob(pattern) if excluded not in p.parents)


def pipeline_file(relative: str) -> pathlib.Path:
    """A pipeline committed under tests/pipelines/ (always present)."""
    path = PIPELINES / relative
    assert path.is_file(), f"committed test pipeline missing: {path}"
    return path


def load_yaml_spec(path: pathlib.Path) -> dict:
    """The first YAML document of a compiled pipeline, as plain Python data."""
    with open(path, "r", encoding="utf-8") as f:
        return next(yaml.safe_load_all(f))


def unique(prefix: str) -> str:
    """A name no other test uses, valid as a KFP pipeline/experiment name."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# --------------------------------------------------------------------------- values


def assert_same_json(actual: Any, expected: Any, path: str = "$") -> None:
    """Deep equality where numbers compare by value (1 == 1.0) and bools stay bools."""
    if isinstance(expected, bool) or isinstance(actual, bool):
        assert actual is expected, f"{path}: {actual!r} != {expected!r}"
    elif isinstance(expected, numbers.Number) and isinstance(actual, numbers.Number):
        assert float(actual) == float(expected), f"{path}: {actual!r} != {expected!r}"
    elif isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: expected an object, got {actual!r}"
        assert set(actual) == set(expected), (
            f"{path}: keys differ: missing {sorted(set(expected) - set(actual))}, "
            f"extra {sorted(set(actual) - set(expected))}"
        )
        for key in expected:
            assert_same_json(actual[key], expected[key], f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list), f"{path}: expected a list, got {actual!r}"
        assert len(actual) == len(expected), f"{path}: length {len(actual)} != {len(expected)}"
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_same_json(a, e, f"{path}[{i}]")
    else:
        assert actual == expected, f"{path}: {actual!r} != {expected!r}"


def eq_filter(key: str, value: str, operation: Any = "EQUALS", value_key: str = "string_value") -> str:
    """A ListXxx `filter` query value with one predicate."""
    return json.dumps({"predicates": [{"operation": operation, "key": key, value_key: value}]})


@contextlib.contextmanager
def api_error(status: int) -> Iterator[dict]:
    """Expect the block to raise kfp_server_api.ApiException with this HTTP status.

    Yields a dict that is filled with `exc` and `body` (the raw body text)."""
    caught: dict = {}
    try:
        yield caught
    except kfp_server_api.ApiException as exc:
        caught["exc"] = exc
        caught["body"] = exc.body.decode() if isinstance(exc.body, bytes) else (exc.body or "")
        assert exc.status == status, f"expected HTTP {status}, got {exc.status}: {caught['body']}"
        return
    raise AssertionError(f"expected an ApiException with HTTP {status}, but the call succeeded")


def page_through(fetch: Callable[[str], Any], items_attr: str, limit: int = 100) -> tuple[list, list]:
    """Call `fetch(page_token)` until next_page_token is empty.

    Returns (all items in order, the list of page lengths)."""
    items: list = []
    sizes: list = []
    token = ""
    for _ in range(limit):
        response = fetch(token)
        page = getattr(response, items_attr) or []
        items.extend(page)
        sizes.append(len(page))
        token = response.next_page_token or ""
        if not token:
            return items, sizes
    raise AssertionError(f"paging did not end after {limit} pages")


# --------------------------------------------------------------------------- REST


class Rest:
    """`requests` against the v2beta1 REST API, always with a timeout."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.api = f"{base_url}/apis/v2beta1"
        self.session = requests.Session()

    def url(self, path: str) -> str:
        return f"{self.api}/{path.lstrip('/')}"

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", HTTP_TIMEOUT)
        return self.session.request(method, self.url(path), **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("DELETE", path, **kwargs)


def error_text(response: requests.Response) -> str:
    """The message of an error body in either KFP error shape, else the raw text."""
    try:
        body = response.json()
    except ValueError:
        return response.text
    if isinstance(body, dict):
        parts = [str(body.get(k, "")) for k in ("message", "error_message", "error_details", "error")]
        return " ".join(p for p in parts if p) or response.text
    return response.text


# --------------------------------------------------------------------------- server


# Settings from the caller's environment that would change how the spawned server behaves.
_SERVER_ENV_DROP_PREFIXES = ("KFPD_", "DBCONFIG_")
_SERVER_ENV_DROP = {"MULTIUSER", "POD_NAMESPACE", "DBDRIVERNAME", "dbType",
                    "INITCONNECTIONTIMEOUT", "DEFAULTPIPELINERUNNERSERVICEACCOUNT"}


class KfpdServer:
    """One `kfpd serve` process on a free loopback port with its own data directory."""

    def __init__(
        self,
        binary: str,
        workdir: pathlib.Path,
        executor: str = "none",
        extra_args: Sequence[str] = (),
    ) -> None:
        # The API suites check states the API itself sets, so by default nothing
        # executes runs; execution suites ask for the local executor.
        self.executor = executor
        # More `kfpd serve` flags, e.g. `--grpc-addr 127.0.0.1:0`.
        self.extra_args = list(extra_args)
        self.binary = binary
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.stderr_path = workdir / "stderr.log"
        self.stdout_lines: list[str] = []
        self.base_url = ""
        self.process: Optional[subprocess.Popen] = None

    def start(self) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(_SERVER_ENV_DROP_PREFIXES) and k not in _SERVER_ENV_DROP
        }
        env["KFPD_LOG"] = "warn"
        env["KFPD_EXECUTOR"] = self.executor
        # Port 0 so servers started side by side (or next to a developer's own
        # kfpd on 8887) never collide; gRPC tests start their own servers.
        env.setdefault("KFPD_GRPC_ADDR", "127.0.0.1:0")
        stderr = open(self.stderr_path, "wb")
        try:
            self.process = subprocess.Popen(
                [self.binary, "serve", "--http-addr", "127.0.0.1:0", "--data-dir", str(self.data_dir),
                 *self.extra_args],
                cwd=self.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                start_new_session=True,
            )
        finally:
            stderr.close()
        lines: "queue.Queue[Optional[str]]" = queue.Queue()

        def pump() -> None:
            assert self.process is not None and self.process.stdout is not None
            for line in self.process.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, name="kfpd-stdout", daemon=True).start()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        prefix = "kfpd listening on "
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.stop()
                raise RuntimeError(f"kfpd did not print its address within {STARTUP_TIMEOUT}s\n{self.describe()}")
            try:
                line = lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                self.stop()
                raise RuntimeError(f"kfpd exited before listening\n{self.describe()}")
            self.stdout_lines.append(line)
            if line.startswith(prefix):
                self.base_url = line[len(prefix):].strip().rstrip("/")
                assert self.base_url.startswith("http://127.0.0.1:"), self.base_url
                return self.base_url

    def stderr_text(self, limit: int = 20000) -> str:
        try:
            data = self.stderr_path.read_bytes()
        except OSError:
            return ""
        return data[-limit:].decode("utf-8", "replace")

    def describe(self) -> str:
        code = self.process.poll() if self.process else None
        return (
            f"exit code: {code}\nstdout:\n{''.join(self.stdout_lines)}\n"
            f"stderr (tail):\n{self.stderr_text()}"
        )

    def stop(self) -> Optional[int]:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return self.process.returncode


@contextlib.contextmanager
def running_server(binary: str, executor: str = "none", extra_args: Sequence[str] = ()) -> Iterator[KfpdServer]:
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="kfpd-e2e-"))
    server = KfpdServer(binary, workdir, executor, extra_args)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
