/**
 * The layout of the `use_lite` family (Google's Universal Sentence Encoder lite, a tensor2tensor
 * "KonaTransformer"): tensor names, shapes and linear layers, without TensorFlow.js, so `loraxs params`
 * and the importer can use it.
 *
 * Layer i reads width in_i (embedding_size for layer 0, hidden_size after) and writes hidden_size:
 *   pre-norm LayerNorm(in_i) -> fused qkv (3·in_i × in_i) -> attention (heads of in_i / num_heads)
 *   -> attention.output (hidden × in_i), added to the residual (projected by residual_proj, hidden × in_i,
 *   when in_i ≠ hidden); pre-norm LayerNorm(hidden) -> ffn.intermediate (inter × hidden) -> ReLU
 *   -> ffn.output (hidden × inter), added to the residual.
 * The sentence embedding: mean of the last layer's states over the tokens -> pooler.dense (hidden × hidden)
 * -> tanh -> L2 normalisation.
 *
 * Canonical tensor names (all linear weights stored (out, in), as torch.nn.Linear):
 *   use_lite.embeddings.word_embeddings.weight                     (vocab, embedding_size)
 *   use_lite.encoder.layer.<i>.attention.LayerNorm.{weight,bias}   (in_i)
 *   use_lite.encoder.layer.<i>.attention.qkv.{weight,bias}         (3·in_i, in_i)
 *   use_lite.encoder.layer.<i>.attention.output.{weight,bias}      (hidden, in_i)
 *   use_lite.encoder.layer.<i>.residual_proj.{weight,bias}         (hidden, in_i), only where in_i ≠ hidden
 *   use_lite.encoder.layer.<i>.ffn.LayerNorm.{weight,bias}         (hidden)
 *   use_lite.encoder.layer.<i>.ffn.intermediate.{weight,bias}      (inter, hidden)
 *   use_lite.encoder.layer.<i>.ffn.output.{weight,bias}            (hidden, inter)
 *   use_lite.pooler.dense.{weight,bias}                            (hidden, hidden)
 */
import type { LinearModule, ModelConfig } from './types';

/** Prefix of every base-model tensor of the family: the model type, as bert./roberta. are (so io/model_folder.ts's canonical names apply). */
export const USE_LITE_PREFIX = 'use_lite';
export const USE_LITE_POOLER = `${USE_LITE_PREFIX}.pooler.dense`;
export const USE_LITE_WORD_EMBEDDINGS = `${USE_LITE_PREFIX}.embeddings.word_embeddings.weight`;

/** The numbers of config.json the family needs beyond ModelConfig's common ones. */
export interface UseLiteDims {
  vocabSize: number;
  embeddingSize: number;
  hidden: number;
  intermediate: number;
  numLayers: number;
  numHeads: number;
  maxPositions: number;
  minTimescale: number;
  maxTimescale: number;
}

function numberOr(raw: Record<string, unknown>, key: string, fallback: number): number {
  const v = raw[key];
  return typeof v === 'number' && Number.isFinite(v) ? v : fallback;
}

export function useLiteDims(config: ModelConfig): UseLiteDims {
  return {
    vocabSize: config.vocabSize,
    embeddingSize: numberOr(config.raw, 'embedding_size', config.hiddenSize),
    hidden: config.hiddenSize,
    intermediate: config.intermediateSize,
    numLayers: config.numLayers,
    numHeads: config.numHeads,
    maxPositions: config.maxPositionEmbeddings,
    minTimescale: numberOr(config.raw, 'timing_min_timescale', 1),
    maxTimescale: numberOr(config.raw, 'timing_max_timescale', 1e4),
  };
}

/** Width read by layer i: embedding_size for the first layer, hidden_size after. */
export function layerInputWidth(dims: UseLiteDims, layer: number): number {
  return layer === 0 ? dims.embeddingSize : dims.hidden;
}

/** Module names of layer i. */
export function useLiteLayerNames(layer: number) {
  const p = `${USE_LITE_PREFIX}.encoder.layer.${layer}`;
  return {
    attentionNorm: `${p}.attention.LayerNorm`,
    qkv: `${p}.attention.qkv`,
    attentionOutput: `${p}.attention.output`,
    residualProj: `${p}.residual_proj`,
    ffnNorm: `${p}.ffn.LayerNorm`,
    intermediate: `${p}.ffn.intermediate`,
    output: `${p}.ffn.output`,
  };
}

/** The linear layers in forward order (all with biases), the pooler last. */
export function useLiteLinearModules(config: ModelConfig): LinearModule[] {
  const d = useLiteDims(config);
  const modules: LinearModule[] = [];
  const add = (name: string, outFeatures: number, inFeatures: number): void => {
    modules.push({ name, outFeatures, inFeatures, hasBias: true });
  };
  for (let i = 0; i < d.numLayers; i++) {
    const n = useLiteLayerNames(i);
    const width = layerInputWidth(d, i);
    add(n.qkv, 3 * width, width);
    add(n.attentionOutput, d.hidden, width);
    if (width !== d.hidden) add(n.residualProj, d.hidden, width);
    add(n.intermediate, d.intermediate, d.hidden);
    add(n.output, d.hidden, d.intermediate);
  }
  add(USE_LITE_POOLER, d.hidden, d.hidden);
  return modules;
}

/** Every base-model tensor with its shape, in a stable order (the importer writes them so). */
export function useLiteTensorShapes(config: ModelConfig): Array<[string, number[]]> {
  const d = useLiteDims(config);
  const out: Array<[string, number[]]> = [[USE_LITE_WORD_EMBEDDINGS, [d.vocabSize, d.embeddingSize]]];
  const linear = (name: string, o: number, i: number): void => {
    out.push([`${name}.weight`, [o, i]], [`${name}.bias`, [o]]);
  };
  const norm = (name: string, w: number): void => {
    out.push([`${name}.weight`, [w]], [`${name}.bias`, [w]]);
  };
  for (let i = 0; i < d.numLayers; i++) {
    const n = useLiteLayerNames(i);
    const width = layerInputWidth(d, i);
    norm(n.attentionNorm, width);
    linear(n.qkv, 3 * width, width);
    linear(n.attentionOutput, d.hidden, width);
    if (width !== d.hidden) linear(n.residualProj, d.hidden, width);
    norm(n.ffnNorm, d.hidden);
    linear(n.intermediate, d.intermediate, d.hidden);
    linear(n.output, d.hidden, d.intermediate);
  }
  linear(USE_LITE_POOLER, d.hidden, d.hidden);
  return out;
}

/** Parameters of the base model from config.json alone. */
export function useLiteParamCount(config: ModelConfig): number {
  return useLiteTensorShapes(config).reduce((s, [, shape]) => s + shape.reduce((a, b) => a * b, 1), 0);
}
