// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title IAggregateMarket
/// @notice Aggregate debits: a buyer pays for ONE statistic (count, sum, mean, histogram)
/// over a cohort of owners instead of buying copies. Owners join cohorts; each cohort
/// declares a schema, a privacy budget cap (epsilon, in micro-units) and a minimum number
/// of contributors k. A buyer's request spends epsilon from the cohort's budget; members
/// record the CIDs of their sealed, secret-shared contributions before the deadline; after
/// it, the committee of the DataMarket this contract reads (the epoch current at the
/// request) posts its rounds, and the escrow is split equally among the contributors
/// (pull payments), or refunded to the buyer with the epsilon returned to the cohort when
/// fewer than k contributed.
/// @dev Invariant: the ether this contract holds == sum of credited balances + sum over
/// debits of (price - settled). Ether only in this version.
interface IAggregateMarket {
    /// @notice Lifecycle of an aggregate debit. `None` marks an id that was never created.
    /// `Open`: requested; contributions until the deadline, then awaiting settlement.
    /// `Paying`: a contributor claimed (the per-contributor share is fixed and the
    /// remainder of the division went to the buyer). `Refunded`: fewer than k contributed;
    /// the price went back to the buyer and the epsilon to the cohort.
    enum AggregateState {
        None,
        Open,
        Paying,
        Refunded
    }

    /// @notice A cohort as its view returns it (the schema document's URI is in the event).
    struct Cohort {
        address admin;
        bytes32 schemaHash;
        uint64 epsilonCapMicros;
        uint64 epsilonSpentMicros;
        uint32 minContributors;
        uint32 members;
    }

    /// @notice An aggregate debit as its view returns it (the query document's hash and
    /// URI are in the `AggregateRequested` event).
    /// @dev `settled` is the escrow already released (contributors' shares claimed, the
    /// remainder to the buyer, or the refund); the contract still holds `price - settled`.
    /// `epoch` is the committee epoch whose nodes hold the shares and post the rounds.
    struct AggregateDebit {
        uint256 cohortId;
        address buyer;
        AggregateState state;
        uint96 price;
        uint96 settled;
        uint64 epsilonMicros;
        uint64 deadline;
        uint64 epoch;
        uint32 contributions;
        uint32 claims;
    }

    // ---------------------------------------------------------------- errors

    /// @notice The market address has no code (it must be a deployed DataMarket).
    error NotAMarket(address market);
    /// @notice No cohort has this id.
    error UnknownCohort(uint256 cohortId);
    /// @notice No aggregate debit has this id.
    error UnknownAggregate(uint256 debitId);
    /// @notice A cohort's epsilon cap must be positive.
    error ZeroEpsilonCap();
    /// @notice A cohort needs at least one contributor per query (k >= 1).
    error ZeroMinContributors();
    /// @notice The owner is already a member of the cohort.
    error AlreadyMember(uint256 cohortId, address owner);
    /// @notice The owner is not a member of the cohort.
    error NotMember(uint256 cohortId, address owner);
    /// @notice A query's epsilon must be positive.
    error ZeroEpsilon();
    /// @notice The query would take the cohort's spent epsilon over its cap.
    error EpsilonCapExceeded(uint256 cohortId, uint64 spentMicros, uint64 requestedMicros, uint64 capMicros);
    /// @notice An aggregate debit must be paid for (msg.value > 0).
    error ZeroPayment();
    /// @notice The price does not fit the contract's 96-bit amounts.
    error PaymentTooLarge(uint256 amount);
    /// @notice A contribution deadline must be in the future and fit 40 bits.
    error InvalidDeadline(uint64 deadline);
    /// @notice No committee epoch is final yet in the DataMarket.
    error NoCommittee();
    /// @notice Contributions are closed: the deadline has passed.
    error ContributionsClosed(uint256 debitId, uint64 deadline);
    /// @notice The deadline has not passed yet (rounds, claims and refunds come after it).
    error DeadlineNotPassed(uint256 debitId, uint64 deadline);
    /// @notice The owner already contributed to this debit.
    error AlreadyContributed(uint256 debitId, address owner);
    /// @notice A CID must be a binary CIDv1 (leading 0x01) of at most 128 bytes.
    error MalformedCid(uint256 length);
    /// @notice Fewer than k owners contributed: no rounds, no payouts (refund instead).
    error TooFewContributions(uint256 debitId, uint32 contributions, uint32 minContributors);
    /// @notice At least k owners contributed: the debit is paid out, not refunded.
    error EnoughContributions(uint256 debitId, uint32 contributions, uint32 minContributors);
    /// @notice The caller did not contribute to this debit.
    error NotContributor(uint256 debitId, address caller);
    /// @notice The contributor already claimed its share of this debit.
    error AlreadyClaimed(uint256 debitId, address owner);
    /// @notice The debit was already refunded.
    error AlreadyRefunded(uint256 debitId);
    /// @notice Only a node of the debit's committee epoch may post its rounds.
    error NotCommitteeNode(address caller);
    /// @notice Round numbers are 1 SHARINGS, 2 OPENINGS, 3 PARTIALS.
    error InvalidRound(uint8 round);
    /// @notice The caller has no credited balance.
    error NothingToWithdraw();

    // ---------------------------------------------------------------- events

    /// @notice A cohort was created; `admin` is its creator. `schemaURI` locates the schema
    /// document whose hash is `schemaHash`.
    event CohortCreated(
        uint256 indexed cohortId,
        address indexed admin,
        bytes32 schemaHash,
        string schemaURI,
        uint64 epsilonCapMicros,
        uint32 minContributors
    );
    /// @notice `owner` joined the cohort (`members` counted after joining).
    event CohortJoined(uint256 indexed cohortId, address indexed owner, uint32 members);
    /// @notice `owner` left the cohort (`members` counted after leaving).
    event CohortLeft(uint256 indexed cohortId, address indexed owner, uint32 members);
    /// @notice A buyer paid `price` for one query on a cohort; `epsilonMicros` was added to
    /// the cohort's spent budget. The query document (statistic, field, bounds or bins,
    /// epsilon and delta, the buyer's X25519 key) is at `queryURI`, its hash `queryHash`.
    /// Owners seal their shares to the nodes of committee `epoch`.
    event AggregateRequested(
        uint256 indexed debitId,
        uint256 indexed cohortId,
        address indexed buyer,
        uint96 price,
        uint64 epsilonMicros,
        uint64 deadline,
        uint64 epoch,
        bytes32 queryHash,
        string queryURI
    );
    /// @notice A cohort member recorded its contribution bundle (binary CID).
    event ContributionRecorded(uint256 indexed debitId, address indexed owner, bytes bundleCid);
    /// @notice A committee node posted one of its aggregation rounds (binary CID of the
    /// round's payload in the content store; nothing is stored on chain).
    event AggregateRoundPosted(uint256 indexed debitId, address indexed node, uint8 round, bytes cid);
    /// @notice The first claim fixed each contributor's `share` (price / contributions)
    /// and credited the `remainder` (price % contributions) to the buyer.
    event AggregatePayoutFixed(uint256 indexed debitId, address indexed buyer, uint32 contributions, uint96 share, uint96 remainder);
    /// @notice `amount` (the contributor's share) was credited to `owner`.
    event ContributionClaimed(uint256 indexed debitId, address indexed owner, uint96 amount);
    /// @notice Fewer than k contributed: `refund` was credited to the buyer and
    /// `epsilonMicros` returned to the cohort's budget.
    event AggregateRefunded(uint256 indexed debitId, address indexed buyer, uint96 refund, uint64 epsilonMicros);
    /// @notice A credited balance was paid out.
    event Withdrawn(address indexed account, uint256 amount);

    // ---------------------------------------------------------------- cohorts

    /// @notice Create a cohort; the caller is its admin.
    /// @param schemaHash Hash of the schema document (fields, types, bounds).
    /// @param schemaURI Where the schema document lives.
    /// @param epsilonCapMicros The cohort's total privacy budget, in 1e-6 units of epsilon.
    /// @param minContributors k: a query with fewer contributors is refunded.
    /// @return cohortId The new cohort's id (ids start at 1).
    function createCohort(
        bytes32 schemaHash,
        string calldata schemaURI,
        uint64 epsilonCapMicros,
        uint32 minContributors
    ) external returns (uint256 cohortId);

    /// @notice Join a cohort as an owner (a member may contribute to its queries).
    function joinCohort(uint256 cohortId) external;

    /// @notice Leave a cohort. Contributions already recorded stay valid and payable.
    function leaveCohort(uint256 cohortId) external;

    // ---------------------------------------------------------------- aggregate debits

    /// @notice Pay `msg.value` for one query on a cohort, answerable after `deadline`.
    /// @param queryHash Hash of the query document.
    /// @param queryURI Where the query document lives.
    /// @param epsilonMicros The query's epsilon (1e-6 units), spent from the cohort's cap.
    /// @param deadline Unix time at which contributions close.
    /// @return debitId The new aggregate debit's id (ids start at 1).
    function requestAggregate(
        uint256 cohortId,
        bytes32 queryHash,
        string calldata queryURI,
        uint64 epsilonMicros,
        uint64 deadline
    ) external payable returns (uint256 debitId);

    /// @notice Record the caller's contribution (a cohort member now), once, before the
    /// deadline.
    /// @param bundleCid Binary CIDv1 of the contribution bundle in the content store.
    function contribute(uint256 debitId, bytes calldata bundleCid) external;

    /// @notice Post one aggregation round (a node of the debit's committee epoch, after
    /// the deadline, when at least k contributed). Only the event is kept.
    /// @param round 1 SHARINGS, 2 OPENINGS, 3 PARTIALS.
    /// @param cid Binary CIDv1 of the round's payload.
    function postAggregateRound(uint256 debitId, uint8 round, bytes calldata cid) external;

    /// @notice Credit the caller's share of a debit it contributed to (after the deadline,
    /// with at least k contributions). The first claim also credits the remainder of the
    /// division to the buyer.
    /// @return amount The share credited.
    function claimContribution(uint256 debitId) external returns (uint96 amount);

    /// @notice Credit the whole price back to the buyer and return the epsilon to the
    /// cohort, when fewer than k contributed (anyone may call it after the deadline).
    function refundAggregate(uint256 debitId) external;

    /// @notice Pay out the caller's credited balance.
    function withdraw() external;

    // ---------------------------------------------------------------- views

    /// @notice The DataMarket whose committee serves this contract.
    function market() external view returns (address);

    /// @notice A cohort by id (reverts `UnknownCohort`).
    function cohort(uint256 cohortId) external view returns (Cohort memory);

    /// @notice Whether `owner` is a member of the cohort now (reverts `UnknownCohort`).
    function isMember(uint256 cohortId, address owner) external view returns (bool);

    /// @notice An aggregate debit by id (reverts `UnknownAggregate`).
    function getAggregate(uint256 debitId) external view returns (AggregateDebit memory);

    /// @notice Whether `owner` contributed to the debit, and whether it claimed its share.
    function contributionOf(uint256 debitId, address owner) external view returns (bool contributed, bool claimed);

    /// @notice An account's credited, withdrawable balance.
    function balanceOf(address account) external view returns (uint256);

    /// @notice Number of cohorts created so far.
    function cohortCount() external view returns (uint256);

    /// @notice Number of aggregate debits requested so far.
    function aggregateCount() external view returns (uint256);
}
