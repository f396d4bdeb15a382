import { describe, expect, it } from 'vitest';
import { Experiments, hashUnit, type Exposure } from '../models/ab/experiments.js';
import { chiSquareGoodnessOfFit, chiSquareUpperTail, normalUpperTail, twoProportionZTest, twoSidedP, wilsonInterval } from '../models/ab/stats.js';
import type { BehaviourEvent, BehaviourType } from '../schema/events.js';

const T0 = 1_700_000_000_000;
let eventId = 0;
const event = (userId: string, type: BehaviourType): BehaviourEvent => ({ id: `e${++eventId}`, type, userId, itemId: 'i', ts: T0 });

const threeWay = {
  id: 'ranker-test',
  salt: 's1',
  variants: [
    { name: 'control', share: 50, settings: { model: 'lr' } },
    { name: 'deepfm', share: 30, settings: { model: 'deepfm' } },
    { name: 'fm', share: 20, settings: { model: 'fm' } },
  ],
};

describe('statistics', () => {
  it('matches normal and chi-square tables', () => {
    expect(twoSidedP(1.959963984540054)).toBeCloseTo(0.05, 12);
    expect(twoSidedP(-2.5758293035489)).toBeCloseTo(0.01, 12);
    expect(normalUpperTail(3)).toBeCloseTo(0.0013498980316301, 14);
    expect(normalUpperTail(-1)).toBeCloseTo(0.8413447460685429, 14);
    expect(chiSquareUpperTail(3.841458820694124, 1)).toBeCloseTo(0.05, 12);
    expect(chiSquareUpperTail(10.827566170662733, 1)).toBeCloseTo(0.001, 12);
    expect(chiSquareUpperTail(5.991464547107979, 2)).toBeCloseTo(0.05, 12);
    expect(chiSquareUpperTail(9.21034037197618, 2)).toBeCloseTo(0.01, 12);
    expect(chiSquareUpperTail(16.26623619623813, 3)).toBeCloseTo(0.001, 12);
    // A chi-square with 2 degrees of freedom is exponential: P(X > x) = exp(-x / 2).
    expect(chiSquareUpperTail(7, 2)).toBeCloseTo(Math.exp(-3.5), 14);
  });

  it('computes Wilson intervals', () => {
    const half = wilsonInterval(5, 10);
    expect(half.value).toBe(0.5);
    expect(half.low).toBeCloseTo(0.2366, 4);
    expect(half.high).toBeCloseTo(0.7634, 4);
    const none = wilsonInterval(0, 100);
    expect(none.low).toBe(0);
    expect(none.high).toBeCloseTo(1.96 ** 2 / (100 + 1.96 ** 2), 3);
    expect(wilsonInterval(0, 0)).toEqual({ value: 0, low: 0, high: 1 });
  });

  it('runs the pooled two-proportion z-test', () => {
    // 200/1000 vs 250/1000: pooled p = 0.225, se = sqrt(0.225 * 0.775 * 2 / 1000), z = 0.05 / se = 2.6774;
    // a two-sided normal table gives p = 2 * 0.00371 = 0.00742.
    const test = twoProportionZTest(200, 1000, 250, 1000);
    const se = Math.sqrt(0.225 * 0.775 * (2 / 1000));
    expect(test.z).toBeCloseTo(0.05 / se, 10);
    expect(test.z).toBeCloseTo(2.6774, 4);
    expect(test.pValue).toBeCloseTo(0.00742, 5);
    expect(test.lift).toBeCloseTo(0.25, 10);
    expect(twoProportionZTest(100, 1000, 100, 1000)).toEqual({ lift: 0, z: 0, pValue: 1 });
    expect(twoProportionZTest(0, 0, 5, 10).pValue).toBe(1);
  });

  it('computes the goodness-of-fit statistic', () => {
    // (60-50)^2/50 + (40-50)^2/50 = 4 with 1 degree of freedom.
    const fit = chiSquareGoodnessOfFit([60, 40], [1, 1]);
    expect(fit.chiSquare).toBeCloseTo(4, 12);
    expect(fit.degreesOfFreedom).toBe(1);
    expect(fit.pValue).toBeCloseTo(0.0455, 4);
  });
});

describe('assignment', () => {
  it('is stable, uniform and splits 100k users within tolerance', () => {
    const one = new Experiments([threeWay]);
    const two = new Experiments([threeWay]);
    const counts = new Map<string, number>();
    const users = 100_000;
    for (let u = 0; u < users; u++) {
      const variant = one.assign('ranker-test', `user-${u}`).variant;
      counts.set(variant, (counts.get(variant) ?? 0) + 1);
      if (u % 97 === 0) expect(two.assign('ranker-test', `user-${u}`).variant).toBe(variant);
    }
    expect(Math.abs(counts.get('control')! / users - 0.5)).toBeLessThan(0.01);
    expect(Math.abs(counts.get('deepfm')! / users - 0.3)).toBeLessThan(0.01);
    expect(Math.abs(counts.get('fm')! / users - 0.2)).toBeLessThan(0.01);
    // Deciles of the hash are uniform.
    const deciles = new Array<number>(10).fill(0);
    for (let u = 0; u < users; u++) deciles[Math.floor(hashUnit('s1', `user-${u}`) * 10)]!++;
    expect(chiSquareGoodnessOfFit(deciles, new Array(10).fill(1)).pValue).toBeGreaterThan(0.001);
  });

  it('reshuffles users under another salt', () => {
    const experiments = new Experiments([threeWay, { ...threeWay, id: 'other', salt: 's2' }]);
    let same = 0;
    for (let u = 0; u < 20_000; u++) {
      if (experiments.assign('ranker-test', `u${u}`).variant === experiments.assign('other', `u${u}`).variant) same++;
    }
    // Independent assignments agree with probability 0.5^2 + 0.3^2 + 0.2^2 = 0.38.
    expect(Math.abs(same / 20_000 - 0.38)).toBeLessThan(0.02);
  });

  it('hands out the variant settings', () => {
    const experiments = new Experiments([threeWay]);
    const assignment = experiments.assign('ranker-test', 'user-1');
    expect(assignment.settings).toEqual(threeWay.variants.find((v) => v.name === assignment.variant)!.settings);
  });

  it('rejects invalid configs, naming the field', () => {
    expect(() => new Experiments([{ id: 'x', variants: [{ name: 'a', share: 1 }] }])).toThrow(/"x": variants/);
    expect(() => new Experiments([{ id: 'x', variants: [{ name: 'a', share: 1 }, { name: 'a', share: 1 }] }])).toThrow(/unique/);
    expect(() => new Experiments([{ ...threeWay, control: 'nope' }])).toThrow(/control/);
    expect(() => new Experiments([{ ...threeWay, variants: [{ name: 'a', share: 0 }, { name: 'b', share: 1 }] }])).toThrow(/share/);
    expect(() => new Experiments([threeWay, threeWay])).toThrow(/twice/);
    expect(() => new Experiments([]).assign('missing', 'u')).toThrow(/unknown experiment/);
  });
});

describe('exposures, metrics and report', () => {
  it('logs exposures through the hook, first exposure flagged', () => {
    const logged: Exposure[] = [];
    const experiments = new Experiments([threeWay], { onExposure: (exposure) => logged.push(exposure) });
    experiments.expose('ranker-test', 'u1', { ts: T0, requestId: 'r1' });
    experiments.expose('ranker-test', 'u1', { ts: T0 + 1 });
    expect(logged.map((e) => [e.userId, e.firstExposure, e.requestId])).toEqual([
      ['u1', true, 'r1'],
      ['u1', false, undefined],
    ]);
    expect(logged[0]!.variant).toBe(experiments.assign('ranker-test', 'u1').variant);
    const report = experiments.report('ranker-test')!;
    expect(report.totalUsers).toBe(1);
    expect(report.variants.reduce((sum, v) => sum + v.exposures, 0)).toBe(2);
  });

  it('counts events of exposed users per variant and tests them against control', () => {
    const experiments = new Experiments([{ id: 'ab', variants: [{ name: 'a', share: 1 }, { name: 'b', share: 1 }] }]);
    const byVariant = new Map<string, string[]>([['a', []], ['b', []]]);
    for (let u = 0; byVariant.get('a')!.length < 1000 || byVariant.get('b')!.length < 1000; u++) {
      const userId = `u${u}`;
      const users = byVariant.get(experiments.assign('ab', userId).variant)!;
      if (users.length < 1000) {
        users.push(userId);
        experiments.expose('ab', userId, { ts: T0 });
      }
    }
    // Each user sees one impression; 200 of a's users click, 250 of b's; 50 and 80 buy (one buys twice).
    for (const [variant, users] of byVariant) {
      const clickers = variant === 'a' ? 200 : 250;
      const buyers = variant === 'a' ? 50 : 80;
      users.forEach((userId, k) => {
        experiments.observe(event(userId, 'impression'));
        if (k < clickers) experiments.observe(event(userId, 'click'));
        if (k < buyers) experiments.observe(event(userId, 'purchase'));
      });
      experiments.observe(event(users[0]!, 'purchase'));
    }
    experiments.observe(event('never-exposed', 'click'));

    const report = experiments.report('ab')!;
    expect(report.control).toBe('a');
    const [a, b] = report.variants;
    expect(a).toMatchObject({ name: 'a', share: 0.5, users: 1000, impressions: 1000, clicks: 200, conversions: 51, convertedUsers: 50, vsControl: null });
    expect(b).toMatchObject({ name: 'b', users: 1000, clicks: 250, conversions: 81, convertedUsers: 80 });
    expect(a!.ctr.value).toBe(0.2);
    expect(a!.ctr.low).toBeLessThan(0.2);
    expect(a!.ctr.high).toBeGreaterThan(0.2);
    expect(b!.vsControl!.ctr.pValue).toBeCloseTo(0.00742, 5);
    expect(b!.vsControl!.ctr.significant).toBe(true);
    const expectedConversion = twoProportionZTest(50, 1000, 80, 1000);
    expect(b!.vsControl!.conversionRate).toEqual({ ...expectedConversion, significant: expectedConversion.pValue < 0.05 });
    expect(report.srm.mismatch).toBe(false);
    expect(JSON.parse(JSON.stringify(report))).toEqual(report);
    expect(experiments.report('missing')).toBeUndefined();
  });

  it('passes the SRM check on the configured split and flags a skewed one', () => {
    const fair = new Experiments([threeWay]);
    const skewed = new Experiments([threeWay]);
    for (let u = 0; u < 50_000; u++) {
      const userId = `user-${u}`;
      fair.expose('ranker-test', userId, { ts: T0 });
      // Lose a tenth of the deepfm users, as a crashing variant or a biased logger would.
      if (skewed.assign('ranker-test', userId).variant !== 'deepfm' || u % 10 !== 0) skewed.expose('ranker-test', userId, { ts: T0 });
    }
    const fairReport = fair.report('ranker-test')!;
    expect(fairReport.srm.pValue).toBeGreaterThan(0.001);
    expect(fairReport.srm.mismatch).toBe(false);
    const skewedReport = skewed.report('ranker-test')!;
    expect(skewedReport.srm.degreesOfFreedom).toBe(2);
    expect(skewedReport.srm.pValue).toBeLessThan(0.001);
    expect(skewedReport.srm.mismatch).toBe(true);
  });
});
