import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { createHttpServer, type EddyService } from '../connectors/http.js';
import { FtrlLearner } from '../models/learners/ftrl.js';
import { ModelRegistry } from '../models/registry.js';
import { registryAdmin } from '../pipelines/model-admin.js';
import { main as models } from '../pipelines/models-command.js';

const notServed = async (): Promise<never> => {
  throw new Error('not served here');
};
const service: EddyService = {
  ingest: notServed,
  recommend: notServed,
  similar: notServed,
  experiment: () => undefined,
  readiness: async () => ({ ready: true, checks: {} }),
  metrics: async () => ({ contentType: 'text/plain', body: '' }),
};

describe('model registry admin', () => {
  let app: FastifyInstance;
  let url: string;
  const registry = new ModelRegistry();

  beforeAll(async () => {
    const learner = new FtrlLearner({ bits: 8 });
    let parent: string | null = null;
    for (const version of ['v1', 'v2', 'v3']) {
      learner.learn({ features: { indices: [1, 2] }, label: 1 });
      registry.register(learner.export({ model: 'ranker', version, parent }));
      parent = version;
    }
    app = await createHttpServer(service, { modelAdmin: registryAdmin(registry), authToken: 'ops' });
    url = await app.listen({ port: 0, host: '127.0.0.1' });
  });
  afterAll(() => app.close());

  async function run(...args: string[]): Promise<{ code: number; out: string }> {
    const lines: string[] = [];
    const spy = vi.spyOn(console, 'log').mockImplementation((line: unknown) => void lines.push(String(line)));
    try {
      const code = await models([...args, '--url', url, '--token', 'ops']);
      return { code, out: lines.join('\n') };
    } finally {
      spy.mockRestore();
    }
  }

  it('lists versions with lineage and status', async () => {
    const { code, out } = await run('list', '--json');
    expect(code).toBe(0);
    const versions = JSON.parse(out) as { version: string; parent: string | null; status: string }[];
    expect(versions.map((v) => [v.version, v.parent, v.status])).toEqual([
      ['v3', 'v2', 'serving'],
      ['v2', 'v1', 'standby'],
      ['v1', null, 'standby'],
    ]);
  });

  it('rolls back to the parent and pins a version', async () => {
    expect((await run('rollback', 'ranker')).code).toBe(0);
    expect(registry.serving('ranker')!.version).toBe('v2');
    expect(registry.get('ranker', 'v3')!.status).toBe('rolled-back');
    expect((await run('pin', 'ranker', 'v1')).code).toBe(0);
    expect(registry.serving('ranker')).toMatchObject({ version: 'v1', pinned: true });
    expect((await run('unpin', 'ranker')).code).toBe(0);
    expect(registry.serving('ranker')!.pinned).toBe(false);
  });

  it('refuses unknown versions and missing tokens with JSON errors', async () => {
    await expect(run('pin', 'ranker', 'v9')).rejects.toThrow(/404/);
    const response = await fetch(`${url}/v1/models`);
    expect(response.status).toBe(401);
    expect(await response.json()).toMatchObject({ field: 'authorization' });
  });
});
