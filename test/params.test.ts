/**
 * `loraxs params`: counts checked against published numbers (the paper's Table 1; PEFT's
 * print_trainable_parameters for Llama; the parameter counts transformers reports for roberta-large,
 * bert-base, Llama-2-7B, Llama-3-8B and Qwen2.5-0.5B), header counts against the tensors the test
 * itself writes, and errors placed at the config key.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { computeParams, estimateTrainingMemory, adaptedModules } from '../sidecar/loraxs/param_counts';
import { baseParamsFromConfig, linearModulesOf } from '../sidecar/models/linear_modules';
import { moduleTypeKeys } from '../sidecar/loraxs/target_keys';
import { loadConfig } from '../sidecar/config/parse';
import { parseModelConfig } from '../sidecar/io/model_config';
import { writeSafetensors } from '../sidecar/io/safetensors';
import type { TensorToWrite } from '../sidecar/io/safetensors';
import { LoraxsError } from '../sidecar/errors';
import { tempDir } from './paths';

const ROBERTA_LARGE = {
  model_type: 'roberta', hidden_size: 1024, num_hidden_layers: 24, num_attention_heads: 16, intermediate_size: 4096,
  vocab_size: 50265, max_position_embeddings: 514, type_vocab_size: 1, hidden_act: 'gelu', layer_norm_eps: 1e-5,
  pad_token_id: 1, bos_token_id: 0, eos_token_id: 2,
};
const BERT_BASE = {
  model_type: 'bert', hidden_size: 768, num_hidden_layers: 12, num_attention_heads: 12, intermediate_size: 3072,
  vocab_size: 30522, max_position_embeddings: 512, type_vocab_size: 2,
};
const LLAMA2_7B = {
  model_type: 'llama', hidden_size: 4096, num_hidden_layers: 32, num_attention_heads: 32, num_key_value_heads: 32,
  intermediate_size: 11008, vocab_size: 32000, max_position_embeddings: 4096, tie_word_embeddings: false,
};
const LLAMA3_8B = {
  model_type: 'llama', hidden_size: 4096, num_hidden_layers: 32, num_attention_heads: 32, num_key_value_heads: 8,
  intermediate_size: 14336, vocab_size: 128256, max_position_embeddings: 8192, rope_theta: 500000, tie_word_embeddings: false,
};
const QWEN25_05B = {
  model_type: 'qwen2', hidden_size: 896, num_hidden_layers: 24, num_attention_heads: 14, num_key_value_heads: 2,
  intermediate_size: 4864, vocab_size: 151936, max_position_embeddings: 32768, tie_word_embeddings: true,
};

/** Writes `<dir>/<name>/config.json` and a config file beside it; returns the config file's path. */
function workspace(modelConfig: object, yaml: string): string {
  const dir = tempDir();
  fs.mkdirSync(path.join(dir, 'model'));
  fs.writeFileSync(path.join(dir, 'model', 'config.json'), JSON.stringify(modelConfig, null, 2));
  const file = path.join(dir, 'run.loraxs.yaml');
  fs.writeFileSync(file, yaml);
  return file;
}

test("RoBERTa-large, targets [query, value, attention.output.dense, output.dense]: the paper's Table 1 LoRA-XS counts", () => {
  const file = workspace(ROBERTA_LARGE, 'model: model\nadapter:\n  rank: 16\n  targets: [query, value, attention.output.dense, output.dense]\n');
  const config = loadConfig(file);
  const table1: Array<[number, number]> = [[25, 60_000], [20, 38_400], [16, 24_576], [12, 13_824], [8, 6_144], [4, 1_536]];
  for (const [rank, loraxs] of table1) {
    const report = computeParams(config, { rank });
    assert.equal(report.loraxs, loraxs, `rank ${rank}`);
    assert.equal(report.modules, 96, `rank ${rank}: output.dense matches both attention.output.dense and the FFN output.dense`);
    assert.equal(report.adapterBytes, 4 * loraxs);
  }
  const r16 = computeParams(config);
  assert.deepEqual(Object.keys(r16.perModuleType), ['query', 'value', 'attention.output.dense', 'output.dense']);
  assert.deepEqual(r16.perModuleType['output.dense'], {
    count: 24, ranks: [16], loraxs: 24 * 256, lora: 24 * 16 * (4096 + 1024), vera: 24 * (1024 + 16), dims: [[1024, 4096]],
  });
  assert.deepEqual(r16.perModuleType['attention.output.dense'].dims, [[1024, 1024]]);
  assert.equal(r16.perModuleType['attention.output.dense'].count, 24);
  assert.equal(r16.baseParamsFrom, 'config.json');
});

test('RoBERTa-large, targets [query, value]: LoRA at rank 8 = 786,432 and VeRA at rank 256 = 61,440 (Table 1)', () => {
  const file = workspace(ROBERTA_LARGE, 'model: model\nadapter: {rank: 8, targets: [query, value]}\n');
  const config = loadConfig(file);
  const r8 = computeParams(config);
  assert.equal(r8.modules, 48);
  assert.equal(r8.lora, 786_432);
  assert.equal(computeParams(config, { rank: 256 }).vera, 61_440);
  // The CLI's --targets replaces the config's.
  assert.equal(computeParams(config, { targets: ['query'] }).modules, 24);
});

test('baseParams from config.json match the counts transformers reports', () => {
  // RobertaModel (with pooler) of roberta-large: 355,359,744; without the pooler 1024² + 1024 fewer.
  assert.equal(baseParamsFromConfig(parseModelConfig(ROBERTA_LARGE, 'config.json')), 355_359_744);
  // BertModel of bert-base-uncased: 109,482,240.
  assert.equal(baseParamsFromConfig(parseModelConfig(BERT_BASE, 'config.json')), 109_482_240);
  // LlamaForCausalLM Llama-2-7b: 6,738,415,616; Llama-3-8B (GQA, untied): 8,030,261,248.
  assert.equal(baseParamsFromConfig(parseModelConfig(LLAMA2_7B, 'config.json')), 6_738_415_616);
  assert.equal(baseParamsFromConfig(parseModelConfig(LLAMA3_8B, 'config.json')), 8_030_261_248);
  // Qwen2ForCausalLM Qwen2.5-0.5B (q/k/v biases, tied embeddings counted once): 494,032,768.
  assert.equal(baseParamsFromConfig(parseModelConfig(QWEN25_05B, 'config.json')), 494_032_768);
});

test("decoders: module shapes with grouped-query attention; LoRA counts equal PEFT's print_trainable_parameters", () => {
  const llama3 = workspace(LLAMA3_8B, 'model: model\nadapter: {rank: 8, targets: [q_proj, v_proj]}\n');
  const report = computeParams(loadConfig(llama3));
  assert.equal(report.lora, 3_407_872); // PEFT, Llama-3-8B, r=8, q_proj+v_proj
  assert.deepEqual(report.perModuleType.v_proj.dims, [[1024, 4096]]);
  assert.equal(report.loraxs, 64 * 64);
  const llama2 = workspace(LLAMA2_7B, 'model: model\nadapter: {rank: 8, targets: [q_proj, v_proj]}\n');
  assert.equal(computeParams(loadConfig(llama2)).lora, 4_194_304); // PEFT, Llama-2-7b, r=8
  // Default targets of a decoder: q_proj and v_proj.
  const defaults = workspace(QWEN25_05B, 'model: model\nadapter: {rank: 4}\n');
  const q = computeParams(loadConfig(defaults));
  assert.deepEqual(q.targets, ['q_proj', 'v_proj']);
  assert.equal(q.modules, 48);
  const qwenModules = linearModulesOf(parseModelConfig(QWEN25_05B, 'config.json'));
  assert.deepEqual(moduleTypeKeys(qwenModules), ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']);
  const names = qwenModules.slice(0, 7);
  assert.deepEqual(names.map((m) => [m.name, m.outFeatures, m.inFeatures, m.hasBias]), [
    ['model.layers.0.self_attn.q_proj', 896, 896, true],
    ['model.layers.0.self_attn.k_proj', 128, 896, true],
    ['model.layers.0.self_attn.v_proj', 128, 896, true],
    ['model.layers.0.self_attn.o_proj', 896, 896, false],
    ['model.layers.0.mlp.gate_proj', 4864, 896, false],
    ['model.layers.0.mlp.up_proj', 4864, 896, false],
    ['model.layers.0.mlp.down_proj', 896, 4864, false],
  ]);
});

test('rank_pattern: the longest matching key sets the rank', () => {
  const file = workspace(ROBERTA_LARGE,
    'model: model\nadapter:\n  rank: 4\n  rank_pattern: {output.dense: 32, attention.output.dense: 8}\n  targets: [query, attention.output.dense, output.dense]\n');
  const report = computeParams(loadConfig(file));
  assert.deepEqual(report.perModuleType.query.ranks, [4]);
  assert.deepEqual(report.perModuleType['attention.output.dense'].ranks, [8]);
  assert.deepEqual(report.perModuleType['output.dense'].ranks, [32]);
  assert.equal(report.loraxs, 24 * (16 + 64 + 1024));
});

test('a target that matches nothing, and a rank above a module dimension, are errors at the config key', () => {
  const tiny = { model_type: 'bert', hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 4, intermediate_size: 64, vocab_size: 50 };
  const noMatch = workspace(tiny, 'model: model\nadapter:\n  rank: 4\n  targets:\n    - query\n    - q_proj\n');
  assert.throws(() => computeParams(loadConfig(noMatch)), (e: unknown) => {
    assert.ok(e instanceof LoraxsError);
    assert.match(e.message, /^target 'q_proj' matches no module of this model \(did you mean 'query'\?\); module keys: query, key, value, attention\.output\.dense, intermediate\.dense, output\.dense, pooler\.dense$/);
    assert.deepEqual([e.place?.file, e.place?.line, e.place?.column], [noMatch, 6, 7]);
    return true;
  });
  const tooBig = workspace(tiny, 'model: model\nadapter:\n  rank: 33\n  targets: [query]\n');
  assert.throws(() => computeParams(loadConfig(tooBig)), (e: unknown) => {
    assert.ok(e instanceof LoraxsError);
    assert.match(e.message, /^rank 33 .*exceeds min\(out, in\) = 32 of bert\.encoder\.layer\.0\.attention\.self\.query/);
    assert.deepEqual([e.place?.line, e.place?.column], [3, 3]);
    return true;
  });
  // output.dense selects attention.output.dense (32 × 32) too: at most 32, the pattern asks 40.
  const pattern = workspace(tiny, 'model: model\nadapter:\n  rank: 4\n  rank_pattern: {output.dense: 40}\n  targets: [output.dense]\n');
  assert.throws(() => computeParams(loadConfig(pattern)), (e: unknown) => {
    assert.ok(e instanceof LoraxsError);
    assert.match(e.message, /^rank 40 .*exceeds min\(out, in\) = 32 of bert\.encoder\.layer\.0\.attention\.output\.dense/);
    assert.deepEqual([e.place?.line, e.place?.column, e.place?.detail], [4, 18, "adapter.rank_pattern['output.dense']"]);
    return true;
  });
  // A rank_pattern key that selects none of the adapted modules is refused, as training refuses it.
  const stray = workspace(tiny, 'model: model\nadapter:\n  rank: 4\n  rank_pattern: {key: 8}\n  targets: [query]\n');
  assert.throws(() => computeParams(loadConfig(stray)), (e: unknown) =>
    e instanceof LoraxsError && /rank_pattern key "key" matches none/.test(e.message) && e.place?.line === 4 && e.place?.column === 18);
  assert.throws(() => computeParams(loadConfig(noMatch), { rank: 2, targets: ['nope'] }),
    (e: unknown) => e instanceof LoraxsError && e.place?.detail === '--targets');
  // An editor buffer that differs from the file: errors are placed in the buffer's text.
  const buffer = 'model: model\n\n\nadapter:\n  rank: 4\n  targets: [query, q_proj]\n';
  assert.throws(() => computeParams({ ...loadConfig(noMatch), text: buffer }),
    (e: unknown) => e instanceof LoraxsError && e.place?.line === 6 && e.place?.column === 20);
  const noModel = path.join(tempDir(), 'x.loraxs.yaml');
  fs.writeFileSync(noModel, 'model: missing\nadapter: {}\n');
  assert.throws(() => computeParams(loadConfig(noModel)), /no config\.json in/);
});

/** A tensor of zeros in F32 or F16. */
function zeros(name: string, shape: number[], dtype: 'F32' | 'F16' = 'F32'): TensorToWrite {
  const n = shape.reduce((a, b) => a * b, 1);
  return { name, dtype, shape, data: dtype === 'F32' ? new Float32Array(n) : new Uint16Array(n) };
}

test('with safetensors present, baseParams counts the headers (a tied copy once, buffers not at all)', () => {
  const h = 8, layers = 2, inter = 16, vocab = 20, heads = 2, kv = 1, hd = 4;
  const cfg = { model_type: 'llama', hidden_size: h, num_hidden_layers: layers, num_attention_heads: heads, num_key_value_heads: kv,
    intermediate_size: inter, vocab_size: vocab, tie_word_embeddings: true };
  const dir = tempDir();
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg));
  const tensors: TensorToWrite[] = [zeros('model.embed_tokens.weight', [vocab, h], 'F16'), zeros('model.norm.weight', [h])];
  for (let i = 0; i < layers; i++) {
    const p = `model.layers.${i}`;
    tensors.push(
      zeros(`${p}.self_attn.q_proj.weight`, [heads * hd, h]), zeros(`${p}.self_attn.k_proj.weight`, [kv * hd, h]),
      zeros(`${p}.self_attn.v_proj.weight`, [kv * hd, h]), zeros(`${p}.self_attn.o_proj.weight`, [h, heads * hd]),
      zeros(`${p}.mlp.gate_proj.weight`, [inter, h]), zeros(`${p}.mlp.up_proj.weight`, [inter, h]),
      zeros(`${p}.mlp.down_proj.weight`, [h, inter]), zeros(`${p}.input_layernorm.weight`, [h]),
      zeros(`${p}.post_attention_layernorm.weight`, [h]),
      { name: `${p}.self_attn.rotary_emb.inv_freq`, dtype: 'F32', shape: [hd / 2], data: new Float32Array(hd / 2) },
    );
  }
  const written = tensors.filter((t) => !t.name.endsWith('inv_freq')).reduce((s, t) => s + t.shape.reduce((a, b) => a * b, 1), 0);
  tensors.push(zeros('lm_head.weight', [vocab, h])); // a stored copy of the tied embedding
  writeSafetensors(path.join(dir, 'model.safetensors'), tensors);
  const report = computeParams({ model: dir, adapter: { rank: 2, rankPattern: {}, targets: ['o_proj'] } });
  assert.equal(report.baseParamsFrom, 'safetensors');
  assert.equal(report.baseParams, written);
  assert.equal(report.baseParams, baseParamsFromConfig(parseModelConfig(cfg, 'config.json')));
  assert.equal(report.modules, 2);
  assert.equal(report.loraxs, 8);
});

test("BERT's pooler is a module when the checkpoint has it (a `dense` key matches it)", () => {
  const cfg = { model_type: 'bert', hidden_size: 8, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 16, vocab_size: 10,
    max_position_embeddings: 6, type_vocab_size: 2 };
  const write = (withPooler: boolean): string => {
    const dir = tempDir();
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg));
    const t: TensorToWrite[] = [zeros('bert.embeddings.word_embeddings.weight', [10, 8])];
    if (withPooler) t.push(zeros('bert.pooler.dense.weight', [8, 8]), zeros('bert.pooler.dense.bias', [8]));
    t.push({ name: 'bert.embeddings.position_ids', dtype: 'I64', shape: [1, 6], data: new BigInt64Array(6) });
    writeSafetensors(path.join(dir, 'model.safetensors'), t);
    return dir;
  };
  const adapter = { rank: 2, rankPattern: {}, targets: ['dense'] };
  const withPooler = computeParams({ model: write(true), adapter });
  assert.equal(withPooler.modules, 4); // attention.output.dense, intermediate.dense, output.dense, pooler.dense
  assert.equal(withPooler.baseParams, 80 + 64 + 8); // the int64 position_ids buffer is not a parameter
  assert.equal(computeParams({ model: write(false), adapter }).modules, 3);
});

test('the training-memory estimate follows its documented formula', () => {
  const cfg = parseModelConfig(ROBERTA_LARGE, 'config.json');
  const base = baseParamsFromConfig(cfg);
  const modules = linearModulesOf(cfg);
  const adapted = adaptedModules(modules, ['query', 'value'], 16, {}, () => ({ file: 'x' }));
  const opts = { batchSize: 32, maxLength: 128, optimizer: 'adamw' as const, task: 'classification' as const };
  const m = estimateTrainingMemory(cfg, base, adapted, opts);
  const [B, T, h, i, L, nH, r, n] = [32, 128, 1024, 4096, 24, 16, 16, 48];
  assert.equal(m.weightsBytes, 4 * 355_359_744);
  assert.equal(m.factorBytes, 4 * n * r * (h + h));
  assert.equal(m.trainableStateBytes, 4 * 4 * (n * r * r + h * h + h + 2 * h + 2));
  assert.equal(m.activationBytes, 4 * B * (L * (T * (12 * h + 2 * i) + 3 * nH * T * T) + 2 * T * h + n * 2 * r * T));
  assert.equal(m.totalBytes, m.weightsBytes + m.factorBytes + m.trainableStateBytes + m.activationBytes);
  // Activations scale with the batch; SGD keeps half the state of AdamW.
  const half = estimateTrainingMemory(cfg, base, adapted, { ...opts, batchSize: 16 });
  assert.equal(half.activationBytes * 2, m.activationBytes);
  assert.equal(estimateTrainingMemory(cfg, base, adapted, { ...opts, optimizer: 'sgd' }).trainableStateBytes * 2, m.trainableStateBytes);
  // The report uses the config's batch size and length.
  const file = workspace(ROBERTA_LARGE, 'model: model\nadapter: {rank: 16}\ntraining: {batch_size: 32, max_length: 128}\n');
  assert.equal(computeParams(loadConfig(file)).trainingMemoryBytes, m.totalBytes);
});
