/**
 * One decoding step of many sequences at once for the Llama family (Llama, Mistral, Qwen2, Gemma): each
 * sequence brings its new tokens (a whole prompt when it joins, one token per step after) and its own KV
 * cache at its own length, so sequences join and leave between steps (continuous batching). The new tokens
 * of all sequences are laid end to end as one (1, N, H) batch: every linear layer (through a MixedContext,
 * each token with its sequence's adapter) and every norm runs once over all of them; only the attention,
 * whose keys differ in length, runs per sequence. The same numbers as models/llama.ts `forwardCached` for
 * each sequence alone (tested against a merged model through the engine).
 */
import * as tf from '../backend/tf';
import { LoraxsError } from '../errors';
import { activationByName } from '../models/activations';
import { causalMaskAt, groupedQueryAttention, groupMask, mergeHeads, splitHeads } from '../models/attention';
import { slidingWindows } from '../models/llama';
import { rmsNorm } from '../models/norms';
import { applyRope, ropeInverseFrequencies, ropeTables } from '../models/rope';
import type { ModelConfig, Weights } from '../models/types';
import { linearForward } from '../models/plain_context';
import type { MixedContext } from './mixed_context';

/** A sequence's keys and values per layer, (1, kvHeads, length, D), kept out of every tidy until disposed. */
export class SequenceCache {
  keys: Array<tf.Tensor4D | null>;
  values: Array<tf.Tensor4D | null>;
  length = 0;

  constructor(layers: number) {
    this.keys = new Array<tf.Tensor4D | null>(layers).fill(null);
    this.values = new Array<tf.Tensor4D | null>(layers).fill(null);
  }

  dispose(): void {
    for (const t of [...this.keys, ...this.values]) t?.dispose();
    this.keys.fill(null);
    this.values.fill(null);
    this.length = 0;
  }
}

export interface RaggedInput {
  /** The sequence's new tokens (at least one). */
  ids: number[];
  cache: SequenceCache;
}

export interface RaggedDecoder {
  config: ModelConfig;
  newCache(): SequenceCache;
  /**
   * Feeds every sequence's new tokens; returns the logits (S, V) of each sequence's last new token and
   * appends the new keys and values to the caches. `ctx` is a MixedContext with one entry per token, in
   * the order of `inputs`.
   */
  step(inputs: RaggedInput[], ctx: MixedContext): tf.Tensor2D;
}

export function createRaggedDecoder(config: ModelConfig, weights: Weights): RaggedDecoder {
  if (config.kind !== 'decoder') throw new LoraxsError(`generation needs a decoder model (llama, mistral, qwen2, gemma); this one is ${config.modelType}`);
  const get = (name: string): tf.Tensor => {
    const t = weights.get(name);
    if (!t) throw new LoraxsError(`the model has no tensor ${name}`, { file: 'model.safetensors', detail: name });
    return t;
  };
  const { hiddenSize: h, numHeads, numKvHeads, headDim, numLayers } = config;
  const isGemma = config.modelType === 'gemma';
  const activation = activationByName(isGemma && config.hiddenAct === 'gelu' ? 'gelu_pytorch_tanh' : config.hiddenAct);
  const windows = slidingWindows(config);
  const inverseFrequencies = ropeInverseFrequencies(config);
  const embedTokens = get('model.embed_tokens.weight');
  const finalNorm = get('model.norm.weight');
  const lmHead = config.tieWordEmbeddings ? embedTokens : get('lm_head.weight');
  const layers = Array.from({ length: numLayers }, (_, i) => {
    const p = `model.layers.${i}`;
    return {
      q: `${p}.self_attn.q_proj`, k: `${p}.self_attn.k_proj`, v: `${p}.self_attn.v_proj`, o: `${p}.self_attn.o_proj`,
      gate: `${p}.mlp.gate_proj`, up: `${p}.mlp.up_proj`, down: `${p}.mlp.down_proj`,
      inputNorm: get(`${p}.input_layernorm.weight`), postNorm: get(`${p}.post_attention_layernorm.weight`), window: windows[i],
    };
  });
  const norm = (x: tf.Tensor, w: tf.Tensor) => rmsNorm(x, w, config.normEps, isGemma);
  const scale = 1 / Math.sqrt(headDim);
  const groups = numHeads / numKvHeads;

  function step(inputs: RaggedInput[], ctx: MixedContext): tf.Tensor2D {
    const lengths = inputs.map((s) => s.ids.length);
    const offsets = inputs.map((s) => s.cache.length);
    inputs.forEach((s, i) => {
      if (offsets[i] + lengths[i] > config.maxPositionEmbeddings) {
        throw new LoraxsError(`sequence length ${offsets[i] + lengths[i]} exceeds the model's ${config.maxPositionEmbeddings} positions`);
      }
    });
    const total = lengths.reduce((a, b) => a + b, 0);
    const starts = lengths.map((_, i) => lengths.slice(0, i).reduce((a, b) => a + b, 0));
    const stored: Array<Array<{ k: tf.Tensor4D; v: tf.Tensor4D }>> = inputs.map(() => []);
    const logits = tf.tidy(() => {
      const ids = tf.tensor2d(inputs.flatMap((s) => s.ids), [1, total], 'int32');
      let x: tf.Tensor = tf.gather(embedTokens, ids); // (1, N, H)
      if (isGemma) x = tf.mul(x, Math.fround(Math.sqrt(h)));
      // Rotary tables at each token's own position.
      const tables = inputs.map((_, i) => ropeTables(inverseFrequencies, lengths[i], offsets[i]));
      const cos = tf.concat(tables.map((t) => t.cos), 0) as tf.Tensor2D;
      const sin = tf.concat(tables.map((t) => t.sin), 0) as tf.Tensor2D;
      const masks = new Map<string, tf.Tensor4D>();
      const maskFor = (i: number, window: number | null): tf.Tensor4D => {
        const key = `${i}/${window}`;
        let m = masks.get(key);
        if (!m) masks.set(key, (m = groupMask(causalMaskAt(offsets[i], lengths[i], window), groups)));
        return m;
      };
      layers.forEach((layer, li) => {
        const normed = norm(x, layer.inputNorm);
        const q = applyRope(splitHeads(ctx.linear(layer.q, normed), numHeads, headDim), cos, sin); // (1, heads, N, D)
        const k = applyRope(splitHeads(ctx.linear(layer.k, normed), numKvHeads, headDim), cos, sin); // (1, kvHeads, N, D)
        const v = splitHeads(ctx.linear(layer.v, normed), numKvHeads, headDim);
        const attended = inputs.map((s, i) => {
          const qi = tf.slice(q, [0, 0, starts[i], 0], [1, numHeads, lengths[i], headDim]) as tf.Tensor4D;
          let ki = tf.slice(k, [0, 0, starts[i], 0], [1, numKvHeads, lengths[i], headDim]) as tf.Tensor4D;
          let vi = tf.slice(v, [0, 0, starts[i], 0], [1, numKvHeads, lengths[i], headDim]) as tf.Tensor4D;
          const ck = s.cache.keys[li];
          const cv = s.cache.values[li];
          if (ck && cv) {
            ki = tf.concat([ck, ki], 2) as tf.Tensor4D;
            vi = tf.concat([cv, vi], 2) as tf.Tensor4D;
          }
          stored[i][li] = { k: tf.keep(ki), v: tf.keep(vi) };
          return groupedQueryAttention(qi, ki, vi, maskFor(i, layer.window), scale, ctx, 0); // (1, heads, t_i, D)
        });
        const merged = mergeHeads(tf.concat(attended, 2) as tf.Tensor4D); // (1, N, heads·D)
        x = tf.add(x, ctx.linear(layer.o, merged));
        const normed2 = norm(x, layer.postNorm);
        const gated = tf.mul(activation(ctx.linear(layer.gate, normed2)), ctx.linear(layer.up, normed2));
        x = tf.add(x, ctx.linear(layer.down, gated));
      });
      // Only each sequence's last new token goes through the final norm and the LM head.
      const last = tf.tensor1d(inputs.map((_, i) => starts[i] + lengths[i] - 1), 'int32');
      const hidden = norm(tf.gather(tf.reshape(x, [total, h]), last), finalNorm); // (S, H)
      return linearForward(hidden, lmHead) as tf.Tensor2D; // (S, V); lm_head is never adapted
    });
    inputs.forEach((s, i) => {
      for (let li = 0; li < numLayers; li++) {
        s.cache.keys[li]?.dispose();
        s.cache.values[li]?.dispose();
        s.cache.keys[li] = stored[i][li].k;
        s.cache.values[li] = stored[i][li].v;
      }
      s.cache.length = offsets[i] + lengths[i];
    });
    return logits;
  }

  return { config, newCache: () => new SequenceCache(numLayers), step };
}
