/**
 * `loraxs eval`: a saved adapter's metrics on the config's validation set, or the base model's without one.
 */
import { LoraxsError } from '../errors';
import type { RunConfig } from '../config/types';
import { readAdapterConfig, labelNamesOf } from '../loraxs/adapter_files';
import type { MetricValues } from '../train/metrics';
import { openModelSession, type ModelSession, type SessionOptions } from '../session/model_session';
import { readExamples } from '../session/run_data';
import { pairModeOf } from '../session/pair_mode';
import type { EngineEvents } from '../records';
import { readModelConfig } from '../io/model_config';
import { evaluateWithGeneration } from '../train/eval_generate';

export async function evaluateRun(config: RunConfig, adapterDir: string | undefined, events?: EngineEvents): Promise<MetricValues> {
  const file = config.data?.validation;
  if (!file) throw new LoraxsError('eval needs data.validation in the config', { file: config.file, detail: 'data.validation' });
  if (!adapterDir) return evaluateBase(config, file, events);
  const saved = readAdapterConfig(adapterDir).config;
  if (saved.task !== config.task) {
    throw new LoraxsError(`the adapter was trained for task '${saved.task}', the config says '${config.task}'`, { file: config.file, detail: 'task' });
  }
  return scoreValidation(config, file, { numLabels: saved.numLabels ?? 1, adapter: config.adapter, adapterDir, events },
    { labelNames: labelNamesOf(saved.id2label), adapterDir });
}

/**
 * The base model without an adapter (`loraxs eval` without --adapter): a causal LM as it is; a
 * classification or regression model only when its checkpoint holds a trained head of the right shape
 * (a *ForSequenceClassification folder, e.g. a merged model), since a new head would score noise.
 */
async function evaluateBase(config: RunConfig, file: string, events?: EngineEvents): Promise<MetricValues> {
  const ckpt = readModelConfig(config.model);
  // transformers' default names (LABEL_0, ...) name nothing: the data's sorted labels map to the indices.
  const named = config.task === 'classification' ? labelNamesOf(ckpt.id2label) : null;
  const labelNames = named && !named.every((n, i) => n === `LABEL_${i}`) ? named : null;
  const numLabels = config.task === 'classification' ? (named?.length ?? ckpt.numLabels ?? 2) : 1;
  return scoreValidation(config, file, { numLabels, adapter: null, events }, { labelNames }, (session) => {
    if (config.task === 'causal-lm') return;
    const missing = [...session.head.trainable.entries()].filter(([name, v]) => {
      const w = session.backbone.weights.get(name);
      return !w || w.shape.length !== v.shape.length || w.shape.some((d, i) => d !== v.shape[i]);
    }).map(([name]) => name);
    if (missing.length > 0) {
      throw new LoraxsError(`the base model has no trained ${config.task} head (${missing.join(', ')} ${missing.length === 1 ? 'is' : 'are'} not in its checkpoint), `
        + 'so it cannot be scored without an adapter: pass --adapter DIR (a LoRA-XS run), or point model: at a merged model', { file: config.file, detail: 'model' });
    }
  });
}

type SessionChoice = Pick<SessionOptions, 'numLabels' | 'adapter' | 'adapterDir' | 'events'>;

/** Opens the model (with or without an adapter), checks it, and scores the validation file `file` on it. */
async function scoreValidation(config: RunConfig, file: string, choice: SessionChoice, read: Parameters<typeof readExamples>[3],
  check?: (session: ModelSession) => void): Promise<MetricValues> {
  const session = await openModelSession({
    modelDir: config.model, task: config.task, seed: config.training.seed, dropout: null, configFile: config.file, pairMode: pairModeOf(config), ...choice,
  });
  try {
    check?.(session);
    const { examples } = readExamples(config, file, session.tokenizer, read);
    return evaluateWithGeneration(session, examples, config, session.tokenizer.padId, choice.events);
  } finally {
    session.dispose();
  }
}
