/**
 * `loraxs launch`, `merge` and `export --format peft-lora` on a model whose architecture the TypeScript engine
 * cannot hold: a tiny random GPT-2 (transformers' GPT2Config, Conv1D layers) built in the test's temp folder
 * with the tokenizer of ../shared/models/stories260k beside it. What it checks:
 *   - the engine plans the batches (tokenizer only) and the trainer trains: the first update's loss equals the
 *     base model's loss on the plan's first batch computed by transformers (SGD, init_std 0) within 1e-4
 *     relative, and the validation loss goes down;
 *   - the saved factors (factors.safetensors, from torch.svd_lowrank on the trainer's device) give B·A equal
 *     to numpy's best rank-r approximation of each adapted W (Conv1D weights transposed) within 1e-4
 *     relative (Frobenius), with the engine's sign convention (the test model's weights get a decaying spectrum,
 *     σ_k = 2·0.7^k, so that the top-r subspace is well defined);
 *   - `launch --processes 2` gives the 1-process losses within 1e-4 relative; a 2-process run stopped after
 *     update 4 and resumed on 1 process ends with the 1-process run's adapter (1e-6 relative);
 *   - `loraxs merge` writes a folder whose transformers logits equal the trainer's merged logits within 1e-4;
 *   - `export --format peft-lora`: loaded in PEFT when it is installed, else its tensors checked: the base
 *     weight plus (lora_B·lora_A)ᵀ (fan_in_fan_out) equals the merged folder's weight within 1e-5;
 *   - bad input: a target that matches no layer, a tied lm_head, a classification task, a user's output folder:
 *     one-line errors, nothing overwritten;
 *   - the trainer's R initialisation equals the engine's (moduleRng + Box-Muller) for init_std > 0;
 *   - a launch whose CLI is killed outright (SIGKILL) stops by itself with a checkpoint at its last update.
 * Skips with a message when ../shared or the trainer's Python (.venv-trainer) is missing.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { cliRunner, loraxsBin } from './cli_harness';
import { repoRoot, stories260k, needsShared, tempDir } from './paths';
import { readValidatedMetrics } from './metrics_schema';
import { initR, moduleRng } from '../sidecar/loraxs/init';

const python = path.join(repoRoot, '.venv-trainer', 'bin', 'python');

function trainerMissing(): string | false {
  if (!fs.existsSync(python)) return `skipped: the trainer's Python ${python} is missing (python3 -m venv .venv-trainer && .venv-trainer/bin/pip install -r trainer/requirements.txt; .ci/run does it)`;
  const r = spawnSync(python, ['-c', 'import torch, accelerate, transformers, safetensors, numpy'], { encoding: 'utf8' });
  return r.status === 0 ? false : `skipped: ${python} cannot import torch/accelerate/transformers: ${r.stderr.trim().split('\n').pop()}`;
}
const skip = needsShared(stories260k) || trainerMissing();
const cli = cliRunner('launch-foreign');
/** The trainer's test hook: stop (as on SIGTERM, with a checkpoint) after update 4. */
const cliStopAfter4 = cliRunner('launch-foreign-stop', { LORAXS_TRAINER_STOP_AFTER: '4' });

/** Runs Python code with argv; returns the JSON its last stdout line prints. */
function py<T>(code: string, ...args: string[]): T {
  const r = spawnSync(python, ['-c', code, ...args], { encoding: 'utf8', maxBuffer: 1 << 26 });
  assert.equal(r.status, 0, r.stderr.slice(-3000));
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as T;
}

function ok(args: string[], cwd: string) {
  const r = cli(args, cwd);
  assert.equal(r.code, 0, `loraxs ${args.join(' ')} failed (${r.code}):\n${r.stderr.slice(-4000)}`);
  return r;
}

const losses = (file: string): number[] => readValidatedMetrics(file).filter((l) => 'loss' in l).map((l) => l.loss as number);
const evalLosses = (file: string): number[] => readValidatedMetrics(file).filter((l) => 'eval' in l).map((l) => (l.eval as Record<string, number>).loss);

/** A random GPT-2 (2 layers, 32 wide) with stories260K's tokenizer, and a tiny causal-LM data set. */
function gpt2Workspace(): string {
  const dir = tempDir('loraxs-gpt2-');
  py(`
import json, shutil, sys, torch
from transformers import GPT2Config, GPT2LMHeadModel
src, out = sys.argv[1], sys.argv[2]
vocab = len(json.load(open(src + "/tokenizer.json"))["model"]["vocab"])
torch.manual_seed(0)
cfg = GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=vocab, n_positions=64, bos_token_id=1, eos_token_id=2, initializer_range=0.2)
model = GPT2LMHeadModel(cfg)
# Every Conv1D weight gets a decaying spectrum (σ_k = 2·0.7^k, random singular vectors), as trained weights
# have: a flat random spectrum would leave the top-r subspace ill-defined for any SVD.
with torch.no_grad():
    for name, p in model.named_parameters():
        if p.dim() == 2 and name.startswith("transformer.h."):
            U, _ = torch.linalg.qr(torch.randn(p.shape[0], min(p.shape)))
            V, _ = torch.linalg.qr(torch.randn(p.shape[1], min(p.shape)))
            p.copy_((U * (2 * 0.7 ** torch.arange(min(p.shape)))) @ V.T)
model.save_pretrained(out)
for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
    shutil.copyfile(src + "/" + f, out + "/" + f)
print(json.dumps({"vocab": vocab}))
`, stories260k, path.join(dir, 'gpt2'));
  const words = 'once upon a time there was a little girl named lily she loved to play outside in the park one day saw big red ball and her mom said'.split(' ');
  let x = 11;
  const next = (): number => (x = (Math.imul(x, 1664525) + 1013904223) >>> 0) / 4294967296;
  const rows = Array.from({ length: 24 }, () => Array.from({ length: 5 + Math.floor(next() * 10) }, () => words[Math.floor(next() * words.length)]).join(' ') + '.');
  fs.writeFileSync(path.join(dir, 'train.tsv'), 'text\n' + rows.slice(0, 17).join('\n') + '\n');
  fs.writeFileSync(path.join(dir, 'dev.tsv'), 'text\n' + rows.slice(17).join('\n') + '\n');
  return dir;
}

const config = (out: string, extra = '') => `model: gpt2
task: causal-lm
data: { train: train.tsv, validation: dev.tsv, text: text }
adapter: { rank: 4, targets: [c_attn, c_proj], init_std: 0${extra} }
training: { epochs: 3, batch_size: 3, optimizer: sgd, lr: 2, warmup_ratio: 0, seed: 5, shuffle: false, dropout: 0, max_length: 32, eval_every: epoch }
output: ${out}
`;

test('GPT-2 (an architecture the engine cannot hold): launch trains with SVD factors computed by the trainer; merge and PEFT export by its Python', { skip }, () => {
  const dir = gpt2Workspace();
  const model = path.join(dir, 'gpt2');
  fs.writeFileSync(path.join(dir, 'g1.loraxs.yaml'), config('out1'));
  fs.writeFileSync(path.join(dir, 'g2.loraxs.yaml'), config('out2'));
  const l1 = ok(['launch', 'g1.loraxs.yaml', '--processes', '1', '--cpu'], dir);
  assert.match(l1.stdout, /^finished/);
  const out1 = path.join(dir, 'out1');
  assert.equal(fs.readFileSync(path.join(out1, 'plan', 'plan.json'), 'utf8').includes('"init_adapter": null'), true, 'the plan has no factors');
  const curve = losses(path.join(out1, 'metrics.jsonl'));
  assert.equal(curve.length, 18); // ceil(17 / 3) = 6 updates × 3 epochs

  // The first update's loss is the base model's (R = 0) on the plan's first batch, by transformers.
  const base = py<{ loss: number }>(`
import json, sys, torch, torch.nn.functional as F
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM
b = load_file(sys.argv[2])
m = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32, attn_implementation="eager").eval()
with torch.no_grad():
    logits = m(input_ids=b["0.input_ids"].long(), attention_mask=b["0.attention_mask"].long()).logits
labels = b["0.lm_labels"].long()
print(json.dumps({"loss": float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100))}))
`, model, path.join(out1, 'plan', 'batches', 'train-e1.safetensors'));
  const rel0 = Math.abs(curve[0] - base.loss) / base.loss;
  const ev = evalLosses(path.join(out1, 'metrics.jsonl'));
  console.log(`GPT-2: first-step loss ${curve[0]} vs transformers ${base.loss} (rel ${rel0.toExponential(2)}); validation loss ${ev[0]} -> ${ev.at(-1)}`);
  assert.ok(rel0 < 1e-4, `${curve[0]} vs ${base.loss}`);
  assert.ok(ev.at(-1)! < ev[0] - 1e-3, `validation loss did not go down: ${ev.join(', ')}`);

  // The factors: B·A = the best rank-r approximation of W (numpy SVD; Conv1D weights are (in × out)).
  const f = py<{ worst: number; modules: number; signs: boolean }>(`
import json, sys, numpy as np
from safetensors.numpy import load_file
w = load_file(sys.argv[1] + "/model.safetensors")
fac = load_file(sys.argv[2] + "/factors.safetensors")
cfg = json.load(open(sys.argv[2] + "/loraxs_config.json"))
worst, signs = 0.0, True
for m in cfg["modules"]:
    W = w[m["name"] + ".weight"].astype(np.float64).T   # Conv1D stores (in, out)
    assert W.shape == (m["out_features"], m["in_features"]), (m, W.shape)
    r = m["rank"]
    U, S, Vt = np.linalg.svd(W, full_matrices=False)
    best = (U[:, :r] * S[:r]) @ Vt[:r]
    A, B = fac[m["name"] + ".A"].astype(np.float64), fac[m["name"] + ".B"].astype(np.float64)
    worst = max(worst, np.linalg.norm(B @ A - best) / np.linalg.norm(best))
    idx = np.abs(B).argmax(axis=0)
    signs = signs and bool((B[idx, np.arange(r)] > 0).all()) and np.allclose(np.linalg.norm(A, axis=1), S[:r], rtol=1e-4)
print(json.dumps({"worst": worst, "modules": len(cfg["modules"]), "signs": signs}))
`, model, path.join(out1, 'last'));
  console.log(`GPT-2: ${f.modules} modules, max ‖B·A − best rank-4‖/‖best‖ = ${f.worst.toExponential(2)}`);
  assert.equal(f.modules, 6); // c_attn, attn.c_proj, mlp.c_proj in 2 layers
  assert.ok(f.worst < 1e-4, `factors off the best rank-r approximation by ${f.worst}`);
  assert.ok(f.signs, 'U columns not sign-canonical or A rows not σ-scaled');

  // Two processes: the same losses.
  ok(['launch', 'g2.loraxs.yaml', '--processes', '2', '--cpu'], dir);
  const curve2 = losses(path.join(dir, 'out2', 'metrics.jsonl'));
  const d2 = Math.max(...curve.map((v, i) => Math.abs(v - curve2[i]) / v));
  console.log(`GPT-2: 2 processes vs 1: max relative loss difference ${d2.toExponential(2)}`);
  assert.equal(curve2.length, curve.length);
  assert.ok(d2 < 1e-4, String(d2));

  // Stopped after update 4 on 2 processes, resumed on 1 (with the factors kept in the checkpoint): the same adapter.
  fs.writeFileSync(path.join(dir, 'g3.loraxs.yaml'), config('out3'));
  const stopped = cliStopAfter4(['launch', 'g3.loraxs.yaml', '--processes', '2', '--cpu'], dir);
  assert.equal(stopped.code, 0, stopped.stderr.slice(-3000));
  assert.match(stopped.stdout, /^cancelled/);
  ok(['launch', 'g3.loraxs.yaml', '--processes', '1', '--cpu', '--resume'], dir);
  const r3 = py<{ rel: number; keys: number }>(`
import json, sys, torch
from safetensors.torch import load_file
a, b = load_file(sys.argv[1] + "/adapter.safetensors"), load_file(sys.argv[2] + "/adapter.safetensors")
print(json.dumps({"rel": max(float((a[k] - b[k]).abs().max() / a[k].abs().max()) for k in a), "keys": len(a)}))
`, path.join(out1, 'last'), path.join(dir, 'out3', 'last'));
  console.log(`GPT-2: stopped at update 4 on 2 processes, resumed on 1: adapter relative difference ${r3.rel.toExponential(2)}`);
  assert.ok(r3.keys >= 1 && r3.rel < 1e-6, String(r3.rel));

  // loraxs merge (the trainer's Python): transformers on the merged folder gives the trainer's merged logits.
  const merged = path.join(dir, 'merged');
  ok(['merge', 'g1.loraxs.yaml', '--adapter', path.join(out1, 'last'), '--out', merged], dir);
  assert.ok(fs.existsSync(path.join(merged, '.loraxs-output')) && fs.existsSync(path.join(merged, 'tokenizer.json')));
  const m = py<{ diff: number; fromBase: number }>(`
import json, sys, torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM
ref = load_file(sys.argv[1])
x = {k: ref[k] for k in ("input_ids", "attention_mask")}
mask = x["attention_mask"].bool()
def logits(d):
    with torch.no_grad():
        return AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager").eval()(**x).logits.float()[mask]
want = ref["logits"][mask]
scale = max(1.0, float(want.abs().max()))
print(json.dumps({"diff": float((logits(sys.argv[2]) - want).abs().max()) / scale, "fromBase": float((logits(sys.argv[3]) - want).abs().max()) / scale}))
`, path.join(out1, 'merged_logits.safetensors'), merged, model);
  console.log(`GPT-2: loraxs merge vs the trainer's merged logits: ${m.diff.toExponential(2)} (base model: ${m.fromBase.toExponential(2)})`);
  assert.ok(m.diff <= 1e-4, String(m.diff));
  assert.ok(m.fromBase > 1e-3, `the adapter changed the logits by only ${m.fromBase}`);

  // export --format peft-lora (the trainer's Python: Conv1D needs fan_in_fan_out).
  const peftDir = path.join(dir, 'peft');
  ok(['export', '--adapter', path.join(out1, 'last'), '--format', 'peft-lora', '--out', peftDir], dir);
  const e = py<{ peft: boolean; diff: number; fanInFanOut: boolean; shapes: boolean }>(`
import json, sys, torch
from safetensors.torch import load_file
cfg = json.load(open(sys.argv[1] + "/adapter_config.json"))
t = load_file(sys.argv[1] + "/adapter_model.safetensors")
ad = json.load(open(sys.argv[4] + "/loraxs_config.json"))
shapes = all(t[f"base_model.model.{m['name']}.lora_A.weight"].shape == (m["rank"], m["in_features"]) and
             t[f"base_model.model.{m['name']}.lora_B.weight"].shape == (m["out_features"], m["rank"]) for m in ad["modules"])
try:
    import peft
except ImportError:
    peft = None
if peft is not None:
    from transformers import AutoModelForCausalLM
    from peft import PeftModel
    x = torch.tensor([[1, 5, 9, 30, 200, 7]])
    with torch.no_grad():
        a = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(sys.argv[2]), sys.argv[1]).eval()(input_ids=x).logits
        b = AutoModelForCausalLM.from_pretrained(sys.argv[3]).eval()(input_ids=x).logits
    diff = float((a - b).abs().max())
else:
    base, merged = load_file(sys.argv[2] + "/model.safetensors"), load_file(sys.argv[3] + "/model.safetensors")
    diff = 0.0
    for m in ad["modules"]:
        n = m["name"]
        delta = cfg["lora_alpha"] / cfg["r"] * (t[f"base_model.model.{n}.lora_B.weight"].double() @ t[f"base_model.model.{n}.lora_A.weight"].double())
        diff = max(diff, float((base[n + ".weight"].double() + delta.T - merged[n + ".weight"].double()).abs().max()))
print(json.dumps({"peft": peft is not None, "diff": diff, "fanInFanOut": cfg["fan_in_fan_out"], "shapes": shapes}))
`, peftDir, model, merged, path.join(out1, 'last'));
  console.log(`GPT-2: PEFT export ${e.peft ? 'loaded in PEFT, logits vs merged' : '(peft not installed) W + (lora_B·lora_A)ᵀ vs merged W'}: max |Δ| ${e.diff.toExponential(2)}`);
  assert.ok(e.fanInFanOut && e.shapes);
  assert.ok(e.diff < (e.peft ? 1e-4 : 1e-5), String(e.diff));

  // Bad input: one-line errors, nothing of the user's replaced.
  fs.mkdirSync(path.join(dir, 'mine'));
  fs.writeFileSync(path.join(dir, 'mine', 'notes.txt'), 'keep');
  const refused = cli(['merge', 'g1.loraxs.yaml', '--adapter', path.join(out1, 'last'), '--out', 'mine'], dir);
  assert.equal(refused.code, 73); // the CLI's "cannot create the output there"
  assert.match(refused.stderr.trim().split('\n').pop()!, /mine: is not empty and was not written by LoRA-XS/);
  assert.equal(fs.readFileSync(path.join(dir, 'mine', 'notes.txt'), 'utf8'), 'keep');
  fs.writeFileSync(path.join(dir, 'bad.loraxs.yaml'), config('out-bad').replace('c_attn, c_proj', 'q_proj'));
  const badTarget = cli(['launch', 'bad.loraxs.yaml', '--processes', '1', '--cpu'], dir);
  assert.equal(badTarget.code, 1);
  assert.match(badTarget.stderr.trim().split('\n').pop()!, /rank 0: adapter\.targets: "q_proj" matches no nn\.Linear or Conv1D of this model \(its layers end with: c_attn, c_fc, c_proj, lm_head\)/);
  fs.writeFileSync(path.join(dir, 'tied.loraxs.yaml'), config('out-tied').replace('c_attn, c_proj', 'c_attn, lm_head'));
  const tied = cli(['launch', 'tied.loraxs.yaml', '--processes', '1', '--cpu'], dir);
  assert.equal(tied.code, 1);
  assert.match(tied.stderr.trim().split('\n').pop()!, /rank 0: adapter\.targets: lm_head shares its weight with transformer\.wte\.weight \(tied embeddings\)/);
  fs.writeFileSync(path.join(dir, 'cls.loraxs.yaml'), config('out-cls').replace('task: causal-lm', 'task: classification').replace('text: text', 'text: text, label: text'));
  const cls = cli(['launch', 'cls.loraxs.yaml', '--processes', '1', '--cpu'], dir);
  assert.equal(cls.code, 1);
  assert.match(cls.stderr.trim().split('\n').pop()!, /model_type 'gpt2' is not one the engine holds; loraxs launch trains it as task: causal-lm only/);
});

test('the trainer draws the initial R of a model the engine cannot hold as the engine does (moduleRng, Box-Muller)', { skip: trainerMissing() }, () => {
  const cases = [{ seed: 5, name: 'transformer.h.0.attn.c_attn', rank: 4, std: 1e-5 }, { seed: 123456, name: 'model.layers.3.mlp.down_proj', rank: 7, std: 0.02 }];
  const fromPython = py<number[][]>(`
import json, sys
sys.path.insert(0, sys.argv[1])
from loraxs_format import init_R
print(json.dumps([init_R(c["seed"], c["name"], c["rank"], c["std"]).reshape(-1).tolist() for c in json.loads(sys.argv[2])]))
`, path.join(repoRoot, 'trainer'), JSON.stringify(cases));
  cases.forEach((c, k) => {
    const engine = initR(c.rank, c.std, moduleRng(c.seed, c.name, 'R'));
    assert.equal(fromPython[k].length, engine.length);
    // float32 values from the same doubles: equal up to a last-bit difference of Math.log/sin/cos and libm.
    engine.forEach((v, i) => assert.ok(Math.abs(v - fromPython[k][i]) <= 1e-6 * Math.abs(v), `${c.name}[${i}]: engine ${v}, trainer ${fromPython[k][i]}`));
  });
});

/** PIDs of this machine's processes whose command line mentions `needle` (read from /proc). */
function processesMentioning(needle: string): number[] {
  const out: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      if (fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(needle)) out.push(Number(entry));
    } catch { /* gone meanwhile */ }
  }
  return out;
}

test('a launch whose CLI is killed outright (SIGKILL) stops at a checkpoint instead of training on unwatched', { skip }, async () => {
  const dir = gpt2Workspace();
  fs.writeFileSync(path.join(dir, 'k.loraxs.yaml'), config('out-k').replace('epochs: 3', 'epochs: 400'));
  const planDir = path.join(dir, 'out-k', 'plan');
  const child = spawn(process.execPath, [loraxsBin, 'launch', 'k.loraxs.yaml', '--processes', '2', '--cpu'], {
    cwd: dir, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LORAXS_CACHE_DIR: tempDir('loraxs-kill-cache-') },
  });
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  // Wait (event-driven) for the trainer's first update line, then kill the CLI: it can send no SIGTERM.
  await new Promise<void>((resolve, reject) => {
    let text = '';
    child.stderr!.on('data', (c: Buffer) => {
      text += c.toString('utf8');
      if (/step 1\/2400/.test(text)) resolve();
    });
    child.on('exit', (code) => reject(new Error(`the launch ended (${code}) before its first update:\n${text.slice(-3000)}`)));
  });
  child.kill('SIGKILL');
  await exited;
  // Its trainer processes stop by themselves (a safety limit of 5 minutes guards against a hang; not a timing check).
  const limit = Date.now() + 300_000;
  let left = processesMentioning(planDir);
  while (left.length > 0 && Date.now() < limit) {
    await new Promise((r) => setTimeout(r, 500));
    left = processesMentioning(planDir);
  }
  for (const pid of left) process.kill(pid, 'SIGKILL'); // only the processes this test started, by PID
  assert.deepEqual(left, [], 'the trainer kept running after its CLI was killed');
  const steps = readValidatedMetrics(path.join(dir, 'out-k', 'metrics.jsonl')).filter((l) => 'loss' in l).length;
  assert.ok(steps >= 1 && steps < 2400, `${steps} updates`);
  const state = py<{ step: number }>(`
import json, sys, torch
print(json.dumps({"step": torch.load(sys.argv[1], weights_only=False)["position"]["step"]}))
`, path.join(dir, 'out-k', 'trainer_checkpoint', 'state.pt'));
  console.log(`SIGKILL of the CLI after update 1: the trainer stopped after ${steps} updates with a checkpoint at update ${state.step}`);
  assert.equal(state.step, steps, 'the checkpoint is at the last logged update');
});
