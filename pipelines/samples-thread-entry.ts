import { readlinkSync } from 'node:fs';
import { platform, setPriority } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import { EmbeddedLog, expiredUnreadError } from '../connectors/embedded-log.js';
import type { ModelAdmin } from '../connectors/http.js';
import type { Log } from '../connectors/log.js';
import { RoutedLog } from '../connectors/routed-log.js';
import { ThreadLog, wireError } from '../connectors/thread-log.js';
import type { PipelineRunner } from '../operators/runtime.js';
import { registryAdmin, servingQuality } from './model-admin.js';
import { startSamplesRole } from './samples-role.js';
import {
  SAMPLES_THREAD_NICENESS,
  STATUS_INTERVAL_MS,
  type AdminCall,
  type FromSamplesThread,
  type JobStatus,
  type SamplesStatus,
  type SamplesThreadData,
  type ToSamplesThread,
} from './samples-thread.js';
import type { SamplesJob } from './samples.js';
import { runTrainer, TRAINER_DEFAULTS, type TrainerJob } from './trainer.js';

const { port, samples, trainer: trainerOptions, logRetentionBytes } = workerData as SamplesThreadData;
const parent = parentPort!;
const post = (message: FromSamplesThread) => parent.postMessage(message);
const reportError = (error: unknown) => post({ kind: 'error', error: wireError(error) });
const processLog = new ThreadLog(port);

/** With the trainer here, the samples topic lives on this thread: see samples-thread.ts. */
async function jobsLog(): Promise<Log> {
  if (!trainerOptions) return processLog;
  const local = new EmbeddedLog({
    defaultPartitions: 1,
    retentionBytes: logRetentionBytes,
    onExpiredUnread: (expired) => reportError(expiredUnreadError(expired)),
  });
  const topic = samples.topics.samples;
  await local.ensureTopic(topic, { partitions: await processLog.partitionCount(topic) });
  return new RoutedLog(local, [topic], processLog);
}

function runnerStatus(runner: PipelineRunner, deadLettered: number): JobStatus {
  return { records: runner.stats.records, lag: [...runner.stats.lag], failed: runner.failed, deadLettered };
}

function statusOf(job: SamplesJob, trainer: TrainerJob | undefined): SamplesStatus {
  return {
    ...runnerStatus(job.runner, job.deadLetters.total),
    stats: { ...job.stats },
    held: job.heldItems(),
    ...(trainer ? { trainer: { ...runnerStatus(trainer.runner, trainer.deadLetters.total), serving: servingQuality(trainer.registry, trainerOptions!.model ?? TRAINER_DEFAULTS.model) } } : {}),
  };
}

function callAdmin(admin: ModelAdmin, { call, args }: AdminCall): Promise<unknown> {
  return (admin[call] as (...args: AdminCall['args']) => Promise<unknown>).apply(admin, args);
}

/**
 * Samples wait for their attribution window and the trainer for its samples, while a request waits for whatever
 * holds a core: when both cores are busy, the scheduler should run the serving thread first. Linux takes a thread's
 * id where it takes a process id, so this sets the niceness of this thread alone; elsewhere the thread keeps its
 * process's priority.
 */
if (platform() === 'linux') setPriority(Number(readlinkSync('/proc/thread-self').split('/').pop()), SAMPLES_THREAD_NICENESS);

const log = await jobsLog();
const job = await startSamplesRole({ log, ...samples });
const trainer = trainerOptions
  ? await runTrainer({ log, ...trainerOptions, onError: reportError })
  : undefined;
const admin = trainer ? registryAdmin(trainer.registry) : undefined;
const reporter = setInterval(() => post({ kind: 'status', status: statusOf(job, trainer) }), STATUS_INTERVAL_MS);
parent.on('message', (message: ToSamplesThread) => {
  if (message.kind === 'admin') {
    const { id, ...call } = message;
    (admin ? callAdmin(admin, call) : Promise.reject(new Error('no trainer runs on the samples thread'))).then(
      (value) => post({ kind: 'admin', id, value }),
      (error: unknown) => post({ kind: 'admin', id, error: wireError(error) }),
    );
    return;
  }
  clearInterval(reporter);
  // The samples job first: what it hands the trainer while it drains is learned before the trainer stops.
  job
    .stop()
    .then(() => trainer?.stop())
    .catch(reportError)
    .then(() => log.close())
    .then(() => (log === processLog ? undefined : processLog.close()))
    .finally(() => post({ kind: 'stopped', status: statusOf(job, trainer) }));
});
post({ kind: 'started', topology: [job.pipeline.describe(), ...(trainer ? [trainer.pipeline.describe()] : [])], status: statusOf(job, trainer) });
