/**
 * `loraxs/train` and `loraxs/cancelTraining` over the real LSP protocol: a one-epoch run on a tiny BERT
 * completes in the sidecar's worker thread, streams progress notifications that match metrics.jsonl,
 * reports busy/idle status, refuses a second run while one is going, and stops early when cancelled
 * (leaving a checkpoint to resume from).
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { HoverRequest } from 'vscode-languageserver-protocol/node';
import {
  CancelTrainingRequest, ExportRequest, MergeRequest, ReadMetricsRequest, StatusNotification, TrainProgressNotification, TrainRequest,
} from '../sidecar/protocol';
import { GOOD_CONFIG, makeWorkspace, withSidecar } from './lsp_harness';
import type { MetricsRecord, StepRecord } from '../sidecar/records';

test('loraxs/train runs one epoch, streams step and eval notifications, writes metrics.jsonl; readMetrics returns it', async () => {
  const ws = makeWorkspace();
  const { uri } = ws.config('tiny', GOOD_CONFIG);
  await withSidecar({ trusted: true, rootDir: ws.dir }, async (s) => {
    const progress = s.collect(TrainProgressNotification.type);
    const statuses = s.collect(StatusNotification.type);
    await s.until(() => statuses.some((p) => p.state === 'idle'), 'the backend to initialise');
    const result = await s.conn.sendRequest(TrainRequest.type, { uri, runId: 'run-1' });

    // 12 rows, batch 4: 3 updates in the one epoch.
    assert.equal(result.runId, 'run-1');
    assert.equal(result.cancelled, false);
    assert.equal(result.steps, 3);
    assert.equal(result.totalSteps, 3);
    assert.equal(result.output, path.join(ws.dir, 'runs', 'tiny'));
    // LoRA-XS: 4 modules × 4² = 64 parameters, stored as float32 in adapter.safetensors (plus its header).
    assert.equal(result.adapterParams, 64);
    assert.ok(result.adapterBytes > 64 * 4, `adapter file of ${result.adapterBytes} bytes holds 256 bytes of R`);
    assert.ok(fs.existsSync(path.join(result.adapterDir, 'adapter.safetensors')));

    const steps = progress.filter((p) => p.kind === 'step');
    assert.ok(steps.every((p) => p.runId === 'run-1'));
    assert.deepEqual(steps.map((p) => (p as { record: StepRecord }).record.step), [1, 2, 3]);
    const evals = progress.filter((p) => p.kind === 'eval');
    assert.deepEqual(evals.map((p) => (p as { record: { step: number } }).record.step), [0, 3], 'baseline and end-of-epoch evaluations');
    assert.ok(progress.some((p) => p.kind === 'log'), 'log lines are forwarded');

    const lines = fs.readFileSync(path.join(result.output, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as MetricsRecord);
    const loggedSteps = lines.filter((l): l is StepRecord => 'loss' in l);
    assert.deepEqual(loggedSteps.map((l) => l.loss), steps.map((p) => (p as { record: StepRecord }).record.loss),
      'the notifications carry the losses metrics.jsonl records');
    const read = await s.conn.sendRequest(ReadMetricsRequest.type, { uri });
    assert.equal(read.output, result.output);
    assert.deepEqual(read.records, lines);

    const states = statuses.map((p) => p.state);
    const busy = states.indexOf('busy');
    assert.ok(busy >= 0 && states.indexOf('idle', busy) > busy, `busy, then idle: ${states}`);

    // Merge and export the adapter through the same job runner.
    const merged = await s.conn.sendRequest(MergeRequest.type, { uri, adapterDir: result.adapterDir, outDir: path.join(ws.dir, 'merged'), jobId: 'merge-1' });
    assert.equal(merged.outDir, path.join(ws.dir, 'merged'));
    for (const f of ['config.json', 'model.safetensors', 'tokenizer.json']) assert.ok(fs.existsSync(path.join(merged.outDir, f)), `merged/${f}`);
    assert.ok(progress.some((p) => p.runId === 'merge-1' && p.kind === 'log'), 'merge logs carry its job id');
    const exported = await s.conn.sendRequest(ExportRequest.type, { adapterDir: result.adapterDir, format: 'peft-lora', outDir: path.join(ws.dir, 'peft') });
    assert.ok(fs.readdirSync(exported.outDir).includes('adapter_config.json'), `peft export: ${fs.readdirSync(exported.outDir)}`);
  });
});

test('a config error becomes a ResponseError with file:line:col', async () => {
  const ws = makeWorkspace();
  const { uri, file } = ws.config('no-task', GOOD_CONFIG.replace('task: classification\n', ''));
  await withSidecar({ trusted: true, rootDir: ws.dir }, async (s) => {
    await assert.rejects(s.conn.sendRequest(TrainRequest.type, { uri }), (e: Error) => {
      assert.ok(e.message.startsWith(`${file}:1:1: missing key 'task'`), e.message);
      return true;
    });
  });
});

test('a second training is refused while one runs; cancel stops it early with a checkpoint; the server answers during training', async () => {
  const ws = makeWorkspace();
  const long = GOOD_CONFIG.replace('  epochs: 1', '  epochs: 400').replace('  validation: data/dev.tsv\n', '');
  const { uri } = ws.config('long', long);
  await withSidecar({ trusted: true, rootDir: ws.dir }, async (s) => {
    const progress = s.collect(TrainProgressNotification.type);
    const running = s.conn.sendRequest(TrainRequest.type, { uri, runId: 'long-run' });
    await s.until(() => progress.some((p) => p.kind === 'step'), 'the first update');

    await assert.rejects(s.conn.sendRequest(TrainRequest.type, { uri }), /a training run is already running \(long-run\)/);
    s.open(uri, long);
    const hover = await s.conn.sendRequest(HoverRequest.type, { textDocument: { uri }, position: { line: 0, character: 1 } });
    assert.ok(hover, 'hover answers while training runs');

    assert.deepEqual(await s.conn.sendRequest(CancelTrainingRequest.type, { runId: 'other' }), { cancelled: false });
    assert.deepEqual(await s.conn.sendRequest(CancelTrainingRequest.type, { runId: 'long-run' }), { cancelled: true });
    const result = await running;
    assert.equal(result.cancelled, true);
    assert.equal(result.totalSteps, 1200);
    assert.ok(result.steps >= 1 && result.steps < result.totalSteps, `stopped early at ${result.steps}`);
    assert.ok(fs.existsSync(path.join(result.output, 'checkpoint')), 'a checkpoint to resume from');
    assert.deepEqual(await s.conn.sendRequest(CancelTrainingRequest.type, {}), { cancelled: false }, 'nothing runs any more');
  });
});
