"""A real ``webpacs serve`` in its own process group, and the ``webpacs`` command."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.conftest import free_port

WEBPACS = [sys.executable, "-m", "webpacs"]


def webpacs(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run the ``webpacs`` command; its output and exit status."""
    return subprocess.run(
        [*WEBPACS, *args], capture_output=True, text=True, timeout=timeout,
        stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip


def check_json(data_dir: Path, *more: str) -> tuple[int, dict[str, Any]]:
    """``webpacs check --json``'s exit status and report."""
    out = webpacs("check", "--data-dir", str(data_dir), "--json", *more)
    assert out.stdout.strip(), out.stderr
    return out.returncode, json.loads(out.stdout)


class Serve:
    """``webpacs serve`` (one process, no DIMSE) on a free port, in a new process group."""

    def __init__(self, data_dir: Path, *more: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/dicomweb"
        cmd = [*WEBPACS, "serve", "--data-dir", str(data_dir), "--port", str(self.port)]
        cmd += ["--workers", "1", "--no-dimse", *more]
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        deadline = time.monotonic() + 60
        while not self._ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited: {self.proc.stderr.read()!r}")  # type: ignore[union-attr]
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError("serve did not start")
            time.sleep(0.1)

    def _ready(self) -> bool:
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
        try:
            c.request("GET", "/dicomweb/studies?limit=1")
            return c.getresponse().status == 200
        except OSError:
            return False
        finally:
            c.close()

    def kill(self) -> None:
        """``kill -9`` of the whole process group, as a power cut or the OOM killer would."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        if self.proc.stderr is not None:
            self.proc.stderr.close()

    def stop(self) -> None:
        """A clean stop (SIGTERM to the group)."""
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            self.kill()
        if self.proc.stderr is not None:
            self.proc.stderr.close()

    def __enter__(self) -> Serve:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
