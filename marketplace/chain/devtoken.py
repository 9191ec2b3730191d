"""The test dollar (`contracts/DevStablecoin.sol`: 6 decimals, EIP-2612 permit, anyone may
mint) that the devstack and the demo deploy so token listings can be tried end to end.
Development chains only: the token is worth nothing."""

from __future__ import annotations

from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress
from eth_utils.address import to_checksum_address
from web3 import Web3

from marketplace.chain.artifacts import load_artifact
from marketplace.chain.market import _send
from marketplace.chain.reverts import RevertDecoder

#: One test dollar in base units.
TUSD = 10**6


def deploy_dev_stablecoin(w3: Web3, deployer: LocalAccount) -> ChecksumAddress:
    """Deploy a DevStablecoin; returns its address."""
    artifact = load_artifact("DevStablecoin")
    factory = w3.eth.contract(abi=list(artifact.abi), bytecode=artifact.bytecode)
    receipt = _send(w3, deployer, factory.constructor(), 0, RevertDecoder(artifact.abi), 120.0)
    address = receipt["contractAddress"]
    if address is None:  # a creation receipt always has it; a broken node may not
        raise ValueError("the deployment receipt names no contract address")
    return to_checksum_address(address)


def mint_dev_stablecoin(
    w3: Web3, token: str, sender: LocalAccount, to: str, amount: int
) -> None:
    """Mint `amount` base units of the DevStablecoin at `token` to `to`."""
    artifact = load_artifact("DevStablecoin")
    contract = w3.eth.contract(address=to_checksum_address(token), abi=list(artifact.abi))
    _send(w3, sender, contract.functions.mint(to_checksum_address(to), amount), 0,
          RevertDecoder(artifact.abi), 120.0)
