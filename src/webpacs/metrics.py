"""Prometheus metrics (``prometheus_client``): what every door of the server counts.

=============================================  ======================================
``webpacs_http_requests_total``                requests by ``method``, ``route`` (the route
                                               template, ``/dicomweb/studies/{study}``) and
                                               ``status``
``webpacs_http_request_duration_seconds``      latency histogram by ``method`` and ``route``
``webpacs_stow_instances_total``               STOW-RS instances by ``outcome`` (stored,
                                               duplicate, replaced, failed)
``webpacs_stow_bytes_total``                   bytes of the STOW-RS parts received
``webpacs_dimse_associations_total``           DIMSE associations by ``event`` (accepted,
                                               rejected, released, aborted)
``webpacs_dimse_operations_total``             DIMSE requests answered, by ``operation``
                                               (C-ECHO, C-STORE, ...) and ``status``
                                               (success, warning, failure, cancel)
``webpacs_store_studies`` / ``_series`` /      what the store holds, asked of the index when
``_instances`` / ``_bytes``                    ``/metrics`` is read (``Index.totals``)
=============================================  ======================================

With several server processes (``webpacs serve --workers N``) each one writes its values
to files in ``PROMETHEUS_MULTIPROC_DIR``, which the supervisor creates (and removes) and
the processes inherit; whichever process answers ``/metrics`` reads them all
(prometheus_client's multiprocess mode). prometheus_client picks its value storage when it
is first imported, so this module imports it only on first use, after the supervisor has
set the directory.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


@functools.cache
def _metrics() -> SimpleNamespace:
    from prometheus_client import Counter, Histogram, disable_created_metrics

    # no *_created series: they double the output for nothing
    disable_created_metrics()  # type: ignore[no-untyped-call]
    return SimpleNamespace(
        requests=Counter(
            "webpacs_http_requests", "HTTP requests answered", ["method", "route", "status"]
        ),
        latency=Histogram(
            "webpacs_http_request_duration_seconds",
            "HTTP request latency (until the last byte of the response was handed over)",
            ["method", "route"],
        ),
        stow_instances=Counter(
            "webpacs_stow_instances", "Instances received by STOW-RS", ["outcome"]
        ),
        stow_bytes=Counter("webpacs_stow_bytes", "Bytes of STOW-RS parts received"),
        associations=Counter("webpacs_dimse_associations", "DIMSE associations (SCP)", ["event"]),
        operations=Counter(
            "webpacs_dimse_operations",
            "DIMSE requests answered (SCP)",
            ["operation", "status"],
        ),
    )


def http_request(method: str, route: str, status: int, seconds: float) -> None:
    m = _metrics()
    m.requests.labels(method, route, str(status)).inc()
    m.latency.labels(method, route).observe(seconds)


def stow(outcomes: dict[str, int], received_bytes: int) -> None:
    m = _metrics()
    for outcome, n in outcomes.items():
        if n:
            m.stow_instances.labels(outcome).inc(n)
    m.stow_bytes.inc(received_bytes)


def dimse_association(event: str) -> None:
    _metrics().associations.labels(event).inc()


def dimse_operation(operation: str, status: str) -> None:
    _metrics().operations.labels(operation, status).inc()


def exposition(totals: Callable[[], dict[str, int | None]] | None = None) -> tuple[bytes, str]:
    """The text exposition format of every process's metrics (and the store's totals,
    from ``totals()``, when given): body and content type."""
    from prometheus_client import (
        CONTENT_TYPE_LATEST,
        REGISTRY,
        CollectorRegistry,
        generate_latest,
    )
    from prometheus_client.multiprocess import MultiProcessCollector

    _metrics()  # the families exist (with no sample yet) before anything happened
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        body = generate_latest(registry)
    else:
        body = generate_latest(REGISTRY)
    if totals is not None:
        store = CollectorRegistry()
        store.register(_StoreCollector(totals))
        body += generate_latest(store)
    return body, CONTENT_TYPE_LATEST


class _StoreCollector:
    """Gauges of what the store holds, asked of the index at each scrape."""

    def __init__(self, totals: Callable[[], dict[str, int | None]]) -> None:
        self.totals = totals

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        for key, value in self.totals().items():
            if value is not None:
                yield GaugeMetricFamily(f"webpacs_store_{key}", f"Stored {key}", value=value)
