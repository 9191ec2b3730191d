"""Check 5: every committee epoch is what its ceremony produced.

The chain is the ceremonies' broadcast channel, so an auditor holds the whole transcript:
each finalized epoch's ceremony is replayed from its `CeremonyMessage` logs as of the block
that finalized it (the same `keyrelease.ceremony.evaluate` the nodes ran), and Y, every Y_i,
the qualified set and the transcript hash must equal what `finalizeCommittee` recorded. A
mismatch means the signers (t_new new and, for a reshare, t_old old nodes) finalized a
result the transcript does not support. An epoch dealt by one machine (the development
deploy, recognised by its transcript hash) has no transcript: a warning, since whoever
dealt it knew the committee secret.
"""

from __future__ import annotations

from marketplace.audit.chain_view import ChainView
from marketplace.audit.epochs import EpochHistory, FinalizedEpoch
from marketplace.audit.report import CheckRun
from marketplace.chain.market import TRUSTED_DEALER_TRANSCRIPT
from marketplace.keyrelease.errors import KeyReleaseError

CEREMONIES = "committee ceremonies"


def check_ceremonies(epochs: EpochHistory, chain: ChainView) -> CheckRun:
    """One item per finalized epoch (plus the epoch sequence itself)."""
    run = CheckRun(CEREMONIES)
    current = chain.current_epoch()
    numbers = [item.epoch for item in epochs.epochs]
    if numbers != list(range(1, current + 1)):
        run.violation("ceremony_mismatch", f"CommitteeFinalized logs name epochs {numbers}; "
                      f"the contract's current epoch is {current}", epoch=current)
        run.count(False)
    previous: FinalizedEpoch | None = None
    for item in epochs.epochs:
        findings = _recorded_findings(item, previous)
        if item.record.transcript_hash == TRUSTED_DEALER_TRANSCRIPT:
            run.warning("trusted_dealer", f"epoch {item.epoch}: committee dealt by a trusted "
                        "dealer (development): one machine knew the committee secret",
                        epoch=item.epoch)
        else:
            findings += _replay_findings(item, chain)
        for detail in findings:
            run.violation("ceremony_mismatch", f"epoch {item.epoch} (ceremony "
                          f"{item.record.ceremony_id}): {detail}", epoch=item.epoch,
                          ceremony=item.record.ceremony_id)
        run.count(not findings)
        previous = item
    return run


def _recorded_findings(item: FinalizedEpoch, previous: FinalizedEpoch | None) -> list[str]:
    """The `CommitteeFinalized` log and `committeeAt` agree; a reshare kept Y."""
    record, event = item.record, item.event
    findings = []
    if event is not None:
        logged = (event.committee_key, event.share_keys, event.qualified, event.transcript_hash,
                  event.ceremony_id, event.block_number)
        viewed = (record.committee_key, record.share_keys, record.qualified,
                  record.transcript_hash, record.ceremony_id, record.start_block)
        if logged != viewed:
            findings.append("the CommitteeFinalized log and committeeAt disagree")
    if previous is not None and previous.record.committee_key != record.committee_key:
        findings.append(f"the committee key changed from epoch {previous.epoch}")
    return findings


def _replay_findings(item: FinalizedEpoch, chain: ChainView) -> list[str]:
    record = item.record
    try:
        view = chain.ceremony_view(item)
    except KeyReleaseError as e:  # parameters the ceremony logic refuses
        return [f"the ceremony cannot be replayed: {e}"]
    result = view.result
    if result is None:
        failure = view.failure.value if view.failure else "none"
        return [f"its messages give no result at the finalizing block (phase "
                f"{view.phase.value}, failure {failure})"]
    findings = []
    if result.committee_key != record.committee_key:
        findings.append("Y differs from the transcript's")
    if len(result.share_keys) != len(record.share_keys):
        findings.append(f"{len(record.share_keys)} share keys recorded, the transcript gives "
                        f"{len(result.share_keys)}")
    else:
        pairs = zip(result.share_keys, record.share_keys, strict=True)
        wrong = [i for i, (ours, theirs) in enumerate(pairs, start=1) if ours != theirs]
        if wrong:
            findings.append(f"share keys Y_{', Y_'.join(map(str, wrong))} differ from the "
                            "transcript's")
    if result.qualified != record.qualified:
        findings.append(f"qualified set {record.qualified:#x} recorded, the transcript gives "
                        f"{result.qualified:#x}")
    if result.transcript_hash != record.transcript_hash:
        findings.append("the transcript hash differs from the logged messages'")
    return findings
