/** The CLI's commands, each loaded on demand. */
export interface CommandModule {
  /** Resolves with the exit code, or never for long-running roles that exit on a signal. */
  main(args: readonly string[]): Promise<number | void>;
}

export interface Command {
  readonly summary: string;
  load(): Promise<CommandModule>;
}

const role = (name: 'all' | 'features' | 'samples' | 'trainer' | 'serve', summary: string): Command => ({
  summary,
  load: async () => (await import('./roles.js')).roleCommand(name),
});

export const commands: Readonly<Record<string, Command>> = {
  all: role('all', 'every role in one process on the embedded log and store, with a demo simulator (npm start)'),
  features: role('features', 'events, items and users into the feature store'),
  samples: {
    summary: 'impressions joined with clicks into labelled samples; --export FILE.jsonl dumps the samples topic',
    load: () => import('./samples-command.js'),
  },
  trainer: {
    summary: 'samples into model versions: online FTRL with progressive validation, guardrails and rollback',
    load: () => import('./trainer-command.js'),
  },
  serve: role('serve', 'HTTP API, recommendation-requests, proactive pushes; reads features and models'),
  describe: {
    summary: 'print a pipeline’s operator graph: eddy describe <pipeline> [--json]',
    load: () => import('./describe.js'),
  },
  models: {
    summary: 'model registry: eddy models list | pin <model> <version> | unpin <model> | rollback <model> [--to V]',
    load: () => import('./models-command.js'),
  },
  eval: {
    summary: 'prequential evaluation of Eddy against baselines: eddy eval --dataset movielens --ratings F --movies F --k 10 [--json]',
    load: () => import('./eval-eddy-command.js'),
  },
  replay: {
    summary: 'a dataset as a time-ordered event stream through the real pipelines: eddy replay --dataset movielens ... [--speed N]',
    load: () => import('./replay-command.js'),
  },
  train: {
    summary: 'offline training on replayed samples into an ONNX ranker, scored on a later temporal split',
    load: () => import('./train-command.js'),
  },
  simulate: {
    summary: 'closed-loop simulation: online learning vs a frozen model vs random ranking, with drift',
    load: () => import('./simulate-command.js'),
  },
};
