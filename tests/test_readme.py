"""The README is a contract: every code block of README.md, and of each docs page that shows
commands, runs here in order, as a newcomer would type it, and must do what the page says.

Each page runs in a fresh working directory (the repository's `examples/` and the venv linked
into it) with its own data directory, and its `tsq serve &` on a free port of 127.0.0.1 (the
pages say `localhost:8080`, which is rewritten to that port). What each block must print, which
blocks are files and which must not run is written in the page itself, as directives above the
block (tests/markdown_blocks.py lists them).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.conftest import ROOT, free_port
from tests.markdown_blocks import Block, blocks

COMMAND_TIMEOUT_S = 300
SERVER_START_S = 60
PAGE_TIMEOUT_S = 900
PAGE_PORT = re.compile(r"(localhost|127\.0\.0\.1):8080")  # the pages' port, the test's own
TRAILING_COMMENT = re.compile(r"\s+#[^'\"]*$")  # `cmd &  # why`: a comment with no quote in it
# Pages whose blocks are commands a person types; docs/tsl-functions.md is all TSL examples,
# evaluated by tests/runtimes/tsl/test_docs.py.
PAGES = [ROOT / "README.md", *sorted(p for p in (ROOT / "docs").glob("*.md")
                                     if p.name != "tsl-functions.md")]
RUNNABLE = {"sh", "python"}
SHOWN = {"text", "yaml", "js", "tsl", "toml", "json"}


class Reader:
    """One page read by one newcomer: a working directory, a data directory, a server."""

    def __init__(self, home: Path) -> None:
        self.work = home / "work"
        self.work.mkdir()
        (self.work / "examples").symlink_to(ROOT / "examples")
        (self.work / ".venv").symlink_to(Path(sys.prefix))
        self.data = home / "data"
        self.port = free_port()
        self.env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
                    "HOME": str(home), "TSQ_DATA_DIR": str(self.data), "TSQ_WORKERS": "1",
                    "COLUMNS": "120", "NO_COLOR": "1", "TERM": "dumb"}
        self.env.pop("TSQ_URL", None)
        self.background: list[subprocess.Popen[bytes]] = []
        self.transcript = ""

    def read(self, block: Block) -> None:
        if block.argument("skip") is not None:
            return
        if (name := block.argument("file")) is not None:
            (self.work / name).parent.mkdir(parents=True, exist_ok=True)
            (self.work / name).write_text(block.text, encoding="utf-8")
        elif (path := block.argument("same-as")) is not None:
            shown = (ROOT / path).read_text(encoding="utf-8")
            assert block.text.strip() == shown.strip(), (
                f"{block.where}: the block differs from {path}; show the file as it is")
        elif block.language == "sh":
            self._run_commands(block)
        elif block.language == "python":
            self._run_python(block)
        else:
            raise AssertionError(f"{block.where}: a {block.language!r} block needs a directive "
                                 f"(file NAME, same-as PATH or skip: REASON)")

    def _run_commands(self, block: Block) -> None:
        output = ""
        commands = list(_commands(block.text))
        for index, written in enumerate(commands):
            command = self._substituted(block, written)  # a let may name what the one above made
            if (bare := TRAILING_COMMENT.sub("", command)).endswith("&"):
                self._start(block, bare[:-1])
                continue
            done = self._bash(command)
            output += done.stdout
            last = index == len(commands) - 1
            self._check_exit(block, command, done, last and block.argument("fails") is not None)
        self._check_expected(block, output)

    def _run_python(self, block: Block) -> None:
        done = subprocess.run([sys.executable, "-c", self._substituted(block, block.text)],
                              cwd=self.work, env=self.env, capture_output=True, text=True,
                              timeout=COMMAND_TIMEOUT_S, check=False)
        output = done.stdout + done.stderr
        self.transcript += f"\n--- {block.where} (python)\n{output}"
        assert done.returncode == 0, f"{block.where}: the Python block failed:\n{output}"
        self._check_expected(block, output)

    def _bash(self, command: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=self.work,
                              env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=COMMAND_TIMEOUT_S, check=False)
        self.transcript += f"\n$ {command}\n{done.stdout}"
        return done

    def _check_exit(self, block: Block, command: str, done: subprocess.CompletedProcess[str],
                    should_fail: bool) -> None:
        if should_fail:
            assert done.returncode != 0, f"{block.where}: `{command}` should fail but exited 0"
            assert "Traceback" not in done.stdout, f"{block.where}: `{command}`:\n{done.stdout}"
        else:
            assert done.returncode == 0, (
                f"{block.where}: `{command}` exited {done.returncode}:\n{done.stdout}")

    def _check_expected(self, block: Block, output: str) -> None:
        for promised in block.arguments("expect"):
            expected = PAGE_PORT.sub(f"127.0.0.1:{self.port}", promised)
            assert expected in output, f"{block.where}: expected {expected!r} in:\n{output}"

    def _substituted(self, block: Block, text: str) -> str:
        text = PAGE_PORT.sub(f"127.0.0.1:{self.port}", text)
        text = re.sub(r"\btsq serve\b(?!.*--port)", f"tsq serve --port {self.port}", text)
        for binding in block.arguments("let"):
            name, _, source = (part.strip() for part in binding.partition("="))
            if re.search(word := rf"\b{re.escape(name)}\b", text):
                text = re.sub(word, self._value(block, source), text)
        return text

    def _value(self, block: Block, source: str) -> str:
        if source.startswith("run of "):
            loop = source.removeprefix("run of ").strip()
            listed = self._bash(f"tsq runs --loop {loop} --limit 1 --json")
            runs = orjson.loads(listed.stdout)["runs"]
            assert runs, f"{block.where}: no run of {loop} to show"
            # The whole id: a short one unique now may not be once the README's server has
            # made another run within the same few seconds (scheduled loops run meanwhile).
            return str(runs[0]["id"])
        if source == "job":
            jobs = re.findall(r'"id"\s*:\s*"([^"]+)"[^{}]*"total"', self.transcript)
            assert jobs, f"{block.where}: no backfill job was started above"
            return str(jobs[-1])
        raise AssertionError(f"{block.where}: unknown value {source!r} in a let directive")

    def _start(self, block: Block, command: str) -> None:
        process = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=self.work,
                                   env=self.env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, start_new_session=True)
        self.background.append(process)
        if "tsq serve" in command:
            self._wait_for_server(block, process)

    def _wait_for_server(self, block: Block, process: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + SERVER_START_S
        while time.monotonic() < deadline:
            assert process.poll() is None, f"{block.where}: tsq serve exited {process.returncode}"
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/v1/loops", timeout=2).status_code:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise AssertionError(f"{block.where}: tsq serve did not answer in {SERVER_START_S} s")

    def close(self) -> None:
        for process in self.background:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.background:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


def _commands(text: str) -> Iterator[str]:
    """The commands of a shell block: a line, or several where a quote or a backslash goes on."""
    pending = ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line + "\n"
        if line.endswith("\\") or not _complete(pending):
            continue
        yield pending.strip()
        pending = ""
    if pending.strip():
        raise AssertionError(f"an unfinished shell command: {pending!r}")


def _complete(command: str) -> bool:
    checked = subprocess.run(["bash", "-n", "-c", command], capture_output=True, check=False)
    return checked.returncode == 0


@pytest.fixture
def reader(tmp_path: Path) -> Iterator[Reader]:
    reader = Reader(tmp_path)
    yield reader
    reader.close()


def test_every_block_says_what_it_is() -> None:
    """A block without a language, or with one the contract does not know, fails here: it would
    otherwise escape the tests."""
    for page in PAGES:
        for block in blocks(page):
            assert block.language in RUNNABLE | SHOWN, (
                f"{block.where}: a code block needs a language ({', '.join(sorted(RUNNABLE))} "
                f"run; {', '.join(sorted(SHOWN))} are shown), not {block.language!r}")


@pytest.mark.slow
@pytest.mark.timeout(PAGE_TIMEOUT_S)
@pytest.mark.parametrize("page", [p for p in PAGES if any(
    b.language in RUNNABLE for b in blocks(p))], ids=lambda p: p.name)
def test_page_runs_as_written(page: Path, reader: Reader) -> None:
    for block in blocks(page):
        reader.read(block)
