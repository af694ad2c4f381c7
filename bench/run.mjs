// `npm run bench [-- PART ... | --quick | --build-only]`: bundles the benchmark parts (bench/*_bench.ts) with esbuild into
// dist/bench/, runs each in its own Node process (so peak memory is per part), then writes
// bench/results/<date>-<machine>.json and .md from the parts' results (bench/report.mjs).
// Parts: svd, train, memory, tta, merge, backends, generate (default: all). The Python references need `bash bench/setup.sh`.
import { build } from 'esbuild';
import { mkdirSync, rmSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join, dirname } from 'node:path';
import { loadavg } from 'node:os';
import { writeReport } from './report.mjs';
import { copyWasmFiles } from '../scripts/wasm_files.mjs';

const root = dirname(dirname(new URL(import.meta.url).pathname));
const ALL = ['svd', 'train', 'memory', 'tta', 'merge', 'backends', 'generate'];
// Opt-in parts, run only when named: qwen2 (a Qwen2-0.5B-shaped training run on native, about 10 minutes here).
const OPT_IN = ['qwen2'];
const args = process.argv.slice(2);
const quick = args.includes('--quick');
const noReport = args.includes('--no-report');
// --build-only: bundle the parts and bench/use_lite_sst2.ts / use_lite_stsb.ts (npm run bench:sst2 / bench:stsb run those) and stop.
const buildOnly = args.includes('--build-only');
const parts = args.filter((a) => !a.startsWith('--'));
for (const p of parts) if (!ALL.includes(p) && !OPT_IN.includes(p)) throw new Error(`unknown part ${p}; parts: ${[...ALL, ...OPT_IN].join(', ')}`);
const selected = parts.length ? parts : ALL;

const out = join(root, 'dist', 'bench');
copyWasmFiles(join(out, 'wasm'));
await build({
  entryPoints: { ...Object.fromEntries([...ALL, ...OPT_IN].map((p) => [`${p}_bench`, `bench/${p}_bench.ts`])), use_lite_sst2: 'bench/use_lite_sst2.ts', use_lite_stsb: 'bench/use_lite_stsb.ts' },
  outdir: out, bundle: true, sourcemap: true, logLevel: 'warning', absWorkingDir: root,
  platform: 'node', target: 'node20', format: 'cjs', mainFields: ['module', 'main'],
  external: ['@tensorflow/tfjs-node', '@tensorflow/tfjs-node-gpu', 'webgpu'],
});
if (buildOnly) process.exit(0);

const scratch = join(root, 'bench', 'results', 'tmp');
const partsDir = join(scratch, 'parts');
if (!parts.length) rmSync(partsDir, { recursive: true, force: true });
mkdirSync(partsDir, { recursive: true });
const env = { ...process.env, LORAXS_REPO_ROOT: root, LORAXS_BENCH_QUICK: quick ? '1' : '0' };
const loadBefore = loadavg();
const startedAt = new Date().toISOString();
console.error(`[bench] load average before: ${loadBefore.map((x) => x.toFixed(2)).join(' ')}`);
let failed = 0;
for (const part of selected) {
  const t0 = Date.now();
  console.error(`[bench] part ${part} ...`);
  const r = spawnSync(process.execPath, ['--enable-source-maps', '--max-old-space-size=8192', join(out, `${part}_bench.js`)],
    { stdio: 'inherit', cwd: root, env });
  console.error(`[bench] part ${part}: ${r.status === 0 ? 'done' : `FAILED (exit ${r.status ?? r.signal})`} in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  if (r.status !== 0) failed++;
}
// Every invocation is logged beside the parts (which parts, when, the load average before and after),
// since a report can combine parts from several invocations.
const runsFile = join(partsDir, 'invocations.json');
const runs = existsSync(runsFile) ? JSON.parse(readFileSync(runsFile, 'utf8')) : [];
runs.push({ parts: selected, quick, started: startedAt, load_before: loadBefore, load_after: loadavg(), failed });
writeFileSync(runsFile, JSON.stringify(runs, null, 2) + '\n');
if (!noReport && existsSync(partsDir)) {
  const files = writeReport(root, partsDir, { quick, loadBefore });
  console.error(`[bench] wrote ${files.join(', ')}`);
}
process.exitCode = failed ? 1 : 0;
