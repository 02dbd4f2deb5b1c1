"""``webpacs.core`` imports only the standard library and pydicom (DESIGN.md, rule 1).

``import pydicom`` itself loads whatever optional packages are installed (numpy,
Pillow, requests, ...), so the runtime check allows what pydicom loads on its own
and the static check reads every import statement of every module under core.
"""

from __future__ import annotations

import ast
import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import webpacs.core

ALLOWED = set(sys.stdlib_module_names) | {"pydicom", "webpacs"}
CORE_MODULES = sorted(m.name for m in pkgutil.walk_packages(webpacs.core.__path__, "webpacs.core."))

PROBE = """
import importlib, json, pkgutil, sys
import pydicom, pydicom.datadict
baseline = set(sys.modules)
import webpacs.core
names = [m.name for m in pkgutil.walk_packages(webpacs.core.__path__, "webpacs.core.")]
for name in names:
    importlib.import_module(name)
print(json.dumps({"modules": names, "new": sorted(set(sys.modules) - baseline)}))
"""


def test_core_modules_found() -> None:
    assert "webpacs.core.query" in CORE_MODULES
    assert "webpacs.core.attributes" in CORE_MODULES


def test_importing_core_loads_only_stdlib_pydicom_and_webpacs() -> None:
    src = str(Path(webpacs.core.__file__).resolve().parents[2])
    env = os.environ | {"PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, check=True
    )
    result = json.loads(out.stdout)
    assert sorted(result["modules"]) == CORE_MODULES
    foreign = {m.split(".")[0] for m in result["new"]} - ALLOWED
    assert not foreign, f"webpacs.core pulled in third-party modules: {sorted(foreign)}"


@pytest.mark.parametrize("module", CORE_MODULES)
def test_core_module_imports_only_stdlib_and_pydicom(module: str) -> None:
    spec = pkgutil.resolve_name(module).__spec__
    assert spec is not None and spec.origin is not None
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported.add(node.module.split(".")[0])
    foreign = imported - ALLOWED
    assert not foreign, f"{module} imports third-party modules: {sorted(foreign)}"


#: What each lower layer may import from webpacs (DESIGN.md: data flows down, nothing
#: imports upward). ``pixels.families`` is import-free: the recompression aliases that
#: config checks ``ingest.recompress`` against.
LOWER_LAYERS = {
    "config": ("webpacs.errors", "webpacs.backends", "webpacs.pixels.families"),
    "backends": (),
    "errors": (),
    "storage": ("webpacs.storage", "webpacs.core", "webpacs.errors", "webpacs.backends",
                "webpacs.config"),
    "pixels": ("webpacs.pixels", "webpacs.core", "webpacs.errors", "webpacs.storage.base"),
}  # fmt: skip


def _webpacs_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return {n for n in names if n.startswith("webpacs")}


@pytest.mark.parametrize("layer", sorted(LOWER_LAYERS))
def test_lower_layers_import_nothing_above_them(layer: str) -> None:
    src = Path(webpacs.core.__file__).parent.parent
    files = (
        [src / f"{layer}.py"]
        if (src / f"{layer}.py").exists()
        else list((src / layer).rglob("*.py"))
    )
    assert files
    allowed = LOWER_LAYERS[layer]
    for f in files:
        for name in _webpacs_imports(f):
            assert name.startswith(allowed), f"{f.relative_to(src)} imports {name}"
