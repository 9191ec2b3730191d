"""datadebit's marketplace: everything on-chain and between parties.

Chain client and events, threshold key release, the gateway, owner/buyer/auditor flows
and the CLI. Depends on `storage` for bytes at rest; nothing here is imported by `storage`.
"""
