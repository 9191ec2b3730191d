"""`datadebit committee ...`: node keys, rosters, ceremonies and the committee's status
(DESIGN §9). The trusted dealer (`init --trusted-dealer`) is a development option only."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from eth_account import Account

from marketplace.app.units import UnitError
from marketplace.app.units import parse_duration as seconds_from
from marketplace.cli.config import MarketOption, RpcOption, open_market, parse_address
from marketplace.cli.wallet_commands import KeystoreOption, PassphraseFileOption, load_wallet
from marketplace.committee import (
    COMMITTEE_FILE,
    CommitteeNode,
    NodeAccountFile,
    PublicCommittee,
    create_committee,
    create_dkg_nodes,
    load_node_key,
    read_roster,
    write_committee,
    write_dkg_nodes,
)
from marketplace.errors import MarketplaceError
from marketplace.kdf import KdfStrength
from marketplace.keyrelease import NodeIndex, Point

PASSPHRASE_ENV = "DATADEBIT_NODE_PASSPHRASE"  # noqa: S105 (a variable name, not a secret)


def register(app: typer.Typer) -> None:
    """Add the `committee` command group to the root app."""
    committee_app = typer.Typer(help="Key-release committee set-up.", no_args_is_help=True)
    committee_app.command("init")(init)
    committee_app.command("keygen")(keygen)
    committee_app.command("propose")(propose)
    committee_app.command("approve")(approve)
    committee_app.command("status")(status)
    committee_app.command("export")(export)
    app.add_typer(committee_app, name="committee")


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


def parse_duration(text: str, option: str) -> int:
    """Seconds from `90`, `90s`, `15m`, `2h` or `7d` (marketplace.app.units), as a usage
    error naming `option`."""
    try:
        return seconds_from(text)
    except UnitError as e:
        raise typer.BadParameter(str(e), param_hint=option) from e


def init(
    n: Annotated[int, typer.Option("--n", min=1, max=255, help="Number of nodes.")],
    t: Annotated[int, typer.Option("--t", min=1, max=255, help="Threshold: shares needed.")],
    out: Annotated[Path, typer.Option("--out", help="Directory for the files (created).")],
    urls: Annotated[
        str | None,
        typer.Option("--urls", help="Comma-separated gateway URLs, one per node, in order."),
    ] = None,
    passphrase_file: Annotated[
        Path | None,
        typer.Option(
            "--passphrase-file",
            help=f"File holding the passphrase (else ${PASSPHRASE_ENV}, else a prompt).",
        ),
    ] = None,
    kdf: Annotated[
        KdfStrength,
        typer.Option("--kdf", help="Passphrase KDF strength; `interactive` for tests/demos."),
    ] = KdfStrength.MODERATE,
    trusted_dealer: Annotated[
        bool,
        typer.Option(
            "--trusted-dealer",
            help="DEVELOPMENT ONLY: deal the shares here (this machine sees the secret).",
        ),
    ] = False,
) -> None:
    """Node key files for a t-of-n committee and its roster.json, for `deploy --roster`:
    the gateways then generate the committee key among themselves (a DKG: no machine ever
    holds the secret). In production each operator runs `committee keygen` on its own
    machine instead (whoever holds all the node keys could read their sealed shares).
    """
    if t > n:
        raise typer.BadParameter(f"the threshold {t} exceeds the {n} nodes", param_hint="--t")
    url_list = _parse_urls(urls, n)
    passphrase = read_passphrase(passphrase_file)
    if not trusted_dealer:
        try:
            roster, files = create_dkg_nodes(n, t, passphrase, strength=kdf, urls=url_list)
            written = write_dkg_nodes(out, roster, files)
        except (MarketplaceError, OSError) as e:
            raise _fail(str(e)) from e
        typer.echo(f"{t}-of-{n} committee roster written to {out} (keys from a DKG at deploy)")
        typer.echo(f"  roster: {written[0]}")
        for i, (member, path) in enumerate(zip(roster.nodes, written[1:], strict=True), 1):
            typer.echo(f"  node {i}: {member.address}  {path}")
        return
    try:
        public, key_files = create_committee(n, t, passphrase, strength=kdf, urls=url_list)
        paths = write_committee(out, public, key_files)
    except (MarketplaceError, OSError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from e
    typer.echo(f"{t}-of-{n} committee written to {out}")
    typer.echo(f"  public committee file: {paths[0]}")
    typer.echo(f"  committee key: 0x{public.committee_key.to_bytes().hex()}")
    for node, path in zip(public.nodes, paths[1:], strict=True):
        typer.echo(f"  node {node.index}: {node.address}  {path}")


def _parse_urls(urls: str | None, n: int) -> list[str] | None:
    if urls is None:
        return None
    parts = [u.strip() for u in urls.split(",")]
    if len(parts) != n or not all(p.startswith(("http://", "https://")) for p in parts):
        raise typer.BadParameter(f"give exactly {n} http(s) URLs", param_hint="--urls")
    return parts


def read_passphrase(passphrase_file: Path | None, *, confirm: bool = True) -> str:
    """From the file (one trailing newline dropped), the environment, or a prompt
    (typed twice when `confirm`, as when new key files are sealed with it)."""
    if passphrase_file is not None:
        try:
            text = passphrase_file.read_text(encoding="utf-8")
        except OSError as e:
            raise typer.BadParameter(
                f"cannot read {passphrase_file}", param_hint="--passphrase-file"
            ) from e
        passphrase = text.removesuffix("\n").removesuffix("\r")
    else:
        passphrase = os.environ.get(PASSPHRASE_ENV) or typer.prompt(
            "Passphrase for the node key files", hide_input=True, confirmation_prompt=confirm
        )
    if not passphrase:
        raise typer.BadParameter("the passphrase must not be empty")
    return passphrase


def keygen(
    out: Annotated[Path, typer.Option("--out", help="Node key file to create (mode 0600).")],
    url: Annotated[str | None, typer.Option("--url", help="This gateway's public URL.")] = None,
    passphrase_file: Annotated[Path | None, typer.Option("--passphrase-file")] = None,
    kdf: Annotated[KdfStrength, typer.Option("--kdf")] = KdfStrength.MODERATE,
) -> None:
    """A new node key (an operator runs this on the node's own machine); prints the
    roster entry to send the governor."""
    if url is not None and not url.startswith(("http://", "https://")):
        raise typer.BadParameter("give an http(s) URL", param_hint="--url")
    passphrase = read_passphrase(passphrase_file)
    try:
        node_file = NodeAccountFile.create(Account.create(), passphrase, kdf)
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(node_file.to_json(), handle, indent=2)
    except FileExistsError as e:
        raise _fail(f"refusing to overwrite {out}") from e
    except (MarketplaceError, OSError) as e:
        raise _fail(str(e)) from e
    entry = {"address": node_file.address,
             "encryptionKey": "0x" + node_file.encryption_key.hex(), "url": url}
    typer.echo(json.dumps(entry))


def propose(
    roster_file: Annotated[Path, typer.Option("--roster", help="roster.json of the new committee")],
    deadline: Annotated[str, typer.Option(help="how long the ceremony may take")] = "1h",
    phase: Annotated[str, typer.Option(help="how long each ceremony phase waits")] = "60s",
    rpc: RpcOption = None,
    market: MarketOption = None,
    keystore: KeystoreOption = None,
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """Propose the next committee (the governor's wallet). A reshare starts once enough
    current nodes approved it and the market's reshare delay passed; it keeps the
    committee key, so every published capsule stays openable."""
    from marketplace.chain.market import chain_time  # noqa: PLC0415
    from marketplace.chain.types import Roster  # noqa: PLC0415

    seconds = parse_duration(deadline, "--deadline")
    phase_seconds = parse_duration(phase, "--phase")
    try:
        roster = read_roster(roster_file)
        client = open_market(rpc, market)
        wallet = load_wallet(keystore, passphrase_file)
        sent = client.propose_committee(
            wallet,
            Roster(tuple(n.address for n in roster.nodes),
                   tuple(n.encryption_key for n in roster.nodes), roster.threshold),
            phase_seconds=phase_seconds,
            deadline=chain_time(client.w3) + seconds,
        )
    except MarketplaceError as e:
        raise _fail(str(e)) from e
    typer.echo(f"proposed ceremony {sent.value}: {roster.threshold}-of-{len(roster.nodes)}")


def approve(
    ceremony: Annotated[int, typer.Argument(help="the ceremony id to approve")],
    node_key: Annotated[Path, typer.Option("--node-key", help="this node's key file")],
    rpc: RpcOption = None,
    market: MarketOption = None,
    passphrase_file: Annotated[Path | None, typer.Option("--passphrase-file")] = None,
) -> None:
    """Approve a proposed roster as a node of the current committee (a reshare needs the
    current threshold of approvals: the governor alone cannot move the secret)."""
    try:
        client = open_market(rpc, market)
        key = load_node_key(node_key, read_passphrase(passphrase_file, confirm=False))
        client.approve_committee(key.account, ceremony)
    except MarketplaceError as e:
        raise _fail(str(e)) from e
    typer.echo(f"approved ceremony {ceremony} as {key.address}")


def status(
    rpc: RpcOption = None,
    market: MarketOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable")] = False,
) -> None:
    """The current epoch and roster, and the latest ceremony: its phase and who has not
    answered yet."""
    from marketplace.ceremony_chain import committee_status  # noqa: PLC0415

    try:
        report = committee_status(open_market(rpc, market))
    except MarketplaceError as e:
        raise _fail(str(e)) from e
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    typer.echo(_render_status(report))


def _render_status(report: dict[str, Any]) -> str:
    lines = [f"committee epoch {report['epoch']}"]
    current = report.get("committee")
    if current:
        lines.append(f"  {current['threshold']}-of-{len(current['nodes'])}, committee key "
                     f"{current['committeeKey']}")
        lines += [f"  node {i}: {n}" for i, n in enumerate(current["nodes"], 1)]
    ceremony = report.get("ceremony")
    if ceremony:
        lines.append(
            f"ceremony {ceremony['id']} for epoch {ceremony['epoch']}: {ceremony['status']}, "
            f"phase {ceremony['phase']}"
        )
        if ceremony.get("approvals") is not None:
            lines.append(f"  approvals {ceremony['approvals']}")
        if ceremony.get("waitingFor"):
            lines.append("  waiting for: " + ", ".join(ceremony["waitingFor"]))
        if ceremony.get("failure"):
            lines.append(f"  cannot complete: {ceremony['failure']}")
    return "\n".join(lines)


def export(
    roster_files: Annotated[
        list[Path], typer.Option("--roster", help="roster.json file(s) with the node URLs")
    ],
    out: Annotated[Path, typer.Option("--out", help="committee.json to write")] = Path(
        COMMITTEE_FILE
    ),
    rpc: RpcOption = None,
    market: MarketOption = None,
) -> None:
    """Write the current epoch's public committee file (keys from the chain, URLs from the
    rosters) for buyers and auditors."""
    try:
        client = open_market(rpc, market)
        deployed = client.committee()
        urls: dict[str, str | None] = {}
        for path in roster_files:
            for node in read_roster(path).nodes:
                urls[node.address.lower()] = node.url
        public = PublicCommittee(
            threshold=deployed.threshold,
            committee_key=Point.from_bytes(deployed.committee_key, "committee key"),
            nodes=tuple(
                CommitteeNode(NodeIndex(i), parse_address(a, "node"),
                              Point.from_bytes(k, f"share key {i}"), urls.get(a.lower()))
                for i, (a, k) in enumerate(zip(deployed.nodes, deployed.share_keys,
                                               strict=True), 1)
            ),
        )
        out.write_text(json.dumps(public.to_json(), indent=2) + "\n", encoding="utf-8")
    except (MarketplaceError, OSError) as e:
        raise _fail(str(e)) from e
    typer.echo(f"committee of epoch {client.current_epoch()} written to {out}")
