/**
 * Batches with dynamic padding: each batch is padded (on the right, with the tokenizer's pad id) to its
 * own longest sequence. Returns plain typed arrays; the training loop turns them into tensors.
 * For causal LM the labels are the inputs shifted left by one, with IGNORE_INDEX (-100, as transformers)
 * where the target does not count: padding, masked prompt tokens and the last position.
 */
import type { Rng } from '../rng';
import type { Example } from '../io/examples';
import { assert } from '../errors';

/** The label value that the causal-LM loss ignores (torch's / transformers' -100). */
export const IGNORE_INDEX = -100;

export interface Batch {
  /** Indices of the examples in this batch, in batch order. */
  indices: number[];
  /** B: examples in the batch. */
  batchSize: number;
  /**
   * Rows of the token arrays: B, or 2B for pairs in `bi` mode (rows 0..B-1 the first texts, B..2B-1 the
   * second texts, all padded to one T).
   */
  rows?: number;
  /** T: the longest sequence of the batch. */
  seqLen: number;
  /** (B, T) token ids, padded with padId. */
  inputIds: Int32Array;
  /** (B, T) 1 on tokens, 0 on padding. */
  attentionMask: Int32Array;
  /** (B, T) token type ids (0 on padding). */
  typeIds: Int32Array;
  /** Classification: (B) class indices. */
  labels?: Int32Array;
  /** Regression: (B) float targets. */
  targets?: Float32Array;
  /** Causal LM: (B, T) next-token targets, IGNORE_INDEX where the loss does not count. */
  lmLabels?: Int32Array;
  /** Causal LM: number of entries of lmLabels that count (the loss's denominator). */
  numTargets?: number;
  /** Total non-padding tokens (for tokens/s). */
  numTokens: number;
}

/**
 * The order in which one epoch visits the examples: 0..n-1, or a permutation drawn from `rng` when
 * shuffling (one draw of n-1 uniforms per epoch, so a resumed run that restores the rng state matches).
 */
export function epochOrder(n: number, shuffle: boolean, rng: Rng): number[] {
  return shuffle ? rng.permutation(n) : Array.from({ length: n }, (_, i) => i);
}

/** Splits an order into batches of batchSize; the last, partial batch is kept. */
export function batchIndices(order: number[], batchSize: number): number[][] {
  assert(Number.isInteger(batchSize) && batchSize >= 1, () => `batch size must be a positive integer, got ${batchSize}`);
  const out: number[][] = [];
  for (let s = 0; s < order.length; s += batchSize) out.push(order.slice(s, s + batchSize));
  return out;
}

/** Number of batches per epoch: ceil(n / batchSize). */
export function batchesPerEpoch(n: number, batchSize: number): number {
  return Math.ceil(n / batchSize);
}

/** Pads examples[indices] into one batch. All examples must be of one kind (label, target, lossMask or none). */
export function makeBatch(examples: Example[], indices: number[], padId: number): Batch {
  assert(indices.length > 0, () => 'a batch needs at least one example');
  const items = indices.map((i) => {
    const e = examples[i];
    assert(e !== undefined, () => `example index ${i} outside 0..${examples.length - 1}`);
    return e;
  });
  const B = items.length;
  const bi = items[0].pairIds !== undefined;
  assert(items.every((e) => (e.pairIds !== undefined) === bi), () => 'a batch mixes bi-mode pairs and single sequences');
  // Bi-mode pairs: the first texts, then the second texts, as 2B rows.
  const seqs = bi
    ? [...items.map((e) => ({ ids: e.inputIds, types: e.typeIds })), ...items.map((e) => ({ ids: e.pairIds!, types: e.pairTypeIds ?? new Array<number>(e.pairIds!.length).fill(0) }))]
    : items.map((e) => ({ ids: e.inputIds, types: e.typeIds }));
  const rows = seqs.length;
  const T = Math.max(...seqs.map((e) => e.ids.length));
  const inputIds = new Int32Array(rows * T).fill(padId);
  const attentionMask = new Int32Array(rows * T);
  const typeIds = new Int32Array(rows * T);
  let numTokens = 0;
  seqs.forEach((e, b) => {
    assert(e.types.length === e.ids.length, () => `typeIds length ${e.types.length} != inputIds length ${e.ids.length}`);
    inputIds.set(e.ids, b * T);
    typeIds.set(e.types, b * T);
    attentionMask.fill(1, b * T, b * T + e.ids.length);
    numTokens += e.ids.length;
  });
  const batch: Batch = { indices: [...indices], batchSize: B, rows, seqLen: T, inputIds, attentionMask, typeIds, numTokens };

  const kind = (e: Example) => (e.lossMask ? 'lm' : e.label !== undefined ? 'label' : e.target !== undefined ? 'target' : 'none');
  const k = kind(items[0]);
  assert(items.every((e) => kind(e) === k), () => 'a batch mixes examples of different kinds');
  if (k === 'label') batch.labels = Int32Array.from(items, (e) => e.label!);
  else if (k === 'target') batch.targets = Float32Array.from(items, (e) => e.target!);
  else if (k === 'lm') {
    const lmLabels = new Int32Array(B * T).fill(IGNORE_INDEX);
    let count = 0;
    items.forEach((e, b) => {
      const mask = e.lossMask!;
      assert(mask.length === e.inputIds.length, () => `lossMask length ${mask.length} != inputIds length ${e.inputIds.length}`);
      for (let t = 0; t + 1 < e.inputIds.length; t++) {
        if (mask[t]) {
          lmLabels[b * T + t] = e.inputIds[t + 1];
          count++;
        }
      }
    });
    batch.lmLabels = lmLabels;
    batch.numTargets = count;
  }
  return batch;
}
