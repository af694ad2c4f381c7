/**
 * Sentence pairs: which pair mode a run uses (config/pair_mode.ts), and the regression target scaling its
 * head starts from.
 *
 * - `cross`: the two texts joined into one sequence by the tokenizer's post-processor (separators and
 *   token types, as transformers' tokenizer(a, b)); the default for BERT, RoBERTa and decoders.
 * - `bi`: each text embedded alone by the same (adapted) encoder (Sentence-BERT); the default for sentence
 *   encoders (use_lite). Only pairs are affected: a single text is encoded the same way in both modes.
 *
 * Regression scaling (models/heads.ts): cross mode standardises with the training targets' mean and
 * standard deviation; bi mode maps cos = 0 and cos = 1 to the training labels' minimum and maximum
 * (STS-B 0–5: cos = label / 5, as sentence-transformers' CosineSimilarityLoss trains it).
 */
import type { RunConfig } from '../config/types';
import type { Example } from '../io/examples';
import type { PairMode, TargetScaling } from '../models/heads';

export { pairModeOf, defaultPairMode, describePairMode } from '../config/pair_mode';

/** The regression head's starting target scaling from the training examples (undefined for other tasks). */
export function targetScalingOf(task: RunConfig['task'], pairMode: PairMode, examples: Example[]): TargetScaling | undefined {
  if (task !== 'regression') return undefined;
  const ys = examples.map((e) => e.target).filter((y): y is number => y !== undefined);
  if (ys.length === 0) return undefined;
  if (pairMode === 'bi') {
    const lo = ys.reduce((m, y) => Math.min(m, y), Infinity);
    const hi = ys.reduce((m, y) => Math.max(m, y), -Infinity);
    return { offset: lo, scale: hi > lo ? hi - lo : 1 };
  }
  const mean = ys.reduce((s, y) => s + y, 0) / ys.length;
  const variance = ys.reduce((s, y) => s + (y - mean) ** 2, 0) / ys.length;
  const std = Math.sqrt(variance);
  return { offset: mean, scale: std > 0 ? std : 1 };
}
