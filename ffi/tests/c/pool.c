/* pool.c: clients sharing one gn_thread_pool, against the emulator. Five clients built from
 * one builder given the pool (whose handle is freed at once: the builder holds it) receive
 * their events in order; one client's shutdown leaves the others receiving; a pool shut down
 * fails its clients' later calls with GN_SHUTDOWN and new builds with GN_CONFIG; bad input gets
 * its code. Prints "pool: ok" and exits 0 on success. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, nanosleep */
#include <stdatomic.h>
#include <stdint.h>

#include "check.h"

#define CLIENTS 5
#define EVENTS 50

struct tenant {
  char topic[80];
  atomic_long received;
  atomic_long out_of_order;
  long last;
  gn_client *client;
  gn_guard *guard;
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

static void on_event(void *userdata, const gn_event *event) {
  struct tenant *t = userdata;
  long seq = parse_seq(gn_event_body_json(event));
  if (seq != t->last + 1) atomic_fetch_add(&t->out_of_order, 1);
  t->last = seq;
  atomic_fetch_add(&t->received, 1);
}

static void publish(gn_emulator *emu, const char *topic, long seq) {
  char body[64];
  snprintf(body, sizeof body, "{\"seq\":%ld}", seq);
  OK(gn_emulator_publish(emu, topic, body, NULL));
}

static gn_builder *builder_for(gn_emulator *emu, gn_thread_pool *pool) {
  gn_builder *builder = NULL;
  OK(gn_builder_new(&builder));
  OK(gn_builder_api_base(builder, gn_emulator_api_base(emu)));
  OK(gn_builder_login_base(builder, gn_emulator_login_base(emu)));
  OK(gn_builder_client_credentials(builder, gn_emulator_client_id(emu),
                                   gn_emulator_client_secret(emu)));
  OK(gn_builder_proxy_from_env(builder, false));
  OK(gn_builder_connect_timeout_ms(builder, 5000));
  OK(gn_builder_request_timeout_ms(builder, 5000));
  OK(gn_builder_thread_pool(builder, pool));
  return builder;
}

int main(void) {
  gn_emulator *emu = NULL;
  OK(gn_emulator_start(&emu));

  /* Bad input. */
  gn_thread_pool *pool = NULL;
  EXPECT(GN_CONFIG, gn_thread_pool_new(0, &pool));
  CHECK(pool == NULL);
  EXPECT(GN_INVALID_ARGUMENT, gn_thread_pool_new(2, NULL));
  OK(gn_thread_pool_free(NULL));

  /* 1. Five clients of one pool, the pool's handle freed once the builder has it. */
  OK(gn_thread_pool_new(2, &pool));
  gn_builder *builder = builder_for(emu, pool);
  OK(gn_thread_pool_free(pool));
  EXPECT(GN_INVALID_ARGUMENT, gn_thread_pool_free(pool)); /* freed twice: refused */
  static struct tenant tenants[CLIENTS];
  for (int i = 0; i < CLIENTS; i++) {
    struct tenant *t = &tenants[i];
    snprintf(t->topic, sizeof t->topic, "v2.users.9ed7d9f6-0c59-4360-ac54-00000000000%d.presence",
             i);
    t->last = -1;
    OK(gn_builder_build(builder, &t->client));
    OK(gn_client_on(t->client, t->topic, on_event, t, NULL, &t->guard));
    gn_report *report = NULL;
    const char *list[] = {t->topic};
    OK(gn_client_subscribe(t->client, list, 1, &report));
    CHECK(gn_report_permitted_count(report) == 1);
    OK(gn_report_free(report));
  }
  OK(gn_builder_free(builder));
  for (long seq = 0; seq < EVENTS; seq++)
    for (int i = 0; i < CLIENTS; i++) publish(emu, tenants[i].topic, seq);
  for (int i = 0; i < CLIENTS; i++) {
    WAIT_FOR(atomic_load(&tenants[i].received) == EVENTS, 60);
    CHECK(atomic_load(&tenants[i].out_of_order) == 0);
  }

  /* 2. One client's shutdown leaves the others receiving. */
  OK(gn_client_shutdown(tenants[0].client, 5000));
  for (int i = 1; i < CLIENTS; i++) publish(emu, tenants[i].topic, EVENTS);
  for (int i = 1; i < CLIENTS; i++) {
    WAIT_FOR(atomic_load(&tenants[i].received) == EVENTS + 1, 60);
    CHECK(atomic_load(&tenants[i].out_of_order) == 0);
  }
  printf("%d pooled clients received %d events each in order\n", CLIENTS, EVENTS);

  /* 3. A pool shut down: its client's calls and new builds say so. */
  gn_thread_pool *closed = NULL;
  OK(gn_thread_pool_new(1, &closed));
  builder = builder_for(emu, closed);
  gn_client *orphan = NULL;
  OK(gn_builder_build(builder, &orphan));
  OK(gn_thread_pool_shutdown(closed, 5000));
  const char *list[] = {tenants[0].topic};
  gn_report *report = NULL;
  EXPECT(GN_SHUTDOWN, gn_client_subscribe(orphan, list, 1, &report));
  gn_client *refused = NULL;
  EXPECT(GN_CONFIG, gn_builder_build(builder, &refused));
  CHECK(strstr(last_error(), "thread_pool") != NULL);
  OK(gn_builder_free(builder));
  OK(gn_client_free(orphan));
  OK(gn_thread_pool_free(closed));

  for (int i = 0; i < CLIENTS; i++) {
    OK(gn_guard_free(tenants[i].guard));
    OK(gn_client_free(tenants[i].client));
  }
  OK(gn_emulator_free(emu));
  printf("pool: ok\n");
  return 0;
}
