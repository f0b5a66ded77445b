//! Calls into the C ABI from inside its own callbacks, through the Rust symbols of the same
//! functions: freeing the client inside one of its event callbacks returns (bounded) and frees
//! the handle; subscribing and reading health inside a callback work.

use genesys_notify::emulator::Emulator;
use genesys_notify_c::*;
use std::ffi::{c_void, CString};
use std::sync::mpsc::{channel, Sender};
use std::time::Duration;

struct Context {
    client: *mut gn_client,
    done: Sender<(gn_result, gn_result, gn_result)>,
}

unsafe extern "C" fn free_client_inside(userdata: *mut c_void, _event: *const gn_event) {
    // SAFETY: `userdata` is the `Context` below, alive until the test reads `done`.
    let context = unsafe { &*(userdata as *const Context) };
    let topic = CString::new("v2.users.u2.presence").unwrap();
    let names = [topic.as_ptr()];
    let mut report = std::ptr::null_mut();
    let subscribed = gn_client_subscribe(context.client, names.as_ptr(), 1, &mut report);
    let _ = gn_report_free(report);
    let mut needed = 0;
    let health = gn_client_health_json(context.client, std::ptr::null_mut(), 0, &mut needed);
    let freed = gn_client_free(context.client);
    let _ = context.done.send((subscribed, health, freed));
}

fn c(text: &str) -> CString {
    CString::new(text).unwrap()
}

#[test]
fn a_callback_can_subscribe_read_health_and_free_its_own_client() {
    let emu = Emulator::start().unwrap();
    let mut builder = std::ptr::null_mut();
    assert_eq!(gn_builder_new(&mut builder), gn_result::GN_OK);
    let _ = gn_builder_api_base(builder, c(&emu.api_base()).as_ptr());
    let _ = gn_builder_login_base(builder, c(&emu.login_base()).as_ptr());
    let _ = gn_builder_client_credentials(
        builder,
        c(emu.client_id()).as_ptr(),
        c(emu.client_secret()).as_ptr(),
    );
    let _ = gn_builder_proxy_from_env(builder, false);
    let _ = gn_builder_drop_timeout_ms(builder, 5_000);
    let mut client = std::ptr::null_mut();
    assert_eq!(gn_builder_build(builder, &mut client), gn_result::GN_OK);
    assert_eq!(gn_builder_free(builder), gn_result::GN_OK);

    let (done, results) = channel();
    let context = Box::new(Context { client, done });
    let mut guard = std::ptr::null_mut();
    let pattern = c("v2.users.*.presence");
    assert_eq!(
        gn_client_on(
            client,
            pattern.as_ptr(),
            Some(free_client_inside),
            &*context as *const Context as *mut c_void,
            None,
            &mut guard,
        ),
        gn_result::GN_OK
    );
    let topic = c("v2.users.u1.presence");
    let names = [topic.as_ptr()];
    let mut report = std::ptr::null_mut();
    assert_eq!(
        gn_client_subscribe(client, names.as_ptr(), 1, &mut report),
        gn_result::GN_OK
    );
    assert_eq!(gn_report_free(report), gn_result::GN_OK);
    emu.publish("v2.users.u1.presence", serde_json::json!({"seq": 1}));

    let (subscribed, health, freed) = results
        .recv_timeout(Duration::from_secs(60))
        .expect("the callback ran and returned");
    assert_eq!(subscribed, gn_result::GN_OK);
    assert_eq!(health, gn_result::GN_BUFFER_TOO_SMALL);
    // A shutdown from a callback cannot join the thread it runs on; bounded either way.
    assert!(
        freed == gn_result::GN_OK || freed == gn_result::GN_TIMEOUT,
        "{freed:?}"
    );
    assert_eq!(
        gn_client_shutdown(client, 10),
        gn_result::GN_INVALID_ARGUMENT,
        "the handle is gone"
    );
    assert_eq!(gn_guard_free(guard), gn_result::GN_OK);
    drop(context);
}
