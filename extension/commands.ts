/**
 * The command table: `loraxs.*` command id -> handler factory. Every handler that needs the sidecar says
 * why when it is not running; training, merging and exporting refuse in an untrusted workspace. Handlers
 * take optional arguments so they can run without dialogs (code lenses pass the config URI; tests pass
 * everything).
 */
import * as path from 'node:path';
import * as vscode from 'vscode';
import { ResponseError } from 'vscode-languageclient/node';
import { CancelTrainingRequest, EvalRequest, ExportRequest, MergeRequest, ReadMetricsRequest, TrainRequest, isOutputExists } from '../sidecar/protocol';
import type { TrainProgressNotification } from '../sidecar/protocol';
import type { SidecarClient } from './client';
import { scaffoldConfig } from './config_scaffold';
import type { ModelConfigJson } from './config_scaffold';
import { TrainingPanel } from './panels/training_panel';
import { AnalysisPanel } from './panels/analysis_panel';

export interface CommandContext {
  extension: vscode.ExtensionContext;
  client: SidecarClient;
}

type Handler = (...args: unknown[]) => Promise<unknown>;

const CONFIG_GLOB = '**/*.loraxs.{yaml,yml}';
const EXPORT_FORMATS = [
  { label: 'peft-lora', description: 'a standard PEFT LoRA folder (loads in PEFT and LoRA servers)' },
  { label: 'loraxs-official', description: "the LoRA-XS authors' layout" },
  { label: 'loraxs-factors', description: 'the native adapter with its frozen factors' },
] as const;

export function isConfigPath(p: string): boolean {
  return /\.loraxs\.ya?ml$/i.test(p);
}

/** The message of an error from the sidecar (a ResponseError carries `file:line:col: message`). */
function errorText(e: unknown): string {
  if (e instanceof ResponseError) return e.message;
  return e instanceof Error ? e.message : String(e);
}

function configName(uri: vscode.Uri): string {
  return path.basename(uri.fsPath).replace(/\.loraxs\.ya?ml$/i, '');
}

/** Training, merging, exporting and reading models need a trusted workspace. */
function refuseUntrusted(what: string): boolean {
  if (vscode.workspace.isTrusted) return false;
  void vscode.window.showErrorMessage(`LoRA-XS: ${what} is off in an untrusted workspace: it reads model files and runs training code. ` +
    'Trust the workspace (Workspaces: Manage Workspace Trust) to use it.');
  return true;
}

function refuseUnavailable(ctx: CommandContext): boolean {
  const why = ctx.client.unavailableReason();
  if (!why) return false;
  void vscode.window.showErrorMessage(`LoRA-XS: ${why}`);
  return true;
}

function asUri(arg: unknown): vscode.Uri | undefined {
  if (arg instanceof vscode.Uri) return arg;
  if (typeof arg === 'string' && arg) return arg.includes('://') || arg.startsWith('file:') ? vscode.Uri.parse(arg) : vscode.Uri.file(arg);
  return undefined;
}

/** The config a command works on: its argument, the active editor's config, or one picked from the workspace. */
async function pickConfig(arg: unknown, purpose: string): Promise<vscode.Uri | undefined> {
  const given = asUri(arg);
  if (given) return given;
  const active = vscode.window.activeTextEditor?.document.uri;
  if (active && isConfigPath(active.path)) return active;
  const found = await vscode.workspace.findFiles(CONFIG_GLOB, '**/node_modules/**', 200);
  if (found.length === 1) return found[0];
  if (!found.length) {
    const create = await vscode.window.showInformationMessage('LoRA-XS: no *.loraxs.yaml config in this workspace.', 'New LoRA-XS Config…');
    if (create) await vscode.commands.executeCommand('loraxs.newConfig');
    return undefined;
  }
  const items = found.sort((a, b) => a.path.localeCompare(b.path))
    .map((uri) => ({ label: path.basename(uri.fsPath), description: vscode.workspace.asRelativePath(uri), uri }));
  return (await vscode.window.showQuickPick(items, { title: `LoRA-XS: the config to ${purpose}`, matchOnDescription: true }))?.uri;
}

/** Saves the config when it is open with changes: the sidecar reads it from disk. */
async function saveIfDirty(uri: vscode.Uri): Promise<void> {
  const doc = vscode.workspace.textDocuments.find((d) => d.uri.toString() === uri.toString());
  if (doc?.isDirty) await doc.save();
}

/** The output folder a config names (the sidecar reads it), or undefined when the config has errors. */
async function outputOf(ctx: CommandContext, uri: vscode.Uri): Promise<string | undefined> {
  try {
    return (await ctx.client.languageClient.sendRequest(ReadMetricsRequest.type, { uri: uri.toString() })).output;
  } catch {
    return undefined;
  }
}

/**
 * Follows the job a request is about to start: the sidecar names it (its run id) in the job's first
 * notification, `started`, which `matches` recognises; `onEvent` then gets that job's notifications.
 */
class JobFollower implements vscode.Disposable {
  runId: string | undefined;
  private readonly sub: vscode.Disposable;

  constructor(ctx: CommandContext, matches: (p: Extract<TrainProgressNotification.Params, { kind: 'started' }>) => boolean,
    onEvent: (p: TrainProgressNotification.Params) => void) {
    this.sub = ctx.client.onProgress((p) => {
      if (this.runId === undefined && p.kind === 'started' && matches(p)) this.runId = p.runId;
      if (p.runId === this.runId) onEvent(p);
    });
  }

  dispose(): void {
    this.sub.dispose();
  }
}

/** Reports a job's phase and log notifications (merge, export) into a progress notification. */
function reportJob(progress: vscode.Progress<{ message?: string }>): (p: TrainProgressNotification.Params) => void {
  return (p) => {
    if (p.kind === 'phase') progress.report({ message: `${p.phase} ${p.done}/${p.total}` });
    else if (p.kind === 'log') progress.report({ message: p.message });
  };
}

/** What the user chose when the output exists: send again replacing it, or (training) resuming it. */
interface OutputChoice {
  overwrite?: boolean;
  resume?: boolean;
}

/**
 * Sends a train / merge / export request. When the sidecar refuses it because the output folder already
 * holds LoRA-XS output (OutputErrorData `output-exists`), asks in a modal: Overwrite, Resume (training,
 * when the folder has a checkpoint) or Cancel, and sends it again as chosen. Resolves to undefined when
 * the user cancels; other errors are thrown as they came.
 */
async function sendAskingAboutOutput<T>(send: (choice: OutputChoice) => Promise<T>, offerResume: boolean): Promise<{ value: T } | undefined> {
  try {
    return { value: await send({}) };
  } catch (e) {
    const data = e instanceof ResponseError ? (e.data as unknown) : undefined;
    if (!isOutputExists(data)) throw e;
    const resumable = offerResume && data.resumable;
    const by = data.writer ? `a previous LoRA-XS ${data.writer}` : 'a previous LoRA-XS run';
    const pick = await vscode.window.showWarningMessage(
      `LoRA-XS: ${data.output} already holds the output of ${by}.`,
      { modal: true, detail: `Overwrite replaces that folder${resumable ? '; Resume continues the run from its last checkpoint' : ''}. Folders LoRA-XS did not write are never replaced.` },
      'Overwrite', ...(resumable ? ['Resume'] : []));
    if (pick === 'Overwrite') return { value: await send({ overwrite: true }) };
    if (pick === 'Resume') return { value: await send({ resume: true }) };
    return undefined;
  }
}

/** Cancels the followed job (or the running one, before it has named itself). */
function cancelJob(ctx: CommandContext, job: JobFollower): void {
  void ctx.client.languageClient.sendRequest(CancelTrainingRequest.type, job.runId ? { runId: job.runId } : {});
}

function fineTune(ctx: CommandContext, resume: boolean): Handler {
  return async (arg) => {
    const what = resume ? 'Resume Training' : 'Fine-tuning';
    if (refuseUntrusted(what) || refuseUnavailable(ctx)) return undefined;
    const uri = await pickConfig(arg, resume ? 'resume' : 'fine-tune');
    if (!uri) return undefined;
    await saveIfDirty(uri);
    const name = configName(uri);
    const panel = TrainingPanel.createOrShow(ctx.extension.extensionUri, ctx.client);
    const title = resume ? `${name} (resumed)` : name;
    ctx.client.log(`[client] ${resume ? 'resuming' : 'training'} ${uri.fsPath}`);
    return vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: `LoRA-XS: ${resume ? 'resuming' : 'training'} ${name}`, cancellable: true },
      async (progress, token) => {
        let reported = 0;
        const sub = new JobFollower(ctx, (p) => p.job === 'train' && p.config === uri.fsPath, (p) => {
          if (p.kind === 'started') panel.startRun(p.runId, title, p.output ?? undefined);
          else if (p.kind === 'phase') progress.report({ message: `${p.phase} ${p.done}/${p.total}` });
          else if (p.kind === 'step') {
            const total = p.record.total_steps;
            const pct = total ? (100 * p.record.step) / total : 0;
            progress.report({ message: `step ${p.record.step}${total ? `/${total}` : ''} · loss ${p.record.loss.toFixed(4)}`, increment: Math.max(0, pct - reported) });
            reported = Math.max(reported, pct);
          }
        });
        const onCancel = token.onCancellationRequested(() => {
          progress.report({ message: 'cancelling: saving a checkpoint…' });
          cancelJob(ctx, sub);
        });
        try {
          const sent = await sendAskingAboutOutput((choice) => ctx.client.languageClient.sendRequest(TrainRequest.type,
            { uri: uri.toString(), resume: resume || choice.resume === true, overwrite: choice.overwrite === true }), !resume);
          if (!sent) return undefined;
          const r = sent.value;
          panel.finishRun(r.runId, r);
          const best = r.best ? ` Best: ${Object.entries(r.best.eval).map(([k, v]) => `${k} ${v.toFixed(4)}`).join(', ')}.` : '';
          void vscode.window.showInformationMessage(r.cancelled
            ? `LoRA-XS: ${name} cancelled at step ${r.steps}/${r.totalSteps}; a checkpoint is saved (Resume Training continues it).`
            : `LoRA-XS: ${name} finished in ${r.seconds.toFixed(1)} s.${best} Adapter: ${r.adapterDir}`);
          return r;
        } catch (e) {
          const message = errorText(e);
          // A run that failed before it started (a config error) has no id from the sidecar: show it by name.
          panel.failRun(sub.runId ?? title, message, sub.runId ? undefined : title);
          void vscode.window.showErrorMessage(`LoRA-XS: ${message}`);
          return undefined;
        } finally {
          sub.dispose();
          onCancel.dispose();
        }
      },
    );
  };
}

function cancelTraining(ctx: CommandContext): Handler {
  return async () => {
    if (refuseUnavailable(ctx)) return false;
    const { cancelled } = await ctx.client.languageClient.sendRequest(CancelTrainingRequest.type, {});
    void vscode.window.showInformationMessage(cancelled ? 'LoRA-XS: cancelling; the run saves a checkpoint first.' : 'LoRA-XS: nothing is running.');
    return cancelled;
  };
}

async function askFolder(title: string, value: string): Promise<string | undefined> {
  const v = await vscode.window.showInputBox({ title, value, prompt: 'An absolute folder path: a new or empty folder, or one LoRA-XS wrote (you are asked before it is replaced)', ignoreFocusOut: true });
  return v?.trim() || undefined;
}

async function pickAdapter(defaultDir: string | undefined): Promise<string | undefined> {
  const picked = await vscode.window.showOpenDialog({
    canSelectFiles: false, canSelectFolders: true, canSelectMany: false, openLabel: 'Use this adapter',
    title: 'LoRA-XS: the adapter folder (adapter.safetensors, loraxs_config.json)', defaultUri: defaultDir ? vscode.Uri.file(defaultDir) : undefined,
  });
  return picked?.[0]?.fsPath;
}

function merge(ctx: CommandContext): Handler {
  return async (arg, adapterArg, outArg) => {
    if (refuseUntrusted('Merging') || refuseUnavailable(ctx)) return undefined;
    const uri = await pickConfig(arg, 'merge (its base model)');
    if (!uri) return undefined;
    await saveIfDirty(uri);
    const output = await outputOf(ctx, uri);
    const adapterDir = typeof adapterArg === 'string' ? adapterArg : await pickAdapter(output);
    if (!adapterDir) return undefined;
    const outDir = typeof outArg === 'string' ? outArg : await askFolder('LoRA-XS: the merged model folder', `${output ?? adapterDir}-merged`);
    if (!outDir) return undefined;
    return vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title: 'LoRA-XS: merging the adapter', cancellable: true },
      async (progress, token) => {
        const sub = new JobFollower(ctx, (p) => p.job === 'merge' && p.config === uri.fsPath, reportJob(progress));
        const onCancel = token.onCancellationRequested(() => cancelJob(ctx, sub));
        try {
          const sent = await sendAskingAboutOutput((choice) => ctx.client.languageClient.sendRequest(MergeRequest.type,
            { uri: uri.toString(), adapterDir, outDir, overwrite: choice.overwrite === true }), false);
          if (!sent) return undefined;
          const r = sent.value;
          void vscode.window.showInformationMessage(`LoRA-XS: merged model written to ${r.outDir}`);
          return r;
        } catch (e) {
          void vscode.window.showErrorMessage(`LoRA-XS: merge failed: ${errorText(e)}`);
          return undefined;
        } finally {
          sub.dispose();
          onCancel.dispose();
        }
      });
  };
}

/**
 * Evaluate on the config's validation set: a saved adapter, or the base model (the baseline to compare
 * with). Arguments for tests: the config URI, then the adapter folder or '' for the base model.
 */
function evaluate(ctx: CommandContext): Handler {
  return async (arg, adapterArg) => {
    if (refuseUntrusted('Evaluating') || refuseUnavailable(ctx)) return undefined;
    const uri = await pickConfig(arg, 'evaluate');
    if (!uri) return undefined;
    await saveIfDirty(uri);
    let adapterDir: string | undefined;
    if (typeof adapterArg === 'string') adapterDir = adapterArg || undefined;
    else {
      const base = 'The base model (no adapter)';
      const pick = await vscode.window.showQuickPick([base, 'An adapter folder…'], { title: 'LoRA-XS: evaluate what?' });
      if (!pick) return undefined;
      if (pick !== base) {
        adapterDir = await pickAdapter(await outputOf(ctx, uri));
        if (!adapterDir) return undefined;
      }
    }
    const what = adapterDir ? path.basename(adapterDir) : 'the base model';
    return vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title: `LoRA-XS: evaluating ${what}`, cancellable: true },
      async (progress, token) => {
        const sub = new JobFollower(ctx, (p) => p.job === 'eval' && p.config === uri.fsPath, reportJob(progress));
        const onCancel = token.onCancellationRequested(() => cancelJob(ctx, sub));
        try {
          const r = await ctx.client.languageClient.sendRequest(EvalRequest.type, { uri: uri.toString(), adapterDir });
          const text = Object.entries(r.metrics).map(([k, v]) => `${k} ${v.toFixed(4)}`).join(', ');
          ctx.client.log(`[client] eval of ${what} on ${uri.fsPath}: ${text}`);
          void vscode.window.showInformationMessage(`LoRA-XS: ${what} on ${configName(uri)}'s validation set: ${text}`);
          return r;
        } catch (e) {
          void vscode.window.showErrorMessage(`LoRA-XS: evaluation failed: ${errorText(e)}`);
          return undefined;
        } finally {
          sub.dispose();
          onCancel.dispose();
        }
      });
  };
}

function exportAdapter(ctx: CommandContext): Handler {
  return async (adapterArg, formatArg, outArg) => {
    if (refuseUntrusted('Exporting') || refuseUnavailable(ctx)) return undefined;
    const active = vscode.window.activeTextEditor?.document.uri;
    const output = active && isConfigPath(active.path) ? await outputOf(ctx, active) : undefined;
    const adapterDir = typeof adapterArg === 'string' ? adapterArg : await pickAdapter(output);
    if (!adapterDir) return undefined;
    const format = typeof formatArg === 'string' ? formatArg
      : (await vscode.window.showQuickPick(EXPORT_FORMATS.map((f) => ({ ...f })), { title: 'LoRA-XS: export format' }))?.label;
    if (!format) return undefined;
    const outDir = typeof outArg === 'string' ? outArg : await askFolder(`LoRA-XS: the ${format} folder`, `${adapterDir}-${format}`);
    if (!outDir) return undefined;
    return vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title: `LoRA-XS: exporting ${format}`, cancellable: true },
      async (progress, token) => {
        const sub = new JobFollower(ctx, (p) => p.job === 'export', reportJob(progress));
        const onCancel = token.onCancellationRequested(() => cancelJob(ctx, sub));
        try {
          const sent = await sendAskingAboutOutput((choice) => ctx.client.languageClient.sendRequest(ExportRequest.type,
            { adapterDir, format: format as ExportRequest.Params['format'], outDir, overwrite: choice.overwrite === true }), false);
          if (!sent) return undefined;
          const r = sent.value;
          void vscode.window.showInformationMessage(`LoRA-XS: ${format} export written to ${r.outDir}`);
          return r;
        } catch (e) {
          void vscode.window.showErrorMessage(`LoRA-XS: export failed: ${errorText(e)}`);
          return undefined;
        } finally {
          sub.dispose();
          onCancel.dispose();
        }
      });
  };
}

function showResults(ctx: CommandContext): Handler {
  return async (arg) => {
    if (refuseUntrusted('Reading training results') || refuseUnavailable(ctx)) return undefined;
    const uri = await pickConfig(arg, 'show the results of');
    if (!uri) return undefined;
    const panel = TrainingPanel.createOrShow(ctx.extension.extensionUri, ctx.client);
    try {
      const r = await ctx.client.languageClient.sendRequest(ReadMetricsRequest.type, { uri: uri.toString() });
      if (!r.records.length) void vscode.window.showInformationMessage(`LoRA-XS: ${configName(uri)} has no results yet (${path.join(r.output, 'metrics.jsonl')} is missing or empty).`);
      await panel.loadRun(r.output, configName(uri));
      return r.records.length;
    } catch (e) {
      void vscode.window.showErrorMessage(`LoRA-XS: ${errorText(e)}`);
      return undefined;
    }
  };
}

function newConfig(ctx: CommandContext): Handler {
  return async (modelArg, targetArg) => {
    const modelUri = asUri(modelArg) ?? (await vscode.window.showOpenDialog({
      canSelectFiles: false, canSelectFolders: true, canSelectMany: false, openLabel: 'Use this model',
      title: 'LoRA-XS: a Hugging Face model folder (config.json, *.safetensors, tokenizer.json)',
      defaultUri: vscode.workspace.workspaceFolders?.[0]?.uri,
    }))?.[0];
    if (!modelUri) return undefined;
    let model: ModelConfigJson;
    try {
      model = JSON.parse(new TextDecoder().decode(await vscode.workspace.fs.readFile(vscode.Uri.joinPath(modelUri, 'config.json')))) as ModelConfigJson;
    } catch (e) {
      void vscode.window.showErrorMessage(`LoRA-XS: ${modelUri.fsPath} has no readable config.json: ${errorText(e)}`);
      return undefined;
    }
    const folder = vscode.workspace.getWorkspaceFolder(modelUri)?.uri ?? vscode.workspace.workspaceFolders?.[0]?.uri ?? vscode.Uri.file(path.dirname(modelUri.fsPath));
    let target = asUri(targetArg);
    if (!target) {
      const base = path.basename(modelUri.fsPath);
      for (let i = 1; ; i++) {
        const candidate = vscode.Uri.joinPath(folder, `${base}${i > 1 ? `-${i}` : ''}.loraxs.yaml`);
        try {
          await vscode.workspace.fs.stat(candidate);
        } catch {
          target = candidate;
          break;
        }
      }
    }
    const rel = path.relative(path.dirname(target.fsPath), modelUri.fsPath).split(path.sep).join('/') || '.';
    const text = scaffoldConfig(model, { modelPath: rel, output: `runs/${configName(target)}` });
    await vscode.workspace.fs.writeFile(target, new TextEncoder().encode(text));
    await vscode.window.showTextDocument(target);
    return target;
  };
}

/** Opens the singular-value analysis panel beside the config (palette command and the "Ablate" code lens). */
function showAnalysis(ctx: CommandContext): Handler {
  return async (arg?: unknown) => {
    if (refuseUntrusted('Singular-value analysis') || refuseUnavailable(ctx)) return undefined;
    const uri = await pickConfig(arg, 'analyse');
    if (!uri) return undefined;
    return AnalysisPanel.createOrShow(ctx.extension.extensionUri, ctx.client, uri.toString());
  };
}

/** Every command the extension registers (package.json contributes the palette entries). */
export function commandTable(ctx: CommandContext): Record<string, Handler> {
  return {
    'loraxs.fineTune': fineTune(ctx, false),
    'loraxs.resumeTraining': fineTune(ctx, true),
    'loraxs.cancelTraining': cancelTraining(ctx),
    'loraxs.merge': merge(ctx),
    'loraxs.export': exportAdapter(ctx),
    'loraxs.evaluate': evaluate(ctx),
    'loraxs.showResults': showResults(ctx),
    'loraxs.newConfig': newConfig(ctx),
    'loraxs.ablate': showAnalysis(ctx),
    'loraxs.showAnalysis': showAnalysis(ctx),
    'loraxs.showOutput': async () => ctx.client.output.show(true),
  };
}
