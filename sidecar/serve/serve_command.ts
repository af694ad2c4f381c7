/**
 * `loraxs serve --model DIR|ID --adapters DIR`: one base model and the LoRA-XS adapters in the folders
 * under --adapters, over HTTP (OpenAI-compatible completions and chat, classification, adapter loading,
 * health and Prometheus metrics), as its own process. Binds 127.0.0.1 unless --host says otherwise; prints
 * `listening on http://HOST:PORT` on stdout once it accepts requests; SIGINT/SIGTERM close it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LoraxsError } from '../errors';
import { str, required, type CommandSpec } from '../cli/options';
import { stderrEvents } from '../cli/progress';
import { resolveModelDir } from '../engine/model_source';
import { AdapterRegistry } from './adapter_registry';
import { loadBaseModel } from './base_model';
import { ClassifyBatcher } from './classify_batcher';
import { GenerationScheduler } from './generation_scheduler';
import { createHttpApp } from './http_app';
import { ServeMetrics } from './metrics';

function number(value: string | undefined, option: string, check: (n: number) => boolean, what: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || !check(n)) throw new LoraxsError(`--${option} must be ${what}, got '${value}'`);
  return n;
}

export const serveCommand: CommandSpec = {
  summary: 'serve a base model and the LoRA-XS adapters under a folder over HTTP (OpenAI-compatible), mixing adapters in one batch',
  usage: '--model DIR|ID --adapters DIR [--port 8000] [--host 127.0.0.1] [--api-key KEY] [--memory-budget GB] [--chat-template FILE] [--batch-window-ms MS] [--max-batch N]',
  positionals: 0,
  options: {
    model: { type: 'string', valueName: 'dir', help: 'the base model folder, or a Hugging Face hub id org/name' },
    adapters: { type: 'string', valueName: 'dir', help: 'folder whose sub-folders are adapters (loaded on first use; requests name them)' },
    port: { type: 'string', valueName: 'N', help: 'TCP port (default 8000; 0 picks a free one)' },
    host: { type: 'string', valueName: 'addr', help: 'address to bind (default 127.0.0.1: this machine only)' },
    'api-key': { type: 'string', valueName: 'key', help: 'require Authorization: Bearer KEY on every request but /health (default: $LORAXS_API_KEY, else none)' },
    'memory-budget': { type: 'string', valueName: 'GB', help: 'memory for resident adapters and their factors; least recently used ones are evicted beyond it (default 2)' },
    'chat-template': { type: 'string', valueName: 'file', help: 'chat template (.jinja or tokenizer_config.json) for every model instead of the adapter\'s or model\'s' },
    'batch-window-ms': { type: 'string', valueName: 'ms', help: 'how long an idle server waits for more requests to batch with the first (default 2)' },
    'max-batch': { type: 'string', valueName: 'N', help: 'sequences decoded together at most (default 64)' },
  },
  async run(_p, v) {
    const events = stderrEvents();
    const given = required(v, 'model');
    const adaptersDir = path.resolve(required(v, 'adapters'));
    if (!fs.existsSync(adaptersDir) || !fs.statSync(adaptersDir).isDirectory()) {
      throw new LoraxsError(`--adapters ${adaptersDir} is not a folder; give the folder that holds your adapter folders`);
    }
    const port = number(str(v, 'port'), 'port', (n) => Number.isInteger(n) && n >= 0 && n < 65536, 'an integer 0..65535') ?? 8000;
    const host = str(v, 'host') ?? '127.0.0.1';
    const budgetGb = number(str(v, 'memory-budget'), 'memory-budget', (n) => n > 0, 'a number of GB > 0') ?? 2;
    const maxBatch = number(str(v, 'max-batch'), 'max-batch', (n) => Number.isInteger(n) && n >= 1, 'a positive integer') ?? 64;
    const windowMs = number(str(v, 'batch-window-ms'), 'batch-window-ms', (n) => n >= 0 && n <= 10_000, 'a number of milliseconds 0..10000') ?? 2;
    const apiKey = str(v, 'api-key') ?? process.env.LORAXS_API_KEY ?? undefined;
    const chatTemplateFile = str(v, 'chat-template');
    if (chatTemplateFile && !fs.existsSync(chatTemplateFile)) throw new LoraxsError(`--chat-template ${chatTemplateFile} does not exist`);

    const base = await loadBaseModel(await resolveModelDir(given, { events }), given, events);
    const metrics = new ServeMetrics();
    const state = {
      base,
      registry: new AdapterRegistry(base, adaptersDir, budgetGb * 2 ** 30),
      generation: new GenerationScheduler(base, metrics, maxBatch, windowMs),
      classify: new ClassifyBatcher(base, metrics, windowMs),
      metrics,
      chatTemplateFile,
      startedAt: Date.now(),
    };
    const app = createHttpApp(state, { apiKey });
    const address = await app.listen({ port, host });
    process.stdout.write(`loraxs serve: listening on ${address} (model ${base.names[0]}, adapters ${adaptersDir}${apiKey ? ', API key required' : ''})\n`);
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
    return 0;
  },
};
