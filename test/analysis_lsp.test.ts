/**
 * `loraxs/ablate` over the real LSP protocol (needs `npm run build`): a retention sweep on a tiny BERT
 * runs in the sidecar's worker thread, streams one row notification per result row and phase progress,
 * writes its report, and `loraxs/readAnalysis` returns it; a cancelled sweep resolves with
 * `cancelled: true` and the same request then resumes to the full result.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { AblateProgressNotification, AblateRequest, CancelAblationRequest, ReadAnalysisRequest, StatusNotification } from '../sidecar/protocol';
import { GOOD_CONFIG, makeWorkspace, sidecarBundle, withSidecar } from './lsp_harness';
import type { AblationReport } from '../sidecar/records';

const noBundle = fs.existsSync(sidecarBundle) ? false : `skipped: ${sidecarBundle} is absent (run npm run build)`;

test('loraxs/ablate streams rows and progress from the worker; readAnalysis returns the report; cancel, then resume', { skip: noBundle }, async () => {
  const ws = makeWorkspace();
  const { uri } = ws.config('tiny', GOOD_CONFIG);
  await withSidecar({ trusted: true, rootDir: ws.dir }, async (s) => {
    const progress = s.collect(AblateProgressNotification.type);
    const statuses = s.collect(StatusNotification.type);
    await s.until(() => statuses.some((p) => p.state === 'idle'), 'the backend to initialise');
    const params: AblateRequest.Params = { uri, kind: 'retention', fractions: [0, 0.5, 1], evalLimit: 8, jobId: 'a1' };
    const report = await s.conn.sendRequest(AblateRequest.type, params) as AblationReport & { jobId: string };
    assert.equal(report.jobId, 'a1');
    assert.equal(report.kind, 'retention');
    assert.equal(report.cancelled, false);
    assert.equal(report.results.length, 2 * 3 * 3);
    const rows = progress.filter((p) => p.kind === 'row' && p.jobId === 'a1');
    assert.deepEqual(rows.map((p) => (p as { row: unknown }).row), report.results);
    assert.ok(progress.some((p) => p.kind === 'phase' && p.phase === 'retention' && p.done === p.total));
    assert.ok(statuses.some((p) => p.state === 'busy'));
    const read = await s.conn.sendRequest(ReadAnalysisRequest.type, { uri });
    assert.deepEqual(read.retention?.results, report.results);
    assert.equal(read.delta, null);

    // Cancel as soon as the first row arrives, then run the same request again to finish.
    const p2: AblateRequest.Params = { uri, kind: 'retention', fractions: [0, 0.25, 0.75, 1], evalLimit: 8, jobId: 'a2', perLayer: true };
    const before = progress.length;
    const pending = s.conn.sendRequest(AblateRequest.type, p2);
    await s.until(() => progress.slice(before).some((p) => p.kind === 'row'), 'a first row');
    assert.deepEqual(await s.conn.sendRequest(CancelAblationRequest.type, { jobId: 'a2' }), { cancelled: true });
    const partial = await pending as AblationReport;
    assert.equal(partial.cancelled, true);
    const full = await s.conn.sendRequest(AblateRequest.type, { ...p2, jobId: 'a3' }) as AblationReport;
    assert.equal(full.cancelled, false);
    assert.equal(full.results.length, 2 * 3 * 4 * 3);
    assert.deepEqual(await s.conn.sendRequest(CancelAblationRequest.type, {}), { cancelled: false });
  });
});
