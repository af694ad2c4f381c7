/**
 * Continuous batching for generation: every request becomes a sequence with its own KV cache, adapter and
 * sampler; each step feeds all active sequences through one ragged forward pass (ragged_decoder.ts) with
 * a MixedContext (each token with its sequence's adapter), then samples each sequence's next token. New
 * requests join between steps (their prompt is their first step's input); finished ones leave at once.
 * Between steps the loop yields to the event loop, so HTTP requests keep being accepted and streamed.
 */
import { Rng } from '../rng';
import { argmaxOf, sampleToken } from '../session/decode';
import { mixedContext, type RowAdapter } from './mixed_context';
import type { SequenceCache } from './ragged_decoder';
import type { BaseModel } from './base_model';
import type { ResidentAdapter } from './adapter_registry';
import type { ServeMetrics } from './metrics';
import { HttpError } from './http_error';

export interface GenerationRequest {
  adapter: ResidentAdapter | null;
  promptIds: number[];
  maxTokens: number;
  temperature: number;
  topP: number;
  seed: number;
  stop: string[];
  /** Top log-probabilities to report per generated token (0: none). */
  logprobs: number;
  /** Called with new text as it becomes final (stop strings held back until they cannot start). */
  onText?: (delta: string) => void;
  /** True once the client has gone: the sequence leaves the batch at the next step. */
  abandoned?: () => boolean;
}

export interface TokenLogprob {
  id: number;
  logprob: number;
  top: Array<{ id: number; logprob: number }>;
}

export interface GenerationResult {
  ids: number[];
  text: string;
  finishReason: 'stop' | 'length';
  promptTokens: number;
  logprobs: TokenLogprob[];
}

interface Sequence {
  req: GenerationRequest;
  cache: SequenceCache;
  ids: number[];
  pending: number[];
  rng: Rng;
  promptText: string;
  emitted: number;
  logprobs: TokenLogprob[];
  resolve(r: GenerationResult): void;
  reject(e: Error): void;
}

/** log-softmax of one row (float64 sums) and its k most likely entries. */
function logprobsOf(logits: Float32Array, id: number, k: number): TokenLogprob {
  let max = -Infinity;
  for (const v of logits) if (v > max) max = v;
  let sum = 0;
  for (const v of logits) sum += Math.exp(v - max);
  const lse = max + Math.log(sum);
  const order = Array.from(logits.keys()).sort((a, b) => logits[b] - logits[a] || a - b).slice(0, k);
  return { id, logprob: logits[id] - lse, top: order.map((i) => ({ id: i, logprob: logits[i] - lse })) };
}

export class GenerationScheduler {
  private readonly queue: Sequence[] = [];
  private readonly active: Sequence[] = [];
  private running = false;
  private readonly eos: Set<number>;

  /** `windowMs`: how long an idle scheduler waits for more requests before its first step. */
  constructor(private readonly base: BaseModel, private readonly metrics: ServeMetrics, private readonly maxBatch = 64, private readonly windowMs = 2) {
    const c = base.ckpt.config;
    this.eos = new Set(([] as number[]).concat(c.eosTokenId ?? [], base.tokenizer.eosId ?? []));
  }

  get activeCount(): number {
    return this.active.length;
  }

  get queuedCount(): number {
    return this.queue.length;
  }

  submit(req: GenerationRequest): Promise<GenerationResult> {
    const decoder = this.base.decoder;
    if (!decoder) throw new HttpError(400, `${this.base.names[0]} is an encoder (${this.base.ckpt.config.modelType}); it classifies (POST /v1/classify) but does not generate`);
    const limit = this.base.ckpt.config.maxPositionEmbeddings;
    if (req.promptIds.length === 0) throw new HttpError(400, 'the prompt encodes to no tokens');
    if (req.promptIds.length >= limit) throw new HttpError(400, `the prompt has ${req.promptIds.length} tokens; the model has ${limit} positions`);
    return new Promise<GenerationResult>((resolve, reject) => {
      req.adapter && req.adapter.pins++;
      this.queue.push({
        req, cache: decoder.newCache(), ids: [...req.promptIds], pending: [...req.promptIds], rng: new Rng(req.seed),
        promptText: this.base.tokenizer.decode(req.promptIds, { skipSpecialTokens: true }), emitted: 0, logprobs: [], resolve, reject,
      });
      if (!this.running) void this.loop();
    });
  }

  private async loop(): Promise<void> {
    this.running = true;
    try {
      await new Promise((r) => setTimeout(r, this.windowMs));
      while (this.queue.length || this.active.length) {
        while (this.queue.length && this.active.length < this.maxBatch) this.active.push(this.queue.shift()!);
        try {
          this.step();
        } catch (e) {
          // A failed step fails its sequences, not the server.
          for (const s of this.active.splice(0)) this.finish(s, e as Error);
        }
        await new Promise((r) => setImmediate(r));
      }
    } finally {
      this.running = false;
    }
  }

  private step(): void {
    for (const s of this.active.filter((x) => x.req.abandoned?.())) this.finish(s, new HttpError(499, 'the client closed the connection'));
    const seqs = [...this.active];
    if (seqs.length === 0) return;
    const rowOfToken: Array<RowAdapter | null> = [];
    for (const s of seqs) for (let i = 0; i < s.pending.length; i++) rowOfToken.push(s.req.adapter);
    this.metrics.batch(seqs.length, new Set(seqs.map((s) => s.req.adapter)).size);
    const ctx = mixedContext(this.base.weights, rowOfToken);
    let logits;
    try {
      logits = this.base.decoder!.step(seqs.map((s) => ({ ids: s.pending, cache: s.cache })), ctx);
    } finally {
      ctx.dispose();
    }
    const V = logits.shape[1];
    const data = logits.dataSync() as Float32Array;
    logits.dispose();
    const limit = this.base.ckpt.config.maxPositionEmbeddings;
    seqs.forEach((s, i) => {
      const row = data.subarray(i * V, (i + 1) * V);
      if (s.pending.length > 1 || s.ids.length === s.req.promptIds.length) this.metrics.promptTokens += s.pending.length;
      const next = s.req.temperature === 0 ? argmaxOf(row) : sampleToken(row, { temperature: s.req.temperature, topP: s.req.topP }, s.rng);
      if (s.req.logprobs > 0) s.logprobs.push(logprobsOf(row, next, s.req.logprobs));
      s.ids.push(next);
      s.pending = [next];
      this.metrics.completionTokens++;
      const generated = s.ids.length - s.req.promptIds.length;
      const text = this.newText(s);
      const stopAt = this.stopAt(text, s.req.stop);
      if (this.eos.has(next) || stopAt >= 0) return this.finish(s, null, 'stop', stopAt >= 0 ? text.slice(0, stopAt) : text);
      if (generated >= s.req.maxTokens || s.ids.length >= limit) return this.finish(s, null, 'length', text);
      // Stream what can no longer become the start of a stop string.
      const hold = Math.max(0, ...s.req.stop.map((x) => x.length - 1));
      this.emit(s, text.slice(0, Math.max(s.emitted, text.length - hold)));
    });
  }

  private newText(s: Sequence): string {
    const tok = this.base.tokenizer;
    const whole = tok.decode(s.ids, { skipSpecialTokens: true });
    return whole.startsWith(s.promptText) ? whole.slice(s.promptText.length) : tok.decode(s.ids.slice(s.req.promptIds.length), { skipSpecialTokens: true });
  }

  private stopAt(text: string, stop: string[]): number {
    let at = -1;
    for (const x of stop) {
      const i = text.indexOf(x);
      if (i >= 0 && (at < 0 || i < at)) at = i;
    }
    return at;
  }

  private emit(s: Sequence, upTo: string): void {
    if (upTo.length > s.emitted) {
      s.req.onText?.(upTo.slice(s.emitted));
      s.emitted = upTo.length;
    }
  }

  private finish(s: Sequence, error: Error | null, reason: 'stop' | 'length' = 'stop', text = ''): void {
    const at = this.active.indexOf(s);
    if (at >= 0) this.active.splice(at, 1);
    s.cache.dispose();
    if (s.req.adapter) s.req.adapter.pins--;
    if (error) return s.reject(error);
    this.emit(s, text);
    s.resolve({ ids: s.ids.slice(s.req.promptIds.length), text, finishReason: reason, promptTokens: s.req.promptIds.length, logprobs: s.logprobs });
  }

  /** Fails every queued and active request (server shutdown). */
  close(): void {
    for (const s of [...this.queue.splice(0), ...this.active]) this.finish(s, new HttpError(503, 'the server is shutting down'));
  }
}
