/** The CLI's commands, each loaded on demand. */
export interface CommandModule {
  /** Resolves with the exit code, or never for long-running roles that exit on a signal. */
  main(args: readonly string[]): Promise<number | void>;
}

export interface Command {
  readonly summary: string;
  load(): Promise<CommandModule>;
}

export const commands: Readonly<Record<string, Command>> = {
  describe: {
    summary: 'print a pipeline’s operator graph: eddy describe <pipeline> [--json]',
    load: () => import('./describe.js'),
  },
};
