"""Coverage-guided fuzzing with atheris (libFuzzer) of the parsers of untrusted bytes.

``make fuzz`` runs each target for ``FUZZ_SECONDS``; by hand::

    python -m tests.fuzz_atheris multipart -max_total_time=60 [libFuzzer options]

Targets: ``multipart`` (the STOW-RS body reader), ``qido`` (query parsing and an index
search), ``json`` (JSON bodies, then DICOM JSON to Part 10), ``part10`` (ingest through
pydicom; the corpus starts from pydicom's test files). The invariant is the hypothesis
tests' (``fuzz_support.refused``): a crash is any exception other than a typed 4xx
error; libFuzzer writes the input to ``.fuzz/crash-*``. Turn each into a regression test
in ``test_fuzz_regressions.py`` with the input written out.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["webpacs", "pydicom", "python_multipart"]):
    from webpacs.config import ServerSettings
    from webpacs.core import part10 as p10
    from webpacs.core.attributes import Level
    from webpacs.core.query import parse_qido
    from webpacs.ingest import ingest
    from webpacs.web.limits import load_json
    from webpacs.web.multipart_reader import MultipartReader

from tests.conftest import make_settings  # noqa: E402
from tests.fuzz_support import PART10_FILES, part10, qido_keys, refused  # noqa: E402
from webpacs.storage.registry import open_store  # noqa: E402

_STORE = open_store(make_settings(Path(tempfile.mkdtemp(prefix="webpacs-fuzz-"))))
_SERVER = ServerSettings()


def _checked(fn: Callable[[], object]) -> None:
    try:
        fn()
    except Exception as exc:
        if refused(exc) is not None:
            raise


def multipart(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    boundary = fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 80))
    cut = fdp.ConsumeIntInRange(1, 64)
    body = fdp.ConsumeBytes(fdp.remaining_bytes())

    def run() -> None:
        content_type = f'multipart/related; type="application/dicom"; boundary="{boundary}"'
        with MultipartReader(content_type, max_body=1 << 20, max_parts=8) as reader:
            for i in range(0, len(body), cut):
                for part in reader.feed(body[i : i + cut]):
                    part.close()
            for part in reader.finish():
                part.close()

    _checked(run)


_KEYS = qido_keys()


def qido(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    level = fdp.PickValueInList([Level.STUDY, Level.SERIES, Level.INSTANCE])
    params = []
    for _ in range(fdp.ConsumeIntInRange(0, 6)):
        key = (
            fdp.PickValueInList(_KEYS) if fdp.ConsumeBool() else fdp.ConsumeUnicodeNoSurrogates(20)
        )
        params.append((key, fdp.ConsumeUnicodeNoSurrogates(40)))
    _checked(lambda: _STORE.index.search(parse_qido(level, params, max_limit=20)))


def json(data: bytes) -> None:
    def run() -> None:
        value = load_json(data, _SERVER, "body")
        for i, obj in enumerate(value if isinstance(value, list) else [value]):
            ingest(_STORE.index, _STORE.blobs, p10.from_json(obj, {}, i))

    _checked(run)


def part10_ingest(data: bytes) -> None:
    _checked(lambda: ingest(_STORE.index, _STORE.blobs, data))


TARGETS = {"multipart": multipart, "qido": qido, "json": json, "part10": part10_ingest}


def main() -> None:
    name, *args = sys.argv[1:] or ["part10"]
    corpus = Path(".fuzz") / "corpus" / name
    corpus.mkdir(parents=True, exist_ok=True)
    if name == "part10":
        for file in PART10_FILES:
            (corpus / file).write_bytes(part10(file))
    argv = [sys.argv[0], *args, "-artifact_prefix=.fuzz/", str(corpus)]
    atheris.Setup(argv, TARGETS[name])
    atheris.Fuzz()


if __name__ == "__main__":
    main()
