/**
 * Talking to the real sidecar over the real LSP protocol: spawns `node dist/sidecar.js --stdio` and
 * connects with vscode-languageserver-protocol's StreamMessageReader/Writer. Also writes a workspace with
 * a tiny BERT model (test/fixtures/tiny/bert/seq-cls plus a WordPiece tokenizer.json) and TSV data.
 */
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  DidChangeTextDocumentNotification, DidOpenTextDocumentNotification, ExitNotification, InitializeRequest,
  InitializedNotification, LogMessageNotification, PublishDiagnosticsNotification, ShutdownRequest,
  StreamMessageReader, StreamMessageWriter, createProtocolConnection,
} from 'vscode-languageserver-protocol/node';
import type { Diagnostic, NotificationType, ProtocolConnection } from 'vscode-languageserver-protocol/node';
import { fixtures, repoRoot, tempDir } from './paths';

/** The text of a message that may be Markdown (LSP 3.18 allows MarkupContent in diagnostics and logs). */
export function messageText(m: string | { value: string }): string {
  return typeof m === 'string' ? m : m.value;
}

export const sidecarBundle = path.join(repoRoot, 'dist', 'sidecar.js');

/** A running sidecar and the notifications it sent. */
export class LspSession {
  readonly logs: string[] = [];
  private readonly diagnostics = new Map<string, { version?: number; diagnostics: Diagnostic[] }[]>();
  private readonly waiters: Array<() => void> = [];
  private readonly versions = new Map<string, number>();

  constructor(readonly proc: ChildProcessWithoutNullStreams, readonly conn: ProtocolConnection) {
    conn.onNotification(PublishDiagnosticsNotification.type, (p) => {
      const list = this.diagnostics.get(p.uri) ?? [];
      list.push({ version: p.version, diagnostics: p.diagnostics });
      this.diagnostics.set(p.uri, list);
      this.wake();
    });
    conn.onNotification(LogMessageNotification.type, (p) => {
      this.logs.push(messageText(p.message));
    });
    proc.stderr.on('data', (d: Buffer) => this.logs.push(`stderr: ${d.toString()}`));
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** Collects a custom notification into an array (and wakes waiters on each). */
  collect<P>(type: NotificationType<P>): P[] {
    const out: P[] = [];
    this.conn.onNotification(type, (p: P) => {
      out.push(p);
      this.wake();
    });
    return out;
  }

  /** Resolves when `cond()` holds (checked after each notification), or fails after `ms`. */
  async until(cond: () => boolean, what: string, ms = 20000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!cond()) {
      const left = deadline - Date.now();
      if (left <= 0) assert.fail(`timed out after ${ms} ms waiting for ${what}; server log:\n${this.logs.join('\n')}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 200));
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  open(uri: string, text: string): void {
    this.versions.set(uri, 1);
    void this.conn.sendNotification(DidOpenTextDocumentNotification.type, { textDocument: { uri, languageId: 'yaml', version: 1, text } });
  }

  /** Replaces the whole text of an open document. */
  change(uri: string, text: string): void {
    const version = (this.versions.get(uri) ?? 1) + 1;
    this.versions.set(uri, version);
    void this.conn.sendNotification(DidChangeTextDocumentNotification.type, { textDocument: { uri, version }, contentChanges: [{ text }] });
  }

  /** The diagnostics published for the document's current version (waits for them). */
  async diagnosticsOf(uri: string): Promise<Diagnostic[]> {
    const version = this.versions.get(uri);
    const current = () => (this.diagnostics.get(uri) ?? []).find((d) => d.version === version);
    await this.until(() => current() !== undefined, `diagnostics of ${uri} version ${version}`);
    return current()!.diagnostics;
  }

  /** shutdown + exit; kills the process if it has not exited within 5 s. */
  async stop(): Promise<void> {
    const exited = new Promise<void>((resolve) => {
      if (this.proc.exitCode !== null || this.proc.signalCode !== null) resolve();
      else this.proc.once('exit', () => resolve());
    });
    try {
      await Promise.race([this.conn.sendRequest(ShutdownRequest.type), new Promise((r) => setTimeout(r, 5000))]);
      await this.conn.sendNotification(ExitNotification.type);
    } catch {
      /* the connection is already gone */
    }
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
    this.conn.dispose();
  }
}

/** Starts the sidecar, runs `initialize` / `initialized`. */
export async function startSidecar(opts: { trusted: boolean; rootDir: string; env?: Record<string, string> }): Promise<LspSession> {
  assert.ok(fs.existsSync(sidecarBundle), `${sidecarBundle} is missing: run \`npm run build\` first (npm test builds before testing)`);
  const proc = spawn(process.execPath, [sidecarBundle, '--stdio'], { stdio: 'pipe', env: { ...process.env, ...opts.env } });
  const conn = createProtocolConnection(new StreamMessageReader(proc.stdout), new StreamMessageWriter(proc.stdin));
  const session = new LspSession(proc, conn);
  conn.listen();
  await conn.sendRequest(InitializeRequest.type, {
    processId: process.pid,
    rootUri: pathToFileURL(opts.rootDir).href,
    capabilities: {},
    workspaceFolders: null,
    initializationOptions: { trusted: opts.trusted, diagnosticsDelayMs: 20 },
  });
  await conn.sendNotification(InitializedNotification.type, {});
  return session;
}

/** Runs `f` with a fresh sidecar and always stops it. */
export async function withSidecar<T>(opts: { trusted: boolean; rootDir: string }, f: (s: LspSession) => Promise<T>): Promise<T> {
  const s = await startSidecar(opts);
  try {
    return await f(s);
  } finally {
    await s.stop();
  }
}

// ---------------------------------------------------------------------------------------------------------
// The workspace

const WORDS = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', 'the', 'a', 'movie', 'film', 'was', 'is', 'good', 'great', 'fun', 'bad',
  'awful', 'boring', 'very', 'not', 'really', '.', '!'];

/** A BERT WordPiece tokenizer.json over WORDS (ids below the tiny model's vocabulary of 96). */
function tokenizerJson(): object {
  const special = (id: number, content: string) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  return {
    version: '1.0', truncation: null, padding: null,
    added_tokens: WORDS.slice(0, 5).map((w, i) => special(i, w)),
    normalizer: { type: 'BertNormalizer', clean_text: true, handle_chinese_chars: true, strip_accents: null, lowercase: true },
    pre_tokenizer: { type: 'BertPreTokenizer' },
    post_processor: { type: 'BertProcessing', sep: ['[SEP]', 3], cls: ['[CLS]', 2] },
    decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
    model: { type: 'WordPiece', unk_token: '[UNK]', continuing_subword_prefix: '##', max_input_chars_per_word: 100,
      vocab: Object.fromEntries(WORDS.map((w, i) => [w, i])) },
  };
}

export interface Workspace {
  dir: string;
  modelDir: string;
  /** Writes `<name>.loraxs.yaml` and returns its URI. */
  config(name: string, text: string): { uri: string; file: string };
}

/** A temp folder with model/ (tiny BERT), data/train.tsv, data/dev.tsv, data/scores.tsv. */
export function makeWorkspace(): Workspace {
  const dir = tempDir('loraxs-lsp-');
  const modelDir = path.join(dir, 'model');
  fs.mkdirSync(modelDir);
  const source = path.join(fixtures, 'tiny', 'bert', 'seq-cls');
  for (const f of ['config.json', 'model.safetensors']) fs.copyFileSync(path.join(source, f), path.join(modelDir, f));
  fs.writeFileSync(path.join(modelDir, 'tokenizer.json'), JSON.stringify(tokenizerJson()));
  fs.mkdirSync(path.join(dir, 'data'));
  const good = ['the movie was good', 'a great film', 'really fun', 'the film is very good', 'great fun !', 'good movie .'];
  const bad = ['the movie was bad', 'an awful film', 'really boring', 'the film is not good', 'bad movie .', 'very boring !'];
  const rows = good.flatMap((g, i) => [`${g}\t1`, `${bad[i]}\t0`]);
  fs.writeFileSync(path.join(dir, 'data', 'train.tsv'), ['sentence\tlabel', ...rows].join('\n') + '\n');
  fs.writeFileSync(path.join(dir, 'data', 'dev.tsv'), ['sentence\tlabel', ...rows.slice(0, 4)].join('\n') + '\n');
  fs.writeFileSync(path.join(dir, 'data', 'words.tsv'), ['sentence\tlabel', 'good film\tpositive', 'bad film\tnegative'].join('\n') + '\n');
  return {
    dir,
    modelDir,
    config(name, text) {
      const file = path.join(dir, `${name}.loraxs.yaml`);
      fs.writeFileSync(file, text);
      return { uri: pathToFileURL(file).href, file };
    },
  };
}

/** A valid config for the workspace's model and data; `over` replaces lines by their key. */
export const GOOD_CONFIG = `model: model
task: classification
data:
  train: data/train.tsv
  validation: data/dev.tsv
  text: sentence
  label: label
adapter:
  rank: 4
  targets:
    - query
    - value
training:
  epochs: 1
  batch_size: 4
  max_length: 16
  lr: 0.01
`;
