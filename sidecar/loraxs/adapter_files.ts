/**
 * The native adapter folder (what `train` writes and `--adapter` takes):
 *
 *   adapter.safetensors   only R: one F32 tensor `R.r<k>` of shape (count, k, k) per distinct rank k, the
 *                         modules of each stack named in `__metadata__` by their indices in
 *                         loraxs_config.json's `modules` (compact ranges such as "0-95"), so the file is
 *                         4 · Σ r² bytes plus a header well under 2 KB
 *   head.safetensors      the task head's trainable tensors by canonical name (absent for causal LM)
 *   factors.safetensors   optional: the frozen factors `<module>.A` (r, in), `<module>.B` (out, r),
 *                         `<module>.sigma` (r) (written by `export --format loraxs-factors`)
 *   loraxs_config.json    rank(s), alpha, init, init_std, targets, SVD settings, seed, factor seed, engine version,
 *                         base model path and fingerprint, task, labels, the module list, the factors'
 *                         checksum, and the sha256 of each tensor file
 *
 * Saving writes every file as `<file>.tmp-<pid>` first and renames them only when all are written,
 * loraxs_config.json last. The config records each file's sha256, so a folder left half-replaced by a
 * crash between renames is detected on load rather than silently mixing two adapters.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LoraxsError } from '../errors';
import type { InitKind, SvdConfig, Task } from '../config/types';
import { encodeSafetensors, readSafetensorsHeader, readTensorFloat32, type TensorToWrite } from '../io/safetensors';
import { writeFileAtomic } from '../io/atomic_write';
import { INIT_KINDS, type Factors } from './init';
import { factorsChecksum } from './factor_checksum';

export const ADAPTER_FILE = 'adapter.safetensors';
export const HEAD_FILE = 'head.safetensors';
export const FACTORS_FILE = 'factors.safetensors';
export const CONFIG_FILE = 'loraxs_config.json';
/** The chat template of chat-data training, as transformers saves one beside a tokenizer. */
export const CHAT_TEMPLATE_FILE = 'chat_template.jinja';
export const ADAPTER_FORMAT = 'loraxs-adapter';
export const ADAPTER_FORMAT_VERSION = 1;

export interface AdapterModuleEntry {
  name: string;
  rank: number;
  outFeatures: number;
  inFeatures: number;
}

/** loraxs_config.json, in memory (on disk the keys are snake_case). */
export interface LoraxsAdapterConfig {
  engineVersion: string;
  /** `hubId` and `commit`: the Hugging Face hub id and the commit its snapshot folder (`path`) holds, for a hub model. */
  baseModel: { path: string; fingerprint: string; hubId?: string; commit?: string };
  task: Task;
  numLabels: number | null;
  id2label: Record<string, string> | null;
  rank: number;
  rankPattern: Record<string, number>;
  alpha: number;
  init: InitKind;
  initStd: number;
  targets: string[];
  svd: SvdConfig;
  seed: number;
  /** The factors' seed (`adapter.factor_seed`); absent in adapters saved before it existed, whose factors used `seed`. */
  factorSeed?: number;
  /** The adapted modules in model order (the order of every per-module list in the folder). */
  modules: AdapterModuleEntry[];
  /** factorsChecksum(modules, factors): binds the adapter to the factors it was trained with. */
  factorsSha256: string;
}

export interface HeadTensor {
  shape: number[];
  data: Float32Array;
}

/** Everything an adapter folder holds, in memory. */
export interface AdapterSnapshot {
  config: LoraxsAdapterConfig;
  /** R (r × r, row-major) per module name. */
  R: Map<string, Float32Array>;
  /** The task head's tensors by canonical name (empty for causal LM). */
  head: Map<string, HeadTensor>;
  /** The frozen factors when the folder ships them (factors.safetensors), else undefined. */
  factors?: Map<string, Factors>;
  /** The chat template of chat-data training (chat_template.jinja), when there was one. */
  chatTemplate?: string;
}

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** Indices as compact ranges: [0,1,2,5,7,8] -> "0-2,5,7-8". */
export function encodeRanges(indices: number[]): string {
  const parts: string[] = [];
  for (let i = 0; i < indices.length;) {
    let j = i;
    while (j + 1 < indices.length && indices[j + 1] === indices[j] + 1) j++;
    parts.push(i === j ? `${indices[i]}` : `${indices[i]}-${indices[j]}`);
    i = j + 1;
  }
  return parts.join(',');
}

/** Inverse of encodeRanges; undefined when the text is malformed. */
export function decodeRanges(text: string): number[] | undefined {
  if (text === '') return [];
  const out: number[] = [];
  for (const part of text.split(',')) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part);
    if (!m) return undefined;
    const a = Number(m[1]);
    const b = m[2] === undefined ? a : Number(m[2]);
    if (b < a) return undefined;
    for (let i = a; i <= b; i++) out.push(i);
  }
  return out;
}

/** sha256 of the module names (newline-joined), first 16 hex digits: ties adapter.safetensors to its config. */
function namesDigest(names: string[]): string {
  return createHash('sha256').update(names.join('\n')).digest('hex').slice(0, 16);
}

/** adapter.safetensors: R stacked by rank. */
export function encodeAdapterTensors(config: LoraxsAdapterConfig, R: Map<string, Float32Array>): Buffer {
  const byRank = new Map<number, number[]>();
  config.modules.forEach((m, i) => {
    const list = byRank.get(m.rank) ?? [];
    list.push(i);
    byRank.set(m.rank, list);
  });
  const tensors: TensorToWrite[] = [];
  const metadata: Record<string, string> = { format: 'loraxs-R', version: String(ADAPTER_FORMAT_VERSION), modules: namesDigest(config.modules.map((m) => m.name)) };
  for (const rank of [...byRank.keys()].sort((a, b) => a - b)) {
    const indices = byRank.get(rank)!;
    const data = new Float32Array(indices.length * rank * rank);
    indices.forEach((idx, k) => {
      const name = config.modules[idx].name;
      const r = R.get(name);
      if (!r || r.length !== rank * rank) throw new Error(`internal error: R of ${name} has ${r?.length ?? 0} values, expected ${rank}×${rank}`);
      data.set(r, k * rank * rank);
    });
    const tensorName = `R.r${rank}`;
    tensors.push({ name: tensorName, dtype: 'F32', shape: [indices.length, rank, rank], data });
    metadata[tensorName] = encodeRanges(indices);
  }
  return encodeSafetensors(tensors, metadata);
}

function encodeHead(head: Map<string, HeadTensor>): Buffer {
  const tensors: TensorToWrite[] = [...head].map(([name, t]) => ({ name, dtype: 'F32', shape: t.shape, data: t.data }));
  return encodeSafetensors(tensors, { format: 'loraxs-head' });
}

function encodeFactors(config: LoraxsAdapterConfig, factors: Map<string, Factors>): Buffer {
  const tensors: TensorToWrite[] = [];
  for (const m of config.modules) {
    const f = factors.get(m.name);
    if (!f) throw new Error(`internal error: no factors for ${m.name}`);
    tensors.push({ name: `${m.name}.A`, dtype: 'F32', shape: [f.rank, f.inFeatures], data: f.A });
    tensors.push({ name: `${m.name}.B`, dtype: 'F32', shape: [f.outFeatures, f.rank], data: f.B });
    tensors.push({ name: `${m.name}.sigma`, dtype: 'F32', shape: [f.sigma.length], data: f.sigma });
  }
  return encodeSafetensors(tensors, { format: 'loraxs-factors', factors_sha256: config.factorsSha256 });
}

function configToJson(c: LoraxsAdapterConfig, files: Record<string, string>): Record<string, unknown> {
  return {
    format: ADAPTER_FORMAT,
    format_version: ADAPTER_FORMAT_VERSION,
    engine_version: c.engineVersion,
    base_model: {
      path: c.baseModel.path, fingerprint: c.baseModel.fingerprint,
      ...(c.baseModel.hubId !== undefined ? { hub_id: c.baseModel.hubId, commit: c.baseModel.commit } : {}),
    },
    task: c.task,
    num_labels: c.numLabels,
    id2label: c.id2label,
    rank: c.rank,
    rank_pattern: c.rankPattern,
    alpha: c.alpha,
    init: c.init,
    init_std: c.initStd,
    targets: c.targets,
    svd: { method: c.svd.method, oversamples: c.svd.oversamples, power_iters: c.svd.powerIters },
    seed: c.seed,
    ...(c.factorSeed !== undefined ? { factor_seed: c.factorSeed } : {}),
    modules: c.modules.map((m) => ({ name: m.name, rank: m.rank, out_features: m.outFeatures, in_features: m.inFeatures })),
    factors_sha256: c.factorsSha256,
    files,
  };
}

/**
 * Writes the adapter into `dir` (created when absent; other files in it, such as metrics.jsonl, are left
 * alone). With `snap.factors`, factors.safetensors is written too and checked against the checksum.
 */
export function saveAdapter(dir: string, snap: AdapterSnapshot): void {
  const c = snap.config;
  const encoded = new Map<string, Buffer>();
  encoded.set(ADAPTER_FILE, encodeAdapterTensors(c, snap.R));
  if (snap.head.size > 0) encoded.set(HEAD_FILE, encodeHead(snap.head));
  if (snap.factors) {
    const sum = factorsChecksum(c.modules.map((m) => m.name), snap.factors);
    if (sum !== c.factorsSha256) throw new Error(`internal error: the factors to ship have checksum ${sum}, the config says ${c.factorsSha256}`);
    encoded.set(FACTORS_FILE, encodeFactors(c, snap.factors));
  }
  if (snap.chatTemplate !== undefined) encoded.set(CHAT_TEMPLATE_FILE, Buffer.from(snap.chatTemplate, 'utf8'));
  const files: Record<string, string> = {};
  for (const [name, bytes] of encoded) files[name] = sha256(bytes);
  const configBytes = Buffer.from(JSON.stringify(configToJson(c, files), null, 2) + '\n', 'utf8');

  fs.mkdirSync(dir, { recursive: true });
  // Every tensor file first (each atomically), the config last: it is what makes the new files current.
  for (const [name, bytes] of encoded) writeFileAtomic(path.join(dir, name), bytes);
  for (const stale of [HEAD_FILE, FACTORS_FILE, CHAT_TEMPLATE_FILE]) {
    if (!encoded.has(stale)) fs.rmSync(path.join(dir, stale), { force: true });
  }
  writeFileAtomic(path.join(dir, CONFIG_FILE), configBytes);
}

/** Field readers that name the file and key path of whatever is wrong. */
class JsonReader {
  constructor(private readonly file: string) {}

  fail(key: string, message: string): never {
    throw new LoraxsError(`${key}: ${message}`, { file: this.file, detail: key });
  }

  obj(v: unknown, key: string): Record<string, unknown> {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) this.fail(key, `expected an object, got ${JSON.stringify(v)}`);
    return v as Record<string, unknown>;
  }

  str(o: Record<string, unknown>, key: string, at: string): string {
    const v = o[key];
    if (typeof v !== 'string') this.fail(at, `expected a string, got ${JSON.stringify(v)}`);
    return v;
  }

  num(o: Record<string, unknown>, key: string, at: string, integer = false): number {
    const v = o[key];
    if (typeof v !== 'number' || !Number.isFinite(v) || (integer && !Number.isInteger(v))) {
      this.fail(at, `expected ${integer ? 'an integer' : 'a number'}, got ${JSON.stringify(v)}`);
    }
    return v;
  }
}

/** Parses and validates loraxs_config.json. */
export function readAdapterConfig(dir: string): { config: LoraxsAdapterConfig; files: Record<string, string> } {
  const file = path.join(dir, CONFIG_FILE);
  if (!fs.existsSync(file)) {
    throw new LoraxsError(`${dir} is not a LoRA-XS adapter folder: ${CONFIG_FILE} is missing`, { file: dir });
  }
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new LoraxsError(`not valid JSON: ${(e as Error).message}`, { file });
  }
  const j = new JsonReader(file);
  const o = j.obj(raw, '(root)');
  if (o.format !== ADAPTER_FORMAT) j.fail('format', `expected "${ADAPTER_FORMAT}", got ${JSON.stringify(o.format)}`);
  const version = j.num(o, 'format_version', 'format_version', true);
  if (version > ADAPTER_FORMAT_VERSION) j.fail('format_version', `version ${version} is newer than this engine reads (${ADAPTER_FORMAT_VERSION}); update LoRA-XS Studio`);
  const base = j.obj(o.base_model, 'base_model');
  const task = j.str(o, 'task', 'task');
  if (!['classification', 'regression', 'causal-lm'].includes(task)) j.fail('task', `unknown task "${task}"`);
  const init = j.str(o, 'init', 'init');
  if (!(INIT_KINDS as readonly string[]).includes(init)) j.fail('init', `unknown init "${init}" (expected one of ${INIT_KINDS.join(', ')})`);
  const svd = j.obj(o.svd, 'svd');
  const method = j.str(svd, 'method', 'svd.method');
  if (method !== 'randomized' && method !== 'exact') j.fail('svd.method', `expected "randomized" or "exact", got "${method}"`);
  const rankPattern = j.obj(o.rank_pattern ?? {}, 'rank_pattern');
  for (const k of Object.keys(rankPattern)) j.num(rankPattern, k, `rank_pattern.${k}`, true);
  if (!Array.isArray(o.targets) || !o.targets.every((t) => typeof t === 'string')) j.fail('targets', 'expected an array of strings');
  if (!Array.isArray(o.modules) || o.modules.length === 0) j.fail('modules', 'expected a non-empty array of modules');
  const modules = (o.modules as unknown[]).map((mv, i): AdapterModuleEntry => {
    const m = j.obj(mv, `modules[${i}]`);
    const entry = {
      name: j.str(m, 'name', `modules[${i}].name`),
      rank: j.num(m, 'rank', `modules[${i}].rank`, true),
      outFeatures: j.num(m, 'out_features', `modules[${i}].out_features`, true),
      inFeatures: j.num(m, 'in_features', `modules[${i}].in_features`, true),
    };
    if (entry.rank < 1 || entry.rank > Math.min(entry.outFeatures, entry.inFeatures)) j.fail(`modules[${i}].rank`, `rank ${entry.rank} outside 1..min(out, in)`);
    return entry;
  });
  const numLabels = o.num_labels === null || o.num_labels === undefined ? null : j.num(o, 'num_labels', 'num_labels', true);
  const id2label = o.id2label === null || o.id2label === undefined ? null : (j.obj(o.id2label, 'id2label') as Record<string, string>);
  const files = j.obj(o.files ?? {}, 'files') as Record<string, string>;
  const config: LoraxsAdapterConfig = {
    engineVersion: j.str(o, 'engine_version', 'engine_version'),
    baseModel: {
      path: j.str(base, 'path', 'base_model.path'), fingerprint: j.str(base, 'fingerprint', 'base_model.fingerprint'),
      ...(typeof base.hub_id === 'string' && typeof base.commit === 'string' ? { hubId: base.hub_id, commit: base.commit } : {}),
    },
    task: task as Task,
    numLabels,
    id2label,
    rank: j.num(o, 'rank', 'rank', true),
    rankPattern: rankPattern as Record<string, number>,
    alpha: j.num(o, 'alpha', 'alpha'),
    init: init as InitKind,
    initStd: j.num(o, 'init_std', 'init_std'),
    targets: o.targets as string[],
    svd: { method: method as SvdConfig['method'], oversamples: j.num(svd, 'oversamples', 'svd.oversamples', true), powerIters: j.num(svd, 'power_iters', 'svd.power_iters', true) },
    seed: j.num(o, 'seed', 'seed', true),
    ...(o.factor_seed !== undefined ? { factorSeed: j.num(o, 'factor_seed', 'factor_seed', true) } : {}),
    modules,
    factorsSha256: j.str(o, 'factors_sha256', 'factors_sha256'),
  };
  return { config, files };
}

/** Reads a file listed in the config, checking its sha256. */
function readListed(dir: string, name: string, files: Record<string, string>): void {
  const file = path.join(dir, name);
  if (!fs.existsSync(file)) throw new LoraxsError(`${name} is missing from the adapter folder (${CONFIG_FILE} lists it)`, { file });
  const digest = sha256(fs.readFileSync(file));
  if (digest !== files[name]) {
    throw new LoraxsError(
      `${name} does not match ${CONFIG_FILE} (sha256 ${digest.slice(0, 12)}…, expected ${String(files[name]).slice(0, 12)}…): the folder mixes files of two saves or was edited`,
      { file });
  }
}

/** Loads and validates an adapter folder. */
export function loadAdapter(dir: string): AdapterSnapshot {
  const { config, files } = readAdapterConfig(dir);
  if (!files[ADAPTER_FILE]) throw new LoraxsError(`files: ${ADAPTER_FILE} is not listed`, { file: path.join(dir, CONFIG_FILE), detail: 'files' });
  for (const name of Object.keys(files)) readListed(dir, name, files);

  const file = path.join(dir, ADAPTER_FILE);
  const header = readSafetensorsHeader(file);
  const md = header.metadata;
  if (md.format !== 'loraxs-R') throw new LoraxsError(`__metadata__.format must be "loraxs-R", got ${JSON.stringify(md.format)}`, { file, detail: '__metadata__' });
  if (md.modules !== namesDigest(config.modules.map((m) => m.name))) {
    throw new LoraxsError(`__metadata__.modules does not match the module list of ${CONFIG_FILE}`, { file, detail: '__metadata__.modules' });
  }
  const R = new Map<string, Float32Array>();
  for (const [name, entry] of header.tensors) {
    const m = /^R\.r(\d+)$/.exec(name);
    if (!m) throw new LoraxsError(`unexpected tensor '${name}' (expected R.r<rank>)`, { file, detail: name });
    const rank = Number(m[1]);
    const indices = md[name] === undefined ? undefined : decodeRanges(md[name]);
    if (!indices) throw new LoraxsError(`__metadata__ has no valid module list for '${name}'`, { file, detail: name });
    if (entry.dtype !== 'F32' || entry.shape.length !== 3 || entry.shape[0] !== indices.length || entry.shape[1] !== rank || entry.shape[2] !== rank) {
      throw new LoraxsError(`tensor '${name}' must be F32 [${indices.length}, ${rank}, ${rank}], got ${entry.dtype} [${entry.shape.join(', ')}]`, { file, detail: name });
    }
    const data = readTensorFloat32(header, name);
    indices.forEach((idx, k) => {
      const mod = config.modules[idx];
      if (!mod) throw new LoraxsError(`'${name}' names module index ${idx}, but ${CONFIG_FILE} lists ${config.modules.length} modules`, { file, detail: name });
      if (mod.rank !== rank) throw new LoraxsError(`'${name}' holds ${mod.name}, whose rank is ${mod.rank} in ${CONFIG_FILE}`, { file, detail: name });
      if (R.has(mod.name)) throw new LoraxsError(`${mod.name} appears twice`, { file, detail: name });
      R.set(mod.name, data.slice(k * rank * rank, (k + 1) * rank * rank));
    });
  }
  const missing = config.modules.find((m) => !R.has(m.name));
  if (missing) throw new LoraxsError(`no R for module ${missing.name}`, { file, detail: missing.name });

  const head = new Map<string, HeadTensor>();
  if (files[HEAD_FILE]) {
    const hh = readSafetensorsHeader(path.join(dir, HEAD_FILE));
    for (const [name, entry] of hh.tensors) head.set(name, { shape: entry.shape, data: readTensorFloat32(hh, name) });
  }
  let factors: Map<string, Factors> | undefined;
  if (files[FACTORS_FILE]) factors = readShippedFactors(path.join(dir, FACTORS_FILE), config);
  const chatTemplate = files[CHAT_TEMPLATE_FILE] ? fs.readFileSync(path.join(dir, CHAT_TEMPLATE_FILE), 'utf8') : undefined;
  return { config, R, head, factors, ...(chatTemplate !== undefined ? { chatTemplate } : {}) };
}

/** factors.safetensors, validated against the module list and the checksum. */
export function readShippedFactors(file: string, config: LoraxsAdapterConfig): Map<string, Factors> {
  const h = readSafetensorsHeader(file);
  const factors = new Map<string, Factors>();
  for (const m of config.modules) {
    const get = (suffix: string, shape: number[]): Float32Array => {
      const name = `${m.name}.${suffix}`;
      const entry = h.tensors.get(name);
      if (!entry) throw new LoraxsError(`tensor '${name}' is missing`, { file, detail: name });
      if (entry.shape.length !== shape.length || entry.shape.some((d, i) => d !== shape[i])) {
        throw new LoraxsError(`tensor '${name}' has shape [${entry.shape.join(', ')}], expected [${shape.join(', ')}]`, { file, detail: name });
      }
      return readTensorFloat32(h, name);
    };
    const sigmaEntry = h.tensors.get(`${m.name}.sigma`);
    factors.set(m.name, {
      rank: m.rank,
      outFeatures: m.outFeatures,
      inFeatures: m.inFeatures,
      A: get('A', [m.rank, m.inFeatures]),
      B: get('B', [m.outFeatures, m.rank]),
      sigma: sigmaEntry ? readTensorFloat32(h, `${m.name}.sigma`) : new Float32Array(0),
    });
  }
  const sum = factorsChecksum(config.modules.map((m) => m.name), factors);
  if (sum !== config.factorsSha256) {
    throw new LoraxsError(`the shipped factors have checksum ${sum.slice(0, 12)}…, but ${CONFIG_FILE} says ${config.factorsSha256.slice(0, 12)}…`, { file });
  }
  return factors;
}

/** The label names a saved adapter was trained with (id2label in index order), or null. */
export function labelNamesOf(id2label: Record<string, string> | null): string[] | null {
  if (!id2label) return null;
  return Object.keys(id2label).map(Number).sort((a, b) => a - b).map((i) => id2label[String(i)]);
}
