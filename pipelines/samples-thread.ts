/**
 * `eddy all` on the embedded log runs its samples job on a thread of its own (`EDDY_SAMPLES_THREAD=worker`, the
 * default). The job holds every impression of its attribution window: up to a million, hundreds of megabytes of heap.
 * In the serving thread, each major collection marked all of it while requests waited, 100-300 ms at 1,500 requests
 * a second. V8 gives each thread a heap of its own, so on this thread those collections stop only the job.
 *
 * The job reads and writes the process's log through a `ThreadLog`. Its statistics come back twice a second, for the
 * metrics and readiness the process reports.
 */
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { MessageChannel, Worker, type MessagePort, type TransferListItem } from 'node:worker_threads';
import type { Log } from '../connectors/log.js';
import { remoteError, serveLog, type WireError } from '../connectors/thread-log.js';
import type { Topology } from '../operators/pipeline.js';
import type { SamplesStats } from './samples.js';
import type { SamplesRoleOptions } from './samples-role.js';

export const STATUS_INTERVAL_MS = 500;
/** The thread's nice value on Linux: below serving's, above nothing else's. */
export const SAMPLES_THREAD_NICENESS = 10;

export interface SamplesThreadData {
  readonly port: MessagePort;
  readonly samples: Omit<SamplesRoleOptions, 'log'>;
}

export interface SamplesStatus {
  readonly records: number;
  readonly lag: readonly (readonly [string, number])[];
  readonly failed: boolean;
  readonly deadLettered: number;
  readonly stats: SamplesStats;
  readonly held: number;
}

export type FromSamplesThread =
  | { readonly kind: 'started'; readonly topology: Topology; readonly status: SamplesStatus }
  | { readonly kind: 'status'; readonly status: SamplesStatus }
  | { readonly kind: 'error'; readonly error: WireError }
  | { readonly kind: 'stopped'; readonly status: SamplesStatus };

export interface SamplesThread {
  readonly failed: boolean;
  readonly stats: SamplesStats;
  /** What the job's runner counts: records in, and lag per partition. */
  readonly runnerStats: { readonly records: number; readonly lag: Map<string, number> };
  readonly deadLettered: number;
  readonly pipeline: { describe(): Topology };
  heldItems(): number;
  /** Finishes the job's in-flight batches, commits, and ends the thread. */
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

export async function startSamplesThread(log: Log, samples: Omit<SamplesRoleOptions, 'log'>, onError: (error: unknown) => void): Promise<SamplesThread> {
  const channel = new MessageChannel();
  const served = serveLog(log, channel.port1);
  const worker = startWorker({ port: channel.port2, samples }, [channel.port2]);
  let status: SamplesStatus | undefined;
  let topology: Topology | undefined;
  let exited = false;
  const lag = new Map<string, number>();
  const runnerStats = { records: 0, lag };
  const apply = (next: SamplesStatus) => {
    status = next;
    runnerStats.records = next.records;
    for (const [partition, value] of next.lag) lag.set(partition, value);
  };
  let stopped: (() => void) | undefined;

  await new Promise<void>((resolve, reject) => {
    worker.on('message', (message: FromSamplesThread) => {
      if (message.kind === 'error') onError(remoteError(message.error));
      else apply(message.status);
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
    runnerStats,
    get deadLettered() {
      return status!.deadLettered;
    },
    pipeline: { describe: () => topology! },
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
