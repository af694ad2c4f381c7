/**
 * The model an ablation studies: the config's model, merged with a saved adapter (and its head) when one
 * is given, its validation examples (capped), and the task metric measured with some weights replaced.
 *
 * Classification and regression need a trained head: an adapter's, or the checkpoint's own (a fine-tuned
 * checkpoint); a fresh random head would make every number noise. Causal LM uses the LM head and works on
 * a base model too.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '../backend/tf';
import { LoraxsError } from '../errors';
import type { RunConfig } from '../config/types';
import type { Example } from '../io/examples';
import type { Weights } from '../models/types';
import { plainContext } from '../models/plain_context';
import { taskLogits } from '../models/task_model';
import { openModelSession, type ModelSession } from '../session/model_session';
import { labelNamesOf } from '../loraxs/adapter_files';
import { readExamples } from '../session/run_data';
import { pairModeOf } from '../session/pair_mode';
import { readAdapterConfig } from '../loraxs/adapter_files';
import { readModelConfig } from '../io/model_config';
import { loadTokenizer } from '../io/tokenizer';
import { mergeWeights } from '../loraxs/merge';
import { bestMetricOf, evaluate, higherIsBetter } from '../train/evaluation';
import type { ForwardInputs } from '../models/types';
import type { EngineEvents } from '../records';

export interface StudyOptions {
  /** A saved adapter merged into the model (its head is used). */
  adapterDir?: string;
  /** Validation examples evaluated (the first N). */
  evalLimit: number;
  events?: EngineEvents;
}

export interface StudyModel {
  session: ModelSession;
  /** The weights under study: the checkpoint's, with the adapter merged when one is given. */
  weights: Weights;
  examples: Example[];
  metric: string;
  higherIsBetter: boolean;
  /** Content key of everything the metric depends on (model, adapter, examples, metric), for caches. */
  setupKey: string;
  /** The metric with `overrides` (`<module>.weight` -> tensor) replacing the study weights. */
  evaluate(overrides?: Map<string, tf.Tensor>): number;
  dispose(): void;
}

function fileHash(hash: ReturnType<typeof createHash>, file: string): void {
  hash.update(`\0${path.basename(file)}\0`);
  hash.update(fs.readFileSync(file));
}

/** Label names for a fine-tuned checkpoint: its id2label when it names every label in the data. */
function checkpointLabelNames(id2label: Record<string, string> | null, dataNames: string[] | null): string[] | null {
  const names = labelNamesOf(id2label);
  if (!names || !dataNames) return null;
  return dataNames.every((n) => names.includes(n)) ? names : null;
}

export async function openStudyModel(config: RunConfig, opts: StudyOptions): Promise<StudyModel> {
  const file = config.data?.validation;
  if (!file) throw new LoraxsError('ablations evaluate on data.validation; the config has none', { file: config.file, detail: 'data.validation' });
  const saved = opts.adapterDir ? readAdapterConfig(opts.adapterDir).config : null;
  if (saved && saved.task !== config.task) {
    throw new LoraxsError(`the adapter was trained for task '${saved.task}', the config says '${config.task}'`, { file: config.file, detail: 'task' });
  }
  // Tokenizer and labels first (cheap): data errors surface before the model loads. A fine-tuned
  // checkpoint's own id2label orders the classes when it names every label in the data.
  const modelConfig = readModelConfig(config.model);
  const tokenizer = loadTokenizer(config.model, modelConfig);
  let set = readExamples(config, file, tokenizer, { labelNames: saved ? labelNamesOf(saved.id2label) : null });
  if (!saved && config.task === 'classification') {
    const names = checkpointLabelNames(modelConfig.id2label, set.labelNames);
    if (names) set = readExamples(config, file, tokenizer, { labelNames: names });
  }
  const numLabels = config.task === 'regression' ? 1 : saved?.numLabels ?? modelConfig.numLabels ?? Math.max(2, set.labelNames?.length ?? 2);
  const session = await openModelSession({
    modelDir: config.model, task: config.task, numLabels, adapter: null, seed: config.training.seed,
    dropout: null, adapterDir: opts.adapterDir, events: opts.events, configFile: config.file, tokenizer, pairMode: pairModeOf(config),
  });
  try {
    if (!saved && config.task !== 'causal-lm') {
      const untrained = [...session.head.trainable.keys()].filter((n) => !session.backbone.weights.has(n));
      if (untrained.length) {
        throw new LoraxsError(
          `${config.task} ablations need a trained head, but ${config.model} has no ${untrained.join(', ')}: ` +
          'pass --adapter DIR (an adapter trained with this config) or point model: at a fine-tuned checkpoint',
          { file: config.file, detail: 'model' });
      }
    }
    const examples = set.examples.slice(0, Math.max(1, opts.evalLimit));
    const metric = bestMetricOf(config.task);
    const s = session;
    let weights: Weights = s.backbone.weights;
    let merged: string[] = [];
    if (s.adapters) {
      const m = mergeWeights(s.backbone.weights, s.adapters.modules.values(), opts.adapterDir);
      weights = m.weights;
      merged = m.mergedNames;
    }
    const hash = createHash('sha256');
    hash.update(JSON.stringify(['loraxs-study-v1', s.fingerprint, config.task, metric, config.training.maxLength, path.resolve(file), examples.length]));
    if (opts.adapterDir) for (const f of fs.readdirSync(opts.adapterDir).sort()) if (f.endsWith('.safetensors')) fileHash(hash, path.join(opts.adapterDir, f));
    hash.update(JSON.stringify(examples.map((e) => [e.inputIds, e.label ?? e.target ?? null, ...(e.pairIds ? [e.pairIds] : [])])));
    const setupKey = hash.digest('hex');
    const batchSize = config.training.batchSize;
    const padId = s.tokenizer.padId;
    const head = s.head;
    return {
      session: s,
      weights,
      examples,
      metric,
      higherIsBetter: higherIsBetter(metric),
      setupKey,
      evaluate(overrides) {
        const view: Weights = overrides && overrides.size ? new Map([...weights, ...overrides]) : weights;
        const model = {
          logits: (inputs: ForwardInputs) =>
            taskLogits(s.backbone, head, inputs, plainContext(view, { training: false, extra: head.trainable as Map<string, tf.Tensor> })),
        };
        return evaluate(model, examples, config.task, batchSize, padId)[metric];
      },
      dispose() {
        for (const n of merged) weights.get(n)?.dispose();
        s.dispose();
      },
    };
  } catch (e) {
    session.dispose();
    throw e;
  }
}
