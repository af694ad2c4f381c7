/**
 * A Hugging Face model folder on disk: config.json plus `model.safetensors`, or shards listed by
 * `model.safetensors.index.json`. Opening reads config.json and the safetensors headers only; weights are
 * read on demand by `loadWeights`, converted to float32.
 *
 * Tensors are addressed by canonical names: the names transformers' task classes use
 * (`roberta.encoder.layer.0.attention.self.query.weight`, `model.layers.0.self_attn.q_proj.weight`), so a
 * checkpoint saved from the bare base model (`encoder.layer.0...`, `layers.0...`) reads the same.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '../backend/tf';
import { LoraxsError } from '../errors';
import type { ModelConfig, Weights } from '../models/types';
import { readModelConfig } from './model_config';
import {
  FLOAT_DTYPES, numElements, readSafetensorsHeader, readTensorFloat32,
  type SafetensorsHeader, type TensorEntry,
} from './safetensors';

export interface TensorLocation {
  header: SafetensorsHeader;
  entry: TensorEntry;
  /** The name as stored in the file. */
  sourceName: string;
}

export interface Checkpoint {
  dir: string;
  config: ModelConfig;
  /** Canonical name -> where the tensor lives. */
  tensors: Map<string, TensorLocation>;
  /** Absolute paths of the safetensors files, in index order. */
  files: string[];
  /** Decoders only: the config ties embeddings and there is no `lm_head.weight`, so the head is `model.embed_tokens.weight`. */
  tiedLmHead: boolean;
}

const SINGLE_FILE = 'model.safetensors';
const INDEX_FILE = 'model.safetensors.index.json';

/**
 * Opens a model folder: config.json + safetensors headers (no tensor data is read). `knownHeaders` (absolute
 * file path -> header) stand in for weight files that are not on disk: a hub model whose headers alone were
 * fetched (hub/safetensors_headers.ts), for counting and checks; its weights cannot be loaded.
 */
export function openCheckpoint(dir: string, knownHeaders?: ReadonlyMap<string, SafetensorsHeader>): Checkpoint {
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) {
    throw new LoraxsError(`model folder ${dir} does not exist or is not a folder`, { file: dir });
  }
  const config = readModelConfig(dir);
  const files = safetensorsFiles(dir, knownHeaders);
  const headers = new Map(files.map((f) => [f, knownHeaders?.get(f) ?? readSafetensorsHeader(f)]));
  const tensors = new Map<string, TensorLocation>();
  const add = (header: SafetensorsHeader, entry: TensorEntry): void => {
    const canonical = canonicalName(config, entry.name);
    const before = tensors.get(canonical);
    if (before) {
      throw new LoraxsError(
        `tensor '${entry.name}' in ${path.basename(header.file)} and '${before.sourceName}' in ${path.basename(before.header.file)} are both '${canonical}'`,
        { file: header.file, detail: entry.name });
    }
    tensors.set(canonical, { header, entry, sourceName: entry.name });
  };

  const indexFile = path.join(dir, INDEX_FILE);
  if (fs.existsSync(indexFile)) {
    for (const [name, shard] of readWeightMap(indexFile)) {
      const header = headers.get(path.join(dir, shard));
      const entry = header?.tensors.get(name);
      if (!header || !entry) {
        throw new LoraxsError(`weight_map puts tensor '${name}' in ${shard}, but ${shard} has no such tensor`, { file: indexFile, detail: name });
      }
      add(header, entry);
    }
  } else {
    const header = headers.get(files[0]);
    for (const entry of header!.tensors.values()) add(header!, entry);
  }

  const tiedLmHead = config.kind === 'decoder' && config.tieWordEmbeddings && !tensors.has('lm_head.weight');
  return { dir, config, tensors, files, tiedLmHead };
}

/** The safetensors files of a folder (single or sharded), or an error saying what is there instead. */
function safetensorsFiles(dir: string, knownHeaders?: ReadonlyMap<string, SafetensorsHeader>): string[] {
  const indexFile = path.join(dir, INDEX_FILE);
  const exists = (f: string): boolean => knownHeaders?.has(f) === true || fs.existsSync(f);
  if (fs.existsSync(indexFile)) {
    const shards = [...new Set(readWeightMap(indexFile).values())];
    for (const shard of shards) {
      if (!exists(path.join(dir, shard))) {
        throw new LoraxsError(`shard ${shard} listed in weight_map is missing from ${dir}`, { file: indexFile, detail: shard });
      }
    }
    return shards.map((s) => path.join(dir, s));
  }
  const single = path.join(dir, SINGLE_FILE);
  if (exists(single)) return [single];

  const names = fs.readdirSync(dir);
  const shards = names.filter((n) => /^model-\d+-of-\d+\.safetensors$/.test(n));
  if (shards.length) {
    throw new LoraxsError(`${dir} has sharded weights (${shards[0]}, ...) but no ${INDEX_FILE} to say which tensor is where`, { file: indexFile });
  }
  const bins = names.filter((n) => /^pytorch_model.*\.bin$/.test(n));
  const hint = `convert the folder to safetensors with transformers: python -c "from transformers import AutoModel; `
    + `AutoModel.from_pretrained('${dir}').save_pretrained('${dir}', safe_serialization=True)" (use the task class, e.g. `
    + `AutoModelForCausalLM or AutoModelForSequenceClassification, to keep a trained head)`;
  if (bins.length) {
    throw new LoraxsError(`${dir} has only PyTorch pickle weights (${bins.join(', ')}), which are not read (they can run arbitrary code); ${hint}`,
      { file: path.join(dir, bins[0]) });
  }
  throw new LoraxsError(`no ${SINGLE_FILE} or ${INDEX_FILE} in ${dir}`, { file: dir });
}

/** `weight_map` of a sharded index: tensor name -> shard file name (a plain name inside the folder). */
function readWeightMap(indexFile: string): Map<string, string> {
  let json: unknown;
  try {
    json = JSON.parse(fs.readFileSync(indexFile, 'utf8'));
  } catch (e) {
    throw new LoraxsError(`${INDEX_FILE} is not valid JSON: ${(e as Error).message}`, { file: indexFile });
  }
  const map = (json as { weight_map?: unknown } | null)?.weight_map;
  if (typeof map !== 'object' || map === null || Array.isArray(map)) {
    throw new LoraxsError(`${INDEX_FILE} has no "weight_map" object`, { file: indexFile, detail: 'weight_map' });
  }
  const out = new Map<string, string>();
  for (const [name, shard] of Object.entries(map as Record<string, unknown>)) {
    if (typeof shard !== 'string' || shard !== path.basename(shard) || !shard.endsWith('.safetensors')) {
      throw new LoraxsError(`weight_map entry for '${name}' must be a .safetensors file name in the same folder, got ${JSON.stringify(shard)}`,
        { file: indexFile, detail: name });
    }
    out.set(name, shard);
  }
  return out;
}

const ENCODER_PARTS = ['embeddings.', 'encoder.', 'pooler.'];
const DECODER_PARTS = ['embed_tokens.', 'layers.', 'norm.'];

/**
 * The name transformers' task class gives a stored tensor: adds the base-model prefix (`bert.`,
 * `roberta.`, `model.`) to names saved from the bare base model, and renames TF-style
 * `LayerNorm.gamma`/`.beta` to `.weight`/`.bias`. Heads (`classifier.*`, `cls.*`, `lm_head.*`,
 * `score.*`) and already-prefixed names are kept.
 */
export function canonicalName(config: ModelConfig, sourceName: string): string {
  let name = sourceName;
  if (config.kind === 'encoder') {
    name = name.replace(/\.gamma$/, '.weight').replace(/\.beta$/, '.bias');
    if (ENCODER_PARTS.some((p) => name.startsWith(p))) name = `${config.modelType}.${name}`;
  } else if (DECODER_PARTS.some((p) => name.startsWith(p))) {
    name = `model.${name}`;
  }
  return name;
}

/** Canonical names of the embedding matrix and the output matrix that a tied model shares. */
function tiedPair(config: ModelConfig): [string, string] {
  switch (config.modelType) {
    case 'bert': return ['bert.embeddings.word_embeddings.weight', 'cls.predictions.decoder.weight'];
    case 'roberta': return ['roberta.embeddings.word_embeddings.weight', 'lm_head.decoder.weight'];
    default: return ['model.embed_tokens.weight', 'lm_head.weight'];
  }
}

/** Trainable parameters: floating tensors, without stored buffers (`position_ids`, `rotary_emb.inv_freq`). */
function isParameter(canonical: string, entry: TensorEntry): boolean {
  return FLOAT_DTYPES.includes(entry.dtype) && !canonical.endsWith('.inv_freq');
}

/** The tensors `loadWeights` loads by default: every parameter. */
export function parameterNames(ckpt: Checkpoint): string[] {
  return [...ckpt.tensors].filter(([name, loc]) => isParameter(name, loc.entry)).map(([name]) => name);
}

/**
 * Reads tensors (default: every parameter) as float32 tf.Tensors with their stored shapes, keyed by
 * canonical name. F16/BF16/F64 are converted exactly (F64 rounded to nearest). The caller owns (and
 * disposes) the tensors.
 */
export function loadWeights(ckpt: Checkpoint, names?: string[]): Weights {
  const wanted = names ?? parameterNames(ckpt);
  const weights: Weights = new Map();
  try {
    for (const name of wanted) {
      const loc = ckpt.tensors.get(name);
      if (!loc) {
        throw new LoraxsError(`tensor '${name}' is not in the checkpoint ${ckpt.dir} (${ckpt.tensors.size} tensors)`, { file: ckpt.dir, detail: name });
      }
      const values = readTensorFloat32(loc.header, loc.sourceName);
      weights.set(name, tf.tensor(values, loc.entry.shape, 'float32'));
    }
  } catch (e) {
    for (const t of weights.values()) t.dispose();
    throw e;
  }
  return weights;
}

/** Unique parameters of the base model: a tied output matrix stored as a copy is counted once. */
export function countParameters(ckpt: Checkpoint): number {
  let total = 0;
  for (const [name, loc] of ckpt.tensors) if (isParameter(name, loc.entry)) total += numElements(loc.entry.shape);
  if (ckpt.config.tieWordEmbeddings) {
    const [embedding, output] = tiedPair(ckpt.config);
    const e = ckpt.tensors.get(embedding);
    const o = ckpt.tensors.get(output);
    if (e && o && numElements(e.entry.shape) === numElements(o.entry.shape)) total -= numElements(o.entry.shape);
  }
  return total;
}

/** float32 bytes of each parameter tensor (copies included). */
function* parameterFloat32Bytes(ckpt: Checkpoint): Generator<number> {
  for (const [name, loc] of ckpt.tensors) if (isParameter(name, loc.entry)) yield 4 * numElements(loc.entry.shape);
}

/** Bytes the default `loadWeights` takes as float32 (4 per element of every parameter tensor, copies included). */
export function float32Bytes(ckpt: Checkpoint): number {
  let total = 0;
  for (const bytes of parameterFloat32Bytes(ckpt)) total += bytes;
  return total;
}

/** float32 bytes of the model's largest parameter tensor (the embedding, or an untied output matrix). */
export function largestFloat32Bytes(ckpt: Checkpoint): number {
  let largest = 0;
  for (const bytes of parameterFloat32Bytes(ckpt)) largest = Math.max(largest, bytes);
  return largest;
}

/**
 * Identifies the checkpoint cheaply: sha256 (hex) over config.json's bytes and, for each weight file in
 * order, its name, size and header JSON bytes. Any change of a tensor's name, dtype, shape or offsets, or
 * of the config, changes it; no tensor data is read.
 */
export function checkpointFingerprint(ckpt: Checkpoint): string {
  const hash = createHash('sha256');
  hash.update('config.json\0');
  hash.update(fs.readFileSync(path.join(ckpt.dir, 'config.json')));
  for (const file of ckpt.files) {
    const stat = fs.statSync(file);
    hash.update(`\0${path.basename(file)}\0${stat.size}\0`);
    const fd = fs.openSync(file, 'r');
    try {
      const lenBuf = Buffer.alloc(8);
      fs.readSync(fd, lenBuf, 0, 8, 0);
      const n = Number(lenBuf.readBigUInt64LE(0));
      const header = Buffer.alloc(n);
      let done = 0;
      while (done < n) {
        const got = fs.readSync(fd, header, done, n - done, 8 + done);
        if (got === 0) throw new LoraxsError(`truncated safetensors header`, { file });
        done += got;
      }
      hash.update(header);
    } finally {
      fs.closeSync(fd);
    }
  }
  return hash.digest('hex');
}

/** Safety factor over the weights for activations, gradients and the backend's own copies. */
const WORKING_MEMORY_FACTOR = 1.5;

/**
 * Refuses, before any weight is loaded, a model whose float32 weights (× 1.5) exceed what the backend holds
 * or, when `budget` is given and lower, the memory budget (backend/memory_budget.ts).
 */
export function assertFitsBackend(ckpt: Checkpoint, limitBytes: number, backendName: string, budget?: { bytes: number; source: string }): void {
  const bytes = float32Bytes(ckpt);
  const needed = bytes * WORKING_MEMORY_FACTOR;
  const gb = (b: number): string => (b / 1024 ** 3).toFixed(2);
  if (budget && budget.bytes < limitBytes && needed > budget.bytes) {
    throw new LoraxsError(
      `model ${ckpt.dir} does not fit the memory budget: its weights take ${gb(bytes)} GB as float32 `
      + `(about ${gb(needed)} GB with working memory), above the budget of ${gb(budget.bytes)} GB (${budget.source}). `
      + 'Raise compute.memory_budget_gb (or LORAXS_MEMORY_BUDGET_GB) if the machine has the memory, or use a smaller model',
      { file: path.join(ckpt.dir, 'config.json') });
  }
  if (needed > limitBytes) {
    throw new LoraxsError(
      `model ${ckpt.dir} is too large for the ${backendName} backend: its weights take ${gb(bytes)} GB as float32 `
      + `(about ${gb(needed)} GB with working memory), above the backend's limit of ${gb(limitBytes)} GB. `
      + `Use a smaller model or a backend with more memory (tfjs-node or tfjs-node-gpu; see \`loraxs doctor\`)`,
      { file: path.join(ckpt.dir, 'config.json') });
  }
}
