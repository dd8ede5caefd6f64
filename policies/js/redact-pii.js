// redact-pii (JavaScript): the same config keys and outputs as policies/redact-pii (Rust).
//
// - detectors (`detectors`: `all`, `none` or a comma list; default `all`): card (Luhn),
//   iban (mod 97), aadhaar (Verhoeff), ssn, pan, email, phone (E.164), found anywhere in a
//   document: nested values, free text, numbers, and object keys;
// - rules (`paths`: a JSON array of JSONPaths or one path): values redacted whatever they
//   hold. This port takes the JSONPath subset of names (`.a`, `['a']`), indices (`[0]`,
//   `[-1]`), wildcards (`.*`, `[*]`), unions (`['a','b']`) and descendants (`..a`);
// - `mode`: `mask` (`[REDACTED:ssn]`, rules `[REDACTED]`), `hash` (`[ssn:<16 hex of
//   HMAC-SHA256(hash_key, value)>]`), `remove`, `encrypt`/`encrypt-deterministic` (rules
//   sealed by the host: the route grants `field_encryption`); `phases`: `request`,
//   `response`, `both`.
//
// The body is read as its recipient reads it (the Rust policy's palisade_jsonpath::body):
// UTF-8 or UTF-16 (BOM or charset), one JSON document, JSON lines, or text; what cannot be
// read unambiguously (another charset, control bytes, broken or too deep JSON, escapes in
// text) fails the invocation, so an unredacted body never passes. Every redacted location
// is reported as a normalized JSONPath (a key that is not field-like as `[*]`); values are
// never logged.

import { encodeUtf8, decodeUtf8, isRawJson, log, parseJson, policy, redacted, seal } from './palisade.js';

// ---------------------------------------------------------------------------------------
// SHA-256 and HMAC (FIPS 180-4, RFC 2104): there is no crypto in the sandbox.

const K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

function sha256(bytes) {
  const n = bytes.length;
  const total = Math.ceil((n + 9) / 64) * 64;
  const buf = new Uint8Array(total);
  buf.set(bytes);
  buf[n] = 0x80;
  const view = new DataView(buf.buffer);
  view.setUint32(total - 8, Math.floor(n / 0x20000000));
  view.setUint32(total - 4, (n * 8) >>> 0);
  const h = new Uint32Array([
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
  ]);
  const w = new Uint32Array(64);
  const rotr = (x, r) => (x >>> r) | (x << (32 - r));
  for (let off = 0; off < total; off += 64) {
    for (let t = 0; t < 16; t++) w[t] = view.getUint32(off + 4 * t);
    for (let t = 16; t < 64; t++) {
      const a = w[t - 15];
      const b = w[t - 2];
      w[t] = w[t - 16] + (rotr(a, 7) ^ rotr(a, 18) ^ (a >>> 3)) + w[t - 7] + (rotr(b, 17) ^ rotr(b, 19) ^ (b >>> 10));
    }
    let [a, b, c, d, e, f, g, hh] = h;
    for (let t = 0; t < 64; t++) {
      const t1 = (hh + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[t] + w[t]) | 0;
      const t2 = ((rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) | 0;
      hh = g;
      g = f;
      f = e;
      e = (d + t1) | 0;
      d = c;
      c = b;
      b = a;
      a = (t1 + t2) | 0;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
    h[5] += f;
    h[6] += g;
    h[7] += hh;
  }
  const out = new Uint8Array(32);
  const ov = new DataView(out.buffer);
  for (let i = 0; i < 8; i++) ov.setUint32(4 * i, h[i]);
  return out;
}

function hmacSha256(key, message) {
  if (key.length > 64) key = sha256(key);
  const inner = new Uint8Array(64 + message.length);
  const outer = new Uint8Array(64 + 32);
  for (let i = 0; i < 64; i++) {
    const k = key[i] ?? 0;
    inner[i] = k ^ 0x36;
    outer[i] = k ^ 0x5c;
  }
  inner.set(message, 64);
  outer.set(sha256(inner), 64);
  return sha256(outer);
}

const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');

// ---------------------------------------------------------------------------------------
// Detectors: linear scanners over ASCII (a port of policies/redact-pii/src/detect.rs).

const ALL = ['card', 'iban', 'aadhaar', 'ssn', 'pan', 'email', 'phone'];

const isDigit = (c) => c >= 48 && c <= 57;
const isUpper = (c) => c >= 65 && c <= 90;
const isAlpha = (c) => isUpper(c) || (c >= 97 && c <= 122);
const isWord = (c) => isDigit(c) || isAlpha(c) || c === 95;
const at = (s, i) => s.charCodeAt(i); // NaN past the end: no class matches it
const boundaryBefore = (s, i) => i === 0 || !isWord(at(s, i - 1));
const boundaryAfter = (s, end) => end >= s.length || !isWord(at(s, end));

/** After a head of `head` characters at `i`: a greedy run of up to `max` items, each an
 * `item` character optionally preceded by one character of `seps`. Returns the end of the
 * longest run of at least `min` items that sits on a word boundary. */
function runEnd(s, i, head, item, seps, min, max) {
  const ends = [];
  let j = i + head;
  while (ends.length < max) {
    if (item(at(s, j))) j += 1;
    else if (j < s.length && seps.includes(s[j]) && item(at(s, j + 1))) j += 2;
    else break;
    ends.push(j);
  }
  for (let k = ends.length; k >= min; k--) if (boundaryAfter(s, ends[k - 1])) return ends[k - 1];
  return undefined;
}

function digits(s, from, n) {
  if (from + n > s.length) return false;
  for (let k = from; k < from + n; k++) if (!isDigit(at(s, k))) return false;
  return true;
}

/** `[2-9]ddd ?dddd ?dddd` on a boundary. */
function aadhaarEnd(s, i) {
  const c = at(s, i);
  if (!(c >= 50 && c <= 57)) return undefined;
  let j = i;
  for (let group = 0; group < 3; group++) {
    if (group > 0 && s[j] === ' ') j++;
    if (!digits(s, j, 4)) return undefined;
    j += 4;
  }
  return boundaryAfter(s, j) ? j : undefined;
}

const isUpperOrDigit = (c) => isUpper(c) || isDigit(c);
const PAN_HOLDER = 'ABCFGHLJPTE';

const DETECTORS = {
  card: {
    start: /[0-9]/g,
    candidate: (s, i) => (boundaryBefore(s, i) ? runEnd(s, i, 1, isDigit, ' -', 12, 18) : undefined),
    confirm: (m) => {
      const d = compact(m);
      return d.length >= 13 && d.length <= 19 && luhn(d);
    },
  },
  iban: {
    start: /[A-Z]{2}[0-9]{2}/g,
    candidate: (s, i) => (boundaryBefore(s, i) ? runEnd(s, i, 4, isUpperOrDigit, ' ', 11, 30) : undefined),
    confirm: (m) => ibanMod97(compact(m)),
  },
  aadhaar: {
    start: /[2-9]/g,
    candidate: (s, i) => (boundaryBefore(s, i) ? aadhaarEnd(s, i) : undefined),
    confirm: (m) => {
      const d = compact(m);
      return d.length === 12 && verhoeff(d);
    },
  },
  ssn: {
    start: /[0-9]{3}-[0-9]{2}-[0-9]{4}/g,
    candidate: (s, i) => (boundaryBefore(s, i) && boundaryAfter(s, i + 11) ? i + 11 : undefined),
    confirm: (m) => {
      const area = m.slice(0, 3);
      return area !== '000' && area !== '666' && area[0] !== '9' && m.slice(4, 6) !== '00' && m.slice(7, 11) !== '0000';
    },
  },
  pan: {
    start: /[A-Z]{3}[ABCFGHLJPTE][A-Z][0-9]{4}[A-Z]/g,
    candidate: (s, i) =>
      boundaryBefore(s, i) && PAN_HOLDER.includes(s[i + 3]) && boundaryAfter(s, i + 10) ? i + 10 : undefined,
    confirm: () => true,
  },
  phone: {
    start: /\+[1-9]/g,
    candidate: (s, i) => runEnd(s, i, 2, isDigit, '', 7, 14),
    confirm: () => true,
  },
};

const compact = (m) => m.replace(/[ -]/g, '');

function luhn(d) {
  let sum = 0;
  for (let i = 0; i < d.length; i++) {
    let v = at(d, d.length - 1 - i) - 48;
    if (i % 2 === 1) {
      v *= 2;
      if (v > 9) v -= 9;
    }
    sum += v;
  }
  return sum % 10 === 0;
}

function ibanMod97(iban) {
  if (iban.length < 15 || iban.length > 34) return false;
  const moved = iban.slice(4) + iban.slice(0, 4);
  let rem = 0;
  for (let i = 0; i < moved.length; i++) {
    const c = at(moved, i);
    if (isDigit(c)) rem = (rem * 10 + (c - 48)) % 97;
    else if (isUpper(c)) rem = (rem * 100 + (c - 55)) % 97;
    else return false;
  }
  return rem === 1;
}

const VERHOEFF_D = [
  [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 2, 3, 4, 0, 6, 7, 8, 9, 5], [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
  [3, 4, 0, 1, 2, 8, 9, 5, 6, 7], [4, 0, 1, 2, 3, 9, 5, 6, 7, 8], [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
  [6, 5, 9, 8, 7, 1, 0, 4, 3, 2], [7, 6, 5, 9, 8, 2, 1, 0, 4, 3], [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
  [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
];
const VERHOEFF_P = [
  [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 5, 7, 6, 2, 8, 3, 0, 9, 4], [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
  [8, 9, 1, 6, 0, 4, 3, 5, 2, 7], [9, 4, 5, 3, 1, 2, 6, 8, 7, 0], [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
  [2, 7, 9, 3, 8, 0, 6, 4, 1, 5], [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
];

function verhoeff(d) {
  let c = 0;
  for (let i = 0; i < d.length; i++) c = VERHOEFF_D[c][VERHOEFF_P[i % 8][at(d, d.length - 1 - i) - 48]];
  return c === 0;
}

const localChar = (c) => isWord(c) || c === 46 || c === 37 || c === 43 || c === 45; // . % + -
const domainChar = (c) => isDigit(c) || isAlpha(c) || c === 45 || c === 46; // - .

function validDomain(d) {
  const labels = d.split('.');
  if (labels.length < 2 || labels.some((l) => l === '')) return false;
  const tld = labels[labels.length - 1];
  return tld.length >= 2 && /^[A-Za-z]+$/.test(tld);
}

/** Emails: every `@` with a local part to its left and the longest valid domain to its
 * right that ends on a boundary. */
function emails(s) {
  const out = [];
  let from = 0;
  for (;;) {
    const a = s.indexOf('@', from);
    if (a < 0) break;
    let start = a;
    while (start > from && localChar(at(s, start - 1))) start--;
    while (start < a && !isWord(at(s, start))) start++;
    let stop = a + 1;
    while (stop < s.length && domainChar(at(s, stop))) stop++;
    let found;
    if (start < a) {
      for (let e = stop; e >= a + 2; e--) {
        if (boundaryAfter(s, e) && validDomain(s.slice(a + 1, e))) {
          found = e;
          break;
        }
      }
    }
    if (found !== undefined) {
      out.push([start, found]);
      from = found;
    } else {
      from = a + 1;
    }
  }
  return out;
}

/** Confirmed matches of `kind` in `s` as [start, end) ranges, left to right. */
function findAll(kind, s) {
  if (kind === 'email') return emails(s);
  const det = DETECTORS[kind];
  const out = [];
  let i = 0;
  while (i < s.length) {
    det.start.lastIndex = i;
    const m = det.start.exec(s);
    if (m === null) break;
    i = m.index;
    const end = det.candidate(s, i);
    if (end === undefined) {
      i++;
      continue;
    }
    if (det.confirm(s.slice(i, end))) out.push([i, end]);
    i = end;
  }
  return out;
}

/** Replaces every confirmed finding of `kinds` in `text`, one kind after the other.
 * Returns the new text, or undefined when nothing was found. */
function redactText(text, kinds, replace) {
  if (kinds.length === 0 || !/[0-9@]/.test(text)) return undefined; // every kind needs one
  let current;
  for (const kind of kinds) {
    const source = current ?? text;
    const matches = findAll(kind, source);
    if (matches.length === 0) continue;
    let out = '';
    let last = 0;
    for (const [start, end] of matches) {
      out += source.slice(last, start) + replace(kind, source.slice(start, end));
      last = end;
    }
    current = out + source.slice(last);
  }
  return current;
}

// ---------------------------------------------------------------------------------------
// Settings

function settings(ctx) {
  const pathsText = ctx.config('paths')?.trim();
  let paths = [];
  if (pathsText !== undefined && pathsText !== '') {
    if (pathsText.startsWith('[')) {
      try {
        paths = JSON.parse(pathsText);
      } catch (e) {
        throw new Error(`invalid \`paths\`: ${e.message}`);
      }
      if (!Array.isArray(paths) || !paths.every((p) => typeof p === 'string')) {
        throw new Error('invalid `paths`: expected a JSON array of JSONPath strings');
      }
    } else {
      paths = [pathsText];
    }
  }
  const rules = paths.map((p) => {
    try {
      return compilePath(p);
    } catch (e) {
      throw new Error(`invalid JSONPath \`${p}\`: ${e.message}`);
    }
  });
  const detectors = ctx.config('detectors')?.trim();
  let kinds;
  if (detectors === undefined || detectors === 'all') kinds = ALL;
  else if (detectors === 'none' || detectors === '') kinds = [];
  else {
    kinds = detectors.split(',').map((n) => {
      const name = n.trim();
      if (!ALL.includes(name)) throw new Error(`unknown detector \`${name}\``);
      return name;
    });
  }
  const mode = ctx.config('mode') ?? 'mask';
  let key;
  if (mode === 'hash') {
    const k = ctx.config('hash_key');
    if (k === undefined || k === '') throw new Error('mode `hash` needs `hash_key`');
    key = encodeUtf8(k);
  } else if (!['mask', 'remove', 'encrypt', 'encrypt-deterministic'].includes(mode)) {
    throw new Error(`unknown mode \`${mode}\` (mask, hash, remove, encrypt, encrypt-deterministic)`);
  }
  const phases = ctx.config('phases') ?? 'both';
  if (phases !== 'both' && phases !== 'request' && phases !== 'response') {
    throw new Error(`unknown phases \`${phases}\` (request, response, both)`);
  }
  return {
    rules,
    kinds,
    mode,
    key,
    request: phases !== 'response',
    response: phases !== 'request',
  };
}

/** The replacement of a detected value (`tag` is its kind) or of a rule's (`tag` undefined). */
function replacement(st, tag, value) {
  if (st.mode === 'hash') return `[${tag ?? 'hash'}:${hex(hmacSha256(st.key, encodeUtf8(value))).slice(0, 16)}]`;
  return tag ? `[REDACTED:${tag}]` : '[REDACTED]';
}

// ---------------------------------------------------------------------------------------
// JSON values and paths

const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v) && !isRawJson(v);
function setOwn(obj, key, value) {
  // Not `obj[key] = value`: a key named `__proto__` must stay a plain field.
  Object.defineProperty(obj, key, { value, writable: true, enumerable: true, configurable: true });
}
const byCodeUnits = (a, b) => (a < b ? -1 : a > b ? 1 : 0);

/** A name as an audit path segment: `['name']` when it looks like a field name, else `[*]`
 * (keys are data too: an email or an SSN used as a key must not be recorded). */
function auditName(name) {
  const fieldLike =
    /^[A-Za-z_][A-Za-z0-9_-]*$/.test(name) && name.length <= 64 && name.replace(/[^0-9]/g, '').length <= 4;
  return fieldLike ? `['${name}']` : '[*]';
}

const render = (steps) => '$' + steps.map((k) => (typeof k === 'number' ? `[${k}]` : auditName(k))).join('');

/** A value's JSON text as the Rust policy writes it (compact, keys sorted). */
function canonical(v) {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (isObject(v)) {
    const keys = Object.keys(v).sort(byCodeUnits);
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical(v[k])}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

/** Deeper than serde_json reads (127 levels): the Rust policy refuses it, so does this. */
function tooDeep(v, depth = 0) {
  if (Array.isArray(v)) {
    if (depth >= 127) return true;
    return v.some((x) => tooDeep(x, depth + 1));
  }
  if (isObject(v)) {
    if (depth >= 127) return true;
    for (const k of Object.keys(v)) if (tooDeep(v[k], depth + 1)) return true;
  }
  return false;
}

// JSONPath (RFC 9535) subset: segments of name, index and wildcard selectors, child or
// descendant; no filters or slices.
const BLANK = /[ \t\n\r]*/y;
const SHORTHAND = /[A-Za-z_\u0080-\uffff][A-Za-z0-9_\u0080-\uffff]*/y;
const INDEX = /-?(?:0|[1-9][0-9]*)/y;

function compilePath(expr) {
  if (expr[0] !== '$') throw new Error('a JSONPath starts with `$`');
  let pos = 1;
  const segments = [];
  const skip = () => {
    BLANK.lastIndex = pos;
    BLANK.exec(expr);
    pos = BLANK.lastIndex;
  };
  const sticky = (re) => {
    re.lastIndex = pos;
    const m = re.exec(expr);
    if (m) pos = re.lastIndex;
    return m && m[0];
  };
  const quoted = () => {
    const q = expr[pos++];
    let out = '';
    for (;;) {
      if (pos >= expr.length) throw new Error('unterminated string');
      const c = expr[pos++];
      if (c === q) return out;
      if (c !== '\\') {
        out += c;
        continue;
      }
      const e = expr[pos++];
      const simple = { b: '\b', f: '\f', n: '\n', r: '\r', t: '\t', '/': '/', '\\': '\\', "'": "'", '"': '"' };
      if (e === 'u' && /^[0-9A-Fa-f]{4}$/.test(expr.slice(pos, pos + 4))) {
        out += String.fromCharCode(parseInt(expr.slice(pos, pos + 4), 16));
        pos += 4;
      } else if (Object.hasOwn(simple, e) && (e === q || (e !== "'" && e !== '"'))) {
        out += simple[e];
      } else {
        throw new Error(`invalid escape \`\\${e ?? ''}\``);
      }
    }
  };
  const bracket = () => {
    pos++; // [
    const selectors = [];
    for (;;) {
      skip();
      const c = expr[pos];
      if (c === '*') {
        pos++;
        selectors.push({ wild: true });
      } else if (c === "'" || c === '"') {
        selectors.push({ name: quoted() });
      } else {
        const i = sticky(INDEX);
        if (i === null || i === '-0' || expr[pos] === ':') {
          throw new Error(`unsupported selector at ${pos} (this policy takes names, indices and wildcards)`);
        }
        selectors.push({ index: Number(i) });
      }
      skip();
      if (expr[pos] === ',') {
        pos++;
        continue;
      }
      if (expr[pos] === ']') {
        pos++;
        return selectors;
      }
      throw new Error(`expected \`,\` or \`]\` at ${pos}`);
    }
  };
  const dotted = () => {
    if (expr[pos] === '*') {
      pos++;
      return [{ wild: true }];
    }
    const name = sticky(SHORTHAND);
    if (name === null) throw new Error(`expected a name at ${pos}`);
    return [{ name }];
  };
  while (pos < expr.length) {
    skip();
    if (pos >= expr.length) throw new Error('trailing blank');
    if (expr.startsWith('..', pos)) {
      pos += 2;
      segments.push({ descendant: true, selectors: expr[pos] === '[' ? bracket() : dotted() });
    } else if (expr[pos] === '.') {
      pos++;
      segments.push({ descendant: false, selectors: dotted() });
    } else if (expr[pos] === '[') {
      segments.push({ descendant: false, selectors: bracket() });
    } else {
      throw new Error(`unexpected \`${expr[pos]}\` at ${pos}`);
    }
  }
  return segments;
}

function children(value, steps, selector, out) {
  if (selector.wild) {
    if (Array.isArray(value)) value.forEach((_, i) => out.push({ value: value[i], steps: [...steps, i] }));
    else if (isObject(value)) {
      for (const k of Object.keys(value).sort(byCodeUnits)) out.push({ value: value[k], steps: [...steps, k] });
    }
  } else if (selector.name !== undefined) {
    if (isObject(value) && Object.hasOwn(value, selector.name)) {
      out.push({ value: value[selector.name], steps: [...steps, selector.name] });
    }
  } else if (Array.isArray(value)) {
    const i = selector.index < 0 ? value.length + selector.index : selector.index;
    if (i >= 0 && i < value.length) out.push({ value: value[i], steps: [...steps, i] });
  }
}

function descendants(node, out) {
  out.push(node);
  const v = node.value;
  if (Array.isArray(v)) v.forEach((x, i) => descendants({ value: x, steps: [...node.steps, i] }, out));
  else if (isObject(v)) {
    for (const k of Object.keys(v).sort(byCodeUnits)) descendants({ value: v[k], steps: [...node.steps, k] }, out);
  }
}

/** The steps (names and indices) of every value `segments` selects in `doc`. */
function locate(doc, segments) {
  let nodes = [{ value: doc, steps: [] }];
  for (const seg of segments) {
    let from = nodes;
    if (seg.descendant) {
      from = [];
      for (const n of nodes) descendants(n, from);
    }
    const next = [];
    for (const n of from) for (const s of seg.selectors) children(n.value, n.steps, s, next);
    nodes = next;
  }
  return nodes.map((n) => n.steps);
}

/** Document order: indices as numbers, names as code units; a parent before its children. */
function compareSteps(a, b) {
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    if (a[i] === b[i]) continue;
    if (typeof a[i] === 'number' && typeof b[i] === 'number') return a[i] - b[i];
    if (typeof a[i] !== typeof b[i]) return typeof a[i] === 'number' ? -1 : 1;
    return byCodeUnits(a[i], b[i]);
  }
  return a.length - b.length;
}

function step(value, key) {
  if (typeof key === 'number') return Array.isArray(value) && key < value.length ? value[key] : undefined;
  return isObject(value) && Object.hasOwn(value, key) ? value[key] : undefined;
}

// ---------------------------------------------------------------------------------------
// Redaction of a document

/** Detectors on a string or number; the replacement text, or undefined. */
function scan(st, value) {
  let text;
  if (typeof value === 'string') text = value;
  else if (typeof value === 'number') text = String(value);
  else if (isRawJson(value)) text = value.rawJSON;
  else return undefined;
  return redactText(text, st.kinds, (kind, v) => replacement(st, kind, v));
}

/** Applies the detectors to `holder[key]` and below; returns whether it must be removed. */
function walk(st, holder, key, path, found) {
  const value = holder[key];
  if (Array.isArray(value)) {
    const kept = [];
    value.forEach((_, i) => {
      if (!walk(st, value, i, `${path}[${i}]`, found)) kept.push(value[i]);
    });
    if (kept.length !== value.length) value.splice(0, value.length, ...kept);
    return false;
  }
  if (isObject(value)) {
    const detect = (k) => redactText(k, st.kinds, (kind, v) => replacement(st, kind, v));
    let keys = Object.keys(value).sort(byCodeUnits);
    if (keys.some((k) => detect(k) !== undefined)) {
      // Keys holding personal data are replaced like values (removed in remove mode) and
      // recorded as `[*]`; one counter per replacement name, and a replacement never takes
      // the name of a key that stays (no value is lost).
      const entries = keys.map((k) => [k, value[k], detect(k)]);
      for (const k of keys) delete value[k];
      const used = new Set(entries.filter((e) => e[2] === undefined).map((e) => e[0]));
      const taken = new Map();
      for (const [k, item, renamed] of entries) {
        if (renamed === undefined) {
          setOwn(value, k, item);
          continue;
        }
        found.push(`${path}[*]`);
        if (st.mode === 'remove') continue;
        let n = taken.get(renamed) ?? 0;
        let name;
        do {
          n += 1;
          name = n === 1 ? renamed : `${renamed}#${n}`;
        } while (used.has(name));
        taken.set(renamed, n);
        used.add(name);
        setOwn(value, name, item);
      }
      keys = Object.keys(value).sort(byCodeUnits);
    }
    const doomed = keys.filter((k) => walk(st, value, k, path + auditName(k), found));
    for (const k of doomed) delete value[k];
    return false;
  }
  const out = scan(st, value);
  if (out === undefined) return false;
  found.push(path);
  if (st.mode === 'remove') return true;
  holder[key] = out;
  return false;
}

/** Redacts one JSON document; returns it (possibly replaced) and the paths redacted. */
function redactJson(st, doc) {
  const found = [];
  if (st.rules.length > 0) {
    // Rules first, deepest and last first, so removing an array element does not shift
    // one still to be visited; never the whole document.
    const located = st.rules.flatMap((segments) => locate(doc, segments)).filter((s) => s.length > 0);
    located.sort(compareSteps);
    let previous;
    for (let i = located.length - 1; i >= 0; i--) {
      const steps = located[i];
      const path = render(steps);
      if (previous !== undefined && compareSteps(previous, steps) === 0) continue;
      previous = steps;
      let holder = doc;
      for (const k of steps.slice(0, -1)) holder = step(holder, k);
      const last = steps[steps.length - 1];
      const value = step(holder, last);
      if (value === undefined) continue;
      found.push(path);
      if (st.mode === 'remove') {
        if (Array.isArray(holder)) holder.splice(last, 1);
        else delete holder[last];
      } else if (st.mode === 'encrypt' || st.mode === 'encrypt-deterministic') {
        // Sealed by the host with the tenant's data key; without the grant `seal` throws
        // and the invocation fails.
        holder[last] = seal(path, value, { deterministic: st.mode === 'encrypt-deterministic' });
      } else {
        holder[last] = replacement(st, undefined, typeof value === 'string' ? value : canonical(value));
      }
    }
  }
  if (st.kinds.length > 0) {
    const box = { doc };
    if (walk(st, box, 'doc', '$', found)) box.doc = null; // a redacted scalar document
    doc = box.doc;
  }
  return [doc, found];
}

// ---------------------------------------------------------------------------------------
// Reading a body the way its recipient will (palisade_jsonpath::body)

class Unreadable extends Error {}

function contentType(value) {
  if (value === undefined) return ['', undefined];
  const parts = value.split(';');
  const media = parts[0].trim().toLowerCase();
  let charset;
  for (const p of parts.slice(1)) {
    const eq = p.indexOf('=');
    if (eq >= 0 && p.slice(0, eq).trim().toLowerCase() === 'charset') {
      charset = p.slice(eq + 1).trim().replace(/^"+|"+$/g, '').toLowerCase();
      break;
    }
  }
  return [media, charset];
}

const isJsonMedia = (m) => m === 'application/json' || m.endsWith('+json');
const isLinesMedia = (m) =>
  ['application/x-ndjson', 'application/ndjson', 'application/jsonl', 'application/json-seq'].includes(m);

/** JSON text as serde_json reads it, or undefined. */
function json(text) {
  let doc;
  try {
    doc = parseJson(text, { exact: true });
  } catch {
    return undefined;
  }
  return tooDeep(doc) ? undefined : doc;
}

function decode(bytes, contentTypeValue) {
  const [media, charset] = contentType(contentTypeValue);
  const textual =
    media.startsWith('text/') || isJsonMedia(media) || isLinesMedia(media) || (charset ?? '').startsWith('utf-16');
  let encoding;
  let rest = bytes;
  if (bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) {
    encoding = { utf16: false, bom: true };
    rest = bytes.subarray(3);
  } else if (textual && bytes[0] === 0xff && bytes[1] === 0xfe) {
    encoding = { utf16: true, little: true, bom: true };
    rest = bytes.subarray(2);
  } else if (textual && bytes[0] === 0xfe && bytes[1] === 0xff) {
    encoding = { utf16: true, little: false, bom: true };
    rest = bytes.subarray(2);
  } else if (charset === undefined || ['utf-8', 'utf8', 'us-ascii', 'ascii'].includes(charset)) {
    encoding = { utf16: false, bom: false };
  } else if (charset === 'utf-16le' || charset === 'utf-16be') {
    encoding = { utf16: true, little: charset === 'utf-16le', bom: false };
  } else {
    throw new Unreadable('charset'); // `utf-16` without a BOM reads two ways
  }
  let text;
  if (!encoding.utf16) {
    // decodeUtf8 would drop a second byte-order mark; it is U+FEFF in the text: refused.
    if (rest[0] === 0xef && rest[1] === 0xbb && rest[2] === 0xbf) throw new Unreadable('not_text');
    try {
      text = decodeUtf8(rest, { fatal: true });
    } catch {
      throw new Unreadable('not_text');
    }
    const doc = json(text);
    if (doc !== undefined) return { document: { json: doc }, encoding, trailingNewline: false };
  } else {
    if (rest.length % 2 !== 0) throw new Unreadable('not_text');
    const units = [];
    for (let i = 0; i < rest.length; i += 2) {
      units.push(encoding.little ? rest[i] | (rest[i + 1] << 8) : (rest[i] << 8) | rest[i + 1]);
    }
    text = '';
    for (let i = 0; i < units.length; i += 4096) text += String.fromCharCode(...units.slice(i, i + 4096));
    if (!text.isWellFormed()) throw new Unreadable('not_text');
  }
  if (/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f\ufeff]/.test(text)) throw new Unreadable('not_text');
  return { document: readText(text, media), encoding, trailingNewline: text.endsWith('\n') };
}

function readText(text, media) {
  const doc = json(text);
  if (doc !== undefined) return { json: doc };
  const lines = text
    .split('\n')
    .map((l) => l.replace(/^[\r\u001e]+|[\r\u001e]+$/g, ''))
    .filter((l) => l.trim() !== '');
  const docs = lines.map(json);
  if (docs.length > 0 && docs.every((d) => d !== undefined) && (lines.length > 1 || isLinesMedia(media))) {
    return { lines: docs };
  }
  const first = text.trimStart()[0];
  if (isJsonMedia(media) || isLinesMedia(media) || first === '{' || first === '[' || first === '"') {
    throw new Unreadable('broken_json');
  }
  if (/\\u[0-9A-Fa-f]{4}|\\u\{|\\x[0-9A-Fa-f]{2}|&#[0-9xX]/.test(text)) throw new Unreadable('escaped_text');
  return { text };
}

function encode(text, encoding) {
  if (!encoding.utf16) {
    const body = encodeUtf8(text);
    if (!encoding.bom) return body;
    const out = new Uint8Array(body.length + 3);
    out.set([0xef, 0xbb, 0xbf]);
    out.set(body, 3);
    return out;
  }
  const n = text.length + (encoding.bom ? 1 : 0);
  const out = new Uint8Array(n * 2);
  const view = new DataView(out.buffer);
  let o = 0;
  if (encoding.bom) {
    view.setUint16(0, 0xfeff, encoding.little);
    o = 2;
  }
  for (let i = 0; i < text.length; i++, o += 2) view.setUint16(o, text.charCodeAt(i), encoding.little);
  return out;
}

/** Redacts a body; returns [new body, paths], or undefined when it stays as it is. */
function redactBody(st, body, contentTypeValue) {
  if (body.every((b) => b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0c || b === 0x0d)) return undefined;
  const detect = (text) => redactText(text, st.kinds, (kind, v) => replacement(st, kind, v));
  let decoded;
  try {
    decoded = decode(body, contentTypeValue);
    if (decoded.encoding.utf16) {
      // A client that ignores the charset reads one character per byte: check that too.
      let bytewise = '';
      for (let i = 0; i < body.length; i += 4096) bytewise += String.fromCharCode(...body.subarray(i, i + 4096));
      if (detect(bytewise) !== undefined) throw new Unreadable('utf16_bytewise');
    }
  } catch (e) {
    if (e instanceof Unreadable) throw new Error(`body cannot be read unambiguously (${e.message})`);
    throw e;
  }
  const { document, encoding, trailingNewline } = decoded;
  // JSON is always written back as parsed, so what was checked is what leaves.
  if (document.json !== undefined) {
    const [doc, paths] = redactJson(st, document.json);
    return [encode(JSON.stringify(doc), encoding), paths];
  }
  if (document.lines !== undefined) {
    const paths = [];
    const out = document.lines.map((line, i) => {
      const [doc, found] = redactJson(st, line);
      for (const p of found) paths.push(`$[${i}]${p.slice(1)}`);
      return JSON.stringify(doc);
    });
    return [encode(out.join('\n') + (trailingNewline ? '\n' : ''), encoding), paths];
  }
  const changed = detect(document.text);
  return changed === undefined ? undefined : [encode(changed, encoding), ['$']];
}

// ---------------------------------------------------------------------------------------
// The policy

function redact(st, msg) {
  const result = redactBody(st, msg.body(), msg.headers.get('content-type'));
  if (result === undefined) return msg;
  const [body, paths] = result;
  msg.setBody(body);
  if (paths.length > 0) {
    for (const p of paths) redacted(p);
    log('info', `redacted ${paths.length} value(s)`);
  }
  return msg;
}

export const { requestPhase, responsePhase } = policy({
  onRequest(ctx, req) {
    const st = settings(ctx);
    return st.request ? redact(st, req) : req;
  },
  onResponse(ctx, _req, res) {
    const st = settings(ctx);
    return st.response ? redact(st, res) : res;
  },
});
