import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROLES } from '../pipelines/app.js';
import { loadConfig } from '../pipelines/config.js';
import { DEMO_ATTRIBUTION_WINDOW_MS, withDemoDefaults } from '../pipelines/roles.js';

/**
 * The commands the image runs (`eddy <role>`), started as processes the way a container starts them, probed over
 * HTTP, and stopped with SIGTERM: each must drain, commit and exit 0.
 */
function runRole(role: string): Promise<{ code: number | null; health: number; ready: number; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'pipelines/cli.ts', role, ...(role === 'all' ? ['--no-simulate'] : [])], {
      env: { ...process.env, PORT: '0', HOST: '127.0.0.1', EDDY_DATA_DIR: mkdtempSync(join(tmpdir(), `eddy-${role}-`)) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    let probed: { health: number; ready: number } | undefined;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`eddy ${role} did not come up and stop in time:\n${stderr}`));
    }, 60_000);
    child.stderr.on('data', async (chunk: Buffer) => {
      stderr += chunk.toString();
      const url = /is up at (http:\/\/[^\s,"]+)/.exec(stderr)?.[1];
      if (!url || probed) return;
      probed = { health: 0, ready: 0 };
      probed.health = (await fetch(`${url}/healthz`)).status;
      probed.ready = (await fetch(`${url}/readyz`)).status;
      child.kill('SIGTERM');
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, health: probed?.health ?? 0, ready: probed?.ready ?? 0, stderr });
    });
  });
}

describe('role commands', () => {
  for (const role of ROLES) {
    it(`eddy ${role} starts, answers its probes, and exits 0 on SIGTERM`, async () => {
      const result = await runRole(role);
      expect(result.health, result.stderr).toBe(200);
      expect(result.ready, result.stderr).toBe(200);
      expect(result.code, result.stderr).toBe(0);
      expect(result.stderr).toContain('stopped cleanly');
    });
  }
});

describe('the demo of eddy all', () => {
  it('closes attribution windows after a minute unless the environment sets the window', () => {
    const config = loadConfig({});
    expect(config.attributionWindowMs).toBe(1_800_000);
    expect(withDemoDefaults(config, {}).attributionWindowMs).toBe(DEMO_ATTRIBUTION_WINDOW_MS);
    const chosen = loadConfig({ EDDY_ATTRIBUTION_WINDOW_MS: '600000' });
    expect(withDemoDefaults(chosen, { EDDY_ATTRIBUTION_WINDOW_MS: '600000' }).attributionWindowMs).toBe(600_000);
  });
});
