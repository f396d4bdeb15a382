/**
 * Starts librdkafka's mock cluster (test/kafka/mock-broker.c) for tests and benchmarks: compiles the launcher with `cc`
 * when its source is newer than the binary, runs it with the topics a test needs, and injects broker faults.
 */
import { spawn, execFile, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const here = dirname(fileURLToPath(import.meta.url));
const source = join(here, 'mock-broker.c');
/** Inside node_modules so the binary is never committed. */
const buildDir = join(here, '..', '..', 'node_modules', '.cache', 'eddy');

/** Compiles the launcher once per source version; concurrent test workers each build then rename atomically. */
export async function buildMockBroker(): Promise<string> {
  const digest = createHash('sha256').update(readFileSync(source)).digest('hex').slice(0, 12);
  const binary = join(buildDir, `mock-broker-${digest}`);
  if (existsSync(binary)) return binary;
  mkdirSync(buildDir, { recursive: true });
  const partial = `${binary}.${process.pid}.tmp`;
  try {
    await promisify(execFile)('cc', ['-O2', '-Wall', '-o', partial, source, '-lrdkafka']);
  } catch (error) {
    throw new Error('cannot compile test/kafka/mock-broker.c: install Debian packages build-essential and librdkafka-dev', {
      cause: error,
    });
  }
  renameSync(partial, binary);
  return binary;
}

export interface MockBrokerOptions {
  /** Topics to create, with their partition counts. */
  readonly topics?: Readonly<Record<string, number>>;
  /** Brokers in the cluster. Default 3. */
  readonly brokers?: number;
}

export class MockBroker {
  private readonly replies: ((line: string) => void)[] = [];

  private constructor(
    private readonly child: ChildProcessWithoutNullStreams,
    readonly bootstrap: string,
    lines: AsyncIterableIterator<string>,
  ) {
    void (async () => {
      for await (const line of lines) this.replies.shift()?.(line);
    })();
  }

  get brokers(): string[] {
    return this.bootstrap.split(',');
  }

  static async start(options: MockBrokerOptions = {}): Promise<MockBroker> {
    const binary = await buildMockBroker();
    const topics = Object.entries(options.topics ?? {}).map(([name, partitions]) => `${name}:${partitions}`);
    const child = spawn(binary, ['--brokers', String(options.brokers ?? 3), ...topics], { stdio: 'pipe' });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
    const first = await Promise.race([
      lines.next(),
      new Promise<never>((_, reject) => child.once('exit', (code) => reject(new Error(`mock broker exited with ${code}: ${stderr}`)))),
    ]);
    const match = /^bootstrap (\S+)$/.exec(first.done ? '' : first.value);
    if (!match) throw new Error(`mock broker did not print its bootstrap address: ${stderr}`);
    return new MockBroker(child, match[1]!, lines);
  }

  /** Sends one command and resolves once the launcher confirms it. */
  private command(line: string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.replies.push((reply) => (reply.startsWith('ok ') ? resolve() : reject(new Error(`mock broker: ${reply}`))));
      this.child.stdin.write(`${line}\n`);
    });
  }

  /** Broker `id` (1-based, -1 for all) drops its connections and refuses new ones. */
  down(id: number): Promise<void> {
    return this.command(`down ${id}`);
  }

  up(id: number): Promise<void> {
    return this.command(`up ${id}`);
  }

  createTopic(name: string, partitions: number): Promise<void> {
    return this.command(`topic ${name} ${partitions}`);
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.stdin.end();
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 2000);
    await exited;
    clearTimeout(timer);
  }
}
