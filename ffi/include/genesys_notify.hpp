// genesys_notify.hpp: a small header-only C++17 wrapper of genesys_notify.h. RAII owners for
// the builder, the client and listener guards, lambdas as callbacks, exceptions for errors.
// Written by hand (not generated); tests/cpp/wrapper_test.cpp exercises it.
//
//   genesys_notify::Client client = genesys_notify::Builder()
//       .region("eu-west-1").client_credentials(id, secret).build();
//   genesys_notify::Guard guard = client.on("v2.users.*.presence",
//       [](const genesys_notify::Event &e) { std::cout << e.topic() << '\n'; });
//   client.subscribe({"v2.users.<id>.presence"});
//
// A Guard unregisters its callback when destroyed or reset, with the C ABI's promise: when
// that returns, the callback is not running and never runs again, and the lambda (with what it
// captured) has been destroyed. A callback must not let an exception escape: the wrapper
// catches it (the C library cannot unwind C++ frames), writes it to stderr and carries on.
#ifndef GENESYS_NOTIFY_HPP
#define GENESYS_NOTIFY_HPP

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <functional>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "genesys_notify.h"

namespace genesys_notify {

// A failed call: its gn_result, the library's message, and for GN_API the HTTP status.
class Error : public std::runtime_error {
 public:
  Error(gn_result code, const std::string &message, uint16_t http_status)
      : std::runtime_error(message), code_(code), http_status_(http_status) {}
  gn_result code() const noexcept { return code_; }
  uint16_t http_status() const noexcept { return http_status_; }

 private:
  gn_result code_;
  uint16_t http_status_;
};

namespace detail {

inline std::string last_message() {
  size_t needed = 0;
  gn_last_error_message(nullptr, 0, &needed);
  std::string text(needed + 1, '\0');
  gn_last_error_message(&text[0], text.size(), nullptr);
  text.resize(needed);
  return text;
}

inline void check(gn_result result) {
  if (result != GN_OK) throw Error(result, last_message(), gn_last_error_http_status());
}

inline std::string_view view(gn_str s) {
  return s.len == 0 ? std::string_view() : std::string_view(s.ptr, s.len);
}

inline std::vector<const char *> c_strings(const std::vector<std::string> &items) {
  std::vector<const char *> out;
  out.reserve(items.size());
  for (const auto &item : items) out.push_back(item.c_str());
  return out;
}

inline void report_exception(const char *where) noexcept {
  try {
    throw;
  } catch (const std::exception &e) {
    std::fprintf(stderr, "genesys_notify: %s threw: %s\n", where, e.what());
  } catch (...) {
    std::fprintf(stderr, "genesys_notify: %s threw a non-standard exception\n", where);
  }
}

}  // namespace detail

// One notification, valid only during the callback: copy what you keep.
class Event {
 public:
  explicit Event(const gn_event *event) noexcept : event_(event) {}
  std::string_view topic() const { return detail::view(gn_event_topic(event_)); }
  std::string_view body_json() const { return detail::view(gn_event_body_json(event_)); }
  // Empty when the notification has no CorrelationId.
  std::string_view correlation_id() const {
    return detail::view(gn_event_correlation_id(event_));
  }
  bool is_snapshot() const { return gn_event_is_snapshot(event_); }
  // Microseconds since the Unix epoch.
  int64_t received_at_us() const { return gn_event_received_at_us(event_); }

 private:
  const gn_event *event_;
};

// One lifecycle event, valid only during the callback.
class LifecycleEvent {
 public:
  explicit LifecycleEvent(const gn_lifecycle *event) noexcept : event_(event) {}
  gn_lifecycle_kind kind() const { return gn_lifecycle_get_kind(event_); }
  std::string_view name() const { return detail::view(gn_lifecycle_name(event_)); }
  std::string_view channel() const { return detail::view(gn_lifecycle_channel(event_)); }
  std::string_view message() const { return detail::view(gn_lifecycle_message(event_)); }
  int64_t gap_start_us() const { return gn_lifecycle_gap_start_us(event_); }
  int64_t gap_end_us() const { return gn_lifecycle_gap_end_us(event_); }
  std::vector<std::string_view> topics() const {
    std::vector<std::string_view> out;
    size_t n = gn_lifecycle_topic_count(event_);
    for (size_t i = 0; i < n; i++) out.push_back(detail::view(gn_lifecycle_topic(event_, i)));
    return out;
  }

 private:
  const gn_lifecycle *event_;
};

using EventCallback = std::function<void(const Event &)>;
using LifecycleCallback = std::function<void(const LifecycleEvent &)>;

// A registered listener; move-only. Destroying or resetting it unregisters the callback.
class Guard {
 public:
  Guard() noexcept = default;
  explicit Guard(gn_guard *guard) noexcept : guard_(guard) {}
  Guard(Guard &&other) noexcept : guard_(std::exchange(other.guard_, nullptr)) {}
  Guard &operator=(Guard &&other) noexcept {
    if (this != &other) {
      reset();
      guard_ = std::exchange(other.guard_, nullptr);
    }
    return *this;
  }
  Guard(const Guard &) = delete;
  Guard &operator=(const Guard &) = delete;
  ~Guard() { reset(); }
  // Unregisters now (allowed inside this listener's own callback).
  void reset() noexcept {
    if (guard_ != nullptr) gn_guard_free(std::exchange(guard_, nullptr));
  }
  explicit operator bool() const noexcept { return guard_ != nullptr; }

 private:
  gn_guard *guard_ = nullptr;
};

// What a subscribe or unsubscribe did.
struct Report {
  struct Rejected {
    std::string topic;
    std::string reason;  // empty when the service gave none
    std::vector<std::string> missing_permissions;
  };
  std::vector<std::string> permitted;
  std::vector<Rejected> rejected;
  std::vector<std::string> duplicates;
  std::vector<std::string> removed;

  // Takes the C report over and frees it.
  static Report from(gn_report *report) {
    Report out;
    for (size_t i = 0; i < gn_report_permitted_count(report); i++)
      out.permitted.emplace_back(gn_report_permitted(report, i));
    for (size_t i = 0; i < gn_report_rejected_count(report); i++) {
      Rejected r;
      r.topic = gn_report_rejected_topic(report, i);
      const char *reason = gn_report_rejected_reason(report, i);
      if (reason != nullptr) r.reason = reason;
      for (size_t j = 0; j < gn_report_rejected_missing_permission_count(report, i); j++)
        r.missing_permissions.emplace_back(gn_report_rejected_missing_permission(report, i, j));
      out.rejected.push_back(std::move(r));
    }
    for (size_t i = 0; i < gn_report_duplicate_count(report); i++)
      out.duplicates.emplace_back(gn_report_duplicate(report, i));
    for (size_t i = 0; i < gn_report_removed_count(report); i++)
      out.removed.emplace_back(gn_report_removed(report, i));
    gn_report_free(report);
    return out;
  }
};

// A client; move-only. Destroying it shuts it down (bounded by the drop timeout) and frees it.
class Client {
 public:
  explicit Client(gn_client *client) noexcept : client_(client) {}
  Client(Client &&other) noexcept : client_(std::exchange(other.client_, nullptr)) {}
  Client &operator=(Client &&other) noexcept {
    if (this != &other) {
      if (client_ != nullptr) gn_client_free(client_);
      client_ = std::exchange(other.client_, nullptr);
    }
    return *this;
  }
  Client(const Client &) = delete;
  Client &operator=(const Client &) = delete;
  ~Client() {
    if (client_ != nullptr) gn_client_free(client_);
  }

  Report subscribe(const std::vector<std::string> &topics) {
    return call(gn_client_subscribe, topics);
  }
  Report subscribe_isolated(const std::vector<std::string> &topics) {
    return call(gn_client_subscribe_isolated, topics);
  }
  Report unsubscribe(const std::vector<std::string> &topics) {
    return call(gn_client_unsubscribe, topics);
  }

  Guard on(const std::string &pattern, EventCallback callback) {
    auto *holder = new EventCallback(std::move(callback));
    gn_guard *guard = nullptr;
    // The library releases `holder` (delete_holder) in every case, failure included.
    detail::check(gn_client_on(client_, pattern.c_str(), &Client::event_trampoline, holder,
                               &Client::delete_holder<EventCallback>, &guard));
    return Guard(guard);
  }

  Guard on_lifecycle(LifecycleCallback callback) {
    auto *holder = new LifecycleCallback(std::move(callback));
    gn_guard *guard = nullptr;
    detail::check(gn_client_on_lifecycle(client_, &Client::lifecycle_trampoline, holder,
                                         &Client::delete_holder<LifecycleCallback>, &guard));
    return Guard(guard);
  }

  void verify_token() { detail::check(gn_client_verify_token(client_)); }

  std::string health_json() const {
    size_t needed = 0;
    gn_result r = gn_client_health_json(client_, nullptr, 0, &needed);
    if (r != GN_BUFFER_TOO_SMALL) detail::check(r);
    // The document may grow between the two calls: ask again until it fits.
    for (;;) {
      std::string text(needed + 1, '\0');
      r = gn_client_health_json(client_, &text[0], text.size(), &needed);
      if (r == GN_OK) {
        text.resize(needed);
        return text;
      }
      if (r != GN_BUFFER_TOO_SMALL) detail::check(r);
    }
  }

  void shutdown(std::chrono::milliseconds timeout) {
    detail::check(gn_client_shutdown(client_, static_cast<uint64_t>(timeout.count())));
  }

  gn_client *get() const noexcept { return client_; }

 private:
  using Subscribe = gn_result (*)(gn_client *, const char *const *, size_t, gn_report **);

  Report call(Subscribe function, const std::vector<std::string> &topics) {
    std::vector<const char *> names = detail::c_strings(topics);
    gn_report *report = nullptr;
    detail::check(function(client_, names.data(), names.size(), &report));
    return Report::from(report);
  }

  static void event_trampoline(void *userdata, const gn_event *event) noexcept {
    try {
      (*static_cast<EventCallback *>(userdata))(Event(event));
    } catch (...) {
      detail::report_exception("an event callback");
    }
  }

  static void lifecycle_trampoline(void *userdata, const gn_lifecycle *event) noexcept {
    try {
      (*static_cast<LifecycleCallback *>(userdata))(LifecycleEvent(event));
    } catch (...) {
      detail::report_exception("a lifecycle callback");
    }
  }

  template <class T>
  static void delete_holder(void *userdata) noexcept {
    delete static_cast<T *>(userdata);
  }

  gn_client *client_;
};

// Collects the settings; build() makes a Client (the builder stays usable).
class Builder {
 public:
  Builder() { detail::check(gn_builder_new(&builder_)); }
  Builder(Builder &&other) noexcept : builder_(std::exchange(other.builder_, nullptr)) {}
  Builder(const Builder &) = delete;
  Builder &operator=(const Builder &) = delete;
  Builder &operator=(Builder &&) = delete;
  ~Builder() {
    if (builder_ != nullptr) gn_builder_free(builder_);
  }

  Builder &region(const std::string &name) { return set(gn_builder_region(builder_, name.c_str())); }
  Builder &api_base(const std::string &url) { return set(gn_builder_api_base(builder_, url.c_str())); }
  Builder &login_base(const std::string &url) {
    return set(gn_builder_login_base(builder_, url.c_str()));
  }
  Builder &client_credentials(const std::string &id, const std::string &secret) {
    return set(gn_builder_client_credentials(builder_, id.c_str(), secret.c_str()));
  }
  Builder &access_token(const std::string &token) {
    return set(gn_builder_access_token(builder_, token.c_str()));
  }
  Builder &proxy(const std::string &url) { return set(gn_builder_proxy(builder_, url.c_str())); }
  Builder &no_proxy(const std::string &list) {
    return set(gn_builder_no_proxy(builder_, list.c_str()));
  }
  Builder &proxy_from_env(bool read) { return set(gn_builder_proxy_from_env(builder_, read)); }
  Builder &add_root_certificates_pem_file(const std::string &path) {
    return set(gn_builder_add_root_certificates_pem_file(builder_, path.c_str()));
  }
  Builder &dispatcher_threads(size_t threads) {
    return set(gn_builder_dispatcher_threads(builder_, threads));
  }
  Builder &backoff(std::chrono::milliseconds base, std::chrono::milliseconds cap) {
    return set(gn_builder_backoff_ms(builder_, static_cast<uint64_t>(base.count()),
                                     static_cast<uint64_t>(cap.count())));
  }
  // The C builder itself, for the settings this wrapper does not name.
  gn_builder *get() const noexcept { return builder_; }

  Client build() const {
    gn_client *client = nullptr;
    detail::check(gn_builder_build(builder_, &client));
    return Client(client);
  }

 private:
  Builder &set(gn_result result) {
    detail::check(result);
    return *this;
  }
  gn_builder *builder_ = nullptr;
};

#if defined(GN_EMULATOR)
// The emulator (library built with the `emulator` feature); move-only.
class Emulator {
 public:
  Emulator() { detail::check(gn_emulator_start(&emulator_)); }
  Emulator(const Emulator &) = delete;
  Emulator &operator=(const Emulator &) = delete;
  ~Emulator() { gn_emulator_free(emulator_); }
  std::string api_base() const { return gn_emulator_api_base(emulator_); }
  std::string login_base() const { return gn_emulator_login_base(emulator_); }
  std::string client_id() const { return gn_emulator_client_id(emulator_); }
  std::string client_secret() const { return gn_emulator_client_secret(emulator_); }
  void publish(const std::string &topic, const std::string &body_json) {
    detail::check(gn_emulator_publish(emulator_, topic.c_str(), body_json.c_str(), nullptr));
  }
  void inject_socket_fault(gn_socket_fault fault) {
    detail::check(gn_emulator_inject_socket_fault(emulator_, fault));
  }

 private:
  gn_emulator *emulator_ = nullptr;
};
#endif

}  // namespace genesys_notify

#endif
