/**
 * The native adapter folder, the factor cache, the merged Hugging Face folder and the export folders, on
 * disk: round trips, sizes, and the refusals (corrupted files, checksum mismatch, another base model).
 */
import { test, before } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '../sidecar/backend/tf';
import { initBackend } from '../sidecar/backend/choice';
import { Rng } from '../sidecar/rng';
import { LoraxsError } from '../sidecar/errors';
import type { SvdConfig } from '../sidecar/config/types';
import { readSafetensorsHeader, readTensorBytes, readTensorFloat32, writeSafetensors } from '../sidecar/io/safetensors';
import { resolveTargets } from '../sidecar/loraxs/targets';
import { initR, moduleRng } from '../sidecar/loraxs/init';
import {
  ADAPTER_FILE, CONFIG_FILE, HEAD_FILE, decodeRanges, encodeAdapterTensors, encodeRanges, loadAdapter, saveAdapter,
  type AdapterSnapshot, type LoraxsAdapterConfig,
} from '../sidecar/loraxs/adapter_files';
import { adapterFactors, checkBaseModel, factorCacheKey, factorsFor } from '../sidecar/loraxs/factor_cache';
import { factorsChecksum } from '../sidecar/loraxs/factor_checksum';
import { exportAdapter } from '../sidecar/loraxs/export';
import { configForHead, writeHfModel } from '../sidecar/loraxs/hf_model_writer';
import { tempDir } from './paths';
import { disposeWeights, randomWeights, robertaModules } from './loraxs_fixture';

before(async () => {
  await initBackend();
});

const SVD: SvdConfig = { method: 'randomized', oversamples: 10, powerIters: 4 };
const TARGETS = ['query', 'value', 'attention.output.dense', 'output.dense'];
const FINGERPRINT = 'ab'.repeat(32);

function snapshotFor(modules: ReturnType<typeof robertaModules>, weights: Map<string, tf.Tensor>, cacheDir: string | null, rankPattern: Record<string, number> = {}): AdapterSnapshot {
  const targets = resolveTargets(modules, TARGETS, 4, rankPattern);
  const list = targets.map((t) => ({ name: t.module.name, rank: t.rank }));
  const factors = factorsFor(list, weights, { fingerprint: FINGERPRINT, init: 'svd', svd: SVD, seed: 3 }, { cacheDir });
  const config: LoraxsAdapterConfig = {
    engineVersion: '0.1.0', baseModel: { path: '/models/tiny', fingerprint: FINGERPRINT }, task: 'classification', numLabels: 2,
    id2label: { 0: 'neg', 1: 'pos' }, rank: 4, rankPattern, alpha: 16, init: 'svd', initStd: 1e-5, targets: TARGETS, svd: SVD, seed: 3,
    modules: targets.map((t) => ({ name: t.module.name, rank: t.rank, outFeatures: t.module.outFeatures, inFeatures: t.module.inFeatures })),
    factorsSha256: factorsChecksum(list.map((m) => m.name), factors),
  };
  const R = new Map(list.map((m) => [m.name, initR(m.rank, 0.5, moduleRng(3, m.name, 'R'))]));
  const head = new Map([['classifier.weight', { shape: [2, 16], data: new Rng(4).normalArray(32) }], ['classifier.bias', { shape: [2], data: new Float32Array([0.5, -0.5]) }]]);
  return { config, R, head };
}

test('encodeRanges / decodeRanges round trip', () => {
  for (const idx of [[], [0], [0, 1, 2, 5, 7, 8], [3, 7, 11, 15]]) assert.deepEqual(decodeRanges(encodeRanges(idx)), idx);
  assert.equal(encodeRanges([0, 1, 2, 3]), '0-3');
  assert.equal(decodeRanges('1-x'), undefined);
});

test('save/load round trip: R stacked by rank, file size 4·Σr² + header, head and config preserved', () => {
  const modules = robertaModules(2, 16);
  const weights = randomWeights(modules, 1);
  const dir = path.join(tempDir(), 'out');
  try {
    const snap = snapshotFor(modules, weights, null, { 'layer.1.output.dense': 8 });
    saveAdapter(dir, snap);
    fs.writeFileSync(path.join(dir, 'metrics.jsonl'), '{}\n');
    const header = readSafetensorsHeader(path.join(dir, ADAPTER_FILE));
    assert.deepEqual([...header.tensors.keys()], ['R.r4', 'R.r8']);
    assert.deepEqual(header.tensors.get('R.r4')!.shape, [7, 4, 4]);
    assert.deepEqual(header.tensors.get('R.r8')!.shape, [1, 8, 8]);
    const sumR2 = 7 * 16 + 64;
    assert.equal(fs.statSync(path.join(dir, ADAPTER_FILE)).size, 8 + header.headerLength + 4 * sumR2);
    const back = loadAdapter(dir);
    assert.deepEqual(back.config, snap.config);
    for (const [name, r] of snap.R) assert.deepEqual(back.R.get(name), r, name);
    assert.deepEqual(back.head.get('classifier.bias')!.data, new Float32Array([0.5, -0.5]));
    assert.equal(back.factors, undefined);
    // Saving again over the folder keeps unrelated files.
    saveAdapter(dir, snap);
    assert.ok(fs.existsSync(path.join(dir, 'metrics.jsonl')));
    assert.deepEqual(fs.readdirSync(dir).filter((f) => f.includes('.tmp-')), []);
  } finally {
    disposeWeights(weights);
  }
});

test('adapter.safetensors header stays under 2 KB for RoBERTa-large (24 layers × 4 targets, mixed ranks)', () => {
  const names: string[] = [];
  for (let l = 0; l < 24; l++) {
    for (const t of ['attention.self.query', 'attention.self.value', 'attention.output.dense', 'output.dense']) names.push(`roberta.encoder.layer.${l}.${t}`);
  }
  const modules = names.map((name) => ({ name, rank: name.endsWith('.output.dense') && !name.includes('attention') ? 25 : 16, outFeatures: 1024, inFeatures: 1024 }));
  const config = { modules } as unknown as LoraxsAdapterConfig;
  const R = new Map(modules.map((m) => [m.name, new Float32Array(m.rank * m.rank)]));
  const bytes = encodeAdapterTensors(config, R);
  const headerLength = Number(bytes.readBigUInt64LE(0));
  assert.ok(headerLength < 2048, `header ${headerLength} bytes`);
  const sumR2 = modules.reduce((a, m) => a + m.rank * m.rank, 0);
  assert.equal(bytes.length, 8 + headerLength + 4 * sumR2);
});

test('load refuses: missing config, bad config value (names the key), edited tensor file (names the file)', () => {
  const modules = robertaModules(1, 16);
  const weights = randomWeights(modules, 2);
  const root = tempDir();
  try {
    assert.throws(() => loadAdapter(root), (e: unknown) => e instanceof LoraxsError && /loraxs_config\.json is missing/.test(e.message));
    const dir = path.join(root, 'a');
    saveAdapter(dir, snapshotFor(modules, weights, null));
    const cfgFile = path.join(dir, CONFIG_FILE);
    const good = fs.readFileSync(cfgFile, 'utf8');
    fs.writeFileSync(cfgFile, good.replace('"init": "svd"', '"init": "svd-top"'));
    assert.throws(() => loadAdapter(dir), (e: unknown) => e instanceof LoraxsError && e.place?.file === cfgFile && e.place?.detail === 'init' && /unknown init "svd-top"/.test(e.message));
    fs.writeFileSync(cfgFile, good);
    const file = path.join(dir, ADAPTER_FILE);
    const bytes = fs.readFileSync(file);
    bytes[bytes.length - 1] ^= 0x40;
    fs.writeFileSync(file, bytes);
    assert.throws(() => loadAdapter(dir), (e: unknown) => e instanceof LoraxsError && e.place?.file === file && /does not match loraxs_config\.json/.test(e.message));
    fs.writeFileSync(file, bytes.subarray(0, 50));
    assert.throws(() => loadAdapter(dir), (e: unknown) => e instanceof LoraxsError && e.place?.file === file);
    fs.rmSync(path.join(dir, HEAD_FILE));
    fs.writeFileSync(file, Buffer.alloc(0));
    assert.throws(() => loadAdapter(dir), LoraxsError);
  } finally {
    disposeWeights(weights);
  }
});

test('factor cache: content-addressed, reused bit-exactly, keyed by every input; checksum guards the adapter', () => {
  const modules = robertaModules(1, 16);
  const weights = randomWeights(modules, 3);
  const cache = tempDir('loraxs-cache-');
  try {
    const list = [{ name: modules[0].name, rank: 4 }, { name: modules[2].name, rank: 4 }];
    const recipe = { fingerprint: FINGERPRINT, init: 'svd' as const, svd: SVD, seed: 3 };
    const seen: boolean[] = [];
    const first = factorsFor(list, weights, recipe, { cacheDir: cache, onModule: (p) => seen.push(p.cached) });
    const second = factorsFor(list, weights, recipe, { cacheDir: cache, onModule: (p) => seen.push(p.cached) });
    assert.deepEqual(seen, [false, false, true, true]);
    assert.equal(fs.readdirSync(cache).length, 2);
    for (const m of list) assert.deepEqual(second.get(m.name)!.A, first.get(m.name)!.A);
    const key = factorCacheKey(recipe, list[0].name, 4);
    assert.notEqual(key, factorCacheKey({ ...recipe, seed: 4 }, list[0].name, 4));
    assert.notEqual(key, factorCacheKey({ ...recipe, svd: { ...SVD, powerIters: 5 } }, list[0].name, 4));
    assert.notEqual(key, factorCacheKey({ ...recipe, fingerprint: 'cd'.repeat(32) }, list[0].name, 4));
    assert.notEqual(key, factorCacheKey(recipe, list[0].name, 5));
    // A damaged entry is recomputed.
    fs.writeFileSync(path.join(cache, `${key}.safetensors`), 'garbage');
    const third = factorsFor(list, weights, recipe, { cacheDir: cache });
    assert.deepEqual(third.get(list[0].name)!.A, first.get(list[0].name)!.A);

    // adapterFactors: the recomputed checksum must match the adapter's.
    const dir = path.join(tempDir(), 'adapter');
    const snap = snapshotFor(modules, weights, cache);
    saveAdapter(dir, snap);
    const loaded = loadAdapter(dir);
    const again = adapterFactors(dir, loaded, weights, { cacheDir: cache });
    assert.equal(factorsChecksum(snap.config.modules.map((m) => m.name), again), snap.config.factorsSha256);
    const tampered = { ...loaded, config: { ...loaded.config, factorsSha256: '0'.repeat(64) } };
    assert.throws(() => adapterFactors(dir, tampered, weights, { cacheDir: cache }), (e: unknown) =>
      e instanceof LoraxsError && /differ from those the adapter was trained with/.test(e.message) && /loraxs-factors/.test(e.message));
    assert.throws(() => checkBaseModel(dir, loaded, 'cd'.repeat(32), '/models/other'), (e: unknown) =>
      e instanceof LoraxsError && /trained on \/models\/tiny/.test(e.message) && e.place?.detail === 'base_model.fingerprint');

    // export --format loraxs-factors: the folder ships its factors and loads without recomputing.
    const exported = path.join(tempDir(), 'exp');
    const files = exportAdapter(exported, 'loraxs-factors', { snapshot: loaded, factors: again });
    assert.deepEqual(files, ['adapter.safetensors', 'factors.safetensors', 'head.safetensors', 'loraxs_config.json']);
    const shipped = loadAdapter(exported);
    assert.ok(shipped.factors);
    const viaShipped = adapterFactors(exported, { ...shipped }, new Map(), { cacheDir: null });
    for (const m of snap.config.modules) assert.deepEqual(viaShipped.get(m.name)!.B, again.get(m.name)!.B);
  } finally {
    disposeWeights(weights);
  }
});

test('export peft-lora writes adapter_config.json and adapter_model.safetensors (format pt), atomically replacing the folder', () => {
  const modules = robertaModules(1, 16);
  const weights = randomWeights(modules, 5);
  try {
    const snap = snapshotFor(modules, weights, null);
    const factors = factorsFor(snap.config.modules, weights, { fingerprint: FINGERPRINT, init: 'svd', svd: SVD, seed: 3 }, { cacheDir: null });
    const out = path.join(tempDir(), 'peft');
    fs.mkdirSync(out);
    fs.writeFileSync(path.join(out, 'stale.txt'), 'old');
    exportAdapter(out, 'peft-lora', { snapshot: snap, factors });
    assert.deepEqual(fs.readdirSync(out).sort(), ['adapter_config.json', 'adapter_model.safetensors']);
    const cfg = JSON.parse(fs.readFileSync(path.join(out, 'adapter_config.json'), 'utf8'));
    assert.equal(cfg.base_model_name_or_path, '/models/tiny');
    assert.equal(cfg.r, 4);
    assert.equal(cfg.lora_alpha, 4);
    const h = readSafetensorsHeader(path.join(out, 'adapter_model.safetensors'));
    assert.equal(h.metadata.format, 'pt');
    assert.ok(h.tensors.has('base_model.model.roberta.encoder.layer.0.attention.self.query.lora_A.weight'));
    assert.ok(h.tensors.has('base_model.model.classifier.weight'));
    const official = path.join(tempDir(), 'official');
    exportAdapter(official, 'loraxs-official', { snapshot: snap, factors });
    assert.match(fs.readFileSync(path.join(official, 'README.md'), 'utf8'), /plain PEFT cannot load this folder correctly/);
    const oh = readSafetensorsHeader(path.join(official, 'adapter_model.safetensors'));
    assert.ok(oh.tensors.has('base_model.model.roberta.encoder.layer.0.attention.self.query_lora_latent_mapping.weight'));
  } finally {
    disposeWeights(weights);
  }
});

test('writeHfModel: config for the head, F16 conversion, sharding with an index, tokenizer files copied', () => {
  const src = tempDir();
  fs.writeFileSync(path.join(src, 'tokenizer.json'), '{"model":{}}');
  fs.writeFileSync(path.join(src, 'merges.txt'), '#');
  const raw = { model_type: 'roberta', hidden_size: 16, architectures: ['RobertaForMaskedLM'], torch_dtype: 'float16' };
  const config = configForHead(raw, 'roberta', 'classification', { 0: 'neg', 1: 'pos' }, 2);
  assert.deepEqual(config.architectures, ['RobertaForSequenceClassification']);
  assert.deepEqual(config.id2label, { 0: 'neg', 1: 'pos' });
  assert.deepEqual(config.label2id, { neg: 0, pos: 1 });
  assert.deepEqual(configForHead(raw, 'llama', 'causal-lm', null, null).architectures, ['LlamaForCausalLM']);
  assert.equal(configForHead(raw, 'roberta', 'regression', null, null).problem_type, 'regression');

  const a = tf.tensor2d([1, 2.5, -3, 65504], [2, 2]);
  const tensors = new Map<string, tf.Tensor | { shape: number[]; data: Float32Array }>([
    ['roberta.encoder.layer.0.attention.self.query.weight', a],
    ['classifier.dense.weight', { shape: [3, 4], data: Float32Array.from({ length: 12 }, (_, i) => i / 3) }],
    ['classifier.out_proj.bias', { shape: [2], data: new Float32Array([0.1, 0.2]) }],
  ]);
  const out = path.join(tempDir(), 'merged');
  try {
    const files = writeHfModel(out, { config, tensors, dtype: 'float16', copyFrom: src, maxShardBytes: 32 });
    assert.deepEqual(files, ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']);
    const index = JSON.parse(fs.readFileSync(path.join(out, 'model.safetensors.index.json'), 'utf8'));
    assert.equal(index.metadata.total_size, 2 * (4 + 12 + 2));
    assert.equal(index.weight_map['classifier.dense.weight'], 'model-00001-of-00002.safetensors');
    assert.equal(index.weight_map['classifier.out_proj.bias'], 'model-00002-of-00002.safetensors');
    const h = readSafetensorsHeader(path.join(out, files[0]));
    assert.equal(h.metadata.format, 'pt');
    assert.equal(h.tensors.get('roberta.encoder.layer.0.attention.self.query.weight')!.dtype, 'F16');
    assert.deepEqual(readTensorFloat32(h, 'roberta.encoder.layer.0.attention.self.query.weight'), new Float32Array([1, 2.5, -3, 65504]));
    assert.ok(fs.existsSync(path.join(out, 'tokenizer.json')) && fs.existsSync(path.join(out, 'merges.txt')));
    assert.deepEqual(JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')).architectures, ['RobertaForSequenceClassification']);
    // One file when it fits.
    const single = path.join(tempDir(), 'single');
    assert.deepEqual(writeHfModel(single, { config, tensors, dtype: 'float32' }), ['model.safetensors']);
    assert.ok(!fs.existsSync(path.join(single, 'model.safetensors.index.json')));
  } finally {
    a.dispose();
  }
});

// A merge whose output keeps exactly the source file's tensors copies the file and writes the merged
// tensors over their ranges: the result must hold the same tensors as writing everything anew, the source
// must be untouched, and any difference in the tensor set (a head added, another dtype) writes anew.
test('writeHfModel from a source file: copied and patched in place equals written anew; other tensor sets are written anew', () => {
  const dir = tempDir();
  const srcFile = path.join(dir, 'model.safetensors');
  const rng = new Rng(3);
  const stored = [
    { name: 'model.embed_tokens.weight', dtype: 'BF16' as const, shape: [6, 4] },
    { name: 'model.layers.0.self_attn.q_proj.weight', dtype: 'BF16' as const, shape: [4, 4] },
    { name: 'model.norm.weight', dtype: 'BF16' as const, shape: [4] },
  ];
  const bf16 = (n: number): Uint8Array => {
    const f = rng.normalArray(n);
    const u = new Uint16Array(n);
    for (let i = 0; i < n; i++) u[i] = new Uint32Array(new Float32Array([f[i]]).buffer)[0] >>> 16;
    return new Uint8Array(u.buffer);
  };
  writeSafetensors(srcFile, stored.map((t) => ({ ...t, data: bf16(t.shape.reduce((a, b) => a * b, 1)) })), { format: 'pt', written_by: 'the source' });
  const source = readSafetensorsHeader(srcFile);
  const before = fs.readFileSync(srcFile);
  const merged = tf.tensor2d(Float32Array.from({ length: 16 }, (_, i) => (i - 7.3) / 3), [4, 4]);
  const tensors = (extra = false) => {
    const m = new Map<string, Parameters<typeof writeHfModel>[1]['tensors'] extends Map<string, infer V> ? V : never>();
    for (const t of stored) {
      const e = source.tensors.get(t.name)!;
      m.set(t.name, t.name.includes('q_proj') ? merged : { shape: e.shape, dtype: e.dtype, read: () => readTensorBytes(source, t.name) });
    }
    if (extra) m.set('score.weight', { shape: [2, 4], data: new Float32Array(8).fill(0.5) });
    return m;
  };
  const config = { model_type: 'llama', architectures: ['LlamaForCausalLM'] };
  try {
    const patched = path.join(dir, 'patched');
    const anew = path.join(dir, 'anew');
    writeHfModel(patched, { config, tensors: tensors(), dtype: 'bfloat16', source });
    writeHfModel(anew, { config, tensors: tensors(), dtype: 'bfloat16', source: false });
    const hp = readSafetensorsHeader(path.join(patched, 'model.safetensors'));
    const ha = readSafetensorsHeader(path.join(anew, 'model.safetensors'));
    assert.equal(hp.metadata.written_by, 'the source', 'the patched file is a copy of the source');
    assert.equal(ha.metadata.written_by, undefined);
    for (const t of stored) assert.deepEqual(readTensorBytes(hp, t.name), readTensorBytes(ha, t.name), t.name);
    assert.notDeepEqual(readTensorBytes(hp, stored[1].name), readTensorBytes(source, stored[1].name), 'the merged tensor was written');
    assert.ok(fs.readFileSync(srcFile).equals(before), 'the source file is untouched');
    assert.ok(fs.existsSync(path.join(patched, 'config.json')));
    // A head added: the tensor set differs, so the file is written anew (with the head in it).
    const withHead = path.join(dir, 'with-head');
    writeHfModel(withHead, { config, tensors: tensors(true), dtype: 'bfloat16', source });
    assert.ok(readSafetensorsHeader(path.join(withHead, 'model.safetensors')).tensors.has('score.weight'));
    // Another output dtype: written anew, in that dtype.
    const f32 = path.join(dir, 'f32');
    writeHfModel(f32, { config, tensors: tensors(), dtype: 'float32', source });
    assert.equal(readSafetensorsHeader(path.join(f32, 'model.safetensors')).tensors.get(stored[0].name)!.dtype, 'F32');
  } finally {
    merged.dispose();
  }
});
