// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

/// @title ColdTraceAnchor: checkpoints of ColdTrace logs anchored per submitting account.
/// @notice docs/protocol.md §8.2 and docs/evm.md. Each account anchors its own logs:
/// the record of (submitter, origin) is kept apart from every other account's, so a
/// stranger cannot block or overwrite a gateway's anchors. The tree size of one
/// (submitter, origin) must strictly grow: a log cannot be anchored backwards.
contract ColdTraceAnchor {
    struct Entry {
        bytes32 rootHash;
        bytes32 checkpointHash;
        uint64 blockNumber;
    }

    /// Emitted once per anchor; the signature is fixed by §8.2.
    event Anchored(bytes32 indexed originHash, uint64 treeSize, bytes32 rootHash, bytes32 checkpointHash);

    /// The tree size is not larger than the last one this account anchored for the origin.
    error NotGrowing(bytes32 originHash, uint64 latestSize, uint64 treeSize);
    /// A tree size of zero, or an empty root or checkpoint hash.
    error EmptyCheckpoint();

    mapping(address => mapping(bytes32 => uint64)) private _latest;
    mapping(address => mapping(bytes32 => mapping(uint64 => Entry))) private _entries;

    /// Anchor checkpoint (origin, treeSize, rootHash) whose body hashes (SHA-256) to
    /// checkpointHash, for msg.sender.
    function anchor(string calldata origin, uint64 treeSize, bytes32 rootHash, bytes32 checkpointHash)
        external
    {
        if (treeSize == 0 || rootHash == bytes32(0) || checkpointHash == bytes32(0)) {
            revert EmptyCheckpoint();
        }
        bytes32 originHash = keccak256(bytes(origin));
        uint64 latestSize = _latest[msg.sender][originHash];
        if (treeSize <= latestSize) {
            revert NotGrowing(originHash, latestSize, treeSize);
        }
        _latest[msg.sender][originHash] = treeSize;
        _entries[msg.sender][originHash][treeSize] = Entry(rootHash, checkpointHash, uint64(block.number));
        emit Anchored(originHash, treeSize, rootHash, checkpointHash);
    }

    /// The anchor of (submitter, origin) at treeSize; zeros when there is none.
    function anchorOf(address submitter, string calldata origin, uint64 treeSize)
        external
        view
        returns (bytes32 rootHash, bytes32 checkpointHash, uint64 blockNumber)
    {
        Entry storage e = _entries[submitter][keccak256(bytes(origin))][treeSize];
        return (e.rootHash, e.checkpointHash, e.blockNumber);
    }

    /// The largest tree size (submitter, origin) anchored, and its anchor; zeros when none.
    function latest(address submitter, string calldata origin)
        external
        view
        returns (uint64 treeSize, bytes32 rootHash, bytes32 checkpointHash, uint64 blockNumber)
    {
        bytes32 originHash = keccak256(bytes(origin));
        treeSize = _latest[submitter][originHash];
        Entry storage e = _entries[submitter][originHash][treeSize];
        return (treeSize, e.rootHash, e.checkpointHash, e.blockNumber);
    }
}
