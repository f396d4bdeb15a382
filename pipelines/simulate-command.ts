import cliProgress from 'cli-progress';
import { numberFlag, parseFlags } from './replay-command.js';
import { simulate, type SimulationResult } from './simulator/loop.js';
import { eddyPolicy, type EddyPolicyKind } from './simulator/policies.js';
import { World, type WorldOptions } from './simulator/world.js';

/**
 * `eddy simulate`: the closed loop of a synthetic world with drifting tastes against Eddy's serving pipeline under
 * three rankers (online learning, a model frozen after a warm-up, random), each in its own copy of the same seeded
 * world. Prints CTR, last-quarter CTR and regret per policy; `--json` prints everything as one JSON line, last.
 */

export const SIMULATE_USAGE = `usage: eddy simulate [options]

options:
  --steps N           recommendation requests per policy (default 20000)
  --items N           catalogue size (default 1000)
  --users N           users (default 2000)
  --genres N          genres (default 10)
  --drift-share X     share of users whose taste moves at each drift (default 0.5)
  --drift-every N     steps between drifts (default steps / 4)
  --warmup N          steps the frozen model learns from (default steps / 10)
  --arrivals N        new items joining the catalogue every --arrive-every steps (default 50)
  --arrive-every N    steps between arrivals (default steps / 20)
  --novelty X         extra log-odds of attraction of a brand-new item (default 2)
  --novelty-half-life N  steps over which novelty halves (default steps / 10)
  --quality-drift X   how far items' appeal moves at each drift, 0 to 1 (default 0.5)
  --policies LIST     comma-separated, of online, frozen, random (default all three)
  --seed N            world seed (default 42)
  --json              print the result as one JSON line, last on stdout
  --no-progress       no progress bar on stderr`;

export class SimulateArgsError extends Error {
  override readonly name = 'SimulateArgsError';
}

export interface SimulateArgs {
  readonly steps: number;
  readonly world: WorldOptions;
  readonly driftShare: number;
  readonly driftEvery: number;
  readonly warmup: number;
  readonly arrivals: { readonly everySteps: number; readonly count: number };
  readonly policies: readonly EddyPolicyKind[];
  readonly json: boolean;
  readonly progress: boolean;
  readonly help: boolean;
}

const VALUE_FLAGS = ['steps', 'items', 'users', 'genres', 'drift-share', 'drift-every', 'warmup', 'arrivals', 'arrive-every', 'novelty', 'novelty-half-life', 'quality-drift', 'policies', 'seed'];
/**
 * The default world changes the way catalogues do, besides users' tastes moving to other genres at each drift:
 * - it keeps growing: 50 new items (5% of the default catalogue) arrive every steps / 20, and a new item is more
 *   attractive while it is new (+2 log-odds, fading with a half-life of steps / 10), as with films, news or music;
 * - items go in and out of fashion: at each drift every item's intrinsic appeal moves (quality drift 0.5: the new
 *   appeal keeps a correlation of about 0.87 with the old).
 * Neither is in any feature: the catalogue says only an item's genre and when it arrived. A model keeps up with them
 * through what it learns from clicks (each item's own weight, and what an item's age is worth), and a model frozen
 * after its warm-up has learned nothing about the items that arrived since, nor about the appeal that moved.
 */
const DEFAULT_ARRIVALS = 50;
const DEFAULT_NOVELTY = 2;
const DEFAULT_QUALITY_DRIFT = 0.5;
/** Event time between simulated steps (the loop's default). */
const STEP_MS = 1000;
const SWITCHES = ['json', 'no-progress', 'help'];
const KINDS: readonly EddyPolicyKind[] = ['online', 'frozen', 'random'];

export function parseSimulateArgs(argv: readonly string[]): SimulateArgs {
  const fail = (message: string) => new SimulateArgsError(message);
  const { values, switches } = parseFlags(argv, VALUE_FLAGS, SWITCHES, fail);
  const whole = (flag: string, fallback: number, min = 1) => {
    const text = values.get(flag);
    if (text === undefined) return fallback;
    const value = numberFlag(flag, text, min, fail);
    if (!Number.isInteger(value)) throw fail(`--${flag} must be a whole number, got "${text}"`);
    return value;
  };
  const steps = whole('steps', 20_000);
  const driftShare = values.has('drift-share') ? numberFlag('drift-share', values.get('drift-share')!, 0, fail) : 0.5;
  if (driftShare > 1) throw fail(`--drift-share must be between 0 and 1, got ${driftShare}`);
  const qualityDrift = values.has('quality-drift') ? numberFlag('quality-drift', values.get('quality-drift')!, 0, fail) : DEFAULT_QUALITY_DRIFT;
  if (qualityDrift > 1) throw fail(`--quality-drift must be between 0 and 1, got ${qualityDrift}`);
  const novelty = values.has('novelty') ? numberFlag('novelty', values.get('novelty')!, 0, fail) : DEFAULT_NOVELTY;
  const policies = (values.get('policies') ?? KINDS.join(',')).split(',').map((p) => p.trim());
  for (const policy of policies) if (!(KINDS as readonly string[]).includes(policy)) throw fail(`--policies: unknown policy "${policy}"; choose from ${KINDS.join(', ')}`);
  return {
    steps,
    world: {
      items: whole('items', 1000, 10),
      users: whole('users', 2000),
      genres: whole('genres', 10, 2),
      seed: whole('seed', 42, 0),
      noveltyBoost: novelty,
      noveltyHalfLifeMs: whole('novelty-half-life', Math.max(1, Math.floor(steps / 10))) * STEP_MS,
      qualityDrift,
    },
    driftShare,
    driftEvery: whole('drift-every', Math.max(1, Math.floor(steps / 4))),
    warmup: whole('warmup', Math.max(1, Math.floor(steps / 10)), 0),
    arrivals: { everySteps: whole('arrive-every', Math.max(1, Math.floor(steps / 20))), count: whole('arrivals', DEFAULT_ARRIVALS, 0) },
    policies: [...new Set(policies)] as EddyPolicyKind[],
    json: switches.has('json'),
    progress: !switches.has('no-progress'),
    help: switches.has('help'),
  };
}

export interface SimulationReport {
  readonly steps: number;
  readonly world: WorldOptions;
  readonly drifts: readonly { readonly atStep: number; readonly share: number }[];
  readonly arrivals: { readonly everySteps: number; readonly count: number };
  readonly warmupSteps: number;
  readonly policies: Record<string, SimulationResult>;
  /** Online learning's last-quarter CTR over the frozen model's, when both ran. */
  readonly onlineOverFrozen: number | null;
}

/** Runs each policy over its own copy of the seeded world, with the same drifts. */
export async function runSimulation(args: Omit<SimulateArgs, 'json' | 'progress' | 'help'>, onStep?: (policy: string, step: number) => void): Promise<SimulationReport> {
  const drifts: { atStep: number; share: number }[] = [];
  if (args.driftShare > 0) for (let at = args.driftEvery; at < args.steps; at += args.driftEvery) drifts.push({ atStep: at, share: args.driftShare });
  const policies: Record<string, SimulationResult> = {};
  for (const kind of args.policies) {
    const world = new World(args.world);
    const policy = eddyPolicy(world, { kind, warmupSteps: args.warmup });
    policies[kind] = await simulate(world, policy, { steps: args.steps, stepMs: STEP_MS, drifts, arrivals: args.arrivals, ...(onStep && { onStep: (step: number) => onStep(kind, step) }) });
  }
  const online = policies.online?.lastQuarterCtr;
  const frozen = policies.frozen?.lastQuarterCtr;
  return {
    steps: args.steps,
    world: args.world,
    drifts,
    arrivals: args.arrivals,
    warmupSteps: args.warmup,
    policies,
    onlineOverFrozen: online !== undefined && frozen !== undefined && frozen > 0 ? online / frozen : null,
  };
}

export interface SimulateCommandOptions {
  readonly stdout?: NodeJS.WritableStream;
  readonly stderr?: NodeJS.WritableStream;
}

function table(report: SimulationReport): string {
  const rows = Object.values(report.policies).map(
    (r) => `${r.policy.padEnd(8)} ${r.ctr.toFixed(4).padStart(8)} ${r.lastQuarterCtr.toFixed(4).padStart(16)} ${r.regret.toFixed(1).padStart(10)}`,
  );
  const ratio = report.onlineOverFrozen !== null ? [`online / frozen, last quarter: ${report.onlineOverFrozen.toFixed(2)}x`] : [];
  return [`${report.steps} steps per policy, drifts at ${report.drifts.map((d) => d.atStep).join(', ') || 'none'}`, `${'policy'.padEnd(8)} ${'CTR'.padStart(8)} ${'last-quarter CTR'.padStart(16)} ${'regret'.padStart(10)}`, ...rows, ...ratio].join('\n');
}

export async function runSimulateCommand(argv: readonly string[], options: SimulateCommandOptions = {}): Promise<number> {
  const stdout = options.stdout ?? process.stdout;
  const stderr = options.stderr ?? process.stderr;
  let args: SimulateArgs;
  try {
    args = parseSimulateArgs(argv);
  } catch (error) {
    if (!(error instanceof SimulateArgsError)) throw error;
    stderr.write(`eddy simulate: ${error.message}\n\n${SIMULATE_USAGE}\n`);
    return 2;
  }
  if (args.help) {
    stdout.write(`${SIMULATE_USAGE}\n`);
    return 0;
  }
  const bar = args.progress
    ? new cliProgress.SingleBar({ stream: stderr, format: 'simulate [{bar}] {percentage}% | {policy} | {value}/{total} steps | ETA {eta_formatted}', hideCursor: false }, cliProgress.Presets.shades_classic)
    : undefined;
  bar?.start(args.steps * args.policies.length, 0, { policy: args.policies[0] });
  const offsets = new Map(args.policies.map((p, i) => [p as string, i * args.steps]));
  let report: SimulationReport;
  try {
    report = await runSimulation(args, (policy, step) => {
      if (step % 100 === 99) bar?.update(offsets.get(policy)! + step + 1, { policy });
    });
  } finally {
    bar?.stop();
  }
  stdout.write(`${table(report)}\n`);
  if (args.json) stdout.write(`${JSON.stringify(report)}\n`);
  return 0;
}

/** The CLI's command module shape (`pipelines/commands.ts`). */
export async function main(argv: readonly string[]): Promise<number> {
  return runSimulateCommand(argv);
}
