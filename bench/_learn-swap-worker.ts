/**
 * Stands in for the thread that receives model versions from the `models` topic: it decodes an encoded version and
 * writes its dense serving weights into a free slot of three shared buffers, then tells the scoring thread, which
 * swaps one reference and records the slot it serves in a shared integer. A new version is written only once the last
 * one sent is served, into a slot that is not served, so the scoring thread never has to message back (waking this thread on a busy
 * machine takes the core from scoring) and no version allocates memory on the scoring thread (a fresh 4 MiB buffer
 * per version would make its garbage collector pause scoring).
 *
 * Every other message is a control: the same decoding work, into a scratch buffer, and a message that swaps nothing,
 * so the bench can tell the cost of a swap from the cost of a busy neighbour thread on a shared machine.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { decodeModelVersion } from '../models/learner.js';
import { ftrlDenseWeights } from '../models/learners/ftrl.js';

const { encoded, intervalMs, swaps, slots, serving, startDelayMs } = workerData as {
  encoded: string;
  intervalMs: number;
  /** Swaps to make; as many control messages are interleaved. */
  swaps: number;
  slots: SharedArrayBuffer[];
  /** Int32 [0]: the slot the scoring thread serves. */
  serving: SharedArrayBuffer;
  /** Scoring runs alone this long first, so its warm-up and the collection of earlier garbage are not counted. */
  startDelayMs: number;
};
const views = slots.map((buffer) => new Float32Array(buffer));
const scratch = new Float32Array(views[0]!.length);
const servingSlot = new Int32Array(serving);
let lastSent = Atomics.load(servingSlot, 0);
let swapped = 0;
let control = false;
setTimeout(() => {
  const timer = setInterval(() => {
    control = !control;
    if (control) {
      ftrlDenseWeights(decodeModelVersion(encoded), scratch);
      parentPort!.postMessage({ slot: -1 });
      return;
    }
    const current = Atomics.load(servingSlot, 0);
    // The last version sent is not served yet: wait rather than write to a slot the scoring thread may still take.
    if (current !== lastSent) return;
    const slot = views.findIndex((_, i) => i !== current);
    ftrlDenseWeights(decodeModelVersion(encoded), views[slot]);
    lastSent = slot;
    parentPort!.postMessage({ slot });
    if (++swapped >= swaps) {
      clearInterval(timer);
      parentPort!.close();
    }
  }, intervalMs);
}, startDelayMs);
