//! The README's examples as a user pastes them: "Testing your own code with the emulator" runs
//! here as it is shown (`the_readme_shows_this_example` keeps the two the same); the Usage
//! example is compiled as a doc test (src/lib.rs, `readme`).

// README: begin
use genesys_notify::emulator::{Emulator, Fault, Target};
use genesys_notify::Client;
use std::time::Duration;

#[test]
fn my_code_sees_presence_changes() {
    let emu = Emulator::start().unwrap();
    let client = Client::builder()
        .api_base(emu.api_base())
        .login_base(emu.login_base())
        .client_credentials(emu.client_id(), emu.client_secret())
        .build()
        .unwrap();
    // ... register your listeners, then:
    let report = client
        .subscribe(["v2.users.9ed7d9f6-0c59-4360-ac54-40dd35eb9c2f.presence"])
        .unwrap();
    assert_eq!(report.permitted.len(), 1);
    emu.publish(
        "v2.users.9ed7d9f6-0c59-4360-ac54-40dd35eb9c2f.presence",
        serde_json::json!({"presenceDefinition": {"systemPresence": "BUSY"}}),
    );
    // ... assert on what your code did; then try a fault:
    emu.inject(Fault::DropSocket {
        target: Target::AllSockets,
    });
    client.shutdown(Duration::from_secs(5)).unwrap();
}
// README: end

#[test]
fn the_readme_shows_this_example() {
    let this = include_str!("readme.rs");
    let begin = this.find("// README: begin\n").unwrap() + "// README: begin\n".len();
    let end = this.find("// README: end\n").unwrap();
    let example = &this[begin..end];
    let readme = include_str!("../README.md");
    assert!(
        readme.contains(&format!("```rust,ignore\n{example}```\n")),
        "README.md no longer shows tests/readme.rs's example"
    );
}
