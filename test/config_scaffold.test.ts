/**
 * "New LoRA-XS Config…" (extension/config_scaffold.ts): the scaffold for each fixture family, written
 * beside a copy of the model with data files where it points, has no problem in the language server's
 * full check (schema, model folder, targets, ranks, data columns, task).
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { defaultTargets, scaffoldConfig } from '../extension/config_scaffold';
import { lintConfig } from '../sidecar/lsp/diagnostics';
import { makeWorkspace, sentences } from './workspace';

const CASES: Array<[string, 'seq-cls' | 'causal-lm']> = [
  ['bert', 'seq-cls'], ['roberta', 'seq-cls'], ['llama', 'causal-lm'], ['qwen2', 'causal-lm'], ['gemma', 'causal-lm'], ['mistral', 'causal-lm'],
];

for (const [family, variant] of CASES) {
  test(`the scaffold for ${family} (${variant}) passes the language server's checks`, () => {
    const ws = makeWorkspace(family, variant);
    const modelConfig = JSON.parse(fs.readFileSync(path.join(ws.model, 'config.json'), 'utf8')) as Record<string, unknown>;
    const text = scaffoldConfig(modelConfig, { modelPath: 'model', output: 'runs/scaffold' });
    const encoder = variant === 'seq-cls';
    fs.mkdirSync(path.join(ws.dir, 'data'));
    const column = encoder ? 'sentence' : 'text';
    const tsv = (n: number, seed: number) => `${column}\tlabel\n` + sentences(n, seed).map((r) => `${r.sentence}\t${r.label}`).join('\n') + '\n';
    ws.write('data/train.tsv', tsv(16, 1));
    ws.write('data/dev.tsv', tsv(8, 2));
    const file = ws.config('scaffold', text);
    const problems = lintConfig(text, file, true);
    assert.deepEqual(problems.map((p) => `${p.severity}: ${p.message}`), [], `problems in\n${text}`);
    assert.match(text, new RegExp(`^task: ${encoder ? 'classification' : 'causal-lm'}$`, 'm'));
    assert.match(text, new RegExp(`^  targets: \\[${defaultTargets(String(modelConfig.model_type)).join(', ')}\\]$`, 'm'));
  });
}

test('the rank never exceeds the model width, max_length never its positions, and odd model paths are quoted', () => {
  const text = scaffoldConfig({ model_type: 'roberta', hidden_size: 8, max_position_embeddings: 66 }, { modelPath: '../my models/x: y', output: 'runs/x' });
  assert.match(text, /^ {2}rank: 8$/m);
  assert.match(text, /^ {2}max_length: 64$/m, 'RoBERTa keeps 2 positions for padding');
  assert.match(text, /^model: "\.\.\/my models\/x: y"$/m);
});
