"""`require(…)` is refused when a JavaScript loop is deployed (a loop loads no modules), found in
the syntax tree so strings, comments and look-alike names pass; and a run's JavaScript error is
printed once by `tsq run`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import tsq
from tsq.errors import CompileError
from tsq.runtimes import get_runtime

HOST_API = ("use what tsq provides instead: `db` (db.select, db.write, db.delete), `tsl()` (TSL "
            "queries), `Loop.run` (other loops), `artifacts` (files kept with the run), `env` "
            "(the loop's environment) and `console`")


def compile_js(source: str) -> None:
    get_runtime("js").prepare(source, "h.js")


@pytest.mark.parametrize(("source", "line", "col", "shown"), [
    ('const fs = require("fs");\nexport default async () => 1', 1, 12, '`require("fs")`'),
    ("module.exports = async () => {\n  const {join} =\n     require(`path`);\n}", 3, 6,
     '`require("path")`'),
    ("export default async (e) => {\n  if (e) return 1;\n  return require(e.params.m);\n}", 3, 10,
     "`require(…)`"),
    ("export default async () => [require('a'), require('b')]", 1, 29, '`require("a")`'),
    ("export default async () => require?.('os')", 1, 28, '`require("os")`'),
])
def test_require_is_refused_with_its_place_and_what_to_use(source: str, line: int, col: int,
                                                           shown: str) -> None:
    with pytest.raises(CompileError) as refused:
        compile_js(source)
    assert (refused.value.file, refused.value.line, refused.value.col) == ("h.js", line, col)
    assert refused.value.reason == (f"{shown} is not available in tsq loops: a loop is one file "
                                    f"and loads no modules; {HOST_API}")


@pytest.mark.parametrize("source", [
    'export default async () => "require(\\"fs\\")"',                        # in a string
    "// const fs = require('fs')\nexport default async () => 1",            # in a comment
    "/* require('fs') */ export default async () => `require('x')`",        # comment, template
    "const requireX = (m) => m;\nexport default async () => requireX('fs')",  # another name
    "export default async () => ({require: 1}).require",                     # a property
    "export default async () => typeof require",                             # not a call
    "function require(m) { return m }\nexport default async () => require('mine')",  # its own
    "export default async (require) => require('x')",                        # a parameter
])
def test_require_lookalikes_deploy(source: str) -> None:
    compile_js(source)


def test_import_names_the_same_host_api() -> None:
    with pytest.raises(CompileError) as refused:
        compile_js("import fs from 'fs';\nexport default async () => 1")
    assert refused.value.reason.endswith(HOST_API)


@pytest.mark.slow
def test_deploy_refuses_require_and_run_prints_an_error_once(tmp_path: Path) -> None:
    (tmp_path / "loops.yml").write_text("functions:\n  r:\n    handler: r.js\n")
    (tmp_path / "r.js").write_text('const fs = require("fs");\nexport default async () => 1\n')
    refused = tsq(tmp_path, "deploy", str(tmp_path / "loops.yml"))
    assert refused.returncode == 3
    assert 'r.js:1:12: functions.r.handler: `require("fs")` is not available' in refused.stderr
    assert "Traceback" not in refused.stderr

    (tmp_path / "r.js").write_text("export default async () => {\n  return missing.thing;\n}\n")
    assert tsq(tmp_path, "deploy", str(tmp_path / "loops.yml")).returncode == 0
    failed = tsq(tmp_path, "run", "r")
    assert failed.returncode == 1
    assert failed.stderr.count("ReferenceError: missing is not defined") == 1, failed.stderr
    assert failed.stderr.startswith("ReferenceError: missing is not defined\n    at ")
    assert "(r.js:2:3)" in failed.stderr
