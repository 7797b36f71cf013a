// C2SP signed notes with Ed25519 keys, checkpoints and witness cosignatures (§7, §7.1),
// as protocol/note.py and protocol/checkpoint.py. Ed25519 through WebCrypto.
//
// Codes: a malformed note or checkpoint, a failing signature of a pinned log key or a
// pinned witness: bad_checkpoint; no good signature of a pinned key named as the
// origin: unknown_log_key; no log key pinned at all: malformed_trust (as Python's
// NoteKeyError).

import { sha256 } from './sha256.js';
import { VError, b64decode, b64encode, codePoints, concat, utf8 } from './util.js';

const badNote = (m, extra) => new VError('bad_checkpoint', m, extra);
export const ALG_ED25519 = 0x01;
export const ALG_COSIGNATURE_V1 = 0x04;
const MAX_NOTE_BYTES = 16 * 1024;
const MAX_SIGNATURES = 100;
const DASH = '\u2014 ';
const HEX8 = /^[0-9a-f]{8}$/;
const NOTE_CONTROL = /[\x00-\x09\x0b-\x1f]/;
const ORIGIN_RE = /^[\x21-\x2a\x2c-\x7e]{1,128}$/;
const DECIMAL = /^(0|[1-9][0-9]{0,19})$/;
// Python's str.isspace(): the characters a key name may not hold
const PY_SPACE = /[\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]/;
const MAX_TREE_SIZE = (1n << 64n) - 1n;
const MAX_COSIGNATURE_TIME = (1n << 63n) - 1n;
const subtle = globalThis.crypto.subtle;

export function isValidKeyName(name) {
  if (!name || name.includes('+')) return false;
  return !PY_SPACE.test(name) && !/[\x00-\x1f\x7f]/.test(name);
}

/** key id: SHA-256(name ‖ 0x0A ‖ typed key)[0:4], as an unsigned 32-bit Number. */
export function keyId(name, typedKey) {
  const d = sha256(utf8(name), new Uint8Array([0x0a]), typedKey);
  return ((d[0] << 24) >>> 0) + ((d[1] << 16) | (d[2] << 8) | d[3]);
}

const hex8 = (id) => id.toString(16).padStart(8, '0');

/**
 * Parse a vkey `<name>+<8 hex>+<base64(alg ‖ key)>` (split at the first two '+'); throws
 * Error(message) (the trust parser turns it into malformed_trust). Returns
 * {name, keyId, raw (32 bytes), typed, vkey, cryptoKey: Promise<CryptoKey>}.
 */
export function parseVkey(vkey, alg) {
  if (typeof vkey !== 'string') throw new Error('a vkey is a string');
  const a = vkey.indexOf('+');
  const b = a < 0 ? -1 : vkey.indexOf('+', a + 1);
  if (a < 0 || b < 0) throw new Error('vkey is not <name>+<key id>+<key>');
  const name = vkey.slice(0, a), hexId = vkey.slice(a + 1, b), encoded = vkey.slice(b + 1);
  if (!isValidKeyName(name)) throw new Error('invalid key name');
  if (!HEX8.test(hexId)) throw new Error('key id is not 8 lowercase hex digits');
  const typed = b64decode(encoded);
  if (!typed || !typed.length) throw new Error('key is not canonical standard base64');
  if (typed[0] !== alg) throw new Error('unsupported signature type');
  if (typed.length !== 33) throw new Error('an Ed25519 key is 32 bytes');
  const id = keyId(name, typed);
  if (hex8(id) !== hexId) throw new Error('key id does not match name and key');
  const raw = typed.slice(1);
  return { name, keyId: id, raw, typed, vkey: `${name}+${hexId}+${b64encode(typed)}`, alg, cryptoKey: importEd25519(raw) };
}

export function importEd25519(raw) {
  const p = subtle.importKey('raw', raw, { name: 'Ed25519' }, false, ['verify']);
  p.catch(() => {}); // reported where awaited
  return p;
}

export async function ed25519Verify(keyPromise, signature, message) {
  let key;
  try {
    key = await keyPromise;
  } catch {
    return false;
  }
  try {
    return await subtle.verify({ name: 'Ed25519' }, key, signature, message);
  } catch {
    return false;
  }
}

/** Split a signed note into body and signature lines, checking only its form. */
export function parseNote(text) {
  const chars = codePoints(text);
  if (chars > MAX_NOTE_BYTES) throw badNote('note too large', { expected: `<= ${MAX_NOTE_BYTES} bytes`, found: `${chars} characters` });
  const raw = utf8(text);
  const control = NOTE_CONTROL.exec(text);
  if (control) {
    throw badNote('note contains a control character', {
      expected: 'no character below U+0020 other than newline',
      found: `U+${control[0].charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')} at offset ${codePoints(text.slice(0, control.index))}`,
    });
  }
  if (raw.length > MAX_NOTE_BYTES) throw badNote('note too large', { expected: `<= ${MAX_NOTE_BYTES} bytes`, found: raw.length });
  const split = text.lastIndexOf('\n\n');
  if (split < 0) throw badNote('no empty line between the text and the signatures', { expected: '\\n\\n', found: 'none' });
  const body = text.slice(0, split + 1);
  const block = text.slice(split + 2);
  if (!block) throw badNote('note has no signature lines', { expected: '>= 1', found: 0 });
  if (!block.endsWith('\n')) throw badNote('last signature line does not end in a newline');
  const lines = block.slice(0, -1).split('\n');
  if (lines.length > MAX_SIGNATURES) throw badNote('too many signature lines', { expected: `<= ${MAX_SIGNATURES}`, found: lines.length });
  const signatures = [];
  const seen = new Set();
  lines.forEach((line, k) => {
    const where = `signature line ${k + 1}`;
    if (!line.startsWith(DASH)) throw badNote(`${where} does not start with an em dash (U+2014) and a space`, { expected: DASH, found: [...line].slice(0, 2).join('') });
    const rest = line.slice(DASH.length);
    const sp = rest.indexOf(' ');
    if (sp < 0) throw badNote(`${where} has no space between key name and signature`);
    const name = rest.slice(0, sp);
    const encoded = rest.slice(sp + 1);
    if (!isValidKeyName(name)) throw badNote(`${where}: invalid key name`, { found: name });
    const bytes = b64decode(encoded);
    if (bytes === null) throw badNote(`${where}: signature is not canonical standard base64`, { found: encoded });
    if (bytes.length < 5) throw badNote(`${where}: signature too short`, { expected: '>= 5 bytes (key id and signature)', found: bytes.length });
    const id = ((bytes[0] << 24) >>> 0) + ((bytes[1] << 16) | (bytes[2] << 8) | bytes[3]);
    const key = `${name}\n${id}`;
    if (seen.has(key)) {
      throw badNote(`${where}: key ${name}+${hex8(id)} signs twice`, { expected: 'one signature per (key name, key id)', found: `${name}+${hex8(id)}` });
    }
    seen.add(key);
    signatures.push({ name, keyId: id, sig: bytes.subarray(4) });
  });
  return { body, signatures };
}

/** Parse a checkpoint body (§7): origin, size, root; no extension lines. */
export function parseCheckpoint(body) {
  if (!body.endsWith('\n')) throw badNote('checkpoint body must end in a newline');
  const lines = body.slice(0, -1).split('\n');
  if (lines.length < 3) throw badNote('checkpoint body needs origin, size and root hash lines', { expected: '>= 3', found: lines.length });
  const [origin, sizeText, rootText, ...extensions] = lines;
  if (!origin || /[\x00-\x1f]/.test(origin)) throw badNote('origin line is empty or has a control character', { found: origin });
  if (!DECIMAL.test(sizeText)) throw badNote('tree size is not ASCII decimal without leading zeros', { found: sizeText });
  const size = BigInt(sizeText);
  if (size > MAX_TREE_SIZE) throw badNote('tree size too large', { expected: '< 2^64', found: sizeText });
  // Python: base64.b64decode(validate=True) accepts some non-canonical spellings first
  const root = b64decode(rootText);
  if (root === null && !looseBase64(rootText)) throw badNote('root hash is not standard base64', { found: rootText });
  const rootLen = root === null ? looseBase64(rootText) : root.length;
  if (rootLen !== 32) throw badNote('root hash must be 32 bytes', { expected: 32, found: rootLen });
  if (root === null) throw badNote('root hash is not canonical base64', { found: rootText });
  for (const line of extensions) if (!line || /[\x00-\x1f]/.test(line)) throw badNote('extension lines must be non-empty', { found: line });
  if (!ORIGIN_RE.test(origin)) throw badNote("origin must be 1 to 128 bytes of printable ASCII without space or '+' (§1)", { found: origin });
  if (extensions.length) throw badNote('version 1 checkpoints have no extension lines', { expected: 0, found: extensions.length });
  return { origin, size: size <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(size) : size, root, body };
}

/**
 * Open a cosigned checkpoint (§7, §7.1): returns {checkpoint, cosignatures} or throws
 * VError. `logs`: parsed log vkeys; `witnesses`: parsed witness vkeys.
 */
export async function openCosignedCheckpoint(text, logs, witnesses) {
  const note = parseNote(text);
  const cp = parseCheckpoint(note.body);
  if (!logs.length) throw new VError('malformed_trust', 'no verifier keys given: an empty key set verifies nothing');
  const message = utf8(note.body);
  const known = new Map(logs.map((v) => [`${v.name}\n${v.keyId}`, v]));
  const verified = [];
  for (const s of note.signatures) {
    const v = known.get(`${s.name}\n${s.keyId}`);
    if (!v) continue;
    if (s.sig.length !== 64) throw badNote(`signature by ${v.name}+${hex8(v.keyId)} has the wrong length`, { expected: 64, found: s.sig.length });
    if (!(await ed25519Verify(v.cryptoKey, s.sig, message))) throw badNote(`signature by pinned key ${v.name}+${hex8(v.keyId)} does not verify`);
    verified.push(v);
  }
  if (!verified.length) {
    throw new VError('unknown_log_key', 'no signature from a pinned key', {
      expected: [...known.values()].map((v) => `${v.name}+${hex8(v.keyId)}`).sort(),
      found: note.signatures.map((s) => `${s.name}+${hex8(s.keyId)}`),
    });
  }
  if (!verified.some((v) => v.name === cp.origin)) {
    throw new VError('unknown_log_key', 'no verified signature by a pinned key named as the origin', { expected: cp.origin, found: verified.map((v) => v.name) });
  }
  // witnesses (§7.1)
  const wknown = new Map(witnesses.map((w) => [`${w.name}\n${w.keyId}`, w]));
  const cosignatures = [];
  for (const s of note.signatures) {
    const w = wknown.get(`${s.name}\n${s.keyId}`);
    if (!w) continue;
    const who = `cosignature by pinned witness ${w.name}+${hex8(w.keyId)}`;
    if (s.sig.length !== 72) throw badNote(`${who} has the wrong length`, { expected: '72 bytes (timestamp and Ed25519 signature)', found: s.sig.length });
    let time = 0n;
    for (let i = 0; i < 8; i++) time = (time << 8n) | BigInt(s.sig[i]);
    if (time > MAX_COSIGNATURE_TIME) throw badNote(`${who}: timestamp above 2^63 - 1`, { expected: `<= ${MAX_COSIGNATURE_TIME}`, found: time });
    const msg = concat(utf8(`cosignature/v1\ntime ${time}\n`), message);
    if (!(await ed25519Verify(w.cryptoKey, s.sig.subarray(8), msg))) throw badNote(`${who} does not verify`, { found: `time ${time}` });
    cosignatures.push({ witness: w, time });
  }
  return { checkpoint: cp, cosignatures };
}

/** SHA-256 of the checkpoint body as signed (§8). */
export const checkpointHash = (cp) => sha256(utf8(cp.body));

/** Python's base64.b64decode(text, validate=True): the decoded length when it accepts
 * the text (padding bits need not be zero there), else 0. */
function looseBase64(text) {
  if (text.length % 4 || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) return 0;
  const pad = text.endsWith('==') ? 2 : text.endsWith('=') ? 1 : 0;
  return (text.length / 4) * 3 - pad;
}
