// The verification algorithm of §11 (authenticity), step by step as protocol/verify.py,
// with the same checks, subjects and failure codes; then, when the bundle verified, the
// verdict of §12 from verdict.js.
//
// Report (Report.to_json() of protocol/verify.py):
//   {verified, verdict, reasons, subject, profile, legs, excursions, totals,   (§13.1)
//    summary: {records, records_verified, devices, readings, scans, statements,
//              temp_min_centi, temp_max_centi, time_first, time_last, checkpoints,
//              anchored_checkpoints, failures},
//    failures: [{check, subject, ok: false, code, message, expected, found}],
//    passed_counts: {check: n}}      (an added member: Python keeps these counts too)

import { checkpointHash, openCosignedCheckpoint } from './note.js';
import { verifyLocalChain, verifyLocalReceipt } from './anchor.js';
import { hashLeaf, verifyConsistency, verifyMultiproof } from './merkle.js';
import { importP256, verifySign1 } from './cose.js';
import {
  ACTION_COMMISSION, KIND_BINDING, KIND_BLOCK, KIND_READING, KIND_REGISTRATION, KIND_SCAN, REGISTRY_KINDS,
  STATE_REVOKED, STATEMENT_KINDS, ZERO_PREV, blockReadings, chainHash, openRecord, statementChainKey,
} from './record.js';
import { VError, bkey, bytesEqual, compareBytes, toHex, utf8 } from './util.js';
import { judge, wrongRole } from './verdict.js';

const EVENT_CLOCK_SET = 6;
const cmpBig = (a, b) => {
  const x = BigInt(a), y = BigInt(b);
  return x < y ? -1 : x > y ? 1 : 0;
};
// str() of Python, for a failure's expected and found: lists as ['a', 'b']
const pyRepr = (x) => (typeof x === 'string' ? `'${x.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'` : String(x));
const str = (v) => (v === null || v === undefined ? null : Array.isArray(v) ? `[${v.map(pyRepr).join(', ')}]` : String(v));

export class Report {
  constructor() {
    this.failures = [];
    this.passedCounts = new Map();
    this.summary = {};
    this.verdict = null;
  }
  get verified() {
    return this.failures.length === 0 && (this.summary.records_verified || 0) > 0;
  }
  passed(check) {
    this.passedCounts.set(check, (this.passedCounts.get(check) || 0) + 1);
  }
  failed(check, subject, err) {
    if (!(err instanceof VError)) throw err;
    this.failures.push({
      check,
      subject,
      ok: false,
      code: err.code,
      message: err.message,
      expected: str(err.expected),
      found: str(err.found),
    });
  }
  verdictDocument() {
    const doc = { verified: this.verified };
    if (this.verified && this.verdict) {
      Object.assign(doc, this.verdict);
      doc.verified = this.verified;
    } else {
      Object.assign(doc, { verdict: null, reasons: [], subject: null, profile: null, legs: [], excursions: [], totals: null });
    }
    return doc;
  }
  toJSON() {
    const doc = this.verdictDocument();
    doc.summary = this.summary;
    doc.failures = this.failures;
    doc.passed_counts = Object.fromEntries([...this.passedCounts].sort(([a], [b]) => (a < b ? -1 : 1)));
    return doc;
  }
}

class Verifier {
  constructor(bundle, trust, onProgress, tag = 'unknown') {
    this.tag = tag;
    this.bundle = bundle;
    this.trust = trust;
    this.report = new Report();
    this.checkpoints = new Map(); // origin -> Map(size string -> cp)
    this.covered = new Map(); // origin -> Set(size string)
    this.progress = onProgress || (() => {});
  }
  cps(origin) {
    let m = this.checkpoints.get(origin);
    if (!m) this.checkpoints.set(origin, (m = new Map()));
    return m;
  }
  isCovered(origin, size) {
    const s = this.covered.get(origin);
    return !!s && s.has(String(size));
  }

  // 1. checkpoints (§11 step 2) -------------------------------------------------------
  async openCheckpoints() {
    const { trust, report } = this;
    for (let i = 0; i < this.bundle.checkpoints.length; i++) {
      let opened;
      try {
        opened = await openCosignedCheckpoint(this.bundle.checkpoints[i], trust.logs, trust.witnesses);
        if (opened.checkpoint.size === 0) throw new VError('bad_checkpoint', 'a checkpoint of the empty log proves nothing', { found: 0 });
      } catch (err) {
        report.failed('checkpoint.signature', `checkpoint[${i}]`, err);
        continue;
      }
      const { checkpoint: cp, cosignatures } = opened;
      const subject = `${cp.origin}@${cp.size}`;
      let message = null;
      if (trust.witnesses.length) message = `${cosignatures.length} cosignature(s) from pinned witnesses, quorum ${trust.quorum}`;
      if (cosignatures.length < trust.quorum) {
        report.failed('checkpoint.cosignatures', subject, new VError('insufficient_cosignatures', `${message}: too few witnesses cosigned the checkpoint`, {
          expected: `>= ${trust.quorum}`,
          found: cosignatures.map((c) => `${c.witness.name}+${c.witness.keyId.toString(16).padStart(8, '0')}`),
        }));
        continue;
      }
      const known = this.cps(cp.origin).get(String(cp.size));
      if (known && !bytesEqual(known.root, cp.root)) {
        report.failed('checkpoint.consistency', subject, new VError('inconsistent_checkpoints', 'two signed checkpoints of one size with different roots (a fork)', {
          expected: toHex(known.root),
          found: toHex(cp.root),
        }));
        continue;
      }
      this.cps(cp.origin).set(String(cp.size), cp);
      report.passed('checkpoint.signature');
    }
  }
  sizes(origin) {
    return [...this.cps(origin).values()].map((cp) => cp.size).sort(cmpBig);
  }

  // 2. consistency (step 3) ---------------------------------------------------------------
  checkConsistency() {
    const linked = new Map();
    const proofs = new Map();
    for (const p of this.bundle.consistency) {
      const k = `${p.log}\n${p.oldSize}\n${p.newSize}`;
      if (!proofs.has(k)) proofs.set(k, []);
      proofs.get(k).push(p);
    }
    for (const [origin, bySize] of this.checkpoints) {
      const sizes = this.sizes(origin);
      const set = new Set();
      linked.set(origin, set);
      for (let j = 0; j + 1 < sizes.length; j++) {
        const oldS = sizes[j], newS = sizes[j + 1];
        const subject = `${origin}@${oldS}->${newS}`;
        const candidates = proofs.get(`${origin}\n${oldS}\n${newS}`) || [];
        if (!candidates.length) {
          this.report.failed('checkpoint.consistency', subject, new VError('inconsistent_checkpoints', 'no consistency proof between checkpoints'));
          continue;
        }
        let last = null;
        for (const p of candidates) {
          try {
            verifyConsistency(oldS, newS, p.path, bySize.get(String(oldS)).root, bySize.get(String(newS)).root);
            last = null;
            break;
          } catch (err) {
            if (!(err instanceof VError)) throw err;
            last = err;
          }
        }
        if (last === null) {
          set.add(`${oldS}\n${newS}`);
          this.report.passed('checkpoint.consistency');
        } else {
          this.report.failed('checkpoint.consistency', subject, new VError('inconsistent_checkpoints', `consistency proof does not verify: ${last.message}`, { expected: last.expected, found: last.found }));
        }
      }
    }
    return linked;
  }

  // 3. anchors and coverage (steps 4, 5) -------------------------------------------------------
  async checkAnchors(linked) {
    const { report, trust } = this;
    const anchored = new Map();
    const localReceipts = new Map();
    for (let i = 0; i < this.bundle.anchors.length; i++) {
      const ref = this.bundle.anchors[i];
      const subject = `anchor[${i}] ${ref.log}@${ref.treeSize}`;
      const cp = this.checkpoints.has(ref.log) ? this.cps(ref.log).get(String(ref.treeSize)) : undefined;
      if (!cp) {
        report.failed('anchor', subject, new VError('bad_anchor', 'anchor refers to no verified checkpoint in the bundle'));
        continue;
      }
      try {
        const r = ref.parsed;
        if (r.type === 'local') {
          const key = trust.ledgers.get(r.ledger);
          if (!key) throw new VError('unknown_key', 'local ledger key is not pinned', { found: r.ledger });
          await verifyLocalReceipt(r, key, checkpointHash(cp));
          if (!localReceipts.has(r.ledger)) localReceipts.set(r.ledger, []);
          localReceipts.get(r.ledger).push(r);
        } else {
          if (!trust.evm.some((e) => e.chainId === BigInt(r.chainId) && e.contract === r.contract)) {
            throw new VError('unknown_key', 'EVM anchor contract is not pinned', { found: `${r.chainId}:${r.contract}` });
          }
          // EVM receipts need a JSON-RPC endpoint (§8.2); this verifier has none.
          throw new VError('anchor_unverifiable', 'EVM anchor needs an RPC endpoint (--evm-rpc)');
        }
      } catch (err) {
        report.failed('anchor', subject, err);
        continue;
      }
      if (!anchored.has(ref.log)) anchored.set(ref.log, new Set());
      anchored.get(ref.log).add(String(ref.treeSize));
      report.passed('anchor');
    }
    for (const [ledger, receipts] of localReceipts) {
      try {
        verifyLocalChain(receipts.slice().sort((a, b) => cmpBig(a.index, b.index)));
        report.passed('anchor.chain');
      } catch (err) {
        report.failed('anchor.chain', ledger, err);
      }
    }
    for (const origin of this.checkpoints.keys()) {
      const sizes = this.sizes(origin).reverse();
      const mine = anchored.get(origin) || new Set();
      const links = linked.get(origin) || new Set();
      const cov = new Set();
      this.covered.set(origin, cov);
      let covered = false;
      sizes.forEach((size, j) => {
        if (mine.has(String(size))) covered = true;
        else if (j > 0 && !links.has(`${size}\n${sizes[j - 1]}`)) covered = false;
        if (covered) {
          cov.add(String(size));
          report.passed('checkpoint.anchored');
        } else {
          report.failed('checkpoint.anchored', `${origin}@${size}`, new VError('unanchored_checkpoint', 'checkpoint is not anchored, nor consistent with an anchored one'));
        }
      });
    }
  }

  // 4. records (step 6) -------------------------------------------------------------------
  openRecords() {
    const entries = new Map();
    this.bundle.records.forEach((item, i) => {
      const where = `${item.log}\n${item.index}`;
      if (entries.has(where)) {
        this.report.failed('record.entry', `records[${i}]`, new VError('duplicate_entry', 'one (log, index) appears twice among the records', { found: `${item.log}#${item.index}` }));
        return;
      }
      let rec;
      try {
        rec = openRecord(item.raw);
      } catch (err) {
        this.report.failed('record.format', `records[${i}]`, err);
        return;
      }
      entries.set(where, { log: item.log, index: item.index, record: rec, included: null, subject: `${rec.signer}#${rec.payload.seq}` });
      this.report.passed('record.format');
    });
    return entries;
  }

  // 5. inclusion (step 7) -------------------------------------------------------------------
  checkInclusion(entries) {
    const failedListed = new Set();
    this.bundle.proofs.forEach((proof, i) => {
      const subject = `proof[${i}] ${proof.log}@${proof.treeSize}`;
      const cp = this.checkpoints.has(proof.log) ? this.cps(proof.log).get(String(proof.treeSize)) : undefined;
      if (!cp) return; // not a verified checkpoint: ignored
      const listed = proof.leaves.map((leaf) => entries.get(`${proof.log}\n${leaf}`));
      try {
        const missing = proof.leaves.findIndex((_, k) => listed[k] === undefined);
        if (missing >= 0) {
          throw new VError('proof_mismatch', 'the proof lists a leaf that is not a record of the bundle', { found: `${proof.log}#${proof.leaves[missing]}` });
        }
        verifyMultiproof(proof.treeSize, proof.leaves, listed.map((e) => hashLeaf(e.record.raw)), proof.nodes, cp.root);
      } catch (err) {
        this.report.failed('record.inclusion', subject, err);
        for (const leaf of proof.leaves) failedListed.add(`${proof.log}\n${leaf}`);
        return;
      }
      this.report.passed('record.inclusion');
      const covered = this.isCovered(proof.log, proof.treeSize);
      for (const e of listed) {
        if (e.included === null || (covered && !this.isCovered(e.log, e.included))) e.included = proof.treeSize;
      }
    });
    for (const [where, e] of entries) {
      if (e.included !== null) continue;
      if (failedListed.has(where)) {
        this.report.failed('record.inclusion', e.subject, new VError('proof_mismatch', 'the only proofs listing this record do not verify'));
      } else {
        this.report.failed('record.inclusion', e.subject, new VError('missing_proof', 'no inclusion proof to a verified checkpoint'));
      }
    }
  }

  // 6. registry records (step 8) ---------------------------------------------------------------
  async checkRegistryRecords(entries) {
    const good = new Set();
    const jobs = [];
    for (const e of entries) {
      const p = e.record.payload;
      if (!REGISTRY_KINDS.has(p.kind)) continue;
      const signer = e.record.signer;
      const key = this.trust.registries.get(signer);
      if (!key) {
        this.report.failed('registry.key', e.subject, new VError('unknown_key', 'registry key is not pinned', { found: signer }));
        continue;
      }
      jobs.push([e, verifyWith(e.record.msg, key.cryptoKey)]);
    }
    for (const [e, pending] of jobs) {
      const err = await pending;
      if (err) {
        this.report.failed('registry.signature', e.subject, err);
        continue;
      }
      const p = e.record.payload;
      const signer = e.record.signer;
      let what, auth;
      if (p.kind === KIND_REGISTRATION) [what, auth] = [`device ${p.device}`, this.trust.deviceAuthority(p.device)];
      else if (p.kind === KIND_BINDING) [what, auth] = [`place ${p.target}`, this.trust.placeAuthority(p.target)];
      else [what, auth] = [`GTIN ${p.gtin}`, this.trust.gtinAuthority(p.gtin)];
      if (auth !== signer) {
        this.report.failed('registry.scope', e.subject, new VError('out_of_scope', `registry ${signer} is not the authority for ${what}`, { expected: auth || 'no authority', found: signer }));
        continue;
      }
      this.report.passed('registry.signature');
      good.add(e);
    }
    return good;
  }

  // 7. device keys and signatures (steps 9, 10) ---------------------------------------------------
  deviceKeys(entries, registryOk) {
    const regs = new Map();
    for (const e of entries) {
      const p = e.record.payload;
      if (p.kind === KIND_REGISTRATION && registryOk.has(e)) {
        const k = `${e.log}\n${p.device}`;
        if (!regs.has(k)) regs.set(k, []);
        regs.get(k).push(e);
      }
    }
    const out = new Map();
    for (const [where, history] of regs) {
      history.sort((a, b) => cmpBig(a.index, b.index));
      const key = history[0].record.payload.key;
      const problem = history.some((e) => !bytesEqual(e.record.payload.key, key)) ? 'device registered with two different keys' : null;
      const rev = history.find((e) => e.record.payload.state === STATE_REVOKED);
      out.set(where, {
        key,
        indexes: history.map((e) => e.index),
        revoked: rev ? rev.index : null,
        problem,
        included: history.every((e) => e.included !== null),
      });
    }
    return out;
  }

  async checkSignatures(entries, keys) {
    const jobs = [];
    const unproven = new Set();
    const cache = new Map();
    for (const e of entries) {
      if (REGISTRY_KINDS.has(e.record.payload.kind)) continue;
      const signer = e.record.signer;
      const pinned = this.trust.devices.get(signer);
      if (pinned) {
        jobs.push([e, pinned.cryptoKey]);
        continue;
      }
      const source = keys.get(`${e.log}\n${signer}`);
      try {
        jobs.push([e, registeredKey(e, source, cache)]);
      } catch (err) {
        this.report.failed('record.key', e.subject, err);
        continue;
      }
      if (source && !source.included) unproven.add(e);
    }
    // in chunks: bounded memory, and progress for the page while the signatures are checked
    const results = [];
    const CHUNK = 512;
    for (let i = 0; i < jobs.length; i += CHUNK) {
      const part = jobs.slice(i, i + CHUNK).map(([e, key]) => verifyWith(e.record.msg, key));
      results.push(...(await Promise.all(part)));
      this.progress({ stage: 'signatures', fraction: 0.6 + (0.3 * Math.min(jobs.length, i + CHUNK)) / jobs.length });
    }
    const signed = new Set();
    jobs.forEach(([e], k) => {
      if (results[k]) this.report.failed('record.signature', e.subject, results[k]);
      else if (!unproven.has(e)) {
        signed.add(e);
        this.report.passed('record.signature');
      }
    });
    return signed;
  }

  // 8. chains (steps 11, 12) -----------------------------------------------------------------
  checkSignerChains(entries) {
    const bySigner = new Map();
    for (const e of entries) {
      const rec = e.record;
      if (!bySigner.has(rec.signer)) bySigner.set(rec.signer, new Map());
      const m = bySigner.get(rec.signer);
      const seen = m.get(rec.payload.seq);
      if (seen) {
        if (!bytesEqual(seen.raw, rec.raw)) this.report.failed('chain.link', e.subject, new VError('broken_chain', 'two different records under one seq (a fork)'));
        continue;
      }
      m.set(rec.payload.seq, rec);
    }
    for (const signer of [...bySigner.keys()].sort()) {
      const records = bySigner.get(signer);
      const seqs = [...records.keys()].sort((a, b) => a - b);
      let ok = true;
      const first = records.get(seqs[0]);
      if (seqs[0] === 0 && !bytesEqual(first.payload.prev, ZERO_PREV)) {
        ok = false;
        this.report.failed('chain.link', `${signer}#0`, new VError('broken_chain', 'the first record (seq 0) must carry a zero prev', { expected: toHex(ZERO_PREV), found: toHex(first.payload.prev) }));
      }
      for (let j = 0; j + 1 < seqs.length; j++) {
        const sa = seqs[j], sb = seqs[j + 1];
        const a = records.get(sa).payload, b = records.get(sb).payload;
        if (b.boot < a.boot) {
          ok = false;
          this.report.failed('chain.boot', `${signer}#${sb}`, new VError('broken_chain', 'boot counter went down', { expected: `>= ${a.boot}`, found: b.boot }));
        }
        if (sb !== sa + 1) continue;
        const want = chainHash(records.get(sa).raw);
        if (!bytesEqual(b.prev, want)) {
          ok = false;
          this.report.failed('chain.link', `${signer}#${sb}`, new VError('broken_chain', "prev does not match the previous record's hash", { expected: toHex(want), found: toHex(b.prev) }));
        }
      }
      if (ok) this.report.passed('chain');
    }
  }

  checkStatementChains(entries, registryOk) {
    const chains = new Map();
    for (const e of entries) {
      const rec = e.record;
      if (!STATEMENT_KINDS.has(rec.payload.kind) || !registryOk.has(e)) continue;
      const key = statementChainKey(rec.signer, rec.payload);
      const name = key.filter((k) => k !== null).join('/');
      const k = JSON.stringify(key);
      if (!chains.has(k)) chains.set(k, { name, statements: new Map() });
      const c = chains.get(k);
      const seen = c.statements.get(rec.payload.cseq);
      if (seen) {
        if (!bytesEqual(seen.raw, rec.raw)) this.report.failed('statement.link', e.subject, new VError('broken_chain', 'two different statements under one cseq (a fork)'));
        continue;
      }
      c.statements.set(rec.payload.cseq, rec);
    }
    for (const { name, statements } of chains.values()) {
      const cseqs = [...statements.keys()].sort((a, b) => a - b);
      let ok = true;
      for (let j = 0; j + 1 < cseqs.length; j++) {
        const ca = cseqs[j], cb = cseqs[j + 1];
        const a = statements.get(ca), b = statements.get(cb);
        if (b.payload.time < a.payload.time) {
          ok = false;
          this.report.failed('statement.time', `${name}#${cb}`, new VError('broken_chain', "a statement's time goes back along its chain", { expected: `>= ${a.payload.time}`, found: b.payload.time }));
        }
        if (cb !== ca + 1) continue;
        const want = chainHash(a.raw);
        if (!bytesEqual(b.payload.cprev, want)) {
          ok = false;
          this.report.failed('statement.link', `${name}#${cb}`, new VError('broken_chain', "cprev does not match the chain's previous statement", { expected: toHex(want), found: toHex(b.payload.cprev) }));
        }
      }
      if (ok) this.report.passed('statement.chain');
    }
  }

  // 9. subject (step 13) -----------------------------------------------------------------------
  checkSubject(good) {
    const claimed = this.bundle.subject.item;
    if (claimed === null) return;
    const uid = this.bundle.subject.uid;
    const scans = good.filter((r) => r.payload.kind === KIND_SCAN && bytesEqual(r.payload.uid, uid));
    if (!scans.length) return;
    const signers = new Set(scans.map((s) => s.signer));
    const dates = dateRecords(good.filter((r) => signers.has(r.signer)));
    // the registrations give the scans' roles: a scan not signed as a reader is no commission
    // (§12.1)
    const regs = good.filter((r) => r.payload.kind === KIND_REGISTRATION);
    const refused = wrongRole([...scans, ...regs].map((r) => {
      const d = dates.get(bkey(r.raw));
      return { key: bkey(r.raw), signer: r.signer, p: r.payload, date: d === undefined ? null : d };
    }));
    const commission = firstCommission(scans.filter((r) => !refused.has(bkey(r.raw))), dates);
    if (!commission) return;
    const item = commission.payload.item;
    if (item !== claimed) {
      this.report.failed('subject', toHex(uid), new VError('subject_mismatch', 'the bundle claims another item than its signed commission scan', { expected: item, found: claimed }));
    } else {
      this.report.passed('subject');
    }
  }

  summarise(good) {
    // a reading block counts as its N readings, and its end time is among the times (§11 step 14)
    const readings = [];
    const times = [];
    for (const r of good) {
      const p = r.payload;
      if (p.kind === KIND_BLOCK) {
        readings.push(...blockReadings(p));
        if (p.tq > 0) times.push(p.time + (p.temps.length / 2 - 1) * p.ivl);
      } else if (p.kind === KIND_READING) readings.push(p);
      if (p.tq > 0) times.push(p.time);
    }
    const temps = readings.filter((p) => p.temp !== null).map((p) => p.temp);
    const min = (xs) => (xs.length ? xs.reduce((a, b) => (b < a ? b : a)) : null);
    const max = (xs) => (xs.length ? xs.reduce((a, b) => (b > a ? b : a)) : null);
    let anchoredCount = 0;
    for (const s of this.covered.values()) anchoredCount += s.size;
    let cpCount = 0;
    for (const m of this.checkpoints.values()) cpCount += m.size;
    this.report.summary = {
      records: this.bundle.records.length,
      records_verified: good.length,
      devices: [...new Set(good.filter((r) => !REGISTRY_KINDS.has(r.payload.kind)).map((r) => r.signer))].sort(),
      readings: readings.length,
      scans: good.filter((r) => r.payload.kind === KIND_SCAN).length,
      statements: good.filter((r) => STATEMENT_KINDS.has(r.payload.kind)).length,
      temp_min_centi: min(temps),
      temp_max_centi: max(temps),
      time_first: min(times),
      time_last: max(times),
      checkpoints: cpCount,
      anchored_checkpoints: anchoredCount,
      failures: this.report.failures.length,
    };
  }

  async run() {
    const step = (stage, fraction) => this.progress({ stage, fraction });
    step('checkpoints', 0);
    await this.openCheckpoints();
    const linked = this.checkConsistency();
    step('anchors', 0.1);
    await this.checkAnchors(linked);
    step('records', 0.2);
    const byWhere = this.openRecords();
    const entries = [...byWhere.values()];
    step('inclusion', 0.35);
    this.checkInclusion(byWhere);
    step('registries', 0.5);
    const registryOk = await this.checkRegistryRecords(entries);
    const keys = this.deviceKeys(entries, registryOk);
    step('signatures', 0.6);
    const signed = await this.checkSignatures(entries, keys);
    step('chains', 0.9);
    this.checkSignerChains(entries);
    this.checkStatementChains(entries, registryOk);
    const good = [];
    const seen = new Set();
    for (const e of entries) {
      if (e.included === null || !this.isCovered(e.log, e.included)) continue;
      const ok = REGISTRY_KINDS.has(e.record.payload.kind) ? registryOk.has(e) : signed.has(e);
      const k = bkey(e.record.raw);
      if (ok && !seen.has(k)) {
        seen.add(k);
        good.push({ raw: e.record.raw, signer: e.record.signer, payload: e.record.payload });
      }
    }
    this.checkSubject(good);
    this.summarise(good);
    this.good = good;
    if (this.report.verified) {
      step('verdict', 0.95);
      this.report.verdict = judge(good, this.trust, this.bundle.subject.uid, this.tag);
    }
    step('done', 1);
    return this.report;
  }
}

async function verifyWith(msg, keyPromise) {
  try {
    const key = await keyPromise;
    await verifySign1(msg, key);
    return null;
  } catch (err) {
    if (err instanceof VError) return err;
    return new VError('bad_signature', `ES256 signature does not verify (${err && err.message})`);
  }
}

function registeredKey(e, source, cache) {
  const signer = e.record.signer;
  if (!source) throw new VError('unknown_key', 'no pinned key and no registration of this device in the same log', { found: signer });
  if (source.problem) throw new VError('unknown_key', source.problem, { found: signer });
  if (cmpBig(source.indexes[0], e.index) > 0) {
    throw new VError('unknown_key', 'record logged before its device was registered', { expected: `index > ${source.indexes[0]}`, found: e.index });
  }
  if (source.revoked !== null && cmpBig(source.revoked, e.index) < 0) {
    throw new VError('revoked_key', 'record logged after its device was revoked', { expected: `index < ${source.revoked}`, found: e.index });
  }
  let p = cache.get(source);
  if (!p) {
    p = importP256(source.key);
    p.catch(() => {});
    cache.set(source, p);
  }
  return p;
}

// --- §12.2 dates and the first commission (§12.3 order), for step 13 -------------------------

/** Each signer's records by seq (one per seq, the lowest bytes first), as custody.by_signer. */
function bySigner(records) {
  const unique = new Map();
  for (const r of records) unique.set(bkey(r.raw), r);
  const sorted = [...unique.values()].sort((a, b) => compareBytes(a.raw, b.raw));
  const groups = new Map();
  for (const r of sorted) {
    if (!groups.has(r.signer)) groups.set(r.signer, new Map());
    const g = groups.get(r.signer);
    if (!g.has(r.payload.seq)) g.set(r.payload.seq, r);
  }
  const out = [];
  for (const g of groups.values()) out.push([...g.keys()].sort((a, b) => a - b).map((s) => g.get(s)));
  return out;
}

function clockDate(boot, time, c) {
  const cp = c ? c.payload : null;
  if (!cp || cp.kind !== 3 || cp.detail === null || cp.boot !== boot || time > cp.detail) return null;
  const date = time + cp.time - cp.detail;
  return date >= 0 ? date : null;
}

/** §12.2: the date of every record (keyed by its bytes), null when undated. */
export function dateRecords(records) {
  const dates = new Map();
  for (const recs of bySigner(records)) {
    let below = null;
    let aboveSeq = -1;
    for (let i = recs.length - 1; i >= 0; i--) {
      const r = recs[i];
      const p = r.payload;
      const c = p.seq + 1 === aboveSeq ? below : null;
      if (p.tq >= 1) {
        dates.set(bkey(r.raw), p.time);
        const clockSet = p.kind === 3 && p.event === EVENT_CLOCK_SET;
        below = clockSet && p.detail !== null ? r : null;
      } else {
        dates.set(bkey(r.raw), clockDate(p.boot, p.time, c));
        below = c;
      }
      aboveSeq = p.seq;
    }
  }
  return dates;
}

/** The first commission scan among the dated scans, by (date, signer bytes, seq). */
function firstCommission(scans, dates) {
  const unique = new Map();
  for (const r of scans) unique.set(bkey(r.raw), r);
  const dated = [];
  for (const r of [...unique.values()].sort((a, b) => compareBytes(a.raw, b.raw))) {
    const d = dates.get(bkey(r.raw));
    if (d !== null && d !== undefined) dated.push([d, utf8(r.signer), r.payload.seq, r]);
  }
  dated.sort((a, b) => a[0] - b[0] || compareBytes(a[1], b[1]) || a[2] - b[2]);
  const first = dated.find((e) => e[3].payload.action === ACTION_COMMISSION);
  return first ? first[3] : null;
}

/** §11 on a parsed bundle and trust file; returns the Report. */
export async function verifyParsed(bundle, trust, { onProgress, tag = 'unknown' } = {}) {
  return new Verifier(bundle, trust, onProgress, tag).run();
}
