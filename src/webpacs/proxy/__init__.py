"""Proxy to a remote PACS (``queryAe``, ``proxyAe``): remote search, retrieve on demand, cache."""

from __future__ import annotations

from webpacs.proxy.service import Proxy

__all__ = ["Proxy"]
