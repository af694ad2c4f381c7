// Bundles the given test files (default: all of test/*.test.ts) into a private folder and runs them
// with node:test. Usage: node scripts/run-tests.mjs [test/foo.test.ts ...]
// Several people can run this at once: each run gets its own output folder.
// The tests run on the wasm backend unless LORAXS_BACKEND names another (a native TensorFlow build from
// `npm run setup:native` would otherwise be picked up): LORAXS_BACKEND=tensorflow runs them on native.
import { build } from 'esbuild';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join, dirname, basename } from 'node:path';
import { tmpdir } from 'node:os';

const root = dirname(dirname(new URL(import.meta.url).pathname));
let files = process.argv.slice(2);
if (!files.length) files = readdirSync(join(root, 'test')).filter((f) => f.endsWith('.test.ts')).map((f) => `test/${f}`);
const out = mkdtempSync(join(root, 'dist-test', '..', '.cache-test-'));
try {
  await build({ entryPoints: files, outdir: out, bundle: true, platform: 'node', target: 'node20', format: 'cjs', mainFields: ['module', 'main'],
    sourcemap: 'inline', logLevel: 'warning', absWorkingDir: root,
    external: ['@tensorflow/tfjs-node', '@tensorflow/tfjs-node-gpu', 'webgpu'] });
  const built = files.map((f) => join(out, basename(f).replace(/\.ts$/, '.js')));
  const r = spawnSync(process.execPath, ['--enable-source-maps', '--test', '--test-concurrency=1', ...built],
    { stdio: 'inherit', cwd: root, env: { ...process.env, LORAXS_REPO_ROOT: root, LORAXS_BACKEND: process.env.LORAXS_BACKEND || 'wasm' } });
  process.exitCode = r.status ?? 1;
} finally {
  rmSync(out, { recursive: true, force: true });
}
