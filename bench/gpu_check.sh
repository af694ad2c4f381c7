#!/usr/bin/env bash
# The native backend's GPU build on a CUDA machine, in one short run: `npm run setup:native -- --gpu`,
# `loraxs doctor` (must name the GPU, else this fails), the numerics tests on LORAXS_BACKEND=tensorflow,
# and a short training bench (BERT-base- and Llama-shaped LoRA-XS steps on native TensorFlow only).
#
# NOT RUN YET: it was written on a machine without a GPU (the GPU build was built, loaded and tested there
# on the CPU only), so no GPU figure exists for it; the first run on a GPU is its test.
#
# Needs: Linux x86-64, an NVIDIA driver for CUDA 12 (nvidia-smi works), Node 20+ with npm, g++ and make,
# python3 with pip, network to PyPI and the npm registry, about 7 GB free (2.5 GB of wheels, 4.3 GB
# installed). Run from the checkout: `bash bench/gpu_check.sh`. It prints what it measured and ends
# with one line per check (PASS / FAIL); the exit status is non-zero when a check failed.
#
# Numerics: Ampere and newer GPUs run float32 matmuls in TF32 by default in TensorFlow (about 1e-3
# relative error), which the 1e-4 tolerances of the tests do not allow; so the tests run with
# NVIDIA_TF32_OVERRIDE=0 (the check), then once more with TF32 on (reported, not a check).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
results=()
failed=0
check() { # name, status
  if [[ $2 == 0 ]]; then results+=("PASS $1"); else results+=("FAIL $1"); failed=1; fi
}
secs() { echo $(( $(date +%s) - $1 )); }

echo "== machine"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || echo "nvidia-smi failed (no NVIDIA driver?)"
node --version && nproc

if [[ ! -d node_modules ]]; then
  echo "== npm ci"
  npm ci --no-audit --no-fund || { echo "npm ci failed"; exit 1; }
fi
echo "== npm run build"
npm run build >/dev/null || { echo "npm run build failed"; exit 1; }

echo "== npm run setup:native -- --gpu"
t0=$(date +%s)
npm run setup:native -- --gpu
status=$?
echo "setup:native --gpu: exit $status in $(secs "$t0") s"
check "setup:native --gpu" "$status"
[[ $status == 0 ]] || { printf '%s\n' "${results[@]}"; exit 1; }

echo "== loraxs doctor (native TensorFlow)"
LORAXS_BACKEND=tensorflow node bin/loraxs.js doctor --json >/tmp/loraxs-gpu-doctor.json
status=$?
LORAXS_BACKEND=tensorflow node bin/loraxs.js doctor 2>&1 | sed 's/^/  /'
if [[ $status == 0 ]]; then
  # The GPU must be in use and named (from TensorFlow's "Created device ... name: ..." line).
  node -e '
    const r = JSON.parse(require("fs").readFileSync("/tmp/loraxs-gpu-doctor.json", "utf8"));
    const ok = r.backend === "tensorflow" && r.gpu && r.gpu.build === "gpu" && r.gpu.inUse && r.gpu.devices.length > 0;
    console.log(ok ? `doctor names: ${r.gpu.devices.join("; ")} (${r.gflops} GFLOP/s on a 512x512 matmul)`
                   : `doctor does not name a GPU: ${JSON.stringify(r.gpu)}`);
    process.exit(ok ? 0 : 1);'
  status=$?
fi
check "doctor names the GPU" "$status"

echo "== numerics on LORAXS_BACKEND=tensorflow, TF32 off (NVIDIA_TF32_OVERRIDE=0)"
t0=$(date +%s)
NVIDIA_TF32_OVERRIDE=0 LORAXS_BACKEND=tensorflow node scripts/run-tests.mjs test/native_backend.test.ts test/models.test.ts 2>&1 |
  grep -E '^(not ok|ok|# (tests|pass|fail|skipped))' ; status=${PIPESTATUS[0]}
echo "numerics (TF32 off): exit $status in $(secs "$t0") s"
check "numerics tests, TF32 off" "$status"

echo "== numerics with TensorFlow's default (TF32 on): reported only"
LORAXS_BACKEND=tensorflow node scripts/run-tests.mjs test/models.test.ts 2>&1 | grep -E '^(not ok|# (tests|pass|fail))'
echo "numerics (TF32 on): exit ${PIPESTATUS[0]} (not a check)"

echo "== training bench (native only, quick: one timed micro-batch per model)"
t0=$(date +%s)
status=0
for model in bert-base llama-small; do
  LORAXS_BENCH_BACKENDS=tensorflow LORAXS_BENCH_TRAIN_ONLY=$model LORAXS_BENCH_NATIVE_GB=${LORAXS_BENCH_NATIVE_GB:-32} \
    node bench/run.mjs train --quick --no-report 2>&1 | grep -E 'train |tokens|FAILED|Error' ; s=${PIPESTATUS[0]}
  [[ $s == 0 ]] || status=$s
done
echo "training bench: exit $status in $(secs "$t0") s; figures in bench/results/tmp/parts/train*.json"
check "training bench" "$status"

echo "== summary"
printf '%s\n' "${results[@]}"
exit $failed
