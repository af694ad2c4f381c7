/**
 * `loraxs launch`: the config trained by PyTorch + Accelerate (trainer/train.py) from the engine's run plan,
 * on CPU here (gloo, 1 and 2 processes on one machine). What it checks:
 *   - per-step losses of `launch --processes 1` and `--processes 2` equal `loraxs train`'s within 1e-4
 *     relative (SGD, shuffle off, init_std 0, dropout 0), with global batches that do not divide by 2
 *     (5 of 22 BERT examples; 3 of 19 stories260K texts with 2 accumulated batches);
 *   - every metrics.jsonl line is valid against sidecar/metrics_line.schema.json;
 *   - the trainer's adapter (engine format, factors inside) evaluated by `loraxs eval` gives the trainer's
 *     last validation metrics within 1e-4;
 *   - `loraxs merge` of that adapter, run by transformers, gives the logits of the trainer's own merge
 *     (ΔW folded into W in PyTorch) within 1e-4 of max(1, |logit|), on BERT and stories260K;
 *   - a rank that dies (LORAXS_TRAINER_FAIL) stops the run with exit 1 and that rank's error;
 *   - a 2-process run stopped after update 4 and resumed on 1 process ends with the uninterrupted runs'
 *     adapter (1e-6 relative);
 *   - the `--dry-run` Accelerate configs for --fsdp, --deepspeed and two machines load in Accelerate's own
 *     config loader.
 * Needs the trainer's Python (.venv-trainer with trainer/requirements.txt; .ci/run installs it): the tests
 * skip with a message when it is missing.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { makeWorkspace } from './workspace';
import { repoRoot, stories260k, needsShared, tempDir } from './paths';
import { readValidatedMetrics } from './metrics_schema';
import { readSafetensorsHeader, readTensorFloat32 } from '../sidecar/io/safetensors';
import { parseConfigText } from '../sidecar/config/parse';

const python = path.join(repoRoot, '.venv-trainer', 'bin', 'python');

function trainerMissing(): string | false {
  if (!fs.existsSync(python)) {
    return `skipped: the trainer's Python ${python} is missing (install: python3 -m venv .venv-trainer && .venv-trainer/bin/pip install -r trainer/requirements.txt; .ci/run does it)`;
  }
  const r = spawnSync(python, ['-c', 'import torch, accelerate, transformers, safetensors'], { encoding: 'utf8' });
  return r.status === 0 ? false : `skipped: ${python} cannot import torch/accelerate/transformers: ${r.stderr.trim().split('\n').pop()}`;
}
const missing = trainerMissing();
const cacheDir = tempDir('loraxs-launch-cache-');

function cli(cwd: string, args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [path.join(repoRoot, 'bin', 'loraxs.js'), ...args], {
    cwd, encoding: 'utf8', env: { ...process.env, LORAXS_CACHE_DIR: cacheDir, ...env }, maxBuffer: 64 << 20,
  });
  assert.equal(r.status, 0, `loraxs ${args.join(' ')} failed (${r.status}):\n${r.stderr.slice(-4000)}`);
  return r;
}

const metricsLines = (file: string): Array<Record<string, unknown>> => readValidatedMetrics(file);

const losses = (lines: Array<Record<string, unknown>>): number[] => lines.filter((l) => 'loss' in l).map((l) => l.loss as number);
const evals = (lines: Array<Record<string, unknown>>): Array<Record<string, number>> => lines.filter((l) => 'eval' in l).map((l) => l.eval as Record<string, number>);
const relDiff = (a: number, b: number): number => Math.abs(a - b) / Math.max(Math.abs(a), 1e-12);

/** Largest relative difference of two loss curves (same length asserted). */
function maxRel(a: number[], b: number[]): number {
  assert.equal(a.length, b.length, `loss curves of ${a.length} and ${b.length} updates`);
  return Math.max(...a.map((x, i) => relDiff(x, b[i])));
}

/** Every tensor of an adapter's adapter.safetensors and head.safetensors, by file and name. */
function adapterTensors(dir: string): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  for (const f of ['adapter.safetensors', 'head.safetensors']) {
    if (!fs.existsSync(path.join(dir, f))) continue;
    const h = readSafetensorsHeader(path.join(dir, f));
    for (const name of h.tensors.keys()) out.set(`${f}:${name}`, readTensorFloat32(h, name));
  }
  return out;
}

/** max |a − b| / max |a| over every tensor. */
function adapterRelDiff(a: Map<string, Float32Array>, b: Map<string, Float32Array>): number {
  assert.deepEqual([...a.keys()].sort(), [...b.keys()].sort());
  let worst = 0;
  for (const [name, x] of a) {
    const y = b.get(name)!;
    const scale = Math.max(...x.map(Math.abs), 1e-12);
    for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(x[i] - y[i]) / scale);
  }
  return worst;
}

test('the compute: section is validated and completed', () => {
  const ok = parseConfigText('model: m\nadapter: {}\ncompute: {backend: torch, processes: 2, python: venv/bin/python}\n', '/x/a.loraxs.yaml');
  assert.deepEqual(ok.problems.filter((p) => p.severity === 'error'), []);
  assert.deepEqual(ok.config?.compute, { backend: 'torch', python: '/x/venv/bin/python', processes: 2, mixedPrecision: 'no', gradientCheckpointing: false });
  const bad = parseConfigText('model: m\nadapter: {}\ncompute: {backend: cuda, processes: 0, mixed_precision: fp8}\n', '/x/a.loraxs.yaml');
  const errors = bad.problems.filter((p) => p.severity === 'error').map((p) => p.path?.join('.'));
  for (const key of ['compute.backend', 'compute.processes', 'compute.mixed_precision']) assert.ok(errors.includes(key), `${key} not flagged: ${JSON.stringify(bad.problems)}`);
  assert.equal(parseConfigText('model: m\nadapter: {}\n', '/x/a.loraxs.yaml').config?.compute, undefined);
});

/**
 * `loraxs merge` of the trainer's last adapter into a new folder, whose logits transformers computes (in
 * the trainer's Python) on the inputs of `<run>/merged_logits.safetensors`, where the trainer wrote its own
 * merged model's logits (ΔW folded into W in PyTorch). Returns max |Δ| over the unpadded positions, relative
 * to max(1, max |logit|), and how far the same model with the base weights back (no ΔW; its head kept) is
 * from the trainer's merged logits.
 */
function mergedLogitsDiff(dir: string, configName: string, run: string, task: 'classification' | 'causal-lm', baseModel: string): { diff: number; fromBase: number } {
  const merged = path.join(dir, `${run}-merged`);
  cli(dir, ['merge', configName, '--adapter', path.join(dir, run, 'last'), '--out', merged]);
  const r = spawnSync(python, ['-c', `
import json, sys, torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification
ref = load_file(sys.argv[1])
x = {k: ref[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in ref}
auto = AutoModelForCausalLM if sys.argv[4] == "causal-lm" else AutoModelForSequenceClassification
def logits(m):
    with torch.no_grad():
        return m.eval()(**x).logits.float()
mask = x["attention_mask"].bool()
pick = (lambda t: t[mask]) if sys.argv[4] == "causal-lm" else (lambda t: t)
want = pick(ref["logits"])
scale = max(1.0, float(want.abs().max()))
merged = auto.from_pretrained(sys.argv[2], dtype=torch.float32, attn_implementation="eager")
diff = float((pick(logits(merged)) - want).abs().max()) / scale
# The merged model with the base model's weights back (its task head kept): what a merge without ΔW gives.
base = auto.from_pretrained(sys.argv[3], config=merged.config, ignore_mismatched_sizes=True, dtype=torch.float32, attn_implementation="eager").state_dict()
own = merged.state_dict()
merged.load_state_dict({k: v for k, v in base.items() if k in own and v.shape == own[k].shape and k.split(".")[0] not in ("classifier", "score")}, strict=False)
print(json.dumps({"diff": diff, "from_base": float((pick(logits(merged)) - want).abs().max()) / scale}))
`, path.join(dir, run, 'merged_logits.safetensors'), merged, baseModel, task], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as { diff: number; from_base: number };
  return { diff: out.diff, fromBase: out.from_base };
}

/** Runs train, launch -p1, launch -p2 on copies of one config; returns the three metrics logs. */
function threeRuns(dir: string, yaml: (out: string) => string) {
  for (const name of ['train', 'l1', 'l2']) fs.writeFileSync(path.join(dir, `${name}.loraxs.yaml`), yaml(`out-${name}`));
  cli(dir, ['train', 'train.loraxs.yaml']);
  const l1 = cli(dir, ['launch', 'l1.loraxs.yaml', '--processes', '1', '--cpu']);
  assert.match(l1.stdout, /^finished/);
  cli(dir, ['launch', 'l2.loraxs.yaml', '--processes', '2', '--cpu']);
  return ['train', 'l1', 'l2'].map((n) => metricsLines(path.join(dir, `out-${n}`, 'metrics.jsonl')));
}

test('BERT classification: launch on 1 and 2 processes gives the engine\'s losses; its adapter evaluates the same in loraxs eval; stop + resume on another process count', { skip: missing }, () => {
  const ws = makeWorkspace('bert', 'seq-cls', { train: 22, dev: 12 });
  const yaml = (out: string) => `model: model
task: classification
data: { train: train.tsv, validation: dev.tsv, text: sentence, label: label }
adapter: { rank: 4, targets: [query, value, output.dense], init_std: 0 }
training: { epochs: 2, batch_size: 5, optimizer: sgd, lr: 0.5, head_lr: 0.5, warmup_ratio: 0.1, seed: 7, shuffle: false, dropout: 0 }
output: ${out}
`;
  const [engine, l1, l2] = threeRuns(ws.dir, yaml);
  const e = losses(engine);
  assert.equal(e.length, 10); // ceil(22 / 5) = 5 batches (5, 5, 5, 5, 2) × 2 epochs
  const d1 = maxRel(e, losses(l1));
  const d2 = maxRel(e, losses(l2));
  console.log(`BERT: max relative loss difference vs the engine: 1 process ${d1.toExponential(2)}, 2 processes ${d2.toExponential(2)}`);
  assert.ok(d1 < 1e-4 && d2 < 1e-4, `${d1} ${d2}`);
  const steps = l2.filter((l) => 'loss' in l);
  assert.ok(steps.every((s) => s.processes === 2 && typeof s.device === 'string'));
  assert.ok(l1.filter((l) => 'loss' in l).every((s) => s.processes === 1));
  // Validation metrics agree with the engine's too (baseline and both epochs).
  const ee = evals(engine);
  for (const run of [l1, l2]) {
    const le = evals(run);
    assert.equal(le.length, ee.length);
    le.forEach((m, i) => {
      assert.ok(relDiff(ee[i].loss, m.loss) < 1e-4, `eval ${i}: ${ee[i].loss} vs ${m.loss}`);
      assert.equal(m.accuracy, ee[i].accuracy);
    });
  }

  // The trainer's last adapter (factors inside) in the engine's own eval.
  const adapter = path.join(ws.dir, 'out-l2', 'last');
  assert.ok(fs.existsSync(path.join(adapter, 'factors.safetensors')));
  const ev = JSON.parse(cli(ws.dir, ['eval', 'l2.loraxs.yaml', '--adapter', adapter, '--json']).stdout) as Record<string, number>;
  const last = evals(l2).at(-1)!;
  for (const k of Object.keys(last)) assert.ok(Math.abs(ev[k] - last[k]) <= 1e-4 * Math.max(1, Math.abs(last[k])), `${k}: loraxs eval ${ev[k]}, trainer ${last[k]}`);

  // `loraxs merge` of the trainer's adapter gives the logits of the trainer's own merge (ΔW into W in PyTorch).
  const m = mergedLogitsDiff(ws.dir, 'l2.loraxs.yaml', 'out-l2', 'classification', path.join(ws.dir, 'model'));
  console.log(`BERT: loraxs merge vs the trainer's merged logits: max |Δ| ${m.diff.toExponential(2)} (without ΔW: ${m.fromBase.toExponential(2)})`);
  assert.ok(m.diff <= 1e-4, `merged logits differ by ${m.diff}`);
  assert.ok(m.fromBase > 1e-3, `the adapter changed the logits by only ${m.fromBase}: the comparison would not see a missing ΔW`);

  // Stopped after update 4 on 2 processes (every rank at the same update), then resumed. On 2 processes the
  // resumed run is the uninterrupted 2-process run (same sums in the same order). On 1 process the later
  // updates sum each batch in another order: float32 rounding only, so it must be no farther from the
  // uninterrupted 2-process run than the uninterrupted 1-process run is (measured here: about 1e-6 relative
  // after 10 SGD updates at lr 0.5).
  const stopAndResume = (out: string, processes: string): Map<string, Float32Array> => {
    ws.config(out, yaml(out));
    const stopped = cli(ws.dir, ['launch', `${out}.loraxs.yaml`, '--processes', '2', '--cpu'], { LORAXS_TRAINER_STOP_AFTER: '4' });
    assert.match(stopped.stdout, /^cancelled/);
    assert.ok(fs.existsSync(path.join(ws.dir, out, 'trainer_checkpoint', 'state.pt')));
    assert.equal(losses(metricsLines(path.join(ws.dir, out, 'metrics.jsonl'))).length, 4);
    cli(ws.dir, ['launch', `${out}.loraxs.yaml`, '--processes', processes, '--cpu', '--resume']);
    const resumed = metricsLines(path.join(ws.dir, out, 'metrics.jsonl'));
    assert.ok(maxRel(losses(l2), losses(resumed)) < 1e-6);
    return adapterTensors(path.join(ws.dir, out, 'last'));
  };
  const a1 = adapterTensors(path.join(ws.dir, 'out-l1', 'last'));
  const a2 = adapterTensors(path.join(ws.dir, 'out-l2', 'last'));
  const same = adapterRelDiff(a2, stopAndResume('out-r2', '2'));
  const other = stopAndResume('out-r1', '1');
  const dr2 = adapterRelDiff(a2, other);
  const d12 = adapterRelDiff(a2, a1);
  console.log(`resume: stopped on 2 processes, resumed on 2: ${same.toExponential(2)} relative to the uninterrupted 2-process run; resumed on 1: ${dr2.toExponential(2)} (the uninterrupted 1-process run: ${d12.toExponential(2)}; to it: ${adapterRelDiff(a1, other).toExponential(2)})`);
  assert.ok(same <= 1e-7, `resumed on the same process count: ${same}`);
  assert.ok(dr2 <= Math.max(1e-6, 1.5 * d12) && dr2 < 1e-5, `resumed on 1 process: ${dr2} from the 2-process run (1-process run: ${d12})`);
});

test('stories260K causal LM: launch on 1 and 2 processes gives the engine\'s losses (batch 3, 2 accumulated); loraxs eval of its adapter', { skip: missing || needsShared(stories260k) }, () => {
  const dir = tempDir('loraxs-launch-clm-');
  const words = 'once upon a time there was a little girl named lily she loved to play outside in the park one day saw big red ball and her mom said'.split(' ');
  let x = 3;
  const next = (): number => (x = (Math.imul(x, 1664525) + 1013904223) >>> 0) / 4294967296;
  const rows = Array.from({ length: 26 }, () => Array.from({ length: 5 + Math.floor(next() * 10) }, () => words[Math.floor(next() * words.length)]).join(' ') + '.');
  fs.writeFileSync(path.join(dir, 'train.tsv'), 'text\n' + rows.slice(0, 19).join('\n') + '\n');
  fs.writeFileSync(path.join(dir, 'dev.tsv'), 'text\n' + rows.slice(19).join('\n') + '\n');
  const yaml = (out: string) => `model: ${stories260k}
task: causal-lm
data: { train: train.tsv, validation: dev.tsv, text: text }
adapter: { rank: 4, targets: [q_proj, v_proj, down_proj], init_std: 0 }
training: { epochs: 2, batch_size: 3, grad_accum_steps: 2, optimizer: sgd, lr: 0.5, warmup_ratio: 0, seed: 5, shuffle: false, dropout: 0, max_length: 32 }
output: ${out}
`;
  const [engine, l1, l2] = threeRuns(dir, yaml);
  const e = losses(engine);
  assert.equal(e.length, 8); // ceil(19 / 3) = 7 batches, ceil(7 / 2) = 4 updates × 2 epochs
  const d1 = maxRel(e, losses(l1));
  const d2 = maxRel(e, losses(l2));
  console.log(`stories260K: max relative loss difference vs the engine: 1 process ${d1.toExponential(2)}, 2 processes ${d2.toExponential(2)}`);
  assert.ok(d1 < 1e-4 && d2 < 1e-4, `${d1} ${d2}`);
  const ev = JSON.parse(cli(dir, ['eval', 'l1.loraxs.yaml', '--adapter', path.join(dir, 'out-l1', 'last'), '--json']).stdout) as Record<string, number>;
  const last = evals(l1).at(-1)!;
  assert.ok(relDiff(last.loss, ev.loss) < 1e-4, `loraxs eval ${ev.loss}, trainer ${last.loss}`);
  assert.ok(relDiff(last.perplexity, ev.perplexity) < 1e-4);
  const m = mergedLogitsDiff(dir, 'l2.loraxs.yaml', 'out-l2', 'causal-lm', stories260k);
  console.log(`stories260K: loraxs merge vs the trainer's merged logits: max |Δ| ${m.diff.toExponential(2)} (without ΔW: ${m.fromBase.toExponential(2)})`);
  assert.ok(m.diff <= 1e-4, `merged logits differ by ${m.diff}`);
  assert.ok(m.fromBase > 1e-3, `the adapter changed the logits by only ${m.fromBase}`);
});

test('a rank that dies stops the run with its error (exit 1, the rank and its message on stderr), not a hang', { skip: missing }, () => {
  const ws = makeWorkspace('bert', 'seq-cls', { train: 22, dev: 4 });
  ws.config('f', `model: model
task: classification
data: { train: train.tsv, text: sentence, label: label }
adapter: { rank: 4, targets: [query, value] }
training: { epochs: 3, batch_size: 5, optimizer: sgd, lr: 0.1, shuffle: false, dropout: 0 }
output: out
`);
  const r = spawnSync(process.execPath, [path.join(repoRoot, 'bin', 'loraxs.js'), 'launch', 'f.loraxs.yaml', '--processes', '2', '--cpu'], {
    cwd: ws.dir, encoding: 'utf8', env: { ...process.env, LORAXS_CACHE_DIR: cacheDir, LORAXS_TRAINER_FAIL: '1:2' }, maxBuffer: 64 << 20,
  });
  assert.equal(r.status, 1, r.stderr.slice(-3000));
  const last = r.stderr.trim().split('\n').pop()!;
  assert.match(last, /the trainer failed \(accelerate launch exited with \d+\): rank 1: RuntimeError: LORAXS_TRAINER_FAIL: rank 1 fails after update 2/, r.stderr.slice(-3000));
  assert.equal(losses(metricsLines(path.join(ws.dir, 'out', 'metrics.jsonl'))).length, 2, 'rank 0 logged the two updates before rank 1 died');
});

test('--dry-run: the Accelerate configs for --fsdp, --deepspeed and two machines load in Accelerate\'s config loader', { skip: missing }, () => {
  const ws = makeWorkspace('bert', 'seq-cls', { train: 8, dev: 4 });
  ws.config('d', `model: model
task: classification
data: { train: train.tsv, validation: dev.tsv, text: sentence, label: label }
adapter: { rank: 4, targets: [query, value] }
compute: { backend: torch, processes: 8, mixed_precision: bf16 }
output: out
`);
  const ds = ws.write('ds.json', JSON.stringify({ zero_optimization: { stage: 3 }, train_micro_batch_size_per_gpu: 'auto', gradient_accumulation_steps: 1 }));
  const cases: Array<{ args: string[]; type: string; processes: number; machines: number }> = [
    { args: ['--fsdp'], type: 'FSDP', processes: 8, machines: 1 },
    { args: ['--deepspeed', ds], type: 'DEEPSPEED', processes: 8, machines: 1 },
    { args: ['--nnodes', '2', '--node-rank', '1', '--main', '10.1.2.3:29400'], type: 'MULTI_GPU', processes: 16, machines: 2 },
  ];
  for (const c of cases) {
    const out = cli(ws.dir, ['launch', 'd.loraxs.yaml', ...c.args, '--dry-run']).stdout;
    assert.match(out, /accelerate\.commands\.launch --config_file \S+accelerate_config\.yaml \S+trainer\/train\.py --plan \S+ --mixed-precision bf16/);
    assert.ok(!fs.existsSync(path.join(ws.dir, 'out')), 'a dry run writes nothing');
    const file = ws.write('acc.yaml', out.slice(out.indexOf('\n# ') + 1).split('\n').slice(1).join('\n'));
    const r = spawnSync(python, ['-c', `
import json, sys
from accelerate.commands.config.config_args import load_config_from_file
c = load_config_from_file(sys.argv[1])
print(json.dumps({"type": str(c.distributed_type).split(".")[-1], "processes": c.num_processes, "machines": c.num_machines, "rank": c.machine_rank, "ip": c.main_process_ip, "mixed": str(c.mixed_precision), "ds": c.deepspeed_config, "fsdp": c.fsdp_config}))
`, file], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const parsed = JSON.parse(r.stdout.trim().split('\n').pop()!);
    assert.equal(parsed.type, c.type);
    assert.equal(parsed.processes, c.processes);
    assert.equal(parsed.machines, c.machines);
    assert.match(parsed.mixed, /bf16/);
    if (c.type === 'FSDP') assert.equal(parsed.fsdp.fsdp_version, 2);
    if (c.type === 'DEEPSPEED') assert.equal(parsed.ds.deepspeed_config_file, ds);
    if (c.machines === 2) {
      assert.equal(parsed.rank, 1);
      assert.equal(parsed.ip, '10.1.2.3');
    }
  }
});
