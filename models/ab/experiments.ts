import { z } from 'zod';
import { BEHAVIOUR_TYPES, type BehaviourEvent } from '../../schema/events.js';
import { hashString } from '../hashing.js';
import { ExposureTable } from './exposure-table.js';
import { chiSquareGoodnessOfFit, twoProportionZTest, wilsonInterval, type Interval, type ProportionTest } from './stats.js';

/**
 * A/B experiments: typed config, deterministic assignment, exposure logging, streaming per-variant metrics and a
 * report with confidence intervals, two-proportion tests against control, and a sample-ratio-mismatch check.
 *
 * Assignment hashes `salt:userId` with MurmurHash3 to a point in [0, 1) and picks the variant whose cumulative share
 * covers it, so a user keeps their variant across requests, processes and restarts, and a new salt reshuffles users
 * independently of other experiments. Metrics count only users who were exposed (served under the experiment):
 * - users: distinct exposed users (the SRM check compares them to the shares);
 * - impressions and clicks from behaviour events, CTR = clicks / impressions;
 * - conversions (events of `conversionTypes`), and the conversion rate = converted users / users.
 * Each experiment keeps about 18 bytes per exposed user (see `ExposureTable`).
 */

const name = z.string().min(1).max(256);

export const variantSchema = z.strictObject({
  name,
  /** Relative traffic share; shares are normalised over the experiment's variants. */
  share: z.number().finite().positive(),
  /** What the variant changes: a model name, pipeline parameters, anything the serving side reads. */
  settings: z.record(z.string(), z.unknown()).default({}),
});

export const experimentSchema = z
  .strictObject({
    id: name,
    /** Hash salt; defaults to the id. Change it to reshuffle users. */
    salt: z.string().max(256).optional(),
    /** Variant the others are tested against; defaults to the first. */
    control: name.optional(),
    variants: z.array(variantSchema).min(2).max(32),
    conversionTypes: z.array(z.enum(BEHAVIOUR_TYPES)).default(['purchase']),
    /** Significance level of the tests against control. Default 0.05. */
    alpha: z.number().gt(0).lt(1).default(0.05),
    /** SRM is flagged when the chi-square p-value falls below this. Default 0.001. */
    srmThreshold: z.number().gt(0).lt(1).default(0.001),
  })
  .superRefine((experiment, ctx) => {
    const names = experiment.variants.map((variant) => variant.name);
    if (new Set(names).size !== names.length) ctx.addIssue({ code: 'custom', message: 'variant names must be unique', path: ['variants'] });
    if (experiment.control !== undefined && !names.includes(experiment.control)) {
      ctx.addIssue({ code: 'custom', message: `control "${experiment.control}" is not a variant`, path: ['control'] });
    }
  });

export type ExperimentConfig = z.input<typeof experimentSchema>;
export type Experiment = z.output<typeof experimentSchema>;

export interface Assignment {
  readonly experimentId: string;
  readonly variant: string;
  readonly settings: Readonly<Record<string, unknown>>;
}

export interface Exposure extends Assignment {
  readonly userId: string;
  readonly ts: number;
  readonly requestId?: string;
  /** True the first time this user is exposed to the experiment. */
  readonly firstExposure: boolean;
}

export interface VariantReport {
  readonly name: string;
  /** Normalised share of traffic. */
  readonly share: number;
  readonly settings: Readonly<Record<string, unknown>>;
  readonly users: number;
  readonly exposures: number;
  readonly impressions: number;
  readonly clicks: number;
  readonly conversions: number;
  readonly convertedUsers: number;
  readonly ctr: Interval;
  readonly conversionRate: Interval;
  /** Null for the control. */
  readonly vsControl: { readonly ctr: ProportionTest & { readonly significant: boolean }; readonly conversionRate: ProportionTest & { readonly significant: boolean } } | null;
}

export interface ExperimentReport {
  readonly experimentId: string;
  readonly control: string;
  readonly alpha: number;
  readonly totalUsers: number;
  readonly variants: readonly VariantReport[];
  readonly srm: { readonly chiSquare: number; readonly degreesOfFreedom: number; readonly pValue: number; readonly threshold: number; readonly mismatch: boolean };
}

/** The point in [0, 1) where `userId` falls for `salt`. */
export function hashUnit(salt: string, userId: string): number {
  return hashString(`${salt}:${userId}`) / 4294967296;
}

interface VariantCounters {
  users: number;
  exposures: number;
  impressions: number;
  clicks: number;
  conversions: number;
  convertedUsers: number;
}

class ExperimentState {
  readonly salt: string;
  readonly control: number;
  readonly shares: number[];
  readonly cumulative: number[];
  readonly conversionTypes: ReadonlySet<string>;
  readonly counters: VariantCounters[];
  /** Per exposed user: (variant index + 1) * 2, plus 1 once converted. */
  readonly exposed = new ExposureTable();

  constructor(readonly config: Experiment) {
    this.salt = config.salt ?? config.id;
    const total = config.variants.reduce((sum, variant) => sum + variant.share, 0);
    this.shares = config.variants.map((variant) => variant.share / total);
    let running = 0;
    this.cumulative = this.shares.map((share) => (running += share));
    this.control = config.control === undefined ? 0 : config.variants.findIndex((variant) => variant.name === config.control);
    this.conversionTypes = new Set(config.conversionTypes);
    this.counters = config.variants.map(() => ({ users: 0, exposures: 0, impressions: 0, clicks: 0, conversions: 0, convertedUsers: 0 }));
  }

  variantOf(userId: string): number {
    const point = hashUnit(this.salt, userId);
    for (let i = 0; i < this.cumulative.length - 1; i++) if (point < this.cumulative[i]!) return i;
    return this.cumulative.length - 1;
  }
}

export interface ExperimentsOptions {
  /** Called on every exposure, e.g. to log it to the `events` topic. Exceptions propagate to the caller of `expose`. */
  readonly onExposure?: (exposure: Exposure) => void;
}

export class Experiments {
  private readonly states = new Map<string, ExperimentState>();
  private readonly onExposure: ((exposure: Exposure) => void) | undefined;

  /** Validates every config; throws naming the experiment and field at the first invalid one. */
  constructor(configs: readonly ExperimentConfig[] = [], options: ExperimentsOptions = {}) {
    this.onExposure = options.onExposure;
    for (const config of configs) this.add(config);
  }

  add(config: ExperimentConfig): void {
    const parsed = experimentSchema.safeParse(config);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      const id = typeof (config as { id?: unknown }).id === 'string' ? (config as { id: string }).id : '?';
      throw new Error(`experiment "${id}": ${issue.path.map(String).join('.') || 'config'}: ${issue.message}`, { cause: parsed.error });
    }
    if (this.states.has(parsed.data.id)) throw new Error(`experiment "${parsed.data.id}" is defined twice`);
    this.states.set(parsed.data.id, new ExperimentState(parsed.data));
  }

  get ids(): string[] {
    return [...this.states.keys()];
  }

  /** The user's variant, without recording anything. */
  assign(experimentId: string, userId: string): Assignment {
    const state = this.state(experimentId);
    const variant = state.config.variants[state.variantOf(userId)]!;
    return { experimentId, variant: variant.name, settings: variant.settings };
  }

  /** Assigns the user, records that they were served under the experiment, and calls the exposure hook. */
  expose(experimentId: string, userId: string, at: { readonly ts: number; readonly requestId?: string }): Exposure {
    const state = this.state(experimentId);
    const known = state.exposed.get(userId);
    const index = known === 0 ? state.variantOf(userId) : (known >> 1) - 1;
    const counters = state.counters[index]!;
    if (known === 0) {
      state.exposed.set(userId, (index + 1) << 1);
      counters.users++;
    }
    counters.exposures++;
    const variant = state.config.variants[index]!;
    const exposure: Exposure = {
      experimentId,
      variant: variant.name,
      settings: variant.settings,
      userId,
      ts: at.ts,
      firstExposure: known === 0,
      ...(at.requestId === undefined ? {} : { requestId: at.requestId }),
    };
    this.onExposure?.(exposure);
    return exposure;
  }

  /** Counts a behaviour event towards every experiment its user was exposed to. */
  observe(event: BehaviourEvent): void {
    for (const state of this.states.values()) {
      const entry = state.exposed.get(event.userId);
      if (entry === 0) continue;
      const counters = state.counters[(entry >> 1) - 1]!;
      if (event.type === 'impression') counters.impressions++;
      else if (event.type === 'click') counters.clicks++;
      if (state.conversionTypes.has(event.type)) {
        counters.conversions++;
        if ((entry & 1) === 0) {
          counters.convertedUsers++;
          state.exposed.set(event.userId, entry | 1);
        }
      }
    }
  }

  /** What `GET /v1/experiments/:id` serves; undefined for an unknown experiment. */
  report(experimentId: string): ExperimentReport | undefined {
    const state = this.states.get(experimentId);
    if (!state) return undefined;
    const { config, counters, shares } = state;
    const control = counters[state.control]!;
    const srm = chiSquareGoodnessOfFit(counters.map((c) => c.users), shares);
    const tested = (test: ProportionTest) => ({ ...test, significant: test.pValue < config.alpha });
    return {
      experimentId,
      control: config.variants[state.control]!.name,
      alpha: config.alpha,
      totalUsers: counters.reduce((sum, c) => sum + c.users, 0),
      variants: config.variants.map((variant, i) => {
        const c = counters[i]!;
        const clicks = Math.min(c.clicks, c.impressions);
        return {
          name: variant.name,
          share: shares[i]!,
          settings: variant.settings,
          ...c,
          ctr: wilsonInterval(clicks, c.impressions),
          conversionRate: wilsonInterval(c.convertedUsers, c.users),
          vsControl:
            i === state.control
              ? null
              : {
                  ctr: tested(twoProportionZTest(Math.min(control.clicks, control.impressions), control.impressions, clicks, c.impressions)),
                  conversionRate: tested(twoProportionZTest(control.convertedUsers, control.users, c.convertedUsers, c.users)),
                },
        };
      }),
      srm: { ...srm, threshold: config.srmThreshold, mismatch: srm.pValue < config.srmThreshold },
    };
  }

  private state(experimentId: string): ExperimentState {
    const state = this.states.get(experimentId);
    if (!state) throw new Error(`unknown experiment "${experimentId}"`);
    return state;
  }
}
