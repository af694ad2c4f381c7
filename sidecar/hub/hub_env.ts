/**
 * The Hugging Face environment variables, read the way Python's huggingface_hub reads them, so both tools
 * share one cache and one login:
 *
 * - `HF_HOME` (default `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`);
 * - `HF_HUB_CACHE` (legacy `HUGGINGFACE_HUB_CACHE`; default `$HF_HOME/hub`): the model cache;
 * - `HF_ASSETS_CACHE` (default `$HF_HOME/assets`): huggingface_hub's folder for files that downstream
 *   libraries derive themselves; our safetensors header cache lives there, under `loraxs/`;
 * - `HF_HUB_OFFLINE` (or `TRANSFORMERS_OFFLINE`): 1/ON/YES/TRUE, any case, means never touch the network;
 * - `HF_TOKEN` (legacy `HUGGING_FACE_HUB_TOKEN`), else the token file `HF_TOKEN_PATH` (default
 *   `$HF_HOME/token`, what `hf auth login` writes);
 * - `HF_ENDPOINT` (default https://huggingface.co), e.g. a mirror.
 *
 * A pure function of the environment object passed in (process.env by default) and the token file.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export const DEFAULT_ENDPOINT = 'https://huggingface.co';

export interface HubEnv {
  hfHome: string;
  /** Where `models--org--name/` folders live. */
  hubCache: string;
  /** huggingface_hub's cache for downstream libraries' own files. */
  assetsCache: string;
  offline: boolean;
  /** The access token, if any; never logged. */
  token?: string;
  /** Where the token came from, for messages: `HF_TOKEN` or the token file's path. */
  tokenSource?: string;
  /** No trailing slash. */
  endpoint: string;
}

type Env = Record<string, string | undefined>;

/** `~` expansion and `$VAR` / `${VAR}` expansion, as Python's expanduser + expandvars (unknown vars stay). */
function expandPath(p: string, env: Env): string {
  let out = p.replace(/\$(\w+)|\$\{(\w+)\}/g, (m, a: string | undefined, b: string | undefined) => env[(a ?? b)!] ?? m);
  if (out === '~' || out.startsWith('~/') || out.startsWith(`~${path.sep}`)) out = path.join(env.HOME ?? os.homedir(), out.slice(1));
  return out;
}

/** huggingface_hub's `_is_true`. */
export function isTrueEnv(value: string | undefined): boolean {
  return value !== undefined && ['1', 'ON', 'YES', 'TRUE'].includes(value.trim().toUpperCase());
}

function nonEmpty(v: string | undefined): string | undefined {
  return v !== undefined && v !== '' ? v : undefined;
}

/** Tokens are cleaned like huggingface_hub's `_clean_token`: CR/LF removed, whitespace trimmed; empty = none. */
function cleanToken(t: string | undefined): string | undefined {
  if (t === undefined) return undefined;
  const c = t.replace(/[\r\n]/g, '').trim();
  return c === '' ? undefined : c;
}

/** The cache folders `env` names, without reading any file (lint reads these on every keystroke). */
export function hubPaths(env: Env = process.env): Pick<HubEnv, 'hfHome' | 'hubCache' | 'assetsCache'> {
  const home = env.HOME ?? os.homedir();
  const xdg = nonEmpty(env.XDG_CACHE_HOME) ?? path.join(home, '.cache');
  const hfHome = expandPath(nonEmpty(env.HF_HOME) ?? path.join(xdg, 'huggingface'), env);
  const hubCache = expandPath(nonEmpty(env.HF_HUB_CACHE) ?? nonEmpty(env.HUGGINGFACE_HUB_CACHE) ?? path.join(hfHome, 'hub'), env);
  const assetsCache = expandPath(nonEmpty(env.HF_ASSETS_CACHE) ?? nonEmpty(env.HUGGINGFACE_ASSETS_CACHE) ?? path.join(hfHome, 'assets'), env);
  return { hfHome, hubCache, assetsCache };
}

/** Reads the Hugging Face settings from `env` (and the token file it points to). */
export function readHubEnv(env: Env = process.env): HubEnv {
  const { hfHome, hubCache, assetsCache } = hubPaths(env);
  const offline = isTrueEnv(nonEmpty(env.HF_HUB_OFFLINE) ?? env.TRANSFORMERS_OFFLINE);
  const endpoint = (nonEmpty(env.HF_ENDPOINT) ?? DEFAULT_ENDPOINT).replace(/\/+$/, '');

  let token = cleanToken(nonEmpty(env.HF_TOKEN) ?? env.HUGGING_FACE_HUB_TOKEN);
  let tokenSource = token !== undefined ? (nonEmpty(env.HF_TOKEN) !== undefined ? 'HF_TOKEN' : 'HUGGING_FACE_HUB_TOKEN') : undefined;
  if (token === undefined) {
    const tokenFile = expandPath(nonEmpty(env.HF_TOKEN_PATH) ?? path.join(hfHome, 'token'), env);
    try {
      token = cleanToken(fs.readFileSync(tokenFile, 'utf8'));
      if (token !== undefined) tokenSource = tokenFile;
    } catch {
      /* no token file: anonymous */
    }
  }
  return { hfHome, hubCache, assetsCache, offline, token, tokenSource, endpoint };
}
