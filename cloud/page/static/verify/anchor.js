// Anchor receipts (§8): the local ledger receipt is verified (§8.1); an EVM receipt
// (§8.2) is checked for its form only — verifying it needs a JSON-RPC endpoint, which
// this verifier does not use, so a pinned EVM receipt is anchor_unverifiable (as the
// Python verifier without --evm-rpc).

import { keccak256 } from './keccak.js';
import { sha256 } from './sha256.js';
import { VError, b64decode, bytesEqual, fromHex, toHex, utf8 } from './util.js';
import { ed25519Verify } from './note.js';

const malformed = (m) => new VError('bad_anchor', m);
const MAX_TIME = 2 ** 32 - 1;
const MAX_INDEX = (1n << 63n) - 1n;
const MAX_UINT64 = (1n << 64n) - 1n;
const LEDGER_RE = /^[\x21-\x2a\x2c-\x7e]{1,128}$/;
const HEX64 = /^[0-9a-f]{64}$/;
const HEX_HASH = /^0x[0-9a-f]{64}$/;
const HEX_ADDRESS = /^0x[0-9a-fA-F]{40}$/;
const LOCAL_FIELDS = ['type', 'ledger', 'index', 'prev', 'time', 'checkpoint_hash', 'signature'];
const EVM_FIELDS = ['type', 'chain_id', 'contract', 'tx_hash', 'block_number', 'block_hash', 'log_index', 'checkpoint_hash', 'confirmations'];

function uint(value, field, max, min = 0n) {
  if ((typeof value !== 'number' && typeof value !== 'bigint') || BigInt(value) < min || BigInt(value) > BigInt(max)) {
    throw malformed(`${field} must be an integer in ${min}..${max}`);
  }
  return value;
}
function hex64(value, field) {
  if (typeof value !== 'string' || !HEX64.test(value)) throw malformed(`${field} must be 64 lowercase hex digits`);
  return fromHex(value);
}
function fields(obj, kind, names) {
  if (obj.type !== kind) throw malformed('wrong receipt type');
  const keys = Object.keys(obj);
  if (keys.length !== names.length || !names.every((k) => k in obj)) throw malformed('receipt fields');
}

/** Check a local receipt's form (§8.1); returns {ledger, index, prev, time, checkpointHash, signature}. */
export function parseLocalReceipt(obj) {
  fields(obj, 'local', LOCAL_FIELDS);
  const signature = b64decode(obj.signature);
  if (signature === null) throw malformed('signature must be canonical standard base64');
  if (typeof obj.ledger !== 'string' || !LEDGER_RE.test(obj.ledger)) throw malformed('ledger id must be 1 to 128 bytes of printable ASCII without space or +');
  const r = {
    ledger: obj.ledger,
    index: uint(obj.index, 'index', MAX_INDEX),
    prev: hex64(obj.prev, 'prev'),
    time: uint(obj.time, 'time', MAX_TIME),
    checkpointHash: hex64(obj.checkpoint_hash, 'checkpoint_hash'),
    signature,
  };
  const zero = r.prev.every((b) => b === 0);
  if (BigInt(r.index) === 0n && !zero) throw malformed('entry 0 has no predecessor: prev must be 64 zeros');
  if (BigInt(r.index) > 0n && zero) throw malformed('prev of an entry after the first is the hash of its predecessor, not zeros');
  if (signature.length !== 64) throw malformed('an Ed25519 signature is 64 bytes');
  return r;
}

export function isEip55(address) {
  const digits = address.slice(2);
  const nibbles = toHex(keccak256(utf8(digits.toLowerCase())));
  for (let i = 0; i < digits.length; i++) {
    const c = digits[i];
    const want = parseInt(nibbles[i], 16) >= 8 ? c.toUpperCase() : c.toLowerCase();
    if (c !== want) return false;
  }
  return true;
}

/** An EVM contract address (§8.2): lowercase result; mixed case needs a valid EIP-55 checksum. */
export function evmAddress(value) {
  if (typeof value !== 'string' || !HEX_ADDRESS.test(value)) throw malformed('contract must be 0x and 40 hex digits');
  const digits = value.slice(2);
  if (digits !== digits.toLowerCase() && digits !== digits.toUpperCase() && !isEip55(value)) {
    throw malformed('contract address has a bad EIP-55 checksum');
  }
  return value.toLowerCase();
}

/** Check an EVM receipt's form (§8.2). */
export function parseEvmReceipt(obj) {
  fields(obj, 'evm', EVM_FIELDS);
  const r = {
    chainId: uint(obj.chain_id, 'chain_id', MAX_UINT64, 1n),
    contract: evmAddress(obj.contract),
  };
  for (const f of ['tx_hash', 'block_hash']) {
    if (typeof obj[f] !== 'string' || !HEX_HASH.test(obj[f])) throw malformed(`${f} must be 0x and 64 lowercase hex digits`);
  }
  uint(obj.block_number, 'block_number', MAX_UINT64);
  uint(obj.log_index, 'log_index', MAX_UINT64);
  hex64(obj.checkpoint_hash, 'checkpoint_hash');
  uint(obj.confirmations, 'confirmations', MAX_UINT64);
  return r;
}

/** The UTF-8 entry text of §8.1, what the ledger key signs. */
export function entryBytes(r) {
  return utf8(`coldtrace-ledger/v1\n${r.ledger}\n${r.index}\n${toHex(r.prev)}\n${r.time}\n${toHex(r.checkpointHash)}\n`);
}
export const entryHash = (r) => sha256(entryBytes(r));

/** A local receipt anchors the checkpoint whose body hashes to `cpHash`, under `key`. */
export async function verifyLocalReceipt(r, keyPromise, cpHash) {
  if (!bytesEqual(r.checkpointHash, cpHash)) throw new VError('bad_anchor', 'receipt anchors another checkpoint', { expected: toHex(cpHash), found: toHex(r.checkpointHash) });
  if (!(await ed25519Verify(keyPromise, r.signature, entryBytes(r)))) {
    throw new VError('bad_anchor', `ledger ${r.ledger} entry ${r.index}: signature does not verify under the pinned ledger key`);
  }
}

/** Receipts of one ledger: equal indexes hold one entry, consecutive ones link (§8.1). */
export function verifyLocalChain(receipts) {
  const entries = new Map(); // index (string) -> receipt
  for (const r of receipts) {
    const k = String(r.index);
    const seen = entries.get(k);
    if (!seen) {
      entries.set(k, r);
      continue;
    }
    if (!bytesEqual(entryBytes(seen), entryBytes(r))) {
      throw new VError('bad_anchor', `ledger ${r.ledger} has two different entries at index ${r.index}`);
    }
  }
  const indexes = [...entries.keys()].map(BigInt).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  for (const i of indexes) {
    const after = entries.get(String(i + 1n));
    if (!after) continue;
    const want = entryHash(entries.get(String(i)));
    if (!bytesEqual(after.prev, want)) throw new VError('bad_anchor', `ledger ${after.ledger} entry ${i + 1n} does not link to entry ${i}`);
  }
}
