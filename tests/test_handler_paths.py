"""A loop file's handler must be a file in the loop file's directory or below it: a name that
leaves it (absolute, `..`, a symlink pointing out) is a validation error naming the place,
raised before any file is read (by the CLI) or looked up (by the server)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import tsq
from tsq.client import read_bundle
from tsq.errors import InvalidLoopFile
from tsq.loopfile import load_loop_file

ESCAPES = ["/etc/passwd", "../../x.js", "handlers/../../x.js", "~/x.js", "C:/x.js",
           "..\\x.js", "/tmp/../etc/passwd.tsl"]


def loops(handler: str) -> str:
    return f"functions:\n  x:\n    handler: '{handler}'\n"


@pytest.mark.parametrize("handler", ESCAPES)
def test_the_server_refuses_a_handler_outside_the_loop_files_directory(handler: str) -> None:
    asked: list[str] = []

    def read(name: str) -> str:
        asked.append(name)
        return "export default async () => 1"

    with pytest.raises(InvalidLoopFile) as raised:
        load_loop_file(loops(handler), "loops.yml", read, lambda *_: None)
    [problem] = raised.value.problems
    assert (problem.file, problem.line, problem.col, problem.path) == (
        "loops.yml", 3, 14, "functions.x.handler")
    assert handler in problem.message and "in the loop file's directory or below it" in \
        problem.message
    assert asked == []


def test_a_handler_below_the_loop_file_is_fine() -> None:
    files = {"handlers/x.js": "export default async () => 1"}
    [loop] = load_loop_file(loops("./handlers/x.js"), "loops.yml",
                            lambda name: files.get(name.removeprefix("./")), lambda *_: None)
    assert loop.source == files["handlers/x.js"]


def test_the_api_answers_a_validation_error(api: httpx.Client) -> None:
    answer = api.post("/v1/loops", json={"content": loops("../../x.js"),
                                         "files": {"../../x.js": "export default () => 1"}})
    assert answer.status_code == 422
    [problem] = answer.json()["error"]["details"]["problems"]
    assert problem["path"] == "functions.x.handler" and "leaves" in problem["message"]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """loops/ beside a secret file that a loop file there must not reach."""
    (tmp_path / "secret.js").write_text("export default async () => 'the secret'")
    (tmp_path / "loops").mkdir()
    (tmp_path / "loops" / "link.js").symlink_to(tmp_path / "secret.js")
    return tmp_path / "loops"


@pytest.mark.parametrize("handler", ["../secret.js", "link.js", "/etc/passwd"])
def test_the_cli_refuses_before_reading_anything(project: Path, handler: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    file = project / "loops.yml"
    file.write_text(loops(handler))
    read: list[Path] = []
    real = Path.read_text

    def spy(path: Path, *args: object, **kwargs: object) -> str:
        read.append(path)
        return real(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "read_text", spy)
    with pytest.raises(InvalidLoopFile, match=r"loops.yml:3:14: functions.x.handler"):
        read_bundle(file)
    assert read == [file]


def test_tsq_deploy_prints_the_place_and_deploys_nothing(project: Path, tmp_path: Path) -> None:
    (project / "loops.yml").write_text(loops("link.js"))
    done = tsq(tmp_path / "data", "deploy", str(project / "loops.yml"))
    assert done.returncode != 0
    assert "loops.yml:3:14: functions.x.handler: handler \"link.js\" resolves (through a " \
           "symlink) to a file outside" in done.stderr + done.stdout
    assert "the secret" not in done.stderr + done.stdout
    assert "deployed" not in done.stdout
