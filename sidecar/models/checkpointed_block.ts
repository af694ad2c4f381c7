/**
 * Gradient checkpointing of one transformer block (`compute.gradient_checkpointing`): the autodiff tape
 * keeps the block's input only, not the activations inside it.
 *
 *   forward:  y = block(x), run as one tf.customGrad op (the tape does not record inside it); x is saved
 *   backward: the block's forward runs again from the saved x with the tape on, and dy is backpropagated
 *             through that recomputation to x and to the block's trainable variables
 *
 * Tensors the block reads that the forward pass made (masks, rotary tables) would be freed with the
 * forward pass's scope before the backward pass runs: they are passed as `consts`, saved with x and
 * handed to the block again (frozen weights live on and are read directly).
 *
 * customGrad differentiates only its explicit inputs, so the block's trainable variables (the R of each
 * adapted module, any trainable head tensor the block reads: ctx.trainableOf) are passed as inputs beside
 * x, and the recomputation reads the same variables, so the gradient reaches them. Dropout draws its seeds
 * from the context during the forward pass (in the order an unchecked forward draws them) and the
 * recomputation replays those seeds, so both passes use the same masks.
 *
 * Cost: one more forward pass of every block (about a third more compute); memory: the tape holds one
 * (B, T, H) input per block plus, during the backward pass, one block's activations.
 */
import * as tf from '../backend/tf';
import type { ForwardContext } from './types';

/** What tfjs-core's engine keeps of the tape (read and restored around the nested gradient call). */
interface EngineTapeState {
  activeTape: unknown;
}

/**
 * `block(x, ctx)` with its activations recomputed in the backward pass instead of kept.
 * @param block the block's forward; it reads trainable tensors only through `ctx` (ctx.linear) and tensors
 *   made in the forward pass only from its `consts` argument
 * @param x (B, T, H) the block's input
 * @param modules the linear modules the block calls (their trainable variables receive gradients)
 * @param consts tensors made in this forward pass that the block reads (masks, rotary tables)
 * @returns what block(x, ctx, consts) returns
 */
export function checkpointedBlock(block: (x: tf.Tensor, ctx: ForwardContext, consts: tf.Tensor[]) => tf.Tensor, x: tf.Tensor,
  ctx: ForwardContext, modules: string[], consts: tf.Tensor[]): tf.Tensor {
  const params: tf.Tensor[] = ctx.trainableOf?.(modules) ?? [];
  const seeds: number[] = [];
  const seeded = (seedAt: () => number) => (t: tf.Tensor, rate: number): tf.Tensor =>
    (!ctx.training || rate <= 0 ? t : tf.dropout(t, rate, undefined, seedAt()));
  const drawSeed = (): number => {
    if (!ctx.nextDropoutSeed) throw new Error('internal error: gradient checkpointing with dropout needs ctx.nextDropoutSeed');
    const s = ctx.nextDropoutSeed();
    seeds.push(s);
    return s;
  };
  const recording: ForwardContext = { ...ctx, dropout: seeded(drawSeed) };
  const run = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const input = args[0] as tf.Tensor;
    (args[args.length - 1] as tf.GradSaveFunc)([input, ...consts]);
    return {
      value: block(input, recording, consts),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        let next = 0;
        const replay: ForwardContext = { ...ctx, dropout: seeded(() => seeds[next++]) };
        const xs = [saved[0], ...params];
        // The outer gradient call has finished recording; a nested one replaces and then clears the
        // engine's active tape, which the outer call still reads when it frees its saved tensors.
        const engine = tf.engine() as unknown as { state: EngineTapeState };
        const outerTape = engine.state.activeTape;
        try {
          const { value, grads } = tf.engine().gradients(() => block(saved[0], replay, saved.slice(1)), xs, dy, true);
          value.dispose();
          return grads.map((g, i) => g ?? tf.zerosLike(xs[i]));
        } finally {
          engine.state.activeTape = outerTape;
        }
      },
    };
  });
  return run(x, ...params);
}
