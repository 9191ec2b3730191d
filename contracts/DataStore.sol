// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title DataStore
/// @notice Write-once byte blobs kept as the code of a tiny data contract (the SSTORE2
/// pattern), read back with EXTCODECOPY.
/// @dev Why: a committee roster or result is written once per epoch and read rarely. As
/// code it costs 200 gas per byte (plus 32,000 for the CREATE); in storage it would cost
/// 22,100 per 32-byte word, ~690 per byte. A 16-node result (Y, qualified, transcript hash
/// and 16 share keys: 608 bytes) is ~155k gas as code against ~420k as storage, which is
/// what keeps `finalizeCommittee` at n = 16 under its 400k budget.
/// The data contract's code is 0x00 (STOP) followed by the data, so calling it does
/// nothing. Its address comes from CREATE by the market, so only the market can write one.
library DataStore {
    /// @notice The data contract could not be created (out of gas, or over the code size limit).
    error DataStoreWriteFailed();

    /// @dev Creation code: PUSH1 0x0B MSIZE DUP2 CODESIZE SUB DUP1 SWAP3 MSIZE CODECOPY RETURN,
    /// i.e. return everything after these 11 bytes as the runtime code.
    bytes11 private constant _PREFIX = 0x600B5981380380925939F3;

    /// @notice Store `data`; returns the data contract's address.
    function write(bytes memory data) internal returns (address pointer) {
        bytes memory creation = abi.encodePacked(_PREFIX, hex"00", data);
        assembly ("memory-safe") {
            pointer := create(0, add(creation, 32), mload(creation))
        }
        if (pointer == address(0)) revert DataStoreWriteFailed();
    }

    /// @notice The bytes stored at `pointer` (empty for an address without code).
    function read(address pointer) internal view returns (bytes memory data) {
        uint256 size = pointer.code.length;
        if (size == 0) return data;
        unchecked {
            size -= 1;
        }
        data = new bytes(size);
        assembly ("memory-safe") {
            extcodecopy(pointer, add(data, 32), 1, size)
        }
    }
}
