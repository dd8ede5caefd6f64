// Palisade's JavaScript SDK: write a policy as an ES module, build it into a component
// with `palisade build policy.js` (componentize-js, SpiderMonkey in Wasm).
//
//   import { policy, deny } from './palisade.js';
//
//   export const { requestPhase, responsePhase } = policy({
//     onRequest(ctx, req) {
//       if (!ctx.identity) return deny(401, 'sign in first');
//       req.headers.set('x-team', ctx.config('team') ?? 'unknown');
//       return req;
//     },
//   });
//
// A handler returns the (possibly modified) Request/Response to continue, a reply from
// `deny()`/`respond()` to answer the client, or undefined to continue with the message as
// it left it (unchanged when it did not touch it). A thrown Error fails the invocation
// with its message (audited, never sent to the client). The body is fetched from the host
// only when read (`body()`, `text()`, `json()`) and sent back only when replaced.
// The shapes mirror the Rust SDK (sdk/src/lib.rs); types are in palisade.d.ts.

import {
  log as hostLog,
  redacted as hostRedacted,
  config as hostConfig,
  body as hostBody,
  bodySize as hostBodySize,
  seal as hostSeal,
} from 'palisade:policy/host@0.1.0';

// ---------------------------------------------------------------------------------------
// UTF-8 (TextEncoder/TextDecoder when the engine has them, else a small codec here)

const EMPTY = new Uint8Array(0);
const nativeEncoder = typeof TextEncoder === 'function' ? new TextEncoder() : undefined;
const nativeDecoder = (fatal) => {
  if (typeof TextDecoder !== 'function') return undefined;
  try {
    return new TextDecoder('utf-8', { fatal });
  } catch {
    return undefined;
  }
};
const lossyDecoder = nativeDecoder(false);
const strictDecoder = nativeDecoder(true);

/** Encodes `text` as UTF-8 (lone surrogates become U+FFFD). */
export function encodeUtf8(text) {
  text = String(text);
  if (nativeEncoder) return nativeEncoder.encode(text);
  const out = [];
  for (let i = 0; i < text.length; i++) {
    let c = text.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdfff) {
      const d = text.charCodeAt(i + 1);
      if (c <= 0xdbff && d >= 0xdc00 && d <= 0xdfff) {
        c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
        i++;
      } else {
        c = 0xfffd;
      }
    }
    if (c < 0x80) out.push(c);
    else if (c < 0x800) out.push(0xc0 | (c >> 6), 0x80 | (c & 63));
    else if (c < 0x10000) out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
    else out.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
  }
  return new Uint8Array(out);
}

/**
 * Decodes UTF-8 (a leading byte-order mark is dropped). Invalid sequences become U+FFFD,
 * or throw a TypeError with `{ fatal: true }`.
 */
export function decodeUtf8(bytes, { fatal = false } = {}) {
  bytes = toBytes(bytes);
  const native = fatal ? strictDecoder : lossyDecoder;
  if (native) return native.decode(bytes);
  let out = '';
  let i = bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf ? 3 : 0;
  const bad = () => {
    if (fatal) throw new TypeError('invalid UTF-8');
    out += '\ufffd';
  };
  while (i < bytes.length) {
    const b = bytes[i];
    if (b < 0x80) {
      out += String.fromCharCode(b);
      i++;
      continue;
    }
    const n = b >= 0xc2 && b <= 0xdf ? 1 : b >= 0xe0 && b <= 0xef ? 2 : b >= 0xf0 && b <= 0xf4 ? 3 : 0;
    if (n === 0) {
      bad();
      i++;
      continue;
    }
    let cp = b & (0x3f >> n);
    let j = 1;
    for (; j <= n; j++) {
      const c = bytes[i + j];
      const lo = j === 1 ? (b === 0xe0 ? 0xa0 : b === 0xf0 ? 0x90 : 0x80) : 0x80;
      const hi = j === 1 ? (b === 0xed ? 0x9f : b === 0xf4 ? 0x8f : 0xbf) : 0xbf;
      if (c === undefined || c < lo || c > hi) break;
      cp = (cp << 6) | (c & 0x3f);
    }
    if (j <= n) {
      bad();
      i += j;
      continue;
    }
    out += String.fromCodePoint(cp);
    i += n + 1;
  }
  return out;
}

function toBytes(body) {
  if (body instanceof Uint8Array) return body;
  if (typeof body === 'string') return encodeUtf8(body);
  if (body instanceof ArrayBuffer) return new Uint8Array(body);
  if (ArrayBuffer.isView(body)) return new Uint8Array(body.buffer, body.byteOffset, body.byteLength);
  if (body === undefined || body === null) return EMPTY;
  throw new TypeError(`a body is a Uint8Array, an ArrayBuffer or a string, not ${describe(body)}`);
}

// ---------------------------------------------------------------------------------------
// JSON

const hasRawJson = typeof JSON.rawJSON === 'function' && typeof JSON.isRawJSON === 'function';

function exactNumbers(_key, value, context) {
  if (typeof value === 'number' && context && typeof context.source === 'string') {
    if (JSON.stringify(value) !== context.source) return JSON.rawJSON(context.source);
  }
  return value;
}

/**
 * JSON.parse, with `{ exact: true }`: a number that a JS number would change (beyond 2^53,
 * `1.0`, `1e2`) is kept as a `JSON.rawJSON` value holding its text, which
 * `JSON.stringify` (and `setJson`) writes back verbatim.
 */
export function parseJson(text, { exact = false } = {}) {
  return exact && hasRawJson ? JSON.parse(text, exactNumbers) : JSON.parse(text);
}

/** Whether `value` is a number kept as its JSON text by `parseJson(text, { exact: true })`. */
export function isRawJson(value) {
  return hasRawJson && JSON.isRawJSON(value);
}

// ---------------------------------------------------------------------------------------
// Headers

function asciiLower(s) {
  return /[A-Z]/.test(s) ? s.replace(/[A-Z]/g, (c) => String.fromCharCode(c.charCodeAt(0) + 32)) : s;
}

/** HTTP headers in wire order. Look-ups ignore (ASCII) case; a name may repeat. */
export class Headers {
  #list = [];

  /** From `[name, value]` pairs, another Headers, or `{ name: value | value[] }`. */
  constructor(init) {
    if (init === undefined || init === null) return;
    if (init instanceof Headers || Array.isArray(init)) {
      for (const pair of init) {
        if (!Array.isArray(pair) || pair.length !== 2) {
          throw new TypeError('a header is a [name, value] pair');
        }
        this.append(pair[0], pair[1]);
      }
    } else if (typeof init === 'object') {
      for (const [name, value] of Object.entries(init)) {
        for (const v of Array.isArray(value) ? value : [value]) this.append(name, v);
      }
    } else {
      throw new TypeError(`headers are [name, value] pairs or an object, not ${describe(init)}`);
    }
  }

  /** The first value of `name`, or undefined. */
  get(name) {
    const n = asciiLower(String(name));
    for (const [k, v] of this.#list) if (asciiLower(k) === n) return v;
    return undefined;
  }

  /** Every value of `name`, in order. */
  getAll(name) {
    const n = asciiLower(String(name));
    const out = [];
    for (const [k, v] of this.#list) if (asciiLower(k) === n) out.push(v);
    return out;
  }

  /** Whether `name` is present. */
  has(name) {
    return this.get(name) !== undefined;
  }

  /** Sets `name` to `value`, replacing every existing value. */
  set(name, value) {
    this.delete(name);
    this.#list.push([String(name), String(value)]);
    return this;
  }

  /** Adds a value for `name`, keeping existing ones. */
  append(name, value) {
    this.#list.push([String(name), String(value)]);
    return this;
  }

  /** Removes every value of `name`; returns how many were removed. */
  delete(name) {
    const n = asciiLower(String(name));
    const before = this.#list.length;
    this.#list = this.#list.filter(([k]) => asciiLower(k) !== n);
    return before - this.#list.length;
  }

  /** Number of header lines. */
  get size() {
    return this.#list.length;
  }

  /** `[name, value]` pairs in order (a snapshot). */
  *entries() {
    for (const [k, v] of this.#list.slice()) yield [k, v];
  }

  *keys() {
    for (const [k] of this.#list.slice()) yield k;
  }

  *values() {
    for (const [, v] of this.#list.slice()) yield v;
  }

  [Symbol.iterator]() {
    return this.entries();
  }

  forEach(callback, thisArg) {
    for (const [k, v] of this.#list.slice()) callback.call(thisArg, v, k, this);
  }

  /** The pairs as the contract carries them: `[name, value][]` (a copy). */
  toArray() {
    return this.#list.map(([k, v]) => [k, v]);
  }

  toJSON() {
    return this.toArray();
  }
}

// ---------------------------------------------------------------------------------------
// Messages

const FROM_HOST = Symbol('palisade.fromHost');
const REPLACEMENT = Symbol('palisade.replacement');
const UNREAD = 0; // lives in the host
const READ = 1; // fetched, unchanged
const OWN = 2; // set by the policy (or built by it)

/** What a Request and a Response share: headers and a body read on demand. */
export class Message {
  #state;
  #bytes;

  constructor(body) {
    if (body === FROM_HOST) {
      this.#state = UNREAD;
      this.#bytes = undefined;
    } else {
      this.#state = OWN;
      this.#bytes = toBytes(body);
    }
  }

  /** The body's bytes, fetched from the host on first use. */
  body() {
    if (this.#state === UNREAD) {
      this.#bytes = hostBody();
      this.#state = READ;
    }
    return this.#bytes;
  }

  /** The body's length in bytes, without fetching it. */
  bodySize() {
    return this.#state === UNREAD ? Number(hostBodySize()) : this.#bytes.length;
  }

  /** The body as text (UTF-8; invalid bytes become U+FFFD). */
  text() {
    return decodeUtf8(this.body());
  }

  /**
   * The body parsed as JSON; throws `invalid JSON body: ...` when it is not (or not UTF-8).
   * `{ exact: true }`: see `parseJson`.
   */
  json(options) {
    let text;
    try {
      text = decodeUtf8(this.body(), { fatal: true });
    } catch {
      throw new Error('invalid JSON body: not UTF-8');
    }
    try {
      return parseJson(text, options);
    } catch (e) {
      throw new Error(`invalid JSON body: ${e && e.message ? e.message : e}`);
    }
  }

  /** Replaces the body (a string is encoded as UTF-8). */
  setBody(body) {
    this.#bytes = toBytes(body);
    this.#state = OWN;
    return this;
  }

  /** Replaces the body with `value` as JSON (the content-type header is left as is). */
  setJson(value) {
    const text = JSON.stringify(value);
    if (text === undefined) throw new TypeError(`setJson: ${describe(value)} is not JSON`);
    return this.setBody(text);
  }

  /** Whether the policy replaced the body (or built this message with its own). */
  get bodyReplaced() {
    return this.#state === OWN;
  }

  /** @internal The body to send back: the bytes when replaced, else undefined. */
  [REPLACEMENT]() {
    return this.#state === OWN ? this.#bytes : undefined;
  }
}

/** A request's head: what the response phase sees of the request. */
export class RequestHead {
  constructor({ method = 'GET', path = '/', query = '', headers } = {}) {
    this.method = method;
    this.path = path;
    this.query = query;
    this.headers = headers instanceof Headers ? headers : new Headers(headers);
  }
}

/** An HTTP request. */
export class Request extends Message {
  constructor({ method = 'GET', path = '/', query = '', headers, body } = {}) {
    super(body);
    this.method = method;
    this.path = path;
    this.query = query;
    this.headers = headers instanceof Headers ? headers : new Headers(headers);
  }

  /** The head, without the body (a copy). */
  head() {
    return new RequestHead({
      method: this.method,
      path: this.path,
      query: this.query,
      headers: new Headers(this.headers),
    });
  }
}

/** An HTTP response. */
export class Response extends Message {
  constructor({ status = 200, headers, body } = {}) {
    super(body);
    this.status = status;
    this.headers = headers instanceof Headers ? headers : new Headers(headers);
  }

  /** A JSON response (`content-type: application/json`). */
  static json(status, value, headers) {
    const res = new this({ status, headers });
    if (!res.headers.has('content-type')) res.headers.set('content-type', 'application/json');
    return res.setJson(value);
  }
}

/** A response that ends the pipeline: what `deny()` and `respond()` return. */
export class Reply extends Response {}

/** Answers `status` with a JSON body `{"error": message}`: the safe way to deny. */
export function deny(status, message) {
  return new Reply({
    status,
    headers: [['content-type', 'application/json']],
    body: JSON.stringify({ error: String(message) }),
  });
}

/** Answers with `status`, `body` (bytes or text) and optional headers. */
export function respond(status, body, headers) {
  return new Reply({ status, headers, body: body ?? EMPTY });
}

// ---------------------------------------------------------------------------------------
// Context

function parseClaim(text) {
  if (typeof text !== 'string') return text;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** The caller's verified identity. */
export class Identity {
  constructor({ subject = '', scopes = [], claims = [] } = {}) {
    this.subject = subject;
    this.scopes = [...scopes];
    const pairs = Array.isArray(claims) ? claims : Object.entries(claims);
    /** Verified claims, each value parsed from its JSON text. */
    this.claims = pairs.map(([k, v]) => [k, parseClaim(v)]);
  }

  /** The claim `name`, or undefined. */
  claim(name) {
    for (const [k, v] of this.claims) if (k === name) return v;
    return undefined;
  }

  /** Whether `scope` was granted. */
  hasScope(scope) {
    return this.scopes.includes(scope);
  }
}

/** Read-only facts about the invocation. */
export class Context {
  /** From the contract's context record (`config` may also be a `{ key: value }` object). */
  constructor({ tenant = '', route = '', correlationId = '', identity, config = [] } = {}) {
    this.tenant = tenant;
    this.route = route;
    this.correlationId = correlationId;
    this.identity = identity === undefined || identity === null ? undefined : identity instanceof Identity ? identity : new Identity(identity);
    const pairs = Array.isArray(config) ? config : Object.entries(config);
    /** This policy's configuration, as `[key, value]` pairs in route order. */
    this.configEntries = pairs.map(([k, v]) => [k, String(v)]);
  }

  /** The config value of `key`, or undefined. */
  config(key) {
    for (const [k, v] of this.configEntries) if (k === key) return v;
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------
// Host calls

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error'];

/** `log(level, message)` or `log(message)` (info). Log paths and counts, never values. */
export function log(level, message) {
  if (arguments.length < 2) {
    hostLog('info', String(level));
    return;
  }
  if (!LEVELS.includes(level)) {
    throw new TypeError(`unknown log level ${describe(level)} (${LEVELS.join(', ')})`);
  }
  hostLog(level, String(message));
}

/** Reports that the value at `path` (a JSONPath such as `$.user.ssn`) was redacted. */
export function redacted(path) {
  hostRedacted(String(path));
}

/** The route's config value of `key` for this policy, or undefined (as `ctx.config`). */
export function config(key) {
  return hostConfig(String(key));
}

/**
 * Seals `value` (any JSON value), found at `path` (a normalized JSONPath such as
 * `$['card'][0]`), into a field encryption token with the tenant's data key, when the route
 * grants this policy `field_encryption = true`; throws an Error otherwise (its message never
 * holds the value). `{ deterministic: true }`: equal values give equal tokens.
 */
export function seal(path, value, { deterministic = false } = {}) {
  const text = JSON.stringify(value === undefined ? null : value);
  try {
    return hostSeal(String(path), text, Boolean(deterministic));
  } catch (e) {
    const why = e && typeof e === 'object' && 'payload' in e ? e.payload : e;
    throw new Error(`seal: ${why}`);
  }
}

// ---------------------------------------------------------------------------------------
// The adapter between the contract and the handlers

/** What a value is, never what it holds: SDK errors reach the audit log. */
function describe(value) {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (typeof value === 'object' || typeof value === 'function') {
    return (value.constructor && value.constructor.name) || typeof value;
  }
  return `a ${typeof value}`;
}

function errorMessage(e) {
  if (typeof e === 'string') return e;
  if (e instanceof Error) {
    const message = String(e.message);
    return e.name && e.name !== 'Error' ? `${e.name}: ${message}` : message;
  }
  try {
    return `uncaught ${describe(e)}: ${String(e)}`;
  } catch {
    return 'uncaught exception';
  }
}

/** Runs `f`; anything it throws becomes the contract's `err(message)`, never a trap. */
function guarded(f) {
  try {
    return f();
  } catch (e) {
    let message;
    try {
      message = errorMessage(e);
    } catch {
      message = 'uncaught exception';
    }
    throw message; // a string: the component's err result
  }
}

function text(value, what) {
  if (typeof value !== 'string') throw new TypeError(`${what} must be a string, not ${describe(value)}`);
  return value;
}

function status(value) {
  if (!Number.isInteger(value) || value < 0 || value > 65535) {
    throw new TypeError(`status must be an integer status code, not ${describe(value)}`);
  }
  return value;
}

function pairs(headers) {
  return (headers instanceof Headers ? headers : new Headers(headers)).toArray();
}

function rawRequestHead(r) {
  return {
    method: text(r.method, 'request.method'),
    path: text(r.path, 'request.path'),
    query: text(r.query, 'request.query'),
    headers: pairs(r.headers),
  };
}

function rawReply(res) {
  return { status: status(res.status), headers: pairs(res.headers), body: res.body() };
}

function checkSync(out, phase) {
  if (out !== null && typeof out === 'object' && typeof out.then === 'function') {
    throw new TypeError(`${phase} returned a Promise: handlers must be synchronous`);
  }
}

function requestAction(out, req) {
  checkSync(out, 'onRequest');
  if (out === undefined) out = req;
  if (out instanceof Request) {
    return { tag: 'continue', val: { head: rawRequestHead(out), body: out[REPLACEMENT]() } };
  }
  if (out instanceof Response) return { tag: 'respond', val: rawReply(out) };
  throw new TypeError(
    `onRequest returned ${describe(out)}: expected the Request, a reply from deny() or respond(), or undefined`,
  );
}

function responseAction(out, res) {
  checkSync(out, 'onResponse');
  if (out === undefined) out = res;
  if (out instanceof Reply) return { tag: 'respond', val: rawReply(out) };
  if (out instanceof Response) {
    return {
      tag: 'continue',
      val: { head: { status: status(out.status), headers: pairs(out.headers) }, body: out[REPLACEMENT]() },
    };
  }
  throw new TypeError(
    `onResponse returned ${describe(out)}: expected the Response, a reply from deny() or respond(), or undefined`,
  );
}

const HANDLERS = ['onRequest', 'onResponse'];

/**
 * Makes the contract's exports from handlers:
 * `export const { requestPhase, responsePhase } = policy({ onRequest, onResponse })`.
 * A missing handler continues unchanged.
 */
export function policy(handlers) {
  if (handlers === null || typeof handlers !== 'object') {
    throw new TypeError('policy() takes an object with onRequest and/or onResponse');
  }
  for (const key of Object.keys(handlers)) {
    if (!HANDLERS.includes(key)) throw new TypeError(`policy(): unknown handler \`${key}\` (onRequest, onResponse)`);
  }
  for (const key of HANDLERS) {
    if (handlers[key] !== undefined && typeof handlers[key] !== 'function') {
      throw new TypeError(`policy(): \`${key}\` must be a function`);
    }
  }
  return {
    requestPhase: {
      onRequest(ctx, req) {
        if (!handlers.onRequest) return { tag: 'continue', val: { head: req, body: undefined } };
        return guarded(() => {
          const request = new Request({
            method: req.method,
            path: req.path,
            query: req.query,
            headers: req.headers,
            body: FROM_HOST,
          });
          return requestAction(handlers.onRequest(new Context(ctx), request), request);
        });
      },
    },
    responsePhase: {
      onResponse(ctx, req, res) {
        if (!handlers.onResponse) return { tag: 'continue', val: { head: res, body: undefined } };
        return guarded(() => {
          const head = new RequestHead(req);
          const response = new Response({ status: res.status, headers: res.headers, body: FROM_HOST });
          return responseAction(handlers.onResponse(new Context(ctx), head, response), response);
        });
      },
    },
  };
}
