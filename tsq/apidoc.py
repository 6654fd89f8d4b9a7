"""What the OpenAPI description says beyond the routes' own: the error answers each operation
really gives, in tsq's one error shape, and the token each needs.

FastAPI documents a route's success and its 422 (in FastAPI's own validation shape, which tsq
does not answer with). The errors come from layers around the routes — the Host and Origin
guard (400, 403), the body limit (413), tokens (401, 403), lookups by name or id (404, 409),
the bounds on work (429, 413, 504) — so they are added here, from the table below, to the
description generated once; `tests/test_api_schema.py` holds the description to what the API
answers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from tsq.access import ACCESS

__all__ = ["document"]

ERROR_SCHEMA = {"$ref": "#/components/schemas/ErrorAnswer"}
MEANING = {
    400: "A parameter or body that does not parse or lies out of range, or a Host this server "
         "does not answer to",
    401: "No token, or one that is unknown or revoked",
    403: "The token lacks the role or the project; or a web page of another origin",
    404: "No such loop, run, artifact, backfill or token",
    409: "A name or id prefix that names several; a run that already ended",
    413: "A body over max_body_mb, or an answer over max_query_points",
    415: "A state-changing /v1/ call whose body is not JSON",
    422: "A body of the wrong shape, or a loop file with problems (each at its file:line:col)",
    429: "Past a bound on waiting work or a per-project rate; see Retry-After",
    500: "The run's handler failed (the run record is in details.run)",
    504: "The query or the run ran past its time",
}
CHANGES = frozenset({"post", "put", "patch", "delete"})
# OpenAPI links: what a client does next with an answer (and what schemathesis chains):
# (operation, status) → name → (the next operation, its parameters from the answer)
LINKS: dict[tuple[str, str, str], dict[str, tuple[str, str, dict[str, str]]]] = {
    ("/v1/loops", "post", "201"): {
        "RunTheLoop": ("/v1/loops/{name}/run", "post",
                       {"name": "$response.body#/loops/0/name",
                        "project": "$response.body#/loops/0/project"}),
        "ReadTheLoop": ("/v1/loops/{name}", "get", {"name": "$response.body#/loops/0/name"})},
    ("/v1/loops", "get", "200"): {
        "RunALoop": ("/v1/loops/{name}/run", "post",
                     {"name": "$response.body#/loops/0/name",
                      "project": "$response.body#/loops/0/project"})},
    ("/v1/loops/{name}/run", "post", "200"): {
        "ReadTheRun": ("/v1/runs/{run_id}", "get", {"run_id": "$response.body#/id"}),
        "ReadTheRunsLog": ("/v1/runs/{run_id}/logs", "get", {"run_id": "$response.body#/id"})},
    ("/v1/loops/{name}/run", "post", "202"): {
        "ReadTheRun": ("/v1/runs/{run_id}", "get", {"run_id": "$response.body#/id"})},
    ("/v1/backfill", "post", "202"): {
        "ReadTheBackfill": ("/v1/backfill/{job_id}", "get", {"job_id": "$response.body#/id"})},
}


def _codes(method: str, path: str) -> set[int]:
    """The error statuses `method path` can answer with."""
    codes = {400, 403}  # the Host and Origin guard answers on every route
    if ACCESS.get((method.upper(), path), "closed") is not None:
        codes |= {401, 422}
    if method in CHANGES:
        codes |= {413, 415, 422}
    if "{" in path or path in ("/v1/backfill",):
        codes |= {404, 409}
    if path.startswith(("/v1/loops", "/v1/runs")) and method in CHANGES:
        codes.add(409)
    if path in ("/v1/query", "/api/v0/exec"):
        codes |= {413, 429, 504}
    if path in ("/write", "/api/v2/write", "/v1/write", "/api/v0/update"):
        codes |= {429}
    if path == "/v1/loops/{name}/run":
        codes |= {429, 500, 504}
    return codes


def _security(method: str, path: str) -> list[dict[str, list[str]]]:
    return [] if ACCESS.get((method.upper(), path), "closed") is None else [{"token": []}]


def document(app: FastAPI) -> None:
    """Make `app.openapi()` describe the error answers and the tokens."""
    generate: Callable[[], dict[str, Any]] = app.openapi

    def described() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        spec = generate()
        spec.setdefault("components", {}).setdefault("securitySchemes", {})["token"] = {
            "type": "http", "scheme": "bearer",
            "description": "a tsq token (`tsq token create`; docs/security.md)"}
        for path, operations in spec.get("paths", {}).items():
            for method, operation in operations.items():
                answers = operation.setdefault("responses", {})
                # FastAPI's 422 is in its own shape; tsq answers a bad body in its own
                for code in sorted(_codes(method, path) | ({422} & set(map(int, answers)))):
                    if str(code) in answers and code != 422:
                        continue  # the route's own (a 429's Retry-After, a 413's limit)
                    answers[str(code)] = {"description": MEANING[code], "content": {
                        "application/json": {"schema": ERROR_SCHEMA}}}
                operation["security"] = _security(method, path)
        _link(spec)
        spec.get("components", {}).get("schemas", {}).pop("HTTPValidationError", None)
        spec.get("components", {}).get("schemas", {}).pop("ValidationError", None)
        app.openapi_schema = spec
        return spec

    app.openapi = described  # type: ignore[method-assign]


def _link(spec: dict[str, Any]) -> None:
    paths = spec.get("paths", {})
    for (path, method, status), links in LINKS.items():
        answers = paths[path][method]["responses"]
        answer = answers.setdefault(status, {"description": "accepted"})
        answer["links"] = {
            name: {"operationRef": f"#/paths/{_pointer(target)}/{verb}", "parameters": params}
            for name, (target, verb, params) in links.items()}


def _pointer(path: str) -> str:
    """`path` as a JSON pointer token (RFC 6901)."""
    return path.replace("~", "~0").replace("/", "~1")
