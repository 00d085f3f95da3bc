// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title AuditAnchor: DataMgmt Node's on-chain audit trail (docs/ANCHORING.md).
/// @notice A node anchors a batch of audit events by sending the batch's Merkle root and its
/// number of leaves. The contract stores nothing: the log is the record, so an anchor costs
/// the transaction base, its calldata and one LOG3, whatever the batch size. Anyone may
/// anchor; a verifier trusts an anchor only if the log's `sender` is the Ethereum address
/// that the origin node signed a binding of (DESIGN.md decision 2).
contract AuditAnchor {
    /// @notice One anchored batch. `sender` is msg.sender (the anchoring node's account),
    /// `root` the Merkle root of the batch, `count` its number of leaves (which a Merkle path
    /// alone does not prove), `blockTime` the timestamp of the including block, so that a
    /// receipt alone carries the time the events existed by.
    event Anchored(address indexed sender, bytes32 indexed root, uint64 count, uint256 blockTime);

    /// @notice Anchor a Merkle root of `count` audit events. Not payable; never reverts for
    /// a well-formed call.
    function anchor(bytes32 root, uint64 count) external {
        emit Anchored(msg.sender, root, count, block.timestamp);
    }

    /// @notice Version of this contract's interface (the event and the anchor call).
    function version() external pure returns (uint256) {
        return 1;
    }
}
