"""Artifacts: the files a run produces (a report's CSV, JSON, chart, HTML page), kept with it.

They live in the run database beside the run record, so a report and the run that made it are
kept, listed and removed together. Saving a name again within the same run replaces the file.
"""

from __future__ import annotations

import mimetypes
import re
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tsq.clock import Clock, now_ms, wall
from tsq.db import artifacts, transaction
from tsq.errors import BadRequest, NotFound, PayloadTooLarge

__all__ = ["MAX_ARTIFACT_BYTES", "Artifact", "ArtifactStore", "content_type_for"]

MAX_ARTIFACT_BYTES = 16 << 20
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
# What a response's Content-Type header may carry (no line breaks), within the column's 100
# characters (PostgreSQL refuses a longer one where SQLite would keep it).
MAX_CONTENT_TYPE = 100
_TOKEN = r"[A-Za-z0-9!#$&^_.+-]+"
CONTENT_TYPE = re.compile(rf"(?=[ -~]{{3,{MAX_CONTENT_TYPE}}}\Z){_TOKEN}/{_TOKEN}(\s*;[ -~]*)?")
_TYPES = {".csv": "text/csv", ".json": "application/json", ".html": "text/html",
          ".png": "image/png", ".svg": "image/svg+xml", ".txt": "text/plain",
          ".md": "text/markdown"}


@dataclass(frozen=True)
class Artifact:
    run_id: str
    name: str
    content_type: str
    size: int
    created_ms: int

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "contentType": self.content_type, "size": self.size,
                "created": self.created_ms,
                "url": f"/v1/runs/{self.run_id}/artifacts/{self.name}"}


def content_type_for(name: str) -> str:
    """The media type a file name implies (`report.csv` → text/csv)."""
    suffix = name[name.rfind("."):].lower() if "." in name else ""
    return _TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"


class ArtifactStore:
    def __init__(self, engine: Engine, clock: Clock = wall) -> None:
        self.engine = engine
        self.clock = clock

    def put(self, run_id: str, name: Any, content_type: str | None, data: bytes) -> Artifact:
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise BadRequest(f"artifact name {name!r} is not a file name like report.csv "
                             f"(letters, digits, '.', '_', '-'; at most 200)")
        if len(data) > MAX_ARTIFACT_BYTES:
            raise PayloadTooLarge(f"artifact {name!r} is {len(data)} bytes; the limit is "
                                  f"{MAX_ARTIFACT_BYTES} bytes")
        if content_type is not None and not (isinstance(content_type, str)
                                             and CONTENT_TYPE.fullmatch(content_type)):
            raise BadRequest(f"artifact {name!r}: content type {content_type!r} is not a media "
                             f"type like text/csv or text/plain; charset=utf-8 (at most "
                             f"{MAX_CONTENT_TYPE} characters)")
        saved = Artifact(run_id, name, content_type or content_type_for(name), len(data),
                         now_ms(self.clock))
        with transaction(self.engine) as db:
            db.execute(artifacts.delete().where(artifacts.c.run_id == run_id,
                                                artifacts.c.name == name))
            db.execute(artifacts.insert().values(
                run_id=run_id, name=name, content_type=saved.content_type, size=saved.size,
                data=data, created_ms=saved.created_ms))
        return saved

    def list(self, run_id: str) -> list[Artifact]:
        query = (sa.select(artifacts.c.run_id, artifacts.c.name, artifacts.c.content_type,
                           artifacts.c.size, artifacts.c.created_ms)
                 .where(artifacts.c.run_id == run_id).order_by(artifacts.c.name))
        with self.engine.connect() as db:
            return [Artifact(*row) for row in db.execute(query)]

    def get(self, run_id: str, name: str) -> tuple[Artifact, bytes]:
        with self.engine.connect() as db:
            row = db.execute(sa.select(artifacts).where(artifacts.c.run_id == run_id,
                                                        artifacts.c.name == name)).first()
        if row is None:
            known = ", ".join(a.name for a in self.list(run_id)) or "none"
            raise NotFound(f"run {run_id} has no artifact {name!r}; its artifacts: {known}")
        return (Artifact(row.run_id, row.name, row.content_type, row.size, row.created_ms),
                bytes(row.data))
