//! `gn_thread_pool_*` misused through the Rust symbols of the C ABI: NULL handles get
//! `GN_INVALID_ARGUMENT` (NULL free is a no-op), a freed pool is refused, a pool's handle freed
//! before the builder and client that use it leaves them working, shutdown after free is
//! refused, and nothing crashes.

use genesys_notify_c::*;

#[test]
fn null_and_freed_pool_handles_are_refused_not_crashed() {
    let null_pool: *mut gn_thread_pool = std::ptr::null_mut();
    assert_eq!(
        gn_thread_pool_shutdown(null_pool, 1000),
        gn_result::GN_INVALID_ARGUMENT
    );
    assert_eq!(gn_thread_pool_free(null_pool), gn_result::GN_OK);
    let mut builder = std::ptr::null_mut();
    assert_eq!(gn_builder_new(&mut builder), gn_result::GN_OK);
    assert_eq!(
        gn_builder_thread_pool(builder, null_pool),
        gn_result::GN_INVALID_ARGUMENT
    );
    let mut pool = std::ptr::null_mut();
    assert_eq!(gn_thread_pool_new(2, &mut pool), gn_result::GN_OK);
    assert!(!pool.is_null());
    assert_eq!(
        gn_builder_thread_pool(std::ptr::null_mut(), pool),
        gn_result::GN_INVALID_ARGUMENT
    );
    // The builder holds the pool: its handle may go first.
    assert_eq!(gn_builder_thread_pool(builder, pool), gn_result::GN_OK);
    assert_eq!(gn_thread_pool_free(pool), gn_result::GN_OK);
    assert_eq!(gn_thread_pool_free(pool), gn_result::GN_INVALID_ARGUMENT);
    assert_eq!(
        gn_thread_pool_shutdown(pool, 1000),
        gn_result::GN_INVALID_ARGUMENT
    );
    assert_eq!(
        gn_builder_thread_pool(builder, pool),
        gn_result::GN_INVALID_ARGUMENT
    );
    assert_eq!(gn_builder_free(builder), gn_result::GN_OK);
}
