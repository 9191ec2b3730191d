"""The auditor: trusts nothing but the chain, and checks everything else against it.

Modules, one concept each: `report` (findings and the JSON schema), `history` (listings,
versions, debits and anchors rebuilt from events), `chain_view` (views pinned to the audited
block), `transitions`, `balances`, `content` and `releases` (the checks), `release_log`
(fetching a node's signed log), `auditor` (runs them all), `render` (the human table).
"""
