export interface GracefulShutdownOptions {
  /** Default SIGTERM and SIGINT. */
  readonly signals?: readonly NodeJS.Signals[];
  /** Longest the whole shutdown may take before the process exits with code 1. Default 10,000 ms. */
  readonly timeoutMs?: number;
  /** Runs after the runner has stopped: flush and close what the runner does not own (stores, the log). */
  readonly onStopped?: () => Promise<void> | void;
  /** Default `process.exit`. */
  readonly exit?: (code: number) => void;
  /** Told what happens; default silent. */
  readonly log?: (message: string, error?: unknown) => void;
}

/** What a shutdown needs from a runner: `PipelineRunner.stop()` stops fetching, drains, checkpoints, commits, leaves. */
export interface Stoppable {
  stop(): Promise<void>;
}

/**
 * On SIGTERM or SIGINT: stop fetching, let in-flight batches finish, checkpoint and commit them, leave the group,
 * run `onStopped` (close the log and stores), then exit 0; exit 1 when that fails or takes longer than `timeoutMs`.
 * A second signal during shutdown exits 1 at once. Returns a function that removes the handlers.
 */
export function installGracefulShutdown(runner: Stoppable, options: GracefulShutdownOptions = {}): () => void {
  const signals = options.signals ?? ['SIGTERM', 'SIGINT'];
  const exit = options.exit ?? ((code: number) => process.exit(code));
  const timeoutMs = options.timeoutMs ?? 10_000;
  let shuttingDown = false;

  const handler = (signal: NodeJS.Signals) => {
    if (shuttingDown) {
      options.log?.(`${signal} again: exiting without finishing the shutdown`);
      exit(1);
      return;
    }
    shuttingDown = true;
    options.log?.(`${signal}: draining and committing`);
    const timer = setTimeout(() => {
      options.log?.(`shutdown took longer than ${timeoutMs} ms`);
      exit(1);
    }, timeoutMs);
    timer.unref();
    (async () => {
      await runner.stop();
      await options.onStopped?.();
    })().then(
      () => {
        clearTimeout(timer);
        options.log?.('stopped cleanly');
        exit(0);
      },
      (error: unknown) => {
        clearTimeout(timer);
        options.log?.('shutdown failed', error);
        exit(1);
      },
    );
  };

  for (const signal of signals) process.on(signal, handler);
  return () => {
    for (const signal of signals) process.off(signal, handler);
  };
}
