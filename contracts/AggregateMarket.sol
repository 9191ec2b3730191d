// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {Address} from "@openzeppelin/contracts/utils/Address.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

import {IAggregateMarket} from "./IAggregateMarket.sol";
import {IDataMarket} from "./IDataMarket.sol";

/// @title AggregateMarket
/// @notice See {IAggregateMarket}. A separate contract from the DataMarket (whose runtime
/// is close to the 24,576-byte limit); it reads the committee from it.
/// @dev Storage keeps only what the contract enforces. A contribution costs one bit in a
/// per-debit bitmap (indexed by the owner's permanent position in the cohort, so an owner
/// who leaves and rejoins keeps its bit and cannot contribute twice) and one counter in
/// the debit's first slot: the first contribution in a 128-owner word writes a zero slot,
/// the later ones a warm non-zero one. Two bits per owner: contributed, claimed.
contract AggregateMarket is IAggregateMarket, ReentrancyGuardTransient {
    uint256 private constant _MAX_CID_LENGTH = 128;
    uint8 private constant _MAX_ROUND = 3;

    /// @dev Slot 0: admin | minContributors | members | positions (owners ever joined).
    /// Slot 1: cap | spent. Slot 2: schemaHash.
    struct StoredCohort {
        address admin;
        uint32 minContributors;
        uint32 members;
        uint32 positions;
        uint64 epsilonCap;
        uint64 epsilonSpent;
        bytes32 schemaHash;
    }

    /// @dev `position` is 1-based, assigned at the first join and kept after leaving.
    struct Membership {
        uint32 position;
        bool active;
    }

    /// @dev Slot 0 (everything `contribute` reads and writes): cohortId | deadline |
    /// contributions | claims | state | epsilon | epoch. Slot 1: buyer | price.
    /// `settled` is derived: Refunded → price; Paying → remainder + share × claims.
    /// cohortId (48 bits) and epoch (32 bits) are counters that cannot reach those widths.
    struct StoredAggregate {
        uint48 cohortId;
        uint40 deadline;
        uint32 contributions;
        uint32 claims;
        AggregateState state;
        uint64 epsilon;
        uint32 epoch;
        address buyer;
        uint96 price;
    }

    IDataMarket private immutable _market;

    /// @dev Start at 1: ids are 1-based and the first create pays no zero-to-nonzero write.
    uint256 private _nextCohortId = 1;
    uint256 private _nextAggregateId = 1;
    mapping(uint256 cohortId => StoredCohort) private _cohorts;
    mapping(uint256 cohortId => mapping(address owner => Membership)) private _members;
    mapping(uint256 debitId => StoredAggregate) private _aggregates;
    /// @dev Per debit, word w holds positions 128w+1 .. 128w+128, two bits each.
    mapping(uint256 debitId => mapping(uint256 word => uint256 bits)) private _marks;
    mapping(address account => uint256 credited) private _balances;

    /// @param market_ The DataMarket whose committee epochs serve this contract.
    constructor(IDataMarket market_) {
        if (address(market_).code.length == 0) revert NotAMarket(address(market_));
        _market = market_;
    }

    // ---------------------------------------------------------------- cohorts

    /// @inheritdoc IAggregateMarket
    function createCohort(
        bytes32 schemaHash,
        string calldata schemaURI,
        uint64 epsilonCapMicros,
        uint32 minContributors
    ) external returns (uint256 cohortId) {
        if (epsilonCapMicros == 0) revert ZeroEpsilonCap();
        if (minContributors == 0) revert ZeroMinContributors();
        cohortId = _nextCohortId++;
        _cohorts[cohortId] = StoredCohort({
            admin: msg.sender,
            minContributors: minContributors,
            members: 0,
            positions: 0,
            epsilonCap: epsilonCapMicros,
            epsilonSpent: 0,
            schemaHash: schemaHash
        });
        emit CohortCreated(cohortId, msg.sender, schemaHash, schemaURI, epsilonCapMicros, minContributors);
    }

    /// @inheritdoc IAggregateMarket
    function joinCohort(uint256 cohortId) external {
        StoredCohort storage c = _existingCohort(cohortId);
        Membership storage m = _members[cohortId][msg.sender];
        if (m.active) revert AlreadyMember(cohortId, msg.sender);
        if (m.position == 0) m.position = ++c.positions;
        m.active = true;
        uint32 members = c.members + 1;
        c.members = members;
        emit CohortJoined(cohortId, msg.sender, members);
    }

    /// @inheritdoc IAggregateMarket
    function leaveCohort(uint256 cohortId) external {
        StoredCohort storage c = _existingCohort(cohortId);
        Membership storage m = _members[cohortId][msg.sender];
        if (!m.active) revert NotMember(cohortId, msg.sender);
        m.active = false;
        uint32 members = c.members - 1;
        c.members = members;
        emit CohortLeft(cohortId, msg.sender, members);
    }

    // ---------------------------------------------------------------- aggregate debits

    /// @inheritdoc IAggregateMarket
    function requestAggregate(
        uint256 cohortId,
        bytes32 queryHash,
        string calldata queryURI,
        uint64 epsilonMicros,
        uint64 deadline
    ) external payable returns (uint256 debitId) {
        StoredCohort storage c = _existingCohort(cohortId);
        if (msg.value == 0) revert ZeroPayment();
        if (msg.value > type(uint96).max) revert PaymentTooLarge(msg.value);
        if (epsilonMicros == 0) revert ZeroEpsilon();
        if (deadline <= block.timestamp || deadline > type(uint40).max) revert InvalidDeadline(deadline);
        uint64 spent = c.epsilonSpent;
        uint64 cap = c.epsilonCap;
        if (uint256(spent) + epsilonMicros > cap) revert EpsilonCapExceeded(cohortId, spent, epsilonMicros, cap);
        uint64 epoch = _market.currentEpoch();
        if (epoch == 0) revert NoCommittee();
        c.epsilonSpent = spent + epsilonMicros;
        debitId = _nextAggregateId++;
        _aggregates[debitId] = StoredAggregate({
            cohortId: uint48(cohortId),
            deadline: uint40(deadline),
            contributions: 0,
            claims: 0,
            state: AggregateState.Open,
            epsilon: epsilonMicros,
            epoch: uint32(epoch),
            buyer: msg.sender,
            price: uint96(msg.value)
        });
        emit AggregateRequested(
            debitId, cohortId, msg.sender, uint96(msg.value), epsilonMicros, deadline, epoch, queryHash, queryURI
        );
    }

    /// @inheritdoc IAggregateMarket
    function contribute(uint256 debitId, bytes calldata bundleCid) external {
        StoredAggregate storage a = _existingAggregate(debitId);
        uint40 deadline = a.deadline;
        if (block.timestamp >= deadline) revert ContributionsClosed(debitId, deadline);
        _requireCid(bundleCid);
        uint256 cohortId = a.cohortId;
        Membership memory m = _members[cohortId][msg.sender];
        if (!m.active) revert NotMember(cohortId, msg.sender);
        (uint256 word, uint256 contributed) = _bitOf(m.position);
        mapping(uint256 => uint256) storage marks = _marks[debitId];
        uint256 bits = marks[word];
        if (bits & contributed != 0) revert AlreadyContributed(debitId, msg.sender);
        marks[word] = bits | contributed;
        unchecked {
            ++a.contributions; // at most the cohort's positions, a uint32
        }
        emit ContributionRecorded(debitId, msg.sender, bundleCid);
    }

    /// @inheritdoc IAggregateMarket
    function postAggregateRound(uint256 debitId, uint8 round, bytes calldata cid) external {
        StoredAggregate storage a = _existingAggregate(debitId);
        if (!_isNode(a.epoch, msg.sender)) revert NotCommitteeNode(msg.sender);
        if (round == 0 || round > _MAX_ROUND) revert InvalidRound(round);
        _requireCid(cid);
        _requireAnswerable(debitId, a);
        emit AggregateRoundPosted(debitId, msg.sender, round, cid);
    }

    /// @inheritdoc IAggregateMarket
    function claimContribution(uint256 debitId) external nonReentrant returns (uint96 amount) {
        StoredAggregate storage a = _existingAggregate(debitId);
        uint32 count = _requireAnswerable(debitId, a);
        uint32 position = _members[a.cohortId][msg.sender].position;
        if (position == 0) revert NotContributor(debitId, msg.sender);
        (uint256 word, uint256 contributed) = _bitOf(position);
        uint256 claimed = contributed << 1;
        uint256 bits = _marks[debitId][word];
        if (bits & contributed == 0) revert NotContributor(debitId, msg.sender);
        if (bits & claimed != 0) revert AlreadyClaimed(debitId, msg.sender);
        _marks[debitId][word] = bits | claimed;
        uint96 price = a.price;
        amount = price / count;
        if (a.state == AggregateState.Open) {
            a.state = AggregateState.Paying;
            uint96 remainder = price % count;
            address buyer = a.buyer;
            if (remainder != 0) _balances[buyer] += remainder;
            emit AggregatePayoutFixed(debitId, buyer, count, amount, remainder);
        }
        unchecked {
            ++a.claims; // at most `count`
        }
        _balances[msg.sender] += amount;
        emit ContributionClaimed(debitId, msg.sender, amount);
    }

    /// @inheritdoc IAggregateMarket
    function refundAggregate(uint256 debitId) external nonReentrant {
        StoredAggregate storage a = _existingAggregate(debitId);
        uint40 deadline = a.deadline;
        if (block.timestamp < deadline) revert DeadlineNotPassed(debitId, deadline);
        if (a.state == AggregateState.Refunded) revert AlreadyRefunded(debitId);
        StoredCohort storage c = _cohorts[a.cohortId];
        uint32 count = a.contributions;
        uint32 k = c.minContributors;
        if (count >= k) revert EnoughContributions(debitId, count, k);
        a.state = AggregateState.Refunded;
        uint64 epsilon = a.epsilon;
        c.epsilonSpent -= epsilon; // no answer will be released: no privacy was spent
        uint96 price = a.price;
        address buyer = a.buyer;
        _balances[buyer] += price;
        emit AggregateRefunded(debitId, buyer, price, epsilon);
    }

    /// @inheritdoc IAggregateMarket
    function withdraw() external nonReentrant {
        uint256 amount = _balances[msg.sender];
        if (amount == 0) revert NothingToWithdraw();
        _balances[msg.sender] = 0;
        emit Withdrawn(msg.sender, amount);
        Address.sendValue(payable(msg.sender), amount);
    }

    // ---------------------------------------------------------------- views

    /// @inheritdoc IAggregateMarket
    function market() external view returns (address) {
        return address(_market);
    }

    /// @inheritdoc IAggregateMarket
    function cohort(uint256 cohortId) external view returns (Cohort memory) {
        StoredCohort storage c = _existingCohort(cohortId);
        return Cohort({
            admin: c.admin,
            schemaHash: c.schemaHash,
            epsilonCapMicros: c.epsilonCap,
            epsilonSpentMicros: c.epsilonSpent,
            minContributors: c.minContributors,
            members: c.members
        });
    }

    /// @inheritdoc IAggregateMarket
    function isMember(uint256 cohortId, address owner) external view returns (bool) {
        _existingCohort(cohortId);
        return _members[cohortId][owner].active;
    }

    /// @inheritdoc IAggregateMarket
    function getAggregate(uint256 debitId) external view returns (AggregateDebit memory) {
        StoredAggregate storage a = _existingAggregate(debitId);
        AggregateState state = a.state;
        uint96 price = a.price;
        uint96 settled;
        if (state == AggregateState.Refunded) {
            settled = price;
        } else if (state == AggregateState.Paying) {
            uint96 count = a.contributions;
            settled = price % count + (price / count) * a.claims;
        }
        return AggregateDebit({
            cohortId: a.cohortId,
            buyer: a.buyer,
            state: state,
            price: price,
            settled: settled,
            epsilonMicros: a.epsilon,
            deadline: a.deadline,
            epoch: a.epoch,
            contributions: a.contributions,
            claims: a.claims
        });
    }

    /// @inheritdoc IAggregateMarket
    function contributionOf(uint256 debitId, address owner) external view returns (bool contributed, bool claimed) {
        StoredAggregate storage a = _existingAggregate(debitId);
        uint32 position = _members[a.cohortId][owner].position;
        if (position == 0) return (false, false);
        (uint256 word, uint256 bit) = _bitOf(position);
        uint256 bits = _marks[debitId][word];
        return (bits & bit != 0, bits & (bit << 1) != 0);
    }

    /// @inheritdoc IAggregateMarket
    function balanceOf(address account) external view returns (uint256) {
        return _balances[account];
    }

    /// @inheritdoc IAggregateMarket
    function cohortCount() external view returns (uint256) {
        return _nextCohortId - 1;
    }

    /// @inheritdoc IAggregateMarket
    function aggregateCount() external view returns (uint256) {
        return _nextAggregateId - 1;
    }

    // ---------------------------------------------------------------- internals

    function _existingCohort(uint256 cohortId) private view returns (StoredCohort storage c) {
        c = _cohorts[cohortId];
        if (c.admin == address(0)) revert UnknownCohort(cohortId);
    }

    function _existingAggregate(uint256 debitId) private view returns (StoredAggregate storage a) {
        a = _aggregates[debitId];
        if (a.state == AggregateState.None) revert UnknownAggregate(debitId);
    }

    /// @dev After the deadline with at least k contributions; returns the contributions.
    function _requireAnswerable(uint256 debitId, StoredAggregate storage a) private view returns (uint32 count) {
        uint40 deadline = a.deadline;
        if (block.timestamp < deadline) revert DeadlineNotPassed(debitId, deadline);
        count = a.contributions;
        uint32 k = _cohorts[a.cohortId].minContributors;
        if (count < k) revert TooFewContributions(debitId, count, k);
    }

    /// @dev The bitmap word and the "contributed" bit of a 1-based position (the
    /// "claimed" bit is the next one up).
    function _bitOf(uint256 position) private pure returns (uint256 word, uint256 bit) {
        uint256 p = position - 1;
        return (p >> 7, 1 << ((p & 127) << 1));
    }

    /// @dev Whether `node` is in the roster of committee `epoch` of the market.
    function _isNode(uint64 epoch, address node) private view returns (bool) {
        address[] memory nodes = _market.committeeAt(epoch).nodes;
        for (uint256 i = 0; i < nodes.length; ++i) {
            if (nodes[i] == node) return true;
        }
        return false;
    }

    /// @dev A binary CIDv1: leading 0x01, 1..128 bytes.
    function _requireCid(bytes calldata cid) private pure {
        if (cid.length == 0 || cid.length > _MAX_CID_LENGTH || cid[0] != 0x01) revert MalformedCid(cid.length);
    }
}
