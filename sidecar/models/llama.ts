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
import { causalMask, groupedQueryAttention, groupMask, mergeHeads, splitHeads } from './attention';
import { type BackboneOptions, resolveDropout, type TransformerBackbone } from './backbone_options';
import { describeLinear, requireTensor, type WeightSource } from './model_weights';
import { rmsNorm } from './norms';
import { applyRope, ropeInverseFrequencies, ropeTables } from './rope';
import type { ForwardContext, ForwardInputs, LinearModule, ModelConfig, Weights } from './types';

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

  function forward(inputs: ForwardInputs, ctx: ForwardContext): tf.Tensor3D {
    const [, t] = inputs.inputIds.shape;
    if (t > config.maxPositionEmbeddings) {
      throw new LoraxsError(`sequence length ${t} exceeds the model's ${config.maxPositionEmbeddings} positions; lower training.max_length`);
    }
    return tf.tidy(() => {
      const norm = (x: tf.Tensor, w: tf.Tensor) => rmsNorm(x, w, config.normEps, isGemma);
      const attentionDropout = ctx.training ? dropoutRates.attention : 0;
      let x: tf.Tensor = tf.gather(embedTokens, inputs.inputIds);
      if (isGemma) x = tf.mul(x, Math.fround(Math.sqrt(h)));
      const { cos, sin } = ropeTables(inverseFrequencies, t);
      // Grouped-query attention: the query heads of one key/value head attend as one stacked block.
      const groups = numHeads / numKvHeads;
      const masks = new Map<number | null, tf.Tensor4D>();
      const maskFor = (window: number | null) => {
        let m = masks.get(window);
        if (!m) masks.set(window, (m = groupMask(causalMask(inputs.attentionMask, window), groups)));
        return m;
      };
      const scale = 1 / Math.sqrt(headDim);
      for (const layer of layers) {
        const { names } = layer;
        const normed = norm(x, layer.inputNorm);
        const q = applyRope(splitHeads(ctx.linear(names.q, normed), numHeads, headDim), cos, sin);
        const k = applyRope(splitHeads(ctx.linear(names.k, normed), numKvHeads, headDim), cos, sin);
        const v = splitHeads(ctx.linear(names.v, normed), numKvHeads, headDim);
        const attended = groupedQueryAttention(q, k, v, maskFor(layer.window), scale, ctx, attentionDropout);
        x = tf.add(x, ctx.linear(names.o, mergeHeads(attended)));
        const normed2 = norm(x, layer.postAttentionNorm);
        const gated = tf.mul(activation(ctx.linear(names.gate, normed2)), ctx.linear(names.up, normed2));
        x = tf.add(x, ctx.linear(names.down, gated));
      }
      return norm(x, finalNorm) as tf.Tensor3D;
    });
  }

  return { config, weights, dropoutRates, linearModules: () => modules.map((m) => ({ ...m })), forward };
}
