"""Secrets: masked wherever a loop is shown (tsq/masking.py), keyed in version ids, kept in
private files (tsq/datafiles.py), and taken out of what runs leave behind (tsq/redaction.py)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet

from tests.conftest import EXAMPLE, tsq
from tests.scheduling_helpers import ScriptedPool, http_recorder, wait_until
from tests.test_serve import admin, serving
from tsq import outbound
from tsq.config import Settings
from tsq.datafiles import VERSION_KEY_FILE
from tsq.db import connect, loop_versions
from tsq.errors import ConfigError
from tsq.loopstore import LoopStore
from tsq.masking import MASK
from tsq.model import LoopSpec, version_id
from tsq.outcomes import RunResult, RunStatus
from tsq.redaction import redacted_result, scrubber_for
from tsq.runlog import LogLine
from tsq.sealing import KEY_FILE, Sealer
from tsq.service import Service

SECRETS = ("pa55word", "plaintoken123", "tok3nvalue", "XXXXXXXXXXXXXXXXXXXXXXXX", "hunter22",
           "evtpass99")
LOOPS = """\
connectors:
  main: {type: influxdb, url: "http://admin:pa55word@127.0.0.1:8086", database: db,
         token: plaintoken123}
functions:
  pinger:
    target: "http://127.0.0.1:9/hook?token=tok3nvalue&channel=ops"
    notify: {webhook: "https://hooks.slack.invalid/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"}
    events:
      - tick: {rate: "R/2026-01-01T00:00:00Z/PT1M/ET30S", target: "http://u:evtpass99@127.0.0.1:9/t"}
  reader:
    handler: h.js
    connector: main
    environment:
      API_KEY: {secret: hunter22}
      REGION: gra
"""


@pytest.fixture(autouse=True)
def policy_restored() -> Iterator[None]:
    before = outbound.current()
    yield
    outbound.configure(before)


def make(data: Path) -> Service:
    return Service(Settings.load(data), workers=ScriptedPool())


def test_no_secret_comes_back_from_deploy_the_api_or_the_cli(tmp_path: Path) -> None:
    service = make(tmp_path / "data")
    try:
        deployed = service.deploy(LOOPS, "loops.yml", {"h.js": "export default () => 1"}.get)
        shown = [deployed, service.list_loops(), service.get_loop("pinger"),
                 service.get_loop("reader")]
    finally:
        service.close()
    (tmp_path / "loops.yml").write_text(LOOPS)
    (tmp_path / "h.js").write_text("export default () => 1")
    cli = [tsq(tmp_path / "data", *args).stdout for args in
           (("loops", "--json"), ("show", "reader", "--json"), ("show", "pinger"))]
    for text in [orjson.dumps(answer).decode() for answer in shown] + cli:
        assert not [secret for secret in SECRETS if secret in text], text
    pinger = shown[2]["spec"]
    assert pinger["target"] == f"http://127.0.0.1:9/hook?token={MASK}&channel=ops"
    assert pinger["notify"]["webhook"] == (
        f"https://hooks.slack.invalid/services/T00000000/B00000000/{MASK}")
    assert pinger["events"][0]["target"] == shown[2]["events"][0]["target"] == (
        f"http://u:{MASK}@127.0.0.1:9/t")
    reader = json.loads(cli[1])["spec"]
    assert reader["connector"]["url"] == f"http://admin:{MASK}@127.0.0.1:8086"
    assert reader["connector"]["token"] == MASK
    assert shown[3]["spec"]["environment"] == {"API_KEY": MASK, "REGION": "gra"}


def test_version_ids_hash_secrets_with_the_data_directory_key(tmp_path: Path) -> None:
    handlers = {"h.js": "export default () => 1"}.get
    service = make(tmp_path / "data")
    try:
        [first] = [loop for loop in service.deploy(LOOPS, "loops.yml", handlers)["loops"]
                   if loop["name"] == "reader"]
        spec = service.loops.get("default", "reader").latest.spec
    finally:
        service.close()
    restarted = make(tmp_path / "data")  # the same content after a restart: the same version
    try:
        again = restarted.deploy(LOOPS, "loops.yml", handlers)["loops"][1]
        changed = restarted.deploy(LOOPS.replace("hunter22", "hunter23"), "loops.yml",
                                   handlers)["loops"][1]
    finally:
        restarted.close()
    assert (again["created"], again["version"]["id"]) == (False, first["version"]["id"])
    assert changed["created"] is True and changed["version"]["id"] != first["version"]["id"]

    key = (tmp_path / "data" / VERSION_KEY_FILE).read_bytes()
    source = "export default () => 1"
    assert version_id(spec, source, key) == first["version"]["id"]
    # Without the key, a guess of the secret cannot be checked against the id
    unkeyed = hashlib.sha256(orjson.dumps(spec.to_json(reveal_secrets=True),
                                          option=orjson.OPT_SORT_KEYS) + b"\0" + source.encode())
    assert first["version"]["id"] not in (unkeyed.hexdigest(),
                                          version_id(spec, source, b"another key"))
    # A spec without secrets has the id it always had, whatever the key
    plain = dataclasses.replace(spec, environment={"REGION": "gra"}, secrets=frozenset(),
                                connector={"type": "embedded"}, connectors={})
    assert version_id(plain, source, key) == version_id(plain, source, b"another key")


def test_secrets_are_sealed_in_the_database(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    service = make(tmp_path / "data")
    try:
        service.deploy(LOOPS, "loops.yml", {"h.js": "export default () => 1"}.get)
        with service.loops.engine.connect() as db:
            stored = db.execute(sa.select(loop_versions.c.spec)).scalars().all()
        reader = service.loops.get("default", "reader").latest.spec
    finally:
        service.close()
    raw = orjson.dumps(stored).decode()
    assert not [secret for secret in SECRETS if secret in raw], raw
    # each loop's connector twice (as its own, and by name: password and token), the pinger's
    # three URLs, the reader's API_KEY
    assert raw.count("{sealed:") == 2 * 2 * 2 + 3 + 1
    assert reader.environment["API_KEY"] == "hunter22"
    assert reader.connector["url"] == "http://admin:pa55word@127.0.0.1:8086"

    monkeypatch.setenv("TSQ_SECRET_KEY", Fernet.generate_key().decode())
    other = LoopStore(connect(Settings.load(tmp_path / "data").database_url), version_key=b"k",
                      sealer=Sealer.of(tmp_path / "data"))
    with pytest.raises(ConfigError) as refused:
        other.get("default", "reader")
    assert refused.value.message.startswith("a loop's secrets were sealed with another key "
                                            "than TSQ_SECRET_KEY")


def test_the_data_directory_and_its_files_are_the_owners_alone(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    service = make(data)
    try:
        service.deploy(LOOPS, "loops.yml", {"h.js": "export default () => 1"}.get)
        service.run("reader")
    finally:
        service.close()
    modes = {path.name: stat.S_IMODE(path.stat().st_mode)
             for path in [data, *data.iterdir()] if path.name.startswith(
                 ("data", "tsq.db", VERSION_KEY_FILE, KEY_FILE))}
    assert modes.pop("data") == 0o700
    assert {"tsq.db", VERSION_KEY_FILE, KEY_FILE} <= set(modes)
    assert modes == dict.fromkeys(modes, 0o600)


def test_secret_values_are_taken_out_of_what_a_run_leaves(tmp_path: Path) -> None:
    """What a handler logs, returns or throws, and the files it keeps, are stored and sent
    without the loop's secret values (a real worker runs the handler)."""
    handler = (
        "export default async function () {\n"
        "  console.log(`calling with ${env.API_KEY} in ${env.REGION}`);\n"
        "  await artifacts.save('key.txt', `key=${env.API_KEY}`);\n"
        "  if (env.FAIL === 'yes') throw new Error(`refused ${env.API_KEY}`);\n"
        "  return {key: env.API_KEY, [env.API_KEY]: 1, url: encodeURIComponent('a' + env.API_KEY)};\n"
        "}\n")
    with http_recorder() as hook:
        text = ("functions:\n"
                "  leaky:\n    handler: h.js\n    environment:\n"
                "      API_KEY: {secret: 's3cr3t/key'}\n      REGION: gra\n"
                "  failing:\n    handler: h.js\n    environment:\n"
                "      API_KEY: {secret: 's3cr3t/key'}\n      REGION: gra\n      FAIL: 'yes'\n"
                f"    notify: {{webhook: '{hook.url}/failed'}}\n")
        service = Service(Settings.load(tmp_path / "data"))
        try:
            service.deploy(text, "loops.yml", {"h.js": handler}.get)
            ok, failed = service.run("leaky"), service.run("failing")
            wait_until(lambda: len(hook.received) == 1)
            stored = [service.runs.get(ok.id), service.runs.get(failed.id)]
            logs = [line["message"] for run in stored for line in service.runs.logs(run.id)]
            files = [service.artifacts.get(run.id, "key.txt")[1] for run in stored]
        finally:
            service.close()
    assert ok.status == RunStatus.SUCCESS and failed.status == RunStatus.FAILED
    assert stored[0].result == {"key": MASK, MASK: 1, "url": f"a{MASK}"}
    assert stored[1].error is not None and stored[1].error.message == f"refused {MASK}"
    assert f"calling with {MASK} in gra" in logs and all("s3cr3t" not in line for line in logs)
    assert files == [f"key={MASK}".encode()] * 2
    sent = json.dumps(hook.received)
    assert "s3cr3t" not in sent and hook.received[0]["body"]["message"] == f"refused {MASK}"


def test_results_of_scripted_runs_are_redacted_before_they_are_kept(tmp_path: Path) -> None:
    pool = ScriptedPool(lambda job: RunResult.failed(
        "Error", "token plaintoken123 refused", stack="at h.js:1 (plaintoken123)"))
    service = Service(Settings.load(tmp_path / "data"), workers=pool)
    try:
        service.deploy(LOOPS, "loops.yml", {"h.js": "export default () => 1"}.get)
        ran = service.run("reader")
        kept = service.runs.get(ran.id)
    finally:
        service.close()
    assert kept.error is not None
    assert (kept.error.message, kept.error.stack) == (f"token {MASK} refused",
                                                      f"at h.js:1 ({MASK})")


@pytest.mark.parametrize(("result", "kept"), [
    ([1, 2.5, None, True], [1, 2.5, None, True]),  # no text: nothing to look for
    ({"k": "hunter22"}, {"k": MASK}),
    ([3, ["say hunter22"]], [3, [f"say {MASK}"]]),
    ("hunter22", MASK),
])
def test_a_result_is_redacted_wherever_it_holds_text(result: object, kept: object) -> None:
    spec = dataclasses.replace(_reader_spec(), secrets=frozenset({"API_KEY"}))
    assert redacted_result("v-redact", spec, RunResult(RunStatus.SUCCESS, result=result)
                           ).result == kept
    failed = RunResult.failed("Error", "refused hunter22")
    error = redacted_result("v-redact", spec, failed).error
    assert error is not None and error.message == f"refused {MASK}"
    assert scrubber_for("v-redact", spec)([LogLine(1, "info", "hunter22!")]
                                          ) == [LogLine(1, "info", f"{MASK}!")]


def _reader_spec() -> LoopSpec:
    return LoopSpec(project="default", name="reader", runtime="js", handler="h.js",
                    environment={"API_KEY": "hunter22", "REGION": "gra"})


@pytest.mark.slow
def test_what_a_server_writes_in_the_data_directory_is_the_owners_alone(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    with serving(data) as (url, _):
        written = httpx.post(f"{url}/write", content="private,host=a value=1 1000000000",
                             headers=admin(data))
        assert written.status_code == 204, written.text
        assert tsq(data, "deploy", str(EXAMPLE)).returncode == 0
    made = [path for path in data.rglob("*") if path.name != "serve.err"]
    assert {path.name for path in made} >= {"tsq.db", VERSION_KEY_FILE, KEY_FILE, "server.lock",
                                            "admin.token"}
    assert len(made) > 4  # the store's files too
    assert {str(path.relative_to(data)): oct(stat.S_IMODE(path.stat().st_mode)) for path in made
            } == {str(path.relative_to(data)): oct(0o700 if path.is_dir() else 0o600)
                  for path in made}
