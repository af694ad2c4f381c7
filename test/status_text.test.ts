/**
 * The status bar's backend text (extension/status_text.ts) for the statuses the sidecar sends: the engine's
 * wasm (threads) and native TensorFlow, and torch while a launch runs (processes, then the device).
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { backendText } from '../extension/status_text';

test('the status bar names wasm with its threads, tensorflow as native, torch with processes and device', () => {
  assert.deepEqual(backendText({ state: 'idle', backend: 'wasm', threads: 2 }), { short: 'wasm ×2', long: 'wasm (2 threads)' });
  assert.deepEqual(backendText({ state: 'idle', backend: 'wasm', threads: 1 }), { short: 'wasm', long: 'wasm (1 thread)' });
  assert.deepEqual(backendText({ state: 'idle', backend: 'tensorflow' }), { short: 'tensorflow (native)', long: 'tensorflow (native)' });
  assert.deepEqual(backendText({ state: 'busy', backend: 'torch', processes: 2 }), { short: 'torch ×2', long: 'PyTorch + Accelerate, 2 processes' });
  assert.deepEqual(backendText({ state: 'busy', backend: 'torch', processes: 8, device: 'cuda:NVIDIA H200' }),
    { short: 'torch ×8 · cuda:NVIDIA H200', long: 'PyTorch + Accelerate, 8 processes on cuda:NVIDIA H200' });
  assert.deepEqual(backendText({ state: 'starting' }), { short: '', long: 'unknown' });
});
