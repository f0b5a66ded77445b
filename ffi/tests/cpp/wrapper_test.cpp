// wrapper_test.cpp: the C++ wrapper (include/genesys_notify.hpp) against the emulator: RAII
// client and guards, lambdas as callbacks, errors as exceptions, a guard reset inside its own
// callback, a throwing lambda that does not bring anything down, a gap after a socket fault.
// Prints "wrapper: ok" and exits 0 on success.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "genesys_notify.hpp"

namespace gn = genesys_notify;
using namespace std::chrono_literals;

#define CHECK(cond)                                                                 \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      std::exit(1);                                                                 \
    }                                                                               \
  } while (0)

template <class F>
static bool wait_for(F cond, std::chrono::seconds limit = 60s) {
  auto until = std::chrono::steady_clock::now() + limit;
  while (!cond() && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(5ms);
  return cond();
}

static std::string topic(int i) {
  return "v2.users.9ed7d9f6-0c59-4360-ac54-00000000000" + std::to_string(i) + ".presence";
}

int main() {
  gn::Emulator emu;
  gn::Builder builder;
  builder.api_base(emu.api_base())
      .login_base(emu.login_base())
      .client_credentials(emu.client_id(), emu.client_secret())
      .proxy_from_env(false)
      .backoff(20ms, 500ms);
  gn::Client client = builder.build();

  // Errors are exceptions with the code and the message.
  try {
    client.subscribe({"v2.users..presence"});
    CHECK(false);
  } catch (const gn::Error &e) {
    CHECK(e.code() == GN_INVALID_TOPIC);
    CHECK(std::string(e.what()).find("v2.users..presence") != std::string::npos);
  }

  std::atomic<int> gaps{0};
  gn::Guard life = client.on_lifecycle([&](const gn::LifecycleEvent &e) {
    if (e.kind() == GN_LIFECYCLE_GAP && e.topics().size() == 3 && e.gap_end_us() >= e.gap_start_us())
      gaps++;
  });

  // A lambda owning state: the guard's end destroys it (shared_ptr's count drops back).
  auto seen = std::make_shared<std::vector<std::string>>();
  auto mutex = std::make_shared<std::mutex>();
  std::atomic<int> received{0};
  gn::Guard guard = client.on("v2.users.*.presence", [seen, mutex, &received](const gn::Event &e) {
    if (e.is_snapshot()) return;
    std::lock_guard<std::mutex> lock(*mutex);
    seen->emplace_back(e.topic());
    received++;
  });
  CHECK(seen.use_count() == 2);

  // A lambda that throws: caught by the wrapper, the others go on.
  gn::Guard thrower =
      client.on(topic(0), [](const gn::Event &) { throw std::runtime_error("thrown on purpose"); });

  // A guard reset inside its own callback.
  std::atomic<int> once_calls{0};
  std::atomic<bool> once_reset{false};
  gn::Guard once;
  once = client.on(topic(1), [&](const gn::Event &) {
    once_calls++;
    once.reset();
    once_reset = true;
  });

  gn::Report report = client.subscribe({topic(0), topic(1), topic(2)});
  CHECK(report.permitted.size() == 3);
  CHECK(client.subscribe({topic(0)}).duplicates.size() == 1);

  for (int i = 0; i < 100; i++) emu.publish(topic(i % 3), "{\"seq\":" + std::to_string(i) + "}");
  CHECK(wait_for([&] { return received.load() == 100; }));
  CHECK(wait_for([&] { return once_reset.load(); }));
  CHECK(!once);
  CHECK(once_calls.load() == 1);

  guard.reset();
  CHECK(seen.use_count() == 1);  // the lambda and its captures are gone
  CHECK(seen->size() == 100);

  emu.inject_socket_fault(GN_SOCKET_FAULT_DROP);
  CHECK(wait_for([&] { return gaps.load() >= 1; }));

  CHECK(client.unsubscribe({topic(2)}).removed.size() == 1);
  CHECK(client.health_json().find("\"channels\":[") != std::string::npos);
  client.shutdown(5s);
  try {
    client.subscribe({topic(0)});
    CHECK(false);
  } catch (const gn::Error &e) {
    CHECK(e.code() == GN_SHUTDOWN);
  }
  std::printf("wrapper: ok\n");
  return 0;
}
