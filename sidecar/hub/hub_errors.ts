/**
 * The hub's failures as one-line LoraxsErrors that say what to do. The hub answers 401 to anonymous
 * requests for a missing, a private and a gated repository alike; `X-Error-Code` tells them apart
 * (`RepoNotFound`, `GatedRepo`, `EntryNotFound`, `RevisionNotFound`), and `X-Error-Message: Invalid
 * credentials in Authorization header` means the token itself was refused. With a valid token the hub
 * answers 404 for missing and private-without-access, 403 for gated-without-access.
 *
 * `HubError.code` lets the CLI and the language server react without parsing messages.
 */
import { LoraxsError } from '../errors';

export type HubErrorCode =
  | 'invalid-id' | 'repo-not-found' | 'gated' | 'token-refused' | 'revision-not-found' | 'entry-not-found'
  | 'offline-not-cached' | 'unreachable-not-cached' | 'bin-only' | 'no-weights' | 'integrity' | 'http'
  | 'cancelled' | 'busy' | 'bad-response';

export class HubError extends LoraxsError {
  constructor(readonly code: HubErrorCode, message: string) {
    super(message);
  }
}

/** What the messages need to know about the request. */
export interface HubErrorContext {
  id: string;
  revision: string;
  endpoint: string;
  hubCache: string;
  /** Where the token came from (`HF_TOKEN` or the token file), or undefined when none was sent. */
  tokenSource?: string;
}

const LOGIN = 'set HF_TOKEN (or run `hf auth login`) to a token from https://huggingface.co/settings/tokens';

function at(ctx: HubErrorContext): string {
  return ctx.revision === 'main' ? ctx.id : `${ctx.id}@${ctx.revision}`;
}

/** The error for a non-2xx answer from the hub (`file` is the file asked for, when there was one). */
export function hubHttpError(ctx: HubErrorContext, status: number, headers: Record<string, string | string[] | undefined>, file?: string): HubError {
  const one = (h: string): string | undefined => {
    const v = headers[h.toLowerCase()];
    return Array.isArray(v) ? v[0] : v;
  };
  const code = one('X-Error-Code');
  const message = one('X-Error-Message');
  const repoUrl = `${ctx.endpoint}/${ctx.id}`;
  if (code === 'GatedRepo') {
    return new HubError('gated', ctx.tokenSource === undefined
      ? `${ctx.id} is a gated model: accept its conditions at ${repoUrl}, then ${LOGIN}`
      : `${ctx.id} is a gated model and the token from ${ctx.tokenSource} has not been granted access: request it at ${repoUrl} (with the account the token belongs to)`);
  }
  if (status === 401 && message === 'Invalid credentials in Authorization header') {
    return new HubError('token-refused', `the Hugging Face token from ${ctx.tokenSource ?? 'HF_TOKEN'} was refused by ${ctx.endpoint} (invalid or expired) while opening ${ctx.id}: create a new one at https://huggingface.co/settings/tokens, or unset it for public models`);
  }
  if (code === 'RevisionNotFound') {
    return new HubError('revision-not-found', `${ctx.id} has no revision '${ctx.revision}': use a branch, tag or commit hash listed at ${repoUrl}/tree/main`);
  }
  if (code === 'EntryNotFound') {
    return new HubError('entry-not-found', `${at(ctx)} has no file ${file ?? '(unknown)'}: check the id and revision (${repoUrl})`);
  }
  if (code === 'RepoNotFound' || status === 401 || status === 404) {
    return new HubError('repo-not-found', ctx.tokenSource === undefined
      ? `no Hugging Face model ${ctx.id} at ${ctx.endpoint}, or it is private: check the id, or for a private model ${LOGIN}`
      : `no Hugging Face model ${ctx.id} at ${ctx.endpoint} that the token from ${ctx.tokenSource} can read: check the id, and that the token's account has access`);
  }
  if (status === 403) {
    return new HubError('repo-not-found', `${ctx.endpoint} refused access to ${ctx.id}${message ? ` (${message})` : ''}: check that the token from ${ctx.tokenSource ?? 'HF_TOKEN'} may read it`);
  }
  return new HubError('http', `${ctx.endpoint} answered ${status}${message ? ` (${message})` : ''} for ${file ?? 'a file'} of ${at(ctx)}: try again later, or set HF_HUB_OFFLINE=1 to use only the cache`);
}

export function offlineNotCached(ctx: HubErrorContext, missing?: string): HubError {
  return new HubError('offline-not-cached', `${at(ctx)} is not in the Hugging Face cache ${ctx.hubCache}${missing ? ` (missing ${missing})` : ''} and HF_HUB_OFFLINE is set: run once with network access (or unset HF_HUB_OFFLINE), or download it with \`hf download ${ctx.id}\``);
}

export function unreachableNotCached(ctx: HubErrorContext, cause: string, missing?: string): HubError {
  return new HubError('unreachable-not-cached', `cannot reach ${ctx.endpoint} (${cause}) and ${at(ctx)} is not in the Hugging Face cache ${ctx.hubCache}${missing ? ` (missing ${missing})` : ''}: check the network (or HF_ENDPOINT / a proxy), then run again`);
}

export function binOnly(ctx: HubErrorContext, file: string): HubError {
  return new HubError('bin-only', `${at(ctx)} has only PyTorch weights (${file}), which cannot be read safely without Python: pick a revision with safetensors (often the hub's conversion PR, revision: refs/pr/<n>), or convert it (transformers: model.save_pretrained(dir, safe_serialization=True)) and use that folder`);
}

export function noWeights(ctx: HubErrorContext): HubError {
  return new HubError('no-weights', `${at(ctx)} has no model.safetensors or model.safetensors.index.json: it is not a transformers checkpoint that LoRA-XS can fine-tune (check the id, or pick another revision)`);
}

export function cancelled(ctx: HubErrorContext, file: string, kept: number): HubError {
  return new HubError('cancelled', `download of ${file} from ${at(ctx)} cancelled${kept > 0 ? `; the ${kept} bytes received are kept and the next run resumes from there` : ''}`);
}
