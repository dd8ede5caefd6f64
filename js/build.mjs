// Builds a JavaScript or TypeScript policy into a Palisade component: what
// `palisade build policy.js|ts` runs (with node, from this directory's pinned
// node_modules, installed by `npm ci`).
//
//   node build.mjs SOURCE OUT.wasm WIT_DIR WORK_DIR
//
// WORK_DIR is an empty directory the caller owns (and removes, even when it stops the
// build): the project's modules are copied there.
//
// TypeScript is type-checked (strict) and compiled first with the pinned `typescript`;
// the module (and the relative modules it imports, such as the SDK's `palisade.js`) is
// then made a component of the `palisade:policy/policy` world by componentize-js
// (SpiderMonkey inside Wasm, pre-initialized with wizer) with every WASI feature
// disabled: the component imports the contract's interfaces and nothing else. A module
// that imports anything else is refused by componentize-js; the gateway's admission
// checks the imports again when it loads the component.
//
// Exit codes: 0 built; 1 the source does not compile or cannot be made a component (the
// reason on stderr); 2 usage.

import { componentize } from '@bytecodealliance/componentize-js';
import { cp, lstat, readdir, realpath, rename, writeFile } from 'node:fs/promises';
import { basename, dirname, extname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const [source, out, wit, work] = process.argv.slice(2);
if (!source || !out || !wit || !work) {
  console.error('usage: node build.mjs SOURCE.js|ts OUT.wasm WIT_DIR WORK_DIR');
  process.exit(2);
}
// The SDK a policy directory may link to (policies/js/palisade.js -> sdk/js/palisade.js).
const SDK_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..', 'sdk', 'js');

const inside = (path, dir) => {
  const rel = relative(dir, path);
  return rel !== '' && !rel.startsWith('..') && !rel.startsWith(sep);
};

const step = (msg) => console.error(`palisade-js-build: ${msg}`);

async function typescript(entry, work) {
  const ts = (await import('typescript')).default;
  const options = {
    strict: true,
    noEmitOnError: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.ES2022,
    moduleResolution: ts.ModuleResolutionKind.Bundler,
    lib: ['lib.es2022.d.ts'],
    types: [],
    skipLibCheck: true,
    outDir: work,
    rootDir: dirname(entry),
  };
  step(`type-checking and compiling ${basename(entry)} (typescript ${ts.version})`);
  const program = ts.createProgram([entry], options);
  const result = program.emit();
  const diagnostics = ts.getPreEmitDiagnostics(program).concat(result.diagnostics);
  if (diagnostics.length > 0) {
    const host = {
      getCanonicalFileName: (f) => f,
      getCurrentDirectory: () => process.cwd(),
      getNewLine: () => '\n',
    };
    console.error(ts.formatDiagnostics(diagnostics, host).trimEnd());
    throw new Error(`${basename(entry)} does not type-check`);
  }
  return join(work, basename(entry, extname(entry)) + '.js');
}

try {
  // The project's directory is copied so that relative imports resolve and compiled
  // TypeScript lands beside the JavaScript it imports. A symbolic link is followed only
  // when it stays inside the project or leads to the SDK: a link to any other file would
  // carry it into the build (and its text into error messages).
  const dir = await realpath(dirname(resolve(source)));
  for (const name of await readdir(dir)) {
    if (/\.(m?js|ts|json)$/.test(name) && !name.endsWith('.d.ts')) {
      const path = join(dir, name);
      if ((await lstat(path)).isSymbolicLink()) {
        const target = await realpath(path);
        if (!inside(target, dir) && !inside(target, SDK_DIR)) {
          throw new Error(`${name} is a link out of the project (to ${target}): copy the file in instead`);
        }
      }
      await cp(path, join(work, name), { dereference: true });
    }
  }
  let entry = join(work, basename(source));
  if (/\.ts$/.test(source)) {
    entry = await typescript(join(dir, basename(source)), work);
  }
  step(`making a component of ${basename(source)} with componentize-js (SpiderMonkey; about 10 s)`);
  const started = Date.now();
  const { component } = await componentize({
    sourcePath: entry,
    witPath: resolve(wit),
    worldName: 'policy',
    disableFeatures: ['stdio', 'random', 'clocks', 'http', 'fetch-event'],
  });
  // Written beside OUT, then renamed over it: a link planted at OUT is replaced, never
  // followed.
  const partial = `${out}.partial-${process.pid}`;
  await writeFile(partial, component, { flag: 'wx' });
  await rename(partial, out);
  step(`wrote ${out} (${component.length} bytes, ${Date.now() - started} ms)`);
} catch (e) {
  console.error(`palisade-js-build: ${e && e.message ? e.message : e}`);
  process.exitCode = 1;
}
