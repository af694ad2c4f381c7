/**
 * The language server over the real LSP protocol (node dist/sidecar.js --stdio): diagnostics with exact
 * ranges, quick fixes, hover numbers equal to computeParams', completion, code lenses, workspace trust.
 * Expected ranges are found in the config text by search, independently of the server's YAML positions.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  CodeActionRequest, CodeLensRequest, CompletionRequest, HoverRequest, DiagnosticSeverity,
} from 'vscode-languageserver-protocol/node';
import type { CodeAction, CompletionItem, CompletionList, Diagnostic, MarkupContent, Range } from 'vscode-languageserver-protocol/node';
import { computeParams } from '../sidecar/loraxs/param_counts';
import { parseConfigText } from '../sidecar/config/parse';
import { ParamsRequest, SetTrustedNotification, StatusNotification, TrainRequest } from '../sidecar/protocol';
import { GOOD_CONFIG, makeWorkspace, messageText, withSidecar } from './lsp_harness';

/** The range of the `occurrence`-th `needle` in `text` (0-based lines and characters). */
function rangeOf(text: string, needle: string, occurrence = 0): Range {
  let at = -1;
  for (let i = 0; i <= occurrence; i++) {
    at = text.indexOf(needle, at + 1);
    assert.ok(at >= 0, `'${needle}' (occurrence ${occurrence}) not in the text`);
  }
  const before = text.slice(0, at).split('\n');
  const line = before.length - 1;
  const character = before[line].length;
  return { start: { line, character }, end: { line, character: character + needle.length } };
}

function only(diagnostics: Diagnostic[], what: string): Diagnostic {
  assert.equal(diagnostics.length, 1, `expected one diagnostic for ${what}, got ${JSON.stringify(diagnostics.map((d) => d.message))}`);
  return diagnostics[0];
}

const items = (r: CompletionItem[] | CompletionList | null): CompletionItem[] => (Array.isArray(r) ? r : r?.items ?? []);

test('diagnostics: a good config has none; a bad key, a target matching nothing, a rank too big and a missing column are placed exactly', async () => {
  const ws = makeWorkspace();
  await withSidecar({ trusted: true, rootDir: ws.dir }, async (s) => {
    const good = ws.config('good', GOOD_CONFIG);
    s.open(good.uri, GOOD_CONFIG);
    assert.deepEqual(await s.diagnosticsOf(good.uri), [], 'a valid config for an existing model and data has no diagnostics');

    const badKey = GOOD_CONFIG.replace('  rank: 4', '  rnk: 4');
    const c1 = ws.config('bad-key', badKey);
    s.open(c1.uri, badKey);
    const d1 = only(await s.diagnosticsOf(c1.uri), 'the bad key');
    assert.deepEqual(d1.range, rangeOf(badKey, 'rnk'));
    assert.equal(d1.severity, DiagnosticSeverity.Error);
    assert.match(messageText(d1.message), /unknown key 'rnk'.*did you mean 'rank'/);

    const badTarget = GOOD_CONFIG.replace('    - value', '    - valeu');
    const c2 = ws.config('bad-target', badTarget);
    s.open(c2.uri, badTarget);
    const d2 = only(await s.diagnosticsOf(c2.uri), 'the target');
    assert.deepEqual(d2.range, rangeOf(badTarget, 'valeu'));
    assert.match(messageText(d2.message), /target 'valeu' matches no module.*did you mean 'value'/);
    // The quick fix replaces the target with the module key; applying it clears the diagnostic.
    const actions = await s.conn.sendRequest(CodeActionRequest.type, { textDocument: { uri: c2.uri }, range: d2.range, context: { diagnostics: [d2] } });
    const fix = (actions ?? []).find((a): a is CodeAction => 'edit' in a && a.isPreferred === true);
    assert.ok(fix, `a preferred quick fix, got ${JSON.stringify(actions)}`);
    assert.equal(fix.title, "Replace with 'value'");
    const edits = fix.edit!.changes![c2.uri];
    assert.deepEqual(edits, [{ range: rangeOf(badTarget, 'valeu'), newText: 'value' }]);
    const fixed = badTarget.replace('valeu', edits[0].newText);
    s.change(c2.uri, fixed);
    assert.deepEqual(await s.diagnosticsOf(c2.uri), [], 'the fixed config has no diagnostics');

    // hidden 32, intermediate 64: min(out, in) = 32 for every adapted module.
    const bigRank = GOOD_CONFIG.replace('  rank: 4', '  rank: 40');
    const c3 = ws.config('big-rank', bigRank);
    s.open(c3.uri, bigRank);
    const d3 = only(await s.diagnosticsOf(c3.uri), 'the rank');
    assert.deepEqual(d3.range, rangeOf(bigRank, '40'));
    assert.match(messageText(d3.message), /rank 40 exceeds min\(out, in\) = 32 of bert\.encoder\.layer\.0\.attention\.self\.query \(32 × 32\)/);

    const badColumn = GOOD_CONFIG.replace('  label: label', '  label: labl');
    const c4 = ws.config('bad-column', badColumn);
    s.open(c4.uri, badColumn);
    const d4s = await s.diagnosticsOf(c4.uri);
    assert.equal(d4s.length, 2, `train and validation both lack 'labl': ${JSON.stringify(d4s.map((d) => messageText(d.message)))}`);
    for (const d of d4s) {
      assert.deepEqual(d.range, rangeOf(badColumn, 'labl'));
      assert.match(messageText(d.message), /column 'labl' is not in .*dev\.tsv|column 'labl' is not in train\.tsv/);
      assert.match(messageText(d.message), /did you mean 'label'/);
    }
  });
});

test('diagnostics: missing model folder, pytorch-only folder, missing data file, regression with text labels, causal-lm on an encoder', async () => {
  const ws = makeWorkspace();
  const binOnly = path.join(ws.dir, 'bin-model');
  fs.mkdirSync(binOnly);
  fs.copyFileSync(path.join(ws.modelDir, 'config.json'), path.join(binOnly, 'config.json'));
  fs.writeFileSync(path.join(binOnly, 'pytorch_model.bin'), 'not read');
  await withSidecar({ trusted: true, rootDir: ws.dir }, async (s) => {
    const cases: Array<{ name: string; text: string; on: string; message: RegExp }> = [
      { name: 'no-model', text: GOOD_CONFIG.replace('model: model', 'model: nowhere'), on: 'nowhere', message: /model folder .*nowhere does not exist/ },
      { name: 'bin-model', text: GOOD_CONFIG.replace('model: model', 'model: bin-model'), on: 'bin-model', message: /only PyTorch pickle weights \(pytorch_model\.bin\)/ },
      { name: 'no-data', text: GOOD_CONFIG.replace('data/dev.tsv', 'data/missing.tsv'), on: 'data/missing.tsv', message: /missing\.tsv does not exist/ },
      {
        name: 'regression', text: GOOD_CONFIG.replace('task: classification', 'task: regression').replace('data/train.tsv', 'data/words.tsv').replace('  validation: data/dev.tsv\n', ''),
        on: 'label\n', message: /task regression needs a number in 'label', but line 2 of words\.tsv has "positive"/,
      },
      { name: 'causal', text: GOOD_CONFIG.replace('task: classification', 'task: causal-lm').replace('  label: label\n', ''), on: 'causal-lm', message: /causal-lm needs a decoder model/ },
    ];
    for (const c of cases) {
      const { uri } = ws.config(c.name, c.text);
      s.open(uri, c.text);
      const d = only(await s.diagnosticsOf(uri), c.name);
      const expected = rangeOf(c.text, c.on.trim(), c.on === 'label\n' ? 1 : 0);
      assert.deepEqual(d.range, expected, `${c.name}: range`);
      assert.match(messageText(d.message), c.message, c.name);
    }
  });
});

test('bad input never stops the server: broken YAML gives a syntax diagnostic and requests still answer', async () => {
  const ws = makeWorkspace();
  await withSidecar({ trusted: true, rootDir: ws.dir }, async (s) => {
    const texts = ['model: [\n  - :\n', '\u0000\u0001 : : :\n\t- x', '', 'adapter:\n  targets: 7\n  rank: -3\nmodel: 12\n', '- a\n- b\n'];
    for (const [i, text] of texts.entries()) {
      const { uri } = ws.config(`broken-${i}`, text);
      s.open(uri, text);
      const ds = await s.diagnosticsOf(uri);
      assert.ok(ds.length > 0, `broken text ${i} has diagnostics`);
      for (let line = 0; line < 3; line++) {
        await s.conn.sendRequest(HoverRequest.type, { textDocument: { uri }, position: { line, character: 1 } });
        await s.conn.sendRequest(CompletionRequest.type, { textDocument: { uri }, position: { line, character: 2 } });
      }
      await s.conn.sendRequest(CodeLensRequest.type, { textDocument: { uri } });
    }
    // Still alive and correct afterwards.
    const good = ws.config('good', GOOD_CONFIG);
    s.open(good.uri, GOOD_CONFIG);
    assert.deepEqual(await s.diagnosticsOf(good.uri), []);
  });
});

test('hover on rank shows the parameter counts computeParams gives; loraxs/params returns its report', async () => {
  const ws = makeWorkspace();
  const { uri, file } = ws.config('good', GOOD_CONFIG);
  const { config } = parseConfigText(GOOD_CONFIG, file);
  assert.ok(config);
  const report = computeParams(config);
  // Independent closed form: 2 layers × (query, value), rank 4: 4 modules × 4² = 64; LoRA: 4 × 4 × (32 + 32).
  assert.equal(report.loraxs, 64);
  assert.equal(report.lora, 4 * 4 * 64);
  await withSidecar({ trusted: true, rootDir: ws.dir }, async (s) => {
    s.open(uri, GOOD_CONFIG);
    const hover = await s.conn.sendRequest(HoverRequest.type, { textDocument: { uri }, position: rangeOf(GOOD_CONFIG, 'rank').start });
    assert.ok(hover, 'a hover on rank');
    const md = (hover.contents as MarkupContent).value;
    assert.equal((hover.contents as MarkupContent).kind, 'markdown');
    assert.deepEqual(hover.range, rangeOf(GOOD_CONFIG, 'rank'));
    assert.match(md, /\*\*adapter\.rank\*\*/, 'names the key');
    assert.ok(md.includes(`**LoRA-XS: ${report.loraxs.toLocaleString('en-US')} trainable parameters** in ${report.modules} modules`), md);
    assert.ok(md.includes(`LoRA at the same rank trains ${report.lora.toLocaleString('en-US')}`), md);
    assert.ok(md.includes(`VeRA ${report.vera.toLocaleString('en-US')}`), md);
    assert.ok(md.includes(`Base model: ${report.baseParams.toLocaleString('en-US')} parameters`), md);
    assert.ok(md.includes(`Adapter: ${report.adapterBytes.toLocaleString('en-US')} bytes`), md);
    assert.match(md, /1,000,000 adapters: 244 MiB/, '256,000,000 bytes = 244 MiB');
    assert.match(md, /\| query \| 2 \| 32 × 32 \| 4 \| 32 \|/, 'per module type row');

    // Hover on a target item lists the modules it selects; on a plain key, the schema description.
    const onTarget = await s.conn.sendRequest(HoverRequest.type, { textDocument: { uri }, position: rangeOf(GOOD_CONFIG, 'value').start });
    assert.match((onTarget!.contents as MarkupContent).value, /`value` matches 2 modules: `bert\.encoder\.layer\.0\.attention\.self\.value` \(32 × 32\)/);
    const onLr = await s.conn.sendRequest(HoverRequest.type, { textDocument: { uri }, position: rangeOf(GOOD_CONFIG, 'lr').start });
    const lrText = (onLr!.contents as MarkupContent).value;
    assert.match(lrText, /\*\*training\.lr\*\*/);
    assert.doesNotMatch(lrText, /trainable parameters/, 'lr does not show the parameter report');

    const viaRequest = await s.conn.sendRequest(ParamsRequest.type, { uri });
    assert.deepEqual(viaRequest, report);
  });
});

test('completion offers keys of the section, enum values, target names from the model and data columns', async () => {
  const ws = makeWorkspace();
  const text = GOOD_CONFIG.replace('training:\n', 'training:\n  \n').replace('    - value\n', '    - value\n    - \n');
  const { uri } = ws.config('complete', text);
  await withSidecar({ trusted: true, rootDir: ws.dir }, async (s) => {
    s.open(uri, text);
    const at = async (line: number, character: number) =>
      items(await s.conn.sendRequest(CompletionRequest.type, { textDocument: { uri }, position: { line, character } }));
    const lines = text.split('\n');
    const keys = (await at(lines.indexOf('  ', lines.indexOf('training:')), 2)).map((i) => i.label);
    for (const k of ['optimizer', 'schedule', 'warmup_ratio', 'seed']) assert.ok(keys.includes(k), `training key ${k} in ${keys}`);
    for (const k of ['epochs', 'batch_size', 'lr']) assert.ok(!keys.includes(k), `${k} is already written`);
    assert.ok(!keys.includes('rank'), 'adapter keys are not offered under training');

    const targets = await at(lines.indexOf('    - '), 6);
    const names = targets.map((i) => i.label);
    for (const k of ['query', 'key', 'value', 'attention.output.dense', 'intermediate.dense', 'output.dense']) {
      assert.ok(names.includes(k), `target ${k} offered: ${names}`);
    }
    const query = targets.find((i) => i.label === 'query')!;
    assert.equal(query.detail, '2 modules, 32 × 32');
    const intermediate = targets.find((i) => i.label === 'intermediate.dense')!;
    assert.equal(intermediate.detail, '2 modules, 64 × 32', 'intermediate.dense is 64 × 32 (intermediate × hidden)');

    const withTask = text.replace('task: classification', 'task: ');
    s.change(uri, withTask);
    const tasks = (await at(1, 6)).map((i) => i.label);
    assert.deepEqual(tasks, ['classification', 'regression', 'causal-lm']);

    const withLabel = text.replace('  label: label', '  label: ');
    s.change(uri, withLabel);
    const labelLine = withLabel.split('\n').indexOf('  label: ');
    assert.deepEqual((await at(labelLine, 9)).map((i) => i.label), ['sentence', 'label'], 'columns of train.tsv');

    const topLevel = 'model: model\n\n';
    s.change(uri, topLevel);
    const top = (await at(1, 0)).map((i) => i.label);
    for (const k of ['task', 'data', 'adapter', 'training', 'output']) assert.ok(top.includes(k), `top-level key ${k}: ${top}`);
    assert.ok(!top.includes('model'), 'model is already written');
  });
});

test('code lenses: Fine-tune, the trainable-parameter count, Ablate on line 0', async () => {
  const ws = makeWorkspace();
  const { uri, file } = ws.config('good', GOOD_CONFIG);
  const report = computeParams(parseConfigText(GOOD_CONFIG, file).config!);
  await withSidecar({ trusted: true, rootDir: ws.dir }, async (s) => {
    s.open(uri, GOOD_CONFIG);
    const lenses = await s.conn.sendRequest(CodeLensRequest.type, { textDocument: { uri } });
    assert.ok(lenses);
    assert.equal(lenses.length, 3);
    for (const l of lenses) assert.equal(l.range.start.line, 0);
    assert.deepEqual(lenses[0].command, { title: '$(play) Fine-tune', command: 'loraxs.fineTune', arguments: [uri] });
    assert.equal(lenses[1].command!.title, `${report.loraxs.toLocaleString('en-US')} trainable parameters (LoRA-XS, ${report.modules} modules)`);
    assert.deepEqual(lenses[2].command, { title: 'Ablate', command: 'loraxs.ablate', arguments: [uri] });
  });
});

test('untrusted workspace: only syntax and schema diagnostics, training refused; trusting it turns the model checks on', async () => {
  const ws = makeWorkspace();
  const text = GOOD_CONFIG.replace('    - value', '    - valeu').replace('  rank: 4', '  rank: 4\n  bogus: 1');
  const { uri } = ws.config('untrusted', text);
  await withSidecar({ trusted: false, rootDir: ws.dir }, async (s) => {
    const statuses = s.collect(StatusNotification.type);
    s.open(uri, text);
    const ds = await s.diagnosticsOf(uri);
    assert.deepEqual(ds.map((d) => d.range), [rangeOf(text, 'bogus')], 'only the schema problem, not the target');
    await assert.rejects(s.conn.sendRequest(TrainRequest.type, { uri }), /untrusted workspace/);
    await assert.rejects(s.conn.sendRequest(ParamsRequest.type, { uri }), /untrusted workspace/);
    const hover = await s.conn.sendRequest(HoverRequest.type, { textDocument: { uri }, position: rangeOf(text, 'rank').start });
    assert.doesNotMatch((hover!.contents as MarkupContent).value, /trainable parameters/, 'no model read for hover');
    const lenses = await s.conn.sendRequest(CodeLensRequest.type, { textDocument: { uri } });
    assert.deepEqual(lenses!.map((l) => l.command!.command), ['loraxs.fineTune', 'loraxs.ablate']);

    const fixedSchema = text.replace('\n  bogus: 1', '');
    s.change(uri, fixedSchema);
    assert.deepEqual(await s.diagnosticsOf(uri), []);
    await s.conn.sendNotification(SetTrustedNotification.type, { trusted: true });
    s.change(uri, fixedSchema);
    const trusted = only(await s.diagnosticsOf(uri), 'the target once trusted');
    assert.deepEqual(trusted.range, rangeOf(fixedSchema, 'valeu'));
    await s.until(() => statuses.some((p) => p.state === 'idle'), 'an idle status');
    const idle = statuses.find((p) => p.state === 'idle')!;
    assert.ok(['wasm', 'cpu', 'tensorflow', 'webgpu'].includes(idle.backend ?? ''), `the backend is named: ${JSON.stringify(idle)}`);
  });
});
