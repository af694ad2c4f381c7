/**
 * The language server for `*.loraxs.yaml`: diagnostics (debounced per document), hover, completion, code
 * lenses, quick fixes, the custom requests (job_service.ts, run_info.ts) and the status notification.
 * Every handler catches its errors and logs them to the connection's console: bad input never stops the
 * server.
 */
import {
  CodeActionKind, CodeLensRefreshRequest, TextDocumentSyncKind, TextDocuments,
} from 'vscode-languageserver/node';
import type { Connection, InitializeResult } from 'vscode-languageserver/node';
import { TextDocument } from 'vscode-languageserver-textdocument';
import { initBackend } from '../backend/choice';
import { SetTrustedNotification, StatusNotification } from '../protocol';
import type { InitializationOptions } from '../protocol';
import { isConfigUri, uriToPath } from './config_uri';
import { DiagnosticsScheduler, lintConfig, toDiagnostic } from './diagnostics';
import { hoverAt } from './hover';
import { completionsAt } from './completion';
import { codeLenses } from './code_lens';
import { quickFixes } from './quick_fix';
import { JobService } from './job_service';
import { AblationService } from './analysis_service';
import { registerRunInfo } from './run_info';

export interface LanguageServerOptions {
  /** The sidecar bundle (dist/sidecar.js), started as the worker that runs training. */
  workerScript: string;
}

const DEFAULT_DIAGNOSTICS_DELAY_MS = 250;

export function startLanguageServer(connection: Connection, opts: LanguageServerOptions): void {
  const documents = new TextDocuments(TextDocument);
  let trusted = false;
  let backend: string | undefined;
  let threads: number | undefined;
  let canRefreshLenses = false;
  let state: StatusNotification.Params = { state: 'starting' };

  const log = (message: string): void => connection.console.log(message);
  /** Runs a handler; an exception is logged and `fallback` returned. */
  const safe = <T>(what: string, fallback: T, f: () => T): T => {
    try {
      return f();
    } catch (e) {
      connection.console.error(`${what} failed: ${(e as Error).stack ?? String(e)}`);
      return fallback;
    }
  };
  const sendStatus = (s: StatusNotification.Params): void => {
    state = s;
    void connection.sendNotification(StatusNotification.type, s);
  };
  const configDoc = (uri: string): TextDocument | undefined => (isConfigUri(uri) ? documents.get(uri) : undefined);

  const publish = (uri: string): void => {
    const doc = configDoc(uri);
    if (!doc) return;
    const diagnostics = safe(`diagnostics of ${uri}`, [], () => lintConfig(doc.getText(), uriToPath(uri), trusted).map(toDiagnostic));
    void connection.sendDiagnostics({ uri, version: doc.version, diagnostics });
  };
  let scheduler = new DiagnosticsScheduler(DEFAULT_DIAGNOSTICS_DELAY_MS, publish);
  const relintAll = (): void => {
    for (const doc of documents.all()) if (isConfigUri(doc.uri)) publish(doc.uri);
    if (canRefreshLenses) void connection.sendRequest(CodeLensRefreshRequest.type).catch(() => undefined);
  };

  /** The status a job reports (busy, then idle), with the backend the server initialised. */
  const jobStatus = (s: StatusNotification.Params['state'], message?: string): void => sendStatus({ state: s, backend, threads, message });

  const jobs = new JobService({
    connection,
    workerScript: opts.workerScript,
    trusted: () => trusted,
    status: jobStatus,
  });

  const analyses = new AblationService({
    connection,
    workerScript: opts.workerScript,
    trusted: () => trusted,
    status: jobStatus,
  });

  connection.onInitialize((params): InitializeResult => {
    const init = (params.initializationOptions ?? {}) as InitializationOptions;
    trusted = init.trusted === true;
    if (typeof init.diagnosticsDelayMs === 'number' && init.diagnosticsDelayMs >= 0) {
      scheduler = new DiagnosticsScheduler(init.diagnosticsDelayMs, publish);
    }
    canRefreshLenses = params.capabilities.workspace?.codeLens?.refreshSupport === true;
    log(`LoRA-XS sidecar ${process.version}, workspace ${trusted ? 'trusted' : 'untrusted (syntax and schema checks only)'}`);
    return {
      capabilities: {
        textDocumentSync: TextDocumentSyncKind.Incremental,
        hoverProvider: true,
        completionProvider: { triggerCharacters: [' ', '[', ','], resolveProvider: false },
        codeLensProvider: { resolveProvider: false },
        codeActionProvider: { codeActionKinds: [CodeActionKind.QuickFix] },
      },
      serverInfo: { name: 'loraxs-sidecar', version: '0.1.0' },
    };
  });

  connection.onInitialized(() => {
    sendStatus({ state: 'starting' });
    initBackend().then(
      (info) => {
        backend = info.name;
        threads = info.threads;
        if (info.warning) connection.console.warn(info.warning);
        log(`TensorFlow.js backend: ${info.name} (${info.attempts.map((a) => `${a.candidate}: ${a.why}`).join('; ')})`);
        if (state.state !== 'busy') sendStatus({ state: 'idle', backend, threads, message: info.warning });
      },
      (e: unknown) => {
        connection.console.error(`no TensorFlow.js backend could be initialised: ${(e as Error).stack ?? String(e)}`);
        sendStatus({ state: 'error', message: `no TensorFlow.js backend could be initialised: ${(e as Error).message}`, fatal: true });
      },
    );
  });

  connection.onNotification(SetTrustedNotification.type, (p) => safe('setTrusted', undefined, () => {
    if (trusted === p.trusted) return;
    trusted = p.trusted;
    log(`workspace is now ${trusted ? 'trusted' : 'untrusted'}`);
    relintAll();
  }));

  documents.onDidOpen((e) => safe('open', undefined, () => publish(e.document.uri)));
  documents.onDidChangeContent((e) => {
    if (isConfigUri(e.document.uri)) scheduler.schedule(e.document.uri);
  });
  documents.onDidSave((e) => safe('save', undefined, () => publish(e.document.uri)));
  documents.onDidClose((e) => {
    scheduler.cancel(e.document.uri);
    if (isConfigUri(e.document.uri)) void connection.sendDiagnostics({ uri: e.document.uri, diagnostics: [] });
  });

  connection.onHover((p) => safe('hover', null, () => {
    const doc = configDoc(p.textDocument.uri);
    return doc ? hoverAt(doc.getText(), uriToPath(doc.uri), doc.offsetAt(p.position), trusted) : null;
  }));
  connection.onCompletion((p) => safe('completion', [], () => {
    const doc = configDoc(p.textDocument.uri);
    return doc ? completionsAt(doc.getText(), uriToPath(doc.uri), p.position.line, p.position.character, trusted) : [];
  }));
  connection.onCodeLens((p) => safe('code lens', [], () => {
    const doc = configDoc(p.textDocument.uri);
    return doc ? codeLenses(doc.uri, doc.getText(), uriToPath(doc.uri), trusted) : [];
  }));
  connection.onCodeAction((p) => safe('code action', [], () => (configDoc(p.textDocument.uri) ? quickFixes(p.textDocument.uri, p.context.diagnostics) : [])));

  jobs.register();
  analyses.register();
  registerRunInfo(connection, documents, () => trusted);

  connection.onShutdown(async () => {
    scheduler.dispose();
    await jobs.dispose();
    await analyses.dispose();
  });

  documents.listen(connection);
  connection.listen();
}
