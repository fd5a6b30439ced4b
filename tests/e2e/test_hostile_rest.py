"""Hostile REST input: schemathesis drives every operation of `/openapi.json` on a
real kfpd for a bounded number of cases; 0 server errors and 0 responses that
break the document (see hostile_rest.py). `bench/hostile_rest.sh` runs it longer."""

from __future__ import annotations

import pathlib

import pytest

import hostile_rest
import support


def test_schemathesis_finds_no_server_error_and_no_broken_response(server, tmp_path: pathlib.Path):
    if hostile_rest.schemathesis_bin() is None:
        if support.under_ci():
            pytest.fail("schemathesis is not installed; tests/e2e/run.sh installs it")
        pytest.skip("schemathesis is not installed; run the suite through tests/e2e/run.sh")
    result = hostile_rest.run(server.base_url, tmp_path, max_examples=8, max_seconds=90)
    tail = result["output"][-6000:]
    assert result["code"] == 0, f"schemathesis failed:\n{tail}"
    assert result["operations"] >= 45, f"only {result['operations']} operations tested:\n{tail}"
    assert result["cases"] > 0, tail
    assert result["server_errors"] == {}, f"kfpd answered 5xx: {result['server_errors']}"
    assert "panicked" not in server.stderr_text(limit=1 << 30), server.describe()
