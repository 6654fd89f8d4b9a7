"""Tokens on a real server: every route needs the role the access table names, a token sees
only its project, and the clients InfluxDB users have send theirs as they always do."""

from __future__ import annotations

import base64
import re
import sqlite3
import stat
from pathlib import Path

import httpx
import pytest
from fastapi.routing import APIRoute
from influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from starlette.routing import Route

from tests.conftest import loop_file, serving, tsq
from tsq import datafiles
from tsq.access import ACCESS, COOKIE
from tsq.api import create_app
from tsq.config import Settings
from tsq.errors import ConfigError
from tsq.service import Service

HELLO = "export default async function () { return {ok: true}; }"


@pytest.fixture(scope="module")
def admin(api: httpx.Client) -> httpx.Client:
    """The module's server, with the admin token (conftest's `api`)."""
    return api


@pytest.fixture(scope="module")
def url(api: httpx.Client) -> str:
    return str(api.base_url).rstrip("/")


def token(admin: httpx.Client, name: str, *roles: str, project: str | None = None) -> str:
    made = admin.post("/v1/tokens", json={"name": name, "roles": list(roles),
                                          "project": project})
    assert made.status_code == 201, made.text
    secret: str = made.json()["token"]
    return secret


def as_(url: str, secret: str) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=60, headers={"Authorization": f"Bearer {secret}"})


def deploy_body(name: str, project: str | None = None) -> dict[str, object]:
    head = f"project: {project}\n" if project else ""
    return {"content": head + loop_file(name, f"{name}.js"), "files": {f"{name}.js": HELLO}}


# -- the table names every route -------------------------------------------------------------

def test_the_access_table_names_every_route_and_only_routes(service: Service) -> None:
    app = create_app(service)
    # FastAPI's own /openapi.json is a plain route, which Starlette also answers to HEAD
    routes = {(method, route.path) for route in app.routes if isinstance(route, Route)
              for method in (route.methods or ()) if isinstance(route, APIRoute)
              or method != "HEAD"}
    assert routes - set(ACCESS) == set(), "routes the access table does not name"
    assert set(ACCESS) - routes == set(), "access rules for routes that do not exist"


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path)


def test_a_request_without_a_token_is_refused_everywhere_but_the_open_routes(url: str) -> None:
    with httpx.Client(base_url=url, timeout=60) as anonymous:
        for (method, path), need in ACCESS.items():
            answer = anonymous.request(method, _concrete(path), json={})
            where = f"{method} {path}"
            if need is None:
                assert answer.status_code < 400 or answer.status_code == 404, where
            elif method == "GET" and (path == "/" or path.startswith("/ui/")) \
                    and "static" not in path:
                assert answer.status_code == 303, where  # a page: on to the login page
                assert answer.headers["location"].startswith("/login?next="), where
            else:
                assert answer.status_code == 401, where
                assert answer.headers["WWW-Authenticate"] == 'Bearer realm="tsq"', where
                assert answer.json()["error"]["type"] == "Unauthorized", where


def test_a_wrong_or_revoked_token_is_401_naming_why(url: str, admin: httpx.Client) -> None:
    with as_(url, "tsq_not-a-token") as stranger:
        refused = stranger.get("/v1/loops")
    assert refused.status_code == 401 and "unknown or was revoked" in refused.text
    secret = token(admin, "short-lived", "read")
    [made] = [t for t in admin.get("/v1/tokens").json()["tokens"] if t["name"] == "short-lived"]
    with as_(url, secret) as client:
        assert client.get("/v1/loops").status_code == 200
        assert admin.delete(f"/v1/tokens/{made['id']}").status_code == 200
        assert client.get("/v1/loops").status_code == 401


# -- roles -------------------------------------------------------------------------------------

def test_each_role_does_its_own_work_only(url: str, admin: httpx.Client) -> None:
    reader = token(admin, "reader", "read")
    writer = token(admin, "writer", "write")
    deployer = token(admin, "deployer", "deploy", "read")
    with as_(url, reader) as client:
        assert client.get("/v1/runs").status_code == 200
        refused = client.post("/v1/loops", json=deploy_body("by-reader"))
        assert refused.status_code == 403
        assert refused.json()["error"]["message"] == (
            "the token 'reader' may not do this: it needs the 'deploy' role (it has read)")
        assert client.post("/write", content=b"m value=1 1").status_code == 403
        assert client.get("/v1/tokens").status_code == 403
    with as_(url, writer) as client:
        assert client.post("/write", content=b"roles_w value=1 1").status_code == 204
        assert client.post("/v1/query", json={"tsl": 'select("roles_w")'}).status_code == 403
    with as_(url, deployer) as client:
        assert client.post("/v1/loops", json=deploy_body("by-deployer")).status_code == 201
        assert client.post("/v1/loops/by-deployer/run", json={}).status_code == 403
    assert admin.post("/v1/loops/by-deployer/run", json={}).status_code == 200


def test_unknown_roles_are_a_400_naming_the_right_ones(admin: httpx.Client) -> None:
    wrong = admin.post("/v1/tokens", json={"name": "x", "roles": ["reed"]})
    assert wrong.status_code == 400
    assert wrong.json()["error"]["message"] == (
        "unknown role 'reed'; the roles are read, write, run, deploy, admin")


# -- projects ----------------------------------------------------------------------------------

def test_a_project_token_sees_and_changes_only_its_project(url: str,
                                                           admin: httpx.Client) -> None:
    assert admin.post("/v1/loops", json=deploy_body("beta-loop", "beta")).status_code == 201
    beta_run = admin.post("/v1/loops/beta-loop/run", params={"project": "beta"}, json={})
    assert beta_run.status_code == 200
    secret = token(admin, "alpha-team", "read", "run", "deploy", project="alpha")
    with as_(url, secret) as alpha:
        elsewhere = alpha.post("/v1/loops", json=deploy_body("a-loop"))  # project: default
        assert elsewhere.status_code == 403
        assert "put `project: alpha` at the top of the file" in elsewhere.text
        assert alpha.post("/v1/loops", json=deploy_body("a-loop", "alpha")).status_code == 201
        assert [loop["name"] for loop in alpha.get("/v1/loops").json()["loops"]] == ["a-loop"]
        assert alpha.get("/v1/loops", params={"project": "beta"}).status_code == 403
        assert alpha.get("/v1/loops/beta-loop").status_code == 404
        assert alpha.post("/v1/loops/beta-loop/run", json={}).status_code == 404
        ran = alpha.post("/v1/loops/a-loop/run", json={})
        assert ran.status_code == 200 and ran.json()["project"] == "alpha"
        runs = alpha.get("/v1/runs").json()["runs"]
        assert {run["project"] for run in runs} == {"alpha"}
        hidden = beta_run.json()["id"]
        for path in ("", "/logs", "/artifacts"):
            assert alpha.get(f"/v1/runs/{hidden}{path}").status_code == 404, path
        assert alpha.post(f"/v1/runs/{hidden}/cancel").status_code == 404
        assert alpha.get("/metrics").status_code == 403  # every project's series
        assert alpha.get("/v1/history").status_code == 403
        # the web UI shows the project's loops and runs, and no other's
        loops_page = alpha.get("/")
        assert loops_page.status_code == 200
        assert "a-loop" in loops_page.text and "beta-loop" not in loops_page.text
        assert alpha.get("/ui/loops/a-loop").status_code == 200
        assert alpha.get("/ui/loops/beta-loop").status_code == 404
        assert alpha.get("/ui/loops/beta-loop", params={"project": "beta"}).status_code == 403
        runs_page = alpha.get("/ui/runs")
        assert ran.json()["id"] in runs_page.text and hidden not in runs_page.text
        assert alpha.get(f"/ui/runs/{ran.json()['id']}").status_code == 200
        assert alpha.get(f"/ui/runs/{hidden}").status_code == 404


# -- how clients send tokens -------------------------------------------------------------------

def test_influxdb_clients_send_the_token_their_own_ways(url: str, admin: httpx.Client,
                                                        service: Service) -> None:
    secret = token(admin, "telegraf", "write")
    with httpx.Client(base_url=url, timeout=60) as raw:
        assert raw.post("/api/v2/write", content=b"ways value=1 1",
                        headers={"Authorization": f"Token {secret}"}).status_code == 204
        basic = base64.b64encode(f"telegraf:{secret}".encode()).decode()
        assert raw.post("/write", content=b"ways value=2 2",
                        headers={"Authorization": f"Basic {basic}"}).status_code == 204
        assert raw.post("/write", params={"u": "telegraf", "p": secret},
                        content=b"ways value=3 3").status_code == 204
        assert raw.post("/api/v0/update", content=b"4// ways{} 4",
                        headers={"X-Warp10-Token": secret}).status_code == 200
        assert raw.post("/write", params={"u": "telegraf", "p": "wrong"},
                        content=b"ways value=9 9").status_code == 401
    with InfluxDBClient(url=url, token=secret, org="-") as client:
        client.write_api(write_options=SYNCHRONOUS).write("b", record="ways value=5 5")
    answer = admin.post("/v1/query", json={"tsl": 'select("ways")'}).json()
    assert sorted(answer["series"][0]["values"]) == [1.0, 2.0, 3.0, 4.0, 5.0]


def test_the_web_ui_signs_in_with_a_token_link_and_keeps_a_strict_cookie(
        url: str, service: Service) -> None:
    with httpx.Client(base_url=url, timeout=60) as browser:
        page = browser.get("/ui/runs?status=failed")
        assert page.status_code == 303
        assert page.headers["location"] == "/login?next=%2Fui%2Fruns%3Fstatus%3Dfailed"
        assert browser.get("/login", params={"token": "tsq_wrong"}).status_code == 401
        signed = browser.get("/login", params={"token": service.admin_token,
                                               "next": "/ui/runs"})
        assert signed.status_code == 303 and signed.headers["location"] == "/ui/runs"
        cookie = signed.headers["set-cookie"]
        assert f"{COOKIE}=" in cookie and "HttpOnly" in cookie
        assert "samesite=strict" in cookie.lower()
        assert browser.get("/ui/runs").status_code == 200
        # the cookie is never taken for the text bodies a cross-site form could send
        assert browser.post("/write", content=b"m value=1 1").status_code == 401
        offsite = browser.get("/login", params={"token": service.admin_token,
                                                "next": "//evil.example/"})
        assert offsite.headers["location"] == "/"


# -- the data directory's admin token, and where tokens are kept -------------------------------

def test_tokens_are_kept_hashed_and_the_admin_token_file_is_private(
        admin: httpx.Client, service: Service) -> None:
    secret = token(admin, "kept-hashed", "read")
    database = Path(service.settings.database_url.removeprefix("sqlite:///"))
    with sqlite3.connect(database) as db:
        rows = db.execute("SELECT hash FROM tokens").fetchall()
    assert rows and all(secret not in row[0] for row in rows)
    assert secret.encode() not in database.read_bytes()
    path = service.settings.data_dir / datafiles.ADMIN_TOKEN_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() == service.admin_token


def test_the_cli_uses_the_admin_token_by_itself_and_makes_tokens(tmp_path: Path) -> None:
    made = tsq(tmp_path, "token", "create", "ci", "--role", "read,run", "--project", "alpha")
    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith("tsq_") and "shown only now" in made.stderr
    listed = tsq(tmp_path, "token", "list", "--json")
    names = {t["name"]: t for t in __import__("json").loads(listed.stdout)["tokens"]}
    assert names["ci"]["roles"] == ["read", "run"] and names["ci"]["project"] == "alpha"
    assert made.stdout.strip() not in listed.stdout
    revoked = tsq(tmp_path, "token", "revoke", names["ci"]["id"])
    assert revoked.returncode == 0 and "revoked token" in revoked.stdout
    unknown = tsq(tmp_path, "token", "revoke", "nope")
    assert unknown.returncode != 0 and "no token 'nope'" in unknown.stderr


def test_tokens_may_be_off_only_on_a_loopback_address(tmp_path: Path) -> None:
    assert Settings.load(tmp_path, flags={"auth": "off"}).auth == "off"
    with pytest.raises(ConfigError, match=r"auth = 'off' with host = '0.0.0.0' would let "
                                          r"anyone who reaches 0.0.0.0 deploy code"):
        Settings.load(tmp_path, flags={"auth": "off", "host": "0.0.0.0"})
    refused = tsq(tmp_path, "serve", "--host", "0.0.0.0", "--auth", "off")
    assert refused.returncode != 0
    assert "auth = 'off' with host = '0.0.0.0'" in refused.stderr
    assert not (tmp_path / "server.json").exists()


def test_with_tokens_off_on_loopback_no_token_is_asked_for(tmp_path: Path) -> None:
    service = Service(Settings.load(tmp_path, flags={"auth": "off"}))
    try:
        assert service.admin_token is None
        with serving(service) as base, httpx.Client(base_url=base) as anonymous:
            assert anonymous.get("/v1/loops").status_code == 200
    finally:
        service.close()


def test_a_project_token_writes_its_own_points_and_reads_them_with_the_shared_ones(
        url: str, admin: httpx.Client) -> None:
    writer = token(admin, "alpha-points", "read", "write", project="alpha")
    other = token(admin, "beta-points", "read", "write", project="beta")
    assert admin.post("/write", content=b"pts,host=shared value=1 1").status_code == 204
    with as_(url, writer) as alpha, as_(url, other) as beta:
        assert alpha.post("/write", content=b"pts,host=mine value=2 1").status_code == 204
        seen = alpha.post("/v1/query", json={"tsl": 'select("pts").from(0)'}).json()
        assert sorted(s["labels"]["host"] for s in seen["series"]) == ["mine", "shared"]
        unseen = beta.post("/v1/query", json={"tsl": 'select("pts").from(0)'}).json()
        assert [s["labels"]["host"] for s in unseen["series"]] == ["shared"]
        assert beta.get("/api/v0/delete", params={
            "selector": "pts{host=mine}", "deleteall": ""}).text == ""
    every = admin.post("/v1/query", json={"tsl": 'select("pts").from(0)'}).json()["series"]
    assert sorted((s["labels"].get("__project__", ""), s["labels"]["host"]) for s in every) == [
        ("", "shared"), ("alpha", "mine")]
