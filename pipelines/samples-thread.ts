/**
 * `eddy all` on the embedded log runs its samples job on a thread of its own (`EDDY_SAMPLES_THREAD=worker`, the
 * default). The job holds every impression of its attribution window: up to a million, hundreds of megabytes of heap.
 * In the serving thread, each major collection marked all of it while requests waited, 100-300 ms at 1,500 requests
 * a second. V8 gives each thread a heap of its own, so on this thread those collections stop only the job.
 *
 * The trainer runs on the same thread, with the samples topic in a log of the thread's own: once the join is full,
 * every served impression leaves as a sample (15,000 a second at 1,500 requests a second), and parsing and learning
 * them took the serving thread's spare time. Serving follows the versions the trainer publishes on the models topic,
 * as it does a trainer in another process, and the model admin API reaches the trainer's registry over the thread's
 * port.
 *
 * The jobs read and write the process's log through a `ThreadLog`. Their statistics come back twice a second, for
 * the metrics and readiness the process reports.
 */
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { MessageChannel, Worker, type MessagePort, type TransferListItem } from 'node:worker_threads';
import type { ModelAdmin } from '../connectors/http.js';
import type { Log } from '../connectors/log.js';
import { remoteError, serveLog, type WireError } from '../connectors/thread-log.js';
import type { Topology } from '../operators/pipeline.js';
import type { ServingQuality } from './model-admin.js';
import type { SamplesStats } from './samples.js';
import type { SamplesRoleOptions } from './samples-role.js';
import type { RunTrainerOptions } from './trainer.js';

export const STATUS_INTERVAL_MS = 500;
/** The thread's nice value on Linux: below serving's, above nothing else's. */
export const SAMPLES_THREAD_NICENESS = 10;

/** The trainer's settings as they cross to the thread: what a structured clone carries. */
export type TrainerThreadOptions = Omit<RunTrainerOptions, 'log' | 'encoder' | 'onVersion' | 'registry' | 'onError' | 'clock'>;

export interface SamplesThreadData {
  readonly port: MessagePort;
  readonly samples: Omit<SamplesRoleOptions, 'log'>;
  readonly trainer?: TrainerThreadOptions;
  /** Bytes per partition the thread's own log keeps of the samples topic, as EDDY_LOG_RETENTION_BYTES. */
  readonly logRetentionBytes: number;
}

/** What a job's runner reports. */
export interface JobStatus {
  readonly records: number;
  readonly lag: readonly (readonly [string, number])[];
  readonly failed: boolean;
  readonly deadLettered: number;
}

export interface SamplesStatus extends JobStatus {
  readonly stats: SamplesStats;
  readonly held: number;
  readonly trainer?: JobStatus & { readonly serving?: ServingQuality };
}

/** A `ModelAdmin` method and its arguments, as they cross to the thread. */
export type AdminCall = { readonly [M in keyof ModelAdmin]: { readonly call: M; readonly args: Parameters<ModelAdmin[M]> } }[keyof ModelAdmin];

export type ToSamplesThread = { readonly kind: 'stop' } | ({ readonly kind: 'admin'; readonly id: number } & AdminCall);

export type FromSamplesThread =
  | { readonly kind: 'started'; readonly topology: readonly Topology[]; readonly status: SamplesStatus }
  | { readonly kind: 'status'; readonly status: SamplesStatus }
  | { readonly kind: 'error'; readonly error: WireError }
  | { readonly kind: 'admin'; readonly id: number; readonly value?: unknown; readonly error?: WireError }
  | { readonly kind: 'stopped'; readonly status: SamplesStatus };

/** The trainer on the thread, as the process sees it. */
export interface ThreadTrainer {
  readonly failed: boolean;
  readonly runnerStats: { readonly records: number; readonly lag: Map<string, number> };
  readonly deadLettered: number;
  readonly pipeline: { describe(): Topology };
  readonly admin: ModelAdmin;
  /** The serving version's quality as last reported, if the registry serves one. */
  serving(): ServingQuality | undefined;
}

export interface SamplesThread {
  readonly failed: boolean;
  readonly stats: SamplesStats;
  /** What the job's runner counts: records in, and lag per partition. */
  readonly runnerStats: { readonly records: number; readonly lag: Map<string, number> };
  readonly deadLettered: number;
  readonly pipeline: { describe(): Topology };
  /** Present when the thread runs the trainer too. */
  readonly trainer: ThreadTrainer | undefined;
  heldItems(): number;
  /** Finishes the jobs' in-flight batches (the samples job's first, then the trainer's), commits, and ends the thread. */
  stop(): Promise<void>;
}

/**
 * The thread runs TypeScript under tsx (tests, benches) and JavaScript in the build. A worker does not inherit the
 * tsx loader of its parent, so under tsx it starts from a line that imports its entry through tsx's API.
 */
function startWorker(workerData: SamplesThreadData, transferList: TransferListItem[]): Worker {
  const source = import.meta.url.endsWith('.ts');
  const entry = new URL(`./samples-thread-entry.${source ? 'ts' : 'js'}`, import.meta.url);
  if (!source) return new Worker(entry, { workerData, transferList });
  const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx/esm/api').replace(/\.cjs$/, '.mjs')).href;
  const bootstrap = `import(${JSON.stringify(tsx)}).then((tsx) => tsx.tsImport(${JSON.stringify(entry.href)}, ${JSON.stringify(entry.href)}))`;
  return new Worker(bootstrap, { eval: true, workerData, transferList });
}

/** A runner's statistics as the process keeps them, refreshed from each status. */
function runnerStatsOf() {
  const stats = { records: 0, lag: new Map<string, number>() };
  const apply = (status: JobStatus) => {
    stats.records = status.records;
    for (const [partition, value] of status.lag) stats.lag.set(partition, value);
  };
  return { stats, apply };
}

export async function startSamplesThread(
  log: Log,
  samples: Omit<SamplesRoleOptions, 'log'>,
  onError: (error: unknown) => void,
  options: { readonly trainer?: TrainerThreadOptions; readonly logRetentionBytes: number },
): Promise<SamplesThread> {
  const channel = new MessageChannel();
  const served = serveLog(log, channel.port1);
  const { trainer, logRetentionBytes } = options;
  const worker = startWorker({ port: channel.port2, samples, logRetentionBytes, ...(trainer ? { trainer } : {}) }, [channel.port2]);
  let status: SamplesStatus | undefined;
  let topology: readonly Topology[] = [];
  let exited = false;
  const samplesRunner = runnerStatsOf();
  const trainerRunner = runnerStatsOf();
  const apply = (next: SamplesStatus) => {
    status = next;
    samplesRunner.apply(next);
    if (next.trainer) trainerRunner.apply(next.trainer);
  };
  let stopped: (() => void) | undefined;
  const adminCalls = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();
  let nextAdminCall = 0;
  const callAdmin = (call: AdminCall): Promise<never> => {
    if (exited) return Promise.reject(new Error('the samples thread has ended'));
    const id = nextAdminCall++;
    return new Promise<never>((resolve, reject) => {
      adminCalls.set(id, { resolve: resolve as (value: unknown) => void, reject });
      worker.postMessage({ kind: 'admin', id, ...call } satisfies ToSamplesThread);
    });
  };
  // Each method's answer is what the registry's method returned on the thread.
  const admin: ModelAdmin = {
    list: (...args) => callAdmin({ call: 'list', args }),
    pin: (...args) => callAdmin({ call: 'pin', args }),
    unpin: (...args) => callAdmin({ call: 'unpin', args }),
    rollback: (...args) => callAdmin({ call: 'rollback', args }),
  };

  await new Promise<void>((resolve, reject) => {
    worker.on('message', (message: FromSamplesThread) => {
      if (message.kind === 'error') onError(remoteError(message.error));
      else if (message.kind === 'admin') {
        const waiting = adminCalls.get(message.id);
        adminCalls.delete(message.id);
        if (message.error) waiting?.reject(remoteError(message.error));
        else waiting?.resolve(message.value);
      } else apply(message.status);
      if (message.kind === 'started') {
        topology = message.topology;
        resolve();
      } else if (message.kind === 'stopped') stopped?.();
    });
    worker.on('error', (error) => {
      onError(new Error('the samples thread failed', { cause: error }));
      reject(error);
    });
    worker.on('exit', (code) => {
      exited = true;
      for (const waiting of adminCalls.values()) waiting.reject(new Error(`the samples thread exited with code ${code}`));
      adminCalls.clear();
      stopped?.();
      reject(new Error(`the samples thread exited with code ${code} before it started`));
    });
  });

  return {
    get failed() {
      return exited || status!.failed;
    },
    get stats() {
      return status!.stats;
    },
    runnerStats: samplesRunner.stats,
    get deadLettered() {
      return status!.deadLettered;
    },
    pipeline: { describe: () => topology[0]! },
    trainer: trainer
      ? {
          get failed() {
            return exited || status!.trainer!.failed;
          },
          runnerStats: trainerRunner.stats,
          get deadLettered() {
            return status!.trainer!.deadLettered;
          },
          pipeline: { describe: () => topology[1]! },
          admin,
          serving: () => status!.trainer!.serving,
        }
      : undefined,
    heldItems: () => status!.held,
    async stop() {
      if (!exited) {
        const done = new Promise<void>((resolve) => (stopped = resolve));
        worker.postMessage({ kind: 'stop' });
        await done;
      }
      await served.close();
      await worker.terminate();
    },
  };
}
