/**
 * The ForwardContext of a mixed batch: rows of one forward pass through the base model belong to different
 * adapters (or to the base model), and every adapted linear layer computes, per row i,
 *
 *   y_i = x_i Wᵀ + b + ((x_i Aᵀ) R'_iᵀ) Bᵀ,     R'_i = (α_i / r) · R_i of row i's adapter
 *
 * with W, A and B shared by every row: one product with W for the whole batch, one thin product with A and
 * with B per factor set, and a batched r × r product with each row's R'. Each adapter keeps its R' of all
 * modules of one rank in one tensor; once per pass they are stacked and gathered by row (slot 0 is a zero
 * R for rows of the base model or of adapters of another factor set), and each module slices its R'. No merged W and no
 * per-adapter copy of W is ever formed.
 */
import * as tf from '../backend/tf';
import { assert } from '../errors';
import { linearForward } from '../models/plain_context';
import type { ForwardContext, Weights } from '../models/types';
import type { FactorSet } from './factor_store';

/** An adapter's (α / r) · R of every module of one rank, stacked in module order: one tensor per rank. */
export interface PackedR {
  /** (K, r, r) */
  R: tf.Tensor3D;
  /** Module name -> its index k in R (the same for every adapter of a factor set: the checksum covers the module list). */
  index: Map<string, number>;
}

/** What a row needs: its adapter's factor set and scaled R (null: the base model). */
export interface RowAdapter {
  factorSet: FactorSet;
  /** Per rank. */
  packedR: Map<number, PackedR>;
}

export interface MixedContext extends ForwardContext {
  /** The same adapters for another row layout (e.g. only each sequence's last token, for the head). */
  withRows(rowAdapters: ReadonlyArray<RowAdapter | null>): MixedContext;
  /** Frees what the context keeps between linear calls (each factor set's row slots, zero R); call after the pass. */
  dispose(): void;
}

/**
 * A context over `weights` for rows whose adapters are `rowAdapters` (one entry per row of the flattened
 * input of every linear call: x (..., in) is read as (N, in) and N must equal rowAdapters.length, or be a
 * multiple of it when each entry stands for `N / length` consecutive rows, e.g. a row's tokens).
 * `extra` tensors are looked up before the base weights. Evaluation only (no dropout).
 */
export function mixedContext(weights: Weights, rowAdapters: ReadonlyArray<RowAdapter | null>, extra?: Map<string, tf.Tensor>): MixedContext {
  const lookup = (name: string): tf.Tensor | undefined => extra?.get(name) ?? weights.get(name);
  // The distinct factor sets of the batch, and per set the distinct adapters with their slot (1-based).
  const groups = new Map<FactorSet, { adapters: RowAdapter[]; slotOfRow: Int32Array }>();
  rowAdapters.forEach((a, row) => {
    if (!a) return;
    let g = groups.get(a.factorSet);
    if (!g) groups.set(a.factorSet, (g = { adapters: [], slotOfRow: new Int32Array(rowAdapters.length) }));
    let slot = g.adapters.indexOf(a);
    if (slot < 0) slot = g.adapters.push(a) - 1;
    g.slotOfRow[row] = slot + 1;
  });

  // Kept across the linear calls of one pass (every module of a factor set gathers with the same slots).
  const kept = new Map<string, tf.Tensor>();
  const keep = (key: string, make: () => tf.Tensor): tf.Tensor => {
    let t = kept.get(key);
    if (!t) kept.set(key, (t = tf.keep(make())));
    return t;
  };
  const sets = [...groups.keys()];

  return {
    training: false,
    linear(name: string, x: tf.Tensor): tf.Tensor {
      const weight = lookup(`${name}.weight`);
      assert(weight, () => `linear layer "${name}" has no weight "${name}.weight"`);
      const bias = lookup(`${name}.bias`);
      const adapted = [...groups].filter(([set]) => set.modules.has(name));
      if (adapted.length === 0) return linearForward(x, weight, bias);
      return tf.tidy(() => {
        const inFeatures = x.shape[x.shape.length - 1];
        const lead = x.shape.slice(0, -1);
        const x2 = tf.reshape(x, [-1, inFeatures]) as tf.Tensor2D; // (N, in)
        const n = x2.shape[0];
        assert(n % rowAdapters.length === 0, () => `mixed batch: ${n} rows for ${rowAdapters.length} row adapters`);
        const per = n / rowAdapters.length;
        assert(weight.shape[1] === inFeatures, () => `linear ${name}: input has ${inFeatures} features, weight is [${weight.shape.join(', ')}]`);
        let y: tf.Tensor2D = tf.matMul(x2, weight as tf.Tensor2D, false, true); // (N, out)
        if (bias) y = tf.add(y, bias);
        for (const [set, g] of adapted) {
          const f = set.modules.get(name)!;
          const r = f.rank;
          const packed = g.adapters[0].packedR.get(r)!;
          const k = packed.index.get(name)!;
          const K = packed.R.shape[0];
          // Once per pass and rank: every row's R of every module, gathered from the batch's adapters
          // (slot 0: zeros, for rows outside this factor set; slots 1..: this set's adapters).
          const rows = keep(`rows/${sets.indexOf(set)}/${r}/${n}`, () => {
            const stack = tf.stack([tf.zeros([K, r, r]), ...g.adapters.map((a) => a.packedR.get(r)!.R)]); // (M+1, K, r, r)
            const s = new Int32Array(n);
            for (let i = 0; i < n; i++) s[i] = g.slotOfRow[Math.floor(i / per)];
            return tf.gather(stack, tf.tensor1d(s, 'int32')); // (N, K, r, r)
          });
          const Rrows = tf.reshape(tf.slice(rows, [0, k, 0, 0], [n, 1, r, r]), [n, r, r]) as tf.Tensor3D; // (N, r, r)
          const xa = tf.reshape(tf.matMul(x2, f.A, false, true), [n, 1, r]) as tf.Tensor3D; // (N, 1, r)
          const xar = tf.reshape(tf.matMul(xa, Rrows, false, true), [n, r]) as tf.Tensor2D; // (N, r): x_i Aᵀ R'_iᵀ
          y = tf.add(y, tf.matMul(xar, f.B, false, true)); // (N, out)
        }
        return tf.reshape(y, [...lead, y.shape[1]]);
      });
    },
    dropout(x: tf.Tensor): tf.Tensor {
      return x;
    },
    withRows(rows) {
      return mixedContext(weights, rows, extra);
    },
    dispose() {
      for (const t of kept.values()) t.dispose();
      kept.clear();
    },
  };
}
