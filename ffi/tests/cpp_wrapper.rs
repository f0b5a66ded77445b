//! The header-only C++ wrapper (include/genesys_notify.hpp) compiled with the system `c++`
//! (C++17, warnings as errors) with its test program tests/cpp/wrapper_test.cpp, and run
//! against the emulator: RAII client and guards, lambdas as callbacks, errors as exceptions;
//! then again under valgrind.

mod util;

use std::time::Duration;

#[test]
fn the_cpp_wrapper_runs_lambdas_and_frees_by_raii() {
    let program = util::compile_cpp("wrapper_test");
    let out = util::run(
        &mut std::process::Command::new(&program),
        Duration::from_secs(120),
    );
    assert!(out.ends_with("wrapper: ok\n"), "{out}");
}

#[test]
fn the_cpp_wrapper_under_valgrind_no_invalid_access_no_definite_leak() {
    let program = util::compile_cpp("wrapper_test");
    if let Some(out) = util::under_valgrind(&program, &[]) {
        assert!(out.ends_with("wrapper: ok\n"), "{out}");
    }
}
