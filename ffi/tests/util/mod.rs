//! Helpers of the tests that build and run foreign programs against the library: where the
//! library this build made is, compiling C and C++ with the system compilers, and running a
//! program with a time bound.
#![allow(dead_code)] // each test file uses a different subset

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The crate's directory (ffi/).
pub fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Where this build's libgenesys_notify_c.so and .a are: for a test, cargo builds the library
/// (every crate type) into target/<profile>/deps/, beside the test binary. (target/<profile>/
/// itself gets copies only from `cargo build`, and they may be stale: never use those here.)
pub fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let dir = exe.parent().expect("target/<profile>/deps/").to_path_buf();
    for file in ["libgenesys_notify_c.so", "libgenesys_notify_c.a"] {
        let path = dir.join(file);
        let library = path.metadata().and_then(|m| m.modified());
        let test = exe.metadata().and_then(|m| m.modified());
        assert!(
            matches!((library, test), (Ok(l), Ok(t)) if l <= t),
            "{} is missing or newer than the test binary: cargo builds it before the test",
            path.display()
        );
    }
    dir
}

/// Where compiled test programs go.
pub fn out_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ffi-programs")
}

/// How a program links the library.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// `-lgenesys_notify_c` (the .so), found at run time through an rpath.
    Shared,
    /// `libgenesys_notify_c.a` and the system libraries it needs (README's static link line).
    Static,
}

/// The link arguments of README's "From C" section.
pub fn link_args(link: Link) -> Vec<String> {
    let dir = lib_dir();
    match link {
        Link::Shared => vec![
            format!("-L{}", dir.display()),
            "-lgenesys_notify_c".into(),
            format!("-Wl,-rpath,{}", dir.display()),
            "-lpthread".into(),
        ],
        Link::Static => vec![
            dir.join("libgenesys_notify_c.a").display().to_string(),
            "-lpthread".into(),
            "-ldl".into(),
            "-lm".into(),
        ],
    }
}

/// A name of its own for each program compiled by this test binary: tests run in parallel, and
/// one must not overwrite a program another is running.
fn unique(name: &str) -> PathBuf {
    static COUNT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    out_dir().join(format!("{name}-{}-{n}", std::process::id()))
}

fn compile(compiler: &str, std: &str, source: &Path, output: &Path, link: Link) {
    std::fs::create_dir_all(out_dir()).expect("create the output directory");
    let status = Command::new(compiler)
        .arg(std)
        .args(["-Wall", "-Wextra", "-Werror", "-g", "-DGN_EMULATOR"])
        .arg("-I")
        .arg(crate_dir().join("include"))
        .arg("-I")
        .arg(crate_dir().join("tests/c"))
        .arg(source)
        .arg("-o")
        .arg(output)
        .args(link_args(link))
        .status()
        .unwrap_or_else(|e| panic!("cannot run {compiler}: {e}"));
    assert!(
        status.success(),
        "{compiler} failed on {}",
        source.display()
    );
}

/// Compiles `source` with `compiler` into a program named after `name`, and returns its path.
pub fn compile_file(compiler: &str, std: &str, source: &Path, name: &str, link: Link) -> PathBuf {
    let output = unique(name);
    compile(compiler, std, source, &output, link);
    output
}

/// Compiles tests/c/<name>.c with `cc` and returns the program's path.
pub fn compile_c(name: &str, link: Link) -> PathBuf {
    let output = unique(&format!("{name}-{link:?}"));
    compile(
        "cc",
        "-std=c11",
        &crate_dir().join(format!("tests/c/{name}.c")),
        &output,
        link,
    );
    output
}

/// Compiles tests/cpp/<name>.cpp with `c++` and returns the program's path.
pub fn compile_cpp(name: &str) -> PathBuf {
    let output = unique(name);
    compile(
        "c++",
        "-std=c++17",
        &crate_dir().join(format!("tests/cpp/{name}.cpp")),
        &output,
        Link::Shared,
    );
    output
}

/// Runs `command` to its end within `limit` (killed after), and returns its standard output;
/// fails unless it exits 0, showing both outputs.
pub fn run(command: &mut Command, limit: Duration) -> String {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the program") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    match status {
        Some(status) if status.success() => out,
        Some(status) => panic!("{command:?} failed ({status})\nstdout:\n{out}\nstderr:\n{err}"),
        None => panic!("{command:?} still ran after {limit:?}\nstdout:\n{out}\nstderr:\n{err}"),
    }
}

/// Runs `program` (with `args`) under valgrind's memcheck and returns its standard output: any
/// invalid read or write, use of uninitialised memory, bad free, or leak definitely lost makes
/// it exit 99, which fails the test. `None`, with a notice, when valgrind is not installed
/// (.ci/run installs it).
pub fn under_valgrind(program: &Path, args: &[&str]) -> Option<String> {
    let found = Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        println!("NOTICE: valgrind is not installed: the memcheck run is skipped (CI installs it)");
        return None;
    }
    let mut command = Command::new("valgrind");
    command
        .args([
            "--error-exitcode=99",
            "--leak-check=full",
            "--show-leak-kinds=definite",
            "--errors-for-leak-kinds=definite",
            "--quiet",
        ])
        .arg(program)
        .args(args)
        // The library's own directory, so valgrind's loader finds it too.
        .env("LD_LIBRARY_PATH", lib_dir());
    Some(run(&mut command, Duration::from_secs(300)))
}
