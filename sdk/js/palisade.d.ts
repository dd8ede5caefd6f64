// Types of Palisade's JavaScript SDK (palisade.js) and of the raw contract
// (sdk/wit/policy.wit, `palisade:policy@0.1.0`) as componentize-js presents it to JavaScript.
// A TypeScript policy imports './palisade.js'; the compiler reads these declarations.

// ---------------------------------------------------------------------------------------
// The raw contract, named after the WIT (records are objects with camelCase fields,
// `option<T>` is `T | undefined`, `list<u8>` a Uint8Array, a variant `{ tag, val }`,
// `result<T, string>` the returned value or a thrown string).

/** `headers`: wire order; names case-insensitive; a name may repeat. */
export type HeadersRaw = Array<[name: string, value: string]>;

/** `log-level`. */
export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error';

/** `identity`: claims are JSON text (`"\"alice\""`, `"42"`). */
export interface IdentityRaw {
  subject: string;
  scopes: string[];
  claims: Array<[name: string, json: string]>;
}

/** `context`. */
export interface ContextRaw {
  tenant: string;
  route: string;
  correlationId: string;
  identity?: IdentityRaw | undefined;
  config: Array<[key: string, value: string]>;
}

/** `request-head`. */
export interface RequestHeadRaw {
  method: string;
  path: string;
  query: string;
  headers: HeadersRaw;
}

/** `response-head`. */
export interface ResponseHeadRaw {
  status: number;
  headers: HeadersRaw;
}

/** `reply`. */
export interface ReplyRaw {
  status: number;
  headers: HeadersRaw;
  body: Uint8Array;
}

/** `request-change`: `body` undefined keeps the body. */
export interface RequestChangeRaw {
  head: RequestHeadRaw;
  body?: Uint8Array | undefined;
}

/** `response-change`: `body` undefined keeps the body. */
export interface ResponseChangeRaw {
  head: ResponseHeadRaw;
  body?: Uint8Array | undefined;
}

/** `request-action`. */
export type RequestActionRaw =
  | { tag: 'continue'; val: RequestChangeRaw }
  | { tag: 'respond'; val: ReplyRaw };

/** `response-action`. */
export type ResponseActionRaw =
  | { tag: 'continue'; val: ResponseChangeRaw }
  | { tag: 'respond'; val: ReplyRaw };

/** The exported `request-phase` interface (throws a string for `err`). */
export interface RequestPhaseRaw {
  onRequest(ctx: ContextRaw, req: RequestHeadRaw): RequestActionRaw;
}

/** The exported `response-phase` interface (throws a string for `err`). */
export interface ResponsePhaseRaw {
  onResponse(ctx: ContextRaw, req: RequestHeadRaw, res: ResponseHeadRaw): ResponseActionRaw;
}

/** The imported `host` interface (`palisade:policy/host@0.1.0`). */
export interface HostRaw {
  log(level: LogLevel, message: string): void;
  redacted(path: string): void;
  config(key: string): string | undefined;
  body(): Uint8Array;
  bodySize(): bigint;
  seal(path: string, value: string, deterministic: boolean): string;
}

// ---------------------------------------------------------------------------------------
// Bodies and JSON

/** What a body may be given as; a string is encoded as UTF-8. */
export type BodyInit = Uint8Array | ArrayBuffer | ArrayBufferView | string;

/** A JSON value. A number kept exact by `parseJson(text, { exact: true })` is a RawJson. */
export type Json = null | boolean | number | string | RawJson | Json[] | { [key: string]: Json };

/** A number kept as its JSON text (`JSON.rawJSON`); `JSON.stringify` writes it verbatim. */
export interface RawJson {
  readonly rawJSON: string;
}

export interface ParseOptions {
  /** Keep numbers a JS number would change (beyond 2^53, `1.0`, `1e2`) as RawJson. */
  exact?: boolean;
}

/** Encodes `text` as UTF-8 (lone surrogates become U+FFFD). */
export function encodeUtf8(text: string): Uint8Array;
/** Decodes UTF-8 (a leading BOM is dropped); invalid bytes become U+FFFD, or throw with `fatal`. */
export function decodeUtf8(bytes: BodyInit, options?: { fatal?: boolean }): string;
/** `JSON.parse`, optionally keeping numbers exact. */
export function parseJson(text: string, options?: ParseOptions): Json;
/** Whether `value` is a RawJson number. */
export function isRawJson(value: unknown): value is RawJson;

// ---------------------------------------------------------------------------------------
// Headers

/** What headers may be given as: pairs, another Headers, or `{ name: value | values }`. */
export type HeadersInit = Headers | HeadersRaw | Record<string, string | string[]>;

/** HTTP headers in wire order. Look-ups ignore (ASCII) case; a name may repeat. */
export class Headers implements Iterable<[string, string]> {
  #private;
  constructor(init?: HeadersInit);
  /** The first value of `name`, or undefined. */
  get(name: string): string | undefined;
  /** Every value of `name`, in order. */
  getAll(name: string): string[];
  /** Whether `name` is present. */
  has(name: string): boolean;
  /** Sets `name` to `value`, replacing every existing value. */
  set(name: string, value: string): this;
  /** Adds a value for `name`, keeping existing ones. */
  append(name: string, value: string): this;
  /** Removes every value of `name`; returns how many were removed. */
  delete(name: string): number;
  /** Number of header lines. */
  readonly size: number;
  entries(): IterableIterator<[string, string]>;
  keys(): IterableIterator<string>;
  values(): IterableIterator<string>;
  [Symbol.iterator](): IterableIterator<[string, string]>;
  forEach(callback: (value: string, name: string, headers: Headers) => void, thisArg?: unknown): void;
  /** The pairs as the contract carries them (a copy). */
  toArray(): HeadersRaw;
  toJSON(): HeadersRaw;
}

// ---------------------------------------------------------------------------------------
// Messages

/** What a Request and a Response share: a body fetched from the host only when read. */
export abstract class Message {
  #private;
  /** The body's bytes, fetched from the host on first use. */
  body(): Uint8Array;
  /** The body's length in bytes, without fetching it. */
  bodySize(): number;
  /** The body as UTF-8 text (invalid bytes become U+FFFD). */
  text(): string;
  /** The body parsed as JSON; throws `invalid JSON body: ...`. */
  json<T = Json>(options?: ParseOptions): T;
  /** Replaces the body. */
  setBody(body: BodyInit): this;
  /** Replaces the body with `value` as JSON (content-type left as is). */
  setJson(value: unknown): this;
  /** Whether the policy replaced the body (or built this message with its own). */
  readonly bodyReplaced: boolean;
}

export interface RequestHeadInit {
  method?: string;
  path?: string;
  query?: string;
  headers?: HeadersInit;
}

/** A request's head: what the response phase sees of the request. */
export class RequestHead {
  constructor(init?: RequestHeadInit);
  method: string;
  /** Path without the query. */
  path: string;
  /** Raw query without `?`. */
  query: string;
  headers: Headers;
}

export interface RequestInit extends RequestHeadInit {
  body?: BodyInit;
}

/** An HTTP request. */
export class Request extends Message {
  constructor(init?: RequestInit);
  method: string;
  /** Path without the query. */
  path: string;
  /** Raw query without `?`. */
  query: string;
  headers: Headers;
  /** The head, without the body (a copy). */
  head(): RequestHead;
}

export interface ResponseInit {
  status?: number;
  headers?: HeadersInit;
  body?: BodyInit;
}

/** An HTTP response. */
export class Response extends Message {
  constructor(init?: ResponseInit);
  status: number;
  headers: Headers;
  /** A JSON response (`content-type: application/json` unless given). */
  static json<R extends Response>(this: new (init?: ResponseInit) => R, status: number, value: unknown, headers?: HeadersInit): R;
}

/** A response that ends the pipeline: what `deny()` and `respond()` return. */
export class Reply extends Response {
  private readonly _reply: true;
}

/** Answers `status` with a JSON body `{"error": message}` (content-type application/json). */
export function deny(status: number, message: string): Reply;
/** Answers with `status`, `body` and optional headers. */
export function respond(status: number, body?: BodyInit, headers?: HeadersInit): Reply;

// ---------------------------------------------------------------------------------------
// Context

export interface IdentityInit {
  subject?: string;
  scopes?: string[];
  /** `[name, json text]` pairs as the contract gives them (or values already parsed). */
  claims?: Array<[string, unknown]> | Record<string, unknown>;
}

/** The caller's verified identity. */
export class Identity {
  constructor(init?: IdentityInit);
  /** Subject (never a credential). */
  subject: string;
  scopes: string[];
  /** Verified claims, each parsed from its JSON text (the text itself if it is not JSON). */
  claims: Array<[string, Json]>;
  /** The claim `name`, or undefined. */
  claim(name: string): Json | undefined;
  /** Whether `scope` was granted. */
  hasScope(scope: string): boolean;
}

export interface ContextInit {
  tenant?: string;
  route?: string;
  correlationId?: string;
  identity?: Identity | IdentityInit | IdentityRaw | undefined;
  config?: Array<[string, string]> | Record<string, string>;
}

/** Read-only facts about the invocation. */
export class Context {
  constructor(init?: ContextInit | ContextRaw);
  readonly tenant: string;
  readonly route: string;
  readonly correlationId: string;
  /** The caller, when authenticated. */
  readonly identity: Identity | undefined;
  /** This policy's configuration, `[key, value]` in route order. */
  readonly configEntries: Array<[string, string]>;
  /** The config value of `key`, or undefined. */
  config(key: string): string | undefined;
}

// ---------------------------------------------------------------------------------------
// Host calls

/** Appends a line to the invocation's log (info when no level). Log paths and counts, never values. */
export function log(message: string): void;
export function log(level: LogLevel, message: string): void;
/** Reports that the value at `path` (a JSONPath such as `$.user.ssn`) was redacted. */
export function redacted(path: string): void;
/** The route's config value of `key` for this policy, or undefined. */
export function config(key: string): string | undefined;
/**
 * Seals `value` at `path` (a normalized JSONPath) into a field encryption token with the
 * tenant's data key; throws when the route does not grant `field_encryption = true`.
 */
export function seal(path: string, value: Json, options?: { deterministic?: boolean }): string;

// ---------------------------------------------------------------------------------------
// The policy

/** What a request handler returns: the request to continue, a reply, or nothing (continue). */
export type RequestOutcome = Request | Response | undefined | void;
/** What a response handler returns: the response to continue, a Reply, or nothing (continue). */
export type ResponseOutcome = Response | undefined | void;

export interface Handlers {
  onRequest?(ctx: Context, req: Request): RequestOutcome;
  onResponse?(ctx: Context, req: RequestHead, res: Response): ResponseOutcome;
}

/** The exports a policy module must make: `export const { requestPhase, responsePhase } = policy({...})`. */
export interface PolicyExports {
  requestPhase: RequestPhaseRaw;
  responsePhase: ResponsePhaseRaw;
}

/** Makes the contract's exports from handlers; a missing handler continues unchanged. */
export function policy(handlers: Handlers): PolicyExports;
