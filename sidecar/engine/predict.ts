/**
 * `loraxs predict`: one JSON line per input row. Classification: the label and class probabilities;
 * regression: the predicted value; causal LM: the row's mean token loss and perplexity.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '../backend/tf';
import type { RunConfig } from '../config/types';
import { readAdapterConfig } from '../loraxs/adapter_files';
import { writeFileAtomic } from '../io/atomic_write';
import { batchIndices, makeBatch } from '../train/batching';
import { batchInputs } from '../train/evaluation';
import { causalLmLoss } from '../train/losses';
import { openModelSession } from '../session/model_session';
import { readExamples } from '../session/run_data';
import { pairModeOf } from '../session/pair_mode';
import { labelNamesOf } from '../loraxs/adapter_files';
import type { EngineEvents } from '../records';

export async function predictToFile(config: RunConfig, adapterDir: string, input: string, out: string | undefined, events?: EngineEvents): Promise<void> {
  const saved = readAdapterConfig(adapterDir).config;
  const labelNames = labelNamesOf(saved.id2label);
  const session = await openModelSession({
    modelDir: config.model, task: config.task, numLabels: saved.numLabels ?? 1, adapter: config.adapter, seed: config.training.seed,
    dropout: null, adapterDir, events, configFile: config.file, pairMode: pairModeOf(config),
  });
  const lines: string[] = [];
  try {
    const { examples } = readExamples(config, input, session.tokenizer, { labelled: false });
    const batches = batchIndices(examples.map((_, i) => i), config.training.batchSize);
    batches.forEach((ix, b) => {
      const batch = makeBatch(examples, ix, session.tokenizer.padId);
      const inputs = batchInputs(batch);
      const rows = tf.tidy(() => {
        const logits = session.logits(inputs, false);
        if (config.task === 'causal-lm') {
          const [B, T] = [batch.batchSize, batch.seqLen];
          return ix.map((_, r) => {
            const labels = batch.lmLabels!.slice(r * T, (r + 1) * T);
            const loss = causalLmLoss(tf.slice(logits, [r, 0, 0], [1, T, -1]), tf.tensor2d(labels, [1, T], 'int32')).dataSync()[0];
            void B;
            return { loss, perplexity: Math.exp(loss) };
          });
        }
        if (config.task === 'regression') return Array.from(tf.reshape(logits, [-1]).dataSync()).map((v) => ({ prediction: v }));
        const probs = tf.softmax(logits).arraySync() as number[][];
        return probs.map((p) => {
          const best = p.indexOf(Math.max(...p));
          return { label: labelNames?.[best] ?? best, probabilities: Object.fromEntries(p.map((v, i) => [labelNames?.[i] ?? String(i), v])) };
        });
      });
      for (const t of Object.values(inputs)) if (t) t.dispose();
      ix.forEach((row, r) => lines.push(JSON.stringify({ row, ...rows[r] })));
      events?.progress?.('predicting', b + 1, batches.length);
    });
  } finally {
    session.dispose();
  }
  const text = lines.map((l) => l + '\n').join('');
  if (out) {
    fs.mkdirSync(path.dirname(path.resolve(out)), { recursive: true });
    writeFileAtomic(out, text);
  } else {
    process.stdout.write(text);
  }
}
