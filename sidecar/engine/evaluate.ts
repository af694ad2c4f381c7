/**
 * `loraxs eval`: a saved adapter's metrics on the config's validation set.
 */
import { LoraxsError } from '../errors';
import type { RunConfig } from '../config/types';
import { readAdapterConfig } from '../loraxs/adapter_files';
import { evaluate } from '../train/evaluation';
import type { MetricValues } from '../train/metrics';
import { openModelSession } from './model_session';
import { readExamples } from './run_data';
import type { EngineEvents } from './events';

/** The label names a saved adapter was trained with (id2label in index order), or null. */
export function labelNamesOf(id2label: Record<string, string> | null): string[] | null {
  if (!id2label) return null;
  return Object.keys(id2label).map(Number).sort((a, b) => a - b).map((i) => id2label[String(i)]);
}

export async function evaluateRun(config: RunConfig, adapterDir: string, events?: EngineEvents): Promise<MetricValues> {
  const file = config.data?.validation;
  if (!file) throw new LoraxsError('eval needs data.validation in the config', { file: config.file, detail: 'data.validation' });
  const saved = readAdapterConfig(adapterDir).config;
  if (saved.task !== config.task) {
    throw new LoraxsError(`the adapter was trained for task '${saved.task}', the config says '${config.task}'`, { file: config.file, detail: 'task' });
  }
  const session = await openModelSession({
    modelDir: config.model, task: config.task, numLabels: saved.numLabels ?? 1, adapter: config.adapter, seed: config.training.seed,
    dropout: null, adapterDir, events, configFile: config.file,
  });
  try {
    const { examples } = readExamples(config, file, session.tokenizer, { labelNames: labelNamesOf(saved.id2label) });
    return evaluate(session, examples, config.task, config.training.batchSize, session.tokenizer.padId, events);
  } finally {
    session.dispose();
  }
}
