import { afterEach, describe, expect, it, vi } from 'vitest';
import { kafkaConfigFromEnv } from '../connectors/kafka/config.js';
import { createLog } from '../connectors/kafka/index.js';

describe('kafkaConfigFromEnv', () => {
  it('defaults to the embedded log with DESIGN.md topic names', () => {
    const config = kafkaConfigFromEnv({});
    expect(config.client).toBe('embedded');
    expect(config.clientId).toBe('eddy');
    expect(config.topics.deadLetters).toEqual({ name: 'dead-letters', partitions: 1, compacted: false });
    expect(config.topics.recommendationRequests.name).toBe('recommendation-requests');
    expect(config.topics.items.compacted).toBe(true);
    expect(config.sasl).toBeUndefined();
    expect(config.tls).toBeUndefined();
  });

  it('reads brokers, client, SASL (which implies TLS), topic names and partition counts', () => {
    const config = kafkaConfigFromEnv({
      KAFKA_BROKERS: 'a:9092, b:9092',
      KAFKA_CLIENT: 'confluent',
      KAFKA_CLIENT_ID: 'shop',
      KAFKA_SASL_MECHANISM: 'SCRAM-SHA-512',
      KAFKA_SASL_USERNAME: 'eddy',
      KAFKA_SASL_PASSWORD: 'secret',
      KAFKA_TOPIC_DEAD_LETTERS: 'eddy.dlq',
      KAFKA_PARTITIONS_EVENTS: '24',
    });
    expect(config.brokers).toEqual(['a:9092', 'b:9092']);
    expect(config.client).toBe('confluent');
    expect(config.clientId).toBe('shop');
    expect(config.sasl).toEqual({ mechanism: 'scram-sha-512', username: 'eddy', password: 'secret' });
    expect(config.tls).toEqual({ rejectUnauthorized: true });
    expect(config.topics.deadLetters.name).toBe('eddy.dlq');
    expect(config.topics.events.partitions).toBe(24);
    expect(kafkaConfigFromEnv({ KAFKA_BROKERS: 'a:1' }).client).toBe('kafkajs');
  });

  it('refuses settings that cannot work, saying which', () => {
    expect(() => kafkaConfigFromEnv({ KAFKA_CLIENT: 'kafkajs' })).toThrow('KAFKA_CLIENT=kafkajs needs KAFKA_BROKERS');
    expect(() => kafkaConfigFromEnv({ KAFKA_CLIENT: 'rabbit' })).toThrow('KAFKA_CLIENT must be');
    expect(() => kafkaConfigFromEnv({ KAFKA_PARTITIONS_EVENTS: '0' })).toThrow('KAFKA_PARTITIONS_EVENTS');
    expect(() => kafkaConfigFromEnv({ KAFKA_SASL_MECHANISM: 'plain' })).toThrow('KAFKA_SASL_USERNAME');
    expect(() => kafkaConfigFromEnv({ KAFKA_TLS: 'true', KAFKA_TLS_CA_FILE: '/nonexistent/ca.pem' })).toThrow('KAFKA_TLS_CA_FILE');
  });
});

describe('createLog', () => {
  afterEach(() => {
    vi.doUnmock('@confluentinc/kafka-javascript');
    vi.resetModules();
  });

  it('builds the embedded log without loading any Kafka client', async () => {
    const log = await createLog(kafkaConfigFromEnv({}));
    expect(log.kind).toBe('embedded');
    await log.close();
  });

  it('says how to fix it when KAFKA_CLIENT=confluent but the optional package is missing', async () => {
    vi.resetModules();
    vi.doMock('@confluentinc/kafka-javascript', () => {
      throw new Error("Cannot find package '@confluentinc/kafka-javascript'");
    });
    const { createLog: create } = await import('../connectors/kafka/index.js');
    const config = kafkaConfigFromEnv({ KAFKA_CLIENT: 'confluent', KAFKA_BROKERS: '127.0.0.1:1' });
    await expect(create(config)).rejects.toThrow(/needs the optional package @confluentinc\/kafka-javascript/);
  });
});
