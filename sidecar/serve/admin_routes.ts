/**
 * The server's own endpoints: POST /v1/classify (classification and regression adapters), POST
 * /v1/adapters (load a folder under --adapters by name), DELETE /v1/adapters/{name} (unload it; its files
 * stay), GET /health and GET /metrics (Prometheus text).
 */
import type { FastifyInstance } from 'fastify';
import * as tf from '../backend/tf';
import { HttpError } from './http_error';
import { resolveModel, type ServeState } from './serve_state';
import type { ResidentAdapter } from './adapter_registry';

const classifySchema = {
  type: 'object', required: ['model', 'input'],
  properties: {
    model: { type: 'string', minLength: 1 },
    input: {
      anyOf: [
        { type: 'string' },
        { type: 'array', minItems: 1, maxItems: 256, items: { anyOf: [{ type: 'string' }, { type: 'array', items: { type: 'string' }, minItems: 2, maxItems: 2 }] } },
      ],
    },
  },
} as const;

const adapterSchema = { type: 'object', required: ['name'], properties: { name: { type: 'string', minLength: 1 } } } as const;

function describe(a: ResidentAdapter) {
  return {
    name: a.name, task: a.config.task, rank: a.config.rank, alpha: a.config.alpha, modules: a.config.modules.length,
    factors_sha256: a.config.factorsSha256, bytes: a.bytes, load_ms: Number(a.loadMs.toFixed(1)), labels: a.labelNames,
  };
}

export function registerAdminRoutes(app: FastifyInstance, state: ServeState): void {
  app.post('/v1/classify', { schema: { body: classifySchema } }, async (request) => {
    const body = request.body as { model: string; input: string | Array<string | [string, string]> };
    const adapter = resolveModel(state, body.model);
    if (!adapter) throw new HttpError(400, `the base model has no trained head: name a classification or regression adapter in body.model`);
    if (adapter.config.task === 'causal-lm') throw new HttpError(400, `adapter '${body.model}' is a causal-LM adapter: use POST /v1/completions or /v1/chat/completions`);
    const inputs = typeof body.input === 'string' ? [body.input] : body.input;
    const r = await state.classify.submit({ adapter, inputs });
    return {
      object: 'list', model: body.model, task: adapter.config.task,
      data: r.rows.map((row, index) => ({ index, ...row })),
      usage: { prompt_tokens: r.promptTokens, total_tokens: r.promptTokens },
    };
  });

  app.post('/v1/adapters', { schema: { body: adapterSchema } }, async (request) => {
    const { name } = request.body as { name: string };
    const loaded = !state.registry.isResident(name);
    return { loaded, adapter: describe(state.registry.get(name)) };
  });

  app.delete('/v1/adapters/:name', async (request) => {
    const { name } = request.params as { name: string };
    state.registry.folderOf(name);
    if (!state.registry.unload(name)) throw new HttpError(404, `adapter '${name}' is not loaded`);
    return { unloaded: name };
  });

  app.get('/health', async () => ({
    status: 'ok', model: state.base.names[0], backend: state.base.backendName,
    resident_adapters: state.registry.residentAdapters().length, factor_sets: state.registry.factors.count,
  }));

  app.get('/metrics', async (_request, reply) => {
    reply.type('text/plain; version=0.0.4; charset=utf-8');
    return state.metrics.text({
      residentAdapters: state.registry.residentAdapters().length,
      factorSets: state.registry.factors.count,
      adapterBytes: state.registry.bytes,
      budgetBytes: state.registry.budgetBytes,
      activeSequences: state.generation.activeCount,
      queuedRequests: state.generation.queuedCount + state.classify.queuedCount,
      tensors: tf.memory().numTensors,
      backendBytes: tf.memory().numBytes,
      adapterLoads: state.registry.loads,
      adapterEvictions: state.registry.evictions,
    });
  });
}
