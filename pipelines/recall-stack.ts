import { ItemEmbeddings } from '../models/embeddings.js';
import { ItemCatalogue } from '../operators/recall/catalogue.js';
import { CoVisitationRecaller } from '../operators/recall/covisitation.js';
import { EmbeddingRecaller } from '../operators/recall/embedding.js';
import { FreshRecaller } from '../operators/recall/fresh.js';
import { MultiRecaller } from '../operators/recall/merge.js';
import { PopularityRecaller } from '../operators/recall/popular.js';
import { RecentContextRecaller } from '../operators/recall/recent-context.js';
import { attributeCaps } from '../operators/rerank/caps.js';
import { freshnessBoost } from '../operators/rerank/freshness.js';
import { mmr } from '../operators/rerank/mmr.js';
import { Reranker } from '../operators/rerank/reranker.js';
import { businessRules, type BusinessRule } from '../operators/rerank/rules.js';

export interface RecallStackOptions {
  /** Item metadata fields that are attributes (genre, category, tags): per-attribute popularity, diversity, caps. */
  readonly attributes?: readonly string[];
  /** Relative shares of the merged candidate list. */
  readonly quotas?: Partial<Record<'covisit' | 'embedding' | 'popular' | 'recent' | 'fresh', number>>;
  /** At most this many items per attribute value in a response. Default: no cap. */
  readonly capPerAttribute?: number;
  /** MMR's relevance weight: 1 is pure relevance, 0 pure diversity. Default 0.85. */
  readonly diversityLambda?: number;
  readonly rules?: readonly BusinessRule[];
  /** Embedding dimensions. Default 16. */
  readonly dimensions?: number;
}

export interface RecallStack {
  readonly catalogue: ItemCatalogue;
  readonly recaller: MultiRecaller;
  readonly covisitation: CoVisitationRecaller;
  readonly embedding: EmbeddingRecaller;
  readonly embeddings: ItemEmbeddings;
  readonly reranker: Reranker;
}

const DEFAULT_QUOTAS = { covisit: 3, embedding: 2, popular: 2, recent: 2, fresh: 1 } as const;

/**
 * The default recall and re-ranking stack: co-visitation, embedding neighbours, popularity (global and per
 * attribute), the user's recent context and fresh items, merged by quota; then freshness, MMR diversity, attribute
 * caps and business rules. Every part learns online from the events it observes.
 */
export function recallStack(options: RecallStackOptions = {}): RecallStack {
  const attributes = options.attributes ?? ['genres', 'genre', 'category'];
  const quotas = { ...DEFAULT_QUOTAS, ...options.quotas };
  const catalogue = new ItemCatalogue();
  const popular = new PopularityRecaller({ catalogue, attributes });
  const covisitation = new CoVisitationRecaller();
  const embeddings = new ItemEmbeddings({ dim: options.dimensions ?? 16 });
  const embedding = new EmbeddingRecaller({ embeddings });
  const recaller = new MultiRecaller({
    catalogue,
    sources: [
      { recaller: covisitation, quota: quotas.covisit },
      { recaller: embedding, quota: quotas.embedding },
      { recaller: popular, quota: quotas.popular },
      { recaller: new RecentContextRecaller({ catalogue, popularity: popular, attributes }), quota: quotas.recent },
      { recaller: new FreshRecaller({ catalogue }), quota: quotas.fresh },
    ],
  });
  const cap = options.capPerAttribute;
  const reranker = new Reranker([
    freshnessBoost({ catalogue }),
    mmr({ catalogue, attributes, embeddings, lambda: options.diversityLambda ?? 0.85 }),
    ...(cap !== undefined ? [attributeCaps({ catalogue, caps: Object.fromEntries(attributes.map((field) => [field, cap])) })] : []),
    businessRules({ rules: options.rules ?? [], catalogue }),
  ]);
  return { catalogue, recaller, covisitation, embedding, embeddings, reranker };
}
