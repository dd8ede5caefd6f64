// inject-headers (JavaScript): the same config keys and behaviour as policies/inject-headers.
//   <phase>.remove = comma-separated names; <phase>.set.<Name> = value; <phase>.add.<Name> = value
// (<phase> is `request` or `response`). Removals first, then sets, then adds, so `remove`
// + `set` of one name is a replace.

import { policy } from './palisade.js';

/** Applies the config's header edits for `phase` to `headers`; returns how many ran. */
function apply(ctx, phase, headers) {
  let edits = 0;
  const remove = ctx.config(`${phase}.remove`);
  if (remove !== undefined) {
    for (const name of remove.split(',')) {
      const n = name.trim();
      if (n === '') continue;
      headers.delete(n);
      edits++;
    }
  }
  const set = `${phase}.set.`;
  const add = `${phase}.add.`;
  for (const [key, value] of ctx.configEntries) {
    if (key.startsWith(set)) {
      headers.set(key.slice(set.length), value);
      edits++;
    }
  }
  for (const [key, value] of ctx.configEntries) {
    if (key.startsWith(add)) {
      headers.append(key.slice(add.length), value);
      edits++;
    }
  }
  return edits;
}

export const { requestPhase, responsePhase } = policy({
  onRequest(ctx, req) {
    apply(ctx, 'request', req.headers);
    return req;
  },
  onResponse(ctx, _req, res) {
    apply(ctx, 'response', res.headers);
    return res;
  },
});
