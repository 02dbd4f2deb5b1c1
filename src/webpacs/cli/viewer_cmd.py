"""``webpacs viewer install``: fetch OHIF 3's built app for the viewer ``serve`` hosts.

npm fetches the pinned ``@ohif/app`` package (``npm pack``: only its ``dist/`` is needed,
and ``npm install`` cannot resolve the package's own dependencies); its ``dist/`` is
unpacked where ``webpacs serve`` looks for it (``web.viewer.installed_dist``), through a
temporary directory renamed into place, so a cut-short install leaves nothing half-written.
"""

from __future__ import annotations

import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import click

from webpacs.cli.common import UserPath, console
from webpacs.web.viewer import OHIF_VERSION, installed_dist


@click.group()
def viewer() -> None:
    """The OHIF 3 viewer that `webpacs serve` hosts at /viewer/."""


@viewer.command("install")
@click.option("--version", "version", default=OHIF_VERSION, show_default=True,
              help="The @ohif/app release to fetch.")  # fmt: skip
@click.option("--dir", "target", type=UserPath(file_okay=False), default=None,
              help="Where to put OHIF's dist/ (default: where `webpacs serve` looks;"
              " elsewhere, set viewer.ohifPath to it).")  # fmt: skip
@click.option("--force", is_flag=True, help="Fetch it again even when it is there.")
def install(version: str, target: str | None, force: bool) -> None:
    """Fetch OHIF 3 (npm @ohif/app) with npm and unpack its dist/ for /viewer/."""
    dest = Path(target) if target else installed_dist(version)
    if (dest / "index.html").is_file() and not force:
        console.print(f"OHIF {version} is already in {dest}", soft_wrap=True)
        return
    npm = shutil.which("npm")
    if npm is None:
        raise click.ClickException(
            "npm is needed to fetch OHIF (Debian: apt install npm); or download the"
            f" @ohif/app {version} package and set viewer.ohifPath to its dist/ directory"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        console.print(f"fetching @ohif/app@{version} with npm ...", soft_wrap=True)
        done = subprocess.run(
            [npm, "pack", "--silent", "--pack-destination", tmp, f"@ohif/app@{version}"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        tarballs = list(Path(tmp).glob("*.tgz"))
        if done.returncode != 0 or not tarballs:
            raise click.ClickException(
                f"npm pack @ohif/app@{version} failed: {(done.stderr or done.stdout).strip()}"
            )
        unpacked = Path(tmp) / "unpacked"
        with tarfile.open(tarballs[0]) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith("package/dist/")]
            tar.extractall(unpacked, members=members, filter="data")
        if not (unpacked / "package/dist/index.html").is_file():
            raise click.ClickException(f"@ohif/app@{version} has no dist/index.html")
        if dest.exists():
            shutil.rmtree(dest)
        (unpacked / "package/dist").rename(dest)
    console.print(f"OHIF {version} installed in {dest}", soft_wrap=True)
    if target:
        console.print(f"set viewer.ohifPath to {dest} for `webpacs serve` to host it")
    else:
        console.print("`webpacs serve` hosts it at /viewer/", soft_wrap=True)
