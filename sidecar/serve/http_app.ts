/**
 * The fastify application of `loraxs serve`: the routes, an optional API key (`Authorization: Bearer KEY`,
 * every route but /health), OpenAI-style error bodies `{error: {message, type, code}}` with a 4xx for
 * anything the request got wrong (unknown model, bad JSON, body too large, invalid field, refused adapter),
 * and request counts for /metrics.
 */
import { timingSafeEqual } from 'node:crypto';
import Fastify, { type FastifyInstance } from 'fastify';
import { LoraxsError } from '../errors';
import { registerAdminRoutes } from './admin_routes';
import { registerOpenAiRoutes } from './openai_routes';
import type { ServeState } from './serve_state';

export interface HttpOptions {
  apiKey?: string;
  /** Largest request body in bytes (default 1 MiB). */
  bodyLimit?: number;
}

function sameKey(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

export function createHttpApp(state: ServeState, opts: HttpOptions): FastifyInstance {
  const app = Fastify({ bodyLimit: opts.bodyLimit ?? 1 << 20, logger: false });

  if (opts.apiKey) {
    const key = opts.apiKey;
    app.addHook('onRequest', async (request, reply) => {
      if (request.url === '/health') return;
      const header = request.headers.authorization ?? '';
      const given = header.startsWith('Bearer ') ? header.slice(7) : '';
      if (!sameKey(given, key)) {
        await reply.code(401).send({ error: { message: 'missing or wrong API key: send Authorization: Bearer <the --api-key of loraxs serve>', type: 'invalid_request_error', code: 'invalid_api_key' } });
      }
    });
  }
  app.addHook('onResponse', async (request, reply) => {
    state.metrics.request(request.routeOptions.url ?? 'unmatched', reply.statusCode);
  });

  app.setErrorHandler((error: Error & { statusCode?: number; code?: string; validation?: unknown }, _request, reply) => {
    let status = error.statusCode ?? (error instanceof LoraxsError ? 400 : 500);
    let message = error instanceof LoraxsError ? error.format() : error.message;
    if (error.code === 'FST_ERR_CTP_BODY_TOO_LARGE') message = `the request body is larger than the server's limit of ${opts.bodyLimit ?? 1 << 20} bytes`;
    else if (error.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || error instanceof SyntaxError) {
      status = 400;
      message = `the request body is not valid JSON: ${error.message}`;
    }
    if (status >= 500) process.stderr.write(`loraxs serve: internal error: ${error.stack ?? error.message}\n`);
    void reply.code(status).send({
      error: { message, type: status >= 500 ? 'server_error' : 'invalid_request_error', code: (error as { code?: string }).code ?? null },
    });
  });
  app.setNotFoundHandler((request, reply) => {
    void reply.code(404).send({ error: { message: `no route ${request.method} ${request.url}`, type: 'invalid_request_error', code: 'not_found' } });
  });

  registerOpenAiRoutes(app, state);
  registerAdminRoutes(app, state);
  return app;
}
