/* bad_input.c: every kind of bad input gets a result code and a message, never undefined
 * behaviour or an abort: NULL pointers, invalid UTF-8, bad topics and patterns, numbers out
 * of range, handles freed twice or of another kind, use after shutdown, short buffers, bad
 * credentials and rejected topics. Prints "bad_input: ok" and exits 0 on success. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, nanosleep */
#include <stdatomic.h>

#include "check.h"

static atomic_int freed;

static void count_free(void *userdata) {
  (void)userdata;
  atomic_fetch_add(&freed, 1);
}

static void ignore_event(void *userdata, const gn_event *event) {
  (void)userdata;
  (void)event;
}

static void ignore_lifecycle(void *userdata, const gn_lifecycle *event) {
  (void)userdata;
  (void)event;
}

/* The last error's message must mention `text`. */
#define MESSAGE_HAS(text) CHECK(strstr(last_error(), (text)) != NULL)

int main(void) {
  static const char bad_utf8[] = {'h', 't', 't', 'p', (char)0xff, (char)0xfe, 0};

  /* Version and result names. */
  CHECK(strlen(gn_version()) >= 5);
  CHECK(strcmp(gn_result_name(GN_TIMEOUT), "GN_TIMEOUT") == 0);
  CHECK(strcmp(gn_result_name(999), "GN_UNKNOWN") == 0);

  /* NULL out-pointers and handles. */
  EXPECT(GN_INVALID_ARGUMENT, gn_builder_new(NULL));
  MESSAGE_HAS("gn_builder_new: out is NULL");
  EXPECT(GN_INVALID_ARGUMENT, gn_builder_api_base(NULL, "http://127.0.0.1:1"));
  MESSAGE_HAS("builder is NULL");
  EXPECT(GN_INVALID_ARGUMENT, gn_client_subscribe(NULL, NULL, 0, NULL));
  CHECK(gn_report_permitted_count(NULL) == 0);
  CHECK(gn_last_error_code() == GN_INVALID_ARGUMENT);
  CHECK(gn_event_topic(NULL).len == 0);
  CHECK(gn_lifecycle_get_kind(NULL) == GN_LIFECYCLE_OTHER);
  OK(gn_builder_free(NULL)); /* freeing NULL is a no-op */
  OK(gn_client_free(NULL));
  OK(gn_guard_free(NULL));
  OK(gn_report_free(NULL));

  /* Invalid UTF-8 and numbers out of range. */
  gn_builder *builder = NULL;
  OK(gn_builder_new(&builder));
  EXPECT(GN_INVALID_ARGUMENT, gn_builder_api_base(builder, bad_utf8));
  MESSAGE_HAS("not valid UTF-8 (first bad byte at offset 4)");
  EXPECT(GN_INVALID_ARGUMENT, gn_builder_backpressure(builder, 7));
  MESSAGE_HAS("7 is not a gn_backpressure");
  EXPECT(GN_INVALID_ARGUMENT, gn_builder_snapshots(builder, 3));
  EXPECT(GN_INVALID_ARGUMENT, gn_builder_tls_roots(builder, 2));
  EXPECT(GN_CONFIG, gn_builder_add_root_certificates_pem_file(builder, "/nonexistent/ca.pem"));
  MESSAGE_HAS("/nonexistent/ca.pem");

  /* Configuration errors surface at build, and the builder stays usable. */
  gn_client *client = NULL;
  OK(gn_builder_api_base(builder, "http://127.0.0.1:1"));
  OK(gn_builder_login_base(builder, "http://127.0.0.1:1"));
  EXPECT(GN_CONFIG, gn_builder_build(builder, &client)); /* no token source */
  MESSAGE_HAS("token");
  CHECK(client == NULL);
  OK(gn_builder_access_token(builder, "tok en"));
  EXPECT(GN_CONFIG, gn_builder_build(builder, &client)); /* white space in the token */
  OK(gn_builder_access_token(builder, "token"));
  OK(gn_builder_dispatcher_threads(builder, 0));
  EXPECT(GN_CONFIG, gn_builder_build(builder, &client));
  MESSAGE_HAS("dispatcher_threads");
  OK(gn_builder_dispatcher_threads(builder, 2));
  OK(gn_builder_proxy(builder, "ftp://proxy"));
  EXPECT(GN_CONFIG, gn_builder_build(builder, &client));
  MESSAGE_HAS("proxy");
  OK(gn_builder_free(builder));
  EXPECT(GN_INVALID_ARGUMENT, gn_builder_free(builder)); /* freed twice */
  MESSAGE_HAS("not a live gn_builder handle");

  OK(gn_builder_new(&builder));
  OK(gn_builder_region(builder, "mars-north-1"));
  OK(gn_builder_access_token(builder, "token"));
  EXPECT(GN_CONFIG, gn_builder_build(builder, &client));
  MESSAGE_HAS("mars-north-1");
  OK(gn_builder_free(builder));

  /* Every setter with a valid value builds; each range is checked at build, naming the field. */
  OK(gn_builder_new(&builder));
  OK(gn_builder_api_base(builder, "http://127.0.0.1:1"));
  OK(gn_builder_login_base(builder, "http://127.0.0.1:1"));
  OK(gn_builder_access_token(builder, "token"));
  OK(gn_builder_proxy(builder, "http://user:secret@127.0.0.1:3128"));
  OK(gn_builder_no_proxy(builder, "internal.example.com,10.0.0.0/8"));
  OK(gn_builder_proxy_loopback(builder, false));
  OK(gn_builder_proxy_from_env(builder, false));
  OK(gn_builder_tls_roots(builder, GN_TLS_ROOTS_WEBPKI));
  OK(gn_builder_streaming_base(builder, "http://127.0.0.1:2"));
  OK(gn_builder_dispatcher_threads(builder, 4));
  OK(gn_builder_queue_capacity(builder, 2048));
  OK(gn_builder_queue_capacity_bytes(builder, 8u << 20));
  OK(gn_builder_backpressure(builder, GN_BACKPRESSURE_DROP_OLDEST));
  OK(gn_builder_ping_interval_ms(builder, 20000));
  OK(gn_builder_pong_timeout_ms(builder, 10000));
  OK(gn_builder_liveness_timeout_ms(builder, 45000));
  OK(gn_builder_connect_timeout_ms(builder, 5000));
  OK(gn_builder_request_timeout_ms(builder, 5000));
  OK(gn_builder_drop_timeout_ms(builder, 2000));
  OK(gn_builder_backoff_ms(builder, 100, 10000));
  OK(gn_builder_snapshots(builder, GN_SNAPSHOTS_AFTER_GAPS_AND_SUBSCRIBE));
  OK(gn_builder_build(builder, &client));
  OK(gn_client_free(client));
  client = NULL;
  OK(gn_builder_queue_capacity(builder, 0));
  EXPECT(GN_CONFIG, gn_builder_build(builder, &client));
  MESSAGE_HAS("queue_capacity");
  OK(gn_builder_queue_capacity(builder, 2048));
  OK(gn_builder_liveness_timeout_ms(builder, 0));
  EXPECT(GN_CONFIG, gn_builder_build(builder, &client));
  MESSAGE_HAS("liveness_timeout");
  OK(gn_builder_liveness_timeout_ms(builder, 45000));
  OK(gn_builder_add_root_certificates_pem(builder, "no certificate here"));
  EXPECT(GN_CONFIG, gn_builder_build(builder, &client));
  MESSAGE_HAS("root_certificates");
  CHECK(client == NULL);
  OK(gn_builder_free(builder));

  /* A client against the emulator for the rest. */
  gn_emulator *emu = NULL;
  OK(gn_emulator_start(&emu));
  OK(gn_builder_new(&builder));
  OK(gn_builder_api_base(builder, gn_emulator_api_base(emu)));
  OK(gn_builder_login_base(builder, gn_emulator_login_base(emu)));
  OK(gn_builder_client_credentials(builder, gn_emulator_client_id(emu), "wrong-secret"));
  OK(gn_builder_proxy_from_env(builder, false));
  OK(gn_builder_backoff_ms(builder, 20, 500));
  OK(gn_builder_build(builder, &client));
  EXPECT(GN_TOKEN, gn_client_verify_token(client)); /* bad client credentials */
  OK(gn_client_free(client));

  OK(gn_builder_access_token(builder, "not-a-token-the-emulator-issued"));
  OK(gn_builder_build(builder, &client));
  EXPECT(GN_API, gn_client_verify_token(client)); /* the service refuses the token */
  CHECK(gn_last_error_http_status() == 401);
  OK(gn_client_free(client));

  OK(gn_builder_client_credentials(builder, gn_emulator_client_id(emu),
                                   gn_emulator_client_secret(emu)));
  OK(gn_builder_build(builder, &client));
  OK(gn_builder_free(builder));
  OK(gn_client_verify_token(client));
  CHECK(gn_last_error_code() == GN_OK);
  CHECK(gn_last_error_http_status() == 0);

  /* Topic arrays: NULL array, NULL element, invalid UTF-8, bad names. */
  gn_report *report = NULL;
  EXPECT(GN_INVALID_ARGUMENT, gn_client_subscribe(client, NULL, 2, &report));
  MESSAGE_HAS("topics is NULL but count is 2");
  const char *with_null[] = {"v2.users.a.presence", NULL};
  EXPECT(GN_INVALID_ARGUMENT, gn_client_subscribe(client, with_null, 2, &report));
  MESSAGE_HAS("topics[1] is NULL");
  const char *with_bad_utf8[] = {bad_utf8};
  EXPECT(GN_INVALID_ARGUMENT, gn_client_subscribe(client, with_bad_utf8, 1, &report));
  MESSAGE_HAS("topics[0] is not valid UTF-8");
  const char *bad_topic[] = {"v2.users.a.presence", "v2.users..presence"};
  EXPECT(GN_INVALID_TOPIC, gn_client_subscribe(client, bad_topic, 2, &report));
  MESSAGE_HAS("v2.users..presence");
  EXPECT(GN_INVALID_ARGUMENT, gn_client_subscribe(client, bad_topic, 1, NULL));
  CHECK(report == NULL);

  /* A topic the service rejects: the report says why and which permission is missing. */
  OK(gn_emulator_deny_topic(emu, "v2.users.b.presence", "directory:user:view"));
  const char *mixed[] = {"v2.users.a.presence", "v2.users.b.presence"};
  OK(gn_client_subscribe(client, mixed, 2, &report));
  CHECK(gn_report_permitted_count(report) == 1);
  CHECK(gn_report_rejected_count(report) == 1);
  CHECK(strcmp(gn_report_rejected_topic(report, 0), "v2.users.b.presence") == 0);
  CHECK(gn_report_rejected_missing_permission_count(report, 0) == 1);
  CHECK(strcmp(gn_report_rejected_missing_permission(report, 0, 0), "directory:user:view") == 0);
  CHECK(gn_report_rejected_missing_permission(report, 0, 1) == NULL);
  CHECK(strstr(gn_report_rejected_reason(report, 0), "lacks permissions") != NULL);
  CHECK(gn_last_error_code() == GN_OK);
  CHECK(gn_report_rejected_topic(report, 1) == NULL);
  gn_report *copy = report;
  OK(gn_report_free(report));
  EXPECT(GN_INVALID_ARGUMENT, gn_report_free(copy));
  CHECK(gn_report_permitted_count(copy) == 0); /* a freed report reads as nothing */
  MESSAGE_HAS("not a live gn_report handle");
  OK(gn_client_subscribe(client, mixed, 1, &report));
  CHECK(gn_report_duplicate_count(report) == 1);
  CHECK(strcmp(gn_report_duplicate(report, 0), "v2.users.a.presence") == 0);
  OK(gn_report_free(report));

  /* A topic on a channel of its own. */
  const char *isolated[] = {"v2.users.c.presence"};
  OK(gn_client_subscribe_isolated(client, isolated, 1, &report));
  CHECK(gn_report_permitted_count(report) == 1);
  OK(gn_report_free(report));
  char *health = health_json(client);
  /* Two channels now: the shared one and the isolated one. */
  CHECK(strstr(health, "\"channels\":[{") != NULL);
  CHECK(strstr(strstr(health, "\"channels\":[{") + 12, "},{\"channel\"") != NULL);
  free(health);

  /* Patterns: bad ones and reserved ones, with userdata released exactly once each time. */
  gn_guard *guard = NULL;
  EXPECT(GN_INVALID_TOPIC, gn_client_on(client, "v2..x", ignore_event, NULL, count_free, &guard));
  CHECK(atomic_load(&freed) == 1);
  EXPECT(GN_INVALID_TOPIC,
         gn_client_on(client, "v2.system.socket_closing", ignore_event, NULL, count_free, &guard));
  CHECK(atomic_load(&freed) == 2);
  EXPECT(GN_INVALID_ARGUMENT, gn_client_on(client, bad_utf8, ignore_event, NULL, count_free, &guard));
  CHECK(atomic_load(&freed) == 3);
  EXPECT(GN_INVALID_ARGUMENT, gn_client_on(client, "v2.users.*.presence", NULL, NULL, count_free,
                                           &guard));
  CHECK(atomic_load(&freed) == 4);
  EXPECT(GN_INVALID_ARGUMENT,
         gn_client_on(client, "v2.users.*.presence", ignore_event, NULL, count_free, NULL));
  CHECK(atomic_load(&freed) == 5);
  CHECK(guard == NULL);

  /* A guard freed twice through two copies of its handle; a handle of another kind. */
  OK(gn_client_on(client, "v2.users.*.presence", ignore_event, NULL, count_free, &guard));
  gn_guard *same = guard;
  OK(gn_guard_free(guard));
  CHECK(atomic_load(&freed) == 6);
  EXPECT(GN_INVALID_ARGUMENT, gn_guard_free(same));
  MESSAGE_HAS("not a live gn_guard handle");
  CHECK(atomic_load(&freed) == 6);
  EXPECT(GN_INVALID_ARGUMENT, gn_guard_free((gn_guard *)client));
  EXPECT(GN_INVALID_ARGUMENT, gn_client_shutdown((gn_client *)emu, 10));

  /* Short buffers: cut, NUL-terminated, with the length needed. */
  EXPECT(GN_INVALID_ARGUMENT, gn_client_subscribe(client, NULL, 1, &report));
  char small[8];
  size_t needed = 0;
  EXPECT(GN_BUFFER_TOO_SMALL, gn_last_error_message(small, sizeof small, &needed));
  CHECK(strlen(small) == sizeof small - 1);
  CHECK(needed > sizeof small);
  char *whole = malloc(needed + 1);
  OK(gn_last_error_message(whole, needed + 1, NULL));
  CHECK(strlen(whole) == needed);
  CHECK(strncmp(whole, small, sizeof small - 1) == 0);
  free(whole);
  EXPECT(GN_INVALID_ARGUMENT, gn_client_health_json(client, NULL, 5, NULL));

  /* Emulator input. */
  EXPECT(GN_INVALID_ARGUMENT, gn_emulator_publish(emu, "v2.users.a.presence", "{not json", NULL));
  MESSAGE_HAS("not JSON");
  EXPECT(GN_INVALID_ARGUMENT, gn_emulator_inject_socket_fault(emu, 42));

  /* A guard outliving its client: freeing the client releases the userdata, freeing the
   * guard afterwards is fine and releases nothing twice. */
  gn_builder *second_builder = NULL;
  gn_client *second = NULL;
  OK(gn_builder_new(&second_builder));
  OK(gn_builder_api_base(second_builder, gn_emulator_api_base(emu)));
  OK(gn_builder_login_base(second_builder, gn_emulator_login_base(emu)));
  OK(gn_builder_access_token(second_builder, "token"));
  OK(gn_builder_build(second_builder, &second));
  OK(gn_builder_free(second_builder));
  gn_guard *orphan = NULL;
  int before_orphan = atomic_load(&freed);
  OK(gn_client_on(second, "v2.users.*.presence", ignore_event, NULL, count_free, &orphan));
  OK(gn_client_free(second));
  CHECK(atomic_load(&freed) == before_orphan + 1);
  OK(gn_guard_free(orphan));
  CHECK(atomic_load(&freed) == before_orphan + 1);

  /* Use after shutdown. */
  OK(gn_client_shutdown(client, 5000));
  EXPECT(GN_SHUTDOWN, gn_client_subscribe(client, mixed, 1, &report));
  EXPECT(GN_SHUTDOWN, gn_client_unsubscribe(client, mixed, 1, &report));
  EXPECT(GN_SHUTDOWN, gn_client_verify_token(client));
  EXPECT(GN_SHUTDOWN, gn_client_on_lifecycle(client, ignore_lifecycle, NULL, count_free, &guard));
  CHECK(atomic_load(&freed) == 8);
  OK(gn_client_shutdown(client, 5000)); /* a second shutdown reports the first's outcome */
  OK(gn_client_free(client));
  EXPECT(GN_INVALID_ARGUMENT, gn_client_subscribe(client, mixed, 1, &report));
  MESSAGE_HAS("not a live gn_client handle");
  OK(gn_emulator_free(emu));
  CHECK(gn_emulator_api_base(emu) == NULL);
  printf("bad_input: ok\n");
  return 0;
}
