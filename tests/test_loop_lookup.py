"""A run names its loop; the project may be left out when only one project has that name."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tsq.config import Settings
from tsq.errors import Conflict, NotFound
from tsq.service import Service

FILES = {"h.js": "export default async () => 'alpha'", "g.js": "export default async () => 'beta'"}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    made = Service(Settings.load(Path(tmp_path_factory.mktemp("data"))))
    made.deploy("project: alpha\nfunctions:\n  common:\n    handler: h.js\n"
                "  only-alpha:\n    handler: h.js\n", "a.yml", FILES.get)
    made.deploy("project: beta\nfunctions:\n  common:\n    handler: g.js\n", "b.yml", FILES.get)
    yield made
    made.close()


def test_a_name_in_one_project_needs_no_project(service: Service) -> None:
    assert service.run("only-alpha").result == "alpha"


def test_a_name_in_two_projects_needs_one(service: Service) -> None:
    with pytest.raises(Conflict) as raised:
        service.run("common")
    assert raised.value.details == {"projects": ["alpha", "beta"]}
    assert service.run("common", project="beta").result == "beta"
    assert service.run("common", project="alpha").result == "alpha"


@pytest.mark.parametrize("project, message", [
    (None, "no loop named 'nope'; `tsq loops` lists the deployed ones"),
    ("alpha", "no loop named 'nope' in project 'alpha'"),
    ("beta", "no loop named 'only-alpha' in project 'beta'"),
])
def test_an_unknown_name_says_where_it_looked(service: Service, project: str | None,
                                              message: str) -> None:
    name = "only-alpha" if project == "beta" else "nope"
    with pytest.raises(NotFound) as raised:
        service.run(name, project=project)
    assert str(raised.value.message) == message
