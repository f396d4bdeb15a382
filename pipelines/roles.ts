import { parseArgs } from 'node:util';
import { installGracefulShutdown } from '../connectors/kafka/shutdown.js';
import { startEddy, type Role, type RunningEddy } from './app.js';
import { loadConfig, type AppConfig } from './config.js';
import { LiveSimulator } from './simulator/live.js';

/**
 * The demo's attribution window when none is set. A sample is labelled once its impression's window has closed, so
 * with the production default of 30 minutes a newcomer would watch the cold-start ranker for half an hour; the
 * simulated users click at once, and a minute lets the first learned version serve within about two.
 */
export const DEMO_ATTRIBUTION_WINDOW_MS = 60_000;

/** `config` for `eddy all` with the simulator: the demo's attribution window unless the environment sets one. */
export function withDemoDefaults(config: AppConfig, env: NodeJS.ProcessEnv): AppConfig {
  return env.EDDY_ATTRIBUTION_WINDOW_MS === undefined ? { ...config, attributionWindowMs: DEMO_ATTRIBUTION_WINDOW_MS } : config;
}

/** `eddy <role>`: starts the role, and on SIGTERM or SIGINT drains, commits, closes and exits 0. */
export function roleCommand(role: Role) {
  return {
    async main(args: readonly string[]): Promise<void> {
      const { values } = parseArgs({
        args: [...args],
        options: { 'no-simulate': { type: 'boolean', default: false }, help: { type: 'boolean', default: false } },
      });
      if (values.help) {
        console.log(`usage: eddy ${role}${role === 'all' ? ' [--no-simulate]' : ''}\nSettings come from the environment; see the README.`);
        return;
      }
      const config = loadConfig();
      const log = (message: string, error?: unknown) =>
        console.error(JSON.stringify({ level: error ? 'error' : 'info', role, msg: message, ...(error ? { err: String((error as Error)?.stack ?? error) } : {}) }));
      const simulating = role === 'all' && config.simulate && !values['no-simulate'];
      const eddy: RunningEddy = await startEddy({
        config: simulating ? withDemoDefaults(config, process.env) : config,
        role,
        onError: (error) => log('background work failed', error),
      });
      let simulator: LiveSimulator | undefined;
      if (simulating && eddy.service) {
        simulator = new LiveSimulator({ service: eddy.service, rps: config.simulatorRps, onError: (error) => log('simulated request failed', error) });
        await simulator.start();
      }
      log(`eddy ${role} is up${eddy.url ? ` at ${eddy.url}` : ''}${simulator ? `, simulating ${config.simulatorRps} requests/s` : ''}`);
      installGracefulShutdown(
        {
          async stop() {
            simulator?.stop();
            await eddy.stop();
          },
        },
        { log },
      );
    },
  };
}
