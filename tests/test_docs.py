"""The README documents every setting and every command (datasette's habit)."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from webpacs.cli.main import main
from webpacs.config import DEFAULTS, _leaves, env_name

README = (Path(__file__).parent.parent / "README.md").read_text()


@pytest.mark.parametrize("path", list(_leaves(DEFAULTS)), ids=lambda p: ".".join(p))
def test_setting_documented(path: tuple[str, ...]) -> None:
    assert env_name(path) in README, f"README does not document {'.'.join(path)}"


def _commands(group: click.Group, prefix: str = "webpacs") -> list[str]:
    out = []
    for name, cmd in group.commands.items():
        full = f"{prefix} {name}"
        out += _commands(cmd, full) if isinstance(cmd, click.Group) else [full]
    return out


@pytest.mark.parametrize("command", _commands(main))
def test_command_documented(command: str) -> None:
    assert command in README, f"README does not mention `{command}`"


def test_the_two_commands() -> None:
    assert "make run" in README and "make test" in README


def _json5_blocks() -> list[str]:
    blocks, inside, current = [], False, []
    for line in README.splitlines():
        if line.strip() == "```json5":
            inside, current = True, []
        elif inside and line.strip() == "```":
            inside = False
            blocks.append("\n".join(current))
        elif inside:
            current.append(line)
    return blocks


@pytest.mark.parametrize("block", _json5_blocks())
def test_readme_configuration_examples_load(block: str, tmp_path: Path) -> None:
    """Every JSON5 example in the README is a valid configuration as written (the
    certificate files its ``tls`` objects name, which must exist, are placeholders here)."""
    import json

    import json5

    from webpacs.config import load

    config = json5.loads(block)
    for section in config.values():
        tls = section.get("tls") if isinstance(section, dict) else None
        for key in ("cert", "key", "ca") if isinstance(tls, dict) else ():
            if tls.get(key):
                placeholder = tmp_path / Path(tls[key]).name
                placeholder.write_text("placeholder")
                tls[key] = str(placeholder)
    cfg = tmp_path / "example.json5"
    cfg.write_text(json.dumps(config))
    load([cfg], environ={}, home=tmp_path, cwd=tmp_path)


def test_readme_has_configuration_examples() -> None:
    assert len(_json5_blocks()) >= 3


def _example_blocks() -> list[str]:
    """The README's ```sh blocks that talk to `make run`'s server (they start with B=...)."""
    blocks, inside, current = [], False, []
    for line in README.splitlines():
        if line.strip() == "```sh":
            inside, current = True, []
        elif inside and line.strip() == "```":
            inside = False
            if current and current[0] == "B=http://127.0.0.1:8042/dicomweb":
                blocks.append("\n".join(current))
        elif inside:
            current.append(line)
    return blocks


def test_readme_curl_examples_run_on_the_sample_data(tmp_path: Path) -> None:
    """Every curl example of the README (frames, transcoding, rendered images, ...), as
    written, succeeds against `make run`'s data (the samples)."""
    import shutil
    import subprocess
    import sys

    from tests.conftest import start_server

    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    blocks = _example_blocks()
    assert len(blocks) >= 3  # the curl section, transcoding, rendered images
    data = tmp_path / "data"
    subprocess.run(
        [sys.executable, "-m", "webpacs", "import", "--samples", "--data-dir", str(data)],
        check=True,
        capture_output=True,
    )
    server = start_server(data)
    try:
        # the first block ends by deleting CT_small's series, which the others use: it goes last
        for block in reversed(blocks):
            script = "\n".join(
                [
                    "set -euo pipefail",
                    # every request must succeed (HTTP 2xx), and say which one did not
                    'curl() { command curl -fsS "$@" > /dev/null || { echo "failed: curl $*"; exit 1; }; }',  # noqa: E501
                    f"B={server.url}",
                    *block.splitlines()[1:],
                ]
            ).replace(".venv/bin/python", sys.executable)
            out = subprocess.run(
                ["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120
            )
            assert out.returncode == 0, out.stdout + out.stderr
        assert (tmp_path / "x.dcm").stat().st_size > 1000  # the WADO-URI example wrote it
        jls = (tmp_path / "jls.multipart").read_bytes()  # the transcoding example's instance
        assert b"transfer-syntax=1.2.840.10008.1.2.4.80" in jls and b"DICM" in jls
        assert (tmp_path / "ct.png").read_bytes()[:4] == b"\x89PNG"  # the rendered example
    finally:
        server.stop()


def test_readme_dicomweb_client_example_runs_on_the_sample_data(tmp_path: Path) -> None:
    """The dicomweb-client example, as written, runs against `make run`'s data."""
    import subprocess
    import sys

    from tests.conftest import start_server

    section = README.split("### dicomweb-client", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert "DICOMwebClient" in code
    data = tmp_path / "data"
    subprocess.run(
        [sys.executable, "-m", "webpacs", "import", "--samples", "--data-dir", str(data)],
        check=True,
        capture_output=True,
    )
    server = start_server(data)
    try:
        script = code.replace("http://127.0.0.1:8042/dicomweb", server.url)
        script += "\nassert len(frames) == 1 and len(meta) >= 1\nprint('ran')\n"
        out = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 0 and "ran" in out.stdout, out.stderr
    finally:
        server.stop()
