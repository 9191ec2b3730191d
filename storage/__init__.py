"""datadebit's storage: everything about bytes at rest.

Envelope encryption (`storage.envelope`), content identifiers (`storage.cid`, computed by the
UnixFS builder in `storage.unixfs`) and content stores (`storage.stores`). Never imports web3
or `marketplace`.
"""

from storage.cid import Cid
from storage.envelope import EncryptedFile, decrypt, decrypt_file, encrypt, encrypt_file
from storage.errors import StorageError
from storage.keys import DataKey
from storage.stores import ContentStore, IpfsStore, LocalStore
from storage.unixfs import compute_cid, file_cid

__all__ = [
    "Cid",
    "ContentStore",
    "DataKey",
    "EncryptedFile",
    "IpfsStore",
    "LocalStore",
    "StorageError",
    "compute_cid",
    "decrypt",
    "decrypt_file",
    "encrypt",
    "encrypt_file",
    "file_cid",
]
