//! Token refresh of clients built with a shared `ThreadPool` (issue 20): no refresher thread
//! per client, yet every client's token is refreshed ahead of expiry (crate guarantee 4), and a
//! token source that hangs for one client holds one pool thread, not the others' refreshes.
mod util;

use genesys_notify::emulator::EmulatorConfig;
use genesys_notify::{AccessToken, Client, Lifecycle, ThreadPool, TokenError};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use util::*;

const WAIT: Duration = Duration::from_secs(30);

fn refreshes(r: &Recorder) -> usize {
    r.count(|e| matches!(e, Lifecycle::TokenRefreshed { .. }))
}

#[test]
fn pooled_clients_refresh_their_tokens_ahead_of_expiry() {
    let emu = emulator_with(EmulatorConfig::default().token_lifetime(Duration::from_secs(3)));
    let pool = ThreadPool::new(1).unwrap();
    let clients: Vec<Client> = (0..3)
        .map(|_| builder(&emu).thread_pool(&pool).build().unwrap())
        .collect();
    let recorders: Vec<Recorder> = clients.iter().map(Recorder::new).collect();
    for r in &recorders {
        assert!(wait_until(WAIT, || refreshes(r) >= 3), "{:?}", r.snapshot());
    }
    for client in &clients {
        client.verify_token().unwrap();
    }
    assert_eq!(
        recorders
            .iter()
            .map(|r| r.count(|e| matches!(e, Lifecycle::TokenRefreshFailed { .. })))
            .sum::<usize>(),
        0
    );
}

#[test]
fn a_hung_token_source_of_one_client_does_not_stop_another_clients_refreshes() {
    let emu = emulator_with(EmulatorConfig::default().token_lifetime(Duration::from_secs(3)));
    let pool = ThreadPool::new(2).unwrap();
    let (release, hold) = crossbeam_channel::bounded::<()>(0);
    let entered = Arc::new(AtomicBool::new(false));
    let flag = entered.clone();
    let hung = Client::builder()
        .api_base(emu.api_base())
        .thread_pool(&pool)
        .token_source(move || -> Result<AccessToken, TokenError> {
            flag.store(true, Ordering::SeqCst);
            let _ = hold.recv_timeout(WAIT);
            Err(TokenError::Transport("gave up".into()))
        })
        .build()
        .unwrap();
    assert!(wait_until(WAIT, || entered.load(Ordering::SeqCst)));
    let client = builder(&emu).thread_pool(&pool).build().unwrap();
    let recorder = Recorder::new(&client);
    assert!(
        wait_until(WAIT, || refreshes(&recorder) >= 3),
        "{:?}",
        recorder.snapshot()
    );
    drop(release);
    hung.shutdown(WAIT).unwrap();
    client.shutdown(WAIT).unwrap();
}

/// A pooled client whose token source panics: each panic is a failed refresh, reported and
/// retried, and the pool's only thread lives on for another client's events.
#[test]
fn a_panicking_token_source_of_a_pooled_client_is_retried_and_costs_no_thread() {
    let emu = emulator_with(EmulatorConfig::default().max_channels(4));
    let pool = ThreadPool::new(1).unwrap();
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = calls.clone();
    let panicking = Client::builder()
        .api_base(emu.api_base())
        .thread_pool(&pool)
        .token_source(move || -> Result<AccessToken, TokenError> {
            count.fetch_add(1, Ordering::SeqCst);
            panic!("a token source's bug")
        })
        .build()
        .unwrap();
    let failures = Recorder::new(&panicking);
    assert!(
        wait_until(WAIT, || failures
            .count(|e| matches!(e, Lifecycle::TokenRefreshFailed { .. }))
            >= 2),
        "{:?}",
        failures.snapshot()
    );
    assert!(calls.load(Ordering::SeqCst) >= 2);
    let client = builder(&emu).thread_pool(&pool).build().unwrap();
    let topic = presence_topics(1).pop().unwrap();
    let (tx, rx) = crossbeam_channel::unbounded();
    let _guard = client
        .on(&topic, move |_: &genesys_notify::Event| {
            let _ = tx.send(());
        })
        .unwrap();
    assert!(client.subscribe([&topic]).unwrap().rejected.is_empty());
    wait_sockets(&emu, 1);
    assert_eq!(emu.publish(&topic, presence_body(0)), 1);
    rx.recv_timeout(WAIT)
        .expect("delivered on the pool's thread");
    panicking.shutdown(WAIT).unwrap();
    client.shutdown(WAIT).unwrap();
}

/// A pooled client dropped while its token fetch hangs on a worker: the drop returns within the
/// client's drop timeout (the fetch ends on its own later), and the pool goes on.
#[test]
fn a_pooled_client_dropped_while_its_token_fetch_hangs_returns_in_time() {
    let emu = emulator_with(EmulatorConfig::default().max_channels(4));
    let pool = ThreadPool::new(2).unwrap();
    let (release, hold) = crossbeam_channel::bounded::<()>(0);
    let entered = Arc::new(AtomicBool::new(false));
    let flag = entered.clone();
    let hung = Client::builder()
        .api_base(emu.api_base())
        .thread_pool(&pool)
        .drop_timeout(Duration::from_secs(2))
        .token_source(move || -> Result<AccessToken, TokenError> {
            flag.store(true, Ordering::SeqCst);
            let _ = hold.recv_timeout(WAIT);
            Err(TokenError::Transport("gave up".into()))
        })
        .build()
        .unwrap();
    assert!(wait_until(WAIT, || entered.load(Ordering::SeqCst)));
    let started = std::time::Instant::now();
    drop(hung);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the drop took {:?}",
        started.elapsed()
    );
    drop(release);
    let client = builder(&emu).thread_pool(&pool).build().unwrap();
    client.verify_token().unwrap();
    client.shutdown(WAIT).unwrap();
    pool.shutdown(WAIT).unwrap();
}
