// reshape-json (JavaScript): the same `ops` and `phases` config as policies/reshape-json.
//
// - `ops`: a JSON array of operations applied in order; locations are JSON Pointers:
//   `{"op": "rename", "from": "/user_name", "to": "/user/name"}` (alias `move`) moves a
//   value, creating parent objects; `{"op": "drop", "path": "/legacy"}` removes one;
//   `{"op": "default", "path": "/version", "value": 2}` sets it only if absent;
//   `{"op": "set", "path": "/api", "value": "v2"}` sets it always.
// - `phases`: `request`, `response` or `both` (default `both`).
//
// A body that is not JSON is left untouched. Numbers are kept exact (beyond 2^53 too).

import { isRawJson, parseJson, policy } from './palisade.js';

const KINDS = ['rename', 'move', 'drop', 'default', 'set'];

/** Parses and checks `ops` from config. */
function ops(ctx) {
  const json = ctx.config('ops');
  if (json === undefined) throw new Error('missing config `ops`');
  let list;
  try {
    list = parseJson(json, { exact: true });
  } catch (e) {
    throw new Error(`invalid \`ops\`: ${e.message}`);
  }
  if (!Array.isArray(list)) throw new Error('invalid `ops`: expected an array of operations');
  return list.map((op, i) => {
    const bad = (why) => new Error(`invalid \`ops\`: operation ${i}: ${why}`);
    if (op === null || typeof op !== 'object' || Array.isArray(op) || isRawJson(op)) throw bad('expected an object');
    if (!KINDS.includes(op.op)) throw bad(`unknown op ${JSON.stringify(op.op)} (${KINDS.join(', ')})`);
    const fields = op.op === 'rename' || op.op === 'move' ? ['from', 'to'] : ['path'];
    for (const f of fields) if (typeof op[f] !== 'string') throw bad(`\`${f}\` must be a string`);
    if ((op.op === 'default' || op.op === 'set') && !Object.hasOwn(op, 'value')) throw bad('missing `value`');
    return op;
  });
}

const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v) && !isRawJson(v);
const unescape = (token) => token.replaceAll('~1', '/').replaceAll('~0', '~');
const own = (obj, key) => (Object.hasOwn(obj, key) ? obj[key] : undefined);
function setOwn(obj, key, value) {
  // Not `obj[key] = value`: a key named `__proto__` must stay a plain field.
  Object.defineProperty(obj, key, { value, writable: true, enumerable: true, configurable: true });
}

/** An array index as Rust's `usize` parse reads it (`take` and `put`). */
function usize(token) {
  return /^\+?[0-9]+$/.test(token) ? Number(token) : undefined;
}

/** The value at `pointer` (RFC 6901, as serde_json's `Value::pointer`), or undefined. */
function pointer(doc, ptr) {
  if (ptr === '') return doc;
  if (!ptr.startsWith('/')) return undefined;
  let node = doc;
  for (const raw of ptr.split('/').slice(1)) {
    const token = unescape(raw);
    if (Array.isArray(node)) {
      if (!/^(0|[1-9][0-9]*)$/.test(token)) return undefined;
      node = node[Number(token)];
    } else if (isObject(node)) {
      node = own(node, token);
    } else {
      return undefined;
    }
    if (node === undefined) return undefined;
  }
  return node;
}

function split(ptr) {
  const at = ptr.lastIndexOf('/');
  if (at < 0) return undefined;
  return [ptr.slice(0, at), unescape(ptr.slice(at + 1))];
}

/** Removes and returns the value at `ptr`, or undefined. */
function take(doc, ptr) {
  const s = split(ptr);
  if (!s) return undefined;
  const [parentPtr, key] = s;
  const parent = pointer(doc, parentPtr);
  if (isObject(parent)) {
    if (!Object.hasOwn(parent, key)) return undefined;
    const v = parent[key];
    delete parent[key];
    return v;
  }
  if (Array.isArray(parent)) {
    const i = usize(key);
    if (i === undefined || i >= parent.length) return undefined;
    return parent.splice(i, 1)[0];
  }
  return undefined;
}

/** Sets the value at `ptr`, creating missing parents as objects; returns the document. */
function put(doc, ptr, value) {
  const s = split(ptr);
  if (!s) return doc;
  const [parentPtr, key] = s;
  const box = { doc };
  let holder = box;
  let slot = 'doc';
  for (const raw of parentPtr.split('/').slice(1)) {
    const part = unescape(raw);
    let node = holder[slot];
    if (!isObject(node) && !Array.isArray(node)) {
      node = {};
      holder[slot] = node;
    }
    if (Array.isArray(node)) {
      const i = usize(part);
      if (i === undefined || i >= node.length) return box.doc;
      holder = node;
      slot = i;
    } else {
      if (!Object.hasOwn(node, part)) setOwn(node, part, {});
      holder = node;
      slot = part;
    }
  }
  const node = holder[slot];
  if (isObject(node)) {
    setOwn(node, key, value);
  } else if (Array.isArray(node)) {
    if (key === '-') {
      node.push(value);
    } else {
      const i = usize(key);
      if (i !== undefined && i < node.length) node[i] = value;
      else if (i === node.length) node.push(value);
    }
  } else {
    const obj = {};
    setOwn(obj, key, value);
    holder[slot] = obj;
  }
  return box.doc;
}

/** A deep copy, so one op's value is never shared by two places of the document. */
function clone(v) {
  if (Array.isArray(v)) return v.map(clone);
  if (!isObject(v)) return v; // scalars and exact (raw) numbers are immutable
  const out = {};
  for (const k of Object.keys(v)) setOwn(out, k, clone(v[k]));
  return out;
}

/** Applies `ops` to `doc`; returns the new document. */
function apply(list, doc) {
  for (const op of list) {
    switch (op.op) {
      case 'rename':
      case 'move': {
        const v = take(doc, op.from);
        if (v !== undefined) doc = put(doc, op.to, v);
        break;
      }
      case 'drop':
        take(doc, op.path);
        break;
      case 'default':
        if (pointer(doc, op.path) === undefined) doc = put(doc, op.path, clone(op.value));
        break;
      case 'set':
        doc = put(doc, op.path, clone(op.value));
        break;
    }
  }
  return doc;
}

function wants(ctx, phase) {
  const p = ctx.config('phases') ?? 'both';
  if (p === 'both') return true;
  if (p === 'request' || p === 'response') return p === phase;
  throw new Error(`unknown phases \`${p}\``);
}

function reshape(ctx, phase, msg) {
  if (!wants(ctx, phase)) return msg;
  const list = ops(ctx);
  let doc;
  try {
    doc = msg.json({ exact: true });
  } catch {
    return msg; // not JSON: untouched
  }
  msg.setJson(apply(list, doc));
  return msg;
}

export const { requestPhase, responsePhase } = policy({
  onRequest: (ctx, req) => reshape(ctx, 'request', req),
  onResponse: (ctx, _req, res) => reshape(ctx, 'response', res),
});
