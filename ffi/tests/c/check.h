/* check.h: the assertions of the C test programs. A failed check prints where, what, and the
 * library's last error message, then exits 1. */
#ifndef GN_TEST_CHECK_H
#define GN_TEST_CHECK_H


#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "genesys_notify.h"

static inline const char *last_error(void) {
  static _Thread_local char buf[1024];
  gn_last_error_message(buf, sizeof buf, NULL);
  return buf;
}

#define CHECK(cond)                                                                         \
  do {                                                                                      \
    if (!(cond)) {                                                                          \
      fprintf(stderr, "%s:%d: check failed: %s (last error: %s)\n", __FILE__, __LINE__,     \
              #cond, last_error());                                                         \
      exit(1);                                                                              \
    }                                                                                       \
  } while (0)

/* A call that must return `expected`; prints the result's name and message otherwise. */
#define EXPECT(expected, call)                                                              \
  do {                                                                                      \
    gn_result got_ = (call);                                                                \
    if (got_ != (expected)) {                                                               \
      fprintf(stderr, "%s:%d: %s returned %s, expected %s (last error: %s)\n", __FILE__,    \
              __LINE__, #call, gn_result_name(got_), gn_result_name(expected), last_error()); \
      exit(1);                                                                              \
    }                                                                                       \
  } while (0)

#define OK(call) EXPECT(GN_OK, call)

static inline double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* Waits until `cond` holds, up to `seconds`; the generous bound only stops a broken run. */
#define WAIT_FOR(cond, seconds)                                                             \
  do {                                                                                      \
    double until_ = now_s() + (seconds);                                                    \
    while (!(cond) && now_s() < until_) sleep_ms(5);                                        \
    CHECK(cond);                                                                            \
  } while (0)

/* The client's health JSON in a malloc'ed string: the document may grow between the length
 * query and the copy (a timestamp appears), so ask again until it fits. */
static inline char *health_json(gn_client *client) {
  char *text = NULL;
  size_t capacity = 0, needed = 0;
  gn_result result;
  while ((result = gn_client_health_json(client, text, capacity, &needed)) == GN_BUFFER_TOO_SMALL) {
    free(text);
    capacity = needed + 64;
    text = malloc(capacity);
    CHECK(text != NULL);
  }
  OK(result);
  CHECK(strlen(text) == needed);
  return text;
}

#endif
