//! handle.rs owns the handle tables: what C holds is a number, never a pointer to Rust memory,
//! so a freed, doubly freed or mistaken handle is found out and refused instead of being
//! dereferenced.
//!
//! A handle is a process-wide counter value, never reused, handed to C as an opaque pointer
//! (`gn_client *`, ...). Each kind of handle has its own table; looking a handle up in the
//! wrong table fails like looking up a freed one.

use crate::result::Failure;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Handle numbers, shared by every table so that no two live handles of any kind are equal.
static NEXT: AtomicUsize = AtomicUsize::new(1);

pub(crate) struct Table<T> {
    /// The C type's name, for messages (`"gn_client"`).
    kind: &'static str,
    live: Mutex<BTreeMap<usize, Arc<T>>>,
}

impl<T> Table<T> {
    pub const fn new(kind: &'static str) -> Table<T> {
        Table {
            kind,
            live: Mutex::new(BTreeMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<usize, Arc<T>>> {
        // The map stays consistent whatever panicked while it was held (insert and remove
        // are single operations).
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores `value` and returns its new handle, typed as the C side's opaque pointer.
    pub fn insert<C>(&self, value: T) -> *mut C {
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, Arc::new(value));
        std::ptr::without_provenance_mut(id)
    }

    /// The live value of `handle` (argument `what`).
    pub fn get<C>(&self, handle: *const C, what: &str) -> Result<Arc<T>, Failure> {
        let id = handle.addr();
        if id == 0 {
            return Err(Failure::invalid(format!("{what} is NULL")));
        }
        self.lock()
            .get(&id)
            .cloned()
            .ok_or_else(|| self.not_live(what))
    }

    /// Takes `handle` out of the table; the caller drops the value outside the table's lock (a
    /// drop may run user code, which may call back into the table).
    pub fn remove<C>(&self, handle: *const C, what: &str) -> Result<Arc<T>, Failure> {
        let id = handle.addr();
        if id == 0 {
            return Err(Failure::invalid(format!("{what} is NULL")));
        }
        self.lock().remove(&id).ok_or_else(|| self.not_live(what))
    }

    fn not_live(&self, what: &str) -> Failure {
        Failure::invalid(format!(
            "{what} is not a live {} handle (already freed, never made, or of another kind)",
            self.kind
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::gn_result;

    #[test]
    fn a_handle_freed_twice_is_refused_the_second_time() {
        let table: Table<String> = Table::new("gn_thing");
        let h: *mut u8 = table.insert("x".to_owned());
        let copy = h;
        assert_eq!(*table.remove(h, "thing").ok().unwrap(), "x");
        let e = table.remove(copy, "thing").err().unwrap();
        assert_eq!(e.code, gn_result::GN_INVALID_ARGUMENT);
        assert!(
            e.message.contains("not a live gn_thing handle"),
            "{}",
            e.message
        );
    }

    #[test]
    fn handles_of_another_table_are_not_live() {
        let a: Table<u32> = Table::new("gn_a");
        let b: Table<u32> = Table::new("gn_b");
        let h: *mut u8 = a.insert(1);
        assert!(b.get(h, "b").is_err());
        assert!(a.get(h, "a").is_ok());
        assert!(a.get(std::ptr::null::<u8>(), "a").is_err());
    }
}
