/**
 * Metrics against closed forms worked by hand and against scikit-learn / scipy outputs committed in
 * test/fixtures/metrics_reference.json (made by test/reference/metrics_reference.py).
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fixtures } from './paths';
import {
  accuracy, balancedAccuracy, f1Binary, f1Macro, matthewsCorrelation, pearson, spearman, averageRanks, perplexity,
  argmaxRows, classificationMetrics, regressionMetrics,
} from '../sidecar/train/metrics';

const close = (actual: number, expected: number, tol: number, what: string) =>
  assert.ok(Math.abs(actual - expected) <= tol, `${what}: expected ${expected}, got ${actual} (tolerance ${tol})`);

test('balanced accuracy by hand: the mean of per-class recalls over the classes in the references', () => {
  // Same counts: recall of class 1 = 3/5, of class 0 = 4/5.
  const pred = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0];
  const gold = [1, 1, 1, 0, 1, 1, 0, 0, 0, 0];
  close(balancedAccuracy(pred, gold), (3 / 5 + 4 / 5) / 2, 1e-15, 'binary');
  // Three classes, one never predicted, and a predicted class (3) absent from the references (ignored).
  // recalls: class 0 2/3, class 1 0/2, class 2 1/1.
  close(balancedAccuracy([0, 0, 2, 3, 3, 2], [0, 0, 0, 1, 1, 2]), (2 / 3 + 0 + 1) / 3, 1e-15, 'three classes');
  // Imbalanced: always predicting the majority gives 0.5, whatever its accuracy.
  close(balancedAccuracy([0, 0, 0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0, 0, 1]), 0.5, 1e-15, 'majority');
});

test('binary metrics by hand: tp=3 fp=1 fn=2 tn=4', () => {
  // pred/gold with tp 3, fp 1, fn 2, tn 4 (n = 10).
  const pred = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0];
  const gold = [1, 1, 1, 0, 1, 1, 0, 0, 0, 0];
  close(accuracy(pred, gold), 7 / 10, 1e-15, 'accuracy');
  close(f1Binary(pred, gold), (2 * 3) / (2 * 3 + 1 + 2), 1e-15, 'f1');
  // Binary MCC = (tp·tn − fp·fn) / sqrt((tp+fp)(tp+fn)(tn+fp)(tn+fn)).
  close(matthewsCorrelation(pred, gold), (3 * 4 - 1 * 2) / Math.sqrt(4 * 5 * 5 * 6), 1e-15, 'mcc');
  // Class 0 as positive: tp 4, fp 2, fn 1 → F1 8/11; macro = mean of 6/9 and 8/11.
  close(f1Macro(pred, gold), (6 / 9 + 8 / 11) / 2, 1e-15, 'f1 macro');
});

test('degenerate cases follow sklearn: F1 and MCC are 0, correlations of a constant are NaN', () => {
  assert.equal(f1Binary([0, 0, 0], [0, 0, 0]), 0);
  assert.equal(matthewsCorrelation([1, 1, 1], [0, 1, 0]), 0);
  assert.equal(matthewsCorrelation([0, 1, 2], [0, 1, 2]), 1);
  assert.ok(Number.isNaN(pearson([1, 1, 1], [1, 2, 3])));
  assert.ok(Number.isNaN(spearman([1, 2, 3], [4, 4, 4])));
  assert.throws(() => accuracy([1, 0], [1]), /differ in length/);
});

test('Pearson and Spearman in closed form', () => {
  // y = 2x + 1 exactly → 1; a monotone non-linear map → Spearman 1, Pearson < 1.
  const x = [1, 2, 3, 4, 5];
  close(pearson(x, x.map((v) => 2 * v + 1)), 1, 1e-15, 'pearson linear');
  close(pearson(x, x.map((v) => -v)), -1, 1e-15, 'pearson anti');
  close(spearman(x, x.map((v) => v ** 3)), 1, 1e-15, 'spearman monotone');
  assert.ok(pearson(x, x.map((v) => v ** 3)) < 0.99);
  // Ties: averageRanks([10, 20, 20, 30]) = [1, 2.5, 2.5, 4].
  assert.deepEqual([...averageRanks([10, 20, 20, 30])], [1, 2.5, 2.5, 4]);
  assert.deepEqual([...averageRanks([3, 1, 3, 3])], [3, 1, 3, 3]);
  // Without ties Spearman = 1 − 6 Σd² / (n(n² − 1)): ranks of y = [2, 1, 4, 3, 5] → Σd² = 4.
  close(spearman(x, [20, 10, 40, 30, 50]), 1 - (6 * 4) / (5 * 24), 1e-15, 'spearman d²');
});

test('perplexity and argmax', () => {
  close(perplexity(Math.log(7)), 7, 1e-12, 'perplexity');
  assert.deepEqual([...argmaxRows([0.1, 0.9, 3, -1, 0, 0], 2)], [1, 0, 0]);
});

interface ClassCase { name: string; pred: number[]; gold: number[]; num_classes: number; accuracy: number; matthews_correlation: number; f1_macro: number; f1?: number }
interface RegCase { name: string; pred: number[]; gold: number[]; pearson: number; spearman: number }
const reference = JSON.parse(fs.readFileSync(path.join(fixtures, 'metrics_reference.json'), 'utf8')) as {
  classification: ClassCase[]; regression: RegCase[];
};

test('classification metrics equal scikit-learn (within 1e-12)', () => {
  assert.ok(reference.classification.length >= 5);
  for (const c of reference.classification) {
    const m = classificationMetrics(c.pred, c.gold, c.num_classes);
    close(m.accuracy, c.accuracy, 1e-12, `${c.name} accuracy`);
    close(m.matthews_correlation, c.matthews_correlation, 1e-12, `${c.name} mcc`);
    close(f1Macro(c.pred, c.gold), c.f1_macro, 1e-12, `${c.name} f1 macro`);
    if (c.num_classes === 2) {
      close(m.f1, c.f1!, 1e-12, `${c.name} f1`);
      assert.equal(m.f1_macro, undefined);
    } else {
      close(m.f1_macro, c.f1_macro, 1e-12, `${c.name} f1_macro key`);
      assert.equal(m.f1, undefined);
    }
  }
});

test('Pearson and Spearman equal scipy (within 1e-12)', () => {
  assert.ok(reference.regression.length >= 3);
  for (const c of reference.regression) {
    const m = regressionMetrics(c.pred, c.gold);
    close(m.pearson, c.pearson, 1e-12, `${c.name} pearson`);
    close(m.spearman, c.spearman, 1e-12, `${c.name} spearman`);
  }
});
