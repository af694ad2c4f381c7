/**
 * Decoding with a causal LM session and a KV cache, shared by `loraxs generate` (engine/generate.ts) and
 * `training.eval_generate` (train/eval_generate.ts). Greedy (temperature 0, the default) takes the first
 * largest logit, as `argmax` does; with a temperature the next token is drawn from softmax(logits / T),
 * restricted to the `topK` largest and then to the smallest set whose probability reaches `topP`
 * (transformers' order of the two warpers), from a seeded generator, so a seed reproduces a sample.
 * Generation ends at EOS, at `maxTokens`, at the model's last position, or when the new text contains a
 * stop string (the text is cut before it).
 */
import * as tf from '../backend/tf';
import { LoraxsError } from '../errors';
import { Rng } from '../rng';
import type { ModelSession } from './model_session';

export interface SamplingOptions {
  /** New tokens at most; generation stops earlier at EOS or a stop string. */
  maxTokens: number;
  /** 0 (default): greedy. */
  temperature?: number;
  /** Keep the k most likely tokens (sampling only; 0 or absent: all). */
  topK?: number;
  /** Nucleus sampling: the smallest set of tokens whose probability reaches p (sampling only; 1: all). */
  topP?: number;
  /** Seed of the sampler (default 0). */
  seed?: number;
  /** Strings that end generation; the text is cut before the first one. */
  stop?: string[];
  /** false: recompute the whole sequence for every token (the cache-free reference; slower). */
  cache?: boolean;
}

export interface Generation {
  /** Prompt ids followed by the new ids (EOS included when it ended generation). */
  ids: number[];
  promptLength: number;
  /** The new text, special tokens skipped, cut before a stop string. */
  text: string;
  finish: 'eos' | 'stop' | 'length';
}

/** Checks sampling options the way the CLI and the config report them. */
export function checkSampling(opts: SamplingOptions): void {
  const t = opts.temperature ?? 0;
  if (!(t >= 0) || !Number.isFinite(t)) throw new LoraxsError(`--temperature must be a number >= 0, got ${opts.temperature}`);
  if (opts.topP !== undefined && !(opts.topP > 0 && opts.topP <= 1)) throw new LoraxsError(`--top-p must be in (0, 1], got ${opts.topP}`);
  if (opts.topK !== undefined && !(Number.isInteger(opts.topK) && opts.topK >= 0)) throw new LoraxsError(`--top-k must be an integer >= 0, got ${opts.topK}`);
  if (t === 0 && ((opts.topK ?? 0) > 0 || (opts.topP ?? 1) < 1)) {
    throw new LoraxsError('--top-k and --top-p shape sampling; they need --temperature > 0 (temperature 0 is greedy)');
  }
  if (opts.stop?.some((s) => s === '')) throw new LoraxsError('a stop string must not be empty');
}

/** Index of the first largest value (argmax's tie rule). */
export function argmaxOf(logits: Float32Array | number[]): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
  return best;
}

/** One draw from the warped distribution of `logits` (temperature > 0). */
export function sampleToken(logits: Float32Array | number[], opts: { temperature: number; topK?: number; topP?: number }, rng: Rng): number {
  const n = logits.length;
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => logits[b] - logits[a] || a - b);
  let keep = opts.topK && opts.topK > 0 ? Math.min(opts.topK, n) : n;
  const max = logits[order[0]] / opts.temperature;
  const weights = new Float64Array(keep);
  let total = 0;
  for (let r = 0; r < keep; r++) {
    weights[r] = Math.exp(logits[order[r]] / opts.temperature - max);
    total += weights[r];
  }
  const topP = opts.topP ?? 1;
  if (topP < 1) {
    // Keep the most likely tokens until their probability reaches topP (at least one).
    let cumulative = 0;
    let r = 0;
    while (r < keep) {
      cumulative += weights[r] / total;
      r++;
      if (cumulative >= topP) break;
    }
    keep = r;
    total = 0;
    for (let k = 0; k < keep; k++) total += weights[k];
  }
  let u = rng.uniform() * total;
  for (let r = 0; r < keep; r++) {
    u -= weights[r];
    if (u < 0) return order[r];
  }
  return order[keep - 1];
}

/** The EOS ids of a session: config.json's and the tokenizer's. */
export function eosIdsOf(session: ModelSession): Set<number> {
  return new Set(([] as number[]).concat(session.ckpt.config.eosTokenId ?? [], session.tokenizer.eosId ?? []));
}

/**
 * The text of ids[promptLength..] as it reads after the prompt (keeps a leading space a decoder drops);
 * `prompt` is the decoded prompt, which does not change while generating.
 */
function newText(session: ModelSession, ids: number[], promptLength: number, prompt: string): string {
  const tok = session.tokenizer;
  const whole = tok.decode(ids, { skipSpecialTokens: true });
  return whole.startsWith(prompt) ? whole.slice(prompt.length) : tok.decode(ids.slice(promptLength), { skipSpecialTokens: true });
}

/** The earliest stop string in `text`: where it starts, or -1. */
function stopAt(text: string, stop: string[] | undefined): number {
  let at = -1;
  for (const s of stop ?? []) {
    const i = text.indexOf(s);
    if (i >= 0 && (at < 0 || i < at)) at = i;
  }
  return at;
}

/** Decodes from `promptIds` with an open session (the model must be a causal LM). */
export function generateFromIds(session: ModelSession, promptIds: number[], opts: SamplingOptions): Generation {
  checkSampling(opts);
  if (promptIds.length === 0) throw new LoraxsError('the prompt encodes to no tokens (and the tokenizer adds no BOS)');
  const ids = [...promptIds];
  const promptLength = ids.length;
  const promptText = session.tokenizer.decode(promptIds, { skipSpecialTokens: true });
  const eos = eosIdsOf(session);
  const limit = session.ckpt.config.maxPositionEmbeddings;
  const temperature = opts.temperature ?? 0;
  const rng = new Rng(opts.seed ?? 0);
  const cache = opts.cache === false ? null : session.kvCache();
  let finish: Generation['finish'] = 'length';
  let text = '';
  try {
    let pending = ids.slice(); // tokens the cache has not seen yet
    while (ids.length - promptLength < opts.maxTokens && ids.length < limit) {
      const logits = tf.tidy(() => {
        let out: tf.Tensor;
        if (cache) {
          out = session.logitsCached(tf.tensor2d(pending, [1, pending.length], 'int32'), cache); // (1, t, V)
        } else {
          const T = ids.length;
          out = session.logits({ inputIds: tf.tensor2d(ids, [1, T], 'int32'), attentionMask: tf.ones([1, T], 'int32') as tf.Tensor2D }, false);
        }
        const t = out.shape[1]!;
        return tf.slice(out, [0, t - 1, 0], [1, 1, -1]).dataSync() as Float32Array;
      });
      const next = temperature === 0 ? argmaxOf(logits) : sampleToken(logits, { temperature, topK: opts.topK, topP: opts.topP }, rng);
      ids.push(next);
      pending = [next];
      if (eos.has(next)) {
        finish = 'eos';
        break;
      }
      if (opts.stop?.length) {
        text = newText(session, ids, promptLength, promptText);
        if (stopAt(text, opts.stop) >= 0) {
          finish = 'stop';
          break;
        }
      }
    }
  } finally {
    cache?.dispose();
  }
  text = newText(session, ids, promptLength, promptText);
  const cut = stopAt(text, opts.stop);
  if (cut >= 0) text = text.slice(0, cut);
  return { ids, promptLength, text, finish };
}

