//! Running `tail` (the example, or the installed `genesys-tail`) against an emulator, for the
//! tail tests: the binary, a command that takes nothing from the environment, and the waits.

use genesys_notify::emulator::Emulator;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

/// The built `tail` example: `cargo test` builds the examples next to the test binaries
/// (target/<profile>/examples/).
pub fn example() -> PathBuf {
    let mut path = std::env::current_exe().unwrap();
    path.pop(); // the test binary's name
    if path.ends_with("deps") {
        path.pop();
    }
    path.join("examples").join("tail")
}

/// `binary` with none of the Genesys settings of the environment (region, bases, token, client
/// credentials): only what the test gives counts.
pub fn isolated(binary: &Path) -> Command {
    let mut command = Command::new(binary);
    for name in [
        "GENESYS_REGION",
        "GENESYS_API_BASE",
        "GENESYS_LOGIN_BASE",
        "GENESYS_ACCESS_TOKEN",
        "GENESYS_CLIENT_ID",
        "GENESYS_CLIENT_SECRET",
    ] {
        command.env_remove(name);
    }
    command
}

/// `binary` pointed at `emu`'s API and login bases, without credentials.
pub fn pointed_at(binary: &Path, emu: &Emulator) -> Command {
    let mut command = isolated(binary);
    command
        .args(["--api-base", &emu.api_base()])
        .args(["--login-base", &emu.login_base()]);
    command
}

/// `binary` pointed at `emu` with its client credentials.
pub fn command(binary: &Path, emu: &Emulator) -> Command {
    let mut command = pointed_at(binary, emu);
    command
        .args(["--client-id", emu.client_id()])
        .args(["--client-secret", emu.client_secret()]);
    command
}

/// Waits until the emulator has a connected socket on a channel with topics (`tail` follows).
pub fn wait_following(emu: &Emulator) {
    assert!(
        emu.wait_for(Duration::from_secs(20), |e| e
            .channels()
            .iter()
            .any(|c| c.connected && !c.topics.is_empty())),
        "tail never followed its topics"
    );
}

/// Waits up to 20 s for `child` to exit, calling `each` every 50 ms meanwhile; kills it and
/// panics naming `after` (what should have stopped it) if it does not.
pub fn wait_exit(child: &mut Child, after: &str, mut each: impl FnMut()) -> ExitStatus {
    let started = Instant::now();
    loop {
        each();
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("tail did not stop within 20 s of {after}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
