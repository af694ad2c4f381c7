/**
 * `loraxs/train` on a config with `compute.backend: torch`, over the real LSP protocol to the spawned
 * sidecar: the request runs a `launch` job (PyTorch + Accelerate, 2 gloo processes in their own process
 * group), the trainer's updates stream as progress notifications as they arrive and match metrics.jsonl,
 * the status names torch, the processes and the device, `loraxs/cancelTraining` stops every rank at the
 * same update with a checkpoint, a resume request continues from it to the last update, and a sidecar shut
 * down during a launch cancels it (checkpoint saved, no trainer process left).
 * Needs the trainer's Python (.venv-trainer): skips with a message when it is missing.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { CancelTrainingRequest, StatusNotification, TrainProgressNotification, TrainRequest } from '../sidecar/protocol';
import { GOOD_CONFIG, makeWorkspace, startSidecar } from './lsp_harness';
import { repoRoot, tempDir } from './paths';
import { readValidatedMetrics } from './metrics_schema';
import type { StepRecord } from '../sidecar/records';

const python = path.join(repoRoot, '.venv-trainer', 'bin', 'python');
const missing = !fs.existsSync(python) || spawnSync(python, ['-c', 'import torch, accelerate, transformers'], { encoding: 'utf8' }).status !== 0
  ? `skipped: the trainer's Python ${python} with torch, accelerate and transformers is missing (python3 -m venv .venv-trainer && .venv-trainer/bin/pip install -r trainer/requirements.txt; .ci/run does it)`
  : false;

test('a torch config trains through launch in the sidecar: trainer progress as notifications, torch in the status, cancel leaves a checkpoint, resume finishes', { skip: missing }, async () => {
  const ws = makeWorkspace();
  // 12 rows, batch 4: 3 updates an epoch, 120 in all; no validation, so that updates come one after another.
  const text = GOOD_CONFIG.replace('  epochs: 1', '  epochs: 40').replace('  validation: data/dev.tsv\n', '') + 'compute:\n  backend: torch\n  processes: 2\n';
  const { uri } = ws.config('torch', text);
  const s = await startSidecar({ trusted: true, rootDir: ws.dir, env: { LORAXS_CACHE_DIR: tempDir('loraxs-lsp-launch-cache-') } });
  try {
    const progress = s.collect(TrainProgressNotification.type);
    const statuses = s.collect(StatusNotification.type);
    await s.until(() => statuses.some((p) => p.state === 'idle'), 'the backend to initialise');
    const running = s.conn.sendRequest(TrainRequest.type, { uri, runId: 'torch-run' });
    await s.until(() => progress.filter((p) => p.kind === 'step').length >= 2, 'two updates from the trainer', 600_000);
    assert.deepEqual(await s.conn.sendRequest(CancelTrainingRequest.type, { runId: 'torch-run' }), { cancelled: true });
    const result = await running;

    assert.equal(result.runId, 'torch-run');
    assert.equal(result.cancelled, true);
    assert.equal(result.totalSteps, 120);
    assert.ok(result.steps >= 2 && result.steps < 120, `stopped early at ${result.steps}`);
    assert.equal(result.adapterParams, 2 * 4 * 4 * 2, 'query and value of 2 layers at rank 4');
    const output = path.join(ws.dir, 'runs', 'torch');
    assert.equal(result.output, output);
    assert.ok(fs.existsSync(path.join(output, 'trainer_checkpoint', 'state.pt')), 'a checkpoint to resume from');

    // The trainer's update lines came as step notifications, in order, and are metrics.jsonl's lines.
    const started = progress.find((p) => p.kind === 'started');
    assert.ok(started && started.kind === 'started' && started.job === 'train' && started.runId === 'torch-run');
    const steps = progress.filter((p): p is Extract<typeof p, { kind: 'step' }> => p.kind === 'step').map((p) => p.record);
    assert.deepEqual(steps.map((r) => r.step), Array.from({ length: result.steps }, (_, i) => i + 1));
    assert.ok(steps.every((r) => r.processes === 2 && /^cpu/.test(r.device ?? '')), JSON.stringify(steps[0]));
    const logged = readValidatedMetrics(path.join(output, 'metrics.jsonl')).filter((l): l is StepRecord & Record<string, unknown> => 'loss' in l);
    assert.deepEqual(logged.map((l) => l.loss), steps.map((r) => r.loss));
    assert.ok(progress.some((p) => p.kind === 'log' && /accelerate\.commands\.launch/.test(p.message)), 'the launch command is logged');

    // The status: busy on torch with 2 processes, the device once the first update named it; idle after.
    const busy = statuses.filter((p) => p.state === 'busy');
    assert.ok(busy.length > 0 && busy.every((p) => p.backend === 'torch' && p.processes === 2), JSON.stringify(busy));
    assert.ok(busy.some((p) => p.device === steps[0].device), JSON.stringify(busy));
    assert.equal(statuses.at(-1)?.state, 'idle');
    assert.notEqual(statuses.at(-1)?.backend, 'torch', 'idle shows the engine\'s backend again');

    // Resume Training: the same request with resume continues at the checkpoint's update and finishes.
    const before = progress.length;
    const resumed = await s.conn.sendRequest(TrainRequest.type, { uri, runId: 'torch-resumed', resume: true });
    assert.equal(resumed.cancelled, false);
    assert.equal(resumed.steps, 120);
    const more = progress.slice(before).filter((p): p is Extract<typeof p, { kind: 'step' }> => p.kind === 'step').map((p) => p.record.step);
    assert.equal(more[0], result.steps + 1, 'the resumed run starts after the checkpoint\'s update');
    assert.equal(more.at(-1), 120);
    const all = readValidatedMetrics(path.join(output, 'metrics.jsonl')).filter((l) => 'loss' in l).map((l) => l.step as number);
    assert.deepEqual(all, Array.from({ length: 120 }, (_, i) => i + 1), 'metrics.jsonl has every update once');
    assert.ok(fs.existsSync(path.join(output, 'adapter.safetensors')) && fs.existsSync(path.join(output, 'last', 'factors.safetensors')));

    // The sidecar shut down while a launch runs: the launch is cancelled (SIGTERM to its group), so the
    // trainer saves a checkpoint and no process of it outlives the run.
    const stepsBefore = progress.filter((p) => p.kind === 'step').length;
    void s.conn.sendRequest(TrainRequest.type, { uri, runId: 'torch-shutdown', overwrite: true }).catch(() => undefined);
    await s.until(() => progress.filter((p) => p.kind === 'step' && p.runId === 'torch-shutdown').length >= 1, 'an update of the new run', 600_000);
    assert.ok(progress.filter((p) => p.kind === 'step').length > stepsBefore);
    await s.stop();
    const planDir = path.join(output, 'plan');
    await waitFor(() => !trainerProcessesOf(planDir) && fs.existsSync(path.join(output, 'trainer_checkpoint', 'state.pt')), 'the trainer to checkpoint and exit after the sidecar shut down');
  } finally {
    await s.stop();
  }
});

/** Whether a process whose command line names this run's plan folder is still there (ps; our own run only). */
function trainerProcessesOf(planDir: string): boolean {
  const r = spawnSync('ps', ['-eo', 'args'], { encoding: 'utf8' });
  return r.stdout.split('\n').some((l) => l.includes(`--plan ${planDir}`));
}

async function waitFor(cond: () => boolean, what: string, ms = 180_000): Promise<void> {
  const until = Date.now() + ms;
  while (!cond()) {
    assert.ok(Date.now() < until, `timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}
