//! examples/print_notifications.py, run with the system `python3` against the library this
//! build made: a Python program loading libgenesys_notify_c with ctypes prints the
//! notifications it receives from the emulator.

mod util;

use std::time::Duration;

#[test]
fn the_python_ctypes_example_prints_notifications() {
    let lib = util::lib_dir().join("libgenesys_notify_c.so");
    let script = util::crate_dir().join("examples/print_notifications.py");
    let out = util::run(
        std::process::Command::new("python3").arg(&script).arg(&lib),
        Duration::from_secs(120),
    );
    assert!(out.contains("subscribed 3 topics"), "{out}");
    for i in 0..3 {
        let line = format!(
            "v2.users.9ed7d9f6-0c59-4360-ac54-00000000000{i}.presence {{\"message\":\"from Python\""
        );
        assert!(out.contains(&line), "no line for user {i}:\n{out}");
    }
    assert!(out.ends_with("printed 3 notifications\n"), "{out}");
}
