/**
 * The sidecar's entry (bundled to dist/sidecar.js): the LoRA-XS language server over stdio or node IPC
 * (`--stdio`, `--node-ipc`, as vscode-languageclient starts it). The same bundle, started as a worker
 * thread with a job in its workerData, runs training, merging and exporting (lsp/job_worker.ts).
 */
import { ProposedFeatures, createConnection } from 'vscode-languageserver/node';
import { isJobWorker, runJobWorker } from './lsp/job_worker';
import { startLanguageServer } from './lsp/language_server';

if (isJobWorker()) {
  void runJobWorker();
} else {
  const connection = createConnection(ProposedFeatures.all);
  // Bad input must never stop the server: log what escaped a handler and carry on.
  process.on('uncaughtException', (e) => connection.console.error(`uncaught exception: ${e.stack ?? e.message}`));
  process.on('unhandledRejection', (e) => connection.console.error(`unhandled rejection: ${(e as Error)?.stack ?? String(e)}`));
  startLanguageServer(connection, { workerScript: __filename });
}
