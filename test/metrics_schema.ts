/**
 * Reading a run's metrics.jsonl in tests: every line parsed and validated against the schema the engine
 * publishes (sidecar/metrics_line.schema.json), which the PyTorch trainer's lines must match too.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import Ajv from 'ajv';
import { repoRoot } from './paths';

const validate = new Ajv({ allErrors: true, strict: true })
  .compile(JSON.parse(fs.readFileSync(path.join(repoRoot, 'sidecar', 'metrics_line.schema.json'), 'utf8')));

/** Every line of `file`, each asserted valid against the schema. */
export function readValidatedMetrics<T = Record<string, unknown>>(file: string): T[] {
  const lines = fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.trim());
  assert.ok(lines.length > 0, `${file} has lines`);
  return lines.map((l, i) => {
    const rec = JSON.parse(l);
    assert.ok(validate(rec), `${file}:${i + 1} does not match the schema: ${JSON.stringify(validate.errors)}\n${l}`);
    return rec as T;
  });
}
