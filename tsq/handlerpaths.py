"""Which files a loop file may name: those in its own directory or below it.

A loop file names its handlers relative to itself. A name that leaves that directory
(`/etc/passwd`, `../../x.js`, or a symlink beside the loop file pointing elsewhere) would make
`tsq deploy` read a file the loop file has no business with and upload it to a server. The rule
on the name's text holds everywhere, the server included (it only ever sees names); the CLI,
which reads the files, also resolves symlinks before it reads one.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

__all__ = ["WHAT_IS_RIGHT", "outside", "resolve_beside"]

WHAT_IS_RIGHT = ("name a file in the loop file's directory or below it, relative to the loop "
                 "file (like handler.js or handlers/handler.js)")
_DRIVE = re.compile(r"[A-Za-z]:")


def outside(name: str) -> str | None:
    """Why the text `name` is not a path inside the loop file's directory; None if it is."""
    if "\0" in name:
        return "holds a NUL character"
    if name.startswith(("/", "~")) or _DRIVE.match(name) or "\\" in name:
        return "is an absolute path or uses \\" if "\\" in name else "is an absolute path"
    normal = posixpath.normpath(name)
    if normal == ".." or normal.startswith("../"):
        return "leaves the loop file's directory"
    return None


def resolve_beside(directory: Path, name: str) -> Path | None:
    """The file `name` stands for in `directory`, symlinks resolved; None when the name or the
    file it resolves to is outside `directory`."""
    if outside(name) is not None:
        return None
    root = directory.resolve()
    path = (root / name).resolve()
    return path if path.is_relative_to(root) else None
