/**
 * An onnxruntime session on a worker thread of its own, behind the part of `InferenceSession` a Scorer uses.
 *
 * onnxruntime-node runs a model synchronously on the calling thread. A server that scores on its event loop spends a
 * quarter of a millisecond per 100 candidates there, during which it parses no request, recalls nothing and takes in
 * no event; on a worker, that time overlaps with the next request's recall and feature lookup, and loading a new
 * version (tens of milliseconds for a DeepFM-size model) no longer stalls the loop either. The inputs cross as compact
 * copies (a few kilobytes per request) and the outputs come back, both transferred rather than cloned.
 *
 * The worker is plain JavaScript evaluated from a string, so it runs the same under tsx, vitest and the compiled
 * build; it is handed onnxruntime-node's resolved path. One worker per loaded version: retiring a version ends its
 * thread, and a version loading on its own thread never delays the one serving.
 */
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';

/** What a Scorer needs of a session: an `ort.InferenceSession` satisfies it, and so does a session on a worker. */
export interface ScoringSession {
  readonly inputMetadata: readonly ort.InferenceSession.ValueMetadata[];
  readonly outputMetadata: readonly ort.InferenceSession.ValueMetadata[];
  run(feeds: Record<string, ort.Tensor>): Promise<Record<string, ort.Tensor>>;
  release(): Promise<void>;
}

/** Where sessions run: `worker` (a thread per loaded version) or `main` (the caller's thread). */
export type ScoringThread = 'worker' | 'main';

interface WireTensor {
  readonly type: ort.Tensor.Type;
  readonly data: ort.Tensor.DataType;
  readonly dims: readonly number[];
}

type FromWorker =
  | { readonly kind: 'ready'; readonly inputMetadata: ort.InferenceSession.ValueMetadata[]; readonly outputMetadata: ort.InferenceSession.ValueMetadata[] }
  | { readonly kind: 'failed'; readonly message: string; readonly stack?: string }
  | { readonly kind: 'result'; readonly id: number; readonly outputs: Record<string, WireTensor> }
  | { readonly kind: 'error'; readonly id: number; readonly message: string; readonly stack?: string };

const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const ort = require(workerData.runtimePath);
const wire = (tensor) => ({ type: tensor.type, data: tensor.data, dims: tensor.dims });
ort.InferenceSession.create(workerData.model, workerData.options).then(
  (session) => {
    parentPort.on('message', (message) => {
      if (message.kind === 'release') {
        session.release().finally(() => process.exit(0));
        return;
      }
      const feeds = {};
      for (const [name, t] of Object.entries(message.feeds)) feeds[name] = new ort.Tensor(t.type, t.data, t.dims);
      session.run(feeds).then(
        (out) => {
          const outputs = {};
          const transfer = [];
          for (const [name, tensor] of Object.entries(out)) {
            outputs[name] = wire(tensor);
            if (ArrayBuffer.isView(tensor.data)) transfer.push(tensor.data.buffer);
          }
          parentPort.postMessage({ kind: 'result', id: message.id, outputs }, transfer);
        },
        (error) => parentPort.postMessage({ kind: 'error', id: message.id, message: String(error && error.message || error), stack: error && error.stack }),
      );
    });
    parentPort.postMessage({ kind: 'ready', inputMetadata: session.inputMetadata, outputMetadata: session.outputMetadata });
  },
  (error) => parentPort.postMessage({ kind: 'failed', message: String(error && error.message || error), stack: error && error.stack }),
);
`;

const runtimePath = createRequire(import.meta.url).resolve('onnxruntime-node');

function remoteError(message: string, stack: string | undefined): Error {
  const error = new Error(message);
  if (stack) error.stack = stack;
  return error;
}

class WorkerSession implements ScoringSession {
  private nextId = 0;
  private readonly pending = new Map<number, { resolve: (out: Record<string, ort.Tensor>) => void; reject: (error: Error) => void }>();
  private ended: Error | undefined;

  constructor(
    private readonly worker: Worker,
    readonly inputMetadata: readonly ort.InferenceSession.ValueMetadata[],
    readonly outputMetadata: readonly ort.InferenceSession.ValueMetadata[],
  ) {
    worker.on('message', (message: FromWorker) => {
      if (message.kind !== 'result' && message.kind !== 'error') return;
      const waiting = this.pending.get(message.id);
      if (!waiting) return;
      this.pending.delete(message.id);
      if (this.pending.size === 0) worker.unref();
      if (message.kind === 'error') waiting.reject(new Error('onnxruntime run failed on the scoring thread', { cause: remoteError(message.message, message.stack) }));
      else waiting.resolve(Object.fromEntries(Object.entries(message.outputs).map(([name, t]) => [name, new ort.Tensor(t.type, t.data as Float32Array, t.dims)])));
    });
    worker.on('error', (error) => this.end(new Error('the scoring thread failed', { cause: error })));
    worker.on('exit', (code) => this.end(new Error(`the scoring thread exited with code ${code}`)));
    // An idle session must not keep the process alive; one with runs pending must, or an awaited score could end it.
    worker.unref();
  }

  run(feeds: Record<string, ort.Tensor>): Promise<Record<string, ort.Tensor>> {
    if (this.ended) return Promise.reject(this.ended);
    const id = this.nextId++;
    const wire: Record<string, WireTensor> = {};
    const transfer: ArrayBuffer[] = [];
    for (const [name, tensor] of Object.entries(feeds)) {
      // A view is cloned with its whole buffer, and scorers pass views into pooled buffers sized for the largest
      // request: send a copy of just the view's bytes, handed over rather than cloned again.
      const data = ArrayBuffer.isView(tensor.data) ? (tensor.data.slice() as typeof tensor.data) : tensor.data;
      if (ArrayBuffer.isView(data)) transfer.push(data.buffer as ArrayBuffer);
      wire[name] = { type: tensor.type, data, dims: tensor.dims };
    }
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      if (this.pending.size === 1) this.worker.ref();
      this.worker.postMessage({ kind: 'run', id, feeds: wire }, transfer);
    });
  }

  async release(): Promise<void> {
    if (this.ended) return;
    this.ended = new Error('the session was released');
    const exited = new Promise<void>((resolve) => this.worker.once('exit', () => resolve()));
    this.worker.postMessage({ kind: 'release' });
    await exited;
  }

  private end(error: Error): void {
    this.ended ??= error;
    for (const waiting of this.pending.values()) waiting.reject(error);
    this.pending.clear();
  }
}

/** Loads `model` on `thread`; rejects with onnxruntime's error as the cause when it cannot. */
export async function createScoringSession(model: Uint8Array, options: ort.InferenceSession.SessionOptions, thread: ScoringThread): Promise<ScoringSession> {
  if (thread === 'main') return ort.InferenceSession.create(model, options);
  const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { runtimePath, model, options } });
  const ready = await new Promise<Extract<FromWorker, { kind: 'ready' }>>((resolve, reject) => {
    const onExit = (code: number) => reject(new Error(`the scoring thread exited with code ${code} while loading`));
    worker.once('error', reject);
    worker.once('exit', onExit);
    worker.once('message', (message: FromWorker) => {
      worker.off('error', reject);
      worker.off('exit', onExit);
      if (message.kind === 'ready') resolve(message);
      else if (message.kind === 'failed') reject(remoteError(message.message, message.stack));
      else reject(new Error(`unexpected first message from the scoring thread: ${message.kind}`));
    });
  }).catch(async (error: unknown) => {
    await worker.terminate();
    throw error;
  });
  return new WorkerSession(worker, ready.inputMetadata, ready.outputMetadata);
}
