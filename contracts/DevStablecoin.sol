// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Permit.sol";

/// @title DevStablecoin: a test dollar for the devstack and the demo
/// @notice An OpenZeppelin ERC-20 with EIP-2612 permit and 6 decimals, like USDC, so token
///         listings can be tried end to end on a development chain. Anyone may mint:
///         it is worth nothing and must never be deployed where value is at stake.
contract DevStablecoin is ERC20, ERC20Permit {
    constructor() ERC20("Test USD", "TUSD") ERC20Permit("Test USD") {}

    /// @notice 6 decimals, as USDC and USDT.
    function decimals() public pure override returns (uint8) {
        return 6;
    }

    /// @notice Mints `amount` base units to `to` (development only: unrestricted).
    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }
}
