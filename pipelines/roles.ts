import { parseArgs } from 'node:util';
import { installGracefulShutdown } from '../connectors/kafka/shutdown.js';
import { startEddy, type Role, type RunningEddy } from './app.js';
import { loadConfig } from './config.js';
import { LiveSimulator } from './simulator/live.js';

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
      const eddy: RunningEddy = await startEddy({ config, role, onError: (error) => log('background work failed', error) });
      let simulator: LiveSimulator | undefined;
      if (role === 'all' && config.simulate && !values['no-simulate'] && eddy.service) {
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
