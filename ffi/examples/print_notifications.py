#!/usr/bin/env python3
"""Prints Genesys Cloud notifications through libgenesys_notify_c with ctypes, from the
emulator (the library must be built with the `emulator` feature):

    cargo build --release -p genesys-notify-ffi --features emulator
    python3 ffi/examples/print_notifications.py target/release/libgenesys_notify_c.so

It starts the emulator, builds a client with the emulator's bases and credentials, registers a
callback for `v2.users.*.presence`, subscribes three users, publishes a presence change for each,
prints each notification as `<topic> <eventBody>`, then shuts down. Against Genesys Cloud, use
gn_builder_region and your OAuth client's credentials instead, and no emulator.
"""

import ctypes
import json
import sys
import threading

GN_OK = 0
GN_LIFECYCLE_GAP = 6


class GnStr(ctypes.Structure):
    """gn_str: a pointer and a length, not NUL-terminated."""

    _fields_ = [("ptr", ctypes.c_void_p), ("len", ctypes.c_size_t)]

    def text(self):
        return ctypes.string_at(self.ptr, self.len).decode() if self.len else ""


EVENT_CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)


def load(path):
    lib = ctypes.CDLL(path)
    handle = ctypes.c_void_p
    out = ctypes.POINTER(ctypes.c_void_p)
    lib.gn_version.restype = ctypes.c_char_p
    lib.gn_last_error_message.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_void_p]
    lib.gn_emulator_start.argtypes = [out]
    for name in ("api_base", "login_base", "client_id", "client_secret"):
        f = getattr(lib, "gn_emulator_" + name)
        f.argtypes, f.restype = [handle], ctypes.c_char_p
    lib.gn_emulator_publish.argtypes = [handle, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p]
    lib.gn_emulator_free.argtypes = [handle]
    lib.gn_builder_new.argtypes = [out]
    lib.gn_builder_api_base.argtypes = [handle, ctypes.c_char_p]
    lib.gn_builder_login_base.argtypes = [handle, ctypes.c_char_p]
    lib.gn_builder_client_credentials.argtypes = [handle, ctypes.c_char_p, ctypes.c_char_p]
    lib.gn_builder_proxy_from_env.argtypes = [handle, ctypes.c_bool]
    lib.gn_builder_build.argtypes = [handle, out]
    lib.gn_builder_free.argtypes = [handle]
    lib.gn_client_on.argtypes = [handle, ctypes.c_char_p, EVENT_CALLBACK, ctypes.c_void_p,
                                 ctypes.c_void_p, out]
    lib.gn_client_subscribe.argtypes = [handle, ctypes.POINTER(ctypes.c_char_p), ctypes.c_size_t,
                                        out]
    lib.gn_report_permitted_count.argtypes = [handle]
    lib.gn_report_permitted_count.restype = ctypes.c_size_t
    lib.gn_report_free.argtypes = [handle]
    lib.gn_guard_free.argtypes = [handle]
    lib.gn_client_shutdown.argtypes = [handle, ctypes.c_uint64]
    lib.gn_client_free.argtypes = [handle]
    lib.gn_event_topic.argtypes = [ctypes.c_void_p]
    lib.gn_event_topic.restype = GnStr
    lib.gn_event_body_json.argtypes = [ctypes.c_void_p]
    lib.gn_event_body_json.restype = GnStr
    lib.gn_event_is_snapshot.argtypes = [ctypes.c_void_p]
    lib.gn_event_is_snapshot.restype = ctypes.c_bool
    return lib


def check(lib, result, what):
    if result != GN_OK:
        buf = ctypes.create_string_buffer(1024)
        lib.gn_last_error_message(buf, len(buf), None)
        raise RuntimeError(f"{what} failed ({result}): {buf.value.decode()}")


def main(path):
    lib = load(path)
    print("libgenesys_notify_c", lib.gn_version().decode(), flush=True)
    emu = ctypes.c_void_p()
    check(lib, lib.gn_emulator_start(ctypes.byref(emu)), "gn_emulator_start")

    builder = ctypes.c_void_p()
    check(lib, lib.gn_builder_new(ctypes.byref(builder)), "gn_builder_new")
    check(lib, lib.gn_builder_api_base(builder, lib.gn_emulator_api_base(emu)), "api_base")
    check(lib, lib.gn_builder_login_base(builder, lib.gn_emulator_login_base(emu)), "login_base")
    check(lib, lib.gn_builder_client_credentials(
        builder, lib.gn_emulator_client_id(emu), lib.gn_emulator_client_secret(emu)),
        "client_credentials")
    check(lib, lib.gn_builder_proxy_from_env(builder, False), "proxy_from_env")
    client = ctypes.c_void_p()
    check(lib, lib.gn_builder_build(builder, ctypes.byref(client)), "gn_builder_build")
    check(lib, lib.gn_builder_free(builder), "gn_builder_free")

    users = [f"9ed7d9f6-0c59-4360-ac54-00000000000{i}" for i in range(3)]
    topics = [f"v2.users.{u}.presence" for u in users]
    lock = threading.Condition()
    printed = []

    # ctypes takes the GIL for the call: the callback runs on the library's dispatcher thread.
    @EVENT_CALLBACK
    def on_event(_userdata, event):
        if lib.gn_event_is_snapshot(event):
            return
        line = f"{lib.gn_event_topic(event).text()} {lib.gn_event_body_json(event).text()}"
        with lock:
            print(line, flush=True)
            printed.append(line)
            lock.notify_all()

    guard = ctypes.c_void_p()
    check(lib, lib.gn_client_on(client, b"v2.users.*.presence", on_event, None, None,
                                ctypes.byref(guard)), "gn_client_on")
    names = (ctypes.c_char_p * len(topics))(*[t.encode() for t in topics])
    report = ctypes.c_void_p()
    check(lib, lib.gn_client_subscribe(client, names, len(topics), ctypes.byref(report)),
          "gn_client_subscribe")
    print("subscribed", lib.gn_report_permitted_count(report), "topics", flush=True)
    check(lib, lib.gn_report_free(report), "gn_report_free")

    for topic in topics:
        body = {"presenceDefinition": {"systemPresence": "AVAILABLE"}, "message": "from Python"}
        check(lib, lib.gn_emulator_publish(emu, topic.encode(), json.dumps(body).encode(), None),
              "gn_emulator_publish")
    with lock:
        lock.wait_for(lambda: len(printed) == len(topics), timeout=60)

    # Freeing the guard before anything the callback uses goes away: when it returns, the
    # callback is not running and never runs again.
    check(lib, lib.gn_guard_free(guard), "gn_guard_free")
    check(lib, lib.gn_client_shutdown(client, 5000), "gn_client_shutdown")
    check(lib, lib.gn_client_free(client), "gn_client_free")
    check(lib, lib.gn_emulator_free(emu), "gn_emulator_free")
    print(f"printed {len(printed)} notifications", flush=True)
    return 0 if len(printed) == len(topics) else 1


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} path/to/libgenesys_notify_c.so")
    sys.exit(main(sys.argv[1]))
