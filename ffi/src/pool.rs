//! pool.rs: `gn_thread_pool_*`, the C face of `ThreadPool`: threads shared by many clients of
//! one process, handed to their builders with `gn_builder_thread_pool`.

use crate::builder::{gn_builder, step};
use crate::gn_result;
use crate::handle::Table;
use crate::result::{call, check_out, put};
use genesys_notify::ThreadPool;
use std::time::Duration;

/// A thread pool shared by clients (`ThreadPool`). Made by `gn_thread_pool_new`, freed by
/// `gn_thread_pool_free`. Its functions may be called from any thread.
#[allow(non_camel_case_types)]
pub struct gn_thread_pool {
    _opaque: [u8; 0],
}

pub(crate) static POOLS: Table<ThreadPool> = Table::new("gn_thread_pool");

/// Starts a pool of `threads` worker threads and one timer thread (`ThreadPool::new`);
/// `*out` receives it. Clients built with it (`gn_builder_thread_pool`) run their callbacks and
/// token refreshes on these threads instead of threads of their own: each adds only its
/// channel threads. A callback that blocks holds one of the pool's threads, and with all of
/// them held every pooled client's events wait.
///
/// Errors: `GN_INVALID_ARGUMENT` when `out` is NULL; `GN_CONFIG` when `threads` is 0 or above
/// 256; `GN_SYSTEM` when a thread could not be started.
#[no_mangle]
pub extern "C" fn gn_thread_pool_new(threads: usize, out: *mut *mut gn_thread_pool) -> gn_result {
    call("gn_thread_pool_new", || {
        check_out(out, "out")?;
        let pool = ThreadPool::new(threads)?;
        put(out, POOLS.insert(pool), "out")
    })
}

/// Ends the pool within `timeout_ms` milliseconds (`ThreadPool::shutdown`): each thread ends
/// after the callback it is running, events still queued are not delivered. Clients built with
/// it then fail their calls with `GN_SHUTDOWN` (they must still be shut down or freed, which
/// closes their sockets), and `gn_builder_build` with it fails with `GN_CONFIG`. The handle must
/// still be freed.
///
/// Errors: `GN_TIMEOUT` when a thread did not end in time (a callback that does not return);
/// `GN_INVALID_ARGUMENT` for a handle that is not live.
#[no_mangle]
pub extern "C" fn gn_thread_pool_shutdown(pool: *mut gn_thread_pool, timeout_ms: u64) -> gn_result {
    call("gn_thread_pool_shutdown", || {
        let pool = POOLS.get(pool, "pool")?;
        Ok(pool.shutdown(Duration::from_millis(timeout_ms))?)
    })
}

/// Frees the handle. The pool's threads end once no client built with it and no builder it was
/// given to is left (they are never waited for); clients keep working meanwhile. NULL is a
/// no-op.
///
/// Errors: `GN_INVALID_ARGUMENT` for a handle that is not live (freed already).
#[no_mangle]
pub extern "C" fn gn_thread_pool_free(pool: *mut gn_thread_pool) -> gn_result {
    call("gn_thread_pool_free", || {
        if pool.is_null() {
            return Ok(());
        }
        drop(POOLS.remove(pool, "pool")?);
        Ok(())
    })
}

/// Builds this builder's clients with `pool` (`ClientBuilder::thread_pool`): they start no
/// dispatcher, lifecycle or token-refresher thread of their own. The builder holds the pool
/// until it is freed, so the pool's handle may be freed first.
///
/// Errors: `GN_INVALID_ARGUMENT` when the builder or the pool is not live.
#[no_mangle]
pub extern "C" fn gn_builder_thread_pool(
    builder: *mut gn_builder,
    pool: *const gn_thread_pool,
) -> gn_result {
    step("gn_builder_thread_pool", builder, || {
        let pool: ThreadPool = (*POOLS.get(pool, "pool")?).clone();
        Ok(Box::new(move |b| b.thread_pool(&pool)))
    })
}
