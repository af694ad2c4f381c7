/**
 * The language server against bad input, as a client (or anything else writing to its stdin) could send
 * it: the real bundle (dist/sidecar.js --stdio) fed raw bytes. Each framing error makes the server exit
 * non-zero (so the client's back-off restarts it); requests with bad params get InvalidParams; outputs and
 * metrics outside the workspace are refused; untitled documents get syntax and schema checks; documents
 * over 1 MB get syntax checks only. Also the lint added with them: max_length above the model's positions,
 * a non-UTF-8 config, a run with no update at lr > 0, messages capped at 2 KB.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  CodeActionRequest, HoverRequest, InitializeRequest, InitializedNotification, StreamMessageReader, StreamMessageWriter, createProtocolConnection,
} from 'vscode-languageserver-protocol/node';
import { GOOD_CONFIG, LspSession, makeWorkspace, messageText, sidecarBundle, withSidecar } from './lsp_harness';
import { repoRoot, tempDir } from './paths';
import { parseConfigText } from '../sidecar/config/parse';

const INVALID_PARAMS = -32602;
/** The partial-message timeout the framing tests give the server (ms). */
const PARTIAL_TIMEOUT_MS = 500;
/** How long a bad framing may take to stop the server: generous, this is not a timing test. */
const EXIT_WAIT_MS = 30000;

function frame(body: string | Buffer, length?: number | string): Buffer {
  const b = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
  return Buffer.concat([Buffer.from(`Content-Length: ${length ?? b.length}\r\n\r\n`, 'latin1'), b]);
}

const request = (id: number, method: string, params: unknown): string => JSON.stringify({ jsonrpc: '2.0', id, method, params });

interface RawRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** True when the server did not exit by itself within EXIT_WAIT_MS (it was then killed). */
  hung: boolean;
}

/** Starts the server, writes `bytes` to its stdin (keeping stdin open), and waits for it to exit. */
async function feedRaw(bytes: Buffer, opts: { endAfterMs?: number } = {}): Promise<RawRun> {
  assert.ok(fs.existsSync(sidecarBundle), `${sidecarBundle} is missing: run \`npm run build\` first`);
  const proc = spawn(process.execPath, [sidecarBundle, '--stdio'], {
    stdio: 'pipe', env: { ...process.env, LORAXS_LSP_PARTIAL_MESSAGE_TIMEOUT_MS: String(PARTIAL_TIMEOUT_MS) },
  });
  let stdout = '';
  let stderr = '';
  proc.stdout.on('data', (d: Buffer) => (stdout += d.toString('latin1')));
  proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  proc.stdin.on('error', () => undefined); // the server may exit before reading everything
  proc.stdin.write(bytes);
  let hung = false;
  const killer = setTimeout(() => {
    hung = true;
    proc.kill('SIGKILL');
  }, EXIT_WAIT_MS);
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => proc.once('exit', (c, s) => resolve([c, s])));
  clearTimeout(killer);
  return { code, signal, stdout, stderr, hung };
}

const body = request(1, 'loraxs/params', { uri: 'file:///tmp/x.loraxs.yaml' });
const FRAMING_CASES: Array<{ name: string; bytes: Buffer; why: RegExp }> = [
  { name: 'Content-Length too short', bytes: frame(body, 10), why: /JSON|Unexpected|Expected/i },
  { name: 'Content-Length not a number', bytes: frame(body, 'abc'), why: /not a number/ },
  { name: 'Content-Length negative', bytes: frame(body, '-5'), why: /not a number/ },
  { name: 'Content-Length longer than what arrives', bytes: frame(body, Buffer.byteLength(body) + 100), why: /stopped arriving/ },
  { name: 'Content-Length 99999999999', bytes: frame(body, '99999999999'), why: /above the limit/ },
  { name: 'Content-Length 0', bytes: frame('', 0), why: /empty message/ },
  { name: 'no Content-Length header', bytes: Buffer.concat([Buffer.from('Content-Type: application/vscode-jsonrpc\r\n\r\n'), Buffer.from(body)]), why: /no Content-Length/ },
  { name: 'a header line without a colon', bytes: Buffer.concat([Buffer.from('hello world\r\n\r\n'), Buffer.from(body)]), why: /not 'Name: value'/ },
  { name: 'a header that never ends', bytes: Buffer.from('Content-Length: 50\r\n'), why: /header stopped arriving/ },
  { name: 'a header over 8 KB', bytes: Buffer.from(`X-Junk: ${'x'.repeat(10000)}`), why: /over 8192 bytes/ },
  { name: 'a body that is not JSON', bytes: frame('this is not json at all'), why: /JSON|Unexpected/i },
];

for (const c of FRAMING_CASES) {
  test(`framing: ${c.name} -> the server logs it and exits non-zero`, async () => {
    const r = await feedRaw(c.bytes);
    assert.equal(r.hung, false, `the server did not exit within ${EXIT_WAIT_MS} ms; stderr: ${r.stderr}`);
    assert.equal(r.signal, null);
    assert.notEqual(r.code, 0, `exit code ${r.code}`);
    assert.match(r.stderr, /LSP framing error/);
    assert.match(r.stderr, c.why);
    assert.doesNotMatch(r.stderr, /^\s+at /m, 'no stack trace');
  });
}

test('framing: a good message after a bad-params one is still answered, in raw bytes', async () => {
  const bytes = Buffer.concat([
    frame(request(1, 'loraxs/params', { uri: 12345 })),
    frame(request(2, 'loraxs/readMetrics', {})),
    frame(request(3, 'shutdown', null)),
    frame(JSON.stringify({ jsonrpc: '2.0', method: 'exit' })),
  ]);
  const r = await feedRaw(bytes);
  assert.equal(r.hung, false, r.stderr);
  assert.equal(r.code, 0, `exit after shutdown + exit; stderr: ${r.stderr}`);
  const replies = r.stdout.split(/Content-Length: \d+\r\n\r\n/).filter((s) => s.trim()).map((s) => JSON.parse(s) as { id?: number; error?: { code: number; message: string } });
  const byId = new Map(replies.filter((m) => m.id !== undefined).map((m) => [m.id, m]));
  assert.equal(byId.get(1)?.error?.code, INVALID_PARAMS);
  assert.match(byId.get(1)!.error!.message, /loraxs\/params: uri must be a string, got 12345/);
  assert.doesNotMatch(byId.get(1)!.error!.message, /internal error|startsWith/);
  assert.equal(byId.get(2)?.error?.code, INVALID_PARAMS);
  assert.match(byId.get(2)!.error!.message, /needs output .* or uri/);
});

test('framing: stdin closing without shutdown exits 1; a clean exit stays 0', async () => {
  const proc = spawn(process.execPath, [sidecarBundle, '--stdio'], { stdio: 'pipe' });
  proc.stdin.end();
  const code = await new Promise<number | null>((resolve) => proc.once('exit', (c) => resolve(c)));
  assert.equal(code, 1);
});

// ---------------------------------------------------------------------------------------------------
// Params of the custom requests

async function rejectsWith(s: LspSession, method: string, params: unknown, message: RegExp, code = INVALID_PARAMS): Promise<void> {
  await assert.rejects(s.conn.sendRequest(method, params), (e: Error & { code?: number }) => {
    assert.equal(e.code, code, `${method} ${JSON.stringify(params)}: code ${e.code}, message ${e.message}`);
    assert.match(e.message, message);
    assert.doesNotMatch(e.message, /internal error|is not a function|Cannot read properties/);
    return true;
  });
}

test('every custom request validates its params: InvalidParams naming the field', async () => {
  const ws = makeWorkspace();
  const { uri } = ws.config('good', GOOD_CONFIG);
  await withSidecar({ trusted: true, rootDir: ws.dir }, async (s) => {
    await rejectsWith(s, 'loraxs/params', { uri: 12345 }, /uri must be a string, got 12345/);
    await rejectsWith(s, 'loraxs/params', null, /params must be an object/);
    await rejectsWith(s, 'loraxs/params', { uri: 'untitled:Untitled-1' }, /uri must be a file: URI .*untitled/);
    await rejectsWith(s, 'loraxs/params', { uri: 'file://host%zz/x' }, /uri is not a valid file: URI/);
    await rejectsWith(s, 'loraxs/params', {}, /uri is required/);
    await rejectsWith(s, 'loraxs/readMetrics', { output: 42 }, /output must be a string/);
    await rejectsWith(s, 'loraxs/readMetrics', { uri: ['a'] }, /uri must be a string/);
    await rejectsWith(s, 'loraxs/train', { uri, resume: 'yes' }, /resume must be true or false/);
    await rejectsWith(s, 'loraxs/train', { uri: 'untitled:Untitled-2' }, /file: URI/);
    await rejectsWith(s, 'loraxs/train', { uri, runId: {} }, /runId must be a string/);
    await rejectsWith(s, 'loraxs/cancelTraining', { runId: 7 }, /runId must be a string/);
    await rejectsWith(s, 'loraxs/merge', { uri, adapterDir: 5, outDir: path.join(ws.dir, 'm') }, /adapterDir must be a string/);
    await rejectsWith(s, 'loraxs/merge', { uri, adapterDir: 'a', outDir: '/' }, /outDir\) \/ is outside the workspace folder/);
    await rejectsWith(s, 'loraxs/export', { adapterDir: 'a', format: 'zip', outDir: path.join(ws.dir, 'e') }, /format must be one of peft-lora/);
    await rejectsWith(s, 'loraxs/export', { adapterDir: 'a', format: 'peft-lora', outDir: tempDir('loraxs-elsewhere-') }, /outside the workspace/);
    await rejectsWith(s, 'loraxs/ablate', { uri, kind: 'nope' }, /kind must be one of retention, delta, init, spectra/);
    await rejectsWith(s, 'loraxs/ablate', { uri, kind: 'retention', fractions: [0.5, 'x'] }, /fractions\[1\] must be a number/);
    await rejectsWith(s, 'loraxs/cancelAblation', { jobId: false }, /jobId must be a string/);
    await rejectsWith(s, 'loraxs/readAnalysis', { uri: 42 }, /uri must be a string/);
    // Valid params still work.
    const report = await s.conn.sendRequest('loraxs/params', { uri }) as { loraxs: number };
    assert.ok(report.loraxs > 0);
    assert.deepEqual(await s.conn.sendRequest('loraxs/cancelTraining', {}), { cancelled: false });
  });
});

test('readMetrics: refused outside the workspace folders, allowed inside; train refuses an output outside', async () => {
  const ws = makeWorkspace();
  const other = makeWorkspace();
  const { uri } = ws.config('good', GOOD_CONFIG);
  const outside = ws.config('outside', `${GOOD_CONFIG}output: /etc\n`);
  await withSidecar({ trusted: true, rootDir: ws.dir }, async (s) => {
    await rejectsWith(s, 'loraxs/readMetrics', { output: '/etc' }, /output folder \/etc is outside the workspace folder/);
    await rejectsWith(s, 'loraxs/readMetrics', { output: path.join(ws.dir, '..') }, /outside the workspace/);
    await rejectsWith(s, 'loraxs/readMetrics', { output: path.join(ws.dir, 'runs', '..', '..', 'x') }, /outside the workspace/);
    await rejectsWith(s, 'loraxs/readMetrics', { uri: outside.uri }, /output folder \/etc is outside/);
    await rejectsWith(s, 'loraxs/train', { uri: outside.uri }, /output folder \/etc is outside/);
    await rejectsWith(s, 'loraxs/readAnalysis', { uri: outside.uri }, /\/etc is outside/);
    // A link inside the workspace that leads out of it does not count as inside.
    fs.symlinkSync(other.dir, path.join(ws.dir, 'link'));
    await rejectsWith(s, 'loraxs/readMetrics', { output: path.join(ws.dir, 'link', 'runs') }, /outside the workspace/);
    const read = await s.conn.sendRequest('loraxs/readMetrics', { uri }) as { output: string; records: unknown[] };
    assert.equal(read.output, path.join(ws.dir, 'runs', 'good'));
    assert.deepEqual(read.records, []);
    const direct = await s.conn.sendRequest('loraxs/readMetrics', { output: path.join(ws.dir, 'runs', 'good') }) as { records: unknown[] };
    assert.deepEqual(direct.records, []);
  });
});

test('readMetrics with no workspace folder open: only beside the config', async () => {
  const ws = makeWorkspace();
  const { uri } = ws.config('good', GOOD_CONFIG);
  const bare = await startBare();
  try {
    const read = await bare.conn.sendRequest('loraxs/readMetrics', { uri }) as { output: string };
    assert.equal(read.output, path.join(ws.dir, 'runs', 'good'));
    await rejectsWith(bare, 'loraxs/readMetrics', { output: path.join(ws.dir, 'runs', 'good') }, /no workspace folder open/);
    await rejectsWith(bare, 'loraxs/readMetrics', { uri, output: '/etc' }, /outside the config's folder/);
  } finally {
    await bare.stop();
  }
});

/** A sidecar initialised without rootUri or workspace folders. */
async function startBare(): Promise<LspSession> {
  const proc = spawn(process.execPath, [sidecarBundle, '--stdio'], { stdio: 'pipe' });
  const conn = createProtocolConnection(new StreamMessageReader(proc.stdout), new StreamMessageWriter(proc.stdin));
  const session = new LspSession(proc, conn);
  conn.listen();
  await conn.sendRequest(InitializeRequest.type, { processId: process.pid, rootUri: null, capabilities: {}, workspaceFolders: null, initializationOptions: { trusted: true, diagnosticsDelayMs: 20 } });
  await conn.sendNotification(InitializedNotification.type, {});
  return session;
}

// ---------------------------------------------------------------------------------------------------
// Documents: untitled, large

test('untitled: documents get syntax and schema diagnostics, nothing read from disk', async () => {
  const ws = makeWorkspace();
  await withSidecar({ trusted: true, rootDir: ws.dir }, async (s) => {
    const uri = 'untitled:Untitled-1';
    s.open(uri, 'model: no-such-model-folder\nadapter:\n  rank: 4\n  rnak: 3\n');
    const d = await s.diagnosticsOf(uri);
    assert.equal(d.length, 1, JSON.stringify(d));
    assert.match(messageText(d[0].message), /unknown key 'rnak' in adapter \(did you mean 'rank'\?\)/);
    s.change(uri, 'model: [unclosed\n');
    const broken = await s.diagnosticsOf(uri);
    assert.ok(broken.some((x) => /YAML syntax error/.test(messageText(x.message))), JSON.stringify(broken));
    // Disk-bound requests refuse it.
    await rejectsWith(s, 'loraxs/params', { uri }, /file: URI/);
  });
});

test('a document over 1 MB gets syntax checks only (in a worker), and no hover', async () => {
  const ws = makeWorkspace();
  const items = Array.from({ length: 200000 }, (_, i) => `    - q${i % 100}`).join('\n');
  const big = `${GOOD_CONFIG}  unknown_training_key: 1\nanalysis:\n  fractions:\n${items.replace(/ {4}- q\d+/g, '    - 0.5')}\n`;
  assert.ok(Buffer.byteLength(big) > 1024 * 1024);
  const { uri } = ws.config('big', big);
  const brokenText = `${big}model: [unclosed\n`;
  const broken = ws.config('broken', brokenText);
  await withSidecar({ trusted: true, rootDir: ws.dir }, async (s) => {
    s.open(uri, big);
    const d = await s.diagnosticsOf(uri);
    assert.equal(d.length, 1, JSON.stringify(d.map((x) => x.message)));
    assert.match(messageText(d[0].message), /over the 1 MB limit for full checks: only its YAML syntax is checked/);
    const hover = await s.conn.sendRequest(HoverRequest.type, { textDocument: { uri }, position: { line: 9, character: 3 } });
    assert.equal(hover, null);
    await assert.rejects(s.conn.sendRequest('loraxs/params', { uri }), /over the 1 MB limit/);
    s.open(broken.uri, brokenText);
    const db = await s.diagnosticsOf(broken.uri);
    assert.ok(db.some((x) => /YAML syntax error/.test(messageText(x.message))), JSON.stringify(db.map((x) => x.message)));
    assert.ok(!db.some((x) => /unknown key/.test(messageText(x.message))));
  });
});

// ---------------------------------------------------------------------------------------------------
// Lint

test('lint: max_length above the model positions is an error with a quick fix; lr 0 is an error and a one-update warmup run (lr 0 for its only update) warns', async () => {
  const ws = makeWorkspace();
  const over = ws.config('over', GOOD_CONFIG.replace('max_length: 16', 'max_length: 100000'));
  const lr0 = ws.config('lr0', GOOD_CONFIG.replace('lr: 0.01', 'lr: 0'));
  const oneStep = ws.config('one', GOOD_CONFIG.replace('batch_size: 4', 'batch_size: 64').replace('lr: 0.01', 'lr: 0.01\n  warmup_ratio: 0.1'));
  await withSidecar({ trusted: true, rootDir: ws.dir }, async (s) => {
    s.open(over.uri, fs.readFileSync(over.file, 'utf8'));
    const d = await s.diagnosticsOf(over.uri);
    assert.equal(d.length, 1, JSON.stringify(d));
    assert.equal(d[0].severity, 1);
    assert.match(messageText(d[0].message), /training\.max_length 100000 exceeds the model's 64 positions/);
    const actions = await s.conn.sendRequest(CodeActionRequest.type, { textDocument: { uri: over.uri }, range: d[0].range, context: { diagnostics: [d[0]] } });
    assert.ok(actions && actions.length === 1);
    const edit = (actions[0] as { edit: { changes: Record<string, Array<{ newText: string }>> } }).edit.changes[over.uri][0];
    assert.equal(edit.newText, '64');

    s.open(lr0.uri, fs.readFileSync(lr0.file, 'utf8'));
    // lr 0 is a schema error already.
    const d0 = await s.diagnosticsOf(lr0.uri);
    assert.equal(d0.length, 1, JSON.stringify(d0));
    assert.equal(d0[0].severity, 1);
    assert.match(messageText(d0[0].message), /training\.lr must be > 0/);

    s.open(oneStep.uri, fs.readFileSync(oneStep.file, 'utf8'));
    const d1 = await s.diagnosticsOf(oneStep.uri);
    assert.equal(d1.length, 1, JSON.stringify(d1));
    assert.match(messageText(d1[0].message), /single update .* warmup_ratio 0\.1 gives that update lr 0/);
  });
});

const cli = (args: string[], cwd = repoRoot) => spawnSync(process.execPath, [path.join(repoRoot, 'bin', 'loraxs.js'), ...args], { cwd, encoding: 'utf8', timeout: 120000 });

test('lint: a non-UTF-8 config is an error at its first bad byte, in the CLI and the server', async () => {
  const ws = makeWorkspace();
  const text = GOOD_CONFIG.replace('label: label', 'label: lab\xe9l');
  const file = path.join(ws.dir, 'latin1.loraxs.yaml');
  fs.writeFileSync(file, Buffer.from(text, 'latin1'));
  const r = cli(['params', file]);
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /latin1\.loraxs\.yaml:7:13: the config is not valid UTF-8: byte 0xE9 at line 7, column 13/);
  assert.doesNotMatch(r.stderr, /data file|train\.tsv|^\s+at /m);
  const t = cli(['train', file]);
  assert.match(t.stderr, /not valid UTF-8: byte 0xE9 at line 7/);
  await withSidecar({ trusted: true, rootDir: ws.dir }, async (s) => {
    const uri = pathToFileURL(file).href;
    await assert.rejects(s.conn.sendRequest('loraxs/params', { uri }), /not valid UTF-8: byte 0xE9 at line 7, column 13/);
    // VS Code decodes such a file with U+FFFD where the byte was.
    s.open(uri, fs.readFileSync(file, 'utf8'));
    const d = await s.diagnosticsOf(uri);
    assert.equal(d.length, 1);
    assert.match(messageText(d[0].message), /not valid UTF-8/);
    assert.deepEqual(d[0].range.start, { line: 6, character: 12 });
  });
});

test('lint: messages are capped at 2 KB ("… and N more")', () => {
  const names = Array.from({ length: 600000 }, (_, i) => `c${i}`);
  const text = `model: m\ntask: classification\ndata:\n  train: t.tsv\n  text: sentence\n  label: label\n  columns: [${names.join(', ')}]\nadapter: {rank: 4}\n`;
  const { problems } = parseConfigText(text, path.join(tempDir(), 'c.loraxs.yaml'), { readModel: false });
  assert.ok(problems.length >= 1);
  for (const p of problems) assert.ok(Buffer.byteLength(p.message) <= 2048, `${Buffer.byteLength(p.message)} bytes: ${p.message.slice(0, 200)}`);
  assert.match(problems[0].message, /… and \d+ more/);
  const ws = makeWorkspace();
  const file = path.join(ws.dir, 'wide.loraxs.yaml');
  fs.writeFileSync(file, text);
  const r = cli(['params', file]);
  assert.equal(r.status, 1);
  assert.ok(Buffer.byteLength(r.stderr) <= 4096, `${Buffer.byteLength(r.stderr)} bytes of stderr`);
});
