/**
 * POST /v1/classify: texts (or text pairs) for classification and regression adapters. Requests that arrive
 * together are batched: all their rows go through one forward pass of the base backbone with a
 * MixedContext (each row with its adapter's R), then each adapter's head runs on its own rows (heads differ
 * per adapter: their labels and weights).
 */
import * as tf from '../backend/tf';
import { mixedContext, type RowAdapter } from './mixed_context';
import type { BaseModel } from './base_model';
import type { ResidentAdapter } from './adapter_registry';
import type { ServeMetrics } from './metrics';
import { HttpError } from './http_error';

export interface ClassifyRequest {
  adapter: ResidentAdapter;
  /** One text, or a [first, second] pair, per row. */
  inputs: Array<string | [string, string]>;
}

export interface ClassifyRow {
  /** Classification: the most likely label and every label's probability; regression: the value. */
  label?: string;
  probabilities?: Record<string, number>;
  value?: number;
}

export interface ClassifyResult {
  rows: ClassifyRow[];
  promptTokens: number;
}

interface Pending {
  req: ClassifyRequest;
  ids: number[][];
  typeIds: number[][];
  resolve(r: ClassifyResult): void;
  reject(e: Error): void;
}

export class ClassifyBatcher {
  private queue: Pending[] = [];
  private scheduled = false;

  /** `windowMs`: how long an idle batcher waits for more requests before its forward pass. */
  constructor(private readonly base: BaseModel, private readonly metrics: ServeMetrics, private readonly windowMs = 2, private readonly maxRows = 256) {}

  get queuedCount(): number {
    return this.queue.length;
  }

  submit(req: ClassifyRequest): Promise<ClassifyResult> {
    const tok = this.base.tokenizer;
    const limit = this.base.ckpt.config.maxPositionEmbeddings;
    const ids: number[][] = [];
    const typeIds: number[][] = [];
    req.inputs.forEach((input, i) => {
      const e = typeof input === 'string' ? tok.encode(input) : tok.encode(input[0], { pair: input[1] });
      if (e.ids.length === 0) throw new HttpError(400, `input[${i}] encodes to no tokens`);
      if (e.ids.length > limit) throw new HttpError(400, `input[${i}] has ${e.ids.length} tokens; the model has ${limit} positions`);
      ids.push(e.ids);
      typeIds.push(e.typeIds);
    });
    return new Promise((resolve, reject) => {
      req.adapter.pins++;
      this.queue.push({ req, ids, typeIds, resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setTimeout(() => this.run(), this.windowMs);
      }
    });
  }

  private run(): void {
    this.scheduled = false;
    while (this.queue.length) {
      const batch: Pending[] = [];
      let rows = 0;
      while (this.queue.length && (batch.length === 0 || rows + this.queue[0].ids.length <= this.maxRows)) {
        const p = this.queue.shift()!;
        batch.push(p);
        rows += p.ids.length;
      }
      try {
        const results = this.forward(batch);
        batch.forEach((p, i) => p.resolve(results[i]));
      } catch (e) {
        for (const p of batch) p.reject(e as Error);
      } finally {
        for (const p of batch) p.req.adapter.pins--;
      }
    }
  }

  private forward(batch: Pending[]): ClassifyResult[] {
    const allIds = batch.flatMap((p) => p.ids);
    const allTypes = batch.flatMap((p) => p.typeIds);
    const rowAdapters: Array<RowAdapter | null> = batch.flatMap((p) => p.ids.map(() => p.req.adapter));
    const n = allIds.length;
    const T = Math.max(...allIds.map((r) => r.length));
    const pad = this.base.tokenizer.padId;
    const idData = new Int32Array(n * T).fill(pad);
    const maskData = new Int32Array(n * T);
    const typeData = new Int32Array(n * T);
    allIds.forEach((r, i) => r.forEach((id, t) => {
      idData[i * T + t] = id;
      maskData[i * T + t] = 1;
      typeData[i * T + t] = allTypes[i][t] ?? 0;
    }));
    this.metrics.batch(n, new Set(rowAdapters).size);
    this.metrics.promptTokens += allIds.reduce((s, r) => s + r.length, 0);
    const outputs = tf.tidy(() => {
      const inputs = {
        inputIds: tf.tensor2d(idData, [n, T], 'int32'), attentionMask: tf.tensor2d(maskData, [n, T], 'int32'),
        ...(this.base.ckpt.config.kind === 'encoder' ? { tokenTypeIds: tf.tensor2d(typeData, [n, T], 'int32') } : {}),
      };
      const backboneCtx = mixedContext(this.base.weights, rowAdapters);
      let hidden: tf.Tensor3D;
      try {
        hidden = this.base.backbone.forward(inputs, backboneCtx); // (n, T, H)
      } finally {
        backboneCtx.dispose();
      }
      // Each adapter's head on its own rows.
      const out: Float32Array[] = new Array(n);
      const byAdapter = new Map<ResidentAdapter, number[]>();
      batch.forEach((p) => {
        const list = byAdapter.get(p.req.adapter) ?? [];
        byAdapter.set(p.req.adapter, list);
      });
      let row = 0;
      for (const p of batch) for (let k = 0; k < p.ids.length; k++) byAdapter.get(p.req.adapter)!.push(row++);
      for (const [adapter, rowsOf] of byAdapter) {
        const index = tf.tensor1d(rowsOf, 'int32');
        const pick = <T extends tf.Tensor>(t: T): T => tf.gather(t, index) as T;
        const sub = { inputIds: pick(inputs.inputIds), attentionMask: pick(inputs.attentionMask), ...(inputs.tokenTypeIds ? { tokenTypeIds: pick(inputs.tokenTypeIds) } : {}) };
        const ctx = mixedContext(this.base.weights, rowsOf.map(() => adapter), adapter.head!.trainable as Map<string, tf.Tensor>);
        let y: tf.Tensor;
        try {
          y = adapter.head!.apply(pick(hidden), sub, ctx); // (rows, numLabels)
        } finally {
          ctx.dispose();
        }
        if (adapter.config.task === 'classification') y = tf.softmax(y);
        const values = y.dataSync() as Float32Array;
        const k = y.shape[1] ?? 1;
        rowsOf.forEach((r, j) => { out[r] = values.slice(j * k, (j + 1) * k); });
      }
      return out;
    });
    let row = 0;
    return batch.map((p) => {
      const a = p.req.adapter;
      const rows = p.ids.map((): ClassifyRow => {
        const v = outputs[row++];
        if (a.config.task === 'regression') return { value: v[0] };
        const names = Array.from(v, (_, i) => a.labelNames?.[i] ?? String(i));
        const best = argmax(v);
        return { label: names[best], probabilities: Object.fromEntries(names.map((name, i) => [name, v[i]])) };
      });
      return { rows, promptTokens: p.ids.reduce((s, r) => s + r.length, 0) };
    });
  }
}

function argmax(v: Float32Array): number {
  let best = 0;
  for (let i = 1; i < v.length; i++) if (v[i] > v[best]) best = i;
  return best;
}
