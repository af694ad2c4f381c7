/**
 * The one job runner both front ends use: `loraxs train|merge|export|eval|ablate|launch` (cli/) and the sidecar's job
 * worker thread (engine/job_thread.ts). It does everything a job needs before and around its stage, in the
 * same order for both, so they behave the same:
 *
 *   1. the compute backend is initialised before any tensor is touched (a resume reads tensors);
 *   2. the config is loaded;
 *   3. train, merge and export: the output location is checked before any model is loaded (pre-flight,
 *      io/output_folder.ts): never the current folder, an input or a folder that holds one, a file, a
 *      folder LoRA-XS did not write, or (without `overwrite`) one it did; writable, with room for what the
 *      job writes. A refused job never starts (no `started` event);
 *   4. `started`, then the config's warnings as `log` events, `file:line:col: warning: ...`;
 *   4b. a model named by a Hugging Face hub id is resolved to its snapshot folder in the cache (downloading
 *      what is missing, as `phase` events `download <file>`; engine/model_source.ts), then the pre-flight
 *      runs again with the model's headers (what the job writes) and the config is read again with the
 *      model's config.json (its family's defaults). The first pre-flight, without the model, refuses a bad
 *      output before anything is downloaded;
 *   5. the stage runs, its progress emitted as JobEvents, cancelled through `signal`;
 *   6. a LoraxsError about a config key gets its line and column (`file:line:col: message`); a filesystem
 *      error (EACCES, ENOSPC, ...) becomes an FsUserError naming the path (io/fs_errors.ts).
 *
 * The front ends keep only how they show the events and the result.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { initBackend } from '../backend/choice';
import { loadConfig, placeConfigError, problemPlace, type ConfigProblem, type ParsedConfig } from '../config/parse';
import { runTraining } from '../train/loop';
import { runAnalysis } from '../analysis/analysis_run';
import { mergeRun } from './merge_run';
import { evaluateRun } from './evaluate';
import { exportRun } from './export_run';
import { eventCallbacks } from './events';
import { dryRunLaunch, launchPreflight, runLaunch, type LaunchOptions } from './launch';
import { LoraxsError } from '../errors';
import { toFsUserError } from '../io/fs_errors';
import { OUTPUT_MARKER, preflightOutput, writeOutputMarker, type OutputCheck, type OutputInput } from '../io/output_folder';
import { openCheckpoint } from '../io/model_folder';
import { readAdapterConfig } from '../loraxs/adapter_files';
import type { RunConfig } from '../config/types';
import { resolveHubRef, resolveModelDir, resolveModelSource } from './model_source';
import { parseModelRef } from '../hub/repo_id';
import type { AnalysisRequest, ExportFormat, JobEvent, JobResult } from '../records';

/** `overwrite`: replace an output folder LoRA-XS wrote (never one it did not). */
export type JobSpec =
  | { kind: 'train'; configFile: string; resume: boolean; headOnly?: boolean; overwrite?: boolean }
  | { kind: 'merge'; configFile: string; adapterDir: string; outDir: string; overwrite?: boolean }
  | { kind: 'export'; adapterDir: string; modelDir?: string; format: ExportFormat; outDir: string; overwrite?: boolean }
  | { kind: 'ablate'; configFile: string; request: AnalysisRequest }
  /** Metrics on the config's validation set: of a saved adapter, or of the base model without one. */
  | { kind: 'eval'; configFile: string; adapterDir?: string }
  /** The config trained by PyTorch + Accelerate (engine/launch.ts); its `started` event says `train`. */
  | { kind: 'launch'; configFile: string; options: LaunchOptions };

export type JobKind = JobSpec['kind'];

/** `file:line:col: warning: message`, the form compilers use. */
export function warningText(file: string, p: ConfigProblem): string {
  return new LoraxsError(`warning: ${p.message}`, problemPlace(file, p)).format();
}

/**
 * Runs one job to its end. `emit` gets every event in order; `signal` asks it to stop at its next safe
 * point (training saves a checkpoint; an analysis keeps what it measured). Rejects with a LoraxsError for
 * bad input (placed at file:line:col when it is about a config key) and an Error for anything else.
 */
export async function runJob(spec: JobSpec, emit: (e: JobEvent) => void, signal?: AbortSignal): Promise<JobResult> {
  const configFile = 'configFile' in spec ? path.resolve(spec.configFile) : null;
  try {
    // `started` comes first; warnings of the backend and the config follow it.
    const backend = await initBackend();
    const warnings = backend.warning ? [`warning: ${backend.warning}`] : [];
    const events = eventCallbacks(emit);
    const shown = new Set<string>();
    const showWarnings = (): void => {
      for (const message of warnings.splice(0)) {
        if (shown.has(message)) continue;
        shown.add(message);
        emit({ kind: 'log', message });
      }
    };
    const begin = (output: string | null): void => {
      emit({ kind: 'started', job: spec.kind === 'launch' ? 'train' : spec.kind, config: configFile, output });
      showWarnings();
    };
    const load = (requireTraining: boolean) =>
      loadConfig(configFile!, { requireTraining, onWarning: (p) => warnings.push(warningText(configFile!, p)) });
    /** A hub model resolved to its snapshot folder (after `started`); the config read again, new warnings shown. */
    const resolveModel = async (config: ParsedConfig, requireTraining: boolean): Promise<ParsedConfig> =>
      resolveModelSource(config, { events, signal, reload: () => {
        const again = load(requireTraining);
        showWarnings();
        return again;
      } });
    const overwrite = 'overwrite' in spec && spec.overwrite === true;
    switch (spec.kind) {
      case 'train': {
        let config = load(true);
        const headOnly = spec.headOnly === true || config.headOnly === true;
        if (headOnly && config.task === 'causal-lm') {
          throw new LoraxsError(`${spec.headOnly ? '--head-only' : 'adapter: none'} trains only a classification or regression head; a causal-lm has no head to train: nothing to train`, { file: config.file, detail: 'adapter' });
        }
        const check = (): OutputCheck => preflightOutput({
          job: 'train', outDir: config.output, inputs: trainInputs(config), overwrite, resume: spec.resume, bytes: trainBytes(config), mode: 'into',
        });
        let out = check();
        begin(config.output);
        if (config.hubModel) {
          config = await resolveModel(config, true);
          out = check();
        }
        return { kind: 'train', result: await trainInto(out, overwrite && !spec.resume, () => runTraining(config, { resume: spec.resume, headOnly, events, signal })) };
      }
      case 'merge': {
        let config = load(false);
        const check = (): OutputCheck => preflightOutput({
          job: 'merge', outDir: spec.outDir, overwrite, bytes: mergeBytes(config.model), mode: 'swap',
          inputs: [...modelInputs(config), { path: spec.adapterDir, what: 'the adapter' }, { path: config.file, what: 'the config file' }],
        });
        check();
        begin(config.output);
        if (config.hubModel) {
          config = await resolveModel(config, false);
          check();
        }
        return { kind: 'folder', outDir: await mergeRun(config, spec.adapterDir, spec.outDir, events, { writer: 'merge', onlyReplaceMarked: true }) };
      }
      case 'export': {
        // --model may be a hub id (resolved once the job has started); without it, the recorded folder.
        const hubModel = spec.modelDir !== undefined && parseModelRef(spec.modelDir).kind === 'hub';
        // The recorded snapshot folder gone (another machine, a cleaned cache): the recorded hub id at its commit.
        const recordedHub = spec.modelDir === undefined ? recordedHubModel(spec.adapterDir) : undefined;
        const modelDir = hubModel || recordedHub ? undefined : spec.modelDir ?? recordedModel(spec.adapterDir);
        preflightOutput({
          job: 'export', outDir: spec.outDir, overwrite, bytes: exportBytes(spec.adapterDir), mode: 'swap',
          inputs: [{ path: spec.adapterDir, what: 'the adapter' }, ...(modelDir ? [{ path: modelDir, what: 'the model folder' }] : [])],
        });
        begin(path.resolve(spec.outDir));
        const exportModel = hubModel ? await resolveModelDir(spec.modelDir!, { events, signal })
          : recordedHub ? (await resolveHubRef(recordedHub, { events, signal })).dir : spec.modelDir;
        return {
          kind: 'folder',
          outDir: await exportRun({ adapterDir: spec.adapterDir, modelDir: exportModel, format: spec.format, outDir: spec.outDir }, events, { writer: 'export', onlyReplaceMarked: true }),
        };
      }
      case 'launch': {
        let config = load(true);
        if (spec.options.dryRun) {
          showWarnings();
          return { kind: 'launch', result: dryRunLaunch(config, spec.options) };
        }
        let out = launchPreflight(config, spec.options);
        begin(config.output);
        if (config.hubModel) {
          config = await resolveModel(config, true);
          out = launchPreflight(config, spec.options);
        }
        return { kind: 'launch', result: await runLaunch(config, out, spec.options, events, signal) };
      }
      case 'eval': {
        let config = load(true);
        begin(config.output);
        if (config.hubModel) config = await resolveModel(config, true);
        return { kind: 'metrics', metrics: await evaluateRun(config, spec.adapterDir, events) };
      }
      case 'ablate': {
        let config = load(spec.request.kind === 'init');
        begin(config.output);
        if (config.hubModel) config = await resolveModel(config, spec.request.kind === 'init');
        return { kind: 'analysis', report: await runAnalysis(config, spec.request, events, signal) };
      }
    }
  } catch (e) {
    const err = toFsUserError(e);
    throw configFile ? placeConfigError(err, configFile) : err;
  }
}

// ---------------------------------------------------------------------------------------------------
// Training's output folder

/** The model folder as an input the output must not touch (none yet for a hub id not resolved). */
function modelInputs(config: RunConfig): OutputInput[] {
  return config.hubModel && config.hubModel.commit === undefined ? [] : [{ path: config.model, what: 'the model folder' }];
}

function trainInputs(config: RunConfig): OutputInput[] {
  const inputs: OutputInput[] = [...modelInputs(config), { path: config.file, what: 'the config file' }];
  if (config.data) {
    inputs.push({ path: config.data.train, what: 'the training data' });
    if (config.data.validation) inputs.push({ path: config.data.validation, what: 'the validation data' });
  }
  return inputs;
}

/**
 * Runs training into the checked output folder. `replace` (overwrite): the old folder (LoRA-XS output) is
 * moved aside (`<output>.old-<pid>`) and removed once the new run has written its folder; a run that fails
 * before writing anything gets the old folder back. The folder gets its marker however the run ends.
 */
async function trainInto<T>(out: OutputCheck, replace: boolean, run: () => Promise<T>): Promise<T> {
  let aside: string | null = null;
  if (replace && out.state.kind === 'marked') {
    aside = `${out.outDir}.old-${process.pid}`;
    fs.rmSync(aside, { recursive: true, force: true });
    fs.renameSync(out.outDir, aside);
  }
  try {
    return await run();
  } catch (e) {
    if (aside && !fs.existsSync(out.outDir)) {
      try {
        fs.renameSync(aside, out.outDir);
        aside = null;
      } catch {
        /* keep the old folder aside rather than lose it; the error below is the one to report */
      }
    }
    throw e;
  } finally {
    if (aside && fs.existsSync(out.outDir)) fs.rmSync(aside, { recursive: true, force: true });
    markQuietly(out.outDir, 'train');
  }
}

/** Adds the marker to a folder that exists and has none (best effort: the run's own error comes first). */
function markQuietly(dir: string, writer: string): void {
  try {
    if (fs.statSync(dir).isDirectory() && !fs.existsSync(path.join(dir, OUTPUT_MARKER))) writeOutputMarker(dir, writer);
  } catch {
    /* no folder (the run failed before writing), or no room: nothing to mark */
  }
}

// ---------------------------------------------------------------------------------------------------
// What a job will write, estimated from headers before anything is loaded (0: unknown, not checked).
// A broken model or adapter is left for the job itself to report, with its own message.

const MiB = 1024 * 1024;

/** merge: the base model's weights in their stored dtype (the safetensors headers), plus small files. */
function mergeBytes(modelDir: string): number {
  try {
    const ckpt = openCheckpoint(modelDir);
    let bytes = MiB;
    const headers = new Set([...ckpt.tensors.values()].map((t) => t.header));
    for (const h of headers) bytes += h.dataStart;
    for (const t of ckpt.tensors.values()) bytes += t.entry.end - t.entry.begin;
    return bytes;
  } catch {
    return 0;
  }
}

/**
 * train: the adapter (r² floats per adapted module, bounded by every 2-D weight at the largest rank) and
 * the head (about hidden² floats), as the best adapter, the last one, and a checkpoint with its optimizer
 * state and the previous checkpoint during its swap: eight copies, plus room for metrics.jsonl.
 */
function trainBytes(config: RunConfig): number {
  try {
    const ckpt = openCheckpoint(config.model);
    const r = Math.max(config.adapter.rank, ...Object.values(config.adapter.rankPattern));
    // A rank above a module's smaller dimension is the job's own error to report: clamp it here.
    let adapterFloats = 0;
    for (const t of ckpt.tensors.values()) {
      if (t.entry.shape.length === 2) adapterFloats += Math.min(r, t.entry.shape[0], t.entry.shape[1]) ** 2;
    }
    const h = ckpt.config.hiddenSize;
    return 8 * 4 * (adapterFloats + h * h + 64 * h) + 4 * MiB;
  } catch {
    return 0;
  }
}

/** export: the factors (A, B) and R of every module, the head, and the native adapter files. */
function exportBytes(adapterDir: string): number {
  try {
    const { config } = readAdapterConfig(adapterDir);
    let bytes = MiB;
    for (const m of config.modules) bytes += 4 * m.rank * (m.inFeatures + m.outFeatures + m.rank + 1);
    for (const f of fs.readdirSync(adapterDir)) {
      if (f.endsWith('.safetensors')) bytes += 2 * fs.statSync(path.join(adapterDir, f)).size;
    }
    return bytes;
  } catch {
    return 0;
  }
}

/** The hub id and commit an adapter records, when its recorded snapshot folder is gone. */
function recordedHubModel(adapterDir: string): { id: string; revision: string } | undefined {
  try {
    const base = readAdapterConfig(adapterDir).config.baseModel;
    return base.hubId !== undefined && base.commit !== undefined && !fs.existsSync(base.path) ? { id: base.hubId, revision: base.commit } : undefined;
  } catch {
    return undefined;
  }
}

/** The base model folder an adapter records (export's default), or undefined when it cannot be read. */
function recordedModel(adapterDir: string): string | undefined {
  try {
    return readAdapterConfig(adapterDir).config.baseModel.path;
  } catch {
    return undefined;
  }
}
