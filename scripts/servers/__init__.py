"""Launchers for the real servers that integration tests and the devstack run.

anvil (an Ethereum node), a js-ipfs daemon and a PostgreSQL server.
"""
