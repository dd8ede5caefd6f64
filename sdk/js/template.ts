// A starting point: tags requests with a header from config and masks one JSON field of
// responses. Replace with your own logic; `palisade test` runs cases.json against it.
// The SDK: palisade.js, typed by palisade.d.ts; the contract: docs/abi.md.

import { policy, redacted, type Json } from './palisade.js';

function isObject(value: Json): value is { [key: string]: Json } {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

export const { requestPhase, responsePhase } = policy({
  onRequest(ctx, req) {
    req.headers.set('x-team', ctx.config('team') ?? 'unknown');
    return req;
  },

  onResponse(ctx, _req, res) {
    const field = ctx.config('mask') ?? 'secret';
    let doc: Json;
    try {
      doc = res.json();
    } catch {
      return res; // not JSON: unchanged
    }
    // A JSON object that has the field.
    if (!isObject(doc) || !Object.hasOwn(doc, field)) return res;
    doc[field] = '***';
    redacted(`$['${field}']`);
    res.setJson(doc);
    return res;
  },
});
