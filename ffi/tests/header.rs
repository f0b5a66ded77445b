//! The committed header is what the code generates: a change to the Rust side can never change
//! the C contract silently. `GN_BLESS=1 cargo test -p genesys-notify-ffi --test header` writes
//! the new header (review the diff: numbers and signatures are a contract).

use std::path::Path;

#[test]
fn the_committed_header_is_what_cbindgen_generates() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config =
        cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml parses");
    let bindings = cbindgen::Builder::new()
        .with_crate(crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header");
    let mut generated = Vec::new();
    bindings.write(&mut generated);
    let generated = String::from_utf8(generated).expect("the header is UTF-8");

    let path = crate_dir.join("include/genesys_notify.h");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != generated {
        if std::env::var_os("GN_BLESS").is_some() {
            std::fs::write(&path, &generated).expect("write the header");
            return;
        }
        let first = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(committed.lines().count().min(generated.lines().count()));
        panic!(
            "{} differs from what the code generates (first at line {}: committed {:?}, \
             generated {:?}); run GN_BLESS=1 cargo test -p genesys-notify-ffi --test header \
             and commit the header",
            path.display(),
            first + 1,
            committed.lines().nth(first),
            generated.lines().nth(first),
        );
    }
    for name in [
        "gn_version",
        "gn_client_on",
        "gn_guard_free",
        "gn_emulator_start",
    ] {
        assert!(generated.contains(&format!("{name}(")), "{name} missing");
    }
}

/// ffi/README.md maps every function of the header to its Rust counterpart.
#[test]
fn the_readme_table_names_every_function_of_the_header() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let header = std::fs::read_to_string(crate_dir.join("include/genesys_notify.h")).unwrap();
    let readme = std::fs::read_to_string(crate_dir.join("README.md")).unwrap();
    let mut missing = Vec::new();
    let mut count = 0;
    for line in header.lines().filter(|l| !l.starts_with("//")) {
        let Some(open) = line.find('(') else { continue };
        let Some(name) = line[..open].rsplit([' ', '*']).next() else {
            continue;
        };
        if !name.starts_with("gn_") {
            continue;
        }
        count += 1;
        if !readme.contains(&format!("`{name}`")) {
            missing.push(name.to_owned());
        }
    }
    assert!(count > 60, "only {count} functions found in the header");
    assert!(
        missing.is_empty(),
        "ffi/README.md does not list {missing:?}"
    );
}
