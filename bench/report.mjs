// Combines the parts' results (bench/results/tmp/parts/*.json) into bench/results/<date>-<machine>.json
// and a Markdown summary beside it (the figures the README's Performance section quotes).
import { readFileSync, readdirSync, writeFileSync, mkdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { hostname, cpus, loadavg } from 'node:os';

const f = (x, d = 2) => (x === null || x === undefined || Number.isNaN(x) ? '–' : Number(x).toFixed(d));
const e = (x) => (x === null || x === undefined ? '–' : Number(x).toExponential(1));
const ratio = (a, b) => (a && b ? a / b : null);
const gb = (b) => (b ? (b / 2 ** 30).toFixed(2) : '–');

/** Summary lines for the four targets of issue 6. */
function targets(r) {
  const out = [];
  for (const m of r.svd?.models ?? []) {
    if (!m.sklearn_s) continue;
    const err = m.max_rel_err;
    out.push({
      target: `SVD init ≥ 5× faster than sklearn TruncatedSVD(n_iter=10) at equal or better accuracy: ${m.model}`,
      measured: `engine (4 power iters) ${f(m.engine_p4_s, 1)} s, max rel. err ${e(err.engine_p4)}; sklearn ${f(m.sklearn_s, 1)} s, ${e(err.sklearn_n_iter_10)}; ` +
        `no-transpose variant at 10 iters ${f(m.no_transpose_p10_s, 1)} s, ${e(err.no_transpose_p10)}`,
      ratio: `speed-up ${f(ratio(m.sklearn_s, m.engine_p4_s))}× (4 iters, less accurate); ${f(ratio(m.sklearn_s, m.no_transpose_p10_s))}× (variant, 10 iters)`,
      met: ratio(m.sklearn_s, m.engine_p4_s) >= 5 && err.engine_p4 <= err.sklearn_n_iter_10,
    });
  }
  for (const m of r.train?.models ?? []) {
    const t = m.torch?.tokens_per_s;
    out.push({
      target: `training tokens/s ≥ PyTorch (same step, 2 threads): ${m.model} on ${m.backend ?? 'wasm'}`,
      measured: `engine ${f(m.engine.tokens_per_s, 1)} tok/s; no-transpose variant ${f(m.engine_no_transpose.tokens_per_s, 1)}; PyTorch ${f(t, 1)}`,
      ratio: `${f(ratio(m.engine.tokens_per_s, t))}× (variant ${f(ratio(m.engine_no_transpose.tokens_per_s, t))}×)`,
      met: t ? m.engine.tokens_per_s >= t : null,
    });
  }
  for (const q of r.train?.native_vs_wasm ?? []) {
    out.push({
      target: `native TensorFlow ≥ 2× wasm training tokens/s: ${q.model}`,
      measured: `engine ${f(q.native_over_wasm_engine)}×; no-transpose variant ${f(q.native_over_wasm_no_transpose)}×; best ÷ best ${f(q.native_best_over_wasm_best)}×`,
      ratio: `${f(q.native_over_wasm_engine)}×`,
      met: q.met,
    });
  }
  if (r.merge?.merge_gbps) {
    out.push({
      target: 'merge ≥ ½ the speed of copying the same bytes',
      measured: `merge ${f(r.merge.merge_gbps, 3)} GB/s; fs.copyFile ${f(r.merge.copy_file_gbps, 3)} GB/s; Buffer read+write ${f(r.merge.buffer_copy_gbps, 3)} GB/s`,
      ratio: `${f(ratio(r.merge.merge_gbps, r.merge.copy_file_gbps))} of copyFile, ${f(ratio(r.merge.merge_gbps, r.merge.buffer_copy_gbps))} of Buffer copy`,
      met: r.merge.merge_gbps >= 0.5 * r.merge.copy_file_gbps,
    });
    const lm = r.merge.causal_lm;
    if (lm) {
      out.push({
        target: 'merge ≥ ½ the speed of copying the same bytes (causal LM: file copied, merged weights written over it)',
        measured: `merge ${f(lm.merge_gbps, 3)} GB/s; fs.copyFile ${f(lm.copy_file_gbps, 3)} GB/s; Buffer read+write ${f(lm.buffer_copy_gbps, 3)} GB/s`,
        ratio: `${f(ratio(lm.merge_gbps, lm.copy_file_gbps))} of copyFile, ${f(ratio(lm.merge_gbps, lm.buffer_copy_gbps))} of Buffer copy`,
        met: lm.merge_gbps >= 0.5 * lm.copy_file_gbps,
      });
    }
    const a = r.merge.adapter;
    out.push({
      target: 'adapter.safetensors ≤ 4·Σr² + 2 KB',
      measured: `${a.adapter_safetensors_bytes} B for Σr² = ${a.sum_r2} (${a.modules} modules): 4·Σr² = ${4 * a.sum_r2} B + ${a.overhead_bytes} B header`,
      ratio: `${f(a.adapter_safetensors_bytes / a.bound_bytes, 3)} of the bound`,
      met: a.adapter_safetensors_bytes <= a.bound_bytes,
    });
  }
  return out;
}

function markdown(r) {
  const L = [];
  const m = r.machine;
  L.push(`# LoRA-XS Studio benchmarks, ${r.date}`, '');
  L.push(`Machine: ${m.hostname}, ${m.cpuModel}, ${m.cores} cores, ${m.memoryGiB} GiB, ${m.platform}, Node ${m.node}. ` +
    'Other jobs shared the machine: compare the ratios (engine and reference interleaved on the same inputs), not absolute times. ' +
    'Load average (1/5/15 min) of each invocation:');
  L.push('');
  for (const inv of r.invocations) {
    L.push(`- ${inv.parts.join(', ')} (${inv.started ?? '?'}): before ${inv.load_before.map((x) => x.toFixed(2)).join(' / ')}, after ${inv.load_after.map((x) => x.toFixed(2)).join(' / ')}${inv.note ? ` (${inv.note})` : ''}`);
  }
  const v = r.svd?.reference_versions ?? r.train?.models?.[0]?.torch?.load?.versions;
  if (r.svd?.reference_versions) L.push('', `Python references: ${Object.entries(r.svd.reference_versions).map(([k, x]) => `${k} ${x ?? 'absent'}`).join(', ')}.`);
  else if (v) L.push('', `Python references: ${JSON.stringify(v)}`);
  if (r.quick) L.push('', '**Quick run** (`--quick`): fewer layers and steps; not for comparison.');
  L.push('', '## Targets', '', '| target | measured | ratio | met |', '| --- | --- | --- | --- |');
  for (const t of targets(r)) L.push(`| ${t.target} | ${t.measured} | ${t.ratio} | ${t.met === null ? '–' : t.met ? 'yes' : 'no'} |`);

  if (r.svd) {
    L.push('', '## SVD initialisation (all target modules)', '',
      `Engine on ${r.svd.backend} (${r.svd.wasm_threads ?? 1} thread(s), matmul ${f(r.svd.wasm_matmul_gflops, 1)} GFLOP/s at 512²); references with numpy/OpenBLAS and torch on all cores. ` +
      'Errors: max over modules of the relative error of the top-r singular values vs exact float64 ones (scipy). ' +
      '"no-transpose" = bench/svd_no_transpose.ts, the engine algorithm without transposed matMuls (a proposal).', '',
      '| model | modules | r | engine 4 it. s | no-transpose 4 it. s | no-transpose 10 it. s | sklearn n_iter=10 s | exact torch s | engine exact s | err engine 4 it. | err 10 it. | err sklearn | sklearn ÷ engine |',
      '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
    for (const x of r.svd.models) {
      const er = x.max_rel_err;
      L.push(`| ${x.model} | ${x.modules} | ${x.rank} | ${f(x.engine_p4_s)} | ${f(x.no_transpose_p4_s)} | ${f(x.no_transpose_p10_s)} | ${f(x.sklearn_s)} | ${f(x.exact_ref_s)} | ${f(x.engine_exact_s)} | ${e(er.engine_p4)} | ${e(er.no_transpose_p10)} | ${e(er.sklearn_n_iter_10)} | ${f(ratio(x.sklearn_s, x.engine_p4_s))}× |`);
    }
    L.push('', 'Exact SVD times are measured on layer 0 and extrapolated (every layer has the same shapes); errors are over the first 2 layers. ' +
      'Synthetic models: σ_i = 2·(1+i)^-0.7 (slow decay, the hard case).', '', 'Power iterations vs accuracy (layer 0, no-transpose variant):', '',
      '| model | ' + (r.svd.models[0]?.power_sweep_layer0_no_transpose ?? []).map((p) => `${p.power_iters} it.`).join(' | ') + ' |',
      '| --- |' + (r.svd.models[0]?.power_sweep_layer0_no_transpose ?? []).map(() => ' ---: |').join(''));
    for (const x of r.svd.models) L.push(`| ${x.model} | ${x.power_sweep_layer0_no_transpose.map((p) => `${e(p.max_rel_err)} (${f(p.s)} s)`).join(' | ')} |`);
    if (r.svd.skipped?.length) L.push('', `Skipped: ${r.svd.skipped.join('; ')}`);
  }
  if (r.train) {
    L.push('', '## Training step (batch 32 × 128 tokens, LoRA-XS r = 16, AdamW)', '',
      '| model | engine tok/s | no-transpose tok/s | PyTorch tok/s | engine ÷ PyTorch | engine GFLOP/s | PyTorch GFLOP/s | matmul peak GFLOP/s (numpy/torch, 2 thr.) | wasm matmul 1024² (threads) | engine peak RSS GiB | PyTorch peak RSS GiB |',
      '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
    for (const x of r.train.models) {
      const pk = x.matmul_peak_gflops;
      // The machine's matmul peak: the best float32 GEMM rate measured in the same run (numpy and torch, 2 threads).
      const peak = Math.max(...['numpy_1024^3', '1024^3', '4096x768x3072'].map((k) => pk[k] ?? 0));
      L.push(`| ${x.model} (${x.backend ?? 'wasm'}) | ${f(x.engine.tokens_per_s, 1)} | ${f(x.engine_no_transpose.tokens_per_s, 1)} | ${f(x.torch.tokens_per_s, 1)} | ${f(ratio(x.engine.tokens_per_s, x.torch.tokens_per_s))}× | ` +
        `${f(x.engine.gflops, 1)} (${f(100 * x.engine.gflops / peak, 0)}% of peak) | ${f(x.torch.gflops, 1)} (${f(100 * x.torch.gflops / peak, 0)}%) | ${f(peak, 1)} | ${f(pk.wasm_1024 ?? pk.wasm_1_thread_1024, 1)} (${x.wasm_threads ?? 1}) | ${gb(x.engine.peak_rss_bytes)} | ${gb(x.torch.peak_rss_bytes)} |`);
    }
    const x0 = r.train.models[0];
    if (x0) {
      L.push('', `The engine runs the step as ${r.train.models.map((x) => `${x.engine.micro_batches_per_step} micro-batches of ${x.engine.micro_batch} (${x.model})`).join(', ')} ` +
        'with gradient accumulation (the autodiff tape of 32 × 128 tokens does not fit the 4 GB wasm heap); one or two micro-batches are timed and multiplied out. ' +
        'PyTorch: transformers *ForSequenceClassification with LoRA-XS wrappers, full batch, torch.set_num_threads(2), median of its steps. ' +
        'FLOPs are counted analytically (forward, input gradients, R gradients). Peak RSS: PyTorch includes its ~0.5 GB runtime; the engine\'s wasm heap never shrinks. ' +
        `Matmul rates measured in the run (GFLOP/s; the peak column is their maximum, noisy on a shared machine): ${r.train.models.map((x) => `${x.model}: ${Object.entries(x.matmul_peak_gflops).map(([k, g]) => `${k} ${f(g, 0)}`).join(', ')}`).join('; ')}.`);
    }
    if (r.train.failures?.length) L.push('', `Failed: ${r.train.failures.join('; ')}`);
  }
  if (r.tta) {
    L.push('', '## Time to accuracy', '');
    if (r.tta.skipped) L.push(`Skipped: ${r.tta.skipped}`);
    else {
      L.push(`${r.tta.model}, ${r.tta.task}. Target ${f(r.tta.target_accuracy)} dev accuracy.`, '',
        '| padding | training s to target | total training s | tokens | padded tokens | final dev accuracy |', '| --- | ---: | ---: | ---: | ---: | ---: |');
      for (const [mode, run] of Object.entries(r.tta.runs)) {
        L.push(`| ${mode} | ${f(r.tta.time_to_target_s[mode], 1)} | ${f(run.train_s, 1)} | ${run.tokens} | ${run.padded_tokens} | ${f(run.curve.at(-1).accuracy, 3)} |`);
      }
    }
  }
  if (r.merge) {
    const g = r.merge;
    L.push('', '## Merge and adapter size', '',
      `${g.model} checkpoint (${(g.checkpoint_bytes / 1e6).toFixed(0)} MB, ${g.merged_modules} modules merged): merge ${f(g.merge_gbps, 3)} GB/s ` +
      `(median of ${g.merge_s.length}: ${g.merge_s.map((s) => f(s, 1)).join(', ')} s), fs.copyFile ${f(g.copy_file_gbps, 3)} GB/s, Buffer read + write ${f(g.buffer_copy_gbps, 3)} GB/s. ${g.note}.`, '',
      ...(g.causal_lm ? [`${g.causal_lm.model} causal-LM checkpoint (${(g.causal_lm.checkpoint_bytes / 1e6).toFixed(0)} MB, ${g.causal_lm.merged_modules} modules merged): merge ${f(g.causal_lm.merge_gbps, 3)} GB/s ` +
        `(median of ${g.causal_lm.merge_s.length}: ${g.causal_lm.merge_s.map((s) => f(s, 2)).join(', ')} s), fs.copyFile ${f(g.causal_lm.copy_file_gbps, 3)} GB/s, Buffer read + write ${f(g.causal_lm.buffer_copy_gbps, 3)} GB/s. ${g.causal_lm.note}.`, ''] : []),
      `adapter.safetensors: ${g.adapter.adapter_safetensors_bytes} bytes for Σr² = ${g.adapter.sum_r2} (4·Σr² = ${4 * g.adapter.sum_r2}, bound 4·Σr² + 2048 = ${g.adapter.bound_bytes}); ` +
      `whole folder: ${Object.entries(g.adapter.folder_files_bytes).map(([k, b]) => `${k} ${b} B`).join(', ')}.`);
  }
  if (r.backends) {
    L.push('', `## Backends (${r.backends.step}, d = 768, r = 16)`, '', '| backend | available | tokens/s | matmul GFLOP/s (512²) | matmul GFLOP/s (1024²) | note |', '| --- | --- | ---: | ---: | ---: | --- |');
    for (const b of r.backends.results) L.push(`| ${b.backend} | ${b.available ? 'yes' : 'no'} | ${f(b.tokens_per_s, 0)} | ${f(b.matmul_gflops_512, 1)} | ${f(b.matmul_gflops_1024, 1)} | ${b.note ?? b.why ?? ''} |`);
    const flagged = r.backends.results.filter((b) => b.x_wT_flagged_ms !== undefined);
    if (flagged.length) {
      L.push('', 'x (1024 × 512; 128 × 512 on cpu) · Wᵀ (W 1536 × 512) with the transpose flag vs an explicit transpose then a plain product:', '', '| backend | flagged ms | explicit ms | ratio |', '| --- | ---: | ---: | ---: |');
      for (const b of flagged) L.push(`| ${b.backend} | ${f(b.x_wT_flagged_ms, 1)} | ${f(b.x_transpose_w_ms, 1)} | ${f(b.flagged_over_explicit, 2)} |`);
    }
  }
  return L.join('\n') + '\n';
}

export function writeReport(root, partsDir, opts = {}) {
  const parts = {};
  for (const file of readdirSync(partsDir).filter((x) => x.endsWith('.json') && !x.startsWith('train-') && !x.startsWith('backend-') && x !== 'invocations.json')) {
    parts[file.replace(/\.json$/, '')] = JSON.parse(readFileSync(join(partsDir, file), 'utf8'));
  }
  const date = new Date().toISOString().slice(0, 10);
  let cpu = cpus()[0]?.model ?? 'cpu';
  try {
    cpu = /model name\s*:\s*(.+)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? cpu;
  } catch { /* not Linux */ }
  const machineName = `${hostname()}-${cpus().length}core-${cpu}`.replace(/[^A-Za-z0-9.-]+/g, '-').replace(/-+$/, '');
  const anyMachine = Object.values(parts).find((p) => p.machine)?.machine ?? {};
  const invocationsFile = join(partsDir, 'invocations.json');
  const invocations = existsSync(invocationsFile) ? JSON.parse(readFileSync(invocationsFile, 'utf8')) : [];
  const result = { date, machine: anyMachine, machine_name: machineName, quick: !!opts.quick, invocations, ...parts };
  const dir = join(root, 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  const base = join(dir, `${date}-${machineName}${opts.quick ? '-quick' : ''}`);
  writeFileSync(`${base}.json`, JSON.stringify(result, null, 2) + '\n');
  writeFileSync(`${base}.md`, markdown(result));
  return [`${base}.json`, `${base}.md`];
}

// `node bench/report.mjs`: rewrites the report from the last parts.
if (process.argv[1] && process.argv[1].endsWith('report.mjs')) {
  const root = new URL('..', import.meta.url).pathname;
  const partsDir = join(root, 'bench', 'results', 'tmp', 'parts');
  if (existsSync(partsDir)) console.log(writeReport(root, partsDir, { quick: process.argv.includes('--quick') }).join('\n'));
}
