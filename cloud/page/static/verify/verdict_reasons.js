// The reasons of a verdict and their texts (docs/protocol.md §12.9); mirrors protocol/reasons.py.
//
// One constructor per row of §12.9's table; fmtTime, fmtCenti and fmtDuration are T, C and D.
// reasonCompare is the order of the verdict's reasons, verdictOf turns severities into the verdict.
// A reason is kept as the §12.9 object itself: {code, severity, leg, device, from, to, value,
// detail, text}.

export const PASS = "PASS";
export const FAIL = "FAIL";
export const INCOMPLETE = "INCOMPLETE";
// The provenance verdict (§12.10).
export const GENUINE = "GENUINE";
export const SUSPECT = "SUSPECT";
export const UNCONFIRMED = "UNCONFIRMED";
const SEV_SUSPECT = "suspect";
const SEV_UNCONFIRMED = "unconfirmed";
const SEV_FAIL = "fail";
const SEV_INCOMPLETE = "incomplete";
const SEV_NOTE = "note";

export const STAGES = {
  no_commission: 1,
  undated_scan: 1,
  wrong_role: 1,
  custody_conflict: 1,
  custody_gap: 1,
  custody_branch: 1,
  custody_unlinked: 1,
  no_custody: 1,
  no_profile: 2,
  unmonitored: 3,
  binding_unproven: 3,
  records_missing: 4,
  lost: 4,
  no_readings: 5,
  clock_dated: 6,
  undated: 6,
  block_overlap: 6,
  excursion: 7,
  cumulative: 8,
  mkt: 8,
  // the provenance verdict (§12.10)
  tag_unauthenticated: 0,
  tag_replayed: 0,
  tag_not_checked: 0,
  foreign_commission: 1,
  duplicate_serial: 1,
  two_places: 1,
  provenance_only: 2,
};

const CONFLICT = {
  before_commission: "comes before the item's commission",
  recommissioned: "commissions the item again",
  load_while_loaded: "loads the item while it is still loaded (no unload)",
  unload_not_loaded: "unloads the item, but it was not loaded",
  place_while_loaded: "finds the item at a place while it is still loaded (no unload)",
  after_sale: "comes after the item's sale",
  after_install: "comes after the item's installation",
};
const SCAN_TAIL = {
  custody_gap: "follows a scan of the item that is not in the bundle",
  custody_branch: "follows an earlier scan, not the one before it (the tag was not updated)",
  custody_unlinked: "carries no custody link: a scan left out before it could not be detected",
};

// --- comparing as Python does -------------------------------------------------------------------

/** Compare two strings as their UTF-8 bytes (= code point order); -1, 0 or 1. */
export function cmpStr(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x !== y) {
      // UTF-16 puts surrogates (astral code points) below U+E000..U+FFFF; code points do not
      if (x >= 0xd800 && y >= 0xd800) {
        x = x >= 0xe000 ? x - 0x800 : x + 0x2000;
        y = y >= 0xe000 ? y - 0x800 : y + 0x2000;
      }
      return x < y ? -1 : 1;
    }
  }
  return a.length === b.length ? 0 : a.length < b.length ? -1 : 1;
}

/** Compare two numbers; -1, 0 or 1. */
export function cmpNum(a, b) {
  return a < b ? -1 : a > b ? 1 : 0;
}

function num(v) {
  return v === null || v === undefined ? -1 : v;
}

function text(v) {
  return v === null || v === undefined ? "" : v;
}

/** §12.9's order: (stage, leg, from, device, code, detail, to, value). */
export function reasonCompare(r, s) {
  return (
    cmpNum(STAGES[r.code], STAGES[s.code]) ||
    cmpNum(num(r.leg), num(s.leg)) ||
    cmpNum(num(r.from), num(s.from)) ||
    cmpStr(text(r.device), text(s.device)) ||
    cmpStr(text(r.code), text(s.code)) ||
    cmpStr(text(r.detail), text(s.detail)) ||
    cmpNum(num(r.to), num(s.to)) ||
    cmpNum(num(r.value), num(s.value))
  );
}

/** FAIL if a reason fails, else INCOMPLETE if one is incomplete, else PASS. */
export function verdictOf(reasons) {
  const severities = new Set(reasons.map((r) => r.severity));
  if (severities.has(SEV_FAIL)) return FAIL;
  return severities.has(SEV_INCOMPLETE) ? INCOMPLETE : PASS;
}

/** SUSPECT if a reason is suspect, else UNCONFIRMED if one is unconfirmed, else GENUINE. */
export function provenanceOf(reasons) {
  const severities = new Set(reasons.map((r) => r.severity));
  if (severities.has(SEV_SUSPECT)) return SUSPECT;
  return severities.has(SEV_UNCONFIRMED) ? UNCONFIRMED : GENUINE;
}

// --- the formatters T, C, D ------------------------------------------------------------------------

function pad(n, width) {
  return String(n).padStart(width, "0");
}

/** T(t) = YYYY-MM-DDTHH:MM:SSZ (UTC). */
export function fmtTime(t) {
  const d = new Date(t * 1000);
  return (
    `${pad(d.getUTCFullYear(), 4)}-${pad(d.getUTCMonth() + 1, 2)}-${pad(d.getUTCDate(), 2)}` +
    `T${pad(d.getUTCHours(), 2)}:${pad(d.getUTCMinutes(), 2)}:${pad(d.getUTCSeconds(), 2)}Z`
  );
}

/** C(c): the sign, whole degrees, two decimals and " °C" ("-0.05 °C"). */
export function fmtCenti(c) {
  const a = Math.abs(c);
  return `${c < 0 ? "-" : ""}${Math.floor(a / 100)}.${pad(a % 100, 2)} °C`;
}

function floorDiv(a, b) {
  return Math.floor(a / b);
}

function mod(a, b) {
  return a - b * Math.floor(a / b);
}

/** D(s): "1 h 5 min", "45 min", "0 min 30 s". */
export function fmtDuration(s) {
  const h = floorDiv(s, 3600);
  const n = floorDiv(mod(s, 3600), 60);
  const r = mod(s, 60);
  const t = h > 0 ? `${h} h ${n} min` : `${n} min`;
  return r > 0 ? `${t} ${r} s` : t;
}

// --- the rows of §12.9 ----------------------------------------------------------------------------

function reason(code, severity, txt, { leg = null, device = null, from = null, to = null,
  value = null, detail = null } = {}) {
  return { code, severity, leg, device, from, to, value, detail, text: txt };
}

export function noCommission(uidHex) {
  return reason("no_commission", SEV_INCOMPLETE,
    `no signed commission scan of tag ${uidHex}: the item is unknown`);
}

export function undatedScan(device, seq) {
  return reason("undated_scan", SEV_INCOMPLETE,
    `scan #${seq} by ${device} cannot be dated (clock never set) and is left out of the custody`,
    { device, value: seq });
}

/** A scan whose signer is not registered as a reader (§12.1 "Roles", §12.3 step 1). */
export function wrongRoleScan(device, seq, date) {
  return reason("wrong_role", SEV_INCOMPLETE,
    `scan #${seq} by ${device} is left out of the custody: ${device} is registered as ` +
    "a temperature logger, not a handover reader",
    { device, from: date, value: seq, detail: "scan" });
}

/** The readings of a bound device not registered as a logger (§12.1, §12.6 step 3). */
export function wrongRoleReadings(device, count) {
  return reason("wrong_role", SEV_INCOMPLETE,
    `${device}: ${count} readings are not used: ${device} is registered as ` +
    "a handover reader, not a temperature logger",
    { device, value: count, detail: "reading" });
}

export function custodyConflict(device, seq, date, detail) {
  return reason("custody_conflict", SEV_INCOMPLETE,
    `scan #${seq} by ${device} at ${fmtTime(date)} ${CONFLICT[detail]}`,
    { device, from: date, value: seq, detail });
}

/** custody_gap, custody_branch or custody_unlinked (a note when `note`). */
export function custodyLink(code, device, seq, date, note = false) {
  return reason(code, note ? SEV_NOTE : SEV_INCOMPLETE,
    `scan #${seq} by ${device} at ${fmtTime(date)} ${SCAN_TAIL[code]}`,
    { device, from: date, value: seq });
}

export function noCustody() {
  return reason("no_custody", SEV_INCOMPLETE,
    "the trace ends at its commission: there is no custody to judge");
}

export function noProfile(detail, gtin = null, lot = null) {
  let t;
  if (detail === "no_gtin") t = "the item has no GTIN: no product profile applies";
  else if (detail === "no_authority") t = `no pinned registry speaks for GTIN ${gtin}`;
  else if (detail === "unproven") t = "the product profile in force at commissioning is not shown";
  else if (detail === "none_in_force") {
    t = `no product profile for GTIN ${gtin} was in force at commissioning`;
  } else if (lot !== null) {
    t = `GTIN ${gtin} has lot-specific profiles, but the one for lot ${lot} is not in the bundle`;
  } else t = `GTIN ${gtin} has lot-specific profiles, but the item has no lot`;
  return reason("no_profile", SEV_INCOMPLETE, t, { detail });
}

export function unmonitored(leg, from, to, detail, location) {
  let what;
  if (detail === "no_location") what = "the vehicle is unknown (a load without a reference)";
  else if (detail === "no_authority") what = `no pinned registry speaks for ${location}`;
  else what = `no device monitored ${location}`;
  return reason("unmonitored", SEV_INCOMPLETE,
    `leg ${leg}: ${what} from ${fmtTime(from)} to ${fmtTime(to)}`, { leg, from, to, detail });
}

export function bindingUnproven(leg, from, to, location) {
  return reason("binding_unproven", SEV_INCOMPLETE,
    `leg ${leg}: which devices monitored ${location} from ${fmtTime(from)} ` +
    `to ${fmtTime(to)} is not shown`, { leg, from, to });
}

export function recordsMissing(leg, device, from, to) {
  return reason("records_missing", SEV_INCOMPLETE,
    `leg ${leg}: records of ${device} from ${fmtTime(from)} to ${fmtTime(to)} are missing`,
    { leg, device, from, to });
}

export function lost(leg, device, from, to, first, last) {
  const count = last - first + 1;
  return reason("lost", SEV_NOTE,
    `leg ${leg}: ${device} lost ${count} records (seqs ${first}..${last}) ` +
    `between ${fmtTime(from)} and ${fmtTime(to)}, as it declared`,
    { leg, device, from, to, value: count, detail: `${first}..${last}` });
}

export function noReadings(leg, from, to) {
  return reason("no_readings", SEV_INCOMPLETE,
    `leg ${leg}: no temperature reading covers ${fmtTime(from)} to ${fmtTime(to)}`,
    { leg, from, to });
}

export function clockDated(device, count) {
  return reason("clock_dated", SEV_NOTE,
    `${device}: ${count} readings taken before its clock was set ` +
    "are dated from its clock-set record", { device, value: count });
}

export function undated(device, count) {
  return reason("undated", SEV_NOTE,
    `${device}: ${count} readings cannot be dated (clock never set) and are not used`,
    { device, value: count });
}

export function blockOverlap(device, seq, from, to) {
  return reason("block_overlap", SEV_NOTE,
    `${device}: reading block #${seq} (${fmtTime(from)} to ${fmtTime(to)}) overlaps ` +
    "readings signed before or after it: the later-signed readings stand",
    { device, from, to, value: seq });
}

export function excursion(side, from, to, peak, delay) {
  const alarm = to - from >= delay;
  const exc = alarm ? "reaching" : "shorter than";
  const Side = side.charAt(0).toUpperCase() + side.slice(1);
  return reason("excursion", alarm ? SEV_FAIL : SEV_NOTE,
    `${Side} excursion from ${fmtTime(from)} to ${fmtTime(to)} ` +
    `(${fmtDuration(to - from)}), peak ${fmtCenti(peak)}, ` +
    `${exc} the alarm delay of ${fmtDuration(delay)}`,
    { from, to, value: peak, detail: side });
}

export function cumulative(tor, cumul) {
  return reason("cumulative", SEV_FAIL,
    `${fmtDuration(tor)} out of range in all, reaching the limit of ${fmtDuration(cumul)}`,
    { value: tor });
}

export function mkt(value, limit) {
  return reason("mkt", SEV_FAIL,
    `mean kinetic temperature ${fmtCenti(value)} is above the limit of ${fmtCenti(limit)}`,
    { value });
}

// --- the rows of §12.10 (the provenance verdict) ------------------------------------------------

const TAG = {
  unauthenticated: ["tag_unauthenticated", SEV_SUSPECT,
    "did not authenticate (its SUN message does not verify): it is not a tag the brand " +
    "owner commissioned"],
  replayed: ["tag_replayed", SEV_SUSPECT,
    "sent an authentication message that was already used (a replayed SUN): a copy of the tag"],
  unknown: ["tag_not_checked", SEV_UNCONFIRMED,
    "was not authenticated (no tap was checked): the records show that a genuine item " +
    "with this identity exists, not that this tag is it"],
};

/** tag_unauthenticated, tag_replayed or tag_not_checked; null for "genuine". */
export function tagReason(uidHex, tag) {
  if (!Object.hasOwn(TAG, tag)) return null;
  const [code, severity, tail] = TAG[tag];
  return reason(code, severity, `tag ${uidHex} ${tail}`);
}

export function provenanceOnly(gtin) {
  return reason("provenance_only", SEV_NOTE,
    `no product profile of GTIN ${gtin} is in the bundle: this is a provenance verdict, ` +
    "temperatures are not judged");
}

export function foreignCommission(device, seq, date, brand, gtin) {
  return reason("foreign_commission", SEV_SUSPECT,
    `scan #${seq} by ${device} at ${fmtTime(date)} commissions the item, but ${device} ` +
    `is not registered by ${brand}, the brand owner of GTIN ${gtin}`,
    { device, from: date, value: seq, detail: brand });
}

export function duplicateSerial(device, seq, date, otherUidHex, gtin, serial) {
  return reason("duplicate_serial", SEV_SUSPECT,
    `GTIN ${gtin} serial ${serial} was also commissioned on tag ${otherUidHex} ` +
    `by ${device} at ${fmtTime(date)} (scan #${seq})`,
    { device, from: date, value: seq, detail: otherUidHex });
}

export function twoPlaces(device, seq, earlier, date, place) {
  return reason("two_places", SEV_SUSPECT,
    `scan #${seq} by ${device} at ${fmtTime(date)} finds the tag ${date - earlier} s after ` +
    `a scan of it at another place, ${place}, at ${fmtTime(earlier)}: one tag cannot be ` +
    "in two places at once",
    { device, from: earlier, to: date, value: seq, detail: place });
}
