/**
 * `loraxs generate` and the generations of `training.eval_generate`: decoding with a causal LM (base, or
 * with a LoRA-XS adapter) and a KV cache, so each new token costs one position's forward pass plus
 * attention over the cached prefix (the prompt is one batched pass).
 *
 * Decoding itself (greedy or sampled, stop strings) is session/decode.ts.
 *
 * Without --chat it prints decode(prompt ids + new ids) with special tokens skipped, since decoding only the
 * new ids loses a leading space with Llama-style decoders; with --chat the prompt is a user message put
 * through the model's chat template, and only the reply is printed.
 */
import { LoraxsError } from '../errors';
import { readAdapterConfig } from '../loraxs/adapter_files';
import { adapterConfigOf } from '../loraxs/adapter_set';
import { openModelSession } from '../session/model_session';
import { checkSampling, generateFromIds, type SamplingOptions } from '../session/decode';
import { chatPromptIds, resolveChatTemplate } from '../io/chat_template';

export { argmaxOf, checkSampling, generateFromIds, sampleToken, type Generation, type SamplingOptions } from '../session/decode';
import type { EngineEvents } from '../records';

export interface GenerateOptions extends SamplingOptions {
  modelDir: string;
  adapterDir?: string;
  prompt: string;
  /** Apply the chat template to `prompt` as one user message, and print only the reply. */
  chat?: boolean;
  /** A chat template file (.jinja, or a tokenizer_config.json) instead of the model's own. */
  chatTemplateFile?: string;
  events?: EngineEvents;
}


export async function generateText(opts: GenerateOptions): Promise<string> {
  const saved = opts.adapterDir ? readAdapterConfig(opts.adapterDir).config : null;
  if (saved && saved.task !== 'causal-lm') {
    throw new LoraxsError(`generate needs a causal-LM adapter; this one was trained for ${saved.task}`, { file: opts.adapterDir! });
  }
  checkSampling(opts);
  const session = await openModelSession({
    modelDir: opts.modelDir, task: 'causal-lm', numLabels: 1, adapter: saved ? adapterConfigOf(saved) : null,
    seed: saved?.seed ?? 0, dropout: null, adapterDir: opts.adapterDir, events: opts.events,
  });
  try {
    const tok = session.tokenizer;
    if (opts.chat) {
      const template = resolveChatTemplate({ modelDir: opts.modelDir, adapterDir: opts.adapterDir, file: opts.chatTemplateFile });
      const ids = chatPromptIds(template, [{ role: 'user', content: opts.prompt }], tok);
      return generateFromIds(session, ids, opts).text;
    }
    const ids = tok.encode(opts.prompt, { addSpecialTokens: true }).ids;
    const g = generateFromIds(session, ids, opts);
    const promptText = tok.decode(ids, { skipSpecialTokens: true });
    return promptText + g.text;
  } finally {
    session.dispose();
  }
}
