/**
 * Checkpoints with random weights and the shapes of real models, written as Hugging Face folders
 * (config.json + model.safetensors with transformers' parameter names), so the engine and transformers
 * load the same files: BERT-base (BertForSequenceClassification) and a small Llama
 * (LlamaForSequenceClassification). Weights ~ N(0, 0.02²), norm weights 1, biases 0, as _init_weights.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeSafetensorsStreaming, type LazyTensorToWrite } from '../sidecar/io/safetensors';
import { Rng } from '../sidecar/rng';
import { ensureDir, scratchDir } from './common';

export interface BenchModel {
  name: string;
  family: 'bert' | 'llama';
  config: Record<string, unknown>;
  /** LoRA-XS targets (module-name suffixes). */
  targets: string[];
  rank: number;
  /** Sequences per micro-batch the engine can hold in the 4 GB wasm heap (the step accumulates over batch / this). */
  microBatch: number;
  /** Sequences per training step (default 32). */
  batch?: number;
  /** Gradient checkpointing in the micro-batches both tfjs backends run (what fits the wasm heap). */
  checkpointing?: boolean;
}

export const BERT_BASE: BenchModel = {
  name: 'bert-base-shaped', family: 'bert', rank: 16, microBatch: 1,
  targets: ['query', 'value', 'attention.output.dense', 'output.dense'],
  config: {
    architectures: ['BertForSequenceClassification'], model_type: 'bert', hidden_size: 768, num_hidden_layers: 12,
    num_attention_heads: 12, intermediate_size: 3072, hidden_act: 'gelu', hidden_dropout_prob: 0.1,
    attention_probs_dropout_prob: 0.1, max_position_embeddings: 512, type_vocab_size: 2, vocab_size: 30522,
    layer_norm_eps: 1e-12, pad_token_id: 0, initializer_range: 0.02, id2label: { 0: 'LABEL_0', 1: 'LABEL_1' },
    label2id: { LABEL_0: 0, LABEL_1: 1 }, dtype: 'float32',
  },
};

export const LLAMA_SMALL: BenchModel = {
  name: 'llama-small-shaped', family: 'llama', rank: 16, microBatch: 8,
  targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'],
  config: {
    architectures: ['LlamaForSequenceClassification'], model_type: 'llama', hidden_size: 512, num_hidden_layers: 8,
    num_attention_heads: 8, num_key_value_heads: 2, head_dim: 64, intermediate_size: 1536, hidden_act: 'silu',
    max_position_embeddings: 2048, vocab_size: 32000, rms_norm_eps: 1e-6, rope_theta: 10000.0, attention_bias: false,
    mlp_bias: false, tie_word_embeddings: false, pad_token_id: 0, bos_token_id: 1, eos_token_id: 2, initializer_range: 0.02,
    id2label: { 0: 'LABEL_0', 1: 'LABEL_1' }, label2id: { LABEL_0: 0, LABEL_1: 1 }, dtype: 'float32',
  },
};

/**
 * Qwen2-0.5B's shape (Qwen/Qwen2-0.5B config.json): 24 layers, hidden 896, 14 query heads and 2 key/value
 * heads of 64, intermediate 4864, vocabulary 151936, q/k/v biases, tied embeddings; 494M parameters
 * (1.98 GB as float32), randomly initialised.
 */
export const QWEN2_05B: BenchModel = {
  name: 'qwen2-0.5b-shaped', family: 'llama', rank: 16, microBatch: 2, batch: 8, checkpointing: true,
  targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'],
  config: {
    architectures: ['Qwen2ForSequenceClassification'], model_type: 'qwen2', hidden_size: 896, num_hidden_layers: 24,
    num_attention_heads: 14, num_key_value_heads: 2, intermediate_size: 4864, hidden_act: 'silu', max_position_embeddings: 32768,
    max_window_layers: 24, use_sliding_window: false, sliding_window: 32768, vocab_size: 151936, rms_norm_eps: 1e-6,
    rope_theta: 1000000.0, tie_word_embeddings: true, bos_token_id: 151643, eos_token_id: 151643, pad_token_id: 151643,
    initializer_range: 0.02, attention_dropout: 0.0, id2label: { 0: 'LABEL_0', 1: 'LABEL_1' }, label2id: { LABEL_0: 0, LABEL_1: 1 },
    dtype: 'float32',
  },
};

type Shape = number[];

function bertTensors(c: Record<string, number>): Array<[string, Shape, 'normal' | 'ones' | 'zeros']> {
  const h = c.hidden_size;
  const f = c.intermediate_size;
  const t: Array<[string, Shape, 'normal' | 'ones' | 'zeros']> = [
    ['bert.embeddings.word_embeddings.weight', [c.vocab_size, h], 'normal'],
    ['bert.embeddings.position_embeddings.weight', [c.max_position_embeddings, h], 'normal'],
    ['bert.embeddings.token_type_embeddings.weight', [c.type_vocab_size, h], 'normal'],
    ['bert.embeddings.LayerNorm.weight', [h], 'ones'], ['bert.embeddings.LayerNorm.bias', [h], 'zeros'],
  ];
  for (let l = 0; l < c.num_hidden_layers; l++) {
    const p = `bert.encoder.layer.${l}`;
    for (const n of ['attention.self.query', 'attention.self.key', 'attention.self.value', 'attention.output.dense']) {
      t.push([`${p}.${n}.weight`, [h, h], 'normal'], [`${p}.${n}.bias`, [h], 'zeros']);
    }
    t.push([`${p}.attention.output.LayerNorm.weight`, [h], 'ones'], [`${p}.attention.output.LayerNorm.bias`, [h], 'zeros']);
    t.push([`${p}.intermediate.dense.weight`, [f, h], 'normal'], [`${p}.intermediate.dense.bias`, [f], 'zeros']);
    t.push([`${p}.output.dense.weight`, [h, f], 'normal'], [`${p}.output.dense.bias`, [h], 'zeros']);
    t.push([`${p}.output.LayerNorm.weight`, [h], 'ones'], [`${p}.output.LayerNorm.bias`, [h], 'zeros']);
  }
  t.push(['bert.pooler.dense.weight', [h, h], 'normal'], ['bert.pooler.dense.bias', [h], 'zeros']);
  t.push(['classifier.weight', [2, h], 'normal'], ['classifier.bias', [2], 'zeros']);
  return t;
}

function llamaTensors(c: Record<string, number>): Array<[string, Shape, 'normal' | 'ones' | 'zeros']> {
  const h = c.hidden_size;
  const headDim = c.head_dim ?? h / c.num_attention_heads;
  const kv = c.num_key_value_heads * headDim;
  const q = c.num_attention_heads * headDim;
  const qkvBias = (c as Record<string, unknown>).model_type === 'qwen2';
  const f = c.intermediate_size;
  const t: Array<[string, Shape, 'normal' | 'ones' | 'zeros']> = [['model.embed_tokens.weight', [c.vocab_size, h], 'normal']];
  for (let l = 0; l < c.num_hidden_layers; l++) {
    const p = `model.layers.${l}`;
    t.push([`${p}.input_layernorm.weight`, [h], 'ones'], [`${p}.post_attention_layernorm.weight`, [h], 'ones']);
    t.push([`${p}.self_attn.q_proj.weight`, [q, h], 'normal'], [`${p}.self_attn.k_proj.weight`, [kv, h], 'normal'],
      [`${p}.self_attn.v_proj.weight`, [kv, h], 'normal'], [`${p}.self_attn.o_proj.weight`, [h, q], 'normal']);
    if (qkvBias) t.push([`${p}.self_attn.q_proj.bias`, [q], 'zeros'], [`${p}.self_attn.k_proj.bias`, [kv], 'zeros'], [`${p}.self_attn.v_proj.bias`, [kv], 'zeros']);
    t.push([`${p}.mlp.gate_proj.weight`, [f, h], 'normal'], [`${p}.mlp.up_proj.weight`, [f, h], 'normal'], [`${p}.mlp.down_proj.weight`, [h, f], 'normal']);
  }
  t.push(['model.norm.weight', [h], 'ones']);
  // The task head: a causal LM's output matrix (none when tied to the embeddings), else the classifier.
  const causalLm = ((c as Record<string, unknown>).architectures as string[] | undefined)?.[0]?.endsWith('ForCausalLM') === true;
  if (!causalLm) t.push(['score.weight', [2, h], 'normal']);
  else if (!(c as Record<string, unknown>).tie_word_embeddings) t.push(['lm_head.weight', [c.vocab_size, h], 'normal']);
  return t;
}

/** Writes (once) and returns the model folder of `m` under the scratch folder. */
export function writeBenchModel(m: BenchModel): string {
  const dir = path.join(scratchDir, 'models', m.name);
  const configText = JSON.stringify(m.config, null, 2) + '\n';
  if (fs.existsSync(path.join(dir, 'model.safetensors')) && fs.readFileSync(path.join(dir, 'config.json'), 'utf8') === configText) return dir;
  ensureDir(dir);
  const c = m.config as Record<string, number>;
  const rng = new Rng(7);
  // One tensor in memory at a time (Qwen2-0.5B-shaped is 1.98 GB), written to a temporary file then renamed.
  const tensors: LazyTensorToWrite[] = (m.family === 'bert' ? bertTensors(c) : llamaTensors(c)).map(([name, shape, init]) => ({
    name, dtype: 'F32', shape,
    bytes: () => {
      const n = shape.reduce((a, b) => a * b, 1);
      const data = init === 'normal' ? rng.normalArray(n, 0.02) : new Float32Array(n).fill(init === 'ones' ? 1 : 0);
      return new Uint8Array(data.buffer);
    },
  }));
  const tmp = path.join(dir, 'model.safetensors.tmp');
  writeSafetensorsStreaming(tmp, tensors, { format: 'pt' });
  fs.renameSync(tmp, path.join(dir, 'model.safetensors'));
  fs.writeFileSync(path.join(dir, 'config.json'), configText);
  return dir;
}

/** Multiply-adds of the model's linear layers per token (frozen base + adapters), and attention per sequence. */
export function flopsPerStep(m: BenchModel, batch: number, seq: number): { forward: number; step: number } {
  const c = m.config as Record<string, number>;
  const h = c.hidden_size;
  const f = c.intermediate_size;
  const r = m.rank;
  const layers = c.num_hidden_layers;
  const heads = c.num_attention_heads;
  const dh = m.family === 'llama' ? c.head_dim ?? h / heads : h / heads;
  const kv = m.family === 'llama' ? c.num_key_value_heads * dh : h;
  const q = heads * dh;
  const linears: Array<[number, number, boolean]> = m.family === 'bert'
    ? [[h, h, true], [h, h, false], [h, h, true], [h, h, true], [h, f, false], [f, h, true]]
    : [[h, q, true], [h, kv, true], [h, kv, true], [q, h, true], [h, f, true], [h, f, true], [f, h, true]];
  const tokens = batch * seq;
  let linear = 0;
  let adapter = 0;
  for (const [inF, outF, adapted] of linears) {
    linear += 2 * tokens * inF * outF;
    if (adapted) adapter += 2 * tokens * r * (inF + r + outF);
  }
  const attention = 4 * batch * heads * seq * seq * dh;
  const perLayerForward = linear + adapter + attention;
  // Backward: the input gradient of every product (frozen weights get none), R's gradient (small), and
  // both operands' gradients of the two attention products.
  const perLayerBackward = linear + 2 * adapter + 2 * attention;
  return { forward: layers * perLayerForward, step: layers * (perLayerForward + perLayerBackward) };
}
