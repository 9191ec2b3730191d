// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {IDataMarket} from "IDataMarket.sol";

/// @title ReentrantReceiver (test only)
/// @notice A buyer contract whose receive hook attacks the market's `withdraw`: it re-enters
/// `withdraw` and either lets the failure bubble up (`Bubble`), swallows it and keeps the
/// payment (`Swallow`), or refuses the payment with empty revert data (`Refuse`).
contract ReentrantReceiver {
    enum Mode {
        Bubble,
        Swallow,
        Refuse
    }

    IDataMarket public immutable market;
    Mode public mode;
    uint256 public reentries;
    uint256 public reentriesSucceeded;

    constructor(IDataMarket market_) {
        market = market_;
    }

    function setMode(Mode mode_) external {
        mode = mode_;
    }

    /// @notice Open a debit as this contract (its refunds and credits are this contract's).
    function buy(uint256 listingId, uint32 periods) external payable returns (uint256) {
        return market.requestDebit{value: msg.value}(listingId, periods, keccak256("key"), bytes32(0), 0);
    }

    function cancel(uint256 debitId) external {
        market.cancel(debitId);
    }

    function withdraw() external {
        market.withdraw(address(0));
    }

    receive() external payable {
        if (msg.sender != address(market)) return;
        if (mode == Mode.Refuse) {
            // solhint-disable-next-line reason-string
            revert();
        }
        ++reentries;
        if (mode == Mode.Bubble) {
            market.withdraw(address(0));
        } else {
            try market.withdraw(address(0)) {
                ++reentriesSucceeded;
            } catch {}
        }
    }
}
