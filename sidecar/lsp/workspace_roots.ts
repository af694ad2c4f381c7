/**
 * Where the language server may read and write outputs and metrics: inside a workspace folder (any of
 * them in a multi-root workspace), or, with no folder open, inside the folder of the config the request
 * names. Models, the factor cache and the Hugging Face cache may live anywhere (they are only read).
 * Paths are compared after resolving symbolic links of their longest existing prefix, so a link inside
 * the workspace that points outside it does not count as inside.
 */
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { InitializeParams, WorkspaceFoldersChangeEvent } from 'vscode-languageserver/node';
import { isInside, realPathLoose } from '../io/output_folder';

const folderPath = (uri: string): string | null => {
  try {
    return uri.startsWith('file:') ? fileURLToPath(uri) : null;
  } catch {
    return null;
  }
};

export class WorkspaceRoots {
  private folders: string[] = [];

  /** The folders of `initialize` (workspaceFolders, else rootUri, else rootPath). */
  initialize(params: InitializeParams): void {
    const list: string[] = [];
    if (Array.isArray(params.workspaceFolders)) {
      for (const f of params.workspaceFolders) {
        const p = typeof f?.uri === 'string' ? folderPath(f.uri) : null;
        if (p) list.push(p);
      }
    } else if (typeof params.rootUri === 'string') {
      const p = folderPath(params.rootUri);
      if (p) list.push(p);
    } else if (typeof params.rootPath === 'string' && params.rootPath !== '') {
      list.push(params.rootPath);
    }
    this.folders = list.map((p) => path.resolve(p));
  }

  change(e: WorkspaceFoldersChangeEvent): void {
    const removed = new Set(e.removed.map((f) => folderPath(f.uri)).filter((p): p is string => p !== null).map((p) => path.resolve(p)));
    const added = e.added.map((f) => folderPath(f.uri)).filter((p): p is string => p !== null).map((p) => path.resolve(p));
    this.folders = [...this.folders.filter((f) => !removed.has(f)), ...added.filter((f) => !this.folders.includes(f))];
  }

  get list(): readonly string[] {
    return this.folders;
  }

  /** The folders outputs may be in: the workspace folders, else the config's folder (none without either). */
  allowedRoots(configFile?: string): string[] {
    if (this.folders.length > 0) return [...this.folders];
    return configFile ? [path.dirname(path.resolve(configFile))] : [];
  }

  /**
   * Why `target` (what `what` names, e.g. "the output folder") may not be read or written, or null when it
   * is inside an allowed root.
   */
  refusal(target: string, what: string, configFile?: string): string | null {
    const roots = this.allowedRoots(configFile);
    const real = realPathLoose(target);
    if (roots.some((r) => isInside(real, realPathLoose(r)))) return null;
    if (roots.length === 0) {
      return `${what} ${target} is refused: with no workspace folder open, the language server reads and writes outputs only beside a config; open the folder that holds it`;
    }
    const where = this.folders.length > 0
      ? `the workspace folder${roots.length > 1 ? 's' : ''} (${roots.join(', ')})`
      : `the config's folder ${roots[0]} (no workspace folder is open)`;
    return `${what} ${target} is outside ${where}: the language server reads and writes outputs and metrics only there; choose a folder inside it, or run the \`loraxs\` CLI for other places`;
  }
}
