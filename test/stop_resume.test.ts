/**
 * Stopping and resuming `loraxs train` as users do: the built CLI (bin/loraxs.js) spawned as its own
 * process, stopped by `kill -9` at three points (mid-training; by LORAXS_FAULT right after the temporary
 * checkpoint is written; by LORAXS_FAULT between moving the old checkpoint aside and renaming the new one
 * in), by a checkpoint write that fails as a full disk would, by SIGINT (exit 130) and by SIGTERM (exit
 * 143); then `train --resume` in a new process. Every resumed run must log the same metrics.jsonl as an
 * uninterrupted run (timing fields aside) and leave byte-identical files in its output folder (adapter,
 * head, loraxs_config.json, last/, the final checkpoint).
 *
 * Progress is watched by polling metrics.jsonl; nothing here asserts a duration (timeouts only bound the
 * waits). Only processes spawned here are signalled, by their pid.
 */
import { test, after } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { repoRoot, tempDir } from './paths';
import { makeWorkspace } from './workspace';

const bin = path.join(repoRoot, 'bin', 'loraxs.js');
const cacheDir = tempDir('loraxs-stop-cache-');
/** Generous bound for any one wait (a loaded 2-core machine); never an assertion about speed. */
const WAIT_MS = 180_000;

// 64 rows, batch 4, 2 micro-batches per update: 8 updates per epoch, 80 in all. An evaluation and a
// checkpoint every 4 updates (the checkpoint reaches the disk with the next update: writes 1, 2, 3 at
// updates 5, 9, 13 hold updates 4, 8, 12).
const ws = makeWorkspace('bert', 'seq-cls', { train: 64, dev: 8 });
const yaml = (out: string): string => `model: model
task: classification
data: { train: train.tsv, validation: dev.tsv, text: sentence, label: label }
adapter: { rank: 4, targets: [query, value] }
training: { epochs: 10, batch_size: 4, grad_accum_steps: 2, lr: 5.0e-3, head_lr: 1.0e-2, warmup_ratio: 0.1, seed: 11, eval_every: 4 }
output: ${out}
`;
const TOTAL_STEPS = 80;

const children = new Set<ChildProcess>();
after(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

interface Run {
  child: ChildProcess;
  pid: number;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function start(args: string[], env: Record<string, string> = {}): Run {
  assert.ok(fs.existsSync(path.join(repoRoot, 'dist', 'cli.js')), 'dist/cli.js is missing: run `npm run build` first');
  const child = spawn(process.execPath, [bin, ...args], {
    cwd: ws.dir, env: { ...process.env, LORAXS_CACHE_DIR: cacheDir, LORAXS_FAULT: '', ...env }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => { out += d; });
  child.stderr!.setEncoding('utf8').on('data', (d: string) => { err += d; });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('close', (code, signal) => {
      children.delete(child);
      resolve({ code, signal });
    }));
  return { child, pid: child.pid!, stdout: () => out, stderr: () => err, exited };
}

async function finish(run: Run): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  const timer = setTimeout(() => run.child.kill('SIGKILL'), WAIT_MS);
  try {
    return await run.exited;
  } finally {
    clearTimeout(timer);
  }
}

type Line = Record<string, unknown>;

function metricsLines(out: string): Line[] {
  const file = path.join(ws.dir, out, 'metrics.jsonl');
  if (!fs.existsSync(file)) return [];
  const lines: Line[] = [];
  for (const l of fs.readFileSync(file, 'utf8').split('\n')) {
    try {
      if (l.trim()) lines.push(JSON.parse(l));
    } catch {
      /* the line being appended right now */
    }
  }
  return lines;
}

/** Update lines ({step, loss, ...}; evaluation lines hold their loss inside `eval`). */
const updates = (out: string): number => metricsLines(out).filter((l) => 'loss' in l).length;

/** Waits until `cond()` holds, polling; fails if the process ends first or the wait exceeds WAIT_MS. */
async function waitUntil(run: Run, cond: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  let ended = false;
  void run.exited.then(() => { ended = true; });
  while (!cond()) {
    if (ended) assert.fail(`the run ended before ${what}:\n${run.stderr()}`);
    if (Date.now() > deadline) assert.fail(`no ${what} within ${WAIT_MS} ms:\n${run.stderr()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function checkpointStep(dir: string): number {
  return JSON.parse(fs.readFileSync(path.join(dir, 'state.json'), 'utf8')).position.step;
}

/**
 * Every file under `dir`, relative paths sorted, but metrics.jsonl (compared line by line without its
 * timing field) and the output marker `.loraxs-output` (it records when it was written).
 */
function outputFiles(dir: string): string[] {
  return (fs.readdirSync(dir, { recursive: true }) as string[])
    .filter((f) => fs.statSync(path.join(dir, f)).isFile() && f !== 'metrics.jsonl' && f !== '.loraxs-output').sort();
}

const withoutTimes = (lines: Line[]): Line[] => lines.map(({ tokens_per_s: _t, elapsed_s: _e, eta_s: _r, ...rest }) => rest);

let reference: { lines: Line[]; files: string[] } | null = null;

/** The uninterrupted run, made once. */
async function referenceRun(): Promise<{ lines: Line[]; files: string[] }> {
  if (reference) return reference;
  const run = start(['train', ws.config('whole', yaml('out-whole'))]);
  const r = await finish(run);
  assert.equal(r.code, 0, run.stderr());
  const lines = metricsLines('out-whole');
  assert.deepEqual(lines.filter((l) => 'loss' in l).map((l) => l.step), Array.from({ length: TOTAL_STEPS }, (_, i) => i + 1));
  reference = { lines, files: outputFiles(path.join(ws.dir, 'out-whole')) };
  return reference;
}

/** `train --resume` in a new process; then the same log and the same bytes as the uninterrupted run. */
async function resumeAndCompare(name: string, out: string, expectLog?: RegExp): Promise<number> {
  const ref = await referenceRun();
  const run = start(['train', path.join(ws.dir, `${name}.loraxs.yaml`), '--resume']);
  const r = await finish(run);
  assert.equal(r.code, 0, run.stderr());
  assert.match(run.stderr(), /resuming at update \d+/);
  if (expectLog) assert.match(run.stderr(), expectLog);
  assert.match(run.stdout(), new RegExp(`^finished step ${TOTAL_STEPS};`));
  assert.deepEqual(withoutTimes(metricsLines(out)), withoutTimes(ref.lines), 'metrics.jsonl differs from the uninterrupted run');
  const dir = path.join(ws.dir, out);
  const files = outputFiles(dir);
  assert.deepEqual(files, ref.files, 'the output folders hold different files');
  let bytes = 0;
  for (const f of files) {
    const a = fs.readFileSync(path.join(dir, f));
    assert.ok(a.equals(fs.readFileSync(path.join(ws.dir, 'out-whole', f))), `${out}/${f} differs from the uninterrupted run's`);
    bytes += a.length;
  }
  const leftovers = fs.readdirSync(dir).filter((f) => /\.(tmp|old)-\d+$/.test(f));
  assert.deepEqual(leftovers, [], 'temporary or moved-aside checkpoints were left');
  return bytes;
}

test('the uninterrupted reference run logs every update and writes the adapter', async () => {
  const ref = await referenceRun();
  for (const f of ['adapter.safetensors', 'head.safetensors', 'loraxs_config.json', 'last/adapter.safetensors', 'checkpoint/state.json']) {
    assert.ok(ref.files.includes(f), `${f} in ${ref.files.join(', ')}`);
  }
});

test('kill -9 mid-training, then --resume in a new process: same losses, byte-identical outputs', async (t) => {
  const cfg = ws.config('kill-mid', yaml('out-kill-mid'));
  const run = start(['train', cfg]);
  // Past the checkpoints of updates 4, 8 and 12 (on disk from update 13), well before the end.
  await waitUntil(run, () => updates('out-kill-mid') >= 19, 'update 19');
  run.child.kill('SIGKILL');
  const r = await finish(run);
  assert.equal(r.signal, 'SIGKILL');
  const dir = path.join(ws.dir, 'out-kill-mid');
  const saved = checkpointStep(path.join(dir, 'checkpoint'));
  assert.ok(saved >= 12, `checkpoint of update ${saved}`);
  t.diagnostic(`killed with ${updates('out-kill-mid')} updates logged; checkpoint of update ${saved}`);
  const bytes = await resumeAndCompare('kill-mid', 'out-kill-mid');
  t.diagnostic(`resumed: metrics equal, ${bytes} bytes of output files identical`);
});

test('killed right after the temporary checkpoint is written (LORAXS_FAULT): the previous one is used', async (t) => {
  const cfg = ws.config('kill-temp', yaml('out-kill-temp'));
  const run = start(['train', cfg], { LORAXS_FAULT: 'checkpoint-after-temp-write@3' });
  const r = await finish(run);
  assert.equal(r.signal, 'SIGKILL', run.stderr());
  const dir = path.join(ws.dir, 'out-kill-temp');
  assert.equal(checkpointStep(path.join(dir, 'checkpoint')), 8, 'the second checkpoint is in place');
  assert.equal(checkpointStep(path.join(dir, `checkpoint.tmp-${run.pid}`)), 12, 'the third was written, not swapped in');
  const bytes = await resumeAndCompare('kill-temp', 'out-kill-temp', /resuming at update 8 /);
  t.diagnostic(`resumed: metrics equal, ${bytes} bytes of output files identical`);
});

test('killed between moving the old checkpoint aside and renaming the new in (LORAXS_FAULT): checkpoint.old-* is recovered', async (t) => {
  const cfg = ws.config('kill-swap', yaml('out-kill-swap'));
  const run = start(['train', cfg], { LORAXS_FAULT: 'checkpoint-after-old-rename@3' });
  const r = await finish(run);
  assert.equal(r.signal, 'SIGKILL', run.stderr());
  const dir = path.join(ws.dir, 'out-kill-swap');
  assert.equal(fs.existsSync(path.join(dir, 'checkpoint')), false, 'no checkpoint/ at the moment of the kill');
  assert.equal(checkpointStep(path.join(dir, `checkpoint.old-${run.pid}`)), 8);
  const bytes = await resumeAndCompare('kill-swap', 'out-kill-swap', new RegExp(`recovered the checkpoint of update 8 from checkpoint\\.old-${run.pid}`));
  t.diagnostic(`resumed: metrics equal, ${bytes} bytes of output files identical`);
});

test('a checkpoint write that fails (ENOSPC, by LORAXS_FAULT) leaves no temporary folder and the previous checkpoint valid', async (t) => {
  const cfg = ws.config('enospc', yaml('out-enospc'));
  const run = start(['train', cfg], { LORAXS_FAULT: 'checkpoint-write-error@3' });
  const r = await finish(run);
  assert.notEqual(r.code, 0, run.stderr());
  assert.equal(r.signal, null);
  assert.match(run.stderr(), /ENOSPC|no space left/i);
  const dir = path.join(ws.dir, 'out-enospc');
  assert.deepEqual(fs.readdirSync(dir).filter((f) => f.startsWith('checkpoint')), ['checkpoint']);
  assert.equal(checkpointStep(path.join(dir, 'checkpoint')), 8);
  const bytes = await resumeAndCompare('enospc', 'out-enospc', /resuming at update 8 /);
  t.diagnostic(`resumed: metrics equal, ${bytes} bytes of output files identical`);
});

for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
  test(`${signal} mid-run: exit ${code}, at most one update logged after the signal, a checkpoint of the last update; resume finishes identically`, async (t) => {
    const name = signal.toLowerCase();
    const out = `out-${name}`;
    const run = start(['train', ws.config(name, yaml(out))]);
    await waitUntil(run, () => updates(out) >= 10, 'update 10');
    const before = updates(out);
    process.kill(run.pid, signal);
    const r = await finish(run);
    const logged = updates(out);
    assert.equal(r.code, code, `exit ${r.code} (${r.signal})\n${run.stderr()}`);
    t.diagnostic(`${signal}: exit ${r.code}; ${before} updates logged when sent, ${logged} at exit`);
    assert.ok(logged - before <= 1, `${logged - before} updates were logged after ${signal} (${before} -> ${logged})`);
    assert.ok(logged < TOTAL_STEPS, 'the run stopped early');
    assert.match(run.stdout(), new RegExp(`^cancelled at step ${logged};`));
    assert.equal(checkpointStep(path.join(ws.dir, out, 'checkpoint')), logged, 'the checkpoint holds the last logged update');
    const bytes = await resumeAndCompare(name, out, new RegExp(`resuming at update ${logged} `));
    t.diagnostic(`resumed: metrics equal, ${bytes} bytes of output files identical`);
  });
}

// One update that never ends (LORAXS_FAULT=stall-update@6 blocks the training thread, as a kernel that does
// not return would). The CLI trains in a worker thread, so the signal is answered while the update is
// stuck; a second signal quits at once. Update 6 never finished, so the run resumes from the checkpoint on
// disk (update 4: written when update 5's loss came out finite) and ends as the uninterrupted run does.
test('SIGTERM while one update is stuck: answered at once, a second SIGTERM quits (143); resume finishes identically', async (t) => {
  const out = 'out-stall';
  const run = start(['train', ws.config('stall', yaml(out))], { LORAXS_FAULT: 'stall-update@6' });
  await waitUntil(run, () => /stalling update 6/.test(run.stderr()), 'the stall of update 6');
  process.kill(run.pid, 'SIGTERM');
  await waitUntil(run, () => /cancelling \(SIGTERM\)/.test(run.stderr()), 'an answer to the first SIGTERM');
  process.kill(run.pid, 'SIGTERM');
  const r = await finish(run);
  assert.equal(r.code, 143, `exit ${r.code} (${r.signal})\n${run.stderr()}`);
  assert.match(run.stderr(), /SIGTERM again: quitting at once/);
  assert.equal(updates(out), 5, 'updates 1-5 were logged, update 6 never finished');
  assert.equal(checkpointStep(path.join(ws.dir, out, 'checkpoint')), 4);
  const bytes = await resumeAndCompare('stall', out, /resuming at update 4 /);
  t.diagnostic(`resumed: metrics equal, ${bytes} bytes of output files identical`);
});
