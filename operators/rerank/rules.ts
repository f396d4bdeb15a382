import { z } from 'zod';
import { valuesOf, type ItemCatalogue } from '../recall/catalogue.js';
import { byScore, withMove, withScore, type RerankItem, type RerankRequest, type RerankStep } from './types.js';

/**
 * Business rules, validated from config with `businessRulesSchema`:
 * - `block`: removes matching items;
 * - `boost`: multiplies then adds to matching items' scores (re-sorting);
 * - `pin`: moves an item to a 0-based position, applied last in order of position. Only items already in the list are
 *   pinned, so a pin never brings in an item that recall's filters (consumed, unavailable, request filters) removed.
 * An item matches a rule that names it in `itemIds`, or whose metadata matches every entry of `fields` (any value,
 * compared as strings, as request filters are).
 */

const scalar = z.union([z.string(), z.number(), z.boolean()]);
const matcher = {
  itemIds: z.array(z.string()).optional(),
  fields: z.record(z.string(), z.union([scalar, z.array(scalar)])).optional(),
};

export const businessRuleSchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('block'), ...matcher }),
  z.strictObject({ kind: z.literal('boost'), ...matcher, multiply: z.number().finite().nonnegative().optional(), add: z.number().finite().optional() }),
  z.strictObject({ kind: z.literal('pin'), itemId: z.string(), position: z.number().int().nonnegative() }),
]);
export const businessRulesSchema = z.array(businessRuleSchema);
export type BusinessRule = z.output<typeof businessRuleSchema>;

export interface BusinessRulesOptions {
  readonly rules: readonly BusinessRule[];
  /** Needed for rules that match on `fields`. */
  readonly catalogue?: ItemCatalogue;
}

type Matcher = Extract<BusinessRule, { kind: 'block' | 'boost' }>;

export function businessRules(options: BusinessRulesOptions): RerankStep {
  const rules = options.rules;
  const compiled = (rule: Matcher) => {
    const ids = rule.itemIds ? new Set(rule.itemIds) : undefined;
    const fields = Object.entries(rule.fields ?? {}).map(([field, wanted]) => ({
      field,
      wanted: new Set((Array.isArray(wanted) ? wanted : [wanted]).map(String)),
    }));
    if (!ids && fields.length === 0) throw new Error(`a ${rule.kind} rule needs itemIds or fields`);
    if (fields.length > 0 && !options.catalogue) throw new Error(`a ${rule.kind} rule on fields needs the catalogue`);
    return (itemId: string): boolean => {
      if (ids?.has(itemId)) return true;
      if (fields.length === 0) return false;
      const info = options.catalogue!.get(itemId);
      return !!info && fields.every(({ field, wanted }) => valuesOf(info.fields[field]).some((value) => wanted.has(value)));
    };
  };
  const blocks = rules.filter((rule): rule is Extract<BusinessRule, { kind: 'block' }> => rule.kind === 'block').map(compiled);
  const boosts = rules
    .filter((rule): rule is Extract<BusinessRule, { kind: 'boost' }> => rule.kind === 'boost')
    .map((rule) => ({ matches: compiled(rule), multiply: rule.multiply ?? 1, add: rule.add ?? 0 }));
  const pins = rules
    .filter((rule): rule is Extract<BusinessRule, { kind: 'pin' }> => rule.kind === 'pin')
    .sort((a, b) => a.position - b.position);

  return {
    name: 'rules',
    apply(items: readonly RerankItem[], request: RerankRequest): RerankItem[] {
      let ranked = blocks.length > 0 ? items.filter((item) => !blocks.some((blocked) => blocked(item.itemId))) : items.slice();
      if (boosts.length > 0) {
        ranked = byScore(
          ranked.map((item) => {
            let score = item.score;
            for (const boost of boosts) if (boost.matches(item.itemId)) score = score * boost.multiply + boost.add;
            return score === item.score ? item : withScore(item, request, 'boost', score);
          }),
        );
      }
      for (const pin of pins) {
        const from = ranked.findIndex((item) => item.itemId === pin.itemId);
        if (from < 0) continue;
        const to = Math.min(pin.position, ranked.length - 1);
        if (from === to) continue;
        const [item] = ranked.splice(from, 1);
        ranked.splice(to, 0, withMove(item!, request, 'pin', from, to, `pinned at ${pin.position}`));
      }
      return ranked;
    },
  };
}
