/* events.c: the C ABI end to end against the emulator. Subscribe 10 topics, receive N events
 * (default 10 000) in per-topic order, free a guard from outside while its callback runs and
 * another from inside its own callback, see a gap (and snapshots) after an injected socket
 * fault, unsubscribe, read health, shut down, and find every call refused afterwards.
 * Usage: events [events]. Prints "events: ok" and exits 0 on success. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, nanosleep */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "check.h"

#define TOPICS 10
static char topics[TOPICS][80];
static const char *topic_list[TOPICS];

/* ---- the counting listener: per-topic order ---------------------------------------------- */

struct order {
  atomic_long received;
  atomic_long out_of_order;
  atomic_long snapshots;
  atomic_long bad_views;
  long last[TOPICS]; /* each topic's events run on one dispatcher thread at a time, in order */
  atomic_int freed;
};

static long parse_seq(gn_str body) {
  static const char key[] = "\"seq\":";
  size_t k = sizeof key - 1;
  for (size_t i = 0; i + k <= body.len; i++) {
    if (memcmp(body.ptr + i, key, k) == 0) {
      long v = 0;
      for (size_t j = i + k; j < body.len && body.ptr[j] >= '0' && body.ptr[j] <= '9'; j++)
        v = v * 10 + (body.ptr[j] - '0');
      return v;
    }
  }
  return -1;
}

static int topic_index(gn_str topic) {
  /* v2.users.<uuid ending in the index digit>.presence */
  static const char suffix[] = ".presence";
  size_t s = sizeof suffix - 1;
  if (topic.len < s + 1) return -1;
  char c = topic.ptr[topic.len - s - 1];
  return (c >= '0' && c <= '9') ? c - '0' : -1;
}

static void on_event(void *userdata, const gn_event *event) {
  struct order *o = userdata;
  gn_str topic = gn_event_topic(event);
  gn_str body = gn_event_body_json(event);
  int t = topic_index(topic);
  if (t < 0 || body.len == 0 || gn_event_received_at_us(event) <= 0) {
    atomic_fetch_add(&o->bad_views, 1);
    return;
  }
  if (gn_event_is_snapshot(event)) {
    atomic_fetch_add(&o->snapshots, 1);
    return;
  }
  gn_str correlation = gn_event_correlation_id(event);
  if (correlation.ptr == NULL || correlation.len != 36) atomic_fetch_add(&o->bad_views, 1);
  long seq = parse_seq(body);
  if (seq != o->last[t] + 1) atomic_fetch_add(&o->out_of_order, 1);
  o->last[t] = seq;
  atomic_fetch_add(&o->received, 1);
}

static void order_free(void *userdata) {
  struct order *o = userdata;
  atomic_fetch_add(&o->freed, 1);
}

/* ---- a listener freed from outside while its callback runs ---------------------------------- */

struct slow {
  atomic_int running;
  atomic_int release; /* the first call waits for it: the guard is freed during that call */
  atomic_long calls;
  atomic_int freed;
  atomic_int called_after_free;
};

static void on_slow(void *userdata, const gn_event *event) {
  struct slow *s = userdata;
  (void)event;
  if (atomic_load(&s->freed)) atomic_store(&s->called_after_free, 1);
  atomic_store(&s->running, 1);
  if (atomic_fetch_add(&s->calls, 1) == 0) {
    double until = now_s() + 30;
    while (!atomic_load(&s->release) && now_s() < until) sleep_ms(1);
  }
  atomic_store(&s->running, 0);
}

static void slow_free(void *userdata) {
  struct slow *s = userdata;
  /* Must come after the last call: no call may be running now. */
  if (atomic_load(&s->running)) atomic_store(&s->called_after_free, 1);
  atomic_fetch_add(&s->freed, 1);
}

/* Lets the blocked first call go on a little after gn_guard_free has started waiting. */
static void *release_later(void *userdata) {
  struct slow *s = userdata;
  sleep_ms(100);
  atomic_store(&s->release, 1);
  return NULL;
}

/* ---- a listener that frees its own guard ---------------------------------------------------- */

struct self_free {
  gn_guard *guard;
  atomic_long calls;
  atomic_int free_result; /* gn_guard_free's result inside the callback, -1 before */
  atomic_int freed;
  atomic_int calls_at_free;
};

static void on_self_free(void *userdata, const gn_event *event) {
  struct self_free *s = userdata;
  (void)event;
  long n = atomic_fetch_add(&s->calls, 1) + 1;
  if (n == 1) atomic_store(&s->free_result, (int)gn_guard_free(s->guard));
}

static void self_free_free(void *userdata) {
  struct self_free *s = userdata;
  atomic_store(&s->calls_at_free, (int)atomic_load(&s->calls));
  atomic_fetch_add(&s->freed, 1);
}

/* ---- lifecycle: gaps ---------------------------------------------------------------------- */

struct lifecycle {
  atomic_int gaps;
  atomic_int bad_gaps;
  atomic_int connected;
  atomic_int freed;
};

static void on_lifecycle(void *userdata, const gn_lifecycle *event) {
  struct lifecycle *l = userdata;
  gn_str name = gn_lifecycle_name(event);
  gn_str message = gn_lifecycle_message(event);
  switch (gn_lifecycle_get_kind(event)) {
    case GN_LIFECYCLE_GAP: {
      int64_t start = gn_lifecycle_gap_start_us(event), end = gn_lifecycle_gap_end_us(event);
      size_t n = gn_lifecycle_topic_count(event);
      gn_str first = gn_lifecycle_topic(event, 0);
      gn_str channel = gn_lifecycle_channel(event);
      if (start <= 0 || end < start || n != TOPICS || first.len == 0 || channel.len == 0 ||
          name.len != 3 || memcmp(name.ptr, "gap", 3) != 0 || message.len == 0)
        atomic_fetch_add(&l->bad_gaps, 1);
      printf("lifecycle: %.*s (%zu topics, %.3f s without a socket)\n", (int)message.len,
             message.ptr, n, (double)(end - start) / 1e6);
      atomic_fetch_add(&l->gaps, 1);
      break;
    }
    case GN_LIFECYCLE_CONNECTED:
      atomic_fetch_add(&l->connected, 1);
      break;
    default:
      break;
  }
}

static void lifecycle_free(void *userdata) {
  struct lifecycle *l = userdata;
  atomic_fetch_add(&l->freed, 1);
}

static void publish(gn_emulator *emu, int t, long seq) {
  char body[160];
  snprintf(body, sizeof body,
           "{\"presenceDefinition\":{\"id\":\"6a3af858-942f-489d-9700-5f9bcdcdae9b\","
           "\"systemPresence\":\"AVAILABLE\"},\"seq\":%ld}",
           seq);
  OK(gn_emulator_publish(emu, topics[t], body, NULL));
}

int main(int argc, char **argv) {
  long total = argc > 1 ? atol(argv[1]) : 10000;
  long per_topic = total / TOPICS;
  for (int t = 0; t < TOPICS; t++) {
    snprintf(topics[t], sizeof topics[t], "v2.users.9ed7d9f6-0c59-4360-ac54-00000000000%d.presence",
             t);
    topic_list[t] = topics[t];
  }
  printf("library %s\n", gn_version());

  gn_emulator *emu = NULL;
  OK(gn_emulator_start(&emu));
  gn_builder *builder = NULL;
  OK(gn_builder_new(&builder));
  OK(gn_builder_api_base(builder, gn_emulator_api_base(emu)));
  OK(gn_builder_login_base(builder, gn_emulator_login_base(emu)));
  OK(gn_builder_client_credentials(builder, gn_emulator_client_id(emu),
                                   gn_emulator_client_secret(emu)));
  OK(gn_builder_proxy_from_env(builder, false));
  OK(gn_builder_connect_timeout_ms(builder, 5000));
  OK(gn_builder_request_timeout_ms(builder, 5000));
  OK(gn_builder_backoff_ms(builder, 20, 500));
  OK(gn_builder_dispatcher_threads(builder, 2));
  gn_client *client = NULL;
  OK(gn_builder_build(builder, &client));
  OK(gn_builder_free(builder));

  struct lifecycle life = {0};
  gn_guard *life_guard = NULL;
  OK(gn_client_on_lifecycle(client, on_lifecycle, &life, lifecycle_free, &life_guard));

  struct order order = {0};
  for (int t = 0; t < TOPICS; t++) order.last[t] = -1;
  gn_guard *order_guard = NULL;
  OK(gn_client_on(client, "v2.users.*.presence", on_event, &order, order_free, &order_guard));

  gn_report *report = NULL;
  OK(gn_client_subscribe(client, topic_list, TOPICS, &report));
  CHECK(gn_report_permitted_count(report) == TOPICS);
  CHECK(gn_report_rejected_count(report) == 0);
  CHECK(gn_report_duplicate_count(report) == 0);
  CHECK(strcmp(gn_report_permitted(report, 0), topics[0]) == 0);
  CHECK(gn_report_permitted(report, TOPICS) == NULL); /* out of range: NULL and a message */
  CHECK(gn_last_error_code() == GN_INVALID_ARGUMENT);
  OK(gn_report_free(report));

  /* 1. N events, interleaved over the topics, each topic's in order. */
  double started = now_s();
  for (long i = 0; i < per_topic; i++)
    for (int t = 0; t < TOPICS; t++) publish(emu, t, i);
  WAIT_FOR(atomic_load(&order.received) == per_topic * TOPICS, 120);
  printf("received %ld events in %.2f s, %ld out of order\n", atomic_load(&order.received),
         now_s() - started, atomic_load(&order.out_of_order));
  CHECK(atomic_load(&order.out_of_order) == 0);
  CHECK(atomic_load(&order.bad_views) == 0);

  /* 2. A guard freed from outside while its (slow) callback runs. */
  struct slow slow = {0};
  gn_guard *slow_guard = NULL;
  OK(gn_client_on(client, topics[1], on_slow, &slow, slow_free, &slow_guard));
  for (int i = 0; i < 20; i++) publish(emu, 1, per_topic + i);
  WAIT_FOR(atomic_load(&slow.running) == 1, 30); /* the first call, held */
  pthread_t releaser;
  CHECK(pthread_create(&releaser, NULL, release_later, &slow) == 0);
  OK(gn_guard_free(slow_guard));
  /* The promise: the free waited for the running call (released only by the other thread),
   * nothing runs now or ever again, and the userdata was released once. */
  CHECK(atomic_load(&slow.release) == 1);
  CHECK(atomic_load(&slow.running) == 0);
  CHECK(atomic_load(&slow.freed) == 1);
  CHECK(pthread_join(releaser, NULL) == 0);
  long slow_calls = atomic_load(&slow.calls);
  EXPECT(GN_INVALID_ARGUMENT, gn_guard_free(slow_guard)); /* freed twice: refused */
  WAIT_FOR(atomic_load(&order.received) == per_topic * TOPICS + 20, 60);

  /* 3. A guard freed inside its own callback. */
  struct self_free self = {0};
  atomic_store(&self.free_result, -1);
  OK(gn_client_on(client, topics[2], on_self_free, &self, self_free_free, &self.guard));
  for (int i = 0; i < 5; i++) publish(emu, 2, per_topic + i);
  WAIT_FOR(atomic_load(&self.freed) == 1, 30);
  WAIT_FOR(atomic_load(&order.received) == per_topic * TOPICS + 25, 60);
  CHECK(atomic_load(&self.free_result) == GN_OK);
  CHECK(atomic_load(&self.calls) == 1);
  CHECK(atomic_load(&self.calls_at_free) == 1);

  /* Later events reach neither freed listener (the counting one sees them all). */
  long before = atomic_load(&order.received);
  for (int i = 0; i < 5; i++) publish(emu, 1, per_topic + 20 + i);
  for (int i = 5; i < 10; i++) publish(emu, 2, per_topic + i);
  WAIT_FOR(atomic_load(&order.received) == before + 10, 60);
  CHECK(atomic_load(&slow.calls) == slow_calls);
  CHECK(atomic_load(&slow.called_after_free) == 0);
  CHECK(atomic_load(&self.calls) == 1);
  CHECK(atomic_load(&order.out_of_order) == 0);

  /* 4. A socket fault: a gap with its topics, then snapshots, then live events again. */
  OK(gn_emulator_inject_socket_fault(emu, GN_SOCKET_FAULT_DROP));
  WAIT_FOR(atomic_load(&life.gaps) >= 1, 60);
  CHECK(atomic_load(&life.bad_gaps) == 0);
  WAIT_FOR(atomic_load(&order.snapshots) >= 1, 60);
  printf("snapshots after the gap: %ld\n", atomic_load(&order.snapshots));
  /* Sequence numbers go on where each topic left off. */
  long last0 = order.last[0];
  before = atomic_load(&order.received);
  publish(emu, 0, last0 + 1);
  WAIT_FOR(atomic_load(&order.received) == before + 1, 60);
  CHECK(atomic_load(&order.out_of_order) == 0);

  /* 5. Unsubscribe one topic. */
  const char *gone[] = {topics[9]};
  OK(gn_client_unsubscribe(client, gone, 1, &report));
  CHECK(gn_report_removed_count(report) == 1);
  CHECK(strcmp(gn_report_removed(report, 0), topics[9]) == 0);
  OK(gn_report_free(report));
  size_t sockets = 99;
  OK(gn_emulator_publish(emu, topics[9], "{\"seq\":1}", &sockets));
  CHECK(sockets == 0); /* no socket holds the topic any more */

  /* 6. Health as JSON, with a length query first. */
  size_t needed = 0;
  EXPECT(GN_BUFFER_TOO_SMALL, gn_client_health_json(client, NULL, 0, &needed));
  CHECK(needed > 10);
  char *health = health_json(client);
  CHECK(strstr(health, "\"received\":") != NULL);
  CHECK(strstr(health, "\"state\":\"connected\"") != NULL);
  free(health);

  /* 7. Shut down; every later call says so, and freeing still works. */
  OK(gn_client_shutdown(client, 5000));
  const char *again[] = {topics[0]};
  EXPECT(GN_SHUTDOWN, gn_client_subscribe(client, again, 1, &report));
  CHECK(strstr(last_error(), "shut down") != NULL);
  struct order late = {0};
  gn_guard *late_guard = NULL;
  EXPECT(GN_SHUTDOWN, gn_client_on(client, "v2.users.*.presence", on_event, &late, order_free,
                                   &late_guard));
  CHECK(atomic_load(&late.freed) == 1); /* userdata released when registration fails */
  CHECK(late_guard == NULL);

  /* The shutdown unregistered the listeners and released their userdata, once. */
  CHECK(atomic_load(&order.freed) == 1);
  CHECK(atomic_load(&life.freed) == 1);
  OK(gn_guard_free(order_guard));
  OK(gn_guard_free(life_guard));
  CHECK(atomic_load(&order.freed) == 1);
  CHECK(atomic_load(&life.freed) == 1);
  OK(gn_client_free(client));
  EXPECT(GN_INVALID_ARGUMENT, gn_client_free(client)); /* freed twice: refused */
  EXPECT(GN_INVALID_ARGUMENT, gn_client_shutdown(client, 10));
  OK(gn_emulator_free(emu));
  printf("events: ok\n");
  return 0;
}
