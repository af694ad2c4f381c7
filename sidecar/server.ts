/**
 * The sidecar's entry (bundled to dist/sidecar.js): the LoRA-XS language server over stdio or node IPC
 * (`--stdio`, `--node-ipc`, as vscode-languageclient starts it). The same bundle, started as a worker
 * thread with a job in its workerData, runs training, merging and exporting (engine/job_thread.ts).
 *
 * Over stdio the framing is checked (lsp/framing.ts): a framing error is logged to stderr and the process
 * exits with FRAMING_ERROR_EXIT_CODE, so the client restarts it rather than waiting forever.
 */
import { format } from 'node:util';
import { ProposedFeatures, StreamMessageWriter, createConnection } from 'vscode-languageserver/node';
import type { Connection } from 'vscode-languageserver/node';
import { isJobWorker, runJobWorker } from './engine/job_thread';
import { startLanguageServer } from './lsp/language_server';
import { isSyntaxWorker, runSyntaxWorker } from './lsp/diagnostics';
import { CheckedStreamMessageReader, FramingChecker, partialMessageTimeoutMs } from './lsp/framing';

/** The exit code after a framing error on stdio (the client restarts the sidecar after its back-off). */
export const FRAMING_ERROR_EXIT_CODE = 3;

function fatalFraming(why: string): never {
  process.stderr.write(`loraxs sidecar: LSP framing error on stdin: ${why}; exiting so the client restarts the server\n`);
  process.exit(FRAMING_ERROR_EXIT_CODE);
}

/** A connection over stdin/stdout with the framing checked. */
function stdioConnection(): Connection {
  const timeoutMs = partialMessageTimeoutMs();
  const checker = new FramingChecker(timeoutMs, fatalFraming);
  // Registered before the reader's own listener, so the checker sees each chunk first.
  process.stdin.on('data', (chunk: Buffer) => checker.push(chunk));
  const reader = new CheckedStreamMessageReader(process.stdin, timeoutMs);
  reader.onError((e) => fatalFraming(e instanceof Error ? e.message : String(e)));
  reader.onPartialMessage((info) => fatalFraming(`a message body stopped arriving for ${info.waitingTime} ms (its Content-Length is longer than what was sent)`));
  const writer = new StreamMessageWriter(process.stdout);
  const connection = createConnection(ProposedFeatures.all, reader, writer);
  const ended = (): void => {
    checker.end();
    process.exit(reader.shutdownReceived ? 0 : 1);
  };
  process.stdin.on('end', ended);
  process.stdin.on('close', ended);
  // stdout carries the protocol: what the code prints goes to the client's log instead (as
  // vscode-languageserver does for `--stdio`).
  const toLog = (level: 'log' | 'info' | 'warn' | 'error') => (...args: unknown[]): void => connection.console[level](format(...args));
  console.log = toLog('log');
  console.info = toLog('info');
  console.debug = toLog('log');
  console.warn = toLog('warn');
  console.error = toLog('error');
  return connection;
}

if (isJobWorker()) {
  void runJobWorker();
} else if (isSyntaxWorker()) {
  runSyntaxWorker();
} else {
  const connection = process.argv.includes('--stdio') ? stdioConnection() : createConnection(ProposedFeatures.all);
  // Bad input must never stop the server: log what escaped a handler and carry on.
  process.on('uncaughtException', (e) => connection.console.error(`uncaught exception: ${e.stack ?? e.message}`));
  process.on('unhandledRejection', (e) => connection.console.error(`unhandled rejection: ${(e as Error)?.stack ?? String(e)}`));
  startLanguageServer(connection, { workerScript: __filename });
}
