/**
 * `loraxs serve` as users run it: each test spawns the real CLI (`loraxs serve --port 0` on 127.0.0.1),
 * reads the bound URL from its stdout, talks HTTP to it (the `openai` npm client for completions, chat and
 * streaming; fetch for the rest) and stops it by PID.
 *
 * Adapters are trained with `loraxs train` (two training seeds: with the default adapter.factor_seed they
 * share factors, hence one factor checksum) and cloned with other R (and heads) through the adapter files'
 * own writer. The reference for every adapter is its own model from `loraxs merge`, run through the engine
 * in this process: for every adapter in a mixed batch the server's top-5 log-probabilities of every
 * generated token (log-softmax of the logits) equal the merged model's within 1e-4, and classifier
 * probabilities likewise. Bad requests get a 4xx with a message and the server keeps serving.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import OpenAI from 'openai';
import * as tf from '../sidecar/backend/tf';
import { initBackend } from '../sidecar/backend/choice';
import { openModelSession } from '../sidecar/session/model_session';
import { loadAdapter, saveAdapter } from '../sidecar/loraxs/adapter_files';
import { Rng } from '../sidecar/rng';
import { cliRunner, loraxsBin, tinyBertConfig } from './cli_harness';
import { makeWorkspace } from './workspace';
import { needsShared, repoRoot, stories260k, tempDir } from './paths';

const TOLERANCE = 1e-4;
const cacheDir = tempDir('loraxs-serve-cache-');
const cli = cliRunner('serve', { LORAXS_CACHE_DIR: cacheDir });

interface Server {
  url: string;
  proc: ChildProcess;
  stderr(): string;
  stop(): Promise<number | null>;
}

/** Spawns `loraxs serve ARGS --port 0` and waits for its `listening on URL` line. */
async function startServer(args: string[]): Promise<Server> {
  const proc = spawn(process.execPath, [loraxsBin, 'serve', ...args, '--port', '0'], {
    cwd: repoRoot, env: { ...process.env, LORAXS_CACHE_DIR: cacheDir }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  proc.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const url = await new Promise<string>((resolve, reject) => {
    proc.stdout!.on('data', (d: Buffer) => {
      stdout += d.toString();
      const m = /listening on (http:\/\/\S+?)[\s(]/.exec(stdout);
      if (m) resolve(m[1]);
    });
    void exited.then((code) => reject(new Error(`loraxs serve exited (${code}) before listening:\n${stderr}`)));
  });
  return {
    url, proc, stderr: () => stderr,
    async stop() {
      if (proc.exitCode === null) proc.kill('SIGTERM');
      return exited;
    },
  };
}

async function json(url: string, init: RequestInit = {}): Promise<{ status: number; body: any }> {
  const r = await fetch(url, init);
  const text = await r.text();
  let body: any = text;
  try { body = JSON.parse(text); } catch { /* text */ }
  return { status: r.status, body };
}

const post = (url: string, body: unknown, headers: Record<string, string> = {}) =>
  json(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });

/** A copy of `from` with every R replaced by N(0, std²) draws (and the head, when given, perturbed). */
function cloneWithOtherR(from: string, to: string, seed: number, std: number, opts: { chatTemplate?: string; headStd?: number } = {}): void {
  const snap = loadAdapter(from);
  const rng = new Rng(seed);
  for (const [name, R] of snap.R) snap.R.set(name, rng.normalArray(R.length, std));
  for (const [, h] of snap.head) {
    const noise = rng.normalArray(h.data.length, opts.headStd ?? 0);
    h.data = h.data.map((v, i) => v + noise[i]);
  }
  saveAdapter(to, { ...snap, ...(opts.chatTemplate ? { chatTemplate: opts.chatTemplate } : {}) });
}

/** A safetensors file's header bytes (length prefix included) and each tensor's bytes, by name. */
function safetensorsRanges(file: string): { header: Buffer; tensors: Map<string, Buffer> } {
  const bytes = fs.readFileSync(file);
  const headerEnd = 8 + Number(bytes.readBigUInt64LE(0));
  const entries = JSON.parse(bytes.subarray(8, headerEnd).toString('utf8')) as Record<string, { data_offsets: [number, number] }>;
  const tensors = new Map<string, Buffer>();
  for (const [name, e] of Object.entries(entries)) {
    if (name !== '__metadata__') tensors.set(name, bytes.subarray(headerEnd + e.data_offsets[0], headerEnd + e.data_offsets[1]));
  }
  return { header: bytes.subarray(0, headerEnd), tensors };
}

function metricValue(text: string, name: string): number {
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  assert.ok(m, `/metrics has ${name}`);
  return Number(m[1]);
}

function runOk(args: string[]): string {
  const r = cli(args);
  assert.equal(r.code, 0, `loraxs ${args.join(' ')} failed:\n${r.stderr}`);
  return r.stdout;
}

const CHAT_TEMPLATE = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}";

test('stories260K: mixed batches of four adapters and the base equal each one\'s merged model within 1e-4; chat, streaming, sampling, bad requests', { skip: needsShared(stories260k), timeout: 900_000 }, async () => {
  await initBackend();
  const dir = tempDir('loraxs-serve-lm-');
  const lines = ['Once upon a time there was a little girl.', 'She liked to play in the park with her dog.', 'The sun was warm and the sky was blue.', 'One day she found a big red ball.'];
  fs.writeFileSync(path.join(dir, 'train.tsv'), 'text\n' + Array.from({ length: 8 }, (_, i) => lines[i % lines.length]).join('\n') + '\n');
  const config = (seed: number) => {
    const file = path.join(dir, `s${seed}.loraxs.yaml`);
    fs.writeFileSync(file, `model: ${stories260k}
task: causal-lm
data: {train: train.tsv, text: text}
adapter: {rank: 4, alpha: 8, targets: [q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj], init_std: 0.5}
training: {epochs: 1, batch_size: 4, lr: 0.02, seed: ${seed}, eval_every: end}
output: out-${seed}
`);
    return file;
  };
  const adapters = path.join(dir, 'adapters');
  fs.mkdirSync(adapters);
  // Two trainings with different training seeds: other R, the same factors (adapter.factor_seed).
  for (const seed of [0, 1]) {
    runOk(['train', config(seed)]);
    fs.cpSync(path.join(dir, `out-${seed}`), path.join(adapters, `seed${seed}`), { recursive: true });
  }
  const a0 = loadAdapter(path.join(adapters, 'seed0'));
  const a1 = loadAdapter(path.join(adapters, 'seed1'));
  assert.equal(a0.config.factorsSha256, a1.config.factorsSha256, 'training seeds 0 and 1 share factors through the default factor_seed');
  assert.equal(a0.config.factorSeed, 0);
  const firstR = a0.config.modules[0].name;
  assert.notDeepEqual(a0.R.get(firstR), a1.R.get(firstR), 'different training seeds give different R');
  cloneWithOtherR(path.join(adapters, 'seed0'), path.join(adapters, 'wide'), 7, 0.2);
  cloneWithOtherR(path.join(adapters, 'seed0'), path.join(adapters, 'chatty'), 8, 0.2, { chatTemplate: CHAT_TEMPLATE });
  // A broken adapter: R's file altered after saving (its sha256 no longer matches loraxs_config.json).
  fs.cpSync(path.join(adapters, 'seed0'), path.join(adapters, 'broken'), { recursive: true });
  const rFile = path.join(adapters, 'broken', 'adapter.safetensors');
  const bytes = fs.readFileSync(rFile);
  bytes[bytes.length - 1] ^= 0xff;
  fs.writeFileSync(rFile, bytes);
  // An adapter saved before adapter.factor_seed existed: no factor_seed, its factors drawn with its seed.
  fs.cpSync(path.join(adapters, 'seed0'), path.join(adapters, 'legacy'), { recursive: true });
  const legacyConfig = path.join(adapters, 'legacy', 'loraxs_config.json');
  const { factor_seed: _dropped, ...legacy } = JSON.parse(fs.readFileSync(legacyConfig, 'utf8'));
  fs.writeFileSync(legacyConfig, JSON.stringify(legacy, null, 2));
  const names = ['seed0', 'seed1', 'wide', 'chatty'];
  const merged = new Map<string, string>();
  for (const name of names) {
    const out = path.join(dir, `merged-${name}`);
    const r = cli(['merge', config(0), '--adapter', path.join(adapters, name), '--out', out]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /: a copy of model\.safetensors with the merged weights written over theirs/);
    merged.set(name, out);
  }
  // The merged models keep exactly the source file's tensors: the spawned merge copied the source and wrote
  // the merged weights over their byte ranges (hf_model_writer.ts), so the header and every tensor that no
  // adapter touches are the source's bytes; each adapted weight changed. (Their values: the mixed batches below.)
  const source = safetensorsRanges(path.join(stories260k, 'model.safetensors'));
  const adapted = /\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)\.weight$/;
  for (const name of names) {
    const out = safetensorsRanges(path.join(merged.get(name)!, 'model.safetensors'));
    assert.ok(out.header.equals(source.header), `${name}: the merged file's header is the source's`);
    for (const [tensor, bytes] of source.tensors) {
      const same = out.tensors.get(tensor)!.equals(bytes);
      assert.equal(same, !adapted.test(tensor), `${name}: ${tensor} ${adapted.test(tensor) ? 'was not merged' : 'changed'}`);
    }
  }
  merged.set('stories260k', stories260k);

  const server = await startServer(['--model', stories260k, '--adapters', adapters, '--api-key', 'sekret', '--batch-window-ms', '100']);
  try {
    assert.match(server.url, /^http:\/\/127\.0\.0\.1:\d+$/, 'binds 127.0.0.1 by default');
    const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'sekret', maxRetries: 0 });
    const auth = { authorization: 'Bearer sekret' };

    const models = await client.models.list();
    assert.deepEqual(models.data.map((m) => m.id).sort(), ['broken', 'chatty', 'legacy', 'seed0', 'seed1', 'stories260k', 'wide'].sort());

    for (const name of names) assert.equal((await post(`${server.url}/v1/adapters`, { name }, auth)).status, 200);
    // One mixed batch: every adapter and the base at once, greedy, with top-5 log-probabilities.
    const prompt = 'Once upon a time';
    const all = [...names, 'stories260k'];
    const results = await Promise.all(all.map((model) => client.completions.create({
      model, prompt, max_tokens: 24, temperature: 0, logprobs: 5, return_tokens_as_token_ids: true,
    } as OpenAI.CompletionCreateParamsNonStreaming)));
    const metrics = await (await fetch(`${server.url}/metrics`, { headers: auth })).text();
    assert.ok(metricValue(metrics, 'loraxs_batch_adapters_max') >= 2, `requests for different adapters shared forward passes:\n${metrics}`);
    assert.equal(metricValue(metrics, 'loraxs_factor_sets'), 1, 'the four adapters hold one factor set (one checksum)');
    assert.equal(metricValue(metrics, 'loraxs_resident_adapters'), 4);

    const texts = new Set<string>();
    for (const [k, model] of all.entries()) {
      const choice = results[k].choices[0];
      const lp = choice.logprobs!;
      const ids = lp.tokens!.map((t) => Number(t.replace('token_id:', '')));
      assert.equal(ids.length, results[k].usage!.completion_tokens);
      texts.add(choice.text);
      // The reference: this adapter's merged model through the engine, one full forward pass.
      const session = await openModelSession({ modelDir: merged.get(model)!, task: 'causal-lm', numLabels: 1, adapter: null, seed: 0, dropout: null });
      try {
        const promptIds = session.tokenizer.encode(prompt).ids;
        assert.equal(results[k].usage!.prompt_tokens, promptIds.length);
        const seq = [...promptIds, ...ids];
        const T = seq.length;
        const logits = tf.tidy(() => tf.logSoftmax(session.logits({ inputIds: tf.tensor2d(seq, [1, T], 'int32'), attentionMask: tf.ones([1, T], 'int32') as tf.Tensor2D }, false))
          .dataSync() as Float32Array);
        const V = logits.length / T;
        let worst = 0;
        ids.forEach((id, j) => {
          const row = logits.subarray((promptIds.length - 1 + j) * V, (promptIds.length + j) * V);
          const best = row.indexOf(Math.max(...row));
          assert.equal(id, best, `${model}: token ${j} is the merged model's greedy choice`);
          worst = Math.max(worst, Math.abs(lp.token_logprobs![j] - row[id]));
          for (const [tok, value] of Object.entries(lp.top_logprobs![j])) worst = Math.max(worst, Math.abs(value - row[Number(tok.replace('token_id:', ''))]));
        });
        // The engine's own adapted (unmerged) model on the same tokens, for scale.
        let engineWorst = 0;
        if (model !== 'stories260k') {
          const adapted = await openModelSession({ modelDir: stories260k, task: 'causal-lm', numLabels: 1, adapter: null, seed: 0, dropout: null, adapterDir: path.join(adapters, model) });
          try {
            const own = tf.tidy(() => tf.logSoftmax(adapted.logits({ inputIds: tf.tensor2d(seq, [1, T], 'int32'), attentionMask: tf.ones([1, T], 'int32') as tf.Tensor2D }, false)).dataSync() as Float32Array);
            ids.forEach((id, j) => {
              const p = (promptIds.length - 1 + j) * V;
              for (const t of [id, ...Object.keys(lp.top_logprobs![j]).map((k) => Number(k.replace('token_id:', '')))]) engineWorst = Math.max(engineWorst, Math.abs(own[p + t] - logits[p + t]));
            });
          } finally {
            adapted.dispose();
          }
        }
        console.log(`# ${model}: server vs merged ${worst.toExponential(2)}, engine adapted vs merged ${engineWorst.toExponential(2)}`);
        assert.ok(worst <= TOLERANCE, `${model}: log-probabilities differ from the merged model's by ${worst}`);
      } finally {
        session.dispose();
      }
    }
    assert.ok(texts.size >= 3, 'the adapters generate different texts');

    // Chat through the adapter's chat template, and the same request streamed.
    const chatReq = { model: 'chatty', messages: [{ role: 'user' as const, content: 'Tell me a story.' }], max_tokens: 12, temperature: 0 };
    const chat = await client.chat.completions.create(chatReq);
    assert.equal(chat.object, 'chat.completion');
    assert.equal(chat.choices[0].message.role, 'assistant');
    assert.ok(['stop', 'length'].includes(chat.choices[0].finish_reason));
    let streamed = '';
    let finish: string | null = null;
    for await (const chunk of await client.chat.completions.create({ ...chatReq, stream: true })) {
      streamed += chunk.choices[0]?.delta?.content ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    assert.equal(streamed, chat.choices[0].message.content, 'the stream carries the same text');
    assert.equal(finish, chat.choices[0].finish_reason);
    let streamedCompletion = '';
    for await (const chunk of await client.completions.create({ model: 'wide', prompt, max_tokens: 24, temperature: 0, stream: true })) streamedCompletion += chunk.choices[0]?.text ?? '';
    assert.equal(streamedCompletion, results[all.indexOf('wide')].choices[0].text);
    const raw = await fetch(`${server.url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json', ...auth }, body: JSON.stringify({ model: 'seed1', prompt, max_tokens: 4, stream: true }) });
    assert.match(raw.headers.get('content-type') ?? '', /text\/event-stream/);
    assert.match(await raw.text(), /data: \[DONE\]\n\n$/, 'the stream ends with data: [DONE]');

    // A client that goes away mid-stream: its sequence leaves the batch instead of running to max_tokens.
    // The same greedy request, left to run, does reach max_tokens (no EOS first), so the check below can fail.
    const full = await client.completions.create({ model: 'seed1', prompt, max_tokens: 400, temperature: 0 });
    assert.equal(full.choices[0].finish_reason, 'length');
    assert.equal(full.usage?.completion_tokens, 400);
    const tokensBefore = metricValue(await (await fetch(`${server.url}/metrics`, { headers: auth })).text(), 'loraxs_completion_tokens_total');
    const abort = new AbortController();
    const long = await fetch(`${server.url}/v1/completions`, { method: 'POST', signal: abort.signal, headers: { 'content-type': 'application/json', ...auth }, body: JSON.stringify({ model: 'seed1', prompt, max_tokens: 400, temperature: 0, stream: true }) });
    const reader = long.body!.getReader();
    await reader.read();
    abort.abort();
    let after = '';
    do after = await (await fetch(`${server.url}/metrics`, { headers: auth })).text(); while (metricValue(after, 'loraxs_active_sequences') > 0);
    assert.ok(metricValue(after, 'loraxs_completion_tokens_total') - tokensBefore < 400, 'the abandoned sequence stopped before max_tokens');

    // Sampling: a seed reproduces a sample; a stop string ends it (cut before the stop).
    const sample = (seed: number) => client.completions.create({ model: 'seed1', prompt, max_tokens: 16, temperature: 1.2, top_p: 0.95, seed });
    const [s1, s2] = await Promise.all([sample(3), sample(3)]);
    assert.equal(s1.choices[0].text, s2.choices[0].text);
    const greedyWide = results[all.indexOf('wide')].choices[0].text;
    const stopWord = greedyWide.trim().split(/\s+/)[2];
    const stopped = await client.completions.create({ model: 'wide', prompt, max_tokens: 24, temperature: 0, stop: [stopWord] });
    assert.equal(stopped.choices[0].finish_reason, 'stop');
    assert.equal(stopped.choices[0].text, greedyWide.slice(0, greedyWide.indexOf(stopWord)));
    const short = await client.completions.create({ model: 'wide', prompt, max_tokens: 3, temperature: 0 });
    assert.equal(short.choices[0].finish_reason, 'length');
    assert.equal(short.usage!.completion_tokens, 3);

    // Bad requests: 4xx with a message; the server keeps serving.
    const bad = async (what: string, r: Promise<{ status: number; body: any }>, status: number, message: RegExp) => {
      const { status: got, body } = await r;
      assert.equal(got, status, `${what}: ${JSON.stringify(body)}`);
      assert.match(String(body?.error?.message ?? body), message, what);
    };
    await bad('unknown adapter', post(`${server.url}/v1/completions`, { model: 'nope', prompt }, auth), 404, /no adapter 'nope'/);
    await bad('a path outside --adapters', post(`${server.url}/v1/adapters`, { name: '../out-0' }, auth), 400, /not a folder name under --adapters/);
    await bad('a path as model', post(`${server.url}/v1/completions`, { model: '/etc', prompt }, auth), 400, /no paths/);
    await bad('malformed JSON', json(`${server.url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json', ...auth }, body: '{"model": "seed0",' }), 400, /not valid JSON/);
    await bad('oversized body', post(`${server.url}/v1/completions`, { model: 'seed0', prompt: 'x'.repeat(2 << 20) }, auth), 413, /larger than/);
    await bad('a broken adapter file', post(`${server.url}/v1/completions`, { model: 'broken', prompt }, auth), 422, /adapter\.safetensors does not match loraxs_config\.json/);
    await bad('an invalid field', post(`${server.url}/v1/completions`, { model: 'seed0', prompt, max_tokens: -1 }, auth), 400, /max_tokens/);
    await bad('a wrong API key', post(`${server.url}/v1/completions`, { model: 'seed0', prompt }, { authorization: 'Bearer wrong' }), 401, /API key/);
    await bad('no API key', post(`${server.url}/v1/completions`, { model: 'seed0', prompt }), 401, /API key/);
    await bad('chat without a template', post(`${server.url}/v1/chat/completions`, { model: 'seed0', messages: [{ role: 'user', content: 'hi' }] }, auth), 400, /no chat template/);
    await bad('classify on a causal LM', post(`${server.url}/v1/classify`, { model: 'seed0', input: 'hi' }, auth), 400, /causal-LM adapter/);

    // Adapters: unload and load by name.
    assert.equal((await json(`${server.url}/v1/adapters/wide`, { method: 'DELETE', headers: auth })).status, 200);
    await bad('unloading twice', json(`${server.url}/v1/adapters/wide`, { method: 'DELETE', headers: auth }), 404, /not loaded/);
    const loaded = await post(`${server.url}/v1/adapters`, { name: 'wide' }, auth);
    assert.equal(loaded.status, 200);
    assert.equal(loaded.body.loaded, true);
    assert.equal(loaded.body.adapter.factors_sha256, a0.config.factorsSha256);

    const legacyOut = await client.completions.create({ model: 'legacy', prompt, max_tokens: 24, temperature: 0 });
    assert.equal(legacyOut.choices[0].text, results[all.indexOf('seed0')].choices[0].text, 'an adapter without factor_seed loads (factors from its seed)');
    const again = await client.completions.create({ model: 'wide', prompt, max_tokens: 24, temperature: 0 });
    assert.equal(again.choices[0].text, greedyWide, 'still serving, and a reloaded adapter gives the same text');
    assert.equal((await json(`${server.url}/health`)).status, 200);
  } finally {
    assert.equal(await server.stop(), 0, `loraxs serve exits 0 on SIGTERM:\n${server.stderr()}`);
  }
});

test('tiny BERT classifier: a mixed batch of adapters gives each one\'s merged-model probabilities within 1e-4; LRU eviction under the budget', { timeout: 600_000 }, async () => {
  await initBackend();
  const ws = makeWorkspace('bert', 'seq-cls');
  const adapters = path.join(ws.dir, 'adapters');
  fs.mkdirSync(adapters);
  const cfg = ws.config('cls', tinyBertConfig().replace('adapter:\n', 'adapter:\n  init_std: 0.3\n'));
  runOk(['train', cfg]);
  fs.cpSync(path.join(ws.dir, 'out'), path.join(adapters, 'c0'), { recursive: true });
  cloneWithOtherR(path.join(adapters, 'c0'), path.join(adapters, 'c1'), 11, 1.5, { headStd: 0.5 });
  cloneWithOtherR(path.join(adapters, 'c0'), path.join(adapters, 'c2'), 12, 1.5, { headStd: 0.5 });
  const names = ['c0', 'c1', 'c2'];
  const merged = new Map(names.map((n) => [n, path.join(ws.dir, `merged-${n}`)]));
  for (const n of names) runOk(['merge', cfg, '--adapter', path.join(adapters, n), '--out', merged.get(n)!]);
  const texts = ['the movie was very good', 'a dull plot and bad acting', 'i love this film it made me laugh'];

  const server = await startServer(['--model', ws.model, '--adapters', adapters, '--batch-window-ms', '100']);
  try {
    for (const name of names) assert.equal((await post(`${server.url}/v1/adapters`, { name })).status, 200);
    const responses = await Promise.all(names.map((model) => post(`${server.url}/v1/classify`, { model, input: texts })));
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    assert.ok(metricValue(metrics, 'loraxs_batch_adapters_max') >= 2, `classify requests for different adapters shared a forward pass:\n${metrics}`);
    const seen = new Set<string>();
    for (const [k, model] of names.entries()) {
      const { status, body } = responses[k];
      assert.equal(status, 200, JSON.stringify(body));
      const session = await openModelSession({ modelDir: merged.get(model)!, task: 'classification', numLabels: 2, adapter: null, seed: 0, dropout: null });
      try {
        const tok = session.tokenizer;
        let worst = 0;
        texts.forEach((text, i) => {
          const ids = tok.encode(text).ids;
          const probs = tf.tidy(() => tf.softmax(session.logits({
            inputIds: tf.tensor2d(ids, [1, ids.length], 'int32'), attentionMask: tf.ones([1, ids.length], 'int32') as tf.Tensor2D,
            tokenTypeIds: tf.zeros([1, ids.length], 'int32') as tf.Tensor2D,
          }, false)).dataSync() as Float32Array);
          const got = Object.values(body.data[i].probabilities as Record<string, number>);
          got.forEach((p, j) => { worst = Math.max(worst, Math.abs(p - probs[j])); });
          seen.add(got.map((p) => p.toFixed(4)).join(','));
        });
        assert.ok(worst <= TOLERANCE, `${model}: probabilities differ from the merged model's by ${worst}`);
      } finally {
        session.dispose();
      }
    }
    assert.ok(seen.size >= 6, 'the adapters give different probabilities');
  } finally {
    assert.equal(await server.stop(), 0, server.stderr());
  }

  // A budget below two adapters: each load evicts the least recently used one; answers stay right.
  const small = await startServer(['--model', ws.model, '--adapters', adapters, '--memory-budget', '0.0000001']);
  try {
    const first: number[][] = [];
    for (const model of [...names, ...names]) {
      const { status, body } = await post(`${small.url}/v1/classify`, { model, input: texts[0] });
      assert.equal(status, 200, JSON.stringify(body));
      first.push(Object.values(body.data[0].probabilities as Record<string, number>));
    }
    assert.deepEqual(first.slice(3), first.slice(0, 3), 'an evicted adapter reloads with the same answers');
    const metrics = await (await fetch(`${small.url}/metrics`)).text();
    assert.equal(metricValue(metrics, 'loraxs_resident_adapters'), 1);
    assert.equal(metricValue(metrics, 'loraxs_adapter_evictions_total'), 5);
    await (async () => {
      const { status, body } = await post(`${small.url}/v1/completions`, { model: 'c0', prompt: 'hi' });
      assert.equal(status, 400);
      assert.match(body.error.message, /classification adapter/);
    })();
  } finally {
    assert.equal(await small.stop(), 0, small.stderr());
  }
});
