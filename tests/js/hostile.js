// Hostile JavaScript (docs/security.md, items 66-70): one module, one behaviour per
// request path, written against the raw contract (no SDK) so that nothing in between
// catches what it does. Built from source by tests/all/js.rs.

const cont = (req, headers = []) => ({
  tag: 'continue',
  val: { head: { ...req, headers: req.headers.concat(headers) }, body: undefined },
});

const spin = () => {
  for (;;) {}
};

const behaviours = {
  '/ok': (req) => cont(req),
  '/loop': spin,
  '/promise-loop': (req) => {
    Promise.resolve().then(spin);
    return cont(req);
  },
  '/finally-loop': (req) => {
    try {
      return cont(req);
    } finally {
      spin();
    }
  },
  '/alloc': () => {
    const keep = [];
    for (;;) keep.push(new Array(1 << 20).fill(7));
  },
  '/big-string': (req) => {
    // `repeat` makes a rope; searching it makes the engine write out all 100 MB.
    const s = 'x'.repeat(100 * 1024 * 1024);
    return cont(req, [['x-length', String(s.length)], ['x-y', String(s.indexOf('y'))]]);
  },
  '/recurse': () => {
    const down = (n) => down(n + 1) + 1;
    return down(0);
  },
  '/eval': () => eval('for (;;) {}'),
  '/function': (req) => cont(req, [['x-sum', String(new Function('a', 'b', 'return a + b')(2, 3))]]),
  '/clock': (req) =>
    cont(req, [
      ['x-now', String(Date.now())],
      ['x-random', String(Math.random())],
      ['x-performance', typeof performance],
    ]),
  '/perf': (req) => cont(req, [['x-perf', String(performance.now())]]),
  '/pollute': (req) => {
    Object.prototype.polluted = 'yes';
    Array.prototype.concat = () => [];
    JSON.parse = () => ({ polluted: 'yes' });
    globalThis.leftover = 'yes';
    return cont(req);
  },
  '/check': (req) =>
    cont(req, [
      ['x-object', String({}.polluted)],
      ['x-json', String(JSON.parse('{}').polluted)],
      ['x-global', String(globalThis.leftover)],
    ]),
};

export const requestPhase = {
  onRequest(ctx, req) {
    const behaviour = behaviours[req.path];
    if (!behaviour) throw `no behaviour for ${req.path}`;
    return behaviour(req);
  },
};

export const responsePhase = {
  onResponse(ctx, req, res) {
    return { tag: 'continue', val: { head: res, body: undefined } };
  },
};
