"""Launchers for the real servers that integration tests and the devstack run.

anvil (an Ethereum node) and a js-ipfs daemon.
"""
