// A starting point: tags requests with a header from config and masks one JSON field of
// responses. Replace with your own logic; `palisade test` runs cases.json against it.
// The SDK: palisade.js (types in palisade.d.ts); the contract: docs/abi.md.

import { policy, redacted } from './palisade.js';

export const { requestPhase, responsePhase } = policy({
  onRequest(ctx, req) {
    req.headers.set('x-team', ctx.config('team') ?? 'unknown');
    return req;
  },

  onResponse(ctx, _req, res) {
    const field = ctx.config('mask') ?? 'secret';
    let doc;
    try {
      doc = res.json();
    } catch {
      return res; // not JSON: unchanged
    }
    // A JSON object that has the field.
    if (doc === null || typeof doc !== 'object' || Array.isArray(doc) || !Object.hasOwn(doc, field)) {
      return res;
    }
    doc[field] = '***';
    redacted(`$['${field}']`);
    res.setJson(doc);
    return res;
  },
});
