import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRedis, type RedisServer } from './support/redis.js';

const EVENTS = 5_000;
let server: RedisServer;
let admin: Redis;
let dir: string;
let worker: string;

beforeAll(async () => {
  server = await startRedis();
  admin = new Redis(server.port, '127.0.0.1');
  // One bundled file starts in a fraction of the time a TypeScript loader needs, which matters over 20+ restarts.
  dir = await mkdtemp(join(tmpdir(), 'eddy-crash-'));
  worker = join(dir, 'feature-worker.mjs');
  await build({
    entryPoints: [fileURLToPath(new URL('./support/feature-worker.ts', import.meta.url))],
    bundle: true,
    platform: 'node',
    format: 'esm',
    outfile: worker,
    logLevel: 'error',
    banner: { js: "import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);" },
  });
});
afterAll(async () => {
  admin.disconnect();
  await server.close();
  await rm(dir, { recursive: true, force: true });
});

/**
 * Runs the worker; with `kill`, SIGKILLs it `delayMs` after it has reported progress `afterProgress` times, so the
 * kill lands part-way through, at any point of a batch or a transaction. Resolves true if the worker finished.
 */
function runWorker(shard: string, kill?: { afterProgress: number; delayMs: number }): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [worker, String(server.port), shard, String(EVENTS)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    let errors = '';
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      if (kill && output.split('\nat ').length - 1 >= kill.afterProgress) {
        setTimeout(() => child.kill('SIGKILL'), kill.delayMs).unref();
        kill = undefined;
      }
    });
    child.stderr.on('data', (chunk: Buffer) => (errors += chunk.toString()));
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      if (signal === 'SIGKILL') resolve(output.includes('done'));
      else if (code === 0 && output.includes('done')) resolve(true);
      else reject(new Error(`worker exited with ${code}: ${errors}`));
    });
  });
}

async function dump(shard: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const prefix = `eddy:f:{${shard}}:`;
  for (const key of await admin.keys(`${prefix}*`)) {
    const value = key.endsWith(':offsets') ? JSON.stringify(await admin.hgetall(key)) : (await admin.getBuffer(key))!.toString('base64');
    out.set(key.slice(prefix.length), value);
  }
  return out;
}

describe('features worker killed with SIGKILL', () => {
  it('ends with the same state as a run without crashes', async () => {
    expect(await runWorker('clean')).toBe(true);
    const clean = await dump('clean');
    expect(clean.get('offsets')).toBe(JSON.stringify({ 'events/0': String(EVENTS + 1) }));

    let kills = 0;
    let finished = false;
    const progress: string[] = [];
    while (!finished) {
      const kill = kills < 20 ? { afterProgress: 2 + Math.floor(Math.random() * 2), delayMs: Math.random() * 5 } : undefined;
      finished = await runWorker('crashy', kill);
      if (!finished) kills++;
      progress.push((await admin.hget('eddy:f:{crashy}:offsets', 'events/0')) ?? '0');
    }
    expect(kills).toBeGreaterThanOrEqual(20);
    // Kills landed mid-stream: the stored position moved between restarts and was short of the end.
    expect(new Set(progress.slice(0, 20)).size).toBeGreaterThanOrEqual(10);
    expect(progress.slice(0, 20).every((p) => Number(p) < EVENTS + 1)).toBe(true);
    const crashy = await dump('crashy');
    expect([...crashy.keys()].sort()).toEqual([...clean.keys()].sort());
    for (const [key, value] of clean) expect(crashy.get(key), key).toBe(value);
  }, 300_000);
});
