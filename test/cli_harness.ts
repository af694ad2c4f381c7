/**
 * The `loraxs` CLI as users run it: `node bin/loraxs.js ARGS` as its own process (the built dist/cli.js),
 * with a factor cache private to the test file. Every CLI test spawns it through here.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { repoRoot, tempDir } from './paths';

export const loraxsBin = path.join(repoRoot, 'bin', 'loraxs.js');

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** A runner with its own factor cache (`LORAXS_CACHE_DIR`); `env` adds variables to every run. */
export function cliRunner(name: string, env: Record<string, string> = {}): (args: string[], cwd?: string) => CliRun {
  const cacheDir = tempDir(`loraxs-${name}-cache-`);
  return (args, cwd = repoRoot) => {
    assert.ok(fs.existsSync(path.join(repoRoot, 'dist', 'cli.js')), 'dist/cli.js is missing: run `npm run build` first');
    const r = spawnSync(process.execPath, [loraxsBin, ...args], {
      cwd, encoding: 'utf8', maxBuffer: 1 << 26, env: { ...process.env, LORAXS_CACHE_DIR: cacheDir, ...env },
    });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
  };
}

export { tinyBertConfig } from './tiny_bert_config';
