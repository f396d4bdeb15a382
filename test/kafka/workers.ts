/** Worker child processes (test/kafka/count-worker.ts) for crash-loop and scale-out tests. */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const workerPath = join(dirname(fileURLToPath(import.meta.url)), 'count-worker.ts');
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

export class WorkerProcess {
  readonly exited: Promise<number | null>;
  readonly lines: string[] = [];
  stderr = '';
  private readonly listeners = new Set<(line: string) => void>();

  private constructor(private readonly child: ChildProcessWithoutNullStreams) {
    this.exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
    child.stderr.on('data', (chunk: Buffer) => (this.stderr += chunk.toString()));
    createInterface({ input: child.stdout }).on('line', (line) => {
      this.lines.push(line);
      for (const listener of [...this.listeners]) listener(line);
    });
  }

  /** Starts a worker that loads everything, then waits for `go()` before it connects. */
  static spawn(env: Record<string, string>): WorkerProcess {
    const child = spawn(process.execPath, ['--import', 'tsx', workerPath], {
      cwd: root,
      env: { ...process.env, WAIT_FOR_GO: '1', ...env },
      stdio: 'pipe',
    });
    return new WorkerProcess(child);
  }

  go(): void {
    this.child.stdin.write('go\n');
  }

  /** Resolves with the `count`-th line matching `pattern` (counting lines already printed). */
  waitForLine(pattern: RegExp, count = 1, timeoutMs = 30_000): Promise<string> {
    return new Promise((resolve, reject) => {
      let seen = 0;
      const check = (line: string) => {
        if (!pattern.test(line) || ++seen < count) return false;
        clearTimeout(timer);
        this.listeners.delete(listener);
        resolve(line);
        return true;
      };
      const listener = (line: string) => void check(line);
      const timer = setTimeout(() => {
        this.listeners.delete(listener);
        reject(new Error(`worker printed no ${pattern} (#${count}) within ${timeoutMs} ms; stderr: ${this.stderr}`));
      }, timeoutMs);
      for (const line of this.lines) if (check(line)) return;
      this.listeners.add(listener);
    });
  }

  kill(signal: NodeJS.Signals): void {
    this.child.kill(signal);
  }
}
