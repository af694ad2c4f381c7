/**
 * A faster BatchMatMul for the wasm backend. tfjs-backend-wasm 4.22 sends a matrix product to XNNPACK
 * only when it has no transpose flag; with `transposeA` or `transposeB` it runs a plain loop that is
 * 10-20× slower (measured on x (4608 × 512) · Wᵀ (512 × 1536): 4.6 s against 0.27 s). Every linear layer
 * (x Wᵀ) and every matMul gradient (dy Bᵀ, Aᵀ dy) asks for a transpose, so training ran on the slow
 * loop, and so does a batch of left operands with one shared right operand. This wrapper transposes the
 * flagged operands with the Transpose kernel (a copy, O(size)) and runs a shared right operand's batch as
 * one 2-D product, through the original kernel without flags: the same products, summed in XNNPACK's
 * order. Batches of right operands (attention) keep the original kernel.
 *
 * XNNPACK keeps, for every right operand it has seen without flags, an operator holding a packed copy of
 * it, freed only when that tensor is disposed. A frozen weight W is such an operand in every backward
 * pass (dy · W), so a model's weights were held twice: Qwen2-0.5B-shaped (1.98 GB) ran out of the 4 GB
 * heap, where tfjs-wasm only warns ("xnn_create_fully_connected_nc_f32 ... status 6") and leaves the
 * product's output unwritten (wrong numbers), and the next steps crawled. A right operand of
 * PACK_COPY_ELEMENTS or more is therefore copied first (Identity, O(size)), so its packed copy lives for
 * this call only, as a transposed operand's always did.
 */
import * as tf from './tf';

let patched = false;

/** Right operands this large (1 MiB of float32) are copied before XNNPACK sees them (see the top). */
export const PACK_COPY_ELEMENTS = 1 << 18;

type Info = tf.TensorInfo;
type KernelArgs = Parameters<tf.KernelFunc>[0];
interface WasmBackendLike { disposeData(id: unknown): void }

const sizeOf = (shape: number[]): number => shape.reduce((a, b) => a * b, 1);

/** Whether BatchMatMul on wasm is this module's kernel (the backend set-up installs it). */
export function wasmMatMulPatched(): boolean {
  return patched;
}

/** Re-registers BatchMatMul for the wasm backend (once; after the backend is initialised). */
export function patchWasmMatMul(): void {
  if (patched) return;
  const original = tf.getKernel('BatchMatMul', 'wasm');
  const kernels = { transpose: tf.getKernel('Transpose', 'wasm'), reshape: tf.getKernel('Reshape', 'wasm'), identity: tf.getKernel('Identity', 'wasm') };
  if (!original || !kernels.transpose || !kernels.reshape || !kernels.identity) return;
  const k = kernels as Required<{ [K in keyof typeof kernels]: tf.KernelConfig }>;
  patched = true;
  tf.unregisterKernel('BatchMatMul', 'wasm');
  tf.registerKernel({
    kernelName: 'BatchMatMul',
    backendName: 'wasm',
    setupFunc: original.setupFunc,
    disposeFunc: original.disposeFunc,
    kernelFunc: (args: KernelArgs) => {
      const backend = args.backend as unknown as WasmBackendLike;
      const attrs = args.attrs as unknown as { transposeA: boolean; transposeB: boolean };
      const inputs = args.inputs as unknown as { a: Info; b: Info };
      const temporaries: Info[] = [];
      const run = (config: tf.KernelConfig, inputs: object, attrs: object): Info => {
        const t = config.kernelFunc({ inputs, backend: args.backend, attrs } as unknown as KernelArgs) as Info;
        temporaries.push(t);
        return t;
      };
      if (!attrs.transposeA && !attrs.transposeB && sizeOf(inputs.a.shape.slice(0, -2)) === 1) {
        if (sizeOf(inputs.b.shape) < PACK_COPY_ELEMENTS) return original.kernelFunc(args);
        try {
          return original.kernelFunc({ ...args, inputs: { a: inputs.a, b: run(k.identity, { x: inputs.b }, {}) } } as unknown as KernelArgs) as Info;
        } finally {
          for (const t of temporaries) backend.disposeData(t.dataId);
        }
      }
      // A batch of right operands (attention's products) stays on the original kernel: XNNPACK packs its
      // right operand per call, so one small product per batch entry is slower than the plain loop.
      if (sizeOf(inputs.b.shape.slice(0, -2)) > 1) return original.kernelFunc(args);
      try {
        const flip = (x: Info): Info => {
          const rank = x.shape.length;
          const perm = x.shape.map((_, i) => i);
          [perm[rank - 2], perm[rank - 1]] = [perm[rank - 1], perm[rank - 2]];
          return run(k.transpose, { x }, { perm });
        };
        const a = attrs.transposeA ? flip(inputs.a) : inputs.a;
        const b = attrs.transposeB ? flip(inputs.b) : inputs.b;
        const [m, inner] = a.shape.slice(-2);
        const n = b.shape[b.shape.length - 1];
        const batch = sizeOf(a.shape.slice(0, -2));
        // One (batch·m, inner) · (inner, n) product: the right operand is shared by the whole batch.
        const out = run(original, {
          a: run(k.reshape, { x: a }, { shape: [1, batch * m, inner] }),
          b: run(k.reshape, { x: b }, { shape: [1, inner, n] }),
        }, { transposeA: false, transposeB: false });
        const outShape = [...(a.shape.length >= b.shape.length ? a.shape : b.shape).slice(0, -2), m, n];
        return k.reshape.kernelFunc({ inputs: { x: out }, backend: args.backend, attrs: { shape: outShape } } as unknown as KernelArgs) as Info;
      } finally {
        for (const t of temporaries) backend.disposeData(t.dataId);
      }
    },
  });
}
