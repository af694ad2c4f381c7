/**
 * The Llama family (Llama, Mistral, Qwen2, Gemma) as transformers' *Model classes compute it: token
 * embeddings (Gemma: × √hidden), pre-norm decoder layers (RMSNorm, rotary self-attention with grouped-query
 * heads and a causal + padding mask, residual; RMSNorm, gated MLP down(act(gate(x)) · up(x)), residual) and a
 * final RMSNorm. Positions are 0..T-1 (right padding). Every linear layer goes through ctx.linear under the
 * names of the *ForCausalLM / *ForSequenceClassification classes (`model.layers.{i}.self_attn.q_proj`, ...).
 */
import * as tf from '../backend/tf';
import { check, LoraxsError } from '../errors';
import { activationByName } from './activations';
import { causalMask, causalMaskAt, groupedQueryAttention, groupMask, mergeHeads, splitHeads } from './attention';
import { type BackboneOptions, resolveDropout, type TransformerBackbone } from './backbone_options';
import { describeLinear, requireTensor, type WeightSource } from './model_weights';
import { checkpointedBlock } from './checkpointed_block';
import { rmsNorm } from './norms';
import { applyRope, ropeInverseFrequencies, ropeTables } from './rope';
import type { ForwardContext, ForwardInputs, KvCache, LinearModule, ModelConfig, Weights } from './types';

/**
 * Each layer's sliding attention window, or null for full causal attention: `layer_types` when config.json
 * lists them (transformers v5), else Mistral's `sliding_window` on every layer, Qwen2's on layers from
 * `max_window_layers` on when `use_sliding_window` is set.
 */
export function slidingWindows(config: ModelConfig): Array<number | null> {
  const raw = config.raw;
  const window = typeof raw.sliding_window === 'number' ? raw.sliding_window : null;
  const layerTypes = Array.isArray(raw.layer_types) ? (raw.layer_types as unknown[]) : null;
  return Array.from({ length: config.numLayers }, (_, i) => {
    if (window === null) return null;
    if (config.modelType === 'qwen2' && raw.use_sliding_window !== true) return null;
    if (layerTypes) return layerTypes[i] === 'sliding_attention' ? window : null;
    if (config.modelType === 'mistral') return window;
    if (config.modelType === 'qwen2') return i >= Number(raw.max_window_layers ?? 28) ? window : null;
    return null;
  });
}

/** Gemma's configs say `gelu` for the tanh approximation, which transformers substitutes. */
function decoderActivationName(config: ModelConfig): string {
  return config.modelType === 'gemma' && config.hiddenAct === 'gelu' ? 'gelu_pytorch_tanh' : config.hiddenAct;
}

/** LlamaModel / MistralModel / Qwen2Model / GemmaModel. */
export function createDecoder(config: ModelConfig, weights: Weights, opts: BackboneOptions = {}): TransformerBackbone {
  const ws: WeightSource = { weights, source: opts.source ?? 'model.safetensors' };
  const { hiddenSize: h, intermediateSize: inter, numHeads, numKvHeads, headDim } = config;
  check(numHeads % numKvHeads === 0, () => `num_attention_heads ${numHeads} is not a multiple of num_key_value_heads ${numKvHeads}`,
    { file: 'config.json', detail: 'num_key_value_heads' });
  check(headDim % 2 === 0, () => `head_dim ${headDim} must be even for rotary embeddings`, { file: 'config.json', detail: 'head_dim' });
  const isGemma = config.modelType === 'gemma';
  const activation = activationByName(decoderActivationName(config));
  const dropoutRates = resolveDropout(config, opts.dropout);
  const windows = slidingWindows(config);
  const inverseFrequencies = ropeInverseFrequencies(config);

  const embedTokens = requireTensor(ws, 'model.embed_tokens.weight', [config.vocabSize, h]);
  const finalNorm = requireTensor(ws, 'model.norm.weight', [h]);
  const modules: LinearModule[] = [];
  const layers = Array.from({ length: config.numLayers }, (_, i) => {
    const p = `model.layers.${i}`;
    const names = {
      q: `${p}.self_attn.q_proj`, k: `${p}.self_attn.k_proj`, v: `${p}.self_attn.v_proj`, o: `${p}.self_attn.o_proj`,
      gate: `${p}.mlp.gate_proj`, up: `${p}.mlp.up_proj`, down: `${p}.mlp.down_proj`,
    };
    modules.push(
      describeLinear(ws, names.q, numHeads * headDim, h), describeLinear(ws, names.k, numKvHeads * headDim, h),
      describeLinear(ws, names.v, numKvHeads * headDim, h), describeLinear(ws, names.o, h, numHeads * headDim),
      describeLinear(ws, names.gate, inter, h), describeLinear(ws, names.up, inter, h), describeLinear(ws, names.down, h, inter));
    return {
      names,
      inputNorm: requireTensor(ws, `${p}.input_layernorm.weight`, [h]),
      postAttentionNorm: requireTensor(ws, `${p}.post_attention_layernorm.weight`, [h]),
      window: windows[i],
    };
  });

  const norm = (x: tf.Tensor, w: tf.Tensor) => rmsNorm(x, w, config.normEps, isGemma);
  const scale = 1 / Math.sqrt(headDim);
  type Layer = (typeof layers)[number];

  /**
   * One pre-norm decoder layer. `cached`, when given, holds this layer's keys and values of earlier
   * positions: the new ones are appended after them (and handed back through `store`) before attending.
   */
  function decoderLayer(layer: Layer, x: tf.Tensor, cos: tf.Tensor2D, sin: tf.Tensor2D, mask: tf.Tensor4D, ctx: ForwardContext,
    attentionDropout: number, cached?: { k: tf.Tensor4D | null; v: tf.Tensor4D | null; store(k: tf.Tensor4D, v: tf.Tensor4D): void }): tf.Tensor {
    const { names } = layer;
    const normed = norm(x, layer.inputNorm);
    const q = applyRope(splitHeads(ctx.linear(names.q, normed), numHeads, headDim), cos, sin);
    let k = applyRope(splitHeads(ctx.linear(names.k, normed), numKvHeads, headDim), cos, sin);
    let v = splitHeads(ctx.linear(names.v, normed), numKvHeads, headDim);
    if (cached) {
      if (cached.k && cached.v) {
        k = tf.concat([cached.k, k], 2) as tf.Tensor4D;
        v = tf.concat([cached.v, v], 2) as tf.Tensor4D;
      }
      cached.store(k, v);
    }
    const attended = groupedQueryAttention(q, k, v, mask, scale, ctx, attentionDropout);
    x = tf.add(x, ctx.linear(names.o, mergeHeads(attended)));
    const normed2 = norm(x, layer.postAttentionNorm);
    const gated = tf.mul(activation(ctx.linear(names.gate, normed2)), ctx.linear(names.up, normed2));
    return tf.add(x, ctx.linear(names.down, gated));
  }

  function embed(inputIds: tf.Tensor2D): tf.Tensor {
    const x = tf.gather(embedTokens, inputIds);
    return isGemma ? tf.mul(x, Math.fround(Math.sqrt(h))) : x;
  }

  function forward(inputs: ForwardInputs, ctx: ForwardContext): tf.Tensor3D {
    const [, t] = inputs.inputIds.shape;
    if (t > config.maxPositionEmbeddings) {
      throw new LoraxsError(`sequence length ${t} exceeds the model's ${config.maxPositionEmbeddings} positions; lower training.max_length`);
    }
    return tf.tidy(() => {
      const attentionDropout = ctx.training ? dropoutRates.attention : 0;
      let x = embed(inputs.inputIds);
      const { cos, sin } = ropeTables(inverseFrequencies, t);
      // Grouped-query attention: the query heads of one key/value head attend as one stacked block.
      const groups = numHeads / numKvHeads;
      const masks = new Map<number | null, tf.Tensor4D>();
      const maskFor = (window: number | null) => {
        let m = masks.get(window);
        if (!m) masks.set(window, (m = groupMask(causalMask(inputs.attentionMask, window), groups)));
        return m;
      };
      for (const layer of layers) {
        const mask = maskFor(layer.window);
        const block = (input: tf.Tensor, c: ForwardContext, [cs, sn, m]: tf.Tensor[]) =>
          decoderLayer(layer, input, cs as tf.Tensor2D, sn as tf.Tensor2D, m as tf.Tensor4D, c, attentionDropout);
        x = ctx.training && ctx.gradientCheckpointing
          ? checkpointedBlock(block, x, ctx, Object.values(layer.names), [cos, sin, mask])
          : block(x, ctx, [cos, sin, mask]);
      }
      return norm(x, finalNorm) as tf.Tensor3D;
    });
  }

  /** Per layer: keys and values (B, kvHeads, length, D), kept out of every tidy until disposed. */
  class DecoderKvCache implements KvCache {
    keys: Array<tf.Tensor4D | null> = layers.map(() => null);
    values: Array<tf.Tensor4D | null> = layers.map(() => null);
    length = 0;
    dispose(): void {
      for (const t of [...this.keys, ...this.values]) t?.dispose();
      this.keys = layers.map(() => null);
      this.values = layers.map(() => null);
      this.length = 0;
    }
  }

  function forwardCached(inputIds: tf.Tensor2D, cacheIn: KvCache, ctx: ForwardContext): tf.Tensor3D {
    if (!(cacheIn instanceof DecoderKvCache)) throw new Error('internal error: a KV cache from another model');
    if (ctx.training) throw new Error('internal error: forwardCached is for evaluation only');
    const cache = cacheIn;
    const [, t] = inputIds.shape;
    const offset = cache.length;
    if (offset + t > config.maxPositionEmbeddings) {
      throw new LoraxsError(`sequence length ${offset + t} exceeds the model's ${config.maxPositionEmbeddings} positions`);
    }
    const next = { keys: [...cache.keys], values: [...cache.values] };
    const out = tf.tidy(() => {
      let x = embed(inputIds);
      const { cos, sin } = ropeTables(inverseFrequencies, t, offset);
      const groups = numHeads / numKvHeads;
      const masks = new Map<number | null, tf.Tensor4D>();
      const maskFor = (window: number | null) => {
        let m = masks.get(window);
        if (!m) masks.set(window, (m = groupMask(causalMaskAt(offset, t, window), groups)));
        return m;
      };
      layers.forEach((layer, i) => {
        x = decoderLayer(layer, x, cos, sin, maskFor(layer.window), ctx, 0, {
          k: cache.keys[i], v: cache.values[i],
          store(k, v) { next.keys[i] = tf.keep(k); next.values[i] = tf.keep(v); },
        });
      });
      return norm(x, finalNorm) as tf.Tensor3D;
    });
    for (let i = 0; i < layers.length; i++) {
      if (cache.keys[i] !== next.keys[i]) cache.keys[i]?.dispose();
      if (cache.values[i] !== next.values[i]) cache.values[i]?.dispose();
    }
    cache.keys = next.keys;
    cache.values = next.values;
    cache.length = offset + t;
    return out;
  }

  return {
    config, weights, dropoutRates, linearModules: () => modules.map((m) => ({ ...m })), forward,
    createKvCache: () => new DecoderKvCache(), forwardCached,
  };
}
