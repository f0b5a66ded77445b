//! The C programs of tests/c, compiled with the system `cc` against the library this build made
//! (target/<profile>/libgenesys_notify_c.so and .a) and include/genesys_notify.h, and run
//! against the emulator: tests/c/events.c (10 000 events in per-topic order, guards freed
//! from outside and from inside their callbacks, a gap after a socket fault, unsubscribe,
//! shutdown), tests/c/pool.c (clients sharing a `gn_thread_pool`) and tests/c/bad_input.c
//! (every kind of bad input gets a code and a message). Then
//! the same programs under valgrind: no leak definitely lost, no invalid read or write.

mod util;

use std::time::Duration;
use util::{compile_c, run, under_valgrind, Link};

#[test]
fn events_in_order_guards_gap_unsubscribe_and_shutdown() {
    let program = compile_c("events", Link::Shared);
    let out = run(
        &mut std::process::Command::new(&program),
        Duration::from_secs(180),
    );
    assert!(out.contains("received 10000 events"), "{out}");
    assert!(out.contains("lifecycle: gap of"), "{out}");
    assert!(out.ends_with("events: ok\n"), "{out}");
}

#[test]
fn clients_sharing_a_thread_pool() {
    let program = compile_c("pool", Link::Shared);
    let out = run(
        &mut std::process::Command::new(&program),
        Duration::from_secs(120),
    );
    assert!(
        out.contains("5 pooled clients received 50 events each in order"),
        "{out}"
    );
    assert!(out.ends_with("pool: ok\n"), "{out}");
}

#[test]
fn bad_input_gets_a_code_and_a_message() {
    let program = compile_c("bad_input", Link::Shared);
    let out = run(
        &mut std::process::Command::new(&program),
        Duration::from_secs(120),
    );
    assert!(out.ends_with("bad_input: ok\n"), "{out}");
}

/// The static library links with the line README gives, and works the same.
#[test]
fn the_static_library_links_with_the_documented_line() {
    let program = compile_c("bad_input", Link::Static);
    let out = run(
        &mut std::process::Command::new(&program),
        Duration::from_secs(120),
    );
    assert!(out.ends_with("bad_input: ok\n"), "{out}");
}

#[test]
fn events_under_valgrind_no_invalid_access_no_definite_leak() {
    let program = compile_c("events", Link::Shared);
    // Fewer events: memcheck runs the whole library (and the emulator) 20-50 times slower.
    if let Some(out) = under_valgrind(&program, &["1000"]) {
        assert!(out.contains("received 1000 events"), "{out}");
        assert!(out.ends_with("events: ok\n"), "{out}");
    }
}

#[test]
fn pool_under_valgrind_no_invalid_access_no_definite_leak() {
    let program = compile_c("pool", Link::Shared);
    if let Some(out) = under_valgrind(&program, &[]) {
        assert!(out.ends_with("pool: ok\n"), "{out}");
    }
}

#[test]
fn bad_input_under_valgrind_no_invalid_access_no_definite_leak() {
    let program = compile_c("bad_input", Link::Shared);
    if let Some(out) = under_valgrind(&program, &[]) {
        assert!(out.ends_with("bad_input: ok\n"), "{out}");
    }
}

/// README's "From C" program compiles and links as README says (it needs Genesys Cloud to run).
#[test]
fn the_readme_c_program_compiles() {
    let readme = std::fs::read_to_string(util::crate_dir().join("../README.md")).expect("README");
    let start = readme
        .find("```c\n/* presence.c")
        .expect("README's C program")
        + "```c\n".len();
    let end = start + readme[start..].find("```").expect("the end of the block");
    let source = util::out_dir().join("presence.c");
    std::fs::create_dir_all(util::out_dir()).unwrap();
    std::fs::write(&source, &readme[start..end]).unwrap();
    let program = util::compile_file("cc", "-std=c11", &source, "presence", Link::Shared);
    assert!(program.exists());
}
