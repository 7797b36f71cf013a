// RFC 9162 Merkle tree proofs (§6, §9): multi-leaf inclusion proofs and consistency
// proofs. Errors are VError('proof_mismatch').
//
// The multiproof walk follows protocol/merkle/multiproof.py: bottom-up, a level at a
// time; a node without a right sibling is carried up unchanged (RFC 9162's split).
// Positions are Numbers: a tree size above 2^53 - 1 (no real log gets there) is
// refused as proof_mismatch instead of being computed. Consistency proofs use BigInt.

import { sha256 } from './sha256.js';
import { VError, bytesEqual, toHex } from './util.js';

const LEAF = new Uint8Array([0]);
const NODE = new Uint8Array([1]);
const proofError = (m, extra) => new VError('proof_mismatch', m, extra);

export const hashLeaf = (data) => sha256(LEAF, data);
export const hashChildren = (l, r) => sha256(NODE, l, r);

function plan(treeSize, leaves) {
  const levels = [];
  const starts = [];
  let known = leaves.slice();
  let width = treeSize;
  let scale = 1; // 2^level
  while (width > 1) {
    const ops = [];
    const parents = [];
    const m = known.length;
    let taken = 0;
    let i = 0;
    while (i < m) {
      const p = known[i];
      if (p % 2 === 1) {
        starts.push((p - 1) * scale);
        ops.push(m + taken, i);
        taken++;
        i++;
      } else if (i + 1 < m && known[i + 1] === p + 1) {
        ops.push(i, i + 1);
        i += 2;
      } else if (p + 1 < width) {
        starts.push((p + 1) * scale);
        ops.push(i, m + taken);
        taken++;
        i++;
      } else {
        ops.push(i, -1);
        i++;
      }
      parents.push(Math.floor(p / 2));
    }
    levels.push([ops, taken]);
    known = parents;
    width = Math.ceil(width / 2);
    scale *= 2;
  }
  return [levels, starts];
}

/** The root a multiproof leads to (§9); throws proof_mismatch for a bad shape. */
export function rootFromMultiproof(treeSize, leaves, leafHashes, nodes) {
  if (typeof treeSize !== 'number' || leaves.some((l) => typeof l !== 'number')) {
    throw proofError('tree sizes above 2^53 - 1 are not supported by this verifier');
  }
  if (treeSize < 1) throw proofError('tree size is out of range');
  if (!leaves.length) throw proofError('a multiproof proves at least one leaf');
  let prev = -1;
  for (const leaf of leaves) {
    if (leaf <= prev) throw proofError('leaves are not strictly ascending');
    prev = leaf;
  }
  if (prev >= treeSize) throw proofError('a leaf index is not in the tree', { expected: `< ${treeSize}`, found: prev });
  if (leafHashes.length !== leaves.length) throw proofError('one leaf hash per leaf');
  const [levels, starts] = plan(treeSize, leaves);
  if (nodes.length !== starts.length) {
    throw proofError('multiproof has the wrong number of nodes', { expected: starts.length, found: nodes.length });
  }
  for (const h of nodes) if (h.length !== 32) throw proofError('a node must be a 32-byte hash');
  const order = starts.map((_, j) => j).sort((a, b) => starts[a] - starts[b]);
  const taken = new Array(starts.length);
  order.forEach((j, k) => {
    taken[j] = nodes[k];
  });
  let hashes = leafHashes;
  let s = 0;
  for (const [ops, count] of levels) {
    const pool = count ? hashes.concat(taken.slice(s, s + count)) : hashes;
    s += count;
    const next = new Array(ops.length / 2);
    for (let k = 0; k < ops.length; k += 2) {
      const a = ops[k], b = ops[k + 1];
      next[k / 2] = b >= 0 ? hashChildren(pool[a], pool[b]) : pool[a];
    }
    hashes = next;
  }
  return hashes[0];
}

export function verifyMultiproof(treeSize, leaves, leafHashes, nodes, root) {
  const got = rootFromMultiproof(treeSize, leaves, leafHashes, nodes);
  if (!bytesEqual(got, root)) {
    throw proofError(`multiproof for ${leaves.length} leaves in tree size ${treeSize} leads to another root`, {
      expected: toHex(root),
      found: toHex(got),
    });
  }
}

// --- consistency (RFC 9162 §2.1.4.2), BigInt sizes --------------------------------------

const MAX_TREE_SIZE = (1n << 63n) - 1n;
function bitLength(x) {
  return x === 0n ? 0 : x.toString(2).length;
}
function bitCount(x) {
  let n = 0;
  for (const c of x.toString(2)) if (c === '1') n++;
  return n;
}
export function consistencyProofLength(size1, size2) {
  const inner = bitLength((size1 - 1n) ^ (size2 - 1n));
  const border = bitCount((size1 - 1n) >> BigInt(inner));
  const shift = bitLength(size1 & -size1) - 1;
  const seed = size1 === 1n << BigInt(shift) ? 0 : 1;
  return seed + inner - shift + border;
}

/** Check that the tree of size1 with root1 is a prefix of size2 with root2; throws proof_mismatch. */
export function verifyConsistency(size1, size2, proof, root1, root2) {
  size1 = BigInt(size1);
  size2 = BigInt(size2);
  if (size1 < 1n || size1 > MAX_TREE_SIZE) throw proofError('first tree size is out of range');
  if (size2 < 1n || size2 > MAX_TREE_SIZE) throw proofError('second tree size is out of range');
  if (size1 > size2) throw proofError('first tree is larger than the second');
  const check = (want) => {
    if (proof.length > 64) throw proofError('proof is longer than any valid proof');
    if (proof.length !== want) throw proofError('proof has the wrong number of hashes', { expected: want, found: proof.length });
    for (const h of proof) if (h.length !== 32) throw proofError('a proof hash must be 32 bytes');
  };
  if (size1 === size2) {
    check(0);
    if (!bytesEqual(root1, root2)) throw proofError(`two roots for the same tree size ${size1}`);
    return;
  }
  check(consistencyProofLength(size1, size2));
  const path = proof.slice();
  if ((size1 & (size1 - 1n)) === 0n) path.unshift(root1);
  let fn = size1 - 1n, sn = size2 - 1n;
  while (fn & 1n) {
    fn >>= 1n;
    sn >>= 1n;
  }
  let fr = path[0], sr = path[0];
  for (const c of path.slice(1)) {
    if (sn === 0n) throw proofError('consistency proof is too long');
    if (fn & 1n || fn === sn) {
      fr = hashChildren(c, fr);
      sr = hashChildren(c, sr);
      while (!(fn & 1n) && fn) {
        fn >>= 1n;
        sn >>= 1n;
      }
    } else {
      sr = hashChildren(sr, c);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  if (sn !== 0n) throw proofError('consistency proof is too short');
  if (!bytesEqual(fr, root1)) throw proofError(`consistency proof ${size1} -> ${size2} does not lead to the first root`);
  if (!bytesEqual(sr, root2)) throw proofError(`consistency proof ${size1} -> ${size2} does not lead to the second root`);
}
