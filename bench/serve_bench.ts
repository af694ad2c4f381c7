/**
 * `npm run bench:serve`: `loraxs serve` under load, on 127.0.0.1, with autocannon. Every server is the real
 * CLI in its own process (dist/cli.js); variants that are compared run interleaved, round by round.
 *
 * 1. Memory per resident adapter at r 4, 8, 16: stories260K causal-LM adapters (no head) and USE-lite
 *    classification adapters (with their head): the server's backend bytes after loading N adapters minus
 *    after one, per adapter, beside the adapter's R + head bytes and the size of the same adapter exported
 *    as PEFT-LoRA (`loraxs export --format peft-lora`, adapter_model.safetensors).
 * 2. Throughput (stories260K, completions of 8 greedy tokens): one adapter merged into W served as the
 *    base model, vs the base with requests spread over 64 and over 1,024 distinct adapters (all resident).
 * 3. p50 / p99 latency at three concurrency levels (64 adapters).
 * 4. Cold load: POST /v1/adapters of adapters not yet resident.
 * 5. A soak at moderate load with a budget that forces eviction: failed requests, tensor count and
 *    resident adapters before and after.
 * LORAXS_SERVE_BENCH_SECONDS sets each autocannon run's length (default 10), LORAXS_SERVE_SOAK_SECONDS the
 * soak's (default 60), LORAXS_SERVE_BENCH_PARTS which parts run (`memory,throughput`, the default: both;
 * throughput includes cold load, latency and the soak).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { initBackend } from '../sidecar/backend/choice';
import { openModelSession } from '../sidecar/session/model_session';
import { loadAdapter, saveAdapter } from '../sidecar/loraxs/adapter_files';
import { Rng } from '../sidecar/rng';
import type { AdapterConfig } from '../sidecar/config/types';
import { ensureDir, log, machineInfo, repoRoot, scratchDir, sharedDir, writePart } from './common';

interface AutocannonResult {
  requests: { average: number; total: number };
  latency: { p50: number; p99: number; average: number };
  errors: number;
  non2xx: number;
  timeouts: number;
}
type Autocannon = (opts: Record<string, unknown>) => Promise<AutocannonResult>;
// autocannon ships no types; its promise API is what is used here.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const autocannon: Autocannon = require('autocannon');

/** Greedy tokens per completion request. */
const TOKENS = 8;
const SECONDS = Number(process.env.LORAXS_SERVE_BENCH_SECONDS ?? 10);
const SOAK_SECONDS = Number(process.env.LORAXS_SERVE_SOAK_SECONDS ?? 60);
const cli = path.join(repoRoot, 'bin', 'loraxs.js');
const work = ensureDir(path.join(scratchDir, 'serve'));
const cacheDir = ensureDir(path.join(work, 'factor-cache'));
// One factor cache for this process (which makes the adapters) and the servers and CLI runs it starts, so
// they all read the factors the adapters were made with (a native backend's SVD need not be bitwise
// reproducible across processes; a mismatch would be refused by the checksum).
process.env.LORAXS_CACHE_DIR = cacheDir;
const env = { ...process.env };
const stories = path.join(sharedDir, 'models', 'stories260k');

interface Server { url: string; proc: ChildProcess; stop(): Promise<void> }

async function startServer(args: string[]): Promise<Server> {
  const proc = spawn(process.execPath, [cli, 'serve', ...args, '--port', '0'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const url = await new Promise<string>((resolve, reject) => {
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (http:\/\/\S+?)[\s(]/.exec(out);
      if (m) resolve(m[1]);
    });
    void exited.then(() => reject(new Error(`loraxs serve exited before listening:\n${err}`)));
  });
  return { url, proc, stop: async () => { proc.kill('SIGTERM'); await exited; } };
}

function runCli(args: string[]): string {
  const r = spawnSync(process.execPath, [cli, ...args], { env, encoding: 'utf8', maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`loraxs ${args.join(' ')} failed:\n${r.stderr}`);
  return r.stdout;
}

async function metric(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  if (!m) throw new Error(`no ${name} in /metrics`);
  return Number(m[1]);
}

async function postJson(url: string, body: unknown): Promise<{ status: number; body: any }> {
  const r = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: r.status, body: await r.json() };
}

async function loadAdapterOn(url: string, name: string): Promise<void> {
  const r = await postJson(`${url}/v1/adapters`, { name });
  if (r.status !== 200) throw new Error(`loading ${name}: ${JSON.stringify(r.body)}`);
}

/** One adapter saved by the engine (fresh SVD factors, R ~ N(0, 0.2²)), then `count - 1` clones with other R. */
async function makeAdapters(modelDir: string, task: 'causal-lm' | 'classification', rank: number, targets: string[], dir: string, count: number): Promise<string[]> {
  const first = path.join(dir, 'a0000');
  if (!fs.existsSync(first)) {
    const adapter: AdapterConfig = { rank, rankPattern: {}, alpha: rank, targets, init: 'svd', initStd: 0.2, svd: { method: 'randomized', oversamples: 10, powerIters: 4 }, factorSeed: 0 };
    const session = await openModelSession({ modelDir, task, numLabels: task === 'classification' ? 2 : 1, adapter, seed: 0, dropout: null });
    try {
      session.adapters!.save(first, { head: session.head, task, labelNames: task === 'classification' ? ['neg', 'pos'] : null, numLabels: 2, eval: null, modelDir });
    } finally {
      session.dispose();
    }
  }
  const snap = loadAdapter(first);
  const names = ['a0000'];
  for (let i = 1; i < count; i++) {
    const name = `a${String(i).padStart(4, '0')}`;
    names.push(name);
    const to = path.join(dir, name);
    if (fs.existsSync(to)) continue;
    const rng = new Rng(i);
    const R = new Map([...snap.R].map(([n, r]) => [n, rng.normalArray(r.length, 0.2)]));
    saveAdapter(to, { ...snap, R });
  }
  return names;
}

function fileBytes(dir: string, name: string): number {
  const f = path.join(dir, name);
  return fs.existsSync(f) ? fs.statSync(f).size : 0;
}

async function memoryPart(results: Record<string, unknown>): Promise<void> {
  const useLite = path.join(work, 'use-lite');
  if (!fs.existsSync(path.join(useLite, 'model.safetensors'))) runCli(['import', 'use-lite', '--out', useLite]);
  const models: Array<{ label: string; dir: string; task: 'causal-lm' | 'classification'; targets: string[] }> = [];
  if (fs.existsSync(stories)) models.push({ label: 'stories260K (causal LM, no head)', dir: stories, task: 'causal-lm', targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] });
  else log(`skipped stories260K: ${stories} is absent`);
  models.push({ label: 'USE-lite (classification, with head)', dir: useLite, task: 'classification', targets: ['qkv', 'attention.output', 'ffn.intermediate', 'ffn.output'] });
  const rows: unknown[] = [];
  const N = 33;
  for (const m of models) {
    for (const rank of [4, 8, 16]) {
      const dir = ensureDir(path.join(work, `mem-${m.task}-r${rank}`));
      const names = await makeAdapters(m.dir, m.task, rank, m.targets, dir, N);
      const server = await startServer(['--model', m.dir, '--adapters', dir]);
      try {
        await loadAdapterOn(server.url, names[0]);
        const one = await metric(server.url, 'loraxs_backend_bytes');
        const oneAccounted = await metric(server.url, 'loraxs_adapter_memory_bytes');
        for (const n of names.slice(1)) await loadAdapterOn(server.url, n);
        const all = await metric(server.url, 'loraxs_backend_bytes');
        const perAdapter = (all - one) / (N - 1);
        const snap = loadAdapter(path.join(dir, names[0]));
        const rBytes = 4 * snap.config.modules.reduce((s, x) => s + x.rank * x.rank, 0);
        const headBytes = [...snap.head.values()].reduce((s, h) => s + 4 * h.data.length, 0);
        const peft = path.join(work, `peft-${m.task}-r${rank}`);
        fs.rmSync(peft, { recursive: true, force: true });
        runCli(['export', '--adapter', path.join(dir, names[0]), '--model', m.dir, '--format', 'peft-lora', '--out', peft]);
        const peftBytes = fileBytes(peft, 'adapter_model.safetensors');
        const peftHead = snap.head.size ? headBytes : 0;
        const row = {
          model: m.label, rank, modules: snap.config.modules.length, per_adapter_backend_bytes: perAdapter, r_bytes: rBytes, head_bytes: headBytes,
          shared_factor_bytes: oneAccounted - rBytes - headBytes, adapter_files_bytes: fileBytes(path.join(dir, names[0]), 'adapter.safetensors') + fileBytes(path.join(dir, names[0]), 'head.safetensors'),
          peft_lora_file_bytes: peftBytes, peft_over_loraxs: peftBytes / Math.max(1, rBytes + peftHead),
        };
        log(`memory ${m.label} r${rank}: ${perAdapter.toFixed(0)} B per resident adapter on the backend (R ${rBytes} B + head ${headBytes} B); factors ${row.shared_factor_bytes} B once; PEFT-LoRA file ${peftBytes} B`);
        rows.push(row);
      } finally {
        await server.stop();
      }
    }
  }
  results.memory = rows;
}

function completionBody(model: string): string {
  return JSON.stringify({ model, prompt: 'Once upon a time', max_tokens: TOKENS, temperature: 0 });
}

/** autocannon over `models` (each request takes the next one, round robin). */
async function load(url: string, models: string[], connections: number, seconds: number): Promise<AutocannonResult> {
  let i = 0;
  return autocannon({
    url: `${url}/v1/completions`, connections, duration: seconds, method: 'POST', headers: { 'content-type': 'application/json' },
    requests: [{ setupRequest: (req: Record<string, unknown>) => ({ ...req, body: completionBody(models[i++ % models.length]) }) }],
  });
}

async function throughputPart(results: Record<string, unknown>): Promise<void> {
  if (!fs.existsSync(stories)) {
    log(`skipped throughput: ${stories} is absent`);
    return;
  }
  const dir = ensureDir(path.join(work, 'tp-adapters'));
  const names = await makeAdapters(stories, 'causal-lm', 8, ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'], dir, 1024);
  const configFile = path.join(work, 'merge.loraxs.yaml');
  fs.writeFileSync(configFile, `model: ${stories}\ntask: causal-lm\nadapter: {rank: 8}\noutput: ${path.join(work, 'unused-out')}\n`);
  const mergedDir = path.join(work, 'merged-a0000');
  if (!fs.existsSync(path.join(mergedDir, 'config.json'))) runCli(['merge', configFile, '--adapter', path.join(dir, 'a0000'), '--out', mergedDir, '--overwrite']);
  const emptyAdapters = ensureDir(path.join(work, 'no-adapters'));
  const merged = await startServer(['--model', mergedDir, '--adapters', emptyAdapters]);
  const mixed = await startServer(['--model', stories, '--adapters', dir]);
  try {
    // Cold loads first (also warms every adapter of the mixed server).
    const cold: number[] = [];
    for (const n of names) {
      const t0 = performance.now();
      const r = await postJson(`${mixed.url}/v1/adapters`, { name: n });
      if (r.status !== 200) throw new Error(`loading ${n}: ${JSON.stringify(r.body)}`);
      cold.push(performance.now() - t0);
    }
    const sorted = [...cold.slice(1)].sort((a, b) => a - b);
    results.cold_load_ms = { first_with_factors: cold[0], p50: sorted[Math.floor(sorted.length / 2)], p99: sorted[Math.floor(sorted.length * 0.99)], adapters: names.length };
    log(`cold load: first ${cold[0].toFixed(1)} ms (factors), then p50 ${sorted[Math.floor(sorted.length / 2)].toFixed(2)} ms, p99 ${sorted[Math.floor(sorted.length * 0.99)].toFixed(2)} ms over ${names.length - 1}`);

    const variants: Array<{ name: string; url: string; models: string[] }> = [
      { name: 'one adapter merged into W', url: merged.url, models: ['merged-a0000'] },
      { name: 'base model, no adapter (same server as the mixes)', url: mixed.url, models: ['stories260k'] },
      { name: '64 distinct adapters', url: mixed.url, models: names.slice(0, 64) },
      { name: '1,024 distinct adapters', url: mixed.url, models: names },
    ];
    const connections = 16;
    const tp: Record<string, number[]> = {};
    const tokps: Record<string, number[]> = {};
    for (let round = 0; round < 2; round++) {
      for (const v of variants) {
        const before = await metric(v.url, 'loraxs_completion_tokens_total');
        const r = await load(v.url, v.models, connections, SECONDS);
        const tokens = (await metric(v.url, 'loraxs_completion_tokens_total')) - before;
        (tp[v.name] ??= []).push(r.requests.total / SECONDS);
        (tokps[v.name] ??= []).push(tokens / SECONDS);
        log(`round ${round + 1} ${v.name}: ${(r.requests.total / SECONDS).toFixed(2)} req/s, ${(tokens / SECONDS).toFixed(1)} tokens/s (${r.errors} errors, ${r.non2xx} non-2xx), p50 ${r.latency.p50} ms`);
      }
    }
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const baseTp = mean(tp['one adapter merged into W']);
    const baseTok = mean(tokps['one adapter merged into W']);
    results.throughput = Object.entries(tp).map(([name, xs]) => ({
      variant: name, req_per_s: mean(xs), rounds: xs, ratio_to_merged: mean(xs) / baseTp,
      tokens_per_s: mean(tokps[name]), tokens_ratio_to_merged: mean(tokps[name]) / baseTok, connections, seconds: SECONDS, max_tokens: TOKENS,
    }));
    results.batch_rows_mean = (await metric(mixed.url, 'loraxs_batch_rows_sum')) / (await metric(mixed.url, 'loraxs_batch_rows_count'));

    const latency: unknown[] = [];
    for (const c of [1, 8, 32]) {
      const r = await load(mixed.url, names.slice(0, 64), c, SECONDS);
      latency.push({ connections: c, p50_ms: r.latency.p50, p99_ms: r.latency.p99, req_per_s: r.requests.total / SECONDS, errors: r.errors + r.non2xx });
      log(`latency at ${c} connections: p50 ${r.latency.p50} ms, p99 ${r.latency.p99} ms`);
    }
    results.latency = latency;
  } finally {
    await merged.stop();
    await mixed.stop();
  }

  if (SOAK_SECONDS <= 0) return;
  // Soak: moderate load over all 1,024 adapters with a budget for about 200 of them (eviction all along).
  const snap = loadAdapter(path.join(dir, 'a0000'));
  const perAdapter = 4 * snap.config.modules.reduce((s, x) => s + x.rank * x.rank, 0);
  const factorBytes = 4 * snap.config.modules.reduce((s, x) => s + x.rank * (x.inFeatures + x.outFeatures), 0);
  const budgetGb = (factorBytes + 200 * perAdapter) / 2 ** 30;
  const soak = await startServer(['--model', stories, '--adapters', dir, '--memory-budget', String(budgetGb)]);
  try {
    await load(soak.url, names, 4, 3);
    const tensorsBefore = await metric(soak.url, 'loraxs_tensors');
    const residentBefore = await metric(soak.url, 'loraxs_resident_adapters');
    const r = await load(soak.url, names, 4, SOAK_SECONDS);
    const tensorsAfter = await metric(soak.url, 'loraxs_tensors');
    const resident = await metric(soak.url, 'loraxs_resident_adapters');
    // Each resident adapter holds one R tensor per distinct rank: growth beyond that would be a leak.
    const perAdapterTensors = new Set(snap.config.modules.map((x) => x.rank)).size;
    const unexplained = tensorsAfter - tensorsBefore - (resident - residentBefore) * perAdapterTensors;
    const evictions = await metric(soak.url, 'loraxs_adapter_evictions_total');
    results.soak = {
      seconds: SOAK_SECONDS, connections: 4, requests: r.requests.total, failed: r.errors + r.non2xx + r.timeouts, tensors_before: tensorsBefore,
      tensors_after: tensorsAfter, resident_before: residentBefore, resident_adapters_after: resident, budget_adapters: 200, evictions,
      tensors_not_held_by_adapters_growth: unexplained,
    };
    log(`soak ${SOAK_SECONDS} s: ${r.requests.total} requests, ${r.errors + r.non2xx + r.timeouts} failed, tensors ${tensorsBefore} -> ${tensorsAfter} (${unexplained} not explained by resident adapters), resident ${residentBefore} -> ${resident} (budget ~200), ${evictions} evictions`);
  } finally {
    await soak.stop();
  }
}

async function main(): Promise<void> {
  if (!fs.existsSync(path.join(repoRoot, 'dist', 'cli.js'))) throw new Error('dist/cli.js is missing: run `npm run build` first');
  const backend = await initBackend();
  const results: Record<string, unknown> = { machine: machineInfo(), backend: backend.name };
  const parts = (process.env.LORAXS_SERVE_BENCH_PARTS ?? 'memory,throughput').split(',');
  if (parts.includes('memory')) await memoryPart(results);
  if (parts.includes('throughput')) await throughputPart(results);
  writePart('serve', results);
  process.stdout.write(JSON.stringify(results, null, 2) + '\n');
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).stack ?? e}\n`);
  process.exit(1);
});
