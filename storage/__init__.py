"""datadebit's storage: everything about bytes at rest.

Envelope encryption, content identifiers (CIDs) and content stores. Never imports web3
or `marketplace`.
"""
