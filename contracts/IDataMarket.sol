// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title IDataMarket
/// @notice A market for encrypted data: owners list datasets or feeds and publish encrypted
/// versions (CID + key capsule); buyers open paid, consented, time-bounded *data debits*;
/// a t-of-n committee of key-release gateways watches this contract and anchors the
/// Merkle roots of its release logs here. The committee changes by *epochs*: a governor
/// proposes a roster, the nodes run a DKG (epoch 1) or a reshare (later epochs) over
/// `CeremonyMessage` events, and `finalizeCommittee` records the result signed by the nodes.
/// @dev Escrow streams: an Active debit's payment accrues to the listing owner linearly from
/// `start` to `end`. Invariant, per asset (ether or an ERC-20): what the market holds ==
/// sum of credited balances + sum of unsettled escrow.
interface IDataMarket {
    /// @notice Lifecycle of a data debit. `None` marks an id that was never created.
    /// "Expired" is not a state: it is `Active` with `block.timestamp >= end`.
    enum DebitState {
        None,
        Requested,
        Active,
        Rejected,
        Cancelled,
        Revoked
    }

    /// @notice A listing as the contract enforces it (terms and metadata live in the event).
    struct Listing {
        address owner;
        uint96 pricePerPeriod;
        uint32 periodSeconds;
        uint32 versionCount;
        bool autoApprove;
        bool open;
        /// @dev What buyers pay in: address(0) for native ether, else an ERC-20 token.
        address asset;
    }

    /// @notice What the contract keeps of a published version.
    /// @dev `cidDigest` is the first 27 bytes of keccak256(cid); it shares a slot with
    /// `publishedAt` so that a publish costs one storage slot. The full CID and the
    /// capsule are in the `VersionPublished` event.
    struct Version {
        uint40 publishedAt;
        bytes27 cidDigest;
    }

    /// @notice A data debit as seen from outside.
    /// @dev `start` and `end` are zero until the debit is Active; `duration` is fixed at request.
    /// `settled` is the escrow already released (earnings claimed by the owner, or refunds);
    /// the contract still holds `amount - settled` for the debit, in its listing's asset.
    /// `consentDeadline` is the buyer's consent deadline (0: none) while the debit was
    /// never Active (Requested, Rejected, Cancelled); 0 once consented or auto-approved.
    struct Debit {
        uint256 listingId;
        address buyer;
        DebitState state;
        uint64 start;
        uint64 end;
        uint64 duration;
        uint96 amount;
        uint96 settled;
        uint64 consentDeadline;
    }

    /// @notice Where a committee ceremony stands. `Failed`: its deadline passed before it
    /// was finalized (a new proposal, with a new ceremony id, may retry the epoch).
    enum CeremonyStatus {
        None,
        Pending,
        Finalized,
        Failed
    }

    /// @notice A final committee epoch: its roster, threshold and DKG/reshare result.
    /// @dev `qualified` bit i (1 << i) is set when dealer i qualified (DKG: new-roster
    /// position; reshare: previous-roster position). Node i is at array position i - 1.
    struct CommitteeEpoch {
        uint64 epoch;
        uint64 ceremonyId;
        uint64 startBlock;
        uint8 threshold;
        bytes32 committeeKey;
        address[] nodes;
        bytes32[] encryptionKeys;
        bytes32[] shareKeys;
        uint256 qualified;
        bytes32 transcriptHash;
    }

    /// @notice A proposed committee (one ceremony). `openedAt` is 0 until the ceremony may
    /// take messages (a DKG opens at once; a reshare once t_old current nodes approved, and
    /// not before `notBefore`).
    struct Ceremony {
        uint64 epoch;
        uint8 threshold;
        uint32 phaseSeconds;
        uint64 proposedAt;
        uint64 notBefore;
        uint64 openedAt;
        uint64 deadline;
        uint8 approvals;
        CeremonyStatus status;
        address[] nodes;
        bytes32[] encryptionKeys;
    }

    // ---------------------------------------------------------------- errors

    /// @notice No listing has this id.
    error UnknownListing(uint256 listingId);
    /// @notice No debit has this id.
    error UnknownDebit(uint256 debitId);
    /// @notice The listing has no version with this number.
    error UnknownVersion(uint256 listingId, uint32 version);
    /// @notice Only the listing's owner may do this.
    error NotListingOwner(uint256 listingId, address caller);
    /// @notice Only the debit's buyer may do this.
    error NotDebitBuyer(uint256 debitId, address caller);
    /// @notice Only a node of the current (or, to anchor releases, the previous) committee
    /// may do this.
    error NotCommitteeNode(address caller);
    /// @notice The listing does not take new debits.
    error ListingClosed(uint256 listingId);
    /// @notice A debit must buy at least one period.
    error ZeroPeriods();
    /// @notice A listing's period must last at least one second.
    error ZeroPeriodSeconds();
    /// @notice The buyer's X25519 public key must not be zero.
    error ZeroBuyerKey();
    /// @notice `msg.value` must equal `pricePerPeriod * periods` exactly on an ether
    /// listing, and be 0 on a token listing.
    error WrongPayment(uint256 expected, uint256 sent);
    /// @notice A listing's asset must be address(0) (ether) or a contract (an ERC-20).
    error NotAToken(address asset);
    /// @notice A permit purchase needs a listing priced in an ERC-20 token.
    error NotATokenListing(uint256 listingId);
    /// @notice The token moved another amount than asked (fee-on-transfer, rebasing or
    /// otherwise non-standard tokens are refused).
    error TokenTransferMismatch(address asset, uint256 expected, uint256 received);
    /// @notice The permit failed and the allowance does not cover the payment either.
    error PermitNotApplied(address asset, uint256 allowance, uint256 needed);
    /// @notice A consent deadline must be 0 (none) or in the future (and fit 40 bits).
    error InvalidConsentDeadline(uint64 consentDeadline);
    /// @notice The buyer's consent deadline has passed: the owner can no longer consent.
    error ConsentDeadlinePassed(uint256 debitId, uint64 consentDeadline);
    /// @notice The debit's price does not fit the contract's 96-bit amounts.
    error PaymentTooLarge(uint256 amount);
    /// @notice The debit's duration does not fit the contract's 40-bit timestamps.
    error DurationTooLong(uint256 duration);
    /// @notice The debit is not in a state that allows this.
    error InvalidDebitState(uint256 debitId, DebitState state);
    /// @notice The debit's term has ended.
    error DebitExpired(uint256 debitId);
    /// @notice A capsule is exactly 168 bytes: R(32) || nonce(24) || sealed key(48) || proof(64).
    error MalformedCapsule(uint256 length);
    /// @notice A CID must be a binary CIDv1 (leading 0x01) of at most 128 bytes.
    error MalformedCid(uint256 length);
    /// @notice None of the given debits has anything accrued.
    error NothingToClaim();
    /// @notice The caller has no credited balance.
    error NothingToWithdraw();
    /// @notice The committee key must not be zero.
    error ZeroCommitteeKey();
    /// @notice A roster's keys (encryption keys when proposed, share keys when finalized)
    /// must be one per node.
    error CommitteeLengthMismatch(uint256 nodes, uint256 keys);
    /// @notice The threshold must satisfy 1 <= threshold <= size <= 255.
    error InvalidThreshold(uint256 threshold, uint256 size);
    /// @notice Committee member at this 1-based index has a zero or repeated address, or a zero key.
    error InvalidCommitteeMember(uint256 index);
    /// @notice Only the governor may do this.
    error NotGovernor(address caller);
    /// @notice The governor cannot be the zero address (committees could never change again).
    error ZeroGovernor();
    /// @notice No ceremony has this id.
    error UnknownCeremony(uint64 ceremonyId);
    /// @notice Only the latest ceremony can take approvals, messages or its result.
    error WrongCeremony(uint64 ceremonyId, uint64 latest);
    /// @notice The ceremony is for another epoch than the next one (it is already final).
    error WrongEpoch(uint64 epoch, uint64 expected);
    /// @notice The latest ceremony for the next epoch is still pending (deadline not passed).
    error CeremonyInProgress(uint64 ceremonyId);
    /// @notice The ceremony is not open yet (reshare: too few approvals, or before `openedAt`).
    error CeremonyNotOpen(uint64 ceremonyId);
    /// @notice The ceremony's deadline has passed: it failed.
    error DeadlinePassed(uint64 ceremonyId, uint64 deadline);
    /// @notice A proposal's deadline must be after now and after its `notBefore`.
    error DeadlineNotInFuture(uint64 deadline);
    /// @notice A ceremony's phases must last at least one second.
    error ZeroPhaseSeconds();
    /// @notice Fewer distinct valid signers of the result than the threshold.
    error TooFewSignatures(uint256 needed, uint256 valid);
    /// @notice The same node signed the result twice in one list.
    error DuplicateSigner(address signer);
    /// @notice A result signature recovers to an address that is not in its roster.
    error UnknownSigner(address signer);
    /// @notice A reshare must keep the committee key Y byte-identical.
    error CommitteeKeyChanged(bytes32 current, bytes32 proposed);
    /// @notice This node already approved the ceremony.
    error AlreadyApproved(uint64 ceremonyId, address node);
    /// @notice No committee epoch is final yet.
    error NoCommittee();
    /// @notice The epoch is not final (0, or after the current one).
    error UnknownEpoch(uint64 epoch);
    /// @notice Ceremony message kinds are 1 DEALING, 2 VERDICT, 3 ANSWER, 4 RESULT.
    error InvalidMessageKind(uint8 kind);
    /// @notice Only a node of the proposed roster (or, for a reshare, of the current one)
    /// may post ceremony messages.
    error NotCeremonyMember(address sender);
    /// @notice The qualified set has a bit beyond its dealer roster, or fewer dealers
    /// than the threshold that must qualify (DKG: t_new; reshare: t_old).
    error InvalidQualifiedSet(uint256 qualified);
    /// @notice An anchor must cover at least one release and have a non-zero root.
    error EmptyAnchor();

    // ---------------------------------------------------------------- events

    /// @notice A listing was created.
    event ListingCreated(
        uint256 indexed listingId,
        address indexed owner,
        address indexed asset,
        uint96 pricePerPeriod,
        uint32 periodSeconds,
        bool autoApprove,
        bytes32 termsHash,
        string metadataURI
    );
    /// @notice A listing's price, approval mode or openness changed.
    event ListingUpdated(uint256 indexed listingId, uint96 pricePerPeriod, bool autoApprove, bool open);
    /// @notice A new encrypted version was published; `cid` is the binary CID of the
    /// ciphertext, `capsule` wraps its data key for the committee.
    event VersionPublished(uint256 indexed listingId, uint32 indexed version, bytes cid, bytes capsule);
    /// @notice A buyer paid for a debit. On an auto-approve listing it is Active at once
    /// (`autoApproved`, with its `start` and `end`); otherwise it awaits the owner's consent.
    event DebitRequested(
        uint256 indexed debitId,
        uint256 indexed listingId,
        address indexed buyer,
        uint32 periods,
        uint96 amount,
        bytes32 buyerKey,
        bytes32 purposeHash,
        bool autoApproved,
        uint64 start,
        uint64 end,
        uint64 consentDeadline
    );
    /// @notice The owner consented; the debit is Active from `start` to `end`.
    event DebitConsented(uint256 indexed debitId, uint256 indexed listingId, uint64 start, uint64 end);
    /// @notice The owner rejected a requested debit; `refund` was credited to the buyer.
    event DebitRejected(uint256 indexed debitId, uint256 indexed listingId, uint96 refund);
    /// @notice The buyer cancelled a requested debit; `refund` was credited to the buyer.
    event DebitCancelled(uint256 indexed debitId, uint256 indexed listingId, uint96 refund);
    /// @notice The owner stopped an active debit; accrued `earned` went to the owner and
    /// the unaccrued `refund` to the buyer.
    event DebitRevoked(uint256 indexed debitId, uint256 indexed listingId, uint96 earned, uint96 refund);
    /// @notice `amount` accrued on a debit was credited to the listing owner.
    event EarningsClaimed(uint256 indexed debitId, address indexed owner, uint96 amount);
    /// @notice A credited balance in `asset` (address(0): ether) was paid out.
    event Withdrawn(address indexed account, address indexed asset, uint256 amount);
    /// @notice Committee node `node` anchored the Merkle root of its next `count` releases.
    event ReleasesAnchored(address indexed node, uint64 indexed seq, bytes32 root, uint32 count);
    /// @notice The governor proposed the roster of `epoch` (ceremony `ceremonyId`). Node i
    /// is at array position i - 1; `encryptionKeys` are their X25519 keys for sealed shares.
    event CommitteeProposed(
        uint64 indexed ceremonyId,
        uint64 indexed epoch,
        uint8 threshold,
        address[] nodes,
        bytes32[] encryptionKeys,
        uint32 phaseSeconds,
        uint64 notBefore,
        uint64 deadline
    );
    /// @notice A current node approved a reshare ceremony; `approvals` counted so far.
    event CommitteeApproved(uint64 indexed ceremonyId, address indexed node, uint8 approvals);
    /// @notice The ceremony takes messages from `openedAt` (a block timestamp) on.
    event CeremonyOpened(uint64 indexed ceremonyId, uint64 openedAt);
    /// @notice A ceremony message (1 DEALING, 2 VERDICT, 3 ANSWER, 4 RESULT) broadcast by
    /// `sender`; the contract does not parse `payload`.
    event CeremonyMessage(uint64 indexed ceremonyId, address indexed sender, uint8 kind, bytes payload);
    /// @notice `epoch` is now the current committee: key Y, share keys Y_i (node i at
    /// position i - 1), the qualified dealers' bitmask and the transcript hash.
    event CommitteeFinalized(
        uint64 indexed epoch,
        uint64 indexed ceremonyId,
        bytes32 committeeKey,
        bytes32[] shareKeys,
        uint256 qualified,
        bytes32 transcriptHash
    );
    /// @notice The governor changed.
    event GovernorChanged(address indexed previous, address indexed next);

    // ---------------------------------------------------------------- listings

    /// @notice Create a listing owned by the caller.
    /// @param asset What buyers pay in, fixed for the listing's life: address(0) for
    /// native ether, else an ERC-20 token contract.
    /// @param pricePerPeriod Price of one period of access, in the asset's smallest unit.
    /// @param periodSeconds Length of one period.
    /// @param autoApprove Whether a paid request is Active at once, without the owner's consent.
    /// @param termsHash Hash of the terms of use a buyer accepts.
    /// @param metadataURI Where the listing's public description lives.
    /// @return listingId The new listing's id (ids start at 1).
    function createListing(
        address asset,
        uint96 pricePerPeriod,
        uint32 periodSeconds,
        bool autoApprove,
        bytes32 termsHash,
        string calldata metadataURI
    ) external returns (uint256 listingId);

    /// @notice Change a listing's price, approval mode and openness (owner only). Existing
    /// debits keep the terms they were paid under.
    function updateListing(uint256 listingId, uint96 pricePerPeriod, bool autoApprove, bool open) external;

    /// @notice Publish the next encrypted version of a listing (owner only).
    /// @param cid Binary CIDv1 of the ciphertext.
    /// @param capsule The data key wrapped for the committee (168 bytes).
    /// @return version The new version's number (versions start at 1).
    function publishVersion(uint256 listingId, bytes calldata cid, bytes calldata capsule)
        external
        returns (uint32 version);

    // ---------------------------------------------------------------- debits

    /// @notice Pay for `periods` periods of access to a listing: `msg.value` on an ether
    /// listing; on a token listing the exact amount is pulled with `transferFrom` (approve
    /// it first) and what arrived is checked by balance difference.
    /// @param buyerKey The buyer's X25519 public key, to which gateways seal key shares.
    /// @param purposeHash Hash of the buyer's declared purpose of use.
    /// @param consentDeadline On a consent-only listing, the time (unix seconds) from which
    /// the owner may no longer consent (0: no deadline); ignored on auto-approve listings.
    /// @return debitId The new debit's id (ids start at 1).
    function requestDebit(
        uint256 listingId,
        uint32 periods,
        bytes32 buyerKey,
        bytes32 purposeHash,
        uint64 consentDeadline
    ) external payable returns (uint256 debitId);

    /// @notice {requestDebit} on a token listing, with an EIP-2612 permit for exactly the
    /// payment, so approval and purchase are one transaction. A permit that fails (e.g.
    /// front-run: someone submitted it first) is ignored when the allowance already covers
    /// the payment.
    /// @param permitDeadline The permit's deadline; with `v`, `r`, `s` the buyer's EIP-2612
    /// permit of exactly `pricePerPeriod * periods` to this market.
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
    ) external returns (uint256 debitId);

    /// @notice Consent to a requested debit (listing owner only), before the buyer's consent
    /// deadline if one was set; access runs from now.
    function consent(uint256 debitId) external;

    /// @notice Reject a requested debit (listing owner only); the buyer is refunded.
    function reject(uint256 debitId) external;

    /// @notice Withdraw a request before the owner answers (buyer only), before or after its
    /// consent deadline; the buyer is refunded.
    function cancel(uint256 debitId) external;

    /// @notice Stop an active debit (listing owner only): accrued escrow to the owner, the
    /// rest back to the buyer.
    function revoke(uint256 debitId) external;

    /// @notice Credit the caller with what has accrued on each debit, in each debit's asset
    /// (caller must own every debit's listing).
    /// @return total The amount credited (summed over assets when debits mix them).
    function claim(uint256[] calldata debitIds) external returns (uint256 total);

    /// @notice Pay out the caller's credited balance in `asset` (address(0): ether).
    function withdraw(address asset) external;

    // ---------------------------------------------------------------- committee

    /// @notice Anchor the Merkle root of the caller's next `count` release receipts
    /// (nodes of the current or the previous committee epoch only).
    /// @return seq The anchor's sequence number for this node (starts at 1).
    function anchorReleases(bytes32 root, uint32 count) external returns (uint64 seq);

    /// @notice Propose the roster of the next epoch (governor only). Epoch 1 (a DKG) opens
    /// at once; a later epoch (a reshare) opens when t_old current nodes approved it, and
    /// not before `reshareDelay` seconds from now.
    /// @param nodes Ethereum address of node i at position i - 1.
    /// @param encryptionKeys X25519 public key of node i at position i - 1.
    /// @param threshold The new threshold t_new (1 <= t_new <= n <= 255).
    /// @param phaseSeconds How long each ceremony phase lasts at most.
    /// @param deadline Timestamp by which the result must be final, else the ceremony failed.
    /// @return ceremonyId The new ceremony's id.
    function proposeCommittee(
        address[] calldata nodes,
        bytes32[] calldata encryptionKeys,
        uint8 threshold,
        uint32 phaseSeconds,
        uint64 deadline
    ) external returns (uint64 ceremonyId);

    /// @notice Approve a pending reshare (nodes of the current epoch, once each). The
    /// approval that reaches the current threshold opens the ceremony.
    function approveCommittee(uint64 ceremonyId) external;

    /// @notice Broadcast a ceremony message (nodes of the proposed roster, and for a reshare
    /// of the current one) while the latest ceremony is open and before its deadline.
    /// @param kind 1 DEALING, 2 VERDICT, 3 ANSWER, 4 RESULT.
    /// @param payload The message; only emitted in `CeremonyMessage`, never stored.
    function postCeremonyMessage(uint64 ceremonyId, uint8 kind, bytes calldata payload) external;

    /// @notice Record the ceremony's result; its epoch becomes the current one. Anyone may
    /// submit it, with EIP-712 `CommitteeResult` signatures of at least t_new nodes of the
    /// new roster and, for a reshare, of at least t_old nodes of the current one.
    /// @param committeeKey Y (a reshare must keep the current Y).
    /// @param shareKeys Y_i of new node i at position i - 1.
    /// @param qualified Bitmask of the qualified dealers (bit i - 1 for dealer i).
    /// @param transcriptHash keccak256 of the counted ceremony messages.
    /// @param newSignatures 65-byte signatures by new-roster nodes.
    /// @param oldSignatures 65-byte signatures by current-roster nodes (empty for epoch 1).
    function finalizeCommittee(
        uint64 ceremonyId,
        bytes32 committeeKey,
        bytes32[] calldata shareKeys,
        uint256 qualified,
        bytes32 transcriptHash,
        bytes[] calldata newSignatures,
        bytes[] calldata oldSignatures
    ) external;

    /// @notice Hand the governor role to `next` (governor only).
    function setGovernor(address next) external;

    // ---------------------------------------------------------------- views

    /// @notice Whether the debit's buyer may receive the key of `version` now: the debit is
    /// Active, not expired, and the version was published at or before the debit's end.
    function isEntitled(uint256 debitId, uint32 version) external view returns (bool);

    /// @notice The current committee: key Y, threshold t, node addresses and share keys Y_i
    /// (node i is at array position i - 1). Reverts `NoCommittee` before epoch 1 is final.
    function committee()
        external
        view
        returns (bytes32 committeeKey, uint8 threshold, address[] memory nodes, bytes32[] memory shareKeys);

    /// @notice A final committee epoch, current or past (reverts `UnknownEpoch` otherwise).
    function committeeAt(uint64 epoch) external view returns (CommitteeEpoch memory);

    /// @notice A ceremony by id (reverts `UnknownCeremony` for an id never proposed).
    function ceremony(uint64 ceremonyId) external view returns (Ceremony memory);

    /// @notice The address that proposes committees.
    function governor() external view returns (address);

    /// @notice Seconds between a reshare's proposal and the earliest time it may open.
    function reshareDelay() external view returns (uint64);

    /// @notice The current committee epoch (0 until epoch 1 is final).
    function currentEpoch() external view returns (uint64);

    /// @notice The id of the latest ceremony proposed (ids start at 1).
    function latestCeremony() external view returns (uint64);

    /// @notice A listing by id (reverts on an unknown id).
    function getListing(uint256 listingId) external view returns (Listing memory);

    /// @notice A published version (reverts on an unknown listing or version).
    function getVersion(uint256 listingId, uint32 version) external view returns (Version memory);

    /// @notice A debit by id (reverts on an unknown id).
    function getDebit(uint256 debitId) external view returns (Debit memory);

    /// @notice What an Active debit has accrued to its owner and not yet been claimed.
    function claimable(uint256 debitId) external view returns (uint96);

    /// @notice An account's credited, withdrawable balance in `asset` (address(0): ether).
    function balanceOf(address account, address asset) external view returns (uint256);

    /// @notice Number of listings created so far.
    function listingCount() external view returns (uint256);

    /// @notice Number of debits requested so far.
    function debitCount() external view returns (uint256);

    /// @notice Number of anchors a committee node has made so far.
    function anchorCount(address node) external view returns (uint64);
}
