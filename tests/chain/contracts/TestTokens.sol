// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Permit.sol";

import {IDataMarket} from "IDataMarket.sol";

/// @title PermitToken (test only)
/// @notice A standard OpenZeppelin ERC-20 with EIP-2612 permit and 6 decimals (a stablecoin).
contract PermitToken is ERC20, ERC20Permit {
    constructor() ERC20("Test Dollar", "TUSD") ERC20Permit("Test Dollar") {}

    function decimals() public pure override returns (uint8) {
        return 6;
    }

    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }
}

/// @title FeeToken (test only)
/// @notice Takes a 1% fee on every transfer (burnt): the receiver gets less than was sent.
contract FeeToken is ERC20 {
    constructor() ERC20("Fee Token", "FEE") {}

    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    function _update(address from, address to, uint256 value) internal override {
        if (from == address(0) || to == address(0)) {
            super._update(from, to, value);
            return;
        }
        uint256 fee = value / 100;
        super._update(from, address(0), fee);
        super._update(from, to, value - fee);
    }
}

/// @title NoReturnToken (test only)
/// @notice USDT-style: `transfer`, `transferFrom` and `approve` return nothing (and revert
/// on failure), which a plain `IERC20` call would refuse to decode.
contract NoReturnToken {
    mapping(address => uint256) public balanceOf;
    mapping(address => mapping(address => uint256)) public allowance;
    uint256 public totalSupply;

    function mint(address to, uint256 amount) external {
        balanceOf[to] += amount;
        totalSupply += amount;
    }

    function approve(address spender, uint256 amount) external {
        allowance[msg.sender][spender] = amount;
    }

    function transfer(address to, uint256 amount) external {
        _move(msg.sender, to, amount);
    }

    function transferFrom(address from, address to, uint256 amount) external {
        uint256 allowed = allowance[from][msg.sender];
        require(allowed >= amount, "allowance");
        allowance[from][msg.sender] = allowed - amount;
        _move(from, to, amount);
    }

    function _move(address from, address to, uint256 amount) private {
        require(balanceOf[from] >= amount, "balance");
        balanceOf[from] -= amount;
        balanceOf[to] += amount;
    }
}

/// @title FalseToken (test only)
/// @notice Returns false instead of reverting when a transfer cannot be made (SafeERC20
/// must turn that into a revert, never a silent non-payment).
contract FalseToken {
    mapping(address => uint256) public balanceOf;
    mapping(address => mapping(address => uint256)) public allowance;

    function approve(address spender, uint256 amount) external returns (bool) {
        allowance[msg.sender][spender] = amount;
        return true;
    }

    function transfer(address, uint256) external pure returns (bool) {
        return false;
    }

    function transferFrom(address, address, uint256) external pure returns (bool) {
        return false;
    }
}

/// @title ReentrantToken (test only)
/// @notice A token that is also a buyer: when the market pays it out, its transfer hook
/// re-enters `withdraw` and lets the failure bubble up (`bubble`) or swallows it.
contract ReentrantToken is ERC20 {
    IDataMarket public immutable market;
    bool public bubble;
    uint256 public reentries;
    uint256 public reentriesSucceeded;

    constructor(IDataMarket market_) ERC20("Reentrant", "RE") {
        market = market_;
    }

    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    function setBubble(bool bubble_) external {
        bubble = bubble_;
    }

    /// @notice Open a debit as this contract, paying in this token.
    function buy(uint256 listingId, uint32 periods, uint256 amount) external returns (uint256) {
        _approve(address(this), address(market), amount);
        return market.requestDebit(listingId, periods, keccak256("key"), bytes32(0), 0);
    }

    function cancel(uint256 debitId) external {
        market.cancel(debitId);
    }

    function withdraw() external {
        market.withdraw(address(this));
    }

    function _update(address from, address to, uint256 value) internal override {
        super._update(from, to, value);
        if (from != address(market) || to != address(this)) return;
        ++reentries;
        if (bubble) {
            market.withdraw(address(this));
        } else {
            try market.withdraw(address(this)) {
                ++reentriesSucceeded;
            } catch {}
        }
    }
}
