/**
 * `loraxs eval`: a saved adapter's metrics on the config's validation set.
 */
import { LoraxsError } from '../errors';
import type { RunConfig } from '../config/types';
import { readAdapterConfig, labelNamesOf } from '../loraxs/adapter_files';
import { evaluate } from '../train/evaluation';
import type { MetricValues } from '../train/metrics';
import { openModelSession } from '../session/model_session';
import { readExamples } from '../session/run_data';
import type { EngineEvents } from '../records';

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
