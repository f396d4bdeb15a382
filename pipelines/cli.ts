/**
 * `eddy <command>`: the roles a deployment runs (`all`, `features`, `samples`, `trainer`, `serve`) and the tools
 * around them (`describe`, `replay`, `train`, `eval`, `simulate`, `models`). Each command lives in its own module and
 * is loaded only when asked for, so `eddy describe` does not start onnxruntime or Kafka.
 */
import { commands } from './commands.js';

const [name, ...args] = process.argv.slice(2);

function usage(): string {
  const width = Math.max(...Object.keys(commands).map((c) => c.length));
  const lines = Object.entries(commands).map(([command, { summary }]) => `  ${command.padEnd(width)}  ${summary}`);
  return `usage: eddy <command> [options]\n\ncommands:\n${lines.join('\n')}\n\n'eddy <command> --help' tells more.`;
}

if (!name || name === 'help' || name === '--help' || name === '-h') {
  console.log(usage());
  process.exit(name ? 0 : 2);
}

const command = commands[name];
if (!command) {
  console.error(`eddy: unknown command '${name}'\n\n${usage()}`);
  process.exit(2);
}

try {
  const code = await (await command.load()).main(args);
  if (typeof code === 'number') process.exitCode = code;
} catch (error) {
  console.error(`eddy ${name}: ${error instanceof Error ? error.message : String(error)}`);
  if (error instanceof Error && error.cause) console.error(`  caused by: ${String((error.cause as Error).message ?? error.cause)}`);
  process.exitCode = 1;
}
