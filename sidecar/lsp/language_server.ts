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
import { DiagnosticsScheduler, isTooLargeToLint, lintConfig, lintLargeConfig, toDiagnostic } from './diagnostics';
import { guardRequests, requestChecks } from './request_params';
import { WorkspaceRoots } from './workspace_roots';
import { hoverAt } from './hover';
import { completionsAt } from './completion';
import { codeLenses } from './code_lens';
import { quickFixes } from './quick_fix';
import { JobService } from './job_service';
import { AnalysisService } from './analysis_service';
import { registerRunInfo } from './run_info';
import { configureHubModels } from './hub_models';
import { settleModelOf } from './params_input';

export interface LanguageServerOptions {
  /** The sidecar bundle (dist/sidecar.js), started as the worker that runs training. */
  workerScript: string;
}

const DEFAULT_DIAGNOSTICS_DELAY_MS = 250;
/** How long a hover waits for a hub model's headers that are being fetched before it answers without them. */
const HOVER_HUB_WAIT_MS = 15_000;

export function startLanguageServer(connection: Connection, opts: LanguageServerOptions): void {
  const documents = new TextDocuments(TextDocument);
  let trusted = false;
  let backend: string | undefined;
  let threads: number | undefined;
  let canRefreshLenses = false;
  let canWatchFolders = false;
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
  const roots = new WorkspaceRoots();
  /**
   * Whether the server handles a document: a `*.loraxs.yaml` file, or an untitled YAML document (which
   * names no file, so it gets syntax and schema checks only).
   */
  const handles = (doc: TextDocument): boolean => isConfigUri(doc.uri) || (doc.uri.startsWith('untitled:') && doc.languageId === 'yaml');
  const configDoc = (uri: string): TextDocument | undefined => {
    const doc = typeof uri === 'string' ? documents.get(uri) : undefined;
    return doc && handles(doc) ? doc : undefined;
  };
  /** Only saved files are read against the disk (model folder, data files); other schemes: syntax and schema. */
  const diskChecks = (uri: string): boolean => trusted && uri.startsWith('file:');
  /** A document small enough for everything beyond syntax (hover, completion, lenses). */
  const fullDoc = (uri: string): TextDocument | undefined => {
    const doc = configDoc(uri);
    return doc && !isTooLargeToLint(doc.getText()) ? doc : undefined;
  };
  const largeChecks = new Map<string, () => void>();

  const publish = (uri: string): void => {
    const doc = configDoc(uri);
    if (!doc) return;
    largeChecks.get(uri)?.();
    largeChecks.delete(uri);
    const text = doc.getText();
    if (isTooLargeToLint(text)) {
      const check = lintLargeConfig(text, opts.workerScript);
      largeChecks.set(uri, check.cancel);
      const version = doc.version;
      void check.done.then((problems) => {
        if (largeChecks.get(uri) === check.cancel) largeChecks.delete(uri);
        if (documents.get(uri)?.version !== version) return;
        void connection.sendDiagnostics({ uri, version, diagnostics: problems.map(toDiagnostic) });
      });
      return;
    }
    const diagnostics = safe(`diagnostics of ${uri}`, [], () => lintConfig(text, uriToPath(uri), diskChecks(uri)).map(toDiagnostic));
    void connection.sendDiagnostics({ uri, version: doc.version, diagnostics });
  };
  let scheduler = new DiagnosticsScheduler(DEFAULT_DIAGNOSTICS_DELAY_MS, publish);
  const relintAll = (): void => {
    for (const doc of documents.all()) if (handles(doc)) publish(doc.uri);
    if (canRefreshLenses) void connection.sendRequest(CodeLensRefreshRequest.type).catch(() => undefined);
  };
  // A hub model's headers fetched in the background (hub_models.ts): lint again, refresh the lenses.
  configureHubModels({ canFetch: () => trusted, onLanded: () => safe('hub model fetched', undefined, relintAll) });

  /** The status a job reports (busy, then idle), with the backend the server initialised. */
  const jobStatus = (s: StatusNotification.Params['state'], message?: string, busy?: Pick<StatusNotification.Params, 'backend' | 'processes' | 'device'>): void =>
    sendStatus(busy ? { state: s, message, ...busy } : { state: s, backend, threads, message });

  // The custom requests' handlers see a connection that checks their params first (request_params.ts).
  const guarded = guardRequests(connection, requestChecks(roots));

  const jobs = new JobService({
    connection: guarded,
    workerScript: opts.workerScript,
    trusted: () => trusted,
    status: jobStatus,
  });

  const analyses = new AnalysisService({
    connection: guarded,
    workerScript: opts.workerScript,
    trusted: () => trusted,
    status: jobStatus,
  });

  connection.onInitialize((params): InitializeResult => {
    const init = (params.initializationOptions ?? {}) as InitializationOptions;
    trusted = init.trusted === true;
    roots.initialize(params);
    canWatchFolders = params.capabilities.workspace?.workspaceFolders === true;
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
        workspace: { workspaceFolders: { supported: true, changeNotifications: true } },
      },
      serverInfo: { name: 'loraxs-sidecar', version: '0.1.0' },
    };
  });

  connection.onInitialized(() => {
    sendStatus({ state: 'starting' });
    if (canWatchFolders) {
      safe('workspace folders', undefined, () => connection.workspace.onDidChangeWorkspaceFolders((e) => safe('workspace folders', undefined, () => roots.change(e))));
    }
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
    if (typeof p?.trusted !== 'boolean') {
      connection.console.warn(`${SetTrustedNotification.method}: trusted must be true or false, got ${JSON.stringify(p?.trusted) ?? 'nothing'}; ignored`);
      return;
    }
    if (trusted === p.trusted) return;
    trusted = p.trusted;
    log(`workspace is now ${trusted ? 'trusted' : 'untrusted'}`);
    relintAll();
  }));

  documents.onDidOpen((e) => safe('open', undefined, () => publish(e.document.uri)));
  documents.onDidChangeContent((e) => {
    if (handles(e.document)) scheduler.schedule(e.document.uri);
  });
  documents.onDidSave((e) => safe('save', undefined, () => publish(e.document.uri)));
  documents.onDidClose((e) => {
    scheduler.cancel(e.document.uri);
    largeChecks.get(e.document.uri)?.();
    largeChecks.delete(e.document.uri);
    if (handles(e.document)) void connection.sendDiagnostics({ uri: e.document.uri, diagnostics: [] });
  });

  const validPosition = (pos: unknown): pos is { line: number; character: number } =>
    pos !== null && typeof pos === 'object' && Number.isInteger((pos as { line: unknown }).line) && Number.isInteger((pos as { character: unknown }).character)
    && (pos as { line: number }).line >= 0 && (pos as { character: number }).character >= 0;
  connection.onHover(async (p) => {
    // A hub model named by the config whose headers are on their way: wait for them (bounded).
    const pre = fullDoc(p?.textDocument?.uri);
    if (pre && diskChecks(pre.uri)) await settleModelOf(pre.getText(), uriToPath(pre.uri), HOVER_HUB_WAIT_MS).catch(() => undefined);
    return hover(p);
  });
  const hover = (p: Parameters<Parameters<typeof connection.onHover>[0]>[0]) => safe('hover', null, () => {
    const doc = fullDoc(p?.textDocument?.uri);
    if (!doc || !validPosition(p.position)) return null;
    return hoverAt(doc.getText(), uriToPath(doc.uri), doc.offsetAt(p.position), diskChecks(doc.uri));
  });
  connection.onCompletion((p) => safe('completion', [], () => {
    const doc = fullDoc(p?.textDocument?.uri);
    if (!doc || !validPosition(p.position)) return [];
    return completionsAt(doc.getText(), uriToPath(doc.uri), p.position.line, p.position.character, diskChecks(doc.uri));
  }));
  connection.onCodeLens((p) => safe('code lens', [], () => {
    const doc = fullDoc(p?.textDocument?.uri);
    return doc ? codeLenses(doc.uri, doc.getText(), uriToPath(doc.uri), diskChecks(doc.uri)) : [];
  }));
  connection.onCodeAction((p) => safe('code action', [], () => {
    const uri = p?.textDocument?.uri;
    if (!configDoc(uri) || !Array.isArray(p.context?.diagnostics)) return [];
    return quickFixes(uri, p.context.diagnostics);
  }));

  jobs.register();
  analyses.register();
  registerRunInfo(guarded, documents, () => trusted, roots);

  connection.onShutdown(async () => {
    scheduler.dispose();
    await jobs.dispose();
    await analyses.dispose();
  });

  documents.listen(connection);
  connection.listen();
}
