/**
 * Telling a hub id (`org/name`) from a local folder in `model:` / `--model`, and validating ids with the
 * rules the hub applies (huggingface_hub's `validate_repo_id`): one `/`, each part letters, digits, `-`, `_`
 * and `.`, at most 96 characters per part, no `--` or `..`, not starting or ending with `-` or `.`, not
 * ending in `.git`.
 *
 * A path that exists on disk always wins. Bare names (`gpt2`) are never hub ids here: the hub still
 * redirects them to `org/name`, but they are too easily a folder name with a typo.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LoraxsError } from '../errors';

export type ModelRef =
  | { kind: 'folder'; path: string }
  | { kind: 'hub'; id: string };

const PART = /^[A-Za-z0-9_.-]{1,96}$/;

/** Why `id` is not a valid hub id, or undefined when it is one. */
export function repoIdProblem(id: string): string | undefined {
  const parts = id.split('/');
  if (parts.length !== 2) return `a hub id is 'org/name' with exactly one '/'`;
  for (const p of parts) {
    if (!PART.test(p)) return `'${p}' may contain only letters, digits, '-', '_' and '.', at most 96 characters`;
    if (/^[-.]|[-.]$/.test(p)) return `'${p}' may not start or end with '-' or '.'`;
  }
  if (id.includes('--') || id.includes('..')) return `'--' and '..' are not allowed in a hub id`;
  if (id.endsWith('.git')) return `a hub id does not end in '.git'`;
  return undefined;
}

/** True when `s` has the shape of a hub id `org/name` (it may still not exist on the hub). */
export function isHubRepoId(s: string): boolean {
  return repoIdProblem(s) === undefined;
}

/** Throws a one-line LoraxsError when `id` is not a valid hub id. */
export function checkRepoId(id: string): void {
  const why = repoIdProblem(id);
  if (why !== undefined) throw new LoraxsError(`'${id}' is not a valid Hugging Face model id: ${why}`);
}

/**
 * What a `model:` value names. Relative paths resolve against `baseDir` (the config file's folder, or the
 * working directory). An existing path is a folder; a string shaped like `org/name` that is not on disk is
 * a hub id; anything else is a folder (and opening it reports that it does not exist).
 */
export function parseModelRef(spec: string, baseDir: string = process.cwd()): ModelRef {
  const local = path.resolve(baseDir, spec);
  if (fs.existsSync(local)) return { kind: 'folder', path: local };
  const looksLikePath = spec.startsWith('.') || spec.startsWith('~') || path.isAbsolute(spec) || spec.includes('\\') || spec.endsWith('/');
  if (!looksLikePath && isHubRepoId(spec)) return { kind: 'hub', id: spec };
  return { kind: 'folder', path: local };
}
