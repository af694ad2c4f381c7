/** Test helpers: a small RoBERTa-shaped set of linear modules with random weights. Not a test file itself. */
import * as tf from '../sidecar/backend/tf';
import { Rng } from '../sidecar/rng';
import type { LinearModule, Weights } from '../sidecar/models/types';

/** Linear modules named as RobertaForSequenceClassification names them (hidden h, intermediate 2h). */
export function robertaModules(layers: number, h: number): LinearModule[] {
  const out: LinearModule[] = [];
  for (let l = 0; l < layers; l++) {
    const p = `roberta.encoder.layer.${l}`;
    for (const q of ['query', 'key', 'value']) out.push({ name: `${p}.attention.self.${q}`, outFeatures: h, inFeatures: h, hasBias: true });
    out.push({ name: `${p}.attention.output.dense`, outFeatures: h, inFeatures: h, hasBias: true });
    out.push({ name: `${p}.intermediate.dense`, outFeatures: 2 * h, inFeatures: h, hasBias: true });
    out.push({ name: `${p}.output.dense`, outFeatures: h, inFeatures: 2 * h, hasBias: true });
  }
  return out;
}

/** Random weights (N(0, 0.1²)) and biases for the modules; the caller disposes them. */
export function randomWeights(modules: LinearModule[], seed: number): Weights {
  const rng = new Rng(seed);
  const w: Weights = new Map();
  for (const m of modules) {
    w.set(`${m.name}.weight`, tf.tensor2d(rng.normalArray(m.outFeatures * m.inFeatures, 0.1), [m.outFeatures, m.inFeatures]));
    if (m.hasBias) w.set(`${m.name}.bias`, tf.tensor1d(rng.normalArray(m.outFeatures, 0.1)));
  }
  return w;
}

export function disposeWeights(w: Weights): void {
  for (const t of w.values()) t.dispose();
}
