/**
 * Hugging Face hub ids (`model: org/name`) in the language server. Lint, hover, completion and code lenses
 * answer synchronously, from the Hugging Face cache alone: config.json and the safetensors headers
 * (hub/resolve_model.ts resolveHubModelFromCache; a fully downloaded model counts too). When a trusted
 * workspace names a hub model that is not cached, one background headers-only fetch per id@revision starts
 * (HTTP Range requests, never the weights; the headers are cached for next time) and `onLanded` re-publishes
 * the diagnostics and refreshes the code lenses when it ends. Offline (`HF_HUB_OFFLINE`) nothing is fetched:
 * the cache, or a one-line error that it is not cached. A failed fetch is reported as its one-line error and
 * tried again only after RETRY_AFTER_MS.
 *
 * In an untrusted workspace the callers read no model at all; `canFetch` (the workspace's trust) guards the
 * fetch a second time.
 */
import { LoraxsError } from '../errors';
import type { SafetensorsHeader } from '../io/safetensors';
import { readHubEnv } from '../hub/hub_env';
import { offlineNotCached } from '../hub/hub_errors';
import { headerMap, resolveHubModel, resolveHubModelFromCache } from '../hub/resolve_model';

/** What the callers get while a hub model's headers are on their way (a LoraxsError saying so). */
export class HubModelPending extends LoraxsError {}

export type HubModelState =
  | { kind: 'ready'; dir: string; commit: string; headers: Map<string, SafetensorsHeader> }
  | { kind: 'pending'; message: string }
  | { kind: 'error'; error: LoraxsError };

interface Fetch {
  done: Promise<void>;
  /** Set when the fetch failed. */
  error?: LoraxsError;
  /** When it ended (0 while running). */
  endedAt: number;
}

/** A failed fetch is not tried again for this long (a lint per keystroke must not hammer the hub). */
export const RETRY_AFTER_MS = 30_000;

const fetches = new Map<string, Fetch>();
let settings: { canFetch: () => boolean; onLanded: () => void } = { canFetch: () => false, onLanded: () => undefined };

/** Set by the language server: whether fetching is allowed (trust), and what to do when a fetch ends. */
export function configureHubModels(s: { canFetch: () => boolean; onLanded: () => void }): void {
  settings = s;
}

/** The state of `id` at `revision` (null: main); starts the background fetch when it is missing. */
export function hubModelState(id: string, revision: string | null): HubModelState {
  const env = readHubEnv();
  const rev = revision ?? 'main';
  const key = `${id}@${rev}`;
  let cached: ReturnType<typeof resolveHubModelFromCache>;
  try {
    cached = resolveHubModelFromCache(id, { revision: rev, env, headersOnly: true });
  } catch (e) {
    if (e instanceof LoraxsError) return { kind: 'error', error: e };
    throw e;
  }
  if (typeof cached !== 'string') return { kind: 'ready', dir: cached.dir, commit: cached.commit, headers: headerMap(cached) };
  const ctx = { id, revision: rev, endpoint: env.endpoint, hubCache: env.hubCache, tokenSource: env.tokenSource };
  if (env.offline) return { kind: 'error', error: offlineNotCached(ctx, cached) };
  const running = fetches.get(key);
  const pending: HubModelState = { kind: 'pending', message: `reading config.json and the safetensors headers of ${key} from ${env.endpoint} (not the weights)…` };
  if (running && running.endedAt === 0) return pending;
  if (running && Date.now() - running.endedAt < RETRY_AFTER_MS) {
    return { kind: 'error', error: running.error ?? new LoraxsError(`${key} was fetched from ${env.endpoint} but is still not complete in the Hugging Face cache ${env.hubCache} (missing ${cached})`) };
  }
  if (!settings.canFetch()) {
    return { kind: 'error', error: new LoraxsError(`${key} is not in the Hugging Face cache ${env.hubCache}; it is not fetched in an untrusted workspace`) };
  }
  const f: Fetch = { endedAt: 0, done: Promise.resolve() };
  f.done = resolveHubModel(id, { revision: rev, env, headersOnly: true }).then(
    () => undefined,
    (e: unknown) => {
      f.error = e instanceof LoraxsError ? e : new LoraxsError(`reading ${key} from ${env.endpoint} failed: ${(e as Error).message}`);
    },
  ).finally(() => {
    f.endedAt = Date.now();
    try {
      settings.onLanded();
    } catch {
      /* the listener logs its own failures */
    }
  });
  fetches.set(key, f);
  return pending;
}

/** Waits (at most `timeoutMs`) for a running fetch of `id` at `revision` to end; at once when none runs. */
export async function settleHubModel(id: string, revision: string | null, timeoutMs: number): Promise<void> {
  const f = fetches.get(`${id}@${revision ?? 'main'}`);
  if (!f || f.endedAt !== 0) return;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([f.done, new Promise<void>((resolve) => { timer = setTimeout(resolve, timeoutMs); })]);
  clearTimeout(timer);
}
