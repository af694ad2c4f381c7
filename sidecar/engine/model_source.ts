/**
 * Where a job's model comes from: a folder on disk, or a Hugging Face hub id (`model: org/name`, `--model
 * org/name`) resolved here, before anything reads the model, to its snapshot folder in the shared Hugging
 * Face cache (hub/resolve_model.ts: downloads what is missing, resumable and checked; offline or with the
 * hub unreachable, the cache answers). Every engine entry point calls this first: the job runner (jobs.ts)
 * and the commands that call a stage directly (eval, predict, generate, params).
 *
 * Download progress goes out as `phase` events, `download <file>` with bytes done of total (throttled),
 * and one `log` line naming the commit; a fallback to the cache is a `warning:` log line. `signal` may be a
 * real AbortSignal or the job worker's shared-memory flag, which exposes only `aborted`: it is polled.
 */
import { parseModelRef } from '../hub/repo_id';
import { headerMap, resolveHubModel, type HubProgress, type ResolvedHubModel } from '../hub/resolve_model';
import type { SafetensorsHeader } from '../io/safetensors';
import type { HubModelRef, RunConfig } from '../config/types';
import type { EngineEvents } from '../records';
import { LoraxsError, type SourcePlace } from '../errors';
import { placeConfigError } from '../config/parse';

export interface ModelSourceOptions {
  events?: EngineEvents;
  signal?: AbortSignal;
  /** Only config.json and the safetensors headers (params): never the weights. */
  headersOnly?: boolean;
}

/** Progress events at most this often (plus the first and the last of each file). */
const PROGRESS_EVERY_MS = 200;

/** A real AbortSignal that follows `signal`, polling its `aborted` (the worker's flag has no events). */
function followSignal(signal: AbortSignal | undefined): { signal?: AbortSignal; dispose: () => void } {
  if (!signal) return { dispose: () => undefined };
  const controller = new AbortController();
  const check = (): void => {
    if (signal.aborted && !controller.signal.aborted) controller.abort();
  };
  check();
  const timer = setInterval(check, 100);
  timer.unref?.();
  const listens = typeof signal.addEventListener === 'function';
  if (listens) signal.addEventListener('abort', check);
  return {
    signal: controller.signal,
    dispose: () => {
      clearInterval(timer);
      if (listens) signal.removeEventListener('abort', check);
    },
  };
}

function at(ref: HubModelRef): string {
  return ref.revision === null || ref.revision === 'main' ? ref.id : `${ref.id}@${ref.revision}`;
}

/** Resolves a hub id to its snapshot folder, downloading what is missing; throws a one-line HubError. */
export async function resolveHubRef(ref: HubModelRef, opts: ModelSourceOptions = {}): Promise<ResolvedHubModel> {
  const events = opts.events;
  const followed = followSignal(opts.signal);
  let lastFile: string | undefined;
  let lastAt = 0;
  let downloaded = 0;
  let total = 0;
  const onProgress = (p: HubProgress): void => {
    if (p.phase !== 'download' || p.total <= 0) return;
    downloaded = p.received;
    total = p.total;
    const now = Date.now();
    if (p.file === lastFile && now - lastAt < PROGRESS_EVERY_MS && p.received < p.total) return;
    lastFile = p.file;
    lastAt = now;
    events?.progress?.(`download ${p.file ?? at(ref)}`, p.received, p.total);
  };
  try {
    const r = await resolveHubModel(ref.id, {
      revision: ref.revision ?? undefined, headersOnly: opts.headersOnly, onProgress, signal: followed.signal,
    });
    if (total > 0 && downloaded < total) events?.progress?.(`download ${lastFile ?? at(ref)}`, total, total);
    if (r.warning) events?.log?.(`warning: ${r.warning}`);
    events?.log?.(`model ${at(ref)}: commit ${r.commit}${r.fromCache ? ' (from the Hugging Face cache)' : ''}, ${r.dir}`);
    return r;
  } finally {
    followed.dispose();
  }
}

/**
 * The config with `model` = the local snapshot folder when `model:` is a hub id (and `hubModel.commit`
 * set); the config itself otherwise. `reload` parses the config again once the model's config.json is
 * cached, so the defaults that depend on the model family (targets, task, max_length) come from it.
 */
export async function resolveModelSource<T extends RunConfig>(config: T, opts: ModelSourceOptions & { reload?: () => T } = {}): Promise<T> {
  const ref = config.hubModel;
  if (!ref) return config;
  let r: ResolvedHubModel;
  try {
    r = await resolveHubRef(ref, opts);
  } catch (e) {
    throw atModelKey(e, config.file);
  }
  const base = opts.reload ? opts.reload() : config;
  return { ...base, model: r.dir, hubModel: { id: ref.id, revision: ref.revision, commit: r.commit } };
}

/** A hub error (one line, no place) placed at the config's `model:` key; its class and code are kept. */
function atModelKey(e: unknown, file: string): unknown {
  if (!(e instanceof LoraxsError) || e.place) return e;
  (e as { place?: SourcePlace }).place = { file, detail: 'model' };
  return placeConfigError(e, file);
}

/**
 * A `--model` value: a folder (returned as given) or, when no such path exists and it reads `org/name`, a
 * hub id resolved to its snapshot folder.
 */
export async function resolveModelDir(spec: string, opts: ModelSourceOptions = {}): Promise<string> {
  const ref = parseModelRef(spec, process.cwd());
  if (ref.kind === 'folder') return spec;
  return (await resolveHubRef({ id: ref.id, revision: null }, opts)).dir;
}

/** What `computeParams` needs of a config whose model may be a hub id: the folder and, headers-only, the headers. */
export async function resolveParamsSource(config: RunConfig, opts: ModelSourceOptions = {}): Promise<{ model: string; headers?: Map<string, SafetensorsHeader> }> {
  if (!config.hubModel) return { model: config.model };
  try {
    const r = await resolveHubRef(config.hubModel, { ...opts, headersOnly: true });
    return { model: r.dir, headers: headerMap(r) };
  } catch (e) {
    throw atModelKey(e, config.file);
  }
}
