/**
 * Baselines and task metrics: `adapter: none` / `--head-only` train only the head and are refused for causal
 * LMs ("nothing to train"); `loraxs eval` without --adapter scores the base model, and a classification model
 * without a trained head is a clear error; `training.eval_generate` extracts answers (GSM8K `#### N` or a
 * regex) and scores exact match, written to metrics.jsonl as `exact_match` (validated against
 * sidecar/metrics_line.schema.json). With ../shared: stories260K before and after LoRA-XS training on the
 * committed arithmetic set (test/fixtures/arithmetic), numbers printed as measured. Chat data: a tiny llama
 * trains on data.messages and saves the template with the adapter and into the merged model.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { loadConfig, parseConfigText } from '../sidecar/config/parse';
import { extractAnswer, sameAnswer } from '../sidecar/train/eval_generate';
import { evaluateRun } from '../sidecar/engine/evaluate';
import { runJob } from '../sidecar/engine/jobs';
import { makeWorkspace } from './workspace';
import { fixtures, needsShared, repoRoot, stories260k, tempDir } from './paths';
import { readValidatedMetrics } from './metrics_schema';

process.env.LORAXS_CACHE_DIR ??= tempDir('loraxs-cache-');

function cli(args: string[], cwd?: string) {
  return spawnSync(process.execPath, [path.join(repoRoot, 'bin', 'loraxs.js'), ...args], { encoding: 'utf8', cwd, env: { ...process.env, LORAXS_BACKEND: 'wasm' } });
}

const metricsLines = (file: string): Array<Record<string, unknown>> => readValidatedMetrics(file);

test('answers: GSM8K `#### N` (commas dropped, numbers compared as numbers) or a regex group', () => {
  assert.equal(extractAnswer('so 3 + 4 = 7.\n#### 7', 'gsm8k'), '7');
  assert.equal(extractAnswer('#### 1,234 apples', 'gsm8k'), '1234');
  assert.equal(extractAnswer('#### -3.5', 'gsm8k'), '-3.5');
  assert.equal(extractAnswer('the answer is 7', 'gsm8k'), null);
  assert.equal(extractAnswer('the answer is 7.', 'answer is (\\d+)'), '7');
  assert.equal(extractAnswer('B) blue', '[A-D]\\)'), 'B)');
  assert.ok(sameAnswer('7', '7.0') && sameAnswer('1,000', '1000') && !sameAnswer('7', '8') && sameAnswer('B)', ' B)'));
  assert.throws(() => extractAnswer('x', '(unclosed'), /not a valid regular expression/);
});

test('config: adapter: none is a head-only baseline; refused for causal-lm; eval_generate and data.messages parse', () => {
  const ws = makeWorkspace('llama', 'causal-lm');
  const head = parseConfigText('model: model\ntask: classification\nadapter: none\ndata: {train: train.tsv, text: sentence, label: label}\n', path.join(ws.dir, 'a.loraxs.yaml'));
  assert.equal(head.config?.headOnly, true, JSON.stringify(head.problems));
  const causal = parseConfigText('model: model\ntask: causal-lm\nadapter: none\ndata: {train: train.tsv, text: sentence}\n', path.join(ws.dir, 'b.loraxs.yaml'));
  assert.equal(causal.config, null);
  assert.match(causal.problems.map((p) => p.message).join('\n'), /nothing to train/);
  const eg = parseConfigText('model: model\ntask: causal-lm\nadapter: {rank: 2}\ndata: {train: t.jsonl, messages: conv, chat_template: chat.jinja}\n'
    + 'training: {eval_generate: {max_tokens: 8}}\n', path.join(ws.dir, 'c.loraxs.yaml'));
  assert.deepEqual(eg.problems.filter((p) => p.severity === 'error'), []);
  assert.deepEqual(eg.config!.training.evalGenerate, { maxTokens: 8, answerPattern: 'gsm8k', limit: null });
  assert.equal(eg.config!.data!.messages, 'conv');
  assert.equal(eg.config!.data!.chatTemplate, path.join(ws.dir, 'chat.jinja'));
  const both = parseConfigText('model: model\ntask: causal-lm\nadapter: {}\ndata: {train: t.jsonl, messages: conv, text: x}\n', path.join(ws.dir, 'd.loraxs.yaml'));
  assert.match(both.problems.map((p) => p.message).join('\n'), /data\.messages alone/);
});

test('CLI: --head-only trains a classification head; refused for a causal LM; eval without --adapter needs a trained head', () => {
  const ws = makeWorkspace('llama', 'seq-cls', { train: 16, dev: 8 });
  const cls = ws.config('cls', 'model: model\ntask: classification\nadapter: {rank: 2}\ndata: {train: train.tsv, validation: dev.tsv, text: sentence, label: label}\n'
    + 'training: {epochs: 1, batch_size: 8, max_length: 16}\noutput: runs/cls\n');
  const r = cli(['train', cls, '--head-only', '--json']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /training 0 LoRA-XS parameters/);
  // The tiny seq-cls checkpoint has transformers' score.weight: a trained head, so the base scores.
  const base = cli(['eval', cls, '--json']);
  assert.equal(base.status, 0, base.stderr);
  assert.ok(typeof JSON.parse(base.stdout).accuracy === 'number', base.stdout);
  // The causal-LM checkpoint has no classification head.
  const causalWs = makeWorkspace('llama', 'causal-lm', { train: 16, dev: 8 });
  const noHead = causalWs.config('nohead', 'model: model\ntask: classification\nadapter: {rank: 2}\ndata: {train: train.tsv, validation: dev.tsv, text: sentence, label: label}\n');
  const e = cli(['eval', noHead]);
  assert.notEqual(e.status, 0);
  assert.match(e.stderr, /no trained classification head \(score\.weight is not in its checkpoint\).*--adapter/);
  const lm = causalWs.config('lm', 'model: model\ntask: causal-lm\nadapter: {rank: 2}\ndata: {train: train.tsv, validation: dev.tsv, text: sentence}\ntraining: {epochs: 1, max_length: 16}\n');
  const refused = cli(['train', lm, '--head-only']);
  assert.notEqual(refused.status, 0);
  assert.match(refused.stderr, /--head-only trains only a classification or regression head.*nothing to train/);
  const lmBase = cli(['eval', lm, '--json']);
  assert.equal(lmBase.status, 0, lmBase.stderr);
  assert.ok(JSON.parse(lmBase.stdout).perplexity > 1, lmBase.stdout);
});

test('chat data: a tiny llama trains on data.messages; the template is saved with the adapter and in the merged model', async () => {
  const ws = makeWorkspace('llama', 'causal-lm');
  // Words of the workspace's word-level vocabulary only (it has no unknown token); untagged: prefix rendering.
  const template = "{% for m in messages %}{% if m.role == 'assistant' %}a {{ m.content }} </s> {% else %}the {{ m.content }} {% endif %}{% endfor %}{% if add_generation_prompt %}a {% endif %}";
  fs.writeFileSync(path.join(ws.dir, 'chat.jinja'), template);
  const conv = (a: string, b: string) => JSON.stringify({ conv: [{ role: 'user', content: a }, { role: 'assistant', content: b }, { role: 'user', content: b }, { role: 'assistant', content: a }] });
  fs.writeFileSync(path.join(ws.dir, 'chat.jsonl'), ['the movie was good', 'a film is bad', 'the plot was dull', 'great acting'].map((t, i) => conv(t, `the story ${i % 2 ? 'was fun' : 'is great'}`)).join('\n') + '\n');
  const file = ws.config('chat', 'model: model\ntask: causal-lm\nadapter: {rank: 2}\ndata: {train: chat.jsonl, validation: chat.jsonl, messages: conv, chat_template: chat.jinja}\n'
    + 'training: {epochs: 1, batch_size: 2, max_length: 32, eval_generate: {max_tokens: 4, answer_pattern: "(\\\\w+)"}}\noutput: runs/chat\n');
  const job = await runJob({ kind: 'train', configFile: file, resume: false }, () => {});
  assert.equal(job.kind, 'train');
  const out = path.join(ws.dir, 'runs', 'chat');
  assert.equal(fs.readFileSync(path.join(out, 'chat_template.jinja'), 'utf8'), template);
  const evals = metricsLines(path.join(out, 'metrics.jsonl')).filter((l) => 'eval' in l);
  assert.ok(evals.length >= 2);
  for (const l of evals) assert.ok(typeof (l.eval as Record<string, number>).exact_match === 'number', JSON.stringify(l));
  const merged = path.join(ws.dir, 'merged');
  const m = await runJob({ kind: 'merge', configFile: file, adapterDir: out, outDir: merged }, () => {});
  assert.equal(m.kind, 'folder');
  assert.equal(fs.readFileSync(path.join(merged, 'chat_template.jinja'), 'utf8'), template);
});

test('stories260K on the arithmetic set: exact match of the base model and after LoRA-XS training (as measured)', { skip: needsShared(stories260k) }, async () => {
  const dir = tempDir();
  const data = path.join(fixtures, 'arithmetic');
  const file = path.join(dir, 'arith.loraxs.yaml');
  fs.writeFileSync(file, `model: ${stories260k}\ntask: causal-lm\ndata: {train: ${data}/train.jsonl, validation: ${data}/validation.jsonl, prompt: question, response: answer}\n`
    + 'adapter: {rank: 8, alpha: 16}\ntraining: {epochs: 3, batch_size: 16, lr: 2.0e-2, max_length: 48, warmup_ratio: 0.0, eval_generate: {max_tokens: 20, answer_pattern: gsm8k}}\n'
    + `output: ${dir}/run\n`);
  const config = loadConfig(file, { requireTraining: true });
  const base = await evaluateRun(config, undefined);
  const job = await runJob({ kind: 'train', configFile: file, resume: false }, () => {});
  assert.equal(job.kind, 'train');
  const evals = metricsLines(path.join(dir, 'run', 'metrics.jsonl')).filter((l) => 'eval' in l).map((l) => l.eval as Record<string, number>);
  const last = evals[evals.length - 1];
  console.log(`stories260K arithmetic exact match (40 validation questions): base ${base.exact_match} (perplexity ${base.perplexity.toFixed(2)}); `
    + `after ${evals.length - 1} evaluations of LoRA-XS r 8: ${evals.map((e) => e.exact_match).join(' -> ')} (perplexity ${last.perplexity.toFixed(2)})`);
  // Exact match is the fraction of the 40 questions answered exactly: k / 40 for a whole k, for both models.
  for (const em of [base.exact_match, last.exact_match]) {
    assert.ok(em >= 0 && em <= 1 && Math.abs(em * 40 - Math.round(em * 40)) < 1e-9, `exact_match ${em} is not k/40`);
  }
  assert.ok(last.perplexity < base.perplexity, 'training lowers validation perplexity');
});
