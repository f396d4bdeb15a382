import { readlinkSync } from 'node:fs';
import { platform, setPriority } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import { ThreadLog, wireError } from '../connectors/thread-log.js';
import { startSamplesRole } from './samples-role.js';
import { SAMPLES_THREAD_NICENESS, STATUS_INTERVAL_MS, type FromSamplesThread, type SamplesStatus, type SamplesThreadData } from './samples-thread.js';
import type { SamplesJob } from './samples.js';

const { port, samples } = workerData as SamplesThreadData;
const parent = parentPort!;
const post = (message: FromSamplesThread) => parent.postMessage(message);
const log = new ThreadLog(port);

function statusOf(job: SamplesJob): SamplesStatus {
  return {
    records: job.runner.stats.records,
    lag: [...job.runner.stats.lag],
    failed: job.runner.failed,
    deadLettered: job.deadLetters.total,
    stats: { ...job.stats },
    held: job.heldItems(),
  };
}

/**
 * Samples wait for their attribution window anyway, while a request waits for whatever holds a core: when both
 * cores are busy, the scheduler should run the serving thread first. Linux takes a thread's id where it takes a
 * process id, so this sets the niceness of this thread alone; elsewhere the thread keeps its process's priority.
 */
if (platform() === 'linux') setPriority(Number(readlinkSync('/proc/thread-self').split('/').pop()), SAMPLES_THREAD_NICENESS);

const job = await startSamplesRole({ log, ...samples });
const reporter = setInterval(() => post({ kind: 'status', status: statusOf(job) }), STATUS_INTERVAL_MS);
parent.on('message', (message: { kind: 'stop' }) => {
  if (message.kind !== 'stop') return;
  clearInterval(reporter);
  job
    .stop()
    .catch((error: unknown) => post({ kind: 'error', error: wireError(error) }))
    .then(() => log.close())
    .finally(() => post({ kind: 'stopped', status: statusOf(job) }));
});
post({ kind: 'started', topology: job.pipeline.describe(), status: statusOf(job) });
