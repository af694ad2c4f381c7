/**
 * Which documents the language server handles (`*.loraxs.yaml`, `*.loraxs.yml`) and the file path of a
 * document URI. Only `file:` URIs name files on disk; other schemes (untitled:) are linted as text, with
 * paths resolved against the current folder.
 */
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const CONFIG_SUFFIXES = ['.loraxs.yaml', '.loraxs.yml'];

/** Whether a path or URI names a LoRA-XS config. */
export function isConfigUri(uriOrPath: string): boolean {
  const lower = uriOrPath.toLowerCase();
  return CONFIG_SUFFIXES.some((s) => lower.endsWith(s));
}

/** The file path of a `file:` URI; other schemes give their path part, resolved against the cwd. */
export function uriToPath(uri: string): string {
  if (uri.startsWith('file:')) return fileURLToPath(uri);
  const i = uri.indexOf(':');
  return path.resolve(i >= 0 ? uri.slice(i + 1).replace(/^\/\//, '') : uri);
}
