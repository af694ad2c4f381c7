import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LoraxsError } from '../sidecar/errors';
import { parseModelConfig, readModelConfig } from '../sidecar/io/model_config';
import { needsShared, stories260k, tempDir } from './paths';

// Real config.json files as published on the Hugging Face Hub (keys kept as they are there).
const robertaLarge = {
  architectures: ['RobertaForMaskedLM'], attention_probs_dropout_prob: 0.1, bos_token_id: 0, eos_token_id: 2,
  hidden_act: 'gelu', hidden_dropout_prob: 0.1, hidden_size: 1024, initializer_range: 0.02, intermediate_size: 4096,
  layer_norm_eps: 1e-05, max_position_embeddings: 514, model_type: 'roberta', num_attention_heads: 16,
  num_hidden_layers: 24, pad_token_id: 1, type_vocab_size: 1, vocab_size: 50265,
};
const bertBase = {
  architectures: ['BertForMaskedLM'], attention_probs_dropout_prob: 0.1, gradient_checkpointing: false, hidden_act: 'gelu',
  hidden_dropout_prob: 0.1, hidden_size: 768, initializer_range: 0.02, intermediate_size: 3072, layer_norm_eps: 1e-12,
  max_position_embeddings: 512, model_type: 'bert', num_attention_heads: 12, num_hidden_layers: 12, pad_token_id: 0,
  position_embedding_type: 'absolute', transformers_version: '4.6.0.dev0', type_vocab_size: 2, use_cache: true, vocab_size: 30522,
};
const llama31Instruct = {
  architectures: ['LlamaForCausalLM'], attention_bias: false, attention_dropout: 0.0, bos_token_id: 128000,
  eos_token_id: [128001, 128008, 128009], hidden_act: 'silu', hidden_size: 4096, initializer_range: 0.02,
  intermediate_size: 14336, max_position_embeddings: 131072, mlp_bias: false, model_type: 'llama', num_attention_heads: 32,
  num_hidden_layers: 32, num_key_value_heads: 8, pretraining_tp: 1, rms_norm_eps: 1e-05,
  rope_scaling: { factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position_embeddings: 8192, rope_type: 'llama3' },
  rope_theta: 500000.0, tie_word_embeddings: false, torch_dtype: 'bfloat16', transformers_version: '4.42.3', use_cache: true, vocab_size: 128256,
};
/** The same model as transformers v5 writes it: rope_parameters (with rope_theta inside) and dtype. */
const llama31V5 = (() => {
  const c: Record<string, unknown> = { ...llama31Instruct, dtype: 'bfloat16', transformers_version: '5.0.0' };
  delete c.rope_scaling; delete c.rope_theta; delete c.torch_dtype;
  c.rope_parameters = { rope_type: 'llama3', rope_theta: 500000.0, factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position_embeddings: 8192 };
  return c;
})();
const mistral7b = {
  architectures: ['MistralForCausalLM'], bos_token_id: 1, eos_token_id: 2, hidden_act: 'silu', hidden_size: 4096,
  initializer_range: 0.02, intermediate_size: 14336, max_position_embeddings: 32768, model_type: 'mistral',
  num_attention_heads: 32, num_hidden_layers: 32, num_key_value_heads: 8, rms_norm_eps: 1e-05, rope_theta: 10000.0,
  sliding_window: 4096, tie_word_embeddings: false, torch_dtype: 'bfloat16', transformers_version: '4.34.0.dev0', use_cache: true, vocab_size: 32000,
};
const qwen2_05b = {
  architectures: ['Qwen2ForCausalLM'], attention_dropout: 0.0, bos_token_id: 151643, eos_token_id: 151643, hidden_act: 'silu',
  hidden_size: 896, initializer_range: 0.02, intermediate_size: 4864, max_position_embeddings: 131072, max_window_layers: 24,
  model_type: 'qwen2', num_attention_heads: 14, num_hidden_layers: 24, num_key_value_heads: 2, rms_norm_eps: 1e-06,
  rope_theta: 1000000.0, sliding_window: 131072, tie_word_embeddings: true, torch_dtype: 'bfloat16', transformers_version: '4.40.1',
  use_cache: true, use_sliding_window: false, vocab_size: 151936,
};
const gemma2b = {
  architectures: ['GemmaForCausalLM'], attention_bias: false, attention_dropout: 0.0, bos_token_id: 2, eos_token_id: 1,
  head_dim: 256, hidden_act: 'gelu', hidden_size: 2048, initializer_range: 0.02, intermediate_size: 16384,
  max_position_embeddings: 8192, model_type: 'gemma', num_attention_heads: 8, num_hidden_layers: 18, num_key_value_heads: 1,
  pad_token_id: 0, rms_norm_eps: 1e-06, rope_scaling: null, rope_theta: 10000.0, torch_dtype: 'bfloat16',
  transformers_version: '4.38.0.dev0', use_cache: true, vocab_size: 256000,
};

const F = '/models/x/config.json';

test('RoBERTa-large', () => {
  const c = parseModelConfig(robertaLarge, F);
  assert.deepEqual(
    { t: c.modelType, k: c.kind, h: c.hiddenSize, l: c.numLayers, nh: c.numHeads, kv: c.numKvHeads, hd: c.headDim, i: c.intermediateSize, v: c.vocabSize, p: c.maxPositionEmbeddings, eps: c.normEps, act: c.hiddenAct, tv: c.typeVocabSize, pad: c.padTokenId, bos: c.bosTokenId, eos: c.eosTokenId, hd2: c.hiddenDropout, ad: c.attentionDropout, cd: c.classifierDropout, ab: c.attentionBias, mb: c.mlpBias, dt: c.dtype, nl: c.numLabels },
    { t: 'roberta', k: 'encoder', h: 1024, l: 24, nh: 16, kv: 16, hd: 64, i: 4096, v: 50265, p: 514, eps: 1e-5, act: 'gelu', tv: 1, pad: 1, bos: 0, eos: 2, hd2: 0.1, ad: 0.1, cd: null, ab: true, mb: true, dt: 'float32', nl: null });
  assert.equal(c.ropeScaling, null);
  assert.equal(c.raw, robertaLarge);
});

test('bert-base with a classification head (id2label gives num_labels)', () => {
  const c = parseModelConfig({ ...bertBase, id2label: { 0: 'negative', 1: 'neutral', 2: 'positive' }, classifier_dropout: 0.2 }, F);
  assert.equal(c.modelType, 'bert');
  assert.equal(c.headDim, 64);
  assert.equal(c.normEps, 1e-12);
  assert.equal(c.typeVocabSize, 2);
  assert.equal(c.padTokenId, 0);
  assert.equal(c.numLabels, 3);
  assert.deepEqual(c.id2label, { 0: 'negative', 1: 'neutral', 2: 'positive' });
  assert.equal(c.classifierDropout, 0.2);
  assert.equal(parseModelConfig({ ...bertBase, num_labels: 5 }, F).numLabels, 5);
});

test('Llama-3.1 with llama3 rope scaling, older keys and transformers v5 keys read the same', () => {
  const v4 = parseModelConfig(llama31Instruct, F);
  const v5 = parseModelConfig(llama31V5, F);
  for (const c of [v4, v5]) {
    assert.equal(c.kind, 'decoder');
    assert.equal(c.numKvHeads, 8);
    assert.equal(c.headDim, 128);
    assert.equal(c.ropeTheta, 500000);
    assert.deepEqual(c.ropeScaling, { ropeType: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 });
    assert.equal(c.dtype, 'bfloat16');
    assert.deepEqual(c.eosTokenId, [128001, 128008, 128009]);
    assert.equal(c.bosTokenId, 128000);
    assert.equal(c.padTokenId, null);
    assert.equal(c.normEps, 1e-5);
    assert.equal(c.tieWordEmbeddings, false);
    assert.equal(c.attentionBias, false);
    assert.equal(c.mlpBias, false);
    assert.equal(c.hiddenAct, 'silu');
    assert.equal(c.typeVocabSize, 0);
  }
  // Old-style `type` key, and linear scaling; the default rope type means no scaling.
  assert.deepEqual(parseModelConfig({ ...llama31Instruct, rope_scaling: { type: 'linear', factor: 2 } }, F).ropeScaling, { ropeType: 'linear', factor: 2 });
  assert.equal(parseModelConfig({ ...llama31V5, rope_parameters: { rope_type: 'default', rope_theta: 1e6 } }, F).ropeScaling, null);
  assert.equal(parseModelConfig({ ...llama31V5, rope_parameters: { rope_type: 'default', rope_theta: 1e6 } }, F).ropeTheta, 1e6);
  const biased = parseModelConfig({ ...llama31Instruct, attention_bias: true, mlp_bias: true, tie_word_embeddings: true }, F);
  assert.deepEqual([biased.attentionBias, biased.mlpBias, biased.tieWordEmbeddings], [true, true, true]);
});

test('Mistral-7B: GQA, no biases, untied', () => {
  const c = parseModelConfig(mistral7b, F);
  assert.deepEqual([c.modelType, c.numHeads, c.numKvHeads, c.headDim, c.ropeTheta, c.tieWordEmbeddings, c.attentionBias, c.mlpBias, c.maxPositionEmbeddings],
    ['mistral', 32, 8, 128, 10000, false, false, false, 32768]);
  // Missing tie_word_embeddings: transformers' MistralConfig default is false.
  const { tie_word_embeddings: _drop, ...noTie } = mistral7b;
  assert.equal(parseModelConfig(noTie, F).tieWordEmbeddings, false);
});

test('Qwen2-0.5B: tied, q/k/v biases always on', () => {
  const c = parseModelConfig(qwen2_05b, F);
  assert.deepEqual([c.modelType, c.hiddenSize, c.numHeads, c.numKvHeads, c.headDim, c.ropeTheta, c.tieWordEmbeddings, c.attentionBias, c.mlpBias, c.normEps, c.eosTokenId],
    ['qwen2', 896, 14, 2, 64, 1e6, true, true, false, 1e-6, 151643]);
  const { tie_word_embeddings: _drop, ...noTie } = qwen2_05b;
  assert.equal(parseModelConfig(noTie, F).tieWordEmbeddings, false, 'Qwen2Config default is untied');
});

test('gemma-2b: head_dim 256 != hidden/heads, tied by default, GELU-tanh whatever hidden_act says', () => {
  const c = parseModelConfig(gemma2b, F);
  assert.deepEqual([c.modelType, c.headDim, c.numKvHeads, c.tieWordEmbeddings, c.hiddenAct, c.padTokenId, c.bosTokenId, c.eosTokenId, c.normEps],
    ['gemma', 256, 1, true, 'gelu_pytorch_tanh', 0, 2, 1, 1e-6]);
  assert.equal(parseModelConfig({ ...gemma2b, hidden_activation: 'gelu_pytorch_tanh', dtype: 'float16' }, F).dtype, 'float16');
  assert.equal(parseModelConfig({ ...gemma2b, hidden_activation: 'gelu' }, F).hiddenAct, 'gelu');
});

test('other model types are refused by name, listing the supported ones', () => {
  for (const t of ['gemma2', 'gemma3', 'gpt2', 'llama4']) {
    assert.throws(() => parseModelConfig({ ...gemma2b, model_type: t }, F), (e: unknown) =>
      e instanceof LoraxsError && e.place?.file === F && e.place.detail === 'model_type'
      && e.message.includes(`model_type '${t}' is not supported (supported: bert, roberta, llama, mistral, qwen2, gemma, use_lite)`));
  }
  assert.throws(() => parseModelConfig({ hidden_size: 8 }, F), /'model_type' is missing/);
});

test('bad values name config.json, the key and its line', () => {
  const dir = tempDir('loraxs-config-');
  const text = JSON.stringify({ ...llama31Instruct, num_attention_heads: 'many' }, null, 2);
  fs.writeFileSync(path.join(dir, 'config.json'), text);
  assert.throws(() => readModelConfig(dir), (e: unknown) => {
    assert.ok(e instanceof LoraxsError);
    assert.equal(e.place?.file, path.join(dir, 'config.json'));
    assert.equal(e.place?.detail, 'num_attention_heads');
    const expectedLine = text.split('\n').findIndex((l) => l.includes('"num_attention_heads"')) + 1;
    assert.equal(e.place?.line, expectedLine);
    assert.match(e.message, /config\.json: key 'num_attention_heads' must be a positive integer, got "many"/);
    return true;
  });
  const cases: [Record<string, unknown>, RegExp, string][] = [
    [{ ...bertBase, hidden_size: undefined }, /key 'hidden_size' is missing/, 'hidden_size'],
    [{ ...bertBase, hidden_size: 770 }, /hidden_size 770 is not a multiple of num_attention_heads 12/, 'hidden_size'],
    [{ ...mistral7b, num_key_value_heads: 5 }, /not a multiple of num_key_value_heads 5/, 'num_key_value_heads'],
    [{ ...mistral7b, rope_scaling: { rope_type: 'yarn', factor: 4 } }, /rope_scaling\.rope_type "yarn" is not supported/, 'rope_scaling.rope_type'],
    [{ ...llama31V5, rope_parameters: { rope_type: 'llama3', rope_theta: 5e5, factor: 8 } }, /rope_parameters\.low_freq_factor is required/, 'rope_parameters.low_freq_factor'],
    [{ ...llama31Instruct, rope_scaling: { rope_type: 'linear' } }, /rope_scaling\.factor must be a positive number/, 'rope_scaling.factor'],
    [{ ...bertBase, hidden_dropout_prob: 1.5 }, /dropout probability in \[0, 1\), got 1.5/, 'hidden_dropout_prob'],
    [{ ...llama31Instruct, tie_word_embeddings: 'yes' }, /'tie_word_embeddings' must be true or false/, 'tie_word_embeddings'],
    [{ ...bertBase, id2label: { a: 'x' } }, /id2label key 'a' must be a class index/, 'id2label'],
    [{ ...llama31Instruct, eos_token_id: ['x'] }, /'eos_token_id' must be a token id or a list/, 'eos_token_id'],
  ];
  for (const [raw, pattern, key] of cases) {
    assert.throws(() => parseModelConfig(raw, F), (e: unknown) => e instanceof LoraxsError && pattern.test(e.message) && e.place?.detail === key && e.place.file === F,
      `${pattern}`);
  }
  assert.throws(() => parseModelConfig([1], F), /must be a JSON object/);
});

test('readModelConfig: missing or invalid config.json', () => {
  const dir = tempDir('loraxs-config-');
  assert.throws(() => readModelConfig(dir), (e: unknown) => e instanceof LoraxsError && /no config\.json in/.test(e.message));
  fs.writeFileSync(path.join(dir, 'config.json'), '{"model_type": ');
  assert.throws(() => readModelConfig(dir), (e: unknown) => e instanceof LoraxsError && /config\.json is not valid JSON/.test(e.message));
});

test('stories260k config.json', { skip: needsShared(stories260k) }, () => {
  const c = readModelConfig(stories260k);
  assert.deepEqual(
    [c.modelType, c.hiddenSize, c.intermediateSize, c.numLayers, c.numHeads, c.numKvHeads, c.headDim, c.vocabSize, c.maxPositionEmbeddings, c.normEps, c.ropeTheta, c.ropeScaling, c.tieWordEmbeddings, c.bosTokenId, c.eosTokenId, c.dtype],
    ['llama', 64, 172, 5, 8, 4, 8, 512, 512, 1e-5, 10000, null, true, 1, 2, 'float32']);
});
