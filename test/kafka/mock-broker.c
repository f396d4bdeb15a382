/*
 * A Kafka-protocol test broker: librdkafka's mock cluster in its own process.
 *
 *   mock-broker [--brokers N] [topic:partitions ...]
 *
 * Prints "bootstrap <host:port,...>" on stdout once the topics exist, then reads commands from stdin, one a line,
 * and answers each with "ok <command>" or "error <reason>":
 *   down N    broker N (1-based; -1 for all) drops its connections and refuses new ones
 *   up N      broker N accepts connections again
 *   topic T P creates topic T with P partitions
 * It exits when stdin closes, so a test that dies never leaves a broker behind.
 */
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int create_topic(rd_kafka_mock_cluster_t *cluster, const char *name, int partitions) {
  rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(cluster, name, partitions, 1);
  if (err) {
    printf("error topic %s: %s\n", name, rd_kafka_err2str(err));
    return -1;
  }
  return 0;
}

int main(int argc, char **argv) {
  int brokers = 3;
  int first_topic = 1;
  if (argc > 2 && strcmp(argv[1], "--brokers") == 0) {
    brokers = atoi(argv[2]);
    first_topic = 3;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);

  char errstr[512];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  /* The owning handle only keeps the cluster alive; keep it quiet. */
  rd_kafka_conf_set(conf, "log_level", "0", errstr, sizeof(errstr));
  rd_kafka_t *owner = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
  if (!owner) {
    fprintf(stderr, "rd_kafka_new: %s\n", errstr);
    return 1;
  }
  rd_kafka_mock_cluster_t *cluster = rd_kafka_mock_cluster_new(owner, brokers);
  if (!cluster) {
    fprintf(stderr, "rd_kafka_mock_cluster_new failed\n");
    return 1;
  }

  for (int i = first_topic; i < argc; i++) {
    char name[256];
    int partitions = 1;
    const char *colon = strrchr(argv[i], ':');
    size_t length = colon ? (size_t)(colon - argv[i]) : strlen(argv[i]);
    if (length == 0 || length >= sizeof(name)) {
      fprintf(stderr, "bad topic argument: %s\n", argv[i]);
      return 2;
    }
    memcpy(name, argv[i], length);
    name[length] = '\0';
    if (colon) partitions = atoi(colon + 1);
    if (partitions < 1 || create_topic(cluster, name, partitions) != 0) {
      fprintf(stderr, "cannot create topic %s\n", argv[i]);
      return 2;
    }
  }
  printf("bootstrap %s\n", rd_kafka_mock_cluster_bootstraps(cluster));

  char line[512];
  while (fgets(line, sizeof(line), stdin)) {
    line[strcspn(line, "\r\n")] = '\0';
    char command[32], topic[256];
    int number = 0;
    if (sscanf(line, "topic %255s %d", topic, &number) == 2) {
      if (create_topic(cluster, topic, number) == 0) printf("ok %s\n", line);
    } else if (sscanf(line, "%31s %d", command, &number) == 2 &&
               (strcmp(command, "down") == 0 || strcmp(command, "up") == 0)) {
      rd_kafka_resp_err_t err = strcmp(command, "down") == 0 ? rd_kafka_mock_broker_set_down(cluster, number)
                                                             : rd_kafka_mock_broker_set_up(cluster, number);
      if (err) printf("error %s: %s\n", line, rd_kafka_err2str(err));
      else printf("ok %s\n", line);
    } else if (line[0] != '\0') {
      printf("error unknown command: %s\n", line);
    }
  }

  rd_kafka_mock_cluster_destroy(cluster);
  rd_kafka_destroy(owner);
  return 0;
}
