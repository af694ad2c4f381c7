/**
 * Exports and merged folders checked by the reference implementations (transformers + PEFT, in Python),
 * when a Python with torch, transformers and peft is available: LORAXS_REFERENCE_PYTHON names it (the
 * default `python3` usually lacks torch; test/reference/README.md says how the reference environment is
 * made). PEFT must load the `peft-lora` export as it is and give the merged model's logits; the authors'
 * layout must rebuild the merged weights. Skips with a message otherwise.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { initBackend } from '../sidecar/backend/choice';
import { openModelSession } from '../sidecar/session/model_session';
import { mergeRun } from '../sidecar/engine/merge_run';
import { exportRun } from '../sidecar/engine/export_run';
import type { RunConfig } from '../sidecar/config/types';
import { makeWorkspace } from './workspace';
import { repoRoot, tempDir } from './paths';

process.env.LORAXS_CACHE_DIR ??= tempDir('loraxs-cache-');
const python = process.env.LORAXS_REFERENCE_PYTHON ?? 'python3';
const probe = spawnSync(python, ['-c', 'import torch, transformers, peft'], { encoding: 'utf8' });
const skip = probe.status === 0 ? false : `skipped: ${python} cannot import torch, transformers and peft (set LORAXS_REFERENCE_PYTHON)`;

const TARGETS: Record<string, string[]> = {
  bert: ['query', 'value', 'attention.output.dense', 'output.dense'],
  roberta: ['query', 'value', 'attention.output.dense', 'output.dense'],
  llama: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'],
  qwen2: ['q_proj', 'v_proj', 'down_proj'],
  gemma: ['q_proj', 'v_proj', 'up_proj'],
};

for (const [family, targets] of Object.entries(TARGETS)) {
  test(`${family}: PEFT loads the peft-lora export and matches the merged model; the authors' layout rebuilds it`, { skip }, async () => {
    await initBackend();
    const ws = makeWorkspace(family, 'seq-cls');
    const session = await openModelSession({
      modelDir: ws.model, task: 'classification', numLabels: 3, seed: 5, dropout: null,
      adapter: { rank: 4, rankPattern: {}, alpha: 8, targets, init: 'svd', initStd: 1.0, svd: { method: 'randomized', oversamples: 10, powerIters: 4 } },
    });
    const adapterDir = path.join(ws.dir, 'adapter');
    try {
      session.adapters!.save(adapterDir, { head: session.head, task: 'classification', labelNames: ['a', 'b', 'c'], numLabels: 3, eval: null, modelDir: ws.model });
    } finally {
      session.dispose();
    }
    await mergeRun({ model: ws.model, file: path.join(ws.dir, 'x.loraxs.yaml') } as RunConfig, adapterDir, path.join(ws.dir, 'merged'));
    await exportRun({ adapterDir, format: 'peft-lora', outDir: path.join(ws.dir, 'peft') });
    await exportRun({ adapterDir, format: 'loraxs-official', outDir: path.join(ws.dir, 'official') });
    const r = spawnSync(python, [path.join(repoRoot, 'test', 'reference', 'check_exports.py'), ws.model, path.join(ws.dir, 'merged'),
      path.join(ws.dir, 'peft'), path.join(ws.dir, 'official'), '--task', 'seq-cls'], { encoding: 'utf8' });
    assert.equal(r.status, 0, `check_exports.py failed:\n${r.stdout}\n${r.stderr.slice(-3000)}`);
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!);
    console.log(`${family}: ${JSON.stringify(out)}`);
    assert.ok(out.merged_vs_peft_logits_max_abs < 1e-4, JSON.stringify(out));
    assert.ok(out.official_vs_merged_weight_rel < 1e-5, JSON.stringify(out));
  });
}
