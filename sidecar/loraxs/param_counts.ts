/**
 * `loraxs params`: what a config costs, from config.json (and safetensors headers when present) alone;
 * never loads weights.
 *
 * For the adapted modules (module names matched by `targets` as PEFT's `target_modules`: the name equals
 * a key or ends in '.' + key), with r the module's rank and W (d_out × d_in):
 *   loraxs = Σ r²                  (the trainable r × r matrices R)
 *   lora   = Σ r (d_in + d_out)    (LoRA's A and B at the same rank)
 *   vera   = Σ (d_out + r)         (VeRA's scaling vectors d and b; the paper's appendix B, eq. 2)
 *   adapterBytes = 4 · Σ r²        (float32 R, as adapter.safetensors stores it, header excluded)
 *
 * baseParams, the unique parameters of the base model (tied weights once):
 *   - with safetensors in the folder: every floating tensor of the checkpoint (buffers such as
 *     `position_ids` and `inv_freq` excluded), a tied output matrix stored as a copy counted once
 *     (io/model_folder.ts countParameters). A pretraining checkpoint also holds its pretraining head (e.g.
 *     RoBERTa's `lm_head.dense`/`layer_norm`/`bias`), which is counted because it is in the file.
 *   - from config.json alone: the model as transformers builds it by default. Encoders: BertModel /
 *     RobertaModel with the pooler (add_pooling_layer=True): embeddings (word, position, token type,
 *     LayerNorm) + layers + pooler; roberta-large gives 355,359,744, the number quoted for it (without the
 *     pooler, as RobertaForSequenceClassification builds it, it would be 354,310,144). Decoders:
 *     XForCausalLM: embeddings + layers + final norm + lm_head when untied (tied: counted once).
 *
 * headParams, the task head `train` trains beside R (models/heads.ts), L classes (the training data's
 * label count when its file is readable, else config.json's num_labels, at least 2; regression 1):
 *   BERT h·L + L (+ a new pooler h² + h when the checkpoint has none), RoBERTa h² + h + h·L + L,
 *   use_lite h·L + L, decoders h·L; pair mode `bi`: classification 4h·L + L, regression 0 (cosine);
 *   causal-lm 0. trainable = loraxs + headParams, the count `train` reports.
 */

import * as fs from 'node:fs';
import * as path from 'node:path';
import { LoraxsError } from '../errors';
import type { SourcePlace } from '../errors';
import type { AdapterConfig, DataConfig, RunConfig, Task, TrainingConfig } from '../config/types';
import { pairModeOrNull, type PairMode } from '../config/pair_mode';
import { readTable } from '../io/data_table';
import type { LinearModule, ModelConfig } from '../models/types';
import { defaultTargetsFor, TRAINING_DEFAULTS } from '../config/defaults';
import { closestName } from '../config/suggest';
import { formatKeyPath, keyRange } from '../config/yaml_positions';
import type { KeyPath } from '../config/yaml_positions';
import { readModelConfig } from '../io/model_config';
import { keyMatches, resolveTargets } from './targets';
import { OTHER_FAMILY_KEYS, moduleTypeKeys, targetKeysOf } from './target_keys';
import { countParameters, openCheckpoint } from '../io/model_folder';
import { baseParamsFromConfig, linearModulesOf } from '../models/linear_modules';
import type { ModuleTypeParams, ParamsReport, TrainingMemoryEstimate } from '../records';
import type { SafetensorsHeader } from '../io/safetensors';

/** What computeParams needs: a parsed RunConfig, or just the model folder and adapter settings. */
export interface ParamsInput {
  /** Model folder (config.json, optionally *.safetensors). */
  model: string;
  /**
   * Safetensors headers by absolute file path, for weight files not on disk (a hub model resolved
   * headers-only: hub/resolve_model.ts); they count as the folder's safetensors.
   */
  headers?: ReadonlyMap<string, SafetensorsHeader>;
  adapter: Pick<AdapterConfig, 'rank' | 'rankPattern' | 'targets'>;
  /** The config file, to place errors at its keys. */
  file?: string;
  /** The config's text when it differs from the file on disk (an editor buffer); used to place errors. */
  text?: string;
  task?: Task;
  training?: Pick<TrainingConfig, 'batchSize' | 'maxLength' | 'optimizer'>;
  /** The data section: pairs and pair mode, and the training file whose labels give the class count. */
  data?: Pick<DataConfig, 'text' | 'pairMode' | 'train' | 'label' | 'columns'> | null;
}

export interface ParamsOverrides {
  /** Replaces adapter.rank (rank_pattern entries still apply to the modules they match). */
  rank?: number;
  /** Replaces adapter.targets. */
  targets?: string[];
  /** Replace training.batch_size / max_length in the memory estimate. */
  batchSize?: number;
  maxLength?: number;
}




/** An adapted module with the key that claimed it and its rank. */
export interface AdaptedModule extends LinearModule {
  /** The longest target key that matches the name. */
  target: string;
  rank: number;
}

/** Where to report a problem with the config key at this path (['adapter', 'targets', 2], ['adapter', 'rank']). */
export type PlaceOf = (keyPath: KeyPath) => SourcePlace;

/** resolveTargets' `detail` (`adapter.rank_pattern.output.dense`) -> a key path. */
function keyPathOfDetail(detail: string | undefined): KeyPath {
  const pattern = 'adapter.rank_pattern.';
  if (detail?.startsWith(pattern)) return ['adapter', 'rank_pattern', detail.slice(pattern.length)];
  return detail ? detail.split('.') : ['adapter'];
}

/**
 * Adapted modules for targets and ranks, as the engine resolves them (loraxs/targets.ts: the longest
 * matching target key, the rank of the longest matching rank_pattern key, else `rank`). Errors, placed
 * at the key: a target that matches no module (with the closest key and the model's module keys), a
 * rank above min(d_out, d_in), a rank_pattern key that matches no adapted module.
 */
export function adaptedModules(
  modules: readonly LinearModule[],
  targets: readonly string[],
  rank: number,
  rankPattern: Readonly<Record<string, number>>,
  placeOf: PlaceOf,
): AdaptedModule[] {
  targets.forEach((key, i) => {
    if (modules.some((m) => keyMatches(m.name, key))) return;
    const keys = targetKeysOf(modules);
    const other = OTHER_FAMILY_KEYS[key];
    const near = other && keys.includes(other) ? other : closestName(key.split('.').pop() ?? key, keys);
    throw new LoraxsError(
      `target '${key}' matches no module of this model${near ? ` (did you mean '${near}'?)` : ''}; module keys: ${moduleTypeKeys(modules).join(', ')}`,
      placeOf(['adapter', 'targets', i]),
    );
  });
  try {
    return resolveTargets([...modules], [...targets], rank, { ...rankPattern }, { file: '' })
      .map((t) => ({ ...t.module, target: t.key, rank: t.rank }));
  } catch (e) {
    if (!(e instanceof LoraxsError)) throw e;
    throw new LoraxsError(e.message, placeOf(keyPathOfDetail(e.place?.detail)));
  }
}

// ---------------------------------------------------------------------------------------------------
// Counts and the memory estimate

/** The counts of a set of adapted modules, with the per-target-key breakdown. */
export function countAdapter(adapted: readonly AdaptedModule[], targets: readonly string[]): Pick<ParamsReport,
  'modules' | 'loraxs' | 'lora' | 'vera' | 'adapterBytes' | 'perModuleType'> {
  const perModuleType: Record<string, ModuleTypeParams> = {};
  for (const key of targets) {
    if (!(key in perModuleType)) perModuleType[key] = { count: 0, ranks: [], loraxs: 0, lora: 0, vera: 0, dims: [] };
  }
  let loraxs = 0;
  let lora = 0;
  let vera = 0;
  for (const m of adapted) {
    const r = m.rank;
    const t = perModuleType[m.target];
    const x = r * r;
    const l = r * (m.inFeatures + m.outFeatures);
    const v = m.outFeatures + r;
    loraxs += x;
    lora += l;
    vera += v;
    t.count += 1;
    t.loraxs += x;
    t.lora += l;
    t.vera += v;
    if (!t.ranks.includes(r)) t.ranks.push(r);
    if (!t.dims.some(([o, i]) => o === m.outFeatures && i === m.inFeatures)) t.dims.push([m.outFeatures, m.inFeatures]);
  }
  for (const t of Object.values(perModuleType)) t.ranks.sort((a, b) => a - b);
  return { modules: adapted.length, loraxs, lora, vera, adapterBytes: 4 * loraxs, perModuleType };
}

/**
 * Training memory, an estimate in bytes (float32 everywhere, 4 bytes a number):
 *   weights       4 · baseParams (F16/BF16 weights are converted to float32 on load)
 *   factors       4 · Σ r (d_in + d_out)   (the frozen U_r and Σ_r V_rᵀ of every adapted module)
 *   trainable     4 · k · (Σ r² + head)   k = 4 for AdamW (value, gradient, m, v), 2 for SGD; head: the
 *                 task head's parameters (RoBERTa: dense h×h + out_proj h×L; BERT: h×L; decoders' score
 *                 h×L; L = num_labels or 2, regression 1; causal-lm: none, lm_head stays frozen)
 *   activations   4 · B · [L · (T · perToken + perSequenceAttention) + extras], what the tape keeps for
 *                 the backward pass:
 *                 per layer and token, encoders 12·h + 2·i (q, k, v, context, attention output, residuals,
 *                 LayerNorm inputs and outputs, dropout masks, intermediate and its GELU), decoders
 *                 14·h + 4·i (norms, q/k/v before and after RoPE, context, o, residuals, gate, up, their
 *                 product and SiLU); per layer and sequence, attention scores and probabilities
 *                 (encoders also the dropout mask): 3·nH·T² (encoders) or 2·nH·T² (decoders); plus the
 *                 embeddings 2·T·h and, for causal LM, logits and their log-softmax 2·T·V; and 2·r·T per
 *                 adapted module for the thin products x V_r Σ_r and (x V_r Σ_r) Rᵀ.
 * B = batch_size, T = max_length (the padded length is at most that), h = hidden size, i = intermediate
 * size, nH = heads, V = vocabulary. Backend overheads and transient gradient buffers are not counted.
 */
export function estimateTrainingMemory(
  config: ModelConfig,
  baseParams: number,
  adapted: readonly AdaptedModule[],
  opts: { batchSize: number; maxLength: number; optimizer: 'adamw' | 'sgd'; task: Task; head?: number },
): TrainingMemoryEstimate {
  const { hiddenSize: h, intermediateSize: inter, numHeads, numLayers, vocabSize } = config;
  const { batchSize: b, maxLength: t } = opts;
  const loraxs = adapted.reduce((s, m) => s + m.rank * m.rank, 0);
  const factors = adapted.reduce((s, m) => s + m.rank * (m.inFeatures + m.outFeatures), 0);
  const labels = opts.task === 'regression' ? 1 : config.numLabels ?? 2;
  const head = opts.head ?? headParamCount(config, opts.task, labels, 'cross', true);
  const stateCopies = opts.optimizer === 'sgd' ? 2 : 4;
  const encoder = config.kind === 'encoder';
  const perToken = encoder ? 12 * h + 2 * inter : 14 * h + 4 * inter;
  const attention = (encoder ? 3 : 2) * numHeads * t * t;
  const perSequence = numLayers * (t * perToken + attention) + 2 * t * h
    + (opts.task === 'causal-lm' ? 2 * t * vocabSize : 0)
    + adapted.reduce((s, m) => s + 2 * m.rank * t, 0);
  const weightsBytes = 4 * baseParams;
  const factorBytes = 4 * factors;
  const trainableStateBytes = 4 * stateCopies * (loraxs + head);
  const activationBytes = 4 * b * perSequence;
  return {
    batchSize: b,
    maxLength: t,
    weightsBytes,
    factorBytes,
    trainableStateBytes,
    activationBytes,
    totalBytes: weightsBytes + factorBytes + trainableStateBytes + activationBytes,
  };
}

/** The task head's trainable parameters, as models/heads.ts creates them (see the file comment). */
export function headParamCount(config: ModelConfig, task: Task, numLabels: number, pairMode: PairMode, bertPooler: boolean): number {
  const h = config.hiddenSize;
  const L = task === 'regression' ? 1 : numLabels;
  if (task === 'causal-lm') return 0;
  if (pairMode === 'bi') return task === 'regression' ? h + 1 : 4 * h * L + L;
  if (config.modelType === 'roberta') return h * h + h + h * L + L;
  if (config.modelType === 'bert') return h * L + L + (bertPooler ? 0 : h * h + h);
  if (config.modelType === 'use_lite') return h * L + L;
  return h * L;
}

/** "regression, 1 output", "classification, 2 classes, pair mode bi", "causal-lm: lm_head frozen". */
export function headDescription(report: Pick<ParamsReport, 'task' | 'numLabels' | 'pairMode'>): string {
  if (report.task === 'causal-lm') return 'causal-lm: lm_head stays frozen';
  const what = report.task === 'regression' ? 'regression, 1 output' : `classification, ${report.numLabels ?? 2} classes`;
  const mode = report.pairMode === 'bi' && report.task === 'regression' ? ', pair mode bi: weighted cosine'
    : report.pairMode ? `, pair mode ${report.pairMode}` : '';
  return what + mode;
}

const labelCounts = new Map<string, { stamp: string; count: number | null }>();
/** Distinct labels of the training file (as `train` counts them), or null when it cannot be read. Cached by size and mtime. */
function trainingLabelCount(data: ParamsInput['data']): number | null {
  if (!data?.train || !data.label) return null;
  try {
    const st = fs.statSync(data.train);
    const stamp = `${st.size}:${st.mtimeMs}:${data.label}:${(data.columns ?? []).join(',')}`;
    const hit = labelCounts.get(data.train);
    if (hit?.stamp === stamp) return hit.count;
    const table = readTable(data.train, { columns: data.columns });
    const label = data.label;
    const values = new Set(table.rows.map((r) => r[label]).filter((v) => v !== undefined && v !== null && String(v).trim() !== '').map((v) => String(v).trim()));
    const count = values.size > 0 ? values.size : null;
    labelCounts.set(data.train, { stamp, count });
    return count;
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------------------------------------------
// The report

function hasSafetensors(dir: string): boolean {
  return fs.existsSync(path.join(dir, 'model.safetensors')) || fs.existsSync(path.join(dir, 'model.safetensors.index.json'));
}

/** Places errors at keys of the config (its text, or the file's), else names the key path. */
function configPlace(file: string | undefined, text: string | undefined, fallback: string, keyPath: KeyPath, detail: string): SourcePlace {
  if (!file) return { file: fallback, detail };
  try {
    const range = keyRange(text ?? fs.readFileSync(file, 'utf8'), keyPath);
    if (range) return { file, line: range.start.line + 1, column: range.start.character + 1, detail };
  } catch {
    // The config is not on disk (an unsaved editor buffer): name the key only.
  }
  return { file, detail };
}

/**
 * Parameter counts, adapter size and a training-memory estimate for a config, from config.json (and the
 * safetensors headers when the folder has them); never loads weights. Throws a LoraxsError for a model
 * folder without config.json, a target that matches no module, or a rank above a module's smaller
 * dimension, placed at the config key when the config file is known.
 */
export function computeParams(input: ParamsInput | RunConfig, overrides: ParamsOverrides = {}): ParamsReport {
  const headers = 'headers' in input ? input.headers : undefined;
  const fromCheckpoint = (headers !== undefined && headers.size > 0) || hasSafetensors(input.model);
  const checkpoint = fromCheckpoint ? openCheckpoint(input.model, headers) : null;
  const config = checkpoint ? checkpoint.config : readModelConfig(input.model);
  const bertPooler = checkpoint ? checkpoint.tensors.has('bert.pooler.dense.weight') : true;
  const modules = linearModulesOf(config, { bertPooler });
  const baseParams = checkpoint ? countParameters(checkpoint) : baseParamsFromConfig(config);

  const targetsOverridden = overrides.targets !== undefined && overrides.targets.length > 0;
  const configTargets = input.adapter.targets.length > 0 ? input.adapter.targets : defaultTargetsFor(config.modelType, config.kind);
  const targets = targetsOverridden ? overrides.targets! : configTargets;
  const rank = overrides.rank ?? input.adapter.rank;
  const rankPattern = input.adapter.rankPattern ?? {};
  const fallback = path.join(input.model, 'config.json');
  const placeOf: PlaceOf = (keyPath) => {
    const cli = keyPath[1] === 'targets' && targetsOverridden ? '--targets'
      : keyPath[1] === 'rank' && overrides.rank !== undefined ? '--rank' : null;
    if (cli) return { file: input.file ?? fallback, detail: cli };
    return configPlace(input.file, 'text' in input ? input.text : undefined, fallback, keyPath, formatKeyPath(keyPath));
  };
  const adapted = adaptedModules(modules, targets, rank, rankPattern, placeOf);
  const counts = countAdapter(adapted, targets);
  const task: Task = input.task ?? (config.kind === 'decoder' ? 'causal-lm' : 'classification');
  const data = 'data' in input ? input.data ?? null : null;
  const pairMode = pairModeOrNull({ task, model: input.model, data }, config.modelType);
  const numLabels = task === 'classification' ? Math.max(2, trainingLabelCount(data) ?? config.numLabels ?? 2) : 1;
  const headParams = headParamCount(config, task, numLabels, pairMode ?? 'cross', bertPooler);
  const memory = estimateTrainingMemory(config, baseParams, adapted, {
    head: headParams,
    batchSize: overrides.batchSize ?? input.training?.batchSize ?? TRAINING_DEFAULTS.batchSize,
    maxLength: overrides.maxLength ?? input.training?.maxLength ?? TRAINING_DEFAULTS.maxLength,
    optimizer: input.training?.optimizer ?? TRAINING_DEFAULTS.optimizer,
    task,
  });
  return {
    modules: counts.modules,
    loraxs: counts.loraxs,
    lora: counts.lora,
    vera: counts.vera,
    baseParams,
    adapterBytes: counts.adapterBytes,
    baseParamsFrom: checkpoint ? 'safetensors' : 'config.json',
    modelType: config.modelType,
    targets: [...targets],
    perModuleType: counts.perModuleType,
    trainingMemoryBytes: memory.totalBytes,
    trainingMemory: memory,
    task,
    headParams,
    trainable: counts.loraxs + headParams,
    numLabels: task === 'causal-lm' ? null : numLabels,
    pairMode,
  };
}
