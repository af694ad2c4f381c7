/**
 * Hub ids (`model: org/name`) through both front ends, as users run them, against the stand-in hub
 * (test/fixtures/hub/stand_in_hub.ts) on 127.0.0.1 with HF_ENDPOINT pointing at it and a temporary HF_HOME:
 *
 * - `loraxs train` on a config with a hub id downloads the tiny BERT once and trains; the adapter records the
 *   id and the commit; a second run works with HF_HUB_OFFLINE=1 and the stand-in stopped; using the adapter
 *   with another commit of the same id warns in one line;
 * - `loraxs params` on a hub id reads config.json and the safetensors header only (Range requests; the
 *   stand-in counts the bytes it serves), and a second run asks for no weight byte;
 * - the language server's hover on `rank:` of a hub-id config in a trusted workspace shows the parameter
 *   count (the headers fetched in the background, never the weights); in an untrusted workspace the
 *   stand-in sees no request at all;
 * - offline and not cached: one line saying so, from the CLI (placed at `model:`) and as the LSP diagnostic;
 * - loraxs/train in the sidecar's job worker: `started` first, then the download's `phase` events; Cancel
 *   (the worker's shared-memory flag) stops the download.
 */
import { test, before, after } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { pathToFileURL } from 'node:url';
import { createHash } from 'node:crypto';
import { HoverRequest } from 'vscode-languageserver-protocol/node';
import { CancelTrainingRequest, TrainProgressNotification, TrainRequest } from '../sidecar/protocol';
import type { Diagnostic, MarkupContent } from 'vscode-languageserver-protocol/node';
import { readSafetensorsHeader } from '../sidecar/io/safetensors';
import { computeParams } from '../sidecar/loraxs/param_counts';
import { fixtures, repoRoot, tempDir } from './paths';
import { tinyBertConfig } from './cli_harness';
import { makeWorkspace } from './workspace';
import { messageText, startSidecar, type LspSession } from './lsp_harness';
import { StandInHub, commitOf, type StandInRepo } from './fixtures/hub/stand_in_hub';

const BERT = 'tiny-org/tiny-bert';
const bin = path.join(repoRoot, 'bin', 'loraxs.js');
const root = tempDir('loraxs-hub-int-');
const read = (...p: string[]): Buffer => fs.readFileSync(path.join(fixtures, ...p));
const WEIGHTS = path.join(fixtures, 'tiny', 'bert', 'seq-cls', 'model.safetensors');
const HEADER_BYTES = 8 + readSafetensorsHeader(WEIGHTS).headerLength;

function repos(): Map<string, StandInRepo> {
  return new Map([[BERT, {
    files: new Map<string, Buffer>([
      ['config.json', read('tiny', 'bert', 'seq-cls', 'config.json')],
      ['model.safetensors', fs.readFileSync(WEIGHTS)],
      ['tokenizer.json', read('hub', 'encoder', 'tokenizer.json')],
      ['tokenizer_config.json', read('hub', 'encoder', 'tokenizer_config.json')],
    ]),
  }]]);
}

let hub: StandInHub;
before(async () => { hub = await StandInHub.start(repos()); });
after(() => hub.stop());

let homes = 0;
/** A fresh HF_HOME; the environment of the spawned processes (no token, cache or offline setting of the caller leaks in). */
function hfEnv(home: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    HF_HOME: home, HF_ENDPOINT: hub.hubUrl, HF_HUB_CACHE: '', HUGGINGFACE_HUB_CACHE: '', HF_ASSETS_CACHE: '', HUGGINGFACE_ASSETS_CACHE: '',
    HF_TOKEN: '', HUGGING_FACE_HUB_TOKEN: '', HF_TOKEN_PATH: '', HF_HUB_OFFLINE: '', TRANSFORMERS_OFFLINE: '',
    LORAXS_CACHE_DIR: path.join(root, 'loraxs-cache'), ...extra,
  };
}
function freshHome(): string {
  const home = path.join(root, `home-${++homes}`);
  fs.mkdirSync(home);
  return home;
}

/** `loraxs ...` as users run it (asynchronously: the stand-in hub answers in this process). */
function loraxs(args: string[], cwd: string, env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  assert.ok(fs.existsSync(path.join(repoRoot, 'dist', 'cli.js')), 'dist/cli.js is missing: run `npm run build` first');
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [bin, ...args], { cwd, env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    p.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    p.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const CONFIG = tinyBertConfig(BERT);

/** The stand-in's CDN requests so far (the weights live only there). */
const cdnRequests = () => hub.log.filter((r) => r.server === 'cdn');

/** What the CLI printed as errors: lines that are not progress. */
const errorLines = (stderr: string): string[] => stderr.split('\n').filter((l) => l.trim() !== '');

test('loraxs train on `model: org/name` downloads once and trains; the adapter records the commit; offline with the hub stopped it trains again', async () => {
  const home = freshHome();
  const ws = makeWorkspace('bert', 'seq-cls');
  const cfg = ws.config('hub', CONFIG);
  const env = hfEnv(home);
  const before = cdnRequests().length;
  const first = await loraxs(['train', cfg], ws.dir, env);
  assert.equal(first.code, 0, first.stderr);
  assert.match(first.stderr, /^download \S+: (\d+)\/\1$/m, 'download progress on stderr, to its end');
  assert.match(first.stderr, new RegExp(`model ${BERT}: commit ${commitOf(BERT)}`));
  const weightBytes = cdnRequests().slice(before).reduce((s, r) => s + r.bytes, 0);
  assert.equal(weightBytes, fs.statSync(WEIGHTS).size, 'the weights were downloaded once, whole');
  const snapshot = path.join(home, 'hub', `models--${BERT.replace('/', '--')}`, 'snapshots', commitOf(BERT));
  assert.ok(fs.lstatSync(path.join(snapshot, 'model.safetensors')).isSymbolicLink(), 'huggingface_hub layout');

  const adapter = JSON.parse(fs.readFileSync(path.join(ws.dir, 'out', 'loraxs_config.json'), 'utf8')) as { base_model: Record<string, string> };
  assert.equal(adapter.base_model.hub_id, BERT);
  assert.equal(adapter.base_model.commit, commitOf(BERT));
  assert.equal(adapter.base_model.path, snapshot);

  // A second run downloads nothing more (online: HEADs only).
  const again = await loraxs(['train', cfg, '--overwrite'], ws.dir, env);
  assert.equal(again.code, 0, again.stderr);
  assert.equal(cdnRequests().slice(before).reduce((s, r) => s + r.bytes, 0), weightBytes, 'nothing downloaded twice');

  // Offline, with the stand-in stopped: the cache alone.
  await hub.stop();
  try {
    const offline = await loraxs(['train', cfg, '--overwrite'], ws.dir, { ...env, HF_HUB_OFFLINE: '1' });
    assert.equal(offline.code, 0, offline.stderr);
    assert.match(offline.stderr, /from the Hugging Face cache/);
    const exported = await loraxs(['export', '--adapter', path.join(ws.dir, 'out'), '--model', BERT, '--format', 'peft-lora', '--out', path.join(ws.dir, 'peft')], ws.dir, { ...env, HF_HUB_OFFLINE: '1' });
    assert.equal(exported.code, 0, exported.stderr);

    // The adapter used with another commit of the same id: one warning line.
    const file = path.join(ws.dir, 'out', 'loraxs_config.json');
    const other = JSON.parse(fs.readFileSync(file, 'utf8')) as { base_model: Record<string, string> };
    other.base_model.commit = 'f'.repeat(40);
    fs.writeFileSync(file, JSON.stringify(other, null, 2) + '\n');
    const evaluated = await loraxs(['eval', cfg, '--adapter', path.join(ws.dir, 'out'), '--json'], ws.dir, { ...env, HF_HUB_OFFLINE: '1' });
    assert.equal(evaluated.code, 0, evaluated.stderr);
    const warnings = errorLines(evaluated.stderr).filter((l) => l.includes('trained on'));
    assert.equal(warnings.length, 1, evaluated.stderr);
    assert.match(warnings[0], new RegExp(`^warning: this adapter was trained on ${BERT} at commit ffffffffffff, but the model is now commit ${commitOf(BERT).slice(0, 12)}`));
  } finally {
    hub = await StandInHub.start(repos());
  }
});

test('loraxs params on a hub id reads config.json and the safetensors header only (Range requests), then the cache', async () => {
  const home = freshHome();
  const ws = makeWorkspace('bert', 'seq-cls');
  const cfg = ws.config('params', CONFIG);
  const env = hfEnv(home);
  hub.log.length = 0;
  const first = await loraxs(['params', cfg, '--json'], ws.dir, env);
  assert.equal(first.code, 0, first.stderr);
  const report = JSON.parse(first.stdout) as { loraxs: number; baseParams: number; baseParamsFrom: string };
  const local = computeParams({ model: path.dirname(WEIGHTS), adapter: { rank: 4, targets: ['query', 'value'], rankPattern: {} } });
  assert.equal(report.loraxs, local.loraxs);
  assert.equal(report.baseParams, local.baseParams);
  assert.equal(report.baseParamsFrom, 'safetensors');
  const cdn = cdnRequests();
  assert.ok(cdn.length > 0 && cdn.every((r) => r.range !== undefined), `only Range requests: ${JSON.stringify(cdn)}`);
  assert.equal(cdn.reduce((s, r) => s + r.bytes, 0), HEADER_BYTES, 'the header and nothing after it');
  assert.ok(!fs.existsSync(path.join(home, 'hub', `models--${BERT.replace('/', '--')}`, 'snapshots', commitOf(BERT), 'model.safetensors')), 'no weights in the cache');

  hub.log.length = 0;
  const second = await loraxs(['params', cfg, '--json'], ws.dir, { ...env, HF_HUB_OFFLINE: '1' });
  assert.equal(second.code, 0, second.stderr);
  assert.equal(JSON.parse(second.stdout).loraxs, local.loraxs);
  assert.equal(hub.log.length, 0, 'offline: no request');
});

test('offline and not cached: one line, placed at model:, from the CLI', async () => {
  const ws = makeWorkspace('bert', 'seq-cls');
  const cfg = ws.config('offline', CONFIG);
  hub.log.length = 0;
  for (const args of [['train', cfg], ['params', cfg]]) {
    const r = await loraxs(args, ws.dir, hfEnv(freshHome(), { HF_HUB_OFFLINE: '1' }));
    assert.equal(r.code, 1, r.stderr);
    const lines = errorLines(r.stderr);
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0], new RegExp(`error: ${cfg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:1:1: ${BERT} is not in the Hugging Face cache .* HF_HUB_OFFLINE is set`));
  }
  assert.equal(hub.log.length, 0);
});

// ---------------------------------------------------------------------------------------------------------
// The language server

const LSP_CONFIG = `model: ${BERT}
adapter:
  rank: 4
  targets: [query, value]
`;
const RANK = { line: 2, character: 3 };

async function withLsp<T>(trusted: boolean, env: Record<string, string>, f: (s: LspSession, uri: string) => Promise<T>): Promise<T> {
  const dir = tempDir('loraxs-hub-lsp-');
  const file = path.join(dir, 'hub.loraxs.yaml');
  fs.writeFileSync(file, LSP_CONFIG);
  const s = await startSidecar({ trusted, rootDir: dir, env });
  try {
    return await f(s, pathToFileURL(file).href);
  } finally {
    await s.stop();
  }
}

const hoverText = async (s: LspSession, uri: string): Promise<string> => {
  const h = await s.conn.sendRequest(HoverRequest.type, { textDocument: { uri }, position: RANK });
  return h ? (h.contents as MarkupContent).value : '';
};

test('LSP, trusted: hover on rank: of a hub-id config shows the parameter count; only headers were fetched', async () => {
  const local = computeParams({ model: path.dirname(WEIGHTS), adapter: { rank: 4, targets: ['query', 'value'], rankPattern: {} } });
  hub.log.length = 0;
  await withLsp(true, hfEnv(freshHome()), async (s, uri) => {
    // A target the model lacks: reported once the headers have landed (the server lints again by itself).
    s.open(uri, LSP_CONFIG.replace('value]', 'valeu]'));
    const published = (s as unknown as { diagnostics: Map<string, Array<{ diagnostics: Diagnostic[] }>> }).diagnostics;
    const targetError = () => (published.get(uri) ?? []).some((p) => p.diagnostics.some((d) => messageText(d.message).includes("target 'valeu' matches no module")));
    await s.until(targetError, 'the target error after the headers landed');
    s.change(uri, LSP_CONFIG);
    const md = await hoverText(s, uri);
    assert.match(md, new RegExp(`LoRA-XS: ${local.loraxs.toLocaleString('en-US')} trainable parameters`), md);
    const diags = await s.diagnosticsOf(uri);
    assert.deepEqual(diags.map((d) => messageText(d.message)), []);
  });
  const cdn = cdnRequests();
  assert.ok(cdn.length > 0 && cdn.every((r) => r.range !== undefined), `only Range requests: ${JSON.stringify(cdn)}`);
  assert.equal(cdn.reduce((s, r) => s + r.bytes, 0), HEADER_BYTES, 'the header and nothing after it');
});

test('LSP, untrusted: the stand-in sees no request at all', async () => {
  hub.log.length = 0;
  await withLsp(false, hfEnv(freshHome()), async (s, uri) => {
    s.open(uri, LSP_CONFIG);
    const diags = await s.diagnosticsOf(uri);
    assert.deepEqual(diags.map((d) => messageText(d.message)), []);
    const md = await hoverText(s, uri);
    assert.ok(!md.includes('trainable parameters'), md);
  });
  assert.deepEqual(hub.log, []);
});

test('LSP, offline and not cached: the one-line error on model:, and no request', async () => {
  hub.log.length = 0;
  await withLsp(true, hfEnv(freshHome(), { HF_HUB_OFFLINE: '1' }), async (s, uri) => {
    s.open(uri, LSP_CONFIG);
    const diags = await s.diagnosticsOf(uri);
    const errors = diags.filter((d) => d.severity === 1);
    assert.equal(errors.length, 1, JSON.stringify(diags));
    assert.match(messageText(errors[0].message), new RegExp(`^${BERT} is not in the Hugging Face cache .* HF_HUB_OFFLINE is set`));
    assert.ok(!messageText(errors[0].message).includes('\n'));
    assert.deepEqual(errors[0].range.start, { line: 0, character: 7 });
  });
  assert.deepEqual(hub.log, []);
});

test('LSP, trusted: loraxs/train on a hub id downloads in the job worker with progress after started; Cancel stops the download and keeps the bytes received', async () => {
  const home = freshHome();
  const ws = makeWorkspace('bert', 'seq-cls');
  const file = ws.config('hub', CONFIG);
  const uri = pathToFileURL(file).href;
  const sha = createHash('sha256').update(fs.readFileSync(WEIGHTS)).digest('hex');
  hub.stallOnce.set(sha, 30_000);
  const s = await startSidecar({ trusted: true, rootDir: ws.dir, env: hfEnv(home) });
  try {
    const progress = s.collect(TrainProgressNotification.type);
    const running = s.conn.sendRequest(TrainRequest.type, { uri, runId: 'hub-run' });
    await s.until(() => progress.some((p) => p.kind === 'phase' && p.phase === 'download model.safetensors' && p.done > 0), 'download progress');
    assert.equal(progress[0].kind, 'started', 'the job starts before it downloads, so the client follows its progress');
    assert.deepEqual(await s.conn.sendRequest(CancelTrainingRequest.type, { runId: 'hub-run' }), { cancelled: true });
    await assert.rejects(running, (e: Error) => /download of model\.safetensors from tiny-org\/tiny-bert cancelled/.test(e.message) && !e.message.includes('\n'));
  } finally {
    await s.stop();
  }
  const blobs = path.join(home, 'hub', `models--${BERT.replace('/', '--')}`, 'blobs');
  assert.ok(fs.statSync(path.join(blobs, `${sha}.incomplete`)).size > 0, 'the bytes received are kept');
  const again = await loraxs(['params', file, '--json'], ws.dir, hfEnv(home));
  assert.equal(again.code, 0, again.stderr);
});
