import { test, before } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '../sidecar/backend/tf';
import { initBackend } from '../sidecar/backend/choice';
import { LoraxsError } from '../sidecar/errors';
import { Rng } from '../sidecar/rng';
import {
  assertFitsBackend, canonicalName, checkpointFingerprint, countParameters, float32Bytes, loadWeights, openCheckpoint,
} from '../sidecar/io/model_folder';
import { bf16ArrayToFloat32, f16ArrayToFloat32 } from '../sidecar/io/float16';
import { parseModelConfig } from '../sidecar/io/model_config';
import { float32ToDtype, readSafetensorsHeader, writeSafetensors, type TensorToWrite } from '../sidecar/io/safetensors';
import { writeJsonAtomic } from '../sidecar/io/atomic_write';
import { needsShared, stories260k, tempDir } from './paths';

before(async () => {
  await initBackend();
});

const root = tempDir('loraxs-checkpoint-');
let counter = 0;
function freshDir(): string {
  const dir = path.join(root, `m${counter++}`);
  fs.mkdirSync(dir);
  return dir;
}

const tinyLlama = {
  architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: 8, intermediate_size: 12, num_hidden_layers: 2,
  num_attention_heads: 2, num_key_value_heads: 1, vocab_size: 16, max_position_embeddings: 32, rms_norm_eps: 1e-6,
  tie_word_embeddings: false, torch_dtype: 'float32',
};

/** Tensor names and shapes of a tiny Llama (as LlamaForCausalLM saves them). */
function llamaShapes(prefix = 'model.', withHead = true): [string, number[]][] {
  const out: [string, number[]][] = [[`${prefix}embed_tokens.weight`, [16, 8]]];
  for (let l = 0; l < 2; l++) {
    const p = `${prefix}layers.${l}.`;
    out.push([`${p}self_attn.q_proj.weight`, [8, 8]], [`${p}self_attn.k_proj.weight`, [4, 8]], [`${p}self_attn.v_proj.weight`, [4, 8]],
      [`${p}self_attn.o_proj.weight`, [8, 8]], [`${p}mlp.gate_proj.weight`, [12, 8]], [`${p}mlp.up_proj.weight`, [12, 8]],
      [`${p}mlp.down_proj.weight`, [8, 12]], [`${p}input_layernorm.weight`, [8]], [`${p}post_attention_layernorm.weight`, [8]]);
  }
  out.push([`${prefix}norm.weight`, [8]]);
  if (withHead) out.push(['lm_head.weight', [16, 8]]);
  return out;
}

interface Written { tensors: TensorToWrite[]; float32: Map<string, Float32Array> }

/** Random tensors in `dtype`, with the float32 values they decode to (exact widening of what is stored). */
function randomTensors(shapes: [string, number[]][], dtype: 'F32' | 'F16' | 'BF16', seed: number): Written {
  const rng = new Rng(seed);
  const tensors: TensorToWrite[] = [];
  const float32 = new Map<string, Float32Array>();
  for (const [name, shape] of shapes) {
    const n = shape.reduce((a, b) => a * b, 1);
    const values = rng.normalArray(n, 0.5);
    const data = float32ToDtype(values, dtype);
    tensors.push({ name, dtype, shape, data });
    float32.set(name, dtype === 'F32' ? values : dtype === 'F16' ? f16ArrayToFloat32(data as Uint16Array) : bf16ArrayToFloat32(data as Uint16Array));
  }
  return { tensors, float32 };
}

function assertLoadedExactly(weights: Map<string, tf.Tensor>, expected: Map<string, Float32Array>, rename = (n: string) => n): void {
  assert.equal(weights.size, expected.size);
  for (const [name, values] of expected) {
    const t = weights.get(rename(name));
    assert.ok(t, `missing ${rename(name)}`);
    assert.equal(t.dtype, 'float32');
    assert.deepEqual(new Float32Array(t.dataSync()), values, name);
  }
}

for (const dtype of ['F32', 'F16', 'BF16'] as const) {
  test(`single-file ${dtype} checkpoint reads back bit-exactly as float32`, () => {
    const dir = freshDir();
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(tinyLlama));
    const w = randomTensors(llamaShapes(), dtype, 10);
    writeSafetensors(path.join(dir, 'model.safetensors'), w.tensors, { format: 'pt' });
    const ckpt = openCheckpoint(dir);
    assert.equal(ckpt.tensors.size, 21);
    assert.equal(ckpt.tiedLmHead, false);
    assert.deepEqual(ckpt.files, [path.join(dir, 'model.safetensors')]);
    assert.deepEqual(ckpt.tensors.get('model.layers.1.self_attn.k_proj.weight')!.entry.shape, [4, 8]);
    const weights = loadWeights(ckpt);
    assertLoadedExactly(weights, w.float32);
    assert.deepEqual(weights.get('model.layers.0.mlp.down_proj.weight')!.shape, [8, 12]);
    tf.dispose([...weights.values()]);
    const total = llamaShapes().reduce((a, [, s]) => a + s.reduce((x, y) => x * y, 1), 0);
    assert.equal(countParameters(ckpt), total);
    assert.equal(float32Bytes(ckpt), 4 * total);
    // A subset by name.
    const some = loadWeights(ckpt, ['model.norm.weight']);
    assert.deepEqual([...some.keys()], ['model.norm.weight']);
    tf.dispose([...some.values()]);
    assert.throws(() => loadWeights(ckpt, ['model.nope']), (e: unknown) => e instanceof LoraxsError && e.place?.detail === 'model.nope');
  });
}

test('sharded checkpoint through model.safetensors.index.json', () => {
  const dir = freshDir();
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(tinyLlama));
  const w = randomTensors(llamaShapes(), 'BF16', 11);
  const shards = ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'];
  const first = w.tensors.slice(0, 9);
  const second = w.tensors.slice(9);
  writeSafetensors(path.join(dir, shards[0]), first);
  writeSafetensors(path.join(dir, shards[1]), second);
  const weightMap: Record<string, string> = {};
  for (const t of first) weightMap[t.name] = shards[0];
  for (const t of second) weightMap[t.name] = shards[1];
  writeJsonAtomic(path.join(dir, 'model.safetensors.index.json'), { metadata: { total_size: 1234 }, weight_map: weightMap });
  const ckpt = openCheckpoint(dir);
  assert.deepEqual(ckpt.files, shards.map((s) => path.join(dir, s)));
  assert.equal(ckpt.tensors.get('lm_head.weight')!.header.file, path.join(dir, shards[1]));
  const weights = loadWeights(ckpt);
  assertLoadedExactly(weights, w.float32);
  tf.dispose([...weights.values()]);

  // A name the index puts in a shard that lacks it, and a missing shard.
  writeJsonAtomic(path.join(dir, 'model.safetensors.index.json'), { weight_map: { ...weightMap, 'model.extra.weight': shards[0] } });
  assert.throws(() => openCheckpoint(dir), (e: unknown) => e instanceof LoraxsError && e.place?.detail === 'model.extra.weight'
    && /weight_map puts tensor 'model\.extra\.weight' in model-00001-of-00002\.safetensors/.test(e.message));
  fs.rmSync(path.join(dir, shards[1]));
  writeJsonAtomic(path.join(dir, 'model.safetensors.index.json'), { weight_map: weightMap });
  assert.throws(() => openCheckpoint(dir), (e: unknown) => e instanceof LoraxsError && /shard model-00002-of-00002\.safetensors listed in weight_map is missing/.test(e.message));
  // Shards without an index.
  fs.rmSync(path.join(dir, 'model.safetensors.index.json'));
  assert.throws(() => openCheckpoint(dir), /no model\.safetensors\.index\.json/);
});

test('a base-model checkpoint (no `model.` prefix) and a tied one without lm_head', () => {
  const dir = freshDir();
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...tinyLlama, tie_word_embeddings: true }));
  const w = randomTensors(llamaShapes('', false), 'F32', 12);
  writeSafetensors(path.join(dir, 'model.safetensors'), w.tensors);
  const ckpt = openCheckpoint(dir);
  assert.equal(ckpt.tiedLmHead, true);
  assert.ok(ckpt.tensors.has('model.embed_tokens.weight') && ckpt.tensors.has('model.layers.0.self_attn.q_proj.weight') && ckpt.tensors.has('model.norm.weight'));
  assert.equal(ckpt.tensors.get('model.norm.weight')!.sourceName, 'norm.weight');
  const weights = loadWeights(ckpt);
  assertLoadedExactly(weights, w.float32, (n) => `model.${n}`);
  tf.dispose([...weights.values()]);
  const total = llamaShapes('', false).reduce((a, [, s]) => a + s.reduce((x, y) => x * y, 1), 0);
  assert.equal(countParameters(ckpt), total);
});

test('a tied model that stores a copy of lm_head counts it once', () => {
  const dir = freshDir();
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...tinyLlama, tie_word_embeddings: true }));
  writeSafetensors(path.join(dir, 'model.safetensors'), randomTensors(llamaShapes(), 'F32', 13).tensors);
  const ckpt = openCheckpoint(dir);
  assert.equal(ckpt.tiedLmHead, false, 'lm_head.weight is present, so consumers use it');
  const all = llamaShapes().reduce((a, [, s]) => a + s.reduce((x, y) => x * y, 1), 0);
  assert.equal(countParameters(ckpt), all - 16 * 8);
  assert.equal(float32Bytes(ckpt), 4 * all, 'the copy is still loaded');
});

test('canonical names for encoders: prefix added, TF-style LayerNorm renamed, heads kept', () => {
  const bert = parseModelConfig({ model_type: 'bert', hidden_size: 8, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 16, vocab_size: 10 }, 'config.json');
  const roberta = parseModelConfig({ ...bert.raw, model_type: 'roberta' }, 'config.json');
  const llama = parseModelConfig(tinyLlama, 'config.json');
  const cases: [typeof bert, string, string][] = [
    [bert, 'embeddings.word_embeddings.weight', 'bert.embeddings.word_embeddings.weight'],
    [bert, 'encoder.layer.0.attention.self.query.weight', 'bert.encoder.layer.0.attention.self.query.weight'],
    [bert, 'pooler.dense.weight', 'bert.pooler.dense.weight'],
    [bert, 'bert.encoder.layer.0.output.LayerNorm.gamma', 'bert.encoder.layer.0.output.LayerNorm.weight'],
    [bert, 'embeddings.LayerNorm.beta', 'bert.embeddings.LayerNorm.bias'],
    [bert, 'cls.predictions.transform.LayerNorm.gamma', 'cls.predictions.transform.LayerNorm.weight'],
    [bert, 'classifier.weight', 'classifier.weight'],
    [roberta, 'encoder.layer.3.output.dense.bias', 'roberta.encoder.layer.3.output.dense.bias'],
    [roberta, 'roberta.embeddings.position_embeddings.weight', 'roberta.embeddings.position_embeddings.weight'],
    [roberta, 'classifier.out_proj.weight', 'classifier.out_proj.weight'],
    [roberta, 'lm_head.dense.weight', 'lm_head.dense.weight'],
    [llama, 'layers.0.self_attn.q_proj.weight', 'model.layers.0.self_attn.q_proj.weight'],
    [llama, 'embed_tokens.weight', 'model.embed_tokens.weight'],
    [llama, 'norm.weight', 'model.norm.weight'],
    [llama, 'model.norm.weight', 'model.norm.weight'],
    [llama, 'lm_head.weight', 'lm_head.weight'],
    [llama, 'score.weight', 'score.weight'],
  ];
  for (const [config, source, canonical] of cases) assert.equal(canonicalName(config, source), canonical, source);
});

test('a BERT checkpoint saved from BertModel with TF-style names and a position_ids buffer', () => {
  const dir = freshDir();
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ model_type: 'bert', hidden_size: 4, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 8, vocab_size: 10, max_position_embeddings: 6 }));
  const w = randomTensors([['embeddings.word_embeddings.weight', [10, 4]], ['embeddings.LayerNorm.gamma', [4]], ['embeddings.LayerNorm.beta', [4]]], 'F16', 14);
  w.tensors.push({ name: 'embeddings.position_ids', dtype: 'I64', shape: [1, 6], data: BigInt64Array.from([0n, 1n, 2n, 3n, 4n, 5n]) });
  writeSafetensors(path.join(dir, 'model.safetensors'), w.tensors);
  const ckpt = openCheckpoint(dir);
  assert.ok(ckpt.tensors.has('bert.embeddings.position_ids'), 'the buffer is listed');
  assert.equal(countParameters(ckpt), 10 * 4 + 8, 'buffers are not parameters');
  const weights = loadWeights(ckpt);
  assert.deepEqual([...weights.keys()].sort(), ['bert.embeddings.LayerNorm.bias', 'bert.embeddings.LayerNorm.weight', 'bert.embeddings.word_embeddings.weight']);
  assert.deepEqual(new Float32Array(weights.get('bert.embeddings.LayerNorm.weight')!.dataSync()), w.float32.get('embeddings.LayerNorm.gamma'));
  tf.dispose([...weights.values()]);
  assert.throws(() => loadWeights(ckpt, ['bert.embeddings.position_ids']), /dtype I64; only floating tensors/);
});

test('two stored names with the same canonical name are refused', () => {
  const dir = freshDir();
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(tinyLlama));
  writeSafetensors(path.join(dir, 'model.safetensors'), randomTensors([['norm.weight', [8]], ['model.norm.weight', [8]]], 'F32', 15).tensors);
  assert.throws(() => openCheckpoint(dir), (e: unknown) => e instanceof LoraxsError && /are both 'model\.norm\.weight'/.test(e.message));
});

test('folders without safetensors weights or config.json get explaining errors', () => {
  const bin = freshDir();
  fs.writeFileSync(path.join(bin, 'config.json'), JSON.stringify(tinyLlama));
  fs.writeFileSync(path.join(bin, 'pytorch_model.bin'), 'not really');
  assert.throws(() => openCheckpoint(bin), (e: unknown) => e instanceof LoraxsError
    && /only PyTorch pickle weights \(pytorch_model\.bin\)/.test(e.message) && e.message.includes('safe_serialization=True')
    && e.message.includes(`from_pretrained('${bin}')`) && e.place?.file === path.join(bin, 'pytorch_model.bin'));
  const empty = freshDir();
  fs.writeFileSync(path.join(empty, 'config.json'), JSON.stringify(tinyLlama));
  assert.throws(() => openCheckpoint(empty), /no model\.safetensors or model\.safetensors\.index\.json/);
  const noConfig = freshDir();
  writeSafetensors(path.join(noConfig, 'model.safetensors'), randomTensors([['norm.weight', [8]]], 'F32', 16).tensors);
  assert.throws(() => openCheckpoint(noConfig), (e: unknown) => e instanceof LoraxsError && /no config\.json in/.test(e.message));
  assert.throws(() => openCheckpoint(path.join(root, 'does-not-exist')), /does not exist/);
  // A corrupt weight file surfaces the reader's error, naming the file.
  const corrupt = freshDir();
  fs.writeFileSync(path.join(corrupt, 'config.json'), JSON.stringify(tinyLlama));
  fs.writeFileSync(path.join(corrupt, 'model.safetensors'), Buffer.alloc(4));
  assert.throws(() => openCheckpoint(corrupt), (e: unknown) => e instanceof LoraxsError && e.place?.file === path.join(corrupt, 'model.safetensors'));
});

test('fingerprint: stable, and changes with config.json or any header; reads no data', () => {
  const dir = freshDir();
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(tinyLlama));
  const w = randomTensors(llamaShapes(), 'F32', 17);
  writeSafetensors(path.join(dir, 'model.safetensors'), w.tensors);
  const a = checkpointFingerprint(openCheckpoint(dir));
  assert.match(a, /^[0-9a-f]{64}$/);
  assert.equal(checkpointFingerprint(openCheckpoint(dir)), a);
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...tinyLlama, rms_norm_eps: 1e-5 }));
  const b = checkpointFingerprint(openCheckpoint(dir));
  assert.notEqual(b, a);
  writeSafetensors(path.join(dir, 'model.safetensors'), w.tensors, { format: 'pt' });
  assert.notEqual(checkpointFingerprint(openCheckpoint(dir)), b);
});

test('assertFitsBackend refuses a model too large for the backend, with size and limit in GB', () => {
  const dir = freshDir();
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(tinyLlama));
  writeSafetensors(path.join(dir, 'model.safetensors'), randomTensors(llamaShapes(), 'F16', 18).tensors);
  const ckpt = openCheckpoint(dir);
  const bytes = float32Bytes(ckpt);
  assertFitsBackend(ckpt, Math.ceil(bytes * 1.5), 'wasm');
  assert.throws(() => assertFitsBackend(ckpt, bytes, 'wasm'), (e: unknown) => e instanceof LoraxsError
    && /too large for the wasm backend: its weights take 0\.00 GB as float32/.test(e.message) && /limit of 0\.00 GB/.test(e.message));
  // A 7B-parameter F16 model, described by its header alone (no file needed): refused for the 4 GB wasm heap.
  const n = 7e9;
  const entry = { name: 'model.embed_tokens.weight', dtype: 'F16' as const, shape: [n], begin: 0, end: 2 * n };
  const header = { file: path.join(dir, 'model.safetensors'), headerLength: 96, dataStart: 104, fileSize: 104 + 2 * n, tensors: new Map([[entry.name, entry]]), metadata: {} };
  const bigCkpt = { ...ckpt, tensors: new Map([[entry.name, { header, entry, sourceName: entry.name }]]) };
  assert.equal(countParameters(bigCkpt), n);
  assert.throws(() => assertFitsBackend(bigCkpt, 4 * 1024 ** 3, 'wasm'), /weights take 26\.08 GB as float32 \(about 39\.12 GB with working memory\), above the backend's limit of 4\.00 GB/);
});

test('stories260k: 48 tensors, 292,800 floats, tied, lm_head copy counted once', { skip: needsShared(stories260k) }, () => {
  const ckpt = openCheckpoint(stories260k);
  assert.equal(ckpt.tensors.size, 48);
  assert.equal(float32Bytes(ckpt), 292800 * 4);
  assert.equal(countParameters(ckpt), 292800 - 512 * 64);
  assert.equal(ckpt.config.tieWordEmbeddings, true);
  assert.equal(ckpt.tiedLmHead, false, 'stories260k stores lm_head.weight as a copy');
  assert.deepEqual(readSafetensorsHeader(path.join(stories260k, 'model.safetensors')).metadata, { format: 'pt' });
  const weights = loadWeights(ckpt);
  assert.equal(weights.size, 48);
  const emb = weights.get('model.embed_tokens.weight')!;
  assert.deepEqual(emb.shape, [512, 64]);
  assert.deepEqual(weights.get('model.layers.0.self_attn.k_proj.weight')!.shape, [32, 64]);
  assert.deepEqual(weights.get('model.layers.4.mlp.down_proj.weight')!.shape, [64, 172]);
  assert.deepEqual(emb.dataSync(), weights.get('lm_head.weight')!.dataSync(), 'the stored lm_head is an exact copy');
  tf.dispose([...weights.values()]);
  assert.match(checkpointFingerprint(ckpt), /^[0-9a-f]{64}$/);
});
