/**
 * The run plan of `loraxs launch`: everything the PyTorch trainer (trainer/train.py) needs to train exactly
 * what `loraxs train` would, prepared by the engine, so that there is one tokenizer, one data reader and
 * one random number generator (the engine's):
 *
 *   <output>/plan/plan.json                  the settings (task, labels, targets and ranks, alpha, optimizer,
 *                                             schedule as warmup/total updates, clipping, accumulation, eval
 *                                             cadence, the metric that picks the best adapter) and the batch list
 *   <output>/plan/batches/train-e<E>.safetensors   epoch E's batches in the engine's order (seeded by
 *                                             training.seed and E): `<i>.input_ids`, `<i>.attention_mask`,
 *                                             `<i>.token_type_ids` (I32, B × T, right-padded), `<i>.labels`
 *                                             (classification, I32 B) or `<i>.lm_labels` (causal LM, I32 B × T,
 *                                             already shifted, -100 where the loss does not count)
 *   <output>/plan/batches/validation.safetensors   the validation batches, as `evaluate` cuts them
 *   <output>/plan/init_adapter/               an adapter folder in the engine's format with factors.safetensors:
 *                                             the frozen factors A (r × in), B (out × r), the initial R and the
 *                                             initial head (what `openModelSession` builds from the seed)
 *
 * The plan never depends on the number of processes: the trainer splits each planned batch by rank, so
 * a resume may use another process count. A model the engine cannot load gets no init_adapter
 * (`init_adapter: null` in plan.json): the trainer then computes the factors with torch.svd_lowrank.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { RunConfig } from '../config/types';
import { LoraxsError } from '../errors';
import { Rng } from '../rng';
import { encodeSafetensors, type TensorToWrite } from '../io/safetensors';
import { writeFileAtomic } from '../io/atomic_write';
import { loadTokenizer, type TextTokenizer } from '../io/tokenizer';
import { readModelConfig } from '../io/model_config';
import type { Example } from '../io/examples';
import { readExamples, runChatTemplate } from '../session/run_data';
import { openModelSession } from '../session/model_session';
import { pairModeOf, targetScalingOf } from '../session/pair_mode';
import { saveAdapter } from '../loraxs/adapter_files';
import { batchIndices, epochOrder, makeBatch, type Batch } from '../train/batching';
import { seedFor } from '../train/seeds';
import { warmupStepsFor } from '../train/schedule';
import { bestMetricOf, higherIsBetter } from '../train/evaluation';
import { defaultDecays } from '../train/optimizers';
import { ENGINE_VERSION } from '../loraxs/adapter_set';
import { engineCannotHold, folderFingerprint, rawModelType } from './model_support';
import type { EngineEvents } from '../records';

export const PLAN_FORMAT = 'loraxs-run-plan';
export const PLAN_VERSION = 1;
/** Row ranges per batch in the trainer's gradient reduction (see RunPlan.training.reduction_shards). */
export const REDUCTION_SHARDS = 8;

/** One planned batch's sizes (its tensors are in the epoch's safetensors file under `<index>.`). */
export interface PlannedBatch {
  examples: number;
  seq_len: number;
  num_tokens: number;
  /** Causal LM: targets that count in this batch. */
  num_targets: number | null;
}

export interface PlanBatchFile {
  file: string;
  batches: PlannedBatch[];
}

export interface RunPlan {
  format: typeof PLAN_FORMAT;
  version: number;
  config_file: string;
  model: string;
  model_type: string;
  task: 'classification' | 'causal-lm';
  num_labels: number | null;
  label_names: string[] | null;
  output: string;
  adapter: {
    alpha: number;
    rank: number;
    modules: Array<{ name: string; rank: number; in_features: number; out_features: number }>;
  };
  /** The head's trainable tensors (canonical = transformers names) and whether each gets weight decay. */
  head: Array<{ name: string; decays: boolean }>;
  training: {
    epochs: number;
    batch_size: number;
    grad_accum_steps: number;
    optimizer: 'adamw' | 'sgd';
    betas: [number, number];
    eps: number;
    lr: number;
    head_lr: number;
    weight_decay: number;
    schedule: 'linear' | 'cosine' | 'constant';
    warmup_steps: number;
    total_steps: number;
    updates_per_epoch: number;
    max_grad_norm: number;
    dropout: number | null;
    seed: number;
    eval_every: 'epoch' | 'end' | number;
    eval_at_start: boolean;
    /**
     * Fixed row ranges each batch is cut into for the gradient reduction (independent of the process count,
     * so 1, 2, 4 or 8 processes, and a resume on another count, add the same numbers in the same order).
     */
    reduction_shards: number;
  };
  metric: { name: string; higher_is_better: boolean };
  /** An adapter folder (relative to the plan folder) with the initial R, head and the factors; null: none. */
  init_adapter: string | null;
  /**
   * A model the engine cannot hold (init_adapter null): loraxs_config.json's fields but `modules` and
   * `factors_sha256`, which the trainer fills once it has matched the targets and computed the factors.
   */
  adapter_config: Record<string, unknown> | null;
  train_batches: PlanBatchFile[];
  validation_batches: PlanBatchFile | null;
}

export interface PlanResult {
  planDir: string;
  plan: RunPlan;
}

/** The tensors of one batch, named `<index>.<field>`. */
function batchTensors(i: number, b: Batch): TensorToWrite[] {
  const rows = b.rows ?? b.batchSize;
  const shape = [rows, b.seqLen];
  const out: TensorToWrite[] = [
    { name: `${i}.input_ids`, dtype: 'I32', shape, data: b.inputIds },
    { name: `${i}.attention_mask`, dtype: 'I32', shape, data: b.attentionMask },
    { name: `${i}.token_type_ids`, dtype: 'I32', shape, data: b.typeIds },
  ];
  if (b.labels) out.push({ name: `${i}.labels`, dtype: 'I32', shape: [b.batchSize], data: b.labels });
  if (b.lmLabels) out.push({ name: `${i}.lm_labels`, dtype: 'I32', shape, data: b.lmLabels });
  return out;
}

function writeBatchFile(planDir: string, rel: string, examples: Example[], batches: number[][], padId: number): PlanBatchFile {
  const tensors: TensorToWrite[] = [];
  const planned: PlannedBatch[] = [];
  batches.forEach((ix, i) => {
    const b = makeBatch(examples, ix, padId);
    tensors.push(...batchTensors(i, b));
    planned.push({ examples: b.batchSize, seq_len: b.seqLen, num_tokens: b.numTokens, num_targets: b.numTargets ?? null });
  });
  writeFileAtomic(path.join(planDir, rel), encodeSafetensors(tensors, { format: 'loraxs-batches', batches: String(batches.length) }));
  return { file: rel, batches: planned };
}

/**
 * Tokenises the run's data, cuts every epoch's batches in the engine's order, builds the initial adapter
 * and head, and writes them with plan.json into `planDir` (replaced when it exists).
 */
export async function writeRunPlan(config: RunConfig, planDir: string, events: EngineEvents = {}): Promise<PlanResult> {
  const tc = config.training;
  if (config.task === 'regression') {
    throw new LoraxsError('loraxs launch trains classification and causal-lm tasks; regression is not planned yet (use loraxs train)', { file: config.file, detail: 'task' });
  }
  if (pairModeOf(config) === 'bi') {
    throw new LoraxsError('loraxs launch does not train data.pair_mode: bi yet (use loraxs train)', { file: config.file, detail: 'data.pair_mode' });
  }
  if (tc.evalGenerate) {
    throw new LoraxsError('loraxs launch does not evaluate by generation (training.eval_generate) yet (use loraxs train)', { file: config.file, detail: 'training.eval_generate' });
  }
  if (config.headOnly) {
    throw new LoraxsError('loraxs launch trains LoRA-XS adapters; adapter: none (head only) is not planned (use loraxs train)', { file: config.file, detail: 'adapter' });
  }
  const data = config.data;
  if (!data) throw new LoraxsError('the config has no `data` section; training needs data.train', { file: config.file });
  // A model the engine cannot hold: only its tokenizer is needed here; the trainer finds the modules and factors.
  const foreign = engineCannotHold(config.model);
  if (foreign) checkForeignModel(config);
  const tok = loadTokenizer(config.model, foreign ? undefined : readModelConfig(config.model));
  const train = readExamples(config, data.train, tok);
  if (train.examples.length === 0) throw new LoraxsError('the training data has no rows', { file: data.train });
  const validation = data.validation ? readExamples(config, data.validation, tok, { labelNames: train.labelNames }).examples : null;
  const numLabels = config.task === 'classification' ? Math.max(2, train.labelNames?.length ?? 2) : 1;

  fs.rmSync(planDir, { recursive: true, force: true });
  fs.mkdirSync(path.join(planDir, 'batches'), { recursive: true });

  // The initial adapter and head, exactly as `loraxs train` builds them (none for a model the engine cannot hold).
  const { modules, head } = foreign ? { modules: [], head: [] } : await writeInitialAdapter(config, planDir, tok, train, numLabels, events);

  const n = train.examples.length;
  const trainFiles: PlanBatchFile[] = [];
  let perEpochBatches = 0;
  for (let epoch = 1; epoch <= tc.epochs; epoch++) {
    const order = epochOrder(n, tc.shuffle, new Rng(seedFor(tc.seed, 'data-order', epoch)));
    const batches = batchIndices(order, tc.batchSize);
    perEpochBatches = batches.length;
    trainFiles.push(writeBatchFile(planDir, `batches/train-e${epoch}.safetensors`, train.examples, batches, tok.padId));
    events.progress?.('planning batches', epoch, tc.epochs);
  }
  const validationFile = validation && validation.length > 0
    ? writeBatchFile(planDir, 'batches/validation.safetensors', validation, batchIndices(validation.map((_, i) => i), tc.batchSize), tok.padId)
    : null;
  const updatesPerEpoch = Math.ceil(perEpochBatches / tc.gradAccumSteps);
  const totalSteps = updatesPerEpoch * tc.epochs;
  const metric = bestMetricOf(config.task);
  const plan: RunPlan = {
    format: PLAN_FORMAT,
    version: PLAN_VERSION,
    config_file: config.file,
    model: config.model,
    model_type: foreign ? rawModelType(config.model)! : readModelConfig(config.model).modelType,
    task: config.task,
    num_labels: config.task === 'causal-lm' ? null : numLabels,
    label_names: train.labelNames,
    output: config.output,
    adapter: { alpha: config.adapter.alpha, rank: config.adapter.rank, modules },
    head,
    training: {
      epochs: tc.epochs,
      batch_size: tc.batchSize,
      grad_accum_steps: tc.gradAccumSteps,
      optimizer: tc.optimizer,
      betas: [0.9, 0.999],
      eps: 1e-8,
      lr: tc.lr,
      head_lr: tc.headLr,
      weight_decay: tc.weightDecay,
      schedule: tc.schedule,
      warmup_steps: warmupStepsFor(tc.warmupRatio, totalSteps),
      total_steps: totalSteps,
      updates_per_epoch: updatesPerEpoch,
      max_grad_norm: tc.maxGradNorm,
      dropout: tc.dropout,
      seed: tc.seed,
      eval_every: tc.evalEvery,
      eval_at_start: tc.evalAtStart !== false,
      reduction_shards: REDUCTION_SHARDS,
    },
    metric: { name: metric, higher_is_better: higherIsBetter(metric) },
    init_adapter: foreign ? null : 'init_adapter',
    adapter_config: foreign ? foreignAdapterConfig(config) : null,
    train_batches: trainFiles,
    validation_batches: validationFile,
  };
  writeFileAtomic(path.join(planDir, 'plan.json'), JSON.stringify(plan, null, 1) + '\n');
  return { planDir, plan };
}

/** init_adapter/: R, head and factors as openModelSession builds them (factors from the shared cache or SVD). */
async function writeInitialAdapter(config: RunConfig, planDir: string, tok: TextTokenizer, train: ReturnType<typeof readExamples>, numLabels: number,
  events: EngineEvents): Promise<{ modules: RunPlan['adapter']['modules']; head: RunPlan['head'] }> {
  const tc = config.training;
  const session = await openModelSession({
    modelDir: config.model, task: config.task, numLabels, adapter: config.adapter, seed: tc.seed, dropout: tc.dropout, events, tokenizer: tok, configFile: config.file,
    pairMode: pairModeOf(config), targetScaling: targetScalingOf(config.task, pairModeOf(config), train.examples),
  });
  try {
    const snap = session.adapters!.snapshot({
      head: session.head, task: config.task, labelNames: train.labelNames, numLabels, eval: null, modelDir: config.model, chatTemplate: runChatTemplate(config)?.text,
    }, true);
    saveAdapter(path.join(planDir, 'init_adapter'), snap);
    return {
      modules: snap.config.modules.map((m) => ({ name: m.name, rank: m.rank, in_features: m.inFeatures, out_features: m.outFeatures })),
      head: [...session.head.trainable.keys()].map((name) => ({ name, decays: defaultDecays(name) })),
    };
  } finally {
    session.dispose();
  }
}

/** What the trainer supports for a model the engine cannot hold (a one-line error otherwise). */
function checkForeignModel(config: RunConfig): void {
  const type = rawModelType(config.model);
  const at = (detail: string) => ({ file: config.file, detail });
  if (config.task !== 'causal-lm') {
    throw new LoraxsError(`model_type '${type}' is not one the engine holds; loraxs launch trains it as task: causal-lm only (its ${config.task} head would have no engine initialisation)`, at('task'));
  }
  if (config.adapter.init !== 'svd' && config.adapter.init !== 'svd-no-sigma') {
    throw new LoraxsError(`adapter.init '${config.adapter.init}' is not available for model_type '${type}' (the trainer computes svd or svd-no-sigma factors)`, at('adapter.init'));
  }
  if (config.adapter.targets.length === 0) {
    throw new LoraxsError(`adapter.targets: model_type '${type}' has no default targets; name the linear layers to adapt (e.g. c_attn for GPT-2)`, at('adapter.targets'));
  }
}

/** loraxs_config.json of the trained adapter (sidecar/loraxs/adapter_files.ts) but its modules and factor checksum. */
function foreignAdapterConfig(config: RunConfig): Record<string, unknown> {
  const a = config.adapter;
  return {
    format: 'loraxs-adapter',
    format_version: 1,
    engine_version: ENGINE_VERSION,
    base_model: {
      path: config.model, fingerprint: folderFingerprint(config.model),
      ...(config.hubModel?.commit !== undefined ? { hub_id: config.hubModel.id, commit: config.hubModel.commit } : {}),
    },
    task: config.task,
    num_labels: null,
    id2label: null,
    rank: a.rank,
    rank_pattern: a.rankPattern,
    alpha: a.alpha,
    init: a.init,
    init_std: a.initStd,
    targets: a.targets,
    svd: { method: a.svd.method, oversamples: a.svd.oversamples, power_iters: a.svd.powerIters },
    seed: config.training.seed,
    modules: [],
    factors_sha256: '',
  };
}
