/**
 * `loraxs serve`: one base model and the LoRA-XS adapters in the folders under `adaptersDir`, over HTTP
 * (OpenAI-compatible completions and chat, classification, adapter loading, health and Prometheus metrics),
 * as its own process. Binds 127.0.0.1 unless told otherwise; prints `listening on http://HOST:PORT` on
 * stdout once it accepts requests; SIGINT/SIGTERM close it. The CLI's option parsing is cli/commands.ts.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LoraxsError } from '../errors';
import { resolveModelDir } from '../engine/model_source';
import type { EngineEvents } from '../records';
import { AdapterRegistry } from './adapter_registry';
import { loadBaseModel } from './base_model';
import { ClassifyBatcher } from './classify_batcher';
import { GenerationScheduler } from './generation_scheduler';
import { createHttpApp } from './http_app';
import { ServeMetrics } from './metrics';

export interface ServeOptions {
  /** A model folder or a hub id. */
  model: string;
  adaptersDir: string;
  port: number;
  host: string;
  apiKey?: string;
  memoryBudgetGb: number;
  chatTemplateFile?: string;
  batchWindowMs: number;
  maxBatch: number;
  events?: EngineEvents;
}

/** Runs the server until SIGINT or SIGTERM. */
export async function runServer(o: ServeOptions): Promise<void> {
  const adaptersDir = path.resolve(o.adaptersDir);
  if (!fs.existsSync(adaptersDir) || !fs.statSync(adaptersDir).isDirectory()) {
    throw new LoraxsError(`--adapters ${adaptersDir} is not a folder; give the folder that holds your adapter folders`);
  }
  if (o.chatTemplateFile && !fs.existsSync(o.chatTemplateFile)) throw new LoraxsError(`--chat-template ${o.chatTemplateFile} does not exist`);
  const base = await loadBaseModel(await resolveModelDir(o.model, { events: o.events }), o.model, o.events);
  const metrics = new ServeMetrics();
  const state = {
    base,
    registry: new AdapterRegistry(base, adaptersDir, o.memoryBudgetGb * 2 ** 30),
    generation: new GenerationScheduler(base, metrics, o.maxBatch, o.batchWindowMs),
    classify: new ClassifyBatcher(base, metrics, o.batchWindowMs),
    metrics,
    chatTemplateFile: o.chatTemplateFile,
    startedAt: Date.now(),
  };
  const app = createHttpApp(state, { apiKey: o.apiKey });
  let address: string;
  try {
    address = await app.listen({ port: o.port, host: o.host });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'EADDRINUSE' ? 'the port is in use' : code === 'EACCES' ? 'permission denied' : code === 'EADDRNOTAVAIL' ? 'no such local address' : (e as Error).message;
    throw new LoraxsError(`cannot listen on ${o.host}:${o.port}: ${why}; choose another --port (0 picks a free one) or --host`);
  }
  process.stdout.write(`loraxs serve: listening on ${address} (model ${base.names[0]}, adapters ${adaptersDir}${o.apiKey ? ', API key required' : ''})\n`);
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      process.stderr.write(`loraxs serve: ${signal}, closing\n`);
      state.generation.close();
      void app.close().then(() => resolve());
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
  state.registry.dispose();
  base.dispose();
}
