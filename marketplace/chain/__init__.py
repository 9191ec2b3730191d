"""The on-chain half: the DataMarket contract's artifact, a typed client, and its events."""
