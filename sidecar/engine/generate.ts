/**
 * `loraxs generate`: greedy decoding with a causal LM (base, or with a LoRA-XS adapter). It prints
 * decode(prompt ids + new ids) with special tokens skipped, since decoding only the new ids loses a
 * leading space with Llama-style decoders.
 */
import * as tf from '../backend/tf';
import { LoraxsError } from '../errors';
import { readAdapterConfig } from '../loraxs/adapter_files';
import { adapterConfigOf } from '../loraxs/adapter_set';
import { openModelSession } from '../session/model_session';
import type { EngineEvents } from '../records';

export interface GenerateOptions {
  modelDir: string;
  adapterDir?: string;
  prompt: string;
  /** New tokens at most (default 256); generation stops earlier at EOS. */
  maxTokens: number;
  events?: EngineEvents;
}

export async function generateText(opts: GenerateOptions): Promise<string> {
  const saved = opts.adapterDir ? readAdapterConfig(opts.adapterDir).config : null;
  if (saved && saved.task !== 'causal-lm') {
    throw new LoraxsError(`generate needs a causal-LM adapter; this one was trained for ${saved.task}`, { file: opts.adapterDir! });
  }
  const session = await openModelSession({
    modelDir: opts.modelDir, task: 'causal-lm', numLabels: 1, adapter: saved ? adapterConfigOf(saved) : null,
    seed: saved?.seed ?? 0, dropout: null, adapterDir: opts.adapterDir, events: opts.events,
  });
  try {
    const tok = session.tokenizer;
    const ids = tok.encode(opts.prompt, { addSpecialTokens: true }).ids;
    if (ids.length === 0) throw new LoraxsError('the prompt encodes to no tokens (and the tokenizer adds no BOS)');
    const eos = new Set(([] as number[]).concat(session.ckpt.config.eosTokenId ?? [], tok.eosId ?? []));
    const limit = session.ckpt.config.maxPositionEmbeddings;
    const promptLength = ids.length;
    while (ids.length - promptLength < opts.maxTokens && ids.length < limit) {
      // No KV cache: each step runs the whole sequence (fine for the model sizes the wasm backend holds).
      const next = tf.tidy(() => {
        const T = ids.length;
        const logits = session.logits({
          inputIds: tf.tensor2d(ids, [1, T], 'int32'),
          attentionMask: tf.ones([1, T], 'int32') as tf.Tensor2D,
        }, false); // (1, T, V)
        const last = tf.slice(logits, [0, T - 1, 0], [1, 1, -1]);
        return tf.argMax(tf.reshape(last, [-1])).dataSync()[0];
      });
      ids.push(next);
      if (eos.has(next)) break;
    }
    return tok.decode(ids, { skipSpecialTokens: true });
  } finally {
    session.dispose();
  }
}
