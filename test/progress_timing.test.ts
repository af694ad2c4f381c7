/**
 * Elapsed time and ETA: the CLI's progress line and the training panel's state (webview/training_runs.ts)
 * read the engine's `elapsed_s` / `eta_s` of each update line, and fall back to arrival times for lines
 * without them.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { applyUpdate, emptyState, runTiming } from '../webview/training_runs';
import { formatDuration, stderrProgress } from '../sidecar/cli/progress';
import type { StepRecord } from '../sidecar/records';

const step = (n: number, extra: Partial<StepRecord> = {}): StepRecord => ({ step: n, epoch: 1, loss: 1, lr: 1e-3, tokens_per_s: 100, total_steps: 10, ...extra });

test('the panel shows the engine\'s elapsed time and ETA, from live updates and from metrics.jsonl alike', () => {
  const state = emptyState();
  applyUpdate(state, { type: 'progress', progress: { runId: 'r', kind: 'step', record: step(4, { elapsed_s: 20, eta_s: 30 }) } } as never, 1000);
  assert.deepEqual(runTiming(state.runs[0]), { elapsed_s: 20, eta_s: 30 });
  applyUpdate(state, { type: 'load', runId: 'l', title: 'l', output: '/o', records: [step(1, { elapsed_s: 5, eta_s: 45 }), step(10, { elapsed_s: 50, eta_s: 0 })] } as never, 0);
  assert.deepEqual(runTiming(state.runs[1]), { elapsed_s: 50, eta_s: 0 });
  // Lines without timing (older runs): arrival times, 2 s per update, 7 updates left.
  const old = emptyState();
  applyUpdate(old, { type: 'progress', progress: { runId: 'o', kind: 'step', record: step(2) } } as never, 10_000);
  assert.deepEqual(runTiming(old.runs[0]), { elapsed_s: null, eta_s: null });
  applyUpdate(old, { type: 'progress', progress: { runId: 'o', kind: 'step', record: step(3) } } as never, 12_000);
  assert.deepEqual(runTiming(old.runs[0]), { elapsed_s: 2, eta_s: 14 });
});

test('CLI progress lines carry elapsed time and ETA', () => {
  assert.equal(formatDuration(42.4), '42s');
  assert.equal(formatDuration(185), '3m05s');
  assert.equal(formatDuration(3720), '1h02m');
  const written: string[] = [];
  const original = process.stderr.write.bind(process.stderr);
  (process.stderr as unknown as { write: (s: string) => boolean }).write = (s: string) => {
    written.push(s);
    return true;
  };
  try {
    const draw = stderrProgress();
    draw({ kind: 'step', record: step(10, { elapsed_s: 185, eta_s: 0 }) } as never);
    draw({ kind: 'step', record: step(5, { elapsed_s: 65, eta_s: 70 }) } as never);
  } finally {
    (process.stderr as unknown as { write: typeof original }).write = original;
  }
  const text = written.join('');
  assert.match(text, /step 10\/10 .* 3m05s elapsed(?!, ETA)/);
});
