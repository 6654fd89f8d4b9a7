"""The web UI's third-party assets: fetched from the npm registry by `make install` (`python -m
tsq.ui.assets`), checked against the pinned sha256, and unpacked into `static/vendor/` (ignored by
git). Nothing is loaded from a CDN: the pages work offline once installed.
"""

from __future__ import annotations

import hashlib
import io
import sys
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ASSETS", "VENDOR", "Asset", "fetch", "missing"]

VENDOR = Path(__file__).parent / "static" / "vendor"
REGISTRY = "https://registry.npmjs.org"


@dataclass(frozen=True)
class Asset:
    package: str
    version: str
    sha256: str  # of the registry's tarball
    files: dict[str, str]  # path in the tarball → name in static/vendor/

    @property
    def stamp(self) -> str:
        """A file written after the files, so a new pin fetches again."""
        return f".{self.package}-{self.version}-{self.sha256[:16]}"

    @property
    def present(self) -> bool:
        """Its files are in place (a wheel carries them without the stamp)."""
        return all((VENDOR / name).is_file() for name in self.files.values())

    @property
    def installed(self) -> bool:
        """Its files are in place, fetched at this pin."""
        return self.present and (VENDOR / self.stamp).is_file()

    @property
    def url(self) -> str:
        return f"{REGISTRY}/{self.package}/-/{self.package}-{self.version}.tgz"


# uPlot (MIT): the time-series charts of the Explore page.
ASSETS = (
    Asset("uplot", "1.6.32", "4b8a8191e425658e3ea8c8c1314b0fc679c861ee3a1af2b20c7b16ba50b5133d",
          {"package/dist/uPlot.iife.min.js": "uPlot.iife.min.js",
           "package/dist/uPlot.min.css": "uPlot.min.css",
           "package/LICENSE": "uPlot.LICENSE"}),
)


def missing() -> list[str]:
    """The vendored files not installed, as `name (package version)`."""
    return [f"{name} ({asset.package} {asset.version})" for asset in ASSETS
            if not asset.present for name in asset.files.values()]


def fetch(asset: Asset, into: Path = VENDOR) -> None:
    """Download `asset`'s tarball, refuse it unless its sha256 is the pinned one, and unpack
    its files into `into`."""
    with urllib.request.urlopen(asset.url, timeout=60) as answer:
        data = answer.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != asset.sha256:
        raise RuntimeError(f"{asset.url} has sha256 {digest}, not the pinned {asset.sha256}; "
                           f"nothing was installed")
    into.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        for inside, name in asset.files.items():
            member = archive.extractfile(inside)
            if member is None:
                raise RuntimeError(f"{asset.url} has no file {inside}")
            (into / name).write_bytes(member.read())
    (into / asset.stamp).write_text(f"{asset.url} sha256 {asset.sha256}\n", encoding="utf-8")


def main() -> int:
    """Fetch what is missing; exit 1 naming the asset that could not be installed."""
    for asset in ASSETS:
        if asset.installed:
            continue
        try:
            fetch(asset)
        except (OSError, RuntimeError) as error:
            print(f"error: could not install {asset.package} {asset.version} for the web UI: "
                  f"{error}", file=sys.stderr)
            return 1
        print(f"installed {asset.package} {asset.version} into {VENDOR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
