"""JSON from others (gateways, nodes' release logs, request bodies), parsed without letting
its nesting crash the process.

`json.loads` recurses in C once per nesting level and relies on Python's recursion limit
to stop; py_ecc (imported with eth_account) raises that limit to 100,000, so a body of a
few hundred KB of `[` exhausts the C stack and kills the process with SIGSEGV instead of
raising. pydantic-core's parser caps nesting at 200 levels: it runs first as the guard,
then `json.loads` gives the usual Python objects (exact ints, duplicate keys as json does).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic_core import from_json


def loads(data: bytes | str) -> Any:
    """Parse JSON; ValueError when it is not JSON or nests more than 200 levels."""
    try:
        from_json(data, allow_inf_nan=True)
    except ValueError as e:
        raise ValueError(f"not acceptable JSON: {e}") from e
    return json.loads(data)
