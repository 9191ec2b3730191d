"""Launchers for the real servers that integration tests and the devstack run: anvil, a js-ipfs daemon."""
