"""A bounded, deterministic schemathesis run against the local stack: every operation of
openapi.yaml, positive and negative data, the stateful links; no 5xx, and every answer as the
spec describes it (status code, content type, headers, body schema).

The command (`schemathesis_command`; by hand against `make run`, with its key):

    CHECKS=not_a_server_error,status_code_conformance,content_type_conformance
    CHECKS=$CHECKS,response_headers_conformance,response_schema_conformance
    schemathesis run openapi.yaml --url http://127.0.0.1:7071/api \\
        --header "x-functions-key: <key>" --checks "$CHECKS" \\
        --phases examples,coverage,fuzzing,stateful --max-examples 150 \\
        --generation-deterministic --generation-with-security-parameters false --workers 1

Every operation is included. `POST /api/inbound` and `OPTIONS /api/inbound` are fuzzed like the
others (random bodies and origins); the Event Grid handshakes and real SMS events they also
answer are covered by tests/e2e/test_inbound_e2e.py. The function key is not fuzzed (the 401 of
a missing or wrong key is the host's, covered by tests/integration/test_func_host.py).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.deadlines import scaled
from tests.e2e.conftest import FUNCTION_KEY, Stack
from tests.openapi_tools import SPEC

CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_headers_conformance", "response_schema_conformance")
MAX_EXAMPLES = 150  # per operation and phase: the run stays within about two minutes


def schemathesis_command(base_url: str, report_dir: Path) -> list[str]:
    """The schemathesis CLI invocation of this test."""
    return [
        str(Path(sys.executable).with_name("schemathesis")), "run", str(SPEC),
        "--url", base_url, "--header", f"x-functions-key: {FUNCTION_KEY}",
        "--checks", ",".join(CHECKS),
        "--phases", "examples,coverage,fuzzing,stateful",
        # Deterministic: the same cases every run (no seed, no example database).
        "--max-examples", str(MAX_EXAMPLES), "--generation-deterministic",
        # The key is the -H header; a generated `code` or key would only test the host's 401.
        "--generation-with-security-parameters", "false",
        "--workers", "1", "--request-timeout", "60", "--no-color",
        "--report", "junit", "--report-dir", str(report_dir),
    ]


def cancel_open_campaigns(stack: Stack) -> None:
    """The fuzzer may have confirmed recurring campaigns: stop them for the tests after it."""
    after: str | None = None
    while True:
        page = stack.api.get("/campaigns", params={"limit": 200, **({"after": after}
                                                                     if after else {})}).json()
        for c in page["campaigns"]:
            if c["status"] in ("scheduled", "sending"):
                stack.api.post(f"/campaigns/{c['id']}/cancel")
        after = page["next"]
        if not after:
            return


# About two minutes on an idle machine (2 cores), six with two other jobs on its cores; the
# deadline leaves room for a loaded one (the load when it starts is only an estimate).
@pytest.mark.timeout(1200)
def test_schemathesis_finds_no_server_error_and_no_non_conformance(
        stack: Stack, tmp_path: Path) -> None:
    base_url = str(stack.api.base_url).rstrip("/")
    try:
        run = subprocess.run(schemathesis_command(base_url, tmp_path), capture_output=True,
                             text=True, timeout=min(scaled(600), 1100), cwd=tmp_path,
                             check=False)
    finally:
        cancel_open_campaigns(stack)
    (tmp_path / "schemathesis.out").write_text(run.stdout + run.stderr)
    assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-5000:]
    # Every operation of the spec was called (none skipped for want of valid data).
    spec = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    operations = sum(1 for ops in spec["paths"].values() for _ in ops)
    assert f"Tested: {operations}" in run.stdout, run.stdout[-5000:]
