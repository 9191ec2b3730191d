"""What the pages read through: the market (chain), the content store, the catalog, the
committee's gateways and their release logs. Opened from a `WebConfig` on first use (a
chain that is down at start-up becomes a 503 page, and the next request tries again),
or handed in whole by tests (an embedded chain, in-process catalog and gateways)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from marketplace.app.catalog import CatalogClient
from marketplace.audit.release_log import ReleaseLogSource
from marketplace.chain.market import MarketClient
from marketplace.web.config import WebConfig
from storage.stores.base import ContentStore

#: Release-log sources for the audit, by node address (or index), made per audit.
AuditLogs = Callable[[], Mapping[str, ReleaseLogSource] | Mapping[int, ReleaseLogSource]]


@dataclass(frozen=True, slots=True)
class Gateway:
    """A committee node the page sends key requests to (`index` = its node index)."""

    index: int
    url: str


@dataclass(frozen=True, slots=True)
class WebServices:
    market: MarketClient
    store: ContentStore
    catalog: CatalogClient
    gateways: tuple[Gateway, ...]
    audit_logs: AuditLogs
    from_block: int = 0


def open_services(config: WebConfig) -> WebServices:
    """Connect to what `config` names; `ConfigError`/`ChainUnavailable` when it cannot."""
    from marketplace.app.audit import node_sources  # noqa: PLC0415
    from marketplace.cli.config import open_market, open_store  # noqa: PLC0415
    from marketplace.committee import read_public_committee  # noqa: PLC0415

    market = open_market(config.rpc_url, config.market)
    store = open_store(config.store, existing=True)
    public = read_public_committee(config.committee_file) if config.committee_file else None
    gateways = tuple(Gateway(n.index, n.url) for n in public.nodes if n.url) if public else ()

    def audit_logs() -> Mapping[str, ReleaseLogSource]:
        return node_sources(public, config.timeout) if public is not None else {}

    return WebServices(market, store, CatalogClient(config.catalog_url, timeout=config.timeout),
                       gateways, audit_logs, config.from_block)


class ServiceHolder:
    """`get()` opens the services once; a failed opening is retried on the next call."""

    def __init__(self, opener: Callable[[], WebServices]) -> None:
        self._opener = opener
        self._services: WebServices | None = None
        self._lock = threading.Lock()

    @classmethod
    def of(cls, services: WebServices) -> ServiceHolder:
        holder = cls(lambda: services)
        holder._services = services
        return holder

    def get(self) -> WebServices:
        with self._lock:
            if self._services is None:
                self._services = self._opener()
            return self._services
