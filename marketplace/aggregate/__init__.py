"""Aggregate debits (DESIGN §10): the pure cryptographic core, no I/O.

Owner: `encode`, `seal_contribution`. Node: `open_share`, then the rounds of `session`
(`deal_round1`, `open_round1`, `make_opening`, `decide`, `partial`, `seal_partial`).
Buyer: `open_partial`, `combine`, `decode`. Noise: `calibrate` (OpenDP's accountant).
"""

from marketplace.aggregate.bundle import (
    SCHEMA,
    ContributionContext,
    open_share,
    seal_contribution,
    seal_shares,
)
from marketplace.aggregate.encoding import (
    Query,
    Result,
    decode,
    dimension,
    encode,
    l2_sensitivity,
    output_dimension,
    project,
)
from marketplace.aggregate.errors import (
    AggregateError,
    BundleMismatch,
    FieldOverflow,
    InconsistentShares,
    InvalidParameters,
    InvalidQuery,
    MalformedBundle,
    NotEnoughShares,
    OpenFailed,
)
from marketplace.aggregate.field import P
from marketplace.aggregate.noise import (
    NoisePlan,
    calibrate,
    committee_noise_plan,
    sample_node_noise,
)
from marketplace.aggregate.session import (
    Aggregation,
    DealtShares,
    NodeOpening,
    Partial,
    combine,
    deal_round1,
    decide,
    decode_opening,
    encode_opening,
    make_opening,
    open_partial,
    open_round1,
    partial,
    seal_partial,
)
from marketplace.aggregate.shamir import InconsistencyReport, inconsistent, reconstruct, share

__all__ = [
    "SCHEMA",
    "AggregateError",
    "Aggregation",
    "BundleMismatch",
    "ContributionContext",
    "DealtShares",
    "FieldOverflow",
    "InconsistencyReport",
    "InconsistentShares",
    "InvalidParameters",
    "InvalidQuery",
    "MalformedBundle",
    "NodeOpening",
    "NoisePlan",
    "NotEnoughShares",
    "OpenFailed",
    "P",
    "Partial",
    "Query",
    "Result",
    "calibrate",
    "combine",
    "committee_noise_plan",
    "deal_round1",
    "decide",
    "decode",
    "decode_opening",
    "dimension",
    "encode",
    "encode_opening",
    "inconsistent",
    "l2_sensitivity",
    "make_opening",
    "open_partial",
    "open_round1",
    "open_share",
    "output_dimension",
    "partial",
    "project",
    "reconstruct",
    "sample_node_noise",
    "seal_contribution",
    "seal_partial",
    "seal_shares",
    "share",
]
