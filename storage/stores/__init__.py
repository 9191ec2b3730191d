"""Content stores: one interface, an embedded block directory and an IPFS daemon over HTTP."""

from storage.stores.base import ContentStore
from storage.stores.ipfs import IpfsStore
from storage.stores.local import LocalStore

__all__ = ["ContentStore", "IpfsStore", "LocalStore"]
