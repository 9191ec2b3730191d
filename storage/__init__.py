"""datadebit's storage: everything about bytes at rest. Never imports web3 or `marketplace`.

- `storage.keys`: `DataKey`, the per-version data key; `storage.keyfile` keeps one on disk.
- `storage.envelope`: `encrypt`/`decrypt` (streams) and `encrypt_file`/`decrypt_file`.
- `storage.cid`: `Cid`; `storage.unixfs`: `compute_cid`, `file_cid`, the UnixFS DAG builder.
- `storage.stores`: `ContentStore`, `LocalStore` (embedded) and `IpfsStore` (Kubo HTTP RPC).
- `storage.errors`: `StorageError` and one subclass per failure.

Nothing is re-exported here, so importing `storage.keys` does not load httpx or multiformats.
"""
