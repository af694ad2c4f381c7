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
import { loadTokenizer } from '../io/tokenizer';
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
  const tok = loadTokenizer(config.model, readModelConfig(config.model));
  const train = readExamples(config, data.train, tok);
  if (train.examples.length === 0) throw new LoraxsError('the training data has no rows', { file: data.train });
  const validation = data.validation ? readExamples(config, data.validation, tok, { labelNames: train.labelNames }).examples : null;
  const numLabels = config.task === 'classification' ? Math.max(2, train.labelNames?.length ?? 2) : 1;

  fs.rmSync(planDir, { recursive: true, force: true });
  fs.mkdirSync(path.join(planDir, 'batches'), { recursive: true });

  // The initial adapter and head, exactly as `loraxs train` builds them (factors from the shared cache or SVD).
  const session = await openModelSession({
    modelDir: config.model, task: config.task, numLabels, adapter: config.adapter, seed: tc.seed, dropout: tc.dropout, events, tokenizer: tok, configFile: config.file,
    pairMode: pairModeOf(config), targetScaling: targetScalingOf(config.task, pairModeOf(config), train.examples),
  });
  let modules: RunPlan['adapter']['modules'];
  let head: RunPlan['head'];
  try {
    const adapters = session.adapters!;
    const snap = adapters.snapshot({
      head: session.head, task: config.task, labelNames: train.labelNames, numLabels, eval: null, modelDir: config.model, chatTemplate: runChatTemplate(config)?.text,
    }, true);
    saveAdapter(path.join(planDir, 'init_adapter'), snap);
    modules = snap.config.modules.map((m) => ({ name: m.name, rank: m.rank, in_features: m.inFeatures, out_features: m.outFeatures }));
    head = [...session.head.trainable.keys()].map((name) => ({ name, decays: defaultDecays(name) }));
  } finally {
    session.dispose();
  }

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
    model_type: readModelConfig(config.model).modelType,
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
    init_adapter: 'init_adapter',
    train_batches: trainFiles,
    validation_batches: validationFile,
  };
  writeFileAtomic(path.join(planDir, 'plan.json'), JSON.stringify(plan, null, 1) + '\n');
  return { planDir, plan };
}
