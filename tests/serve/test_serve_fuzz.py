"""Property-based fuzzing of every `vaekit serve` endpoint from its own OpenAPI schema (schemathesis strategies
driven by hypothesis): schema-valid and schema-violating bodies, paths and parameters; no response may be a server
error. Bounded: a fixed number of derandomised examples per endpoint, so the run is short and repeatable."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("fastapi", reason="the serve extra (fastapi) is not installed: pip install 'vaekit[serve]'")
schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed (pip install 'vaekit[test]')")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402  (a schemathesis dependency)
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402

EXAMPLES = 30  # per endpoint, half valid, half invalid by the schema
ENDPOINTS = [("GET", "/api/info"), ("GET", "/api/map"), ("GET", "/api/points/{index}"), ("POST", "/api/decode"),
             ("POST", "/api/encode"), ("POST", "/api/interpolate"), ("POST", "/api/sample"), ("POST", "/api/resample")]


@pytest.fixture(scope="module")
def api_schema(vae_explorer):
    from vaekit.serve.app import create_app

    app = create_app(vae_explorer, allowed_hosts=None)  # schemathesis' ASGI client sends its own Host
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def test_every_endpoint_is_fuzzed(api_schema):
    ops = {(r.ok().method.upper(), r.ok().path) for r in api_schema.get_all_operations()}
    assert ops == set(ENDPOINTS)


@pytest.mark.parametrize("method,path", ENDPOINTS)
def test_no_server_errors(api_schema, method, path):
    op = api_schema[path][method]
    cases = st.one_of(op.as_strategy(GenerationMode.POSITIVE), op.as_strategy(GenerationMode.NEGATIVE))

    @given(case=cases)
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case):
        case.call_and_validate(checks=[not_a_server_error])

    from vaekit.process_state import preserve_process_state

    with preserve_process_state():
        torch.set_flush_denormal(False)  # hypothesis refuses to run where subnormals flush to zero (a CLI test may set it)
        run()
