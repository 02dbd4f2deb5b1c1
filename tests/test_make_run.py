"""``make run`` installs what serving needs, not the test tools; and what serving imports is
in what it installs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import require_binary

ROOT = Path(__file__).parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
RUN_EXTRAS = ("samples", "codecs")


def test_make_run_installs_no_test_extra(tmp_path: Path) -> None:
    make = require_binary("make")
    # not a sub-make of `make test` (which would print "Entering/Leaving directory" lines)
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    out = subprocess.run(
        [make, "-n", "run", f"VENV={tmp_path / 'venv'}"],
        cwd=ROOT, capture_output=True, text=True, check=True, env=env,
    )  # fmt: skip
    installs = [line for line in out.stdout.splitlines() if "pip install" in line and "-e" in line]
    assert installs, out.stdout
    for line in installs:
        extras = re.search(r'-e "\.\[([^\]]*)\]"', line)
        assert extras, line
        assert set(extras.group(1).split(",")) == set(RUN_EXTRAS), line
    assert not re.search(r"\bpytest\b|\[test", out.stdout.replace(str(tmp_path), "TMP"))
    # the sample import and the server come last, the server's URLs printed by it
    commands = [line for line in out.stdout.splitlines() if line.strip()]
    assert "webpacs import --samples" in commands[-2] and "webpacs serve" in commands[-1]


def _closure(requirements: list[str]) -> set[str]:
    """The installed distributions these requirements bring, recursively."""
    seen: set[str] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        key = f"{name}[{','.join(sorted(req.extras))}]"
        if key in seen:
            continue
        seen.add(key)
        try:
            requires = metadata.distribution(req.name).requires or []
        except metadata.PackageNotFoundError:
            continue
        for text in requires:
            sub = Requirement(text)
            if sub.marker is None or any(
                sub.marker.evaluate({"extra": e}) for e in ("", *req.extras)
            ):
                todo.append(Requirement(str(sub).split(";")[0]))
    return {k.split("[")[0] for k in seen}


#: What `webpacs serve` does on start, run where only `make run`'s distributions import.
_SERVE = """
import json, sys, tempfile
from importlib.abc import MetaPathFinder

blocked = set(json.loads(sys.argv[1]))

class Blocker(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r} (not installed by make run)")
        return None

sys.meta_path.insert(0, Blocker())
from webpacs.cli.main import main
from webpacs.cli import logs
from webpacs.config import isolated
from webpacs.storage.registry import open_store
from webpacs.web.app import create_app
from webpacs.dimse.scp import build_ae
from webpacs import metrics
from starlette.testclient import TestClient
logs.configure(0, "json")
s = isolated({"dataDir": tempfile.mkdtemp()})
build_ae(s)
with TestClient(create_app(s, open_store(s))) as client:
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/dicomweb/studies"):
        assert client.get(path).status_code == 200, path
print("served")
"""


def test_serving_needs_only_what_make_run_installs() -> None:
    """`webpacs serve`'s start (app, routes, DIMSE SCP, metrics, JSON logs) works with every
    distribution outside `webpacs[samples,codecs]`'s dependencies made unimportable."""
    project = PYPROJECT["project"]
    wanted = list(project["dependencies"])
    for extra in RUN_EXTRAS:
        wanted += project["optional-dependencies"][extra]
    allowed = _closure(wanted)
    assert "prometheus-client" in allowed and "pytest" not in allowed
    owners = metadata.packages_distributions()
    blocked = sorted(
        name
        for name, dists in owners.items()
        if name != "webpacs"
        and name not in sys.stdlib_module_names
        and not any(canonicalize_name(d) in allowed for d in dists)
    )
    assert "pytest" in blocked and "moto" in blocked
    out = subprocess.run(
        [sys.executable, "-c", _SERVE, json.dumps(blocked)], capture_output=True, text=True
    )
    assert out.returncode == 0 and "served" in out.stdout, out.stderr[-3000:]
