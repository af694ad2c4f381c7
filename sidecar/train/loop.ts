/**
 * The training loop: one flat loop over epochs and batches, the way nanoGPT reads.
 *
 *   for each epoch: order the examples (a permutation seeded by seed and epoch), cut batches
 *     for each group of grad_accum_steps batches (each cut into micro-batches that fit the memory budget,
 *     train/micro_batches.ts): forward, loss, gradients of R and the head (accumulated)
 *       clip, learning rate from the schedule, one AdamW/SGD update, one line in metrics.jsonl
 *       evaluate when due (every epoch or every N updates); the best adapter goes to <output>/
 *       a checkpoint (R, head, optimizer moments, position) every CHECKPOINT_EVERY updates, after each
 *       evaluation, at the end of an epoch and when cancelled; it reaches the disk once the next
 *       update's loss is finite, so a diverged run keeps its last good checkpoint
 *
 * Stopping: before every micro-batch the loop yields to the event loop (`setImmediate`), so signal
 * handlers (Ctrl-C, SIGTERM in the CLI) and messages run while it trains, then reads `signal.aborted`
 * (the job worker's signal reads a shared-memory flag, which needs no event loop). A stop discards the
 * update in progress (its partly accumulated gradients are disposed), saves a checkpoint of the last
 * complete update and returns `cancelled: true`; at most the micro-batch being computed when the stop
 * was asked finishes first.
 *
 * Resuming (in any process, after a stop, a kill or a crash): the last whole checkpoint is recovered (see
 * training_checkpoint.ts), metrics.jsonl is trimmed back to it, and the run continues from there.
 *
 * Randomness is a function of (seed, epoch) for the data order and (seed, update) for dropout, so a run
 * resumed from a checkpoint draws exactly what an uninterrupted run would, and its metrics.jsonl (after
 * the resume trims it back to the checkpoint) ends the same.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '../backend/tf';
import { LoraxsError } from '../errors';
import { Rng } from '../rng';
import type { RunConfig } from '../config/types';
import type { Example } from '../io/examples';
import { readExamples, runChatTemplate } from '../session/run_data';
import { evaluateWithGeneration } from './eval_generate';
import { stallIfFaultDue } from './stall_fault';
import { writeFileAtomic } from '../io/atomic_write';
import { loadTokenizer } from '../io/tokenizer';
import { readModelConfig } from '../io/model_config';
import { openModelSession, type ModelSession } from '../session/model_session';
import { batchIndices, makeBatch, batchesPerEpoch, epochOrder } from './batching';
import { createOptimizer } from './optimizers';
import { makeSchedule, lrAt } from './schedule';
import { clipGradNorm } from './grad_clip';
import { accumulateGrads } from './grad_accumulate';
import { batchInputs, batchLoss, isBetter, higherIsBetter, bestMetricOf } from './evaluation';
import {
  snapshotCheckpoint, writeCheckpoint, loadTrainingCheckpoint, loadTrainingCheckpointPosition, recoverCheckpoint, type PendingCheckpoint, type TrainingPosition,
} from './training_checkpoint';
import { trimMetricsLog, appendMetricsLine } from './metrics_log';
import { seedFor } from './seeds';
import { planMicroBatches, splitIndices, wasmTransientBytes, type MicroBatchPlan } from './micro_batches';
import { float32Bytes, largestFloat32Bytes } from '../io/model_folder';
import { formatGb } from '../backend/memory_budget';
import { pairModeOf, targetScalingOf } from '../session/pair_mode';
import type { BestRecord, EngineEvents, EvalRecord, StepRecord, TrainResult } from '../records';

/** Updates between periodic checkpoints (also saved after evaluations, at epoch ends and on cancel). */
const CHECKPOINT_EVERY = 50;

/** Lets pending callbacks (signal handlers, timers, I/O) run; a wasm computation never yields by itself. */
const yieldToEventLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

export interface TrainOptions {
  resume?: boolean;
  events?: EngineEvents;
  /**
   * Aborting stops before the next micro-batch: the update in progress is dropped and a checkpoint of the
   * last complete one saved. Only `aborted` is read (the job worker passes a getter over shared memory).
   */
  signal?: AbortSignal;
  /**
   * Train only the task head with the encoder frozen and no adapter (a baseline to compare LoRA-XS
   * against). Nothing is saved but metrics.jsonl and checkpoints.
   */
  headOnly?: boolean;
}


interface DataSets {
  train: Example[];
  validation: Example[] | null;
  labelNames: string[] | null;
}

function loadData(config: RunConfig, tok: ModelSession['tokenizer']): DataSets {
  const data = config.data;
  if (!data) throw new LoraxsError('the config has no `data` section; training needs data.train', { file: config.file });
  const train = readExamples(config, data.train, tok);
  const validation = data.validation ? readExamples(config, data.validation, tok, { labelNames: train.labelNames }).examples : null;
  return { train: train.examples, validation, labelNames: train.labelNames };
}

/** One log line: the budget, the estimate per token and layer, and the micro-batches it gives. */
function logMemoryPlan(events: EngineEvents, session: ModelSession, plan: MicroBatchPlan, batchSize: number, checkpointing: boolean): void {
  const kb = (b: number) => `${(b / 1024).toFixed(1)} KB`;
  const split = plan.rows < batchSize ? `micro-batches of ${plan.rows} rows (batch_size ${batchSize})` : `whole batches of ${batchSize}`;
  events.log?.(`memory: budget ${formatGb(session.memory.bytes)} (${session.memory.source}); activations about ${kb(plan.estimate.perTokenPerLayer)} per token per layer ` +
    `(${checkpointing ? 'gradient checkpointing on' : 'no gradient checkpointing'}), ${formatGb(plan.activationBudget)} left for them: ${split}`);
  if (plan.overBudget) {
    events.log?.('warning: one row of max_length tokens is estimated to exceed the memory budget; lower training.max_length, ' +
      `${checkpointing ? '' : 'set compute.gradient_checkpointing: true, '}or raise compute.memory_budget_gb`);
  }
}

export async function runTraining(config: RunConfig, opts: TrainOptions = {}): Promise<TrainResult> {
  const t0 = performance.now();
  const events = opts.events ?? {};
  const tc = config.training;
  const output = config.output;
  const checkpointDir = path.join(output, 'checkpoint');
  const metricsFile = path.join(output, 'metrics.jsonl');

  // Tokenizer first (cheap), so data errors surface before the model loads.
  const tok = loadTokenizer(config.model, readModelConfig(config.model));
  const data = loadData(config, tok);
  if (data.train.length === 0) throw new LoraxsError('the training data has no rows', { file: config.data!.train });
  const numLabels = config.task === 'classification' ? Math.max(2, data.labelNames?.length ?? 2) : 1;

  const recovered = opts.resume ? recoverCheckpoint(checkpointDir) : null;
  if (recovered) events.log?.(recovered);
  const resumeFrom = opts.resume ? loadTrainingCheckpoint(checkpointDir, config) : null;
  if (opts.resume && !resumeFrom) throw new LoraxsError(`nothing to resume: no checkpoint in ${checkpointDir} (the run stopped before saving one); train without --resume to start afresh`, { file: config.file });

  const session = await openModelSession({
    modelDir: config.model, task: config.task, numLabels, adapter: opts.headOnly ? null : config.adapter, seed: tc.seed, dropout: tc.dropout, events, tokenizer: tok, configFile: config.file,
    pairMode: pairModeOf(config), targetScaling: targetScalingOf(config.task, pairModeOf(config), data.train),
    gradientCheckpointing: config.compute?.gradientCheckpointing ?? false, memoryBudgetGb: config.compute?.memoryBudgetGb,
  });
  const trainable = session.trainable();
  if (trainable.size === 0) {
    session.dispose();
    throw new LoraxsError('nothing to train: no adapter and the head has no parameters (bi-mode regression compares the two embeddings directly); train with an adapter', { file: config.file, detail: 'adapter' });
  }
  const microPlan = planMicroBatches({
    budgetBytes: session.memory.bytes, weightBytes: float32Bytes(session.ckpt), config: session.ckpt.config, seqLen: tc.maxLength,
    batchSize: tc.batchSize, checkpointing: config.compute?.gradientCheckpointing ?? false, dropout: session.backbone.dropoutRates,
    causalLm: config.task === 'causal-lm', rowsPerExample: pairModeOf(config) === 'bi' ? 2 : 1,
    transientBytes: session.backendName === 'wasm' ? wasmTransientBytes(largestFloat32Bytes(session.ckpt)) : 0,
  });
  logMemoryPlan(events, session, microPlan, tc.batchSize, config.compute?.gradientCheckpointing ?? false);
  const adapterNames = new Set([...trainable.keys()].filter((n) => n.endsWith('.R')));
  const optimizer = createOptimizer(tc.optimizer, { weightDecay: tc.weightDecay });
  const perEpoch = Math.ceil(batchesPerEpoch(data.train.length, tc.batchSize) / tc.gradAccumSteps);
  const totalSteps = perEpoch * tc.epochs;
  const schedule = makeSchedule(tc.schedule, totalSteps, tc.warmupRatio);
  const lrOf = (mult: number) => (name: string) => (adapterNames.has(name) ? tc.lr : tc.headLr) * mult;
  const adapterParams = session.adapters?.paramCount() ?? 0;
  const headParams = [...session.head.trainable.values()].reduce((s, v) => s + v.size, 0);

  let pos: TrainingPosition = { step: 0, epoch: 1, batchInEpoch: 0, best: null, bestValue: null };
  fs.mkdirSync(output, { recursive: true });
  if (resumeFrom) {
    pos = resumeFrom.position;
    for (const [name, value] of resumeFrom.variables) {
      const v = trainable.get(name);
      if (!v) throw new LoraxsError(`the checkpoint holds '${name}', which this config does not train`, { file: checkpointDir });
      v.assign(value);
      value.dispose();
    }
    optimizer.load(resumeFrom.optimizer);
    // Back to the checkpoint; at update 0 nothing is kept, since the step-0 baseline is evaluated again.
    trimMetricsLog(metricsFile, pos.step === 0 ? -1 : pos.step);
    events.log?.(`resuming at update ${pos.step} (epoch ${pos.epoch}) from ${checkpointDir}`);
  } else {
    writeFileAtomic(metricsFile, '');
  }
  events.log?.(`training ${adapterParams.toLocaleString('en-US')} LoRA-XS parameters` +
    `${session.adapters ? ` in ${session.adapters.modules.size} modules` : ''} and ${headParams.toLocaleString('en-US')} head parameters; ` +
    `${data.train.length} examples, ${totalSteps} updates on ${session.backendName}`);

  const saveAdapterTo = (dir: string, record: EvalRecord | null): void =>
    session.adapters?.save(dir, { head: session.head, task: config.task, labelNames: data.labelNames, numLabels, eval: record, modelDir: config.model, chatTemplate: runChatTemplate(config)?.text });
  // A checkpoint is taken (copied off the backend) when due, but written to disk only once the next
  // update's loss comes out finite, so a checkpoint on disk never holds weights that diverged.
  let pending: PendingCheckpoint | null = null;
  /** Takes a checkpoint: `at` is the position of the next update. */
  const checkpoint = (at: TrainingPosition = pos): void => {
    pending = snapshotCheckpoint(config, at, trainable, optimizer.state());
  };
  const flushCheckpoint = (): void => {
    if (pending) writeCheckpoint(checkpointDir, pending);
    pending = null;
  };

  const metricName = bestMetricOf(config.task);
  const runEval = (record: { step: number; epoch: number }): void => {
    if (!data.validation) return;
    const metrics = evaluateWithGeneration(session, data.validation, config, tok.padId, events);
    const rec: EvalRecord = { step: record.step, epoch: record.epoch, eval: metrics };
    const value = metrics[metricName];
    const best = pos.bestValue === null || isBetter(metricName, value, pos.bestValue);
    appendMetricsLine(metricsFile, rec);
    if (best) {
      pos.best = rec;
      pos.bestValue = value;
      saveAdapterTo(output, rec);
      const line: BestRecord = { step: rec.step, epoch: rec.epoch, best: { metric: metricName, value, higher_is_better: higherIsBetter(metricName) } };
      appendMetricsLine(metricsFile, line);
    }
    events.eval?.(rec, best);
  };

  // Elapsed time and ETA on every update line: seconds per update in this process so far × updates left.
  const tTrain = performance.now();
  const firstStep = pos.step;
  const timing = (step: number): { elapsed_s: number; eta_s: number } => {
    const elapsed = (performance.now() - tTrain) / 1000;
    const perStep = elapsed / Math.max(step - firstStep, 1);
    return { elapsed_s: Math.round(elapsed * 10) / 10, eta_s: Math.round(perStep * Math.max(totalSteps - step, 0) * 10) / 10 };
  };
  let cancelled = false;
  try {
    await yieldToEventLoop(); // a stop asked while the model loaded is seen before the baseline evaluation
    if (pos.step === 0 && data.validation && tc.evalAtStart !== false && !opts.signal?.aborted) {
      // The starting point (base model, R ≈ 0, fresh head), logged as step 0 so curves start where training did.
      const rec: EvalRecord = { step: 0, epoch: 0, eval: evaluateWithGeneration(session, data.validation, config, tok.padId, events) };
      appendMetricsLine(metricsFile, { ...rec, baseline: true });
      events.eval?.(rec, false);
    }
    for (; pos.epoch <= tc.epochs; pos.epoch++, pos.batchInEpoch = 0) {
      const order = epochOrder(data.train.length, tc.shuffle, new Rng(seedFor(tc.seed, 'data-order', pos.epoch)));
      const batches = batchIndices(order, tc.batchSize);
      while (pos.batchInEpoch < batches.length) {
        const groupIndices = batches.slice(pos.batchInEpoch, pos.batchInEpoch + tc.gradAccumSteps);
        // Each batch as micro-batches that fit the memory budget (one when it fits whole); `share` weights a
        // micro-batch's mean loss by its part of the batch.
        const group = groupIndices.flatMap((ix) => splitIndices(ix, microPlan.rows)
          .map((part) => Object.assign(makeBatch(data.train, part, tok.padId), { share: part.length / ix.length })));
        const tStep = performance.now();
        const dropoutRng = new Rng(seedFor(tc.seed, 'dropout', pos.step + 1));
        const targetsInGroup = group.reduce((s, b) => s + (b.numTargets ?? 0), 0);
        let loss = 0;
        let grads = new Map<string, tf.Tensor>();
        for (const batch of group) {
          await yieldToEventLoop();
          if (opts.signal?.aborted) {
            cancelled = true;
            break;
          }
          if (batch === group[0]) stallIfFaultDue(pos.step + 1);
          const inputs = batchInputs(batch);
          const { value, grads: g } = tf.variableGrads(() => {
            const logits = session.logits(inputs, true, dropoutRng);
            // Causal LM: the loss is the sum over all targets of the accumulated batches / their count.
            // Otherwise each batch's mean, divided by the number of batches accumulated.
            return config.task === 'causal-lm'
              ? batchLoss(config.task, logits, batch, targetsInGroup)
              : tf.mul(batchLoss(config.task, logits, batch), batch.share / groupIndices.length) as tf.Scalar;
          }, [...trainable.values()]);
          for (const t of Object.values(inputs)) if (t) t.dispose();
          loss += (await value.data())[0]; // sync point: one scalar read per batch
          value.dispose();
          grads = accumulateGrads(grads, g, trainable);
        }
        if (cancelled) {
          // The update in progress is dropped: a resume redoes it from its first micro-batch.
          for (const g of grads.values()) g.dispose();
          break;
        }
        if (!Number.isFinite(loss)) {
          for (const g of grads.values()) g.dispose();
          const saved = loadTrainingCheckpointPosition(checkpointDir);
          throw new LoraxsError(
            `the training loss became ${loss} at update ${pos.step + 1} (epoch ${pos.epoch}); stopped. ` +
            (saved
              ? `The last good checkpoint (update ${saved.step}) is in ${checkpointDir}: lower training.lr or set training.max_grad_norm, then resume with --resume`
              : 'No checkpoint was saved before it: lower training.lr or set training.max_grad_norm and train again'),
            { file: config.file, detail: 'training.lr' });
        }
        flushCheckpoint(); // the weights it holds gave this finite loss
        const gradNorm = clipGradNorm(grads, tc.maxGradNorm);
        const mult = lrAt(pos.step, schedule);
        optimizer.step(grads, trainable, lrOf(mult));
        for (const g of grads.values()) g.dispose();
        pos.step++;
        pos.batchInEpoch += groupIndices.length;
        const tokens = group.reduce((s, b) => s + b.numTokens, 0);
        const record: StepRecord = {
          step: pos.step, epoch: pos.epoch, loss, lr: tc.lr * mult,
          tokens_per_s: tokens / ((performance.now() - tStep) / 1000), grad_norm: gradNorm, total_steps: totalSteps,
          ...timing(pos.step),
        };
        appendMetricsLine(metricsFile, record);
        events.step?.(record);
        const epochEnds = pos.batchInEpoch >= batches.length;
        const evalDue = tc.evalEvery === 'epoch' ? epochEnds : tc.evalEvery === 'end' ? pos.step === totalSteps : pos.step % tc.evalEvery === 0;
        if (evalDue) runEval(pos);
        if (epochEnds) {
          checkpoint({ ...pos, epoch: pos.epoch + 1, batchInEpoch: 0 });
        } else if (evalDue || pos.step % CHECKPOINT_EVERY === 0) {
          checkpoint();
        }
      }
      if (cancelled) break;
    }
    if (cancelled) {
      checkpoint();
      flushCheckpoint();
      events.log?.(`cancelled at update ${pos.step}; checkpoint saved in ${checkpointDir} (continue with --resume)`);
    } else {
      flushCheckpoint();
      saveAdapterTo(path.join(output, 'last'), null);
      if (!data.validation) saveAdapterTo(output, null);
    }
  } finally {
    optimizer.dispose();
    session.dispose();
  }
  const adapterBytes = fs.existsSync(path.join(output, 'adapter.safetensors')) ? fs.statSync(path.join(output, 'adapter.safetensors')).size : 0;
  return {
    output,
    adapterDir: output,
    steps: pos.step,
    totalSteps,
    cancelled,
    best: pos.best,
    trainableParams: adapterParams + headParams,
    adapterParams,
    adapterBytes,
    seconds: (performance.now() - t0) / 1000,
  };
}
