/**
 * Evaluation metrics on plain arrays, with the definitions sklearn / scipy use:
 * accuracy, F1 (binary with positive class 1, or macro over classes), Matthews correlation (the general
 * multi-class formula of sklearn.metrics.matthews_corrcoef), Pearson, Spearman (average ranks for ties),
 * and perplexity = exp(mean token loss). Degenerate inputs follow sklearn: F1 and MCC are 0 when
 * undefined; Pearson / Spearman of a constant series are NaN (as scipy returns).
 */
import { assert } from '../errors';

function sameLength(pred: ArrayLike<number>, gold: ArrayLike<number>): void {
  assert(pred.length === gold.length, () => `predictions (${pred.length}) and references (${gold.length}) differ in length`);
  assert(pred.length > 0, () => 'metrics need at least one example');
}

/** Fraction of predictions equal to the reference. */
export function accuracy(pred: ArrayLike<number>, gold: ArrayLike<number>): number {
  sameLength(pred, gold);
  let hit = 0;
  for (let i = 0; i < pred.length; i++) if (pred[i] === gold[i]) hit++;
  return hit / pred.length;
}

/**
 * Balanced accuracy (sklearn `balanced_accuracy_score`): the mean over the classes present in the references
 * of each class's recall.
 */
export function balancedAccuracy(pred: ArrayLike<number>, gold: ArrayLike<number>): number {
  sameLength(pred, gold);
  const total = new Map<number, number>();
  const hit = new Map<number, number>();
  for (let i = 0; i < gold.length; i++) {
    total.set(gold[i], (total.get(gold[i]) ?? 0) + 1);
    if (pred[i] === gold[i]) hit.set(gold[i], (hit.get(gold[i]) ?? 0) + 1);
  }
  let sum = 0;
  for (const [c, n] of total) sum += (hit.get(c) ?? 0) / n;
  return sum / total.size;
}

/** F1 of one class treated as positive (sklearn `f1_score(average='binary', pos_label)`): 0 when undefined. */
export function f1Binary(pred: ArrayLike<number>, gold: ArrayLike<number>, positive = 1): number {
  sameLength(pred, gold);
  let tp = 0;
  let fp = 0;
  let fn = 0;
  for (let i = 0; i < pred.length; i++) {
    const p = pred[i] === positive;
    const g = gold[i] === positive;
    if (p && g) tp++;
    else if (p) fp++;
    else if (g) fn++;
  }
  return tp === 0 ? 0 : (2 * tp) / (2 * tp + fp + fn);
}

/** Macro F1 over the classes present in predictions or references (sklearn `average='macro'`). */
export function f1Macro(pred: ArrayLike<number>, gold: ArrayLike<number>): number {
  sameLength(pred, gold);
  const classes = new Set<number>();
  for (let i = 0; i < pred.length; i++) {
    classes.add(pred[i]);
    classes.add(gold[i]);
  }
  let total = 0;
  for (const c of classes) total += f1Binary(pred, gold, c);
  return total / classes.size;
}

/**
 * Matthews correlation, multi-class (sklearn): with C the confusion matrix, t_k true counts, p_k predicted
 * counts, c = trace, s = n: (c·s − Σ p_k t_k) / sqrt((s² − Σ p_k²)(s² − Σ t_k²)); 0 when the denominator is 0.
 */
export function matthewsCorrelation(pred: ArrayLike<number>, gold: ArrayLike<number>): number {
  sameLength(pred, gold);
  const p = new Map<number, number>();
  const t = new Map<number, number>();
  let c = 0;
  const s = pred.length;
  for (let i = 0; i < s; i++) {
    p.set(pred[i], (p.get(pred[i]) ?? 0) + 1);
    t.set(gold[i], (t.get(gold[i]) ?? 0) + 1);
    if (pred[i] === gold[i]) c++;
  }
  let pt = 0;
  for (const [k, pk] of p) pt += pk * (t.get(k) ?? 0);
  let pp = 0;
  for (const pk of p.values()) pp += pk * pk;
  let tt = 0;
  for (const tk of t.values()) tt += tk * tk;
  const denom = Math.sqrt((s * s - pp) * (s * s - tt));
  return denom === 0 ? 0 : (c * s - pt) / denom;
}

/** Pearson correlation coefficient (two-pass, float64); NaN when either series is constant. */
export function pearson(x: ArrayLike<number>, y: ArrayLike<number>): number {
  sameLength(x, y);
  const n = x.length;
  let mx = 0;
  let my = 0;
  for (let i = 0; i < n; i++) {
    mx += x[i];
    my += y[i];
  }
  mx /= n;
  my /= n;
  let sxy = 0;
  let sxx = 0;
  let syy = 0;
  for (let i = 0; i < n; i++) {
    const dx = x[i] - mx;
    const dy = y[i] - my;
    sxy += dx * dy;
    sxx += dx * dx;
    syy += dy * dy;
  }
  if (sxx === 0 || syy === 0) return NaN;
  return Math.max(-1, Math.min(1, sxy / Math.sqrt(sxx * syy)));
}

/** Ranks 1..n, ties given the average of the ranks they span (scipy `rankdata(method='average')`). */
export function averageRanks(x: ArrayLike<number>): Float64Array {
  const n = x.length;
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => x[a] - x[b]);
  const ranks = new Float64Array(n);
  for (let i = 0; i < n;) {
    let j = i;
    while (j + 1 < n && x[order[j + 1]] === x[order[i]]) j++;
    const rank = (i + j) / 2 + 1;
    for (let k = i; k <= j; k++) ranks[order[k]] = rank;
    i = j + 1;
  }
  return ranks;
}

/** Spearman rank correlation: Pearson of the average ranks. */
export function spearman(x: ArrayLike<number>, y: ArrayLike<number>): number {
  sameLength(x, y);
  return pearson(averageRanks(x), averageRanks(y));
}

/** Perplexity from the mean token cross-entropy (nats). */
export function perplexity(meanTokenLoss: number): number {
  return Math.exp(meanTokenLoss);
}

/** Index of the largest entry of each row of a (N, C) row-major array. */
export function argmaxRows(values: ArrayLike<number>, numClasses: number): Int32Array {
  const n = values.length / numClasses;
  assert(Number.isInteger(n), () => `${values.length} values do not split into rows of ${numClasses}`);
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    let best = 0;
    for (let c = 1; c < numClasses; c++) if (values[i * numClasses + c] > values[i * numClasses + best]) best = c;
    out[i] = best;
  }
  return out;
}

/** Metric name → value, as written to metrics.jsonl under "eval". */
export type MetricValues = Record<string, number>;

/**
 * Classification metrics: `accuracy`, `matthews_correlation`, `balanced_accuracy`, and `f1` (binary,
 * positive class 1) when there are two classes or `f1_macro` when there are more.
 */
export function classificationMetrics(pred: ArrayLike<number>, gold: ArrayLike<number>, numClasses: number): MetricValues {
  const out: MetricValues = { accuracy: accuracy(pred, gold) };
  if (numClasses === 2) out.f1 = f1Binary(pred, gold, 1);
  else out.f1_macro = f1Macro(pred, gold);
  out.matthews_correlation = matthewsCorrelation(pred, gold);
  out.balanced_accuracy = balancedAccuracy(pred, gold);
  return out;
}

/** Regression metrics: `pearson`, `spearman`, `mse`. */
export function regressionMetrics(pred: ArrayLike<number>, gold: ArrayLike<number>): MetricValues {
  sameLength(pred, gold);
  let se = 0;
  for (let i = 0; i < pred.length; i++) se += (pred[i] - gold[i]) ** 2;
  return { pearson: pearson(pred, gold), spearman: spearman(pred, gold), mse: se / pred.length };
}
