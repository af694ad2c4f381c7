/**
 * The OpenAI-compatible endpoints: GET /v1/models, POST /v1/completions and POST /v1/chat/completions
 * (`model` names an adapter or the base model; max_tokens, temperature, top_p, stop, seed, logprobs;
 * `stream: true` sends server-sent events ending in `data: [DONE]`). Generation goes through the
 * continuous-batching scheduler, so concurrent requests for different adapters share forward passes.
 * vLLM's `return_tokens_as_token_ids` names tokens `token_id:<id>` in logprobs.
 */
import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { parseMessages } from '../io/chat_template';
import { chatPromptIds } from '../io/chat_template';
import { LoraxsError } from '../errors';
import type { GenerationRequest, GenerationResult } from './generation_scheduler';
import { HttpError } from './http_error';
import { chatTemplateFor, resolveModel, type ServeState } from './serve_state';

const sampling = {
  model: { type: 'string', minLength: 1 },
  max_tokens: { type: ['integer', 'null'], minimum: 1 },
  max_completion_tokens: { type: ['integer', 'null'], minimum: 1 },
  temperature: { type: ['number', 'null'], minimum: 0, maximum: 2 },
  top_p: { type: ['number', 'null'], exclusiveMinimum: 0, maximum: 1 },
  seed: { type: ['integer', 'null'] },
  stop: { anyOf: [{ type: 'string', minLength: 1 }, { type: 'array', items: { type: 'string', minLength: 1 }, maxItems: 4 }, { type: 'null' }] },
  stream: { type: ['boolean', 'null'] },
  n: { type: ['integer', 'null'], minimum: 1, maximum: 1 },
  return_tokens_as_token_ids: { type: ['boolean', 'null'] },
} as const;

const completionSchema = {
  type: 'object', required: ['model', 'prompt'],
  properties: {
    ...sampling,
    prompt: { anyOf: [{ type: 'string' }, { type: 'array', items: { type: 'string' }, minItems: 1, maxItems: 1 }] },
    logprobs: { type: ['integer', 'null'], minimum: 0, maximum: 20 },
  },
} as const;

const chatSchema = {
  type: 'object', required: ['model', 'messages'],
  properties: {
    ...sampling,
    messages: { type: 'array', minItems: 1 },
    logprobs: { type: ['boolean', 'null'] },
    top_logprobs: { type: ['integer', 'null'], minimum: 0, maximum: 20 },
  },
} as const;

interface SamplingBody {
  model: string;
  max_tokens?: number | null;
  max_completion_tokens?: number | null;
  temperature?: number | null;
  top_p?: number | null;
  seed?: number | null;
  stop?: string | string[] | null;
  stream?: boolean | null;
  return_tokens_as_token_ids?: boolean | null;
}

function generationRequest(body: SamplingBody, promptIds: number[], logprobs: number, defaultMax: number): Omit<GenerationRequest, 'adapter'> {
  const temperature = body.temperature ?? 1;
  const topP = body.top_p ?? 1;
  return {
    promptIds,
    maxTokens: body.max_completion_tokens ?? body.max_tokens ?? defaultMax,
    temperature,
    topP: temperature === 0 ? 1 : topP,
    seed: body.seed ?? 0,
    stop: body.stop == null ? [] : typeof body.stop === 'string' ? [body.stop] : body.stop,
    logprobs,
  };
}

function usageOf(r: GenerationResult) {
  return { prompt_tokens: r.promptTokens, completion_tokens: r.ids.length, total_tokens: r.promptTokens + r.ids.length };
}

/** Starts an SSE response; returns a writer of `data:` events. */
function sse(reply: FastifyReply): { send(obj: unknown): void; end(): void } {
  reply.hijack();
  reply.raw.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive' });
  return {
    send: (obj) => { if (!reply.raw.destroyed) reply.raw.write(`data: ${JSON.stringify(obj)}\n\n`); },
    end: () => { if (!reply.raw.destroyed) reply.raw.end('data: [DONE]\n\n'); },
  };
}

export function registerOpenAiRoutes(app: FastifyInstance, state: ServeState): void {
  const tokenName = (id: number, asIds: boolean): string => (asIds ? `token_id:${id}` : state.base.tokenizer.decode([id], { skipSpecialTokens: false }));

  app.get('/v1/models', async () => {
    const created = Math.floor(state.startedAt / 1000);
    return {
      object: 'list',
      data: [
        { id: state.base.names[0], object: 'model', created, owned_by: 'loraxs', root: state.base.dir, parent: null, resident: true },
        ...state.registry.available().map((name) => ({
          id: name, object: 'model', created, owned_by: 'loraxs', root: name, parent: state.base.names[0], resident: state.registry.isResident(name),
        })),
      ],
    };
  });

  /** Runs a generation, sending SSE chunks when streaming; the error of a failed stream goes out as an event. */
  async function generate(reply: FastifyReply, req: GenerationRequest, stream: boolean, chunk: (delta: string | null, finish: string | null) => unknown,
    done: (r: GenerationResult) => unknown, usageChunk: ((r: GenerationResult) => unknown) | null): Promise<unknown> {
    // A client that disconnects before the answer frees its batch row at the next step.
    let gone = false;
    reply.raw.once('close', () => { gone = !reply.raw.writableFinished; });
    req.abandoned = () => gone;
    if (!stream) {
      const r = await state.generation.submit(req);
      return done(r);
    }
    const pending = state.generation.submit({ ...req, onText: (delta) => out.send(chunk(delta, null)) });
    const out = sse(reply);
    out.send(chunk(null, null));
    try {
      const r = await pending;
      out.send(chunk('', r.finishReason));
      if (usageChunk) out.send(usageChunk(r));
    } catch (e) {
      out.send({ error: { message: (e as Error).message, type: 'server_error' } });
    }
    out.end();
    return reply;
  }

  app.post('/v1/completions', { schema: { body: completionSchema } }, async (request, reply) => {
    const body = request.body as SamplingBody & { prompt: string | string[]; logprobs?: number | null; stream_options?: { include_usage?: boolean } };
    const adapter = resolveModel(state, body.model);
    if (adapter && adapter.config.task !== 'causal-lm') throw new HttpError(400, `adapter '${body.model}' is a ${adapter.config.task} adapter: use POST /v1/classify`);
    const prompt = Array.isArray(body.prompt) ? body.prompt[0] : body.prompt;
    const promptIds = state.base.tokenizer.encode(prompt, { addSpecialTokens: true }).ids;
    const req: GenerationRequest = { adapter, ...generationRequest(body, promptIds, body.logprobs ?? 0, 16) };
    const id = `cmpl-${randomUUID()}`;
    const created = Math.floor(Date.now() / 1000);
    const asIds = body.return_tokens_as_token_ids === true;
    const logprobsOf = (r: GenerationResult) => (req.logprobs > 0 ? {
      tokens: r.logprobs.map((l) => tokenName(l.id, asIds)),
      token_logprobs: r.logprobs.map((l) => l.logprob),
      top_logprobs: r.logprobs.map((l) => Object.fromEntries(l.top.map((t) => [tokenName(t.id, asIds), t.logprob]))),
      text_offset: null,
    } : null);
    return generate(reply, req, body.stream === true,
      (delta, finish) => ({ id, object: 'text_completion', created, model: body.model, choices: [{ index: 0, text: delta ?? '', finish_reason: finish, logprobs: null }] }),
      (r) => ({ id, object: 'text_completion', created, model: body.model, choices: [{ index: 0, text: r.text, finish_reason: r.finishReason, logprobs: logprobsOf(r) }], usage: usageOf(r) }),
      body.stream_options?.include_usage ? (r) => ({ id, object: 'text_completion', created, model: body.model, choices: [], usage: usageOf(r) }) : null);
  });

  app.post('/v1/chat/completions', { schema: { body: chatSchema } }, async (request, reply) => {
    const body = request.body as SamplingBody & { messages: unknown; logprobs?: boolean | null; top_logprobs?: number | null; stream_options?: { include_usage?: boolean } };
    const adapter = resolveModel(state, body.model);
    if (adapter && adapter.config.task !== 'causal-lm') throw new HttpError(400, `adapter '${body.model}' is a ${adapter.config.task} adapter: use POST /v1/classify`);
    let promptIds: number[];
    try {
      const messages = parseMessages(body.messages, { file: 'request body', detail: 'messages' });
      promptIds = chatPromptIds(chatTemplateFor(state, adapter), messages, state.base.tokenizer);
    } catch (e) {
      if (e instanceof LoraxsError) throw new HttpError(400, e.format());
      throw e;
    }
    const k = body.logprobs ? Math.max(1, body.top_logprobs ?? 1) : 0;
    const req: GenerationRequest = { adapter, ...generationRequest(body, promptIds, k, 256) };
    const id = `chatcmpl-${randomUUID()}`;
    const created = Math.floor(Date.now() / 1000);
    const asIds = body.return_tokens_as_token_ids === true;
    const logprobsOf = (r: GenerationResult) => (k > 0 ? {
      content: r.logprobs.map((l) => ({
        token: tokenName(l.id, asIds), logprob: l.logprob, bytes: null,
        top_logprobs: l.top.map((t) => ({ token: tokenName(t.id, asIds), logprob: t.logprob, bytes: null })),
      })),
    } : null);
    return generate(reply, req, body.stream === true,
      (delta, finish) => ({
        id, object: 'chat.completion.chunk', created, model: body.model,
        choices: [{ index: 0, delta: delta === null ? { role: 'assistant', content: '' } : finish ? {} : { content: delta }, finish_reason: finish, logprobs: null }],
      }),
      (r) => ({
        id, object: 'chat.completion', created, model: body.model,
        choices: [{ index: 0, message: { role: 'assistant', content: r.text }, finish_reason: r.finishReason, logprobs: logprobsOf(r) }], usage: usageOf(r),
      }),
      body.stream_options?.include_usage ? (r) => ({ id, object: 'chat.completion.chunk', created, model: body.model, choices: [], usage: usageOf(r) }) : null);
  });
}
