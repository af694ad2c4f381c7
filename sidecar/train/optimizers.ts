/**
 * Optimizers over named tf.Variables, written out rather than taken from tf.train, so that weight decay
 * is decoupled exactly as torch.optim.AdamW does it and the state can be saved and restored for resume.
 *
 * AdamW (torch.optim.AdamW, amsgrad off), for each parameter p with gradient g at its step t (from 1):
 *   p ← p − lr·wd·p
 *   m ← β1·m + (1 − β1)·g;   v ← β2·v + (1 − β2)·g²
 *   p ← p − (lr / (1 − β1ᵗ)) · m / (sqrt(v) / sqrt(1 − β2ᵗ) + eps)
 * SGD (torch.optim.SGD, no momentum): g ← g + wd·p (torch's coupled decay), p ← p − lr·g.
 * Learning rates are per parameter (`lrOf`), so the adapter's R and the task head can differ.
 * Parameters for which `decays(name)` is false get no weight decay (default: biases and norm weights, as
 * transformers' Trainer groups them).
 */
import * as tf from '../backend/tf';
import { assert } from '../errors';

export type OptimizerKind = 'adamw' | 'sgd';

export interface OptimizerOptions {
  /** AdamW (β1, β2); default [0.9, 0.999]. */
  betas?: [number, number];
  /** AdamW eps; default 1e-8. */
  eps?: number;
  /** Default 0. */
  weightDecay?: number;
  /** Whether a parameter gets weight decay; default: not for names ending in `bias` or holding `norm`. */
  decays?: (name: string) => boolean;
}

/** One parameter's optimizer state as plain arrays (AdamW: m and v; SGD: none). */
export interface ParamState {
  step: number;
  shape: number[];
  m?: Float32Array;
  v?: Float32Array;
}

export interface SerializedOptimizerState {
  kind: OptimizerKind;
  params: Record<string, ParamState>;
}

export interface Optimizer {
  readonly kind: OptimizerKind;
  /**
   * One update of every variable that has a gradient (variables without one are left alone, their
   * step not counted, as torch skips parameters whose .grad is None). Gradients are not disposed.
   */
  step(grads: Map<string, tf.Tensor>, vars: Map<string, tf.Variable>, lrOf: (name: string) => number): void;
  /** A copy of the state (reads the moments back from the backend). */
  state(): SerializedOptimizerState;
  /** Replaces the state with a saved one. */
  load(state: SerializedOptimizerState): void;
  /** Frees the moment tensors. */
  dispose(): void;
}

export function defaultDecays(name: string): boolean {
  return !/(^|\.|_)bias$/.test(name) && !/norm/i.test(name);
}

interface Moments {
  step: number;
  m: tf.Tensor | null;
  v: tf.Tensor | null;
}

/** Creates an AdamW or SGD optimizer. */
export function createOptimizer(kind: OptimizerKind, opts: OptimizerOptions = {}): Optimizer {
  const [beta1, beta2] = opts.betas ?? [0.9, 0.999];
  const eps = opts.eps ?? 1e-8;
  const weightDecay = opts.weightDecay ?? 0;
  const decays = opts.decays ?? defaultDecays;
  assert(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1, () => `betas must be in [0, 1), got ${beta1}, ${beta2}`);
  assert(eps >= 0 && weightDecay >= 0, () => `eps and weight decay must be >= 0, got ${eps}, ${weightDecay}`);
  const moments = new Map<string, Moments>();

  const clear = () => {
    for (const s of moments.values()) {
      s.m?.dispose();
      s.v?.dispose();
    }
    moments.clear();
  };

  const stepOne = (name: string, g: tf.Tensor, p: tf.Variable, lr: number) => {
    assert(Number.isFinite(lr), () => `learning rate of ${name} is ${lr}`);
    assert(g.shape.join() === p.shape.join(), () => `gradient of ${name} has shape [${g.shape}], parameter [${p.shape}]`);
    const wd = decays(name) ? weightDecay : 0;
    let s = moments.get(name);
    if (!s) {
      s = { step: 0, m: null, v: null };
      moments.set(name, s);
    }
    s.step += 1;
    if (kind === 'sgd') {
      tf.tidy(() => {
        const grad = wd !== 0 ? tf.add(g, tf.mul(p, wd)) : g;
        p.assign(tf.sub(p, tf.mul(grad, lr)));
      });
      return;
    }
    const t = s.step;
    const bc1 = 1 - beta1 ** t;
    const bc2Sqrt = Math.sqrt(1 - beta2 ** t);
    const prevM = s.m;
    const prevV = s.v;
    const [m, v] = tf.tidy(() => {
      const m = prevM ? tf.add(tf.mul(prevM, beta1), tf.mul(g, 1 - beta1)) : tf.mul(g, 1 - beta1);
      const v = prevV ? tf.add(tf.mul(prevV, beta2), tf.mul(tf.square(g), 1 - beta2)) : tf.mul(tf.square(g), 1 - beta2);
      const decayed = wd !== 0 ? tf.mul(p, 1 - lr * wd) : p;
      const denom = tf.add(tf.div(tf.sqrt(v), bc2Sqrt), eps);
      p.assign(tf.sub(decayed, tf.mul(tf.div(m, denom), lr / bc1)));
      return [tf.keep(m), tf.keep(v)];
    });
    prevM?.dispose();
    prevV?.dispose();
    s.m = m;
    s.v = v;
  };

  return {
    kind,
    step(grads, vars, lrOf) {
      for (const [name, g] of grads) {
        const p = vars.get(name);
        assert(p !== undefined, () => `gradient for unknown parameter ${name}`);
        stepOne(name, g, p, lrOf(name));
      }
    },
    state() {
      const params: Record<string, ParamState> = {};
      for (const [name, s] of moments) {
        const entry: ParamState = { step: s.step, shape: s.m ? [...s.m.shape] : [] };
        if (s.m && s.v) {
          entry.m = Float32Array.from(s.m.dataSync() as Float32Array);
          entry.v = Float32Array.from(s.v.dataSync() as Float32Array);
        }
        params[name] = entry;
      }
      return { kind, params };
    },
    load(state) {
      assert(state.kind === kind, () => `optimizer state is for ${state.kind}, this optimizer is ${kind}`);
      clear();
      for (const [name, e] of Object.entries(state.params)) {
        const size = e.shape.reduce((a, b) => a * b, 1);
        if (kind === 'adamw') {
          assert(e.m !== undefined && e.v !== undefined && e.m.length === size && e.v.length === size,
            () => `AdamW state of ${name}: expected m and v of ${size} values (shape [${e.shape}])`);
        }
        moments.set(name, {
          step: e.step,
          m: e.m ? tf.tensor(e.m, e.shape, 'float32') : null,
          v: e.v ? tf.tensor(e.v, e.shape, 'float32') : null,
        });
      }
    },
    dispose: clear,
  };
}
