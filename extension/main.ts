/**
 * The extension's entry (bundled to dist/extension.js, `vscode` external): starts the sidecar client,
 * registers the command table and the panels' serializers. Never imports the engine: everything
 * runs in the sidecar, reached through the messages of sidecar/protocol.ts.
 */
import * as vscode from 'vscode';
import { SidecarClient } from './client';
import { commandTable } from './commands';
import { registerNativeSetup } from './native_setup';
import { registerServeCommands } from './serve_command';
import { registerTrainingPanelSerializer } from './panels/training_panel';
import { registerAnalysisPanelSerializer } from './panels/analysis_panel';

/** What activate() returns: used by the extension-host tests. */
export interface LoraxsApi {
  client: SidecarClient;
}

let client: SidecarClient | undefined;

export async function activate(context: vscode.ExtensionContext): Promise<LoraxsApi> {
  client = new SidecarClient(context);
  const ctx = { extension: context, client };
  for (const [id, handler] of Object.entries(commandTable(ctx))) {
    context.subscriptions.push(vscode.commands.registerCommand(id, handler));
  }
  context.subscriptions.push(registerNativeSetup(context, (line) => client?.log(line)));
  context.subscriptions.push(registerServeCommands(context, (line) => client?.log(line)));
  context.subscriptions.push(registerTrainingPanelSerializer(context.extensionUri, client));
  context.subscriptions.push(registerAnalysisPanelSerializer(context.extensionUri, client));
  client.start().catch((e: Error) => client?.log(`[client] the sidecar did not start: ${e.message}`));
  return { client };
}

export async function deactivate(): Promise<void> {
  await client?.dispose();
  client = undefined;
}
