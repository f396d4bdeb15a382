/**
 * onnxruntime sessions on a scoring thread, behind the part of `InferenceSession` a Scorer uses.
 *
 * onnxruntime-node runs a model synchronously on the calling thread. A server that scores on its event loop spends a
 * quarter of a millisecond per 100 candidates there, during which it parses no request, recalls nothing and takes in
 * no event; on a scoring thread, that time overlaps with the next request's recall and feature lookup, and loading a
 * new version (tens of milliseconds for a DeepFM-size model) no longer stalls the loop either. The inputs cross as
 * compact copies (a few kilobytes per request) and the outputs come back, both transferred rather than cloned.
 *
 * One thread serves every session of the process: starting a thread costs the event loop more than loading a model
 * does, so versions are loaded into the running one, and it ends when its last session is released. The thread is
 * plain JavaScript evaluated from a string, so it runs the same under tsx, vitest and the compiled build; it is
 * handed onnxruntime-node's resolved path.
 */
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';

/** What a Scorer needs of a session: an `ort.InferenceSession` satisfies it, and so does a session on the thread. */
export interface ScoringSession {
  readonly inputMetadata: readonly ort.InferenceSession.ValueMetadata[];
  readonly outputMetadata: readonly ort.InferenceSession.ValueMetadata[];
  run(feeds: Record<string, ort.Tensor>): Promise<Record<string, ort.Tensor>>;
  release(): Promise<void>;
}

/** Where sessions run: `worker` (the scoring thread) or `main` (the caller's thread). */
export type ScoringThread = 'worker' | 'main';

interface WireTensor {
  readonly type: ort.Tensor.Type;
  readonly data: ort.Tensor.DataType;
  readonly dims: readonly number[];
}

type Metadata = readonly ort.InferenceSession.ValueMetadata[];

type FromThread =
  | { readonly kind: 'loaded'; readonly id: number; readonly inputMetadata: Metadata; readonly outputMetadata: Metadata }
  | { readonly kind: 'result'; readonly id: number; readonly outputs: Record<string, WireTensor> }
  | { readonly kind: 'released'; readonly id: number }
  | { readonly kind: 'error'; readonly id: number; readonly message: string; readonly stack?: string };

/** The answers to one `runs` message, one per run, in its order. */
interface RunsAnswer {
  readonly kind: 'runs';
  readonly answers: readonly FromThread[];
}

/** One run as it crosses to the thread. */
interface WireRun {
  readonly id: number;
  readonly session: number;
  readonly feeds: Record<string, WireTensor>;
}

const THREAD_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const ort = require(workerData.runtimePath);
const sessions = new Map();
const errorOf = (id, error) => ({ kind: 'error', id, message: String((error && error.message) || error), stack: error && error.stack });
const failed = (id, error) => parentPort.postMessage(errorOf(id, error));
parentPort.on('message', (message) => {
  if (message.kind === 'load') {
    ort.InferenceSession.create(message.model, message.options).then((session) => {
      sessions.set(message.session, session);
      parentPort.postMessage({ kind: 'loaded', id: message.id, inputMetadata: session.inputMetadata, outputMetadata: session.outputMetadata });
    }, (error) => failed(message.id, error));
  } else if (message.kind === 'runs') {
    const transfer = [];
    const runOne = (run) => {
      const session = sessions.get(run.session);
      if (!session) return Promise.resolve(errorOf(run.id, new Error('no such session on the scoring thread')));
      const feeds = {};
      for (const [name, t] of Object.entries(run.feeds)) feeds[name] = new ort.Tensor(t.type, t.data, t.dims);
      return session.run(feeds).then((out) => {
        const outputs = {};
        for (const [name, tensor] of Object.entries(out)) {
          outputs[name] = { type: tensor.type, data: tensor.data, dims: tensor.dims };
          if (ArrayBuffer.isView(tensor.data)) transfer.push(tensor.data.buffer);
        }
        return { kind: 'result', id: run.id, outputs };
      }, (error) => errorOf(run.id, error));
    };
    Promise.all(message.runs.map(runOne)).then((answers) => parentPort.postMessage({ kind: 'runs', answers }, transfer));
  } else if (message.kind === 'release') {
    const session = sessions.get(message.session);
    sessions.delete(message.session);
    Promise.resolve(session && session.release()).then(() => parentPort.postMessage({ kind: 'released', id: message.id }), (error) => failed(message.id, error));
  }
});
`;

const runtimePath = createRequire(import.meta.url).resolve('onnxruntime-node');

function remoteError(message: string, stack: string | undefined): Error {
  const error = new Error(message);
  if (stack) error.stack = stack;
  return error;
}

interface Pending {
  resolve(message: FromThread): void;
  reject(error: Error): void;
}

/** The thread and the calls waiting on it. Referenced (keeping the process alive) only while calls are pending. */
class ScoringWorker {
  private readonly worker: Worker;
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;
  private nextSession = 0;
  private sessions = 0;
  private queued: WireRun[] = [];
  private queuedTransfer: ArrayBuffer[] = [];
  private flushing: NodeJS.Immediate | undefined;
  ended: Error | undefined;

  constructor(private readonly onEnd: (worker: ScoringWorker) => void) {
    this.worker = new Worker(THREAD_SOURCE, { eval: true, workerData: { runtimePath } });
    this.worker.unref();
    this.worker.on('message', (message: FromThread | RunsAnswer) => {
      if (message.kind === 'runs') for (const answer of message.answers) this.settle(answer);
      else this.settle(message);
    });
    this.worker.on('error', (error) => this.end(new Error('the scoring thread failed', { cause: error })));
    this.worker.on('exit', (code) => this.end(new Error(`the scoring thread exited with code ${code}`)));
  }

  call(message: Record<string, unknown>, transfer: ArrayBuffer[] = []): Promise<FromThread> {
    if (this.ended) return Promise.reject(this.ended);
    const id = this.nextId++;
    // Runs asked for earlier go first, so the thread sees every call in the order it was made.
    if (this.flushing) {
      clearImmediate(this.flushing);
      this.flushRuns();
    }
    return new Promise((resolve, reject) => {
      this.await(id, resolve, reject);
      this.worker.postMessage({ ...message, id }, transfer);
    });
  }

  /**
   * Runs `feeds` on a session. Runs asked for in one turn of the event loop cross to the thread as one message and
   * come back as one: under load a turn prepares several requests, and each message wakes a thread, which on a
   * machine of few cores costs about as much as the run itself.
   */
  run(session: number, feeds: Record<string, WireTensor>, transfer: readonly ArrayBuffer[]): Promise<FromThread> {
    if (this.ended) return Promise.reject(this.ended);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.await(id, resolve, reject);
      this.queued.push({ id, session, feeds });
      this.queuedTransfer.push(...transfer);
      this.flushing ??= setImmediate(() => this.flushRuns());
    });
  }

  private flushRuns(): void {
    this.flushing = undefined;
    const runs = this.queued;
    const transfer = this.queuedTransfer;
    this.queued = [];
    this.queuedTransfer = [];
    if (this.ended) return;
    this.worker.postMessage({ kind: 'runs', runs }, transfer);
  }

  private await(id: number, resolve: (message: FromThread) => void, reject: (error: Error) => void): void {
    this.pending.set(id, { resolve, reject });
    if (this.pending.size === 1) this.worker.ref();
  }

  private settle(message: FromThread): void {
    const waiting = this.pending.get(message.id);
    if (!waiting) return;
    this.pending.delete(message.id);
    if (this.pending.size === 0) this.worker.unref();
    if (message.kind === 'error') waiting.reject(remoteError(message.message, message.stack));
    else waiting.resolve(message);
  }

  async load(model: Uint8Array, options: ort.InferenceSession.SessionOptions): Promise<WorkerSession> {
    const session = this.nextSession++;
    this.sessions++;
    try {
      const loaded = (await this.call({ kind: 'load', session, model, options })) as Extract<FromThread, { kind: 'loaded' }>;
      return new WorkerSession(this, session, loaded.inputMetadata, loaded.outputMetadata);
    } catch (error) {
      await this.released();
      throw error;
    }
  }

  /** Counts a session gone; the thread ends with its last one. */
  async released(): Promise<void> {
    if (--this.sessions > 0 || this.ended) return;
    this.end(new Error('the scoring thread was stopped'));
    await this.worker.terminate();
  }

  private end(error: Error): void {
    if (!this.ended) {
      this.ended = error;
      this.onEnd(this);
    }
    for (const waiting of this.pending.values()) waiting.reject(error);
    this.pending.clear();
  }
}

class WorkerSession implements ScoringSession {
  private released = false;

  constructor(
    private readonly thread: ScoringWorker,
    private readonly session: number,
    readonly inputMetadata: Metadata,
    readonly outputMetadata: Metadata,
  ) {}

  async run(feeds: Record<string, ort.Tensor>): Promise<Record<string, ort.Tensor>> {
    if (this.released) throw new Error('the session was released');
    const wire: Record<string, WireTensor> = {};
    const transfer: ArrayBuffer[] = [];
    for (const [name, tensor] of Object.entries(feeds)) {
      // A view is cloned with its whole buffer, and scorers pass views into pooled buffers sized for the largest
      // request: send a copy of just the view's bytes, handed over rather than cloned again.
      const data = ArrayBuffer.isView(tensor.data) ? (tensor.data.slice() as typeof tensor.data) : tensor.data;
      if (ArrayBuffer.isView(data)) transfer.push(data.buffer as ArrayBuffer);
      wire[name] = { type: tensor.type, data, dims: tensor.dims };
    }
    let answer: FromThread;
    try {
      answer = await this.thread.run(this.session, wire, transfer);
    } catch (cause) {
      throw new Error('onnxruntime run failed on the scoring thread', { cause });
    }
    const outputs = (answer as Extract<FromThread, { kind: 'result' }>).outputs;
    return Object.fromEntries(Object.entries(outputs).map(([name, t]) => [name, new ort.Tensor(t.type, t.data as Float32Array, t.dims)]));
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    try {
      if (!this.thread.ended) await this.thread.call({ kind: 'release', session: this.session });
    } finally {
      await this.thread.released();
    }
  }
}

let shared: ScoringWorker | undefined;

/** Loads `model` on `thread`; rejects with onnxruntime's error (as the cause, on the scoring thread) when it cannot. */
export async function createScoringSession(model: Uint8Array, options: ort.InferenceSession.SessionOptions, thread: ScoringThread): Promise<ScoringSession> {
  if (thread === 'main') return ort.InferenceSession.create(model, options);
  const worker = (shared ??= new ScoringWorker((ended) => {
    if (shared === ended) shared = undefined;
  }));
  try {
    return await worker.load(model, options);
  } catch (cause) {
    throw new Error('onnxruntime could not load the model on the scoring thread', { cause });
  }
}
