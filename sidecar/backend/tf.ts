/**
 * The one import of TensorFlow.js for the engine: tfjs-core with every gradient and chained op
 * registered (the CommonJS build of tfjs-core alone registers no gradients), and the pure-JS CPU backend
 * as a last resort only. Backends are chosen and reported in choice.ts.
 */
import '@tensorflow/tfjs-core/dist/base_side_effects';
import '@tensorflow/tfjs-core/dist/register_all_gradients';
import '@tensorflow/tfjs-core/dist/public/chained_ops/register_all_chained_ops';
import '@tensorflow/tfjs-backend-cpu/dist/index.js';
export * from '@tensorflow/tfjs-core';
