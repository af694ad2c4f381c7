/**
 * `loraxs/params` (the parameter report of a config, from its editor text when open) and
 * `loraxs/readMetrics` (the records of a run's metrics.jsonl, for the training panel after a reload).
 */
import * as path from 'node:path';
import type { Connection, TextDocuments } from 'vscode-languageserver/node';
import type { TextDocument } from 'vscode-languageserver-textdocument';
import * as fs from 'node:fs';
import { LSPErrorCodes, ResponseError } from 'vscode-languageserver/node';
import { LoraxsError } from '../errors';
import { parseConfigText } from '../config/parse';
import { computeParams } from '../loraxs/param_counts';
import { ParamsRequest, ReadMetricsRequest } from '../protocol';
import { readMetricsLog } from '../train/metrics_log';
import { configForParams } from './params_input';
import { toResponseError } from './response_errors';
import { UNTRUSTED_MESSAGE } from './job_service';
import { uriToPath } from './config_uri';
import type { MetricsRecord } from '../records';
import { FULL_LINT_MAX_BYTES, tooLargeMessage } from './diagnostics';
import { invalidParams } from './request_params';
import { firstInvalidUtf8 } from '../config/utf8';
import type { WorkspaceRoots } from './workspace_roots';

/**
 * The text of a config: the open document's, else the file's. A config over FULL_LINT_MAX_BYTES is
 * refused (it gets syntax checks only).
 */
function configText(documents: TextDocuments<TextDocument>, uri: string): string {
  const doc = documents.get(uri);
  const file = uriToPath(uri);
  if (doc) {
    const text = doc.getText();
    if (Buffer.byteLength(text, 'utf8') > FULL_LINT_MAX_BYTES) throw new LoraxsError(tooLargeMessage(Buffer.byteLength(text, 'utf8')), { file });
    return text;
  }
  let bytes: Buffer;
  try {
    const st = fs.statSync(file);
    if (st.isFile() && st.size > FULL_LINT_MAX_BYTES) throw new LoraxsError(tooLargeMessage(st.size), { file });
    bytes = fs.readFileSync(file);
  } catch (e) {
    if (e instanceof LoraxsError) throw e;
    throw new LoraxsError(`cannot read the config file: ${(e as Error).message}`, { file });
  }
  const bad = firstInvalidUtf8(bytes);
  if (bad) throw new LoraxsError(bad.message, { file, line: bad.line, column: bad.column });
  return bytes.toString('utf8');
}

export function registerRunInfo(connection: Connection, documents: TextDocuments<TextDocument>, trusted: () => boolean, roots: WorkspaceRoots): void {
  connection.onRequest(ParamsRequest.type, (p) => {
    try {
      if (!trusted()) throw new ResponseError(LSPErrorCodes.RequestFailed, UNTRUSTED_MESSAGE);
      const file = uriToPath(p.uri);
      const c = configForParams(configText(documents, p.uri), file);
      if (c instanceof LoraxsError) throw c;
      return computeParams(c.input);
    } catch (e) {
      throw toResponseError(e, connection.console);
    }
  });

  connection.onRequest(ReadMetricsRequest.type, (p): ReadMetricsRequest.Result => {
    try {
      let output: string;
      const configFile = p.uri ? uriToPath(p.uri) : undefined;
      if (p.output) output = path.resolve(p.output);
      else if (p.uri) {
        const file = uriToPath(p.uri);
        const { config, problems } = parseConfigText(configText(documents, p.uri), file, { readModel: false });
        if (!config) throw new LoraxsError(`the config has errors, so its output folder is unknown: ${problems[0]?.message ?? ''}`, { file });
        output = config.output;
      } else {
        throw new ResponseError(LSPErrorCodes.RequestFailed, 'loraxs/readMetrics needs `output` (a run folder) or `uri` (a config)');
      }
      const refused = roots.refusal(output, 'the output folder', configFile);
      if (refused) throw invalidParams(ReadMetricsRequest.method, refused);
      return { output, records: readMetricsLog(path.join(output, 'metrics.jsonl')) as MetricsRecord[] };
    } catch (e) {
      throw toResponseError(e, connection.console);
    }
  });
}
