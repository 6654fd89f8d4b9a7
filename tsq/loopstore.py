"""Loops and their immutable versions.

A version is stored once under its content hash; deploying the same content again only moves
`latest` back to it. Rollback moves `latest`; delete hides the loop and keeps every version, so
history and old runs stay readable. Concurrent deploys of one name are serialised by the
database: both versions are kept and `latest` is whichever committed last. The loops of one
loop file are deployed in one transaction: a failure or a crash part-way deploys none of them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from tsq import aftergraph
from tsq.clock import Clock, now_ms, wall
from tsq.db import loop_history, loop_versions, loops, transaction
from tsq.errors import Conflict, NotFound
from tsq.loopfile import Deployable
from tsq.model import LoopSpec, version_id
from tsq.sealing import Sealer

__all__ = ["LoopStore", "StoredLoop", "StoredVersion"]

log = logging.getLogger(__name__)

MAX_DEPLOY_ATTEMPTS = 5
FOUND_FOR_S = 1.0  # how long find() trusts an answer (writes by this store clear it at once)
FOUND_KEPT = 4096
VERSIONS_SPARE = 1024  # parsed versions kept beyond twice the live loops before a clear-out


@dataclass(frozen=True)
class StoredVersion:
    id: str
    number: int
    spec: LoopSpec
    source: str
    created_ms: int

    def to_json(self, *, with_source: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "number": self.number,
            "runtime": self.spec.runtime,
            "handler": self.spec.handler,
            "created": self.created_ms,
        }
        if with_source:
            data["source"] = self.source
        return data


@dataclass(frozen=True)
class StoredLoop:
    project: str
    name: str
    latest: StoredVersion

    def to_json(self) -> dict[str, Any]:
        return {"project": self.project, "name": self.name, "version": self.latest.to_json(),
                "spec": self.latest.spec.to_json()}


@dataclass(frozen=True)
class DeployOutcome:
    loop: StoredLoop
    created: bool  # False when that exact content was already a version


class LoopStore:
    def __init__(self, engine: Engine, clock: Clock = wall, *, version_key: bytes,
                 sealer: Sealer) -> None:
        self.engine = engine
        self.clock = clock
        self.version_key = version_key  # what secrets are hashed with in version ids
        self.sealer = sealer  # what secrets are stored sealed with (tsq.sealing)
        # find()'s answers, by (name, project), with when they were read: a run by hand looks
        # its loop up, and the query was a fifth of a no-op run. This store's own writes clear
        # it; writes by another process on the same database are seen within FOUND_FOR_S.
        self._found: dict[tuple[str, str | None], tuple[float, list[StoredLoop]]] = {}
        self._generation = 0  # bumped by each write, so a read that raced one is not kept
        self._versions: dict[str, StoredVersion] = {}  # parsed, by id (`live`)

    def _to_version(self, row: Any) -> StoredVersion:
        return StoredVersion(row.id, row.number, LoopSpec.from_json(self.sealer.unseal(row.spec)),
                             row.source, row.created_ms)

    def deploy(self, item: Deployable) -> DeployOutcome:
        return self.deploy_all([item])[0]

    def deploy_all(self, items: Sequence[Deployable],
                   also: Callable[[Connection, LoopSpec], None] | None = None
                   ) -> list[DeployOutcome]:
        """Store a version of each loop and point `latest` at it, all in one transaction;
        `also(db, spec)` writes what goes with each loop (its schedules) in the same one."""
        for _ in range(MAX_DEPLOY_ATTEMPTS):
            try:
                with transaction(self.engine) as db:
                    created = [self._deploy_one(db, item, also) for item in items]
                    # read back in the transaction: no connection of its own for each
                    stored = [self._found_in(db, item.spec.name, item.spec.project)[0]
                              for item in items]
                self.forget()
                outcomes = [DeployOutcome(loop, new)
                            for loop, new in zip(stored, created, strict=True)]
                for outcome in outcomes:
                    _log_deploy(outcome)
                return outcomes
            except sa.exc.IntegrityError:
                continue  # a concurrent deploy took the same number; number again
        names = ", ".join(repr(item.spec.name) for item in items)
        many = len(items) > 1
        raise Conflict(f"loop{'s' if many else ''} {names} {'are' if many else 'is'} being "
                       f"deployed by others right now; try again")

    def _deploy_one(self, db: Connection, item: Deployable,
                    also: Callable[[Connection, LoopSpec], None] | None) -> bool:
        vid = version_id(item.spec, item.source, self.version_key)
        created = self._insert_version(db, vid, item)
        self._point_latest(db, item.spec.project, item.spec.name, vid)
        if also is not None:
            also(db, item.spec)
        return created

    def _insert_version(self, db: Connection, vid: str, item: Deployable) -> bool:
        if db.execute(sa.select(loop_versions.c.id).where(loop_versions.c.id == vid)).first():
            return False
        spec = item.spec
        number = db.execute(
            sa.select(sa.func.coalesce(sa.func.max(loop_versions.c.number), 0) + 1).where(
                loop_versions.c.project == spec.project, loop_versions.c.name == spec.name
            )
        ).scalar_one()
        db.execute(loop_versions.insert().values(
            id=vid, project=spec.project, name=spec.name, number=number, runtime=spec.runtime,
            spec=self.sealer.seal(spec.to_json(reveal_secrets=True)), source=item.source,
            created_ms=now_ms(self.clock),
        ))
        return True

    def _point_latest(self, db: Connection, project: str, name: str, vid: str) -> None:
        now = now_ms(self.clock)
        updated = db.execute(
            loops.update()
            .where(loops.c.project == project, loops.c.name == name)
            .values(latest_version=vid, updated_ms=now, deleted_ms=None)
        )
        if updated.rowcount == 0:
            db.execute(loops.insert().values(project=project, name=name, latest_version=vid,
                                             created_ms=now, updated_ms=now))
        db.execute(loop_history.insert().values(project=project, name=name, version_id=vid,
                                                since_ms=now))

    def get(self, project: str, name: str) -> StoredLoop:
        found = self.find(name, project)
        if not found:
            raise NotFound(f"no loop named {name!r} in project {project!r}")
        return found[0]

    def find(self, name: str, project: str | None = None) -> list[StoredLoop]:
        """The live loops called `name` (in `project` if given) at their latest versions, in
        one prepared query, remembered for FOUND_FOR_S: a manual run looks its loop up this
        way."""
        key, now, generation = (name, project), time.monotonic(), self._generation
        hit = self._found.get(key)
        if hit is not None and now - hit[0] < FOUND_FOR_S:
            return list(hit[1])
        with self.engine.connect() as db:
            found = self._found_in(db, name, project)
        if len(self._found) >= FOUND_KEPT:
            self._found.clear()
        if generation == self._generation:
            self._found[key] = (now, found)
        return list(found)

    def _found_in(self, db: Connection, name: str, project: str | None) -> list[StoredLoop]:
        if project is None:
            rows = db.execute(_FIND_ANYWHERE, {"b_name": name}).all()
        else:
            rows = db.execute(_FIND_IN, {"b_name": name, "b_project": project}).all()
        return [StoredLoop(r.project, r.name, self._kept_version(r)) for r in rows]

    def forget(self) -> None:
        """This store (or another process of a cluster) wrote: what find() remembers may be
        out of date."""
        self._generation += 1
        self._found.clear()

    def live(self, project: str | None = None) -> list[StoredLoop]:
        """The live loops (of `project`), each at its latest version. A deploy reads them twice
        (the `after:` graph, the late-point watches), and so does every process of a cluster
        at each change; parsing each version's spec was most of a deploy beside 2,000 loops
        (130 ms). Versions never change, so the parsed ones are kept by id."""
        query = (sa.select(loops.c.project, loops.c.name, loops.c.latest_version)
                 .where(loops.c.deleted_ms.is_(None)))
        if project is not None:
            query = query.where(loops.c.project == project)
        with self.engine.connect() as db:
            rows = db.execute(query.order_by(loops.c.project, loops.c.name)).all()
        kept = {vid: version for vid in {row.latest_version for row in rows}
                if (version := self._versions.get(vid)) is not None}
        kept.update((version.id, version) for version in self.versions_of(
            row.latest_version for row in rows if row.latest_version not in kept))
        if project is None and len(self._versions) > 2 * len(rows) + VERSIONS_SPARE:
            self._versions = dict(kept)  # only the live ones stay
        return [StoredLoop(row.project, row.name, kept[row.latest_version]) for row in rows
                if row.latest_version in kept]

    def _kept_version(self, row: Any) -> StoredVersion:
        """The version of `row` (a `loop_versions` row), parsed once per process."""
        version = self._versions.get(row.id)
        if version is None:
            version = self._versions[row.id] = self._to_version(row)
        return version

    def deleted(self) -> list[tuple[StoredLoop, int]]:
        """The deleted loops, each at the version it had when deleted, with when (epoch ms)."""
        query = (sa.select(loop_versions, loops.c.deleted_ms)
                 .join(loops, loops.c.latest_version == loop_versions.c.id)
                 .where(loops.c.deleted_ms.is_not(None)))
        with self.engine.connect() as db:
            rows = db.execute(query.order_by(loops.c.project, loops.c.name)).all()
        return [(StoredLoop(r.project, r.name, self._to_version(r)), int(r.deleted_ms))
                for r in rows]

    def versions(self, project: str, name: str) -> list[StoredVersion]:
        with self.engine.connect() as db:
            rows = db.execute(sa.select(loop_versions).where(
                loop_versions.c.project == project, loop_versions.c.name == name
            ).order_by(loop_versions.c.number.desc())).all()
        return [self._to_version(row) for row in rows]

    def version(self, vid: str) -> StoredVersion:
        with self.engine.connect() as db:
            return self._version(db, vid)

    def versions_of(self, ids: Iterable[str]) -> list[StoredVersion]:
        """The versions with these ids, in one query a thousand ids (those not found left
        out), each parsed once per process: what the runs a restart takes over run at, and
        the versions `live` has not parsed yet."""
        wanted = sorted(set(ids))
        if not wanted:
            return []
        found: list[StoredVersion] = []
        with self.engine.connect() as db:
            for first in range(0, len(wanted), 1000):
                rows = db.execute(sa.select(loop_versions).where(
                    loop_versions.c.id.in_(wanted[first:first + 1000]))).all()
                found.extend(self._kept_version(row) for row in rows)
        return found

    def rollback(self, project: str, name: str, to: str | int | None = None) -> StoredLoop:
        """Point `latest` at version `to` (id, id prefix or number), or the one before it."""
        current = self.get(project, name)
        history = self.versions(project, name)
        target = _pick_version(history, current.latest, to, name)
        with transaction(self.engine) as db:
            self._point_latest(db, project, name, target.id)
        self.forget()
        log.info("rolled back %s/%s to version %d", project, name, target.number,
                 extra={"project": project, "loop": name, "version": target.id,
                        "number": target.number})
        return self.get(project, name)

    def delete(self, project: str, name: str) -> None:
        self.get(project, name)
        now = now_ms(self.clock)
        with transaction(self.engine) as db:
            db.execute(loops.update().where(loops.c.project == project, loops.c.name == name)
                       .values(deleted_ms=now))
            db.execute(loop_history.insert().values(project=project, name=name, version_id=None,
                                                    since_ms=now))
        self.forget()
        log.info("deleted %s/%s", project, name, extra={"project": project, "loop": name})

    def version_at(self, project: str, name: str, at_ms: int) -> StoredVersion:
        """The version `name` pointed at, at `at_ms`: what a pipeline that started then runs.

        NotFound says why there is none: the loop did not exist yet, or it has been deleted
        (a deletion stops the pipelines that would still call the loop).
        """
        with self.engine.connect() as db:
            rows = db.execute(sa.select(loop_history.c.version_id, loop_history.c.since_ms)
                              .where(loop_history.c.project == project,
                                     loop_history.c.name == name)
                              .order_by(loop_history.c.since_ms, loop_history.c.id)).all()
            pinned = [row for row in rows if row.since_ms <= at_ms]
            if rows and rows[-1].version_id is None:
                raise NotFound(f"loop {name!r} was deleted at {_iso(rows[-1].since_ms)}, "
                               f"while this pipeline ran; its steps stop here")
            if not pinned or pinned[-1].version_id is None:
                later = [row.since_ms for row in rows if row.since_ms > at_ms]
                if later:
                    raise NotFound(
                        f"loop {name!r} was deployed at {_iso(later[0])}, after this pipeline "
                        f"started ({_iso(at_ms)}); it joins pipelines that start later")
                raise NotFound(f"no loop named {name!r} in project {project!r}")
            return self._version(db, pinned[-1].version_id)

    def after_graph(self, project: str) -> dict[str, list[str]]:
        """Live loops of `project` → the loops their `after:` events follow."""
        return {name: sorted(after) for name, after in
                aftergraph.follows(loop.latest.spec for loop in self.live(project)).items()}

    def _version(self, db: Connection, vid: str) -> StoredVersion:
        row = db.execute(sa.select(loop_versions).where(loop_versions.c.id == vid)).first()
        if row is None:
            raise NotFound(f"no loop version {vid!r}")
        return self._to_version(row)


_FIND_ANYWHERE = (sa.select(loop_versions)
                  .join(loops, loops.c.latest_version == loop_versions.c.id)
                  .where(loops.c.name == sa.bindparam("b_name"), loops.c.deleted_ms.is_(None))
                  .order_by(loops.c.project))
_FIND_IN = _FIND_ANYWHERE.where(loops.c.project == sa.bindparam("b_project"))


def _pick_version(history: list[StoredVersion], current: StoredVersion,
                  to: str | int | None, name: str) -> StoredVersion:
    if to is None:
        older = [v for v in history if v.number < current.number]
        if not older:
            raise Conflict(f"loop {name!r} is at its first version {current.number}; "
                           f"there is nothing to roll back to")
        return older[0]
    text = str(to)
    matches = [v for v in history if str(v.number) == text or v.id.startswith(text)]
    if len(matches) != 1:
        known = ", ".join(f"{v.number} ({v.id[:12]})" for v in history)
        problem = "matches several versions" if matches else "is not a version of"
        raise NotFound(f"{text!r} {problem} loop {name!r}; its versions are {known}")
    return matches[0]


def _log_deploy(outcome: DeployOutcome) -> None:
    loop = outcome.loop
    fields = {"project": loop.project, "loop": loop.name, "version": loop.latest.id,
              "number": loop.latest.number, "new_version": outcome.created}
    if outcome.created:
        log.info("deployed %s/%s version %d", loop.project, loop.name, loop.latest.number,
                 extra=fields)
    else:
        log.debug("deployed %s/%s unchanged (version %d)", loop.project, loop.name,
                  loop.latest.number, extra=fields)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


