// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Address} from "@openzeppelin/contracts/utils/Address.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";

import {DataStore} from "./DataStore.sol";
import {IDataMarket} from "./IDataMarket.sol";

/// @title DataMarket
/// @notice See {IDataMarket}. Storage is packed so that each call writes as few slots as it
/// can: a listing is two slots, a version one, a debit two. Committee rosters and results
/// are written once each as data contracts ({DataStore}).
contract DataMarket is IDataMarket, EIP712, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    /// @dev R(32) || nonce(24) || XChaCha20-Poly1305(DEK)(48) || Schnorr proof (c, s)(64) binding R
    /// to (chain, market, listing, version, CID); the contract checks only the length, the
    /// committee checks the proof before it releases anything.
    uint256 private constant _CAPSULE_LENGTH = 168;
    uint256 private constant _MAX_CID_LENGTH = 128;
    /// @dev Keeps `start + duration` inside uint40 for the next ~17,000 years.
    uint256 private constant _MAX_DURATION = 1 << 39;

    /// @dev Slot 0: owner | periodSeconds | versionCount | autoApprove | open.
    /// Slot 1: price | asset (address(0): ether), so the asset costs no extra slot.
    struct StoredListing {
        address owner;
        uint32 periodSeconds;
        uint32 versionCount;
        bool autoApprove;
        bool open;
        uint96 pricePerPeriod;
        address asset;
    }

    /// @dev Slot 0: buyer | start | end | state. Slot 1: listingId | amount | settled.
    /// While never Active (Requested, Rejected, Cancelled), `start` holds the buyer's
    /// consent deadline (0: none) and `end` the duration; consent overwrites both, so the
    /// deadline costs no extra slot. The asset is the listing's (fixed at creation).
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

    /// @dev EIP-712 type of the result the nodes sign (see docs/protocol.md).
    bytes32 private constant _COMMITTEE_RESULT_TYPEHASH = keccak256(
        "CommitteeResult(uint64 ceremony,uint64 epoch,bytes32 committeeKey,bytes32 shareKeysHash,uint256 qualified,bytes32 transcriptHash)"
    );
    uint8 private constant _MAX_MESSAGE_KIND = 4;

    /// @dev Slot 0: epoch | proposedAt | notBefore | openedAt | deadline | phaseSeconds.
    /// Slot 1: roster (DataStore pointer: n addresses of 20 bytes || n X25519 keys of 32)
    /// | threshold | size | approvals | finalized | finalizedBlock.
    struct StoredCeremony {
        uint64 epoch;
        uint40 proposedAt;
        uint40 notBefore;
        uint40 openedAt;
        uint40 deadline;
        uint32 phaseSeconds;
        address roster;
        uint8 threshold;
        uint8 size;
        uint8 approvals;
        bool finalized;
        uint64 finalizedBlock;
    }

    /// @dev One slot: result pointer (Y || qualified || transcriptHash || Y_1..Y_n, 32 bytes
    /// each) | ceremonyId | threshold | size. The roster and the start block are the
    /// ceremony's (one slot less to write when finalizing: ~20k gas).
    struct StoredEpoch {
        address result;
        uint64 ceremonyId;
        uint8 threshold;
        uint8 size;
    }

    uint64 private immutable _reshareDelay;
    address private _governor;
    uint64 private _currentEpoch;
    uint64 private _latestCeremony;
    mapping(uint64 ceremonyId => StoredCeremony) private _ceremonies;
    mapping(uint64 ceremonyId => mapping(address node => bool)) private _approved;
    mapping(uint64 epoch => StoredEpoch) private _epochs;
    mapping(address node => uint64 count) private _anchorCount;

    /// @dev Start at 1: ids are 1-based and the first create pays no zero-to-nonzero write.
    uint256 private _nextListingId = 1;
    uint256 private _nextDebitId = 1;
    mapping(uint256 listingId => StoredListing) private _listings;
    mapping(uint256 listingId => mapping(uint32 version => Version)) private _versions;
    mapping(uint256 debitId => StoredDebit) private _debits;
    mapping(address account => mapping(address asset => uint256 credited)) private _balances;

    /// @param governor_ Who proposes committees (address(0): the deployer).
    /// @param nodes Ethereum address of epoch 1's node i at position i - 1.
    /// @param encryptionKeys X25519 public key of node i at position i - 1.
    /// @param threshold Epoch 1's threshold t.
    /// @param phaseSeconds How long each phase of the DKG lasts at most.
    /// @param deadline Timestamp by which epoch 1 must be final.
    /// @param reshareDelay_ Seconds a reshare waits after its proposal before it may open.
    /// @dev Creates ceremony 1 for epoch 1, open at once.
    constructor(
        address governor_,
        address[] memory nodes,
        bytes32[] memory encryptionKeys,
        uint8 threshold,
        uint32 phaseSeconds,
        uint64 deadline,
        uint64 reshareDelay_
    ) EIP712("DataDebit", "1") {
        address first = governor_ == address(0) ? msg.sender : governor_;
        _governor = first;
        _reshareDelay = reshareDelay_;
        emit GovernorChanged(address(0), first);
        _propose(nodes, encryptionKeys, threshold, phaseSeconds, deadline);
    }

    // ---------------------------------------------------------------- listings

    /// @inheritdoc IDataMarket
    function createListing(
        address asset,
        uint96 pricePerPeriod,
        uint32 periodSeconds,
        bool autoApprove,
        bytes32 termsHash,
        string calldata metadataURI
    ) external returns (uint256 listingId) {
        if (periodSeconds == 0) revert ZeroPeriodSeconds();
        if (asset != address(0) && asset.code.length == 0) revert NotAToken(asset);
        listingId = _nextListingId++;
        _listings[listingId] = StoredListing({
            owner: msg.sender,
            periodSeconds: periodSeconds,
            versionCount: 0,
            autoApprove: autoApprove,
            open: true,
            pricePerPeriod: pricePerPeriod,
            asset: asset
        });
        emit ListingCreated(
            listingId, msg.sender, asset, pricePerPeriod, periodSeconds, autoApprove, termsHash, metadataURI
        );
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
    function requestDebit(
        uint256 listingId,
        uint32 periods,
        bytes32 buyerKey,
        bytes32 purposeHash,
        uint64 consentDeadline
    ) external payable nonReentrant returns (uint256 debitId) {
        address asset;
        uint256 amount;
        (debitId, asset, amount) = _request(listingId, periods, buyerKey, purposeHash, consentDeadline);
        if (asset == address(0)) {
            if (msg.value != amount) revert WrongPayment(amount, msg.value);
        } else {
            if (msg.value != 0) revert WrongPayment(0, msg.value);
            _pull(asset, amount);
        }
    }

    /// @inheritdoc IDataMarket
    function requestDebitWithPermit(
        uint256 listingId,
        uint32 periods,
        bytes32 buyerKey,
        bytes32 purposeHash,
        uint64 consentDeadline,
        uint256 permitDeadline,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external nonReentrant returns (uint256 debitId) {
        address asset;
        uint256 amount;
        (debitId, asset, amount) = _request(listingId, periods, buyerKey, purposeHash, consentDeadline);
        if (asset == address(0)) revert NotATokenListing(listingId);
        // A permit anyone saw in the mempool can be submitted first, which spends its nonce
        // and makes this call revert: go on when the allowance is there anyway.
        try IERC20Permit(asset).permit(msg.sender, address(this), amount, permitDeadline, v, r, s) {}
        catch {
            uint256 allowance = IERC20(asset).allowance(msg.sender, address(this));
            if (allowance < amount) revert PermitNotApplied(asset, allowance, amount);
        }
        _pull(asset, amount);
    }

    /// @inheritdoc IDataMarket
    function consent(uint256 debitId) external {
        (StoredDebit storage debit, uint256 listingId) = _ownersDebit(debitId, DebitState.Requested);
        uint40 deadline = debit.start; // `start` held the consent deadline while Requested
        if (deadline != 0 && block.timestamp >= deadline) revert ConsentDeadlinePassed(debitId, deadline);
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
        address asset = _listings[listingId].asset;
        _balances[msg.sender][asset] += earned;
        _balances[debit.buyer][asset] += refund;
        emit DebitRevoked(debitId, listingId, earned, refund);
    }

    /// @inheritdoc IDataMarket
    function claim(uint256[] calldata debitIds) external returns (uint256 total) {
        // Credits are summed per run of debits in the same asset: one balance write per run.
        address asset;
        uint256 pending;
        for (uint256 i = 0; i < debitIds.length; ++i) {
            uint256 debitId = debitIds[i];
            StoredDebit storage debit = _existingDebit(debitId);
            uint256 listingId = debit.listingId;
            StoredListing storage listing = _listings[listingId];
            if (listing.owner != msg.sender) revert NotListingOwner(listingId, msg.sender);
            if (debit.state != DebitState.Active) continue;
            uint96 accrued = _accrued(debit);
            uint96 due = accrued - debit.settled;
            if (due == 0) continue;
            debit.settled = accrued;
            address debitAsset = listing.asset;
            if (debitAsset != asset) {
                if (pending != 0) _balances[msg.sender][asset] += pending;
                asset = debitAsset;
                pending = 0;
            }
            pending += due;
            total += due;
            emit EarningsClaimed(debitId, msg.sender, due);
        }
        if (total == 0) revert NothingToClaim();
        _balances[msg.sender][asset] += pending;
    }

    /// @inheritdoc IDataMarket
    function withdraw(address asset) external nonReentrant {
        uint256 amount = _balances[msg.sender][asset];
        if (amount == 0) revert NothingToWithdraw();
        _balances[msg.sender][asset] = 0;
        emit Withdrawn(msg.sender, asset, amount);
        if (asset == address(0)) {
            Address.sendValue(payable(msg.sender), amount);
        } else {
            IERC20(asset).safeTransfer(msg.sender, amount);
        }
    }

    // ---------------------------------------------------------------- committee

    /// @inheritdoc IDataMarket
    function anchorReleases(bytes32 root, uint32 count) external returns (uint64 seq) {
        uint64 epoch = _currentEpoch;
        if (
            epoch == 0
                || (_rosterIndex(_epochRoster(epoch), msg.sender) == 0
                    && (epoch == 1 || _rosterIndex(_epochRoster(epoch - 1), msg.sender) == 0))
        ) revert NotCommitteeNode(msg.sender);
        if (root == bytes32(0) || count == 0) revert EmptyAnchor();
        seq = ++_anchorCount[msg.sender];
        emit ReleasesAnchored(msg.sender, seq, root, count);
    }

    /// @inheritdoc IDataMarket
    function proposeCommittee(
        address[] calldata nodes,
        bytes32[] calldata encryptionKeys,
        uint8 threshold,
        uint32 phaseSeconds,
        uint64 deadline
    ) external returns (uint64 ceremonyId) {
        if (msg.sender != _governor) revert NotGovernor(msg.sender);
        uint64 latest = _latestCeremony;
        StoredCeremony storage last = _ceremonies[latest];
        if (!last.finalized && block.timestamp < last.deadline) revert CeremonyInProgress(latest);
        return _propose(nodes, encryptionKeys, threshold, phaseSeconds, deadline);
    }

    /// @inheritdoc IDataMarket
    function approveCommittee(uint64 ceremonyId) external {
        StoredCeremony storage c = _liveCeremony(ceremonyId);
        uint64 epoch = _currentEpoch;
        StoredEpoch storage current = _epochs[epoch];
        if (epoch == 0 || _rosterIndex(_ceremonies[current.ceremonyId].roster, msg.sender) == 0) {
            revert NotCommitteeNode(msg.sender);
        }
        if (_approved[ceremonyId][msg.sender]) revert AlreadyApproved(ceremonyId, msg.sender);
        _approved[ceremonyId][msg.sender] = true;
        uint8 approvals = c.approvals + 1;
        c.approvals = approvals;
        emit CommitteeApproved(ceremonyId, msg.sender, approvals);
        if (approvals == current.threshold) {
            uint40 openedAt = uint40(block.timestamp) > c.notBefore ? uint40(block.timestamp) : c.notBefore;
            c.openedAt = openedAt;
            emit CeremonyOpened(ceremonyId, openedAt);
        }
    }

    /// @inheritdoc IDataMarket
    function postCeremonyMessage(uint64 ceremonyId, uint8 kind, bytes calldata payload) external {
        StoredCeremony storage c = _openCeremony(ceremonyId);
        if (kind == 0 || kind > _MAX_MESSAGE_KIND) revert InvalidMessageKind(kind);
        if (
            _rosterIndex(c.roster, msg.sender) == 0
                && (c.epoch == 1 || _rosterIndex(_epochRoster(c.epoch - 1), msg.sender) == 0)
        ) revert NotCeremonyMember(msg.sender);
        emit CeremonyMessage(ceremonyId, msg.sender, kind, payload);
    }

    /// @inheritdoc IDataMarket
    function finalizeCommittee(
        uint64 ceremonyId,
        bytes32 committeeKey,
        bytes32[] calldata shareKeys,
        uint256 qualified,
        bytes32 transcriptHash,
        bytes[] calldata newSignatures,
        bytes[] calldata oldSignatures
    ) external {
        StoredCeremony storage c = _openCeremony(ceremonyId);
        uint256 size = c.size;
        if (shareKeys.length != size) revert CommitteeLengthMismatch(size, shareKeys.length);
        if (committeeKey == bytes32(0)) revert ZeroCommitteeKey();
        for (uint256 i = 0; i < size; ++i) {
            if (shareKeys[i] == bytes32(0)) revert InvalidCommitteeMember(i + 1);
        }
        uint64 epoch = c.epoch;
        bytes32 digest = _hashTypedDataV4(
            keccak256(
                abi.encode(
                    _COMMITTEE_RESULT_TYPEHASH,
                    ceremonyId,
                    epoch,
                    committeeKey,
                    keccak256(abi.encodePacked(shareKeys)),
                    qualified,
                    transcriptHash
                )
            )
        );
        address roster = c.roster;
        _requireSigners(DataStore.read(roster), size, c.threshold, digest, newSignatures);
        if (epoch == 1) {
            _requireQualified(qualified, size, c.threshold);
        } else {
            StoredEpoch storage current = _epochs[epoch - 1];
            bytes32 currentKey = _committeeKeyOf(current);
            if (committeeKey != currentKey) revert CommitteeKeyChanged(currentKey, committeeKey);
            _requireQualified(qualified, current.size, current.threshold);
            _requireSigners(
                DataStore.read(_ceremonies[current.ceremonyId].roster),
                current.size,
                current.threshold,
                digest,
                oldSignatures
            );
        }
        c.finalized = true;
        c.finalizedBlock = uint64(block.number);
        _currentEpoch = epoch;
        _epochs[epoch] = StoredEpoch({
            result: DataStore.write(abi.encodePacked(committeeKey, qualified, transcriptHash, shareKeys)),
            ceremonyId: ceremonyId,
            threshold: c.threshold,
            size: uint8(size)
        });
        emit CommitteeFinalized(epoch, ceremonyId, committeeKey, shareKeys, qualified, transcriptHash);
    }

    /// @inheritdoc IDataMarket
    function setGovernor(address next) external {
        address previous = _governor;
        if (msg.sender != previous) revert NotGovernor(msg.sender);
        if (next == address(0)) revert ZeroGovernor();
        _governor = next;
        emit GovernorChanged(previous, next);
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
        uint64 epoch = _currentEpoch;
        if (epoch == 0) revert NoCommittee();
        CommitteeEpoch memory current = _epochAt(epoch);
        return (current.committeeKey, current.threshold, current.nodes, current.shareKeys);
    }

    /// @inheritdoc IDataMarket
    function committeeAt(uint64 epoch) external view returns (CommitteeEpoch memory) {
        if (epoch == 0 || epoch > _currentEpoch) revert UnknownEpoch(epoch);
        return _epochAt(epoch);
    }

    /// @inheritdoc IDataMarket
    function ceremony(uint64 ceremonyId) external view returns (Ceremony memory) {
        if (ceremonyId == 0 || ceremonyId > _latestCeremony) revert UnknownCeremony(ceremonyId);
        StoredCeremony storage c = _ceremonies[ceremonyId];
        (address[] memory nodes, bytes32[] memory keys) = _rosterOf(c.roster, c.size);
        CeremonyStatus status = c.finalized
            ? CeremonyStatus.Finalized
            : (block.timestamp < c.deadline ? CeremonyStatus.Pending : CeremonyStatus.Failed);
        return Ceremony({
            epoch: c.epoch,
            threshold: c.threshold,
            phaseSeconds: c.phaseSeconds,
            proposedAt: c.proposedAt,
            notBefore: c.notBefore,
            openedAt: c.openedAt,
            deadline: c.deadline,
            approvals: c.approvals,
            status: status,
            nodes: nodes,
            encryptionKeys: keys
        });
    }

    /// @inheritdoc IDataMarket
    function governor() external view returns (address) {
        return _governor;
    }

    /// @inheritdoc IDataMarket
    function reshareDelay() external view returns (uint64) {
        return _reshareDelay;
    }

    /// @inheritdoc IDataMarket
    function currentEpoch() external view returns (uint64) {
        return _currentEpoch;
    }

    /// @inheritdoc IDataMarket
    function latestCeremony() external view returns (uint64) {
        return _latestCeremony;
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
            open: listing.open,
            asset: listing.asset
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
        // Requested, Rejected and Cancelled debits were never Active: `start` holds the
        // consent deadline and `end` the duration.
        DebitState state = debit.state;
        bool neverActive = state == DebitState.Requested || state == DebitState.Rejected
            || state == DebitState.Cancelled;
        return Debit({
            listingId: debit.listingId,
            buyer: debit.buyer,
            state: state,
            start: neverActive ? 0 : debit.start,
            end: neverActive ? 0 : debit.end,
            duration: neverActive ? debit.end : debit.end - debit.start,
            amount: debit.amount,
            settled: debit.settled,
            consentDeadline: neverActive ? debit.start : 0
        });
    }

    /// @inheritdoc IDataMarket
    function claimable(uint256 debitId) external view returns (uint96) {
        StoredDebit storage debit = _existingDebit(debitId);
        if (debit.state != DebitState.Active) return 0;
        return _accrued(debit) - debit.settled;
    }

    /// @inheritdoc IDataMarket
    function balanceOf(address account, address asset) external view returns (uint256) {
        return _balances[account][asset];
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

    /// @dev Validates and records a proposal for epoch current + 1 (callers check the rest).
    function _propose(
        address[] memory nodes,
        bytes32[] memory encryptionKeys,
        uint8 threshold,
        uint32 phaseSeconds,
        uint64 deadline
    ) private returns (uint64 ceremonyId) {
        uint256 size = nodes.length;
        if (size != encryptionKeys.length) revert CommitteeLengthMismatch(size, encryptionKeys.length);
        if (threshold == 0 || threshold > size || size > type(uint8).max) revert InvalidThreshold(threshold, size);
        if (phaseSeconds == 0) revert ZeroPhaseSeconds();
        bytes memory roster = new bytes(size * 52);
        for (uint256 i = 0; i < size; ++i) {
            address node = nodes[i];
            bytes32 key = encryptionKeys[i];
            if (node == address(0) || key == bytes32(0)) revert InvalidCommitteeMember(i + 1);
            for (uint256 j = 0; j < i; ++j) {
                if (nodes[j] == node) revert InvalidCommitteeMember(i + 1);
            }
            // addresses in order, each store's 12 trailing zero bytes overwritten by the next
            // (the last one's by the keys, written after all addresses)
            assembly ("memory-safe") {
                mstore(add(add(roster, 32), mul(i, 20)), shl(96, node))
            }
        }
        for (uint256 i = 0; i < size; ++i) {
            bytes32 key = encryptionKeys[i];
            assembly ("memory-safe") {
                mstore(add(add(roster, 32), add(mul(size, 20), mul(i, 32))), key)
            }
        }
        uint64 epoch = _currentEpoch + 1;
        uint64 notBefore = epoch == 1 ? uint64(block.timestamp) : uint64(block.timestamp) + _reshareDelay;
        if (deadline <= notBefore || deadline > type(uint40).max) revert DeadlineNotInFuture(deadline);
        ceremonyId = ++_latestCeremony;
        _ceremonies[ceremonyId] = StoredCeremony({
            epoch: epoch,
            proposedAt: uint40(block.timestamp),
            notBefore: uint40(notBefore),
            openedAt: epoch == 1 ? uint40(block.timestamp) : 0,
            deadline: uint40(deadline),
            phaseSeconds: phaseSeconds,
            roster: DataStore.write(roster),
            threshold: threshold,
            size: uint8(size),
            approvals: 0,
            finalized: false,
            finalizedBlock: 0
        });
        emit CommitteeProposed(ceremonyId, epoch, threshold, nodes, encryptionKeys, phaseSeconds, notBefore, deadline);
        if (epoch == 1) emit CeremonyOpened(ceremonyId, uint64(block.timestamp));
    }

    /// @dev The latest ceremony, not final and before its deadline.
    function _liveCeremony(uint64 ceremonyId) private view returns (StoredCeremony storage c) {
        uint64 latest = _latestCeremony;
        if (ceremonyId == 0 || ceremonyId > latest) revert UnknownCeremony(ceremonyId);
        if (ceremonyId != latest) revert WrongCeremony(ceremonyId, latest);
        c = _ceremonies[ceremonyId];
        if (c.finalized) revert WrongEpoch(c.epoch, _currentEpoch + 1);
        if (block.timestamp >= c.deadline) revert DeadlinePassed(ceremonyId, c.deadline);
    }

    /// @dev A live ceremony that has opened (reshare: approved, and notBefore reached).
    function _openCeremony(uint64 ceremonyId) private view returns (StoredCeremony storage c) {
        c = _liveCeremony(ceremonyId);
        uint256 openedAt = c.openedAt;
        if (openedAt == 0 || block.timestamp < openedAt) revert CeremonyNotOpen(ceremonyId);
    }

    /// @dev At least `threshold` distinct roster members signed `digest`, none twice, no
    /// stranger. OpenZeppelin's ECDSA refuses malleable (high-s) and malformed signatures.
    function _requireSigners(
        bytes memory roster,
        uint256 size,
        uint256 threshold,
        bytes32 digest,
        bytes[] calldata signatures
    ) private pure {
        uint256 seen;
        uint256 valid;
        for (uint256 k = 0; k < signatures.length; ++k) {
            address signer = ECDSA.recoverCalldata(digest, signatures[k]);
            uint256 index = _indexIn(roster, size, signer);
            if (index == 0) revert UnknownSigner(signer);
            uint256 bit = 1 << (index - 1);
            if (seen & bit != 0) revert DuplicateSigner(signer);
            seen |= bit;
            ++valid;
        }
        if (valid < threshold) revert TooFewSignatures(threshold, valid);
    }

    /// @dev `qualified` names only dealers of a roster of `size` and at least `threshold`.
    function _requireQualified(uint256 qualified, uint256 size, uint256 threshold) private pure {
        uint256 count;
        for (uint256 bits = qualified; bits != 0; bits &= bits - 1) {
            ++count;
        }
        if ((size < 256 && qualified >> size != 0) || count < threshold) revert InvalidQualifiedSet(qualified);
    }

    /// @dev 1-based index of `node` in a stored roster, 0 if absent (or no roster).
    function _rosterIndex(address roster, address node) private view returns (uint256) {
        if (roster == address(0)) return 0;
        bytes memory data = DataStore.read(roster);
        return _indexIn(data, data.length / 52, node);
    }

    function _indexIn(bytes memory roster, uint256 size, address node) private pure returns (uint256) {
        for (uint256 i = 0; i < size; ++i) {
            address member;
            assembly ("memory-safe") {
                member := shr(96, mload(add(add(roster, 32), mul(i, 20))))
            }
            if (member == node) return i + 1;
        }
        return 0;
    }

    function _rosterOf(address roster, uint256 size)
        private
        view
        returns (address[] memory nodes, bytes32[] memory keys)
    {
        bytes memory data = DataStore.read(roster);
        nodes = new address[](size);
        keys = new bytes32[](size);
        for (uint256 i = 0; i < size; ++i) {
            address node;
            bytes32 key;
            assembly ("memory-safe") {
                node := shr(96, mload(add(add(data, 32), mul(i, 20))))
                key := mload(add(add(data, 32), add(mul(size, 20), mul(i, 32))))
            }
            nodes[i] = node;
            keys[i] = key;
        }
    }

    /// @dev The roster pointer of a final epoch (address(0) for epoch 0).
    function _epochRoster(uint64 epoch) private view returns (address) {
        return _ceremonies[_epochs[epoch].ceremonyId].roster;
    }

    function _committeeKeyOf(StoredEpoch storage e) private view returns (bytes32 key) {
        address result = e.result;
        assembly ("memory-safe") {
            extcodecopy(result, 0, 1, 32)
            key := mload(0)
        }
    }

    function _epochAt(uint64 epoch) private view returns (CommitteeEpoch memory out) {
        StoredEpoch storage e = _epochs[epoch];
        uint256 size = e.size;
        StoredCeremony storage c = _ceremonies[e.ceremonyId];
        (address[] memory nodes, bytes32[] memory keys) = _rosterOf(c.roster, size);
        bytes memory result = DataStore.read(e.result);
        bytes32 committeeKey;
        uint256 qualified;
        bytes32 transcriptHash;
        assembly ("memory-safe") {
            committeeKey := mload(add(result, 32))
            qualified := mload(add(result, 64))
            transcriptHash := mload(add(result, 96))
        }
        bytes32[] memory shareKeys = new bytes32[](size);
        for (uint256 i = 0; i < size; ++i) {
            bytes32 key;
            assembly ("memory-safe") {
                key := mload(add(add(result, 128), mul(i, 32)))
            }
            shareKeys[i] = key;
        }
        out = CommitteeEpoch({
            epoch: epoch,
            ceremonyId: e.ceremonyId,
            startBlock: c.finalizedBlock,
            threshold: e.threshold,
            committeeKey: committeeKey,
            nodes: nodes,
            encryptionKeys: keys,
            shareKeys: shareKeys,
            qualified: qualified,
            transcriptHash: transcriptHash
        });
    }

    function _existingListing(uint256 listingId) private view returns (StoredListing storage listing) {
        listing = _listings[listingId];
        if (listing.owner == address(0)) revert UnknownListing(listingId);
    }

    function _ownedListing(uint256 listingId) private view returns (StoredListing storage listing) {
        listing = _existingListing(listingId);
        if (listing.owner != msg.sender) revert NotListingOwner(listingId, msg.sender);
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
        if (_listings[listingId].owner != msg.sender) revert NotListingOwner(listingId, msg.sender);
        if (debit.state != required) revert InvalidDebitState(debitId, debit.state);
    }

    /// @dev Ends a Requested debit with its whole escrow credited back to the buyer.
    function _refundAll(StoredDebit storage debit, DebitState outcome) private returns (uint96 refund) {
        refund = debit.amount;
        debit.settled = refund;
        debit.state = outcome;
        _balances[debit.buyer][_listings[debit.listingId].asset] += refund;
    }

    /// @dev Validates a request and records the debit (effects before any payment moves);
    /// returns the listing's asset and the exact amount to pay.
    function _request(
        uint256 listingId,
        uint32 periods,
        bytes32 buyerKey,
        bytes32 purposeHash,
        uint64 consentDeadline
    ) private returns (uint256 debitId, address asset, uint256 amount) {
        StoredListing storage listing = _listings[listingId];
        if (listing.owner == address(0)) revert UnknownListing(listingId);
        if (!listing.open) revert ListingClosed(listingId);
        if (periods == 0) revert ZeroPeriods();
        if (buyerKey == bytes32(0)) revert ZeroBuyerKey();
        amount = uint256(listing.pricePerPeriod) * periods;
        asset = listing.asset;
        if (amount > type(uint96).max) revert PaymentTooLarge(amount);
        uint256 duration = uint256(listing.periodSeconds) * periods;
        if (duration > _MAX_DURATION) revert DurationTooLong(duration);

        bool autoApproved = listing.autoApprove;
        uint40 start;
        uint40 end = uint40(duration);
        if (autoApproved) {
            start = uint40(block.timestamp);
            end += start;
            consentDeadline = 0;
        } else if (consentDeadline != 0) {
            if (consentDeadline <= block.timestamp || consentDeadline > type(uint40).max) {
                revert InvalidConsentDeadline(consentDeadline);
            }
            start = uint40(consentDeadline);
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
            autoApproved ? end : 0,
            consentDeadline
        );
    }

    /// @dev Pulls exactly `amount` of `asset` from the caller and checks, by the market's
    /// own balance before and after, that exactly `amount` arrived.
    function _pull(address asset, uint256 amount) private {
        if (amount == 0) return;
        IERC20 token = IERC20(asset);
        uint256 before = token.balanceOf(address(this));
        token.safeTransferFrom(msg.sender, address(this), amount);
        uint256 afterwards = token.balanceOf(address(this));
        if (afterwards < before || afterwards - before != amount) {
            revert TokenTransferMismatch(asset, amount, afterwards < before ? 0 : afterwards - before);
        }
    }

    /// @dev Escrow earned by the owner so far, linear in time from start to end.
    function _accrued(StoredDebit storage debit) private view returns (uint96) {
        uint256 start = debit.start;
        uint256 end = debit.end;
        uint256 until = block.timestamp < end ? block.timestamp : end;
        return uint96((uint256(debit.amount) * (until - start)) / (end - start));
    }
}
