"""What the web server is pointed at: the chain and market, the content store, the
catalog and the public committee file (gateway URLs for the page's key requests)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: Seconds the server waits on the chain, the store, the catalog or a gateway's log.
DEFAULT_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class WebConfig:
    """`store`: a directory (LocalStore) or an http(s) Kubo RPC API URL, as `--store`."""

    rpc_url: str
    market: str
    store: str
    catalog_url: str
    committee_file: Path | None = None
    #: where event reads start (the market's deployment block)
    from_block: int = 0
    timeout: float = DEFAULT_TIMEOUT
