"""The served OpenAPI document checked against the running server with schemathesis (issue 7).

The document comes from the server itself (``GET /openapi.json``), with examples of UIDs that exist
added here so the retrieve and render routes hit real data, not only 404s. Every operation is fuzzed
with valid and invalid inputs (both generation modes); each response must be no 5xx, have a
documented status and content type, and a JSON body valid against its schema. DELETE runs against a
disposable server of its own. Authentication: ``admin_headers`` (conftest), sent on every request.
"""

from __future__ import annotations

import copy
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import IN_CI, stop_server
from tests.security.conftest import Loaded, Stored, count, load, start
from web.openapi import document

MAX_EXAMPLES = 25
TIMEOUT = 10
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance]

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::ResourceWarning")


@schemathesis.serializer("multipart/related")
def _related(ctx: schemathesis.SerializationContext, value: Any) -> dict[str, Any]:
    """The generated body as one application/dicom part of a multipart/related request (STOW-RS)."""
    data = value if isinstance(value, bytes) else str(value).encode("utf-8", "surrogatepass")
    boundary = "schemathesis-boundary"
    body = (f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + data
            + f"\r\n--{boundary}--\r\n".encode())
    return {"data": body, "headers": {"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'}}


def _with_examples(doc: dict[str, Any], target: Stored) -> dict[str, Any]:
    """``doc`` with ``target``'s UIDs as the path parameters' examples, and as one branch of their
    schemas, so generated cases reach stored data as well as random UIDs."""
    doc = copy.deepcopy(doc)
    values = {"study": target.study, "series": target.series, "instance": target.sop, "frames": "1"}
    for name, value in values.items():
        param = doc["components"]["parameters"][name]
        param["example"] = value
        param["schema"] = {"anyOf": [{"enum": [value]}, param["schema"]]}
    param = doc["components"]["parameters"]["tagPath"]
    param["example"] = "7FE00010"
    param["schema"] = {"anyOf": [{"enum": ["7FE00010"]}, param["schema"]]}
    return doc


def _schema(loaded: Loaded, target: Stored) -> schemathesis.BaseSchema:
    r = httpx.get(loaded.server.root + "/openapi.json", headers=loaded.headers, timeout=TIMEOUT)
    assert r.status_code == 200, r.text[:300]
    assert r.headers["content-type"].startswith("application/json")
    schema = schemathesis.openapi.from_dict(_with_examples(r.json(), target))
    schema.config.update(base_url=loaded.server.root, request_timeout=TIMEOUT)
    schema.config.generation.update(max_examples=MAX_EXAMPLES, database="none")
    return schema


def _checks(headers: dict[str, str]) -> list[Any]:
    # ignored_auth sends the request again without credentials and expects a 401: meaningful only
    # when the server runs with authentication on.
    return CHECKS + [ignored_auth] if headers else CHECKS


@pytest.fixture(scope="module")
def api_schema(loaded: Loaded) -> schemathesis.BaseSchema:
    multi = max(loaded.instances, key=lambda s: s.frames)  # a multi-frame image: frames, tiles, streams
    return _schema(loaded, multi)


@pytest.fixture(scope="module")
def disposable(tmp_path_factory: pytest.TempPathFactory) -> Any:
    server, headers = start(tmp_path_factory.mktemp("disposable") / "data")
    try:
        stored = load(server, headers, ("photometric_and_oddities/CT_small.dcm",))
        yield Loaded(server, headers, stored)
    finally:
        stop_server(server)


@pytest.fixture(scope="module")
def delete_schema(disposable: Loaded) -> schemathesis.BaseSchema:
    return _schema(disposable, disposable.instances[0])


#: Every operation of the document; schemathesis' lazy pytest loader (``from_fixture``) does not run
#: under pytest 9 (it sets ``Function._nodeid``), so each operation is its own parametrized test that
#: draws cases from the operation's strategies.
OPERATIONS = sorted((path, method) for path, ops in document()["paths"].items() for method in ops)


def _fuzz(schema: schemathesis.BaseSchema, path: str, method: str, target: Stored, headers: dict[str, str]) -> None:
    operation = schema[path][method.upper()]
    names = {p["name"] for p in operation.definition.raw.get("parameters", []) if "name" in p}
    names |= {n for n in ("study", "series", "instance", "frames") if "{" + n + "}" in path}
    real = {"study": target.study, "series": target.series, "instance": target.sop, "frames": "1"}
    fixed = {k: v for k, v in real.items() if k in names}
    strategies = [operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE)]
    if fixed:
        strategies.append(operation.as_strategy(GenerationMode.POSITIVE, path_parameters=fixed))
    checks = _checks(headers)

    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize=IN_CI,
              suppress_health_check=list(HealthCheck))
    @given(case=st.one_of(strategies))
    def run(case: schemathesis.Case) -> None:
        response = case.call_and_validate(headers=headers, checks=checks, timeout=TIMEOUT)
        count("schemathesis", response.status_code)

    run()


@pytest.mark.parametrize(("path", "method"), [o for o in OPERATIONS if o[1] != "delete"],
                         ids=[f"{m.upper()} {p}" for p, m in OPERATIONS if m != "delete"])
def test_api_conforms(path: str, method: str, api_schema: schemathesis.BaseSchema, loaded: Loaded) -> None:
    multi = max(loaded.instances, key=lambda s: s.frames)
    _fuzz(api_schema, path, method, multi, loaded.headers)


@pytest.mark.parametrize(("path", "method"), [o for o in OPERATIONS if o[1] == "delete"],
                         ids=[f"{m.upper()} {p}" for p, m in OPERATIONS if m == "delete"])
def test_delete_conforms(path: str, method: str, delete_schema: schemathesis.BaseSchema, disposable: Loaded) -> None:
    _fuzz(delete_schema, path, method, disposable.instances[0], disposable.headers)


def test_every_route_is_documented(tmp_path: Any, monkeypatch: pytest.MonkeyPatch, loaded: Loaded) -> None:
    """Each route of the application as ``tessera serve`` builds it is in the document, and the
    served document lists exactly those operations (none undocumented, none described that is not there)."""
    from web.app import create_app
    from web.cli import build_archive
    from web.openapi import app_operations
    from web.settings import Settings

    monkeypatch.setenv("TESSERA_DATA", str(tmp_path / "data"))
    settings = Settings.from_env()
    app = create_app(settings, build_archive(settings))
    try:
        operations = app_operations(list(app.routes))
    finally:
        app.state.runtime.shutdown()
        app.state.runtime.archive.index.close()
    described = {(p, m) for p, ops in document()["paths"].items() for m in ops}
    assert operations - described == set(), "routes missing from web/openapi.py"
    r = httpx.get(loaded.server.root + "/openapi.json", headers=loaded.headers, timeout=TIMEOUT)
    served = {(p, m) for p, ops in r.json()["paths"].items() for m in ops}
    assert served == operations & described


def test_document_needs_credentials_except_healthz() -> None:
    doc = document()
    assert doc["security"] == [{"bearerAuth": []}, {"sessionCookie": []}]
    public = {p for p, ops in doc["paths"].items() for op in ops.values() if op.get("security") == []}
    assert "/healthz" in public
    assert not any(p.startswith("/dicomweb") for p in public)
    assert "/metrics" not in public and "/openapi.json" not in public
