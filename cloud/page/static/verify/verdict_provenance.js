// The provenance verdict: GENUINE, SUSPECT or UNCONFIRMED (docs/protocol.md §12.10);
// mirrors protocol/provenance.py. Used by verdict.js for a product whose GTIN has an authority
// (the brand owner) but no product profile statement at all among the verified records.
//
//   applies(records, item, brand) -> boolean
//   judgeProvenance(records, dates, custody, item, brand, uid, tag, helpers)
//       -> {verdict, reasons, provenance}
//
// `tag` is the tag's authentication at the tap: "genuine", "replayed", "unauthenticated" or
// "unknown" (nobody checked: UNCONFIRMED at best).

import * as why from "./verdict_reasons.js";
import { cmpNum, cmpStr, reasonCompare } from "./verdict_reasons.js";

export const TAG_VALUES = ["genuine", "replayed", "unauthenticated", "unknown"];
/** Two scans of one tag at different places at most this many seconds apart: two_places. */
export const TWO_PLACES_WINDOW = 10;

const KIND_SCAN = 2;
const KIND_REGISTRATION = 4;
const KIND_PROFILE = 6;
const ACTION_COMMISSION = 1;

const CONFLICT_SEVERITY = {
  before_commission: "suspect",
  recommissioned: "suspect",
  load_while_loaded: "suspect",
  unload_not_loaded: "unconfirmed",
  place_while_loaded: "suspect",
  after_sale: "suspect",
  after_install: "suspect",
};
const CUSTODY_SEVERITY = {
  undated_scan: "unconfirmed",
  wrong_role: "unconfirmed",
  custody_gap: "unconfirmed",
  custody_branch: "unconfirmed",
};

/** §12.10's condition: the item has a GTIN with an authority, and no verified record is a
 * product profile of that GTIN. */
export function applies(records, item, brand) {
  if (item === null || brand === null) return false;
  return !records.some((r) => r.p.kind === KIND_PROFILE && r.p.gtin === item.gtin);
}

/** device id -> [registry, org]: the lowest registry id (byte order) that registered it, and
 * the org of that registry's registration of it with the highest seq. */
function registrars(records) {
  const best = new Map();
  for (const r of records) {
    const p = r.p;
    if (p.kind !== KIND_REGISTRATION) continue;
    const have = best.get(p.device);
    if (have === undefined || (cmpStr(r.signer, have.signer) || cmpNum(-p.seq, have.negSeq)) < 0) {
      best.set(p.device, { signer: r.signer, negSeq: -p.seq, org: p.org });
    }
  }
  const out = new Map();
  for (const [d, v] of best) out.set(d, [v.signer, v.org]);
  return out;
}

/**
 * §12.10 over the verified records (internal {raw, hex, signer, p}), given §12.3's custody
 * (with a commission), the item, the GTIN's authority `brand` and the tag's authentication.
 * `h` supplies verdict.js's helpers: {toHex, parseItem, dateOf, actionNames, closing,
 * unlinkedReasons}.
 */
export function judgeProvenance(records, dates, cust, item, brand, uid, tag, h) {
  if (!TAG_VALUES.includes(tag)) {
    throw new RangeError(`tag must be one of ${TAG_VALUES.join(", ")}, not ${tag}`);
  }
  const uidHex = h.toHex(uid);
  const reasons = [why.provenanceOnly(item.gtin)];
  const t = why.tagReason(uidHex, tag);
  if (t !== null) reasons.push(t);
  for (const r of cust.reasons) {
    if (r.code === "custody_conflict" && r.detail !== null) {
      reasons.push({ ...r, severity: CONFLICT_SEVERITY[r.detail] });
    } else if (r.code in CUSTODY_SEVERITY) {
      reasons.push({ ...r, severity: CUSTODY_SEVERITY[r.code] });
    }
  }
  reasons.push(...h.unlinkedReasons(cust, false));
  const regs = registrars(records);
  // The origin: the commission's reader is registered by the brand owner (any of its
  // registrations in V, whatever the registry shown in the custody list).
  const first = cust.legs[0];
  const brandRegistered = records.some((r) =>
    r.p.kind === KIND_REGISTRATION && r.p.device === first.scan.signer && r.signer === brand);
  if (!brandRegistered) {
    reasons.push(why.foreignCommission(
      first.scan.signer, first.scan.p.seq, first.start, brand, item.gtin));
  }
  if (item.serial !== null) {
    for (const rec of records) {
      const p = rec.p;
      if (p.kind !== KIND_SCAN || p.action !== ACTION_COMMISSION || h.toHex(p.uid) === uidHex) {
        continue;
      }
      if (cust.refused.has(rec.hex)) continue; // not signed as a reader (§12.1)
      const other = p.item === null || p.item === undefined ? null : h.parseItem(p.item);
      const date = h.dateOf(dates, rec);
      if (other === null || date === null) continue;
      if (other.gtin === item.gtin && other.serial === item.serial) {
        reasons.push(why.duplicateSerial(
          rec.signer, p.seq, date, h.toHex(p.uid), item.gtin, item.serial));
      }
    }
  }
  const legs = cust.legs;
  legs.forEach((later, j) => {
    let i = j - 1;
    while (i >= 0 && later.start - legs[i].start <= TWO_PLACES_WINDOW) {
      const earlier = legs[i];
      if (earlier.scan.p.place !== later.scan.p.place) {
        reasons.push(why.twoPlaces(
          later.scan.signer, later.scan.p.seq, earlier.start, later.start, earlier.scan.p.place));
      }
      i--;
    }
  });
  reasons.sort(reasonCompare);
  const closed = legs.find((g) => g.scan.p.action in h.closing);
  const closedDoc = closed === undefined ? null : {
    index: closed.index,
    action: h.actionNames[closed.scan.p.action],
    device: closed.scan.signer,
    seq: closed.scan.p.seq,
    place: closed.scan.p.place,
    at: closed.start,
  };
  const custody = legs.map((g) => {
    const p = g.scan.p;
    const [registry, org] = regs.get(g.scan.signer) || [null, null];
    return {
      index: g.index,
      device: g.scan.signer,
      seq: p.seq,
      action: h.actionNames[p.action],
      place: p.place,
      ref: p.ref === undefined ? null : p.ref,
      at: g.start,
      registry,
      org,
    };
  });
  return {
    verdict: why.provenanceOf(reasons),
    reasons,
    provenance: { tag, brand, custody, closed: closedDoc },
  };
}
