// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {Address} from "@openzeppelin/contracts/utils/Address.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

import {IDataMarket} from "./IDataMarket.sol";

/// @title DataMarket
/// @notice See {IDataMarket}. Storage is packed so that each call writes as few slots as it
/// can: a listing is two slots, a version one, a debit two.
contract DataMarket is IDataMarket, ReentrancyGuardTransient {
    /// @dev R(32) || nonce(24) || XChaCha20-Poly1305(DEK)(48) || Schnorr proof (c, s)(64) binding R
    /// to (chain, market, listing, version, CID); the contract checks only the length, the
    /// committee checks the proof before it releases anything.
    uint256 private constant _CAPSULE_LENGTH = 168;
    uint256 private constant _MAX_CID_LENGTH = 128;
    /// @dev Keeps `start + duration` inside uint40 for the next ~17,000 years.
    uint256 private constant _MAX_DURATION = 1 << 39;

    /// @dev Slot 0: owner | periodSeconds | versionCount | autoApprove | open. Slot 1: price.
    struct StoredListing {
        address owner;
        uint32 periodSeconds;
        uint32 versionCount;
        bool autoApprove;
        bool open;
        uint96 pricePerPeriod;
    }

    /// @dev Slot 0: buyer | start | end | state. Slot 1: listingId | amount | settled.
    /// While Requested, `start` is 0 and `end` holds the duration until consent fixes both.
    /// `settled` is the escrow already released, to the owner as earnings or to the buyer
    /// as a refund; `amount - settled` is what the contract still holds for this debit.
    struct StoredDebit {
        address buyer;
        uint40 start;
        uint40 end;
        DebitState state;
        uint64 listingId;
        uint96 amount;
        uint96 settled;
    }

    bytes32 private immutable _committeeKey;
    uint8 private immutable _threshold;
    address[] private _nodes;
    bytes32[] private _shareKeys;
    mapping(address node => uint8 index) private _nodeIndex;
    mapping(address node => uint64 count) private _anchorCount;

    /// @dev Start at 1: ids are 1-based and the first create pays no zero-to-nonzero write.
    uint256 private _nextListingId = 1;
    uint256 private _nextDebitId = 1;
    mapping(uint256 listingId => StoredListing) private _listings;
    mapping(uint256 listingId => mapping(uint32 version => Version)) private _versions;
    mapping(uint256 debitId => StoredDebit) private _debits;
    mapping(address account => uint256 credited) private _balances;

    /// @param committeeKey_ The committee's public key Y (compressed edwards25519 point).
    /// @param threshold_ How many gateways must release a share for a buyer to recover a key.
    /// @param nodes_ Ethereum address of gateway i at position i - 1.
    /// @param shareKeys_ Public share key Y_i of gateway i at position i - 1.
    constructor(bytes32 committeeKey_, uint8 threshold_, address[] memory nodes_, bytes32[] memory shareKeys_) {
        if (committeeKey_ == bytes32(0)) revert ZeroCommitteeKey();
        uint256 size = nodes_.length;
        if (size != shareKeys_.length) revert CommitteeLengthMismatch(size, shareKeys_.length);
        if (threshold_ == 0 || threshold_ > size || size > type(uint8).max) {
            revert InvalidThreshold(threshold_, size);
        }
        for (uint256 i = 0; i < size; ++i) {
            address node = nodes_[i];
            if (node == address(0) || shareKeys_[i] == bytes32(0) || _nodeIndex[node] != 0) {
                revert InvalidCommitteeMember(i + 1);
            }
            _nodeIndex[node] = uint8(i + 1);
        }
        _committeeKey = committeeKey_;
        _threshold = threshold_;
        _nodes = nodes_;
        _shareKeys = shareKeys_;
    }

    // ---------------------------------------------------------------- listings

    /// @inheritdoc IDataMarket
    function createListing(
        uint96 pricePerPeriod,
        uint32 periodSeconds,
        bool autoApprove,
        bytes32 termsHash,
        string calldata metadataURI
    ) external returns (uint256 listingId) {
        if (periodSeconds == 0) revert ZeroPeriodSeconds();
        listingId = _nextListingId++;
        _listings[listingId] = StoredListing({
            owner: msg.sender,
            periodSeconds: periodSeconds,
            versionCount: 0,
            autoApprove: autoApprove,
            open: true,
            pricePerPeriod: pricePerPeriod
        });
        emit ListingCreated(listingId, msg.sender, pricePerPeriod, periodSeconds, autoApprove, termsHash, metadataURI);
    }

    /// @inheritdoc IDataMarket
    function updateListing(uint256 listingId, uint96 pricePerPeriod, bool autoApprove, bool open) external {
        StoredListing storage listing = _ownedListing(listingId);
        listing.pricePerPeriod = pricePerPeriod;
        listing.autoApprove = autoApprove;
        listing.open = open;
        emit ListingUpdated(listingId, pricePerPeriod, autoApprove, open);
    }

    /// @inheritdoc IDataMarket
    function publishVersion(uint256 listingId, bytes calldata cid, bytes calldata capsule)
        external
        returns (uint32 version)
    {
        StoredListing storage listing = _ownedListing(listingId);
        if (capsule.length != _CAPSULE_LENGTH) revert MalformedCapsule(capsule.length);
        if (cid.length == 0 || cid.length > _MAX_CID_LENGTH || cid[0] != 0x01) revert MalformedCid(cid.length);
        version = listing.versionCount + 1;
        listing.versionCount = version;
        _versions[listingId][version] = Version({publishedAt: uint40(block.timestamp), cidDigest: bytes27(keccak256(cid))});
        emit VersionPublished(listingId, version, cid, capsule);
    }

    // ---------------------------------------------------------------- debits

    /// @inheritdoc IDataMarket
    function requestDebit(uint256 listingId, uint32 periods, bytes32 buyerKey, bytes32 purposeHash)
        external
        payable
        returns (uint256 debitId)
    {
        StoredListing storage listing = _listings[listingId];
        if (listing.owner == address(0)) revert UnknownListing(listingId);
        if (!listing.open) revert ListingClosed(listingId);
        if (periods == 0) revert ZeroPeriods();
        if (buyerKey == bytes32(0)) revert ZeroBuyerKey();
        uint256 amount = uint256(listing.pricePerPeriod) * periods;
        if (amount > type(uint96).max) revert PaymentTooLarge(amount);
        if (msg.value != amount) revert WrongPayment(amount, msg.value);
        uint256 duration = uint256(listing.periodSeconds) * periods;
        if (duration > _MAX_DURATION) revert DurationTooLong(duration);

        bool autoApproved = listing.autoApprove;
        uint40 start;
        uint40 end = uint40(duration);
        if (autoApproved) {
            start = uint40(block.timestamp);
            end += start;
        }
        debitId = _nextDebitId++;
        _debits[debitId] = StoredDebit({
            buyer: msg.sender,
            start: start,
            end: end,
            state: autoApproved ? DebitState.Active : DebitState.Requested,
            listingId: uint64(listingId),
            amount: uint96(amount),
            settled: 0
        });
        emit DebitRequested(
            debitId,
            listingId,
            msg.sender,
            periods,
            uint96(amount),
            buyerKey,
            purposeHash,
            autoApproved,
            autoApproved ? start : 0,
            autoApproved ? end : 0
        );
    }

    /// @inheritdoc IDataMarket
    function consent(uint256 debitId) external {
        (StoredDebit storage debit, uint256 listingId) = _ownersDebit(debitId, DebitState.Requested);
        uint40 start = uint40(block.timestamp);
        uint40 end = start + debit.end; // `end` held the duration while Requested
        debit.start = start;
        debit.end = end;
        debit.state = DebitState.Active;
        emit DebitConsented(debitId, listingId, start, end);
    }

    /// @inheritdoc IDataMarket
    function reject(uint256 debitId) external {
        (StoredDebit storage debit, uint256 listingId) = _ownersDebit(debitId, DebitState.Requested);
        uint96 refund = _refundAll(debit, DebitState.Rejected);
        emit DebitRejected(debitId, listingId, refund);
    }

    /// @inheritdoc IDataMarket
    function cancel(uint256 debitId) external {
        StoredDebit storage debit = _existingDebit(debitId);
        if (debit.buyer != msg.sender) revert NotDebitBuyer(debitId, msg.sender);
        if (debit.state != DebitState.Requested) revert InvalidDebitState(debitId, debit.state);
        uint96 refund = _refundAll(debit, DebitState.Cancelled);
        emit DebitCancelled(debitId, debit.listingId, refund);
    }

    /// @inheritdoc IDataMarket
    function revoke(uint256 debitId) external {
        (StoredDebit storage debit, uint256 listingId) = _ownersDebit(debitId, DebitState.Active);
        if (block.timestamp >= debit.end) revert DebitExpired(debitId);
        uint96 amount = debit.amount;
        uint96 accrued = _accrued(debit);
        uint96 earned = accrued - debit.settled;
        uint96 refund = amount - accrued;
        debit.settled = amount;
        debit.state = DebitState.Revoked;
        _balances[msg.sender] += earned;
        _balances[debit.buyer] += refund;
        emit DebitRevoked(debitId, listingId, earned, refund);
    }

    /// @inheritdoc IDataMarket
    function claim(uint256[] calldata debitIds) external returns (uint256 total) {
        for (uint256 i = 0; i < debitIds.length; ++i) {
            uint256 debitId = debitIds[i];
            StoredDebit storage debit = _existingDebit(debitId);
            _requireListingOwner(debit.listingId);
            if (debit.state != DebitState.Active) continue;
            uint96 accrued = _accrued(debit);
            uint96 due = accrued - debit.settled;
            if (due == 0) continue;
            debit.settled = accrued;
            total += due;
            emit EarningsClaimed(debitId, msg.sender, due);
        }
        if (total == 0) revert NothingToClaim();
        _balances[msg.sender] += total;
    }

    /// @inheritdoc IDataMarket
    function withdraw() external nonReentrant {
        uint256 amount = _balances[msg.sender];
        if (amount == 0) revert NothingToWithdraw();
        _balances[msg.sender] = 0;
        emit Withdrawn(msg.sender, amount);
        Address.sendValue(payable(msg.sender), amount);
    }

    // ---------------------------------------------------------------- committee

    /// @inheritdoc IDataMarket
    function anchorReleases(bytes32 root, uint32 count) external returns (uint64 seq) {
        if (_nodeIndex[msg.sender] == 0) revert NotCommitteeNode(msg.sender);
        if (root == bytes32(0) || count == 0) revert EmptyAnchor();
        seq = ++_anchorCount[msg.sender];
        emit ReleasesAnchored(msg.sender, seq, root, count);
    }

    // ---------------------------------------------------------------- views

    /// @inheritdoc IDataMarket
    function isEntitled(uint256 debitId, uint32 version) external view returns (bool) {
        StoredDebit storage debit = _existingDebit(debitId);
        Version memory published = _existingVersion(debit.listingId, version);
        return debit.state == DebitState.Active && block.timestamp < debit.end && published.publishedAt <= debit.end;
    }

    /// @inheritdoc IDataMarket
    function committee()
        external
        view
        returns (bytes32 committeeKey, uint8 threshold, address[] memory nodes, bytes32[] memory shareKeys)
    {
        return (_committeeKey, _threshold, _nodes, _shareKeys);
    }

    /// @inheritdoc IDataMarket
    function getListing(uint256 listingId) external view returns (Listing memory) {
        StoredListing storage listing = _existingListing(listingId);
        return Listing({
            owner: listing.owner,
            pricePerPeriod: listing.pricePerPeriod,
            periodSeconds: listing.periodSeconds,
            versionCount: listing.versionCount,
            autoApprove: listing.autoApprove,
            open: listing.open
        });
    }

    /// @inheritdoc IDataMarket
    function getVersion(uint256 listingId, uint32 version) external view returns (Version memory) {
        _existingListing(listingId);
        return _existingVersion(listingId, version);
    }

    /// @inheritdoc IDataMarket
    function getDebit(uint256 debitId) external view returns (Debit memory) {
        StoredDebit storage debit = _existingDebit(debitId);
        // Requested, Rejected and Cancelled debits were never Active: `end` holds the duration.
        bool neverActive = debit.start == 0;
        return Debit({
            listingId: debit.listingId,
            buyer: debit.buyer,
            state: debit.state,
            start: neverActive ? 0 : debit.start,
            end: neverActive ? 0 : debit.end,
            duration: neverActive ? debit.end : debit.end - debit.start,
            amount: debit.amount,
            settled: debit.settled
        });
    }

    /// @inheritdoc IDataMarket
    function claimable(uint256 debitId) external view returns (uint96) {
        StoredDebit storage debit = _existingDebit(debitId);
        if (debit.state != DebitState.Active) return 0;
        return _accrued(debit) - debit.settled;
    }

    /// @inheritdoc IDataMarket
    function balanceOf(address account) external view returns (uint256) {
        return _balances[account];
    }

    /// @inheritdoc IDataMarket
    function listingCount() external view returns (uint256) {
        return _nextListingId - 1;
    }

    /// @inheritdoc IDataMarket
    function debitCount() external view returns (uint256) {
        return _nextDebitId - 1;
    }

    /// @inheritdoc IDataMarket
    function anchorCount(address node) external view returns (uint64) {
        return _anchorCount[node];
    }

    // ---------------------------------------------------------------- internals

    function _existingListing(uint256 listingId) private view returns (StoredListing storage listing) {
        listing = _listings[listingId];
        if (listing.owner == address(0)) revert UnknownListing(listingId);
    }

    function _ownedListing(uint256 listingId) private view returns (StoredListing storage listing) {
        listing = _existingListing(listingId);
        if (listing.owner != msg.sender) revert NotListingOwner(listingId, msg.sender);
    }

    function _requireListingOwner(uint256 listingId) private view {
        if (_listings[listingId].owner != msg.sender) revert NotListingOwner(listingId, msg.sender);
    }

    function _existingVersion(uint256 listingId, uint32 version) private view returns (Version memory published) {
        published = _versions[listingId][version];
        if (published.publishedAt == 0) revert UnknownVersion(listingId, version);
    }

    function _existingDebit(uint256 debitId) private view returns (StoredDebit storage debit) {
        debit = _debits[debitId];
        if (debit.buyer == address(0)) revert UnknownDebit(debitId);
    }

    /// @dev A debit on one of the caller's listings, in the state the action needs.
    function _ownersDebit(uint256 debitId, DebitState required)
        private
        view
        returns (StoredDebit storage debit, uint256 listingId)
    {
        debit = _existingDebit(debitId);
        listingId = debit.listingId;
        _requireListingOwner(listingId);
        if (debit.state != required) revert InvalidDebitState(debitId, debit.state);
    }

    /// @dev Ends a Requested debit with its whole escrow credited back to the buyer.
    function _refundAll(StoredDebit storage debit, DebitState outcome) private returns (uint96 refund) {
        refund = debit.amount;
        debit.settled = refund;
        debit.state = outcome;
        _balances[debit.buyer] += refund;
    }

    /// @dev Escrow earned by the owner so far, linear in time from start to end.
    function _accrued(StoredDebit storage debit) private view returns (uint96) {
        uint256 start = debit.start;
        uint256 end = debit.end;
        uint256 until = block.timestamp < end ? block.timestamp : end;
        return uint96((uint256(debit.amount) * (until - start)) / (end - start));
    }
}
