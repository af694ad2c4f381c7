/**
 * Benchmark part `generate`: milliseconds per generated token with the KV cache and without it (the whole
 * sequence recomputed per token, as `generate` did before), at 16 and 256 tokens of context. With the cache
 * the time per token should barely grow with the context (only attention over the prefix does); without it,
 * it grows with the context. Models: a small-Llama-shaped random causal LM (hidden 512, 8 layers, vocab
 * 32,000, tied embeddings) and stories260K when ../shared is present.
 *
 *   npm run bench -- generate [--quick]      (or node dist/bench/generate_bench.js after --build-only)
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '../sidecar/backend/tf';
import { initBackend } from '../sidecar/backend/choice';
import { openModelSession, type ModelSession } from '../sidecar/session/model_session';
import { Rng } from '../sidecar/rng';
import { LLAMA_SMALL, writeBenchModel, type BenchModel } from './bench_models';
import { log, median, quick, sharedDir, writePart } from './common';

const CONTEXTS = [16, 256];
const STEPS = quick ? 4 : 16;

const CAUSAL_SMALL: BenchModel = {
  ...LLAMA_SMALL,
  name: 'llama-small-causal',
  config: { ...LLAMA_SMALL.config, architectures: ['LlamaForCausalLM'], tie_word_embeddings: true },
};

/** ms per token of STEPS greedy-free decode steps (fixed next ids) after a context of `context` tokens. */
function msPerToken(session: ModelSession, context: number, cached: boolean, vocab: number): number {
  const rng = new Rng(context);
  const ids = Array.from({ length: context }, () => 3 + Math.floor(rng.uniform() * (vocab - 3)));
  const times: number[] = [];
  const cache = cached ? session.kvCache() : null;
  try {
    if (cache) tf.tidy(() => { session.logitsCached(tf.tensor2d(ids, [1, ids.length], 'int32'), cache).dataSync(); });
    for (let s = 0; s < STEPS; s++) {
      const next = 3 + Math.floor(rng.uniform() * (vocab - 3));
      const t0 = performance.now();
      tf.tidy(() => {
        if (cache) {
          session.logitsCached(tf.tensor2d([next], [1, 1], 'int32'), cache).dataSync();
        } else {
          const all = [...ids, next];
          const T = all.length;
          const out = session.logits({ inputIds: tf.tensor2d(all, [1, T], 'int32'), attentionMask: tf.ones([1, T], 'int32') as tf.Tensor2D }, false);
          tf.slice(out, [0, T - 1, 0], [1, 1, -1]).dataSync();
        }
      });
      times.push(performance.now() - t0);
      ids.push(next);
    }
  } finally {
    cache?.dispose();
  }
  return median(times);
}

async function main(): Promise<void> {
  const backend = await initBackend();
  const models: Array<{ name: string; dir: string }> = [{ name: CAUSAL_SMALL.name, dir: writeBenchModel(CAUSAL_SMALL) }];
  const stories = path.join(sharedDir, 'models', 'stories260k');
  if (fs.existsSync(stories)) models.push({ name: 'stories260k', dir: stories });
  const results = [];
  for (const m of models) {
    const session = await openModelSession({ modelDir: m.dir, task: 'causal-lm', numLabels: 1, adapter: null, seed: 0, dropout: null });
    try {
      const vocab = session.ckpt.config.vocabSize;
      msPerToken(session, 16, true, vocab); // warm-up
      for (const context of CONTEXTS) {
        const withCache = msPerToken(session, context, true, vocab);
        const without = msPerToken(session, context, false, vocab);
        log(`${m.name}: context ${context}: ${withCache.toFixed(1)} ms/token with the KV cache, ${without.toFixed(1)} without`);
        results.push({ model: m.name, context, ms_per_token_cached: withCache, ms_per_token_uncached: without, steps: STEPS });
      }
    } finally {
      session.dispose();
    }
  }
  const table = ['| model | context | ms/token, KV cache | ms/token, no cache |', '| --- | ---: | ---: | ---: |',
    ...results.map((r) => `| ${r.model} | ${r.context} | ${r.ms_per_token_cached.toFixed(1)} | ${r.ms_per_token_uncached.toFixed(1)} |`)];
  process.stdout.write(table.join('\n') + '\n');
  writePart('generate', { backend: backend.name, threads: backend.threads ?? null, results });
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
