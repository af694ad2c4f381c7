/**
 * Tests that run inside a real VS Code extension host (code-server), with the extension loaded from the
 * repository (extensionDevelopmentPath) and a workspace written by host.test.ts: the tiny BERT model,
 * train.tsv / dev.tsv, good.loraxs.yaml and bad.loraxs.yaml (workspace_configs.ts).
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as os from 'node:os';
import * as vscode from 'vscode';
import type Mocha from 'mocha';
import type { LoraxsApi } from '../../../extension/main';
import type { EvalRequest, TrainRequest } from '../../../sidecar/protocol';
import { BAD_KEY, BAD_KEY_LINE, LORAXS_PARAMS } from '../workspace_configs';

export interface TddApi {
  suite: Mocha.SuiteFunction;
  test: Mocha.TestFunction;
  suiteSetup: Mocha.HookFunction;
}

const EXTENSION_ID = 'loraxs-studio.loraxs-studio';

/** Polls `f` until it returns a value that is not undefined, or fails after `ms`. */
async function until<T>(what: string, f: () => T | undefined | Promise<T | undefined>, ms = 60000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

function workspaceDir(): string {
  const folder = vscode.workspace.workspaceFolders?.[0];
  assert.ok(folder, 'the test workspace is open');
  return folder.uri.fsPath;
}

function markdownOf(hovers: vscode.Hover[]): string {
  return hovers.flatMap((h) => h.contents).map((c) => (typeof c === 'string' ? c : c.value)).join('\n');
}

export function defineExtensionHostTests({ suite, test, suiteSetup }: TddApi): void {
  suite('LoRA-XS extension in a real extension host', () => {
    let api: LoraxsApi;
    let dir: string;
    let good: vscode.Uri;
    let bad: vscode.Uri;

    suiteSetup(async () => {
      dir = workspaceDir();
      good = vscode.Uri.file(path.join(dir, 'good.loraxs.yaml'));
      bad = vscode.Uri.file(path.join(dir, 'bad.loraxs.yaml'));
      const ext = vscode.extensions.getExtension<LoraxsApi>(EXTENSION_ID);
      assert.ok(ext, `extension ${EXTENSION_ID} is installed`);
      api = await ext.activate();
    });

    test('activates, registers every contributed command, and its sidecar reaches idle on the wasm backend with one thread per core', async () => {
      const ext = vscode.extensions.getExtension<LoraxsApi>(EXTENSION_ID)!;
      assert.equal(ext.isActive, true);
      const contributed = (ext.packageJSON as { contributes: { commands: Array<{ command: string }> } }).contributes.commands.map((c) => c.command);
      const registered = new Set(await vscode.commands.getCommands(true));
      assert.deepEqual(contributed.filter((c) => !registered.has(c)), [], 'contributed commands that are not registered');
      assert.ok(contributed.includes('loraxs.fineTune') && contributed.includes('loraxs.ablate'), `the code lenses' commands: ${contributed}`);
      await until('the sidecar to be idle', () => (api.client.state.state === 'idle' ? true : undefined));
      assert.equal(api.client.state.backend, 'wasm');
      // The sidecar (a Node process forked by the extension host) runs wasm on one thread per core, up to 8.
      assert.equal(api.client.state.threads, Math.min(os.cpus().length, 8), 'wasm threads in the sidecar');
    });

    test('an unknown key gets a diagnostic on its own line, with a suggestion', async () => {
      await vscode.window.showTextDocument(bad);
      const diags = await until('diagnostics for bad.loraxs.yaml', () => {
        const d = vscode.languages.getDiagnostics(bad);
        return d.length ? d : undefined;
      });
      const d = diags.find((x) => x.message.includes(BAD_KEY));
      assert.ok(d, `a diagnostic naming ${BAD_KEY}: ${diags.map((x) => x.message).join('; ')}`);
      assert.equal(d.severity, vscode.DiagnosticSeverity.Error);
      assert.equal(d.range.start.line, BAD_KEY_LINE);
      assert.equal(d.range.start.character, 2, 'the range starts at the key');
      assert.equal(d.range.end.character, 2 + BAD_KEY.length, 'and ends after it');
      assert.deepEqual(vscode.languages.getDiagnostics(good), [], 'the good config has no problems');
    });

    test('hover on rank shows the LoRA-XS parameter count; the code lenses show Fine-tune and the count', async () => {
      const doc = await vscode.workspace.openTextDocument(good);
      const line = doc.getText().split('\n').findIndex((l) => l.trim().startsWith('rank:'));
      const hovers = await until('a hover with parameters', async () => {
        const h = await vscode.commands.executeCommand<vscode.Hover[]>('vscode.executeHoverProvider', good, new vscode.Position(line, 3));
        return markdownOf(h).includes('trainable parameters') ? h : undefined;
      });
      assert.match(markdownOf(hovers), new RegExp(`LoRA-XS: ${LORAXS_PARAMS} trainable parameters`));
      const lenses = await vscode.commands.executeCommand<vscode.CodeLens[]>('vscode.executeCodeLensProvider', good);
      const titles = lenses.map((l) => l.command?.title ?? '');
      assert.ok(titles.some((t) => t.includes('Fine-tune')), `lenses: ${titles}`);
      assert.ok(titles.some((t) => t.startsWith(`${LORAXS_PARAMS} trainable parameters`)), `lenses: ${titles}`);
      assert.deepEqual(lenses.find((l) => l.command?.title.includes('Fine-tune'))?.command?.arguments, [good.toString()]);
    });

    test('"New LoRA-XS Config…" scaffolds a config whose model, task, rank and targets the server accepts', async () => {
      const target = vscode.Uri.file(path.join(dir, 'scaffold.loraxs.yaml'));
      const written = await vscode.commands.executeCommand<vscode.Uri>('loraxs.newConfig', vscode.Uri.file(path.join(dir, 'model')), target);
      assert.equal(written?.fsPath, target.fsPath);
      const text = fs.readFileSync(target.fsPath, 'utf8');
      assert.match(text, /^model: model$/m);
      assert.match(text, /^ {2}targets: \[query, value\]$/m);
      // Its data paths (data/train.tsv, data/dev.tsv) do not exist in this workspace: those are the only problems.
      const diags = await until('diagnostics for the scaffold', () => {
        const d = vscode.languages.getDiagnostics(target);
        return d.length ? d : undefined;
      });
      const others = diags.filter((d) => !/data\/(train|dev)\.tsv/.test(d.message));
      assert.deepEqual(others.map((d) => d.message), [], 'no problem other than the missing data files');
    });

    test('"Fine-tune with LoRA-XS" trains the config, opens the training panel and writes metrics.jsonl; "Show Training Results" reads it back', async () => {
      const result = await vscode.commands.executeCommand<TrainRequest.Result | undefined>('loraxs.fineTune', good.toString());
      assert.ok(result, 'the command returns the run (undefined means it failed: see the error message)');
      assert.equal(result.cancelled, false);
      assert.equal(result.totalSteps, 12, '48 rows / batch 8 × 2 epochs');
      assert.equal(result.steps, 12);
      assert.equal(result.adapterParams, LORAXS_PARAMS);
      assert.ok(result.best && 'accuracy' in result.best.eval, `a best evaluation with accuracy: ${JSON.stringify(result.best)}`);
      const metrics = path.join(dir, 'runs', 'good', 'metrics.jsonl');
      const records = fs.readFileSync(metrics, 'utf8').trim().split('\n');
      assert.equal(records.filter((l) => l.includes('"tokens_per_s"')).length, 12, 'one record per update');
      const tabs = vscode.window.tabGroups.all.flatMap((g) => g.tabs);
      assert.ok(tabs.some((t) => t.input instanceof vscode.TabInputWebview && t.input.viewType.endsWith('loraxs.trainingPanel')),
        `a training panel tab: ${tabs.map((t) => t.label).join(', ')}`);
      const count = await vscode.commands.executeCommand<number>('loraxs.showResults', good.toString());
      assert.equal(count, records.length, 'Show Training Results reads every record of metrics.jsonl');
    });

    test('"Fine-tune with LoRA-XS" on a config with `adapter: none` trains the head only (the baseline)', async () => {
      const headOnly = vscode.Uri.file(path.join(dir, 'head-only.loraxs.yaml'));
      const text = fs.readFileSync(good.fsPath, 'utf8').replace(/^adapter:\n(?: {2}.*\n)+/m, 'adapter: none\n').replace('runs/good', 'runs/head-only');
      assert.match(text, /^adapter: none$/m);
      fs.writeFileSync(headOnly.fsPath, text);
      const result = await vscode.commands.executeCommand<TrainRequest.Result | undefined>('loraxs.fineTune', headOnly.toString());
      assert.ok(result, 'the head-only run finishes');
      assert.equal(result.adapterParams, 0, 'no LoRA-XS parameters');
      assert.ok(result.trainableParams > 0 && result.steps === result.totalSteps, `the head trains: ${JSON.stringify(result)}`);
    });

    test('"Evaluate Adapter or Base Model…" scores the trained adapter and the base model on the validation set', async () => {
      const adapter = await vscode.commands.executeCommand<EvalRequest.Result | undefined>('loraxs.evaluate', good.toString(), path.join(dir, 'runs', 'good'));
      assert.ok(adapter && typeof adapter.metrics.accuracy === 'number', `the adapter's metrics: ${JSON.stringify(adapter)}`);
      const base = await vscode.commands.executeCommand<EvalRequest.Result | undefined>('loraxs.evaluate', good.toString(), '');
      assert.ok(base && typeof base.metrics.accuracy === 'number', `the base model's metrics: ${JSON.stringify(base)}`);
      assert.notEqual(base.runId, adapter.runId, 'each evaluation is its own job');
    });

    test('a second Fine-tune while one runs is refused; Cancel Training stops the run with a checkpoint', async () => {
      assert.equal(await vscode.commands.executeCommand<boolean>('loraxs.cancelTraining'), false, 'nothing runs yet');
      const long = vscode.Uri.file(path.join(dir, 'long.loraxs.yaml'));
      fs.writeFileSync(long.fsPath, fs.readFileSync(good.fsPath, 'utf8').replace('epochs: 2', 'epochs: 400').replace('runs/good', 'runs/long'));
      let steps = 0;
      const sub = api.client.onProgress((p) => {
        if (p.kind === 'step') steps++;
      });
      try {
        const running = vscode.commands.executeCommand<TrainRequest.Result | undefined>('loraxs.fineTune', long.toString());
        await until('the first update', () => (steps > 0 ? true : undefined));
        const second = await vscode.commands.executeCommand<TrainRequest.Result | undefined>('loraxs.fineTune', good.toString());
        assert.equal(second, undefined, 'the second run is refused (one job at a time)');
        assert.equal(await vscode.commands.executeCommand<boolean>('loraxs.cancelTraining'), true);
        const r = await running;
        assert.ok(r, 'the first run resolves');
        assert.equal(r.cancelled, true);
        assert.ok(r.steps < r.totalSteps, `stopped early: ${r.steps} of ${r.totalSteps}`);
        assert.ok(fs.existsSync(path.join(dir, 'runs', 'long', 'checkpoint')), 'a checkpoint to resume from');
      } finally {
        sub.dispose();
      }
    });

    test('when the sidecar is killed it is restarted (with back-off) and answers again', async () => {
      const pid = api.client.pid;
      assert.ok(pid, 'the sidecar runs');
      process.kill(pid, 'SIGKILL');
      await until('a new sidecar', () => (api.client.pid !== undefined && api.client.pid !== pid ? true : undefined));
      await until('the new sidecar to be idle', () => (api.client.state.state === 'idle' && api.client.running ? true : undefined));
      const doc = await vscode.workspace.openTextDocument(good);
      const line = doc.getText().split('\n').findIndex((l) => l.trim().startsWith('rank:'));
      const hovers = await until('a hover from the restarted sidecar', async () => {
        const h = await vscode.commands.executeCommand<vscode.Hover[]>('vscode.executeHoverProvider', good, new vscode.Position(line, 3));
        return markdownOf(h).includes('trainable parameters') ? h : undefined;
      });
      assert.ok(hovers.length > 0);
    });
  });
}
