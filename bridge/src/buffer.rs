//! The buffer owns the records waiting for Redis, bounded in bytes; it never talks to Redis.
//!
//! A record stays counted from the moment the callback hands it over until Redis acknowledged
//! it (at least once): the writer takes a batch out, and either acknowledges it or puts it
//! back in front, in its order. The writer may take the next batch while one is in flight
//! (to encode it meanwhile): batches are acknowledged in the order taken, and only the batch
//! taken last is put back whole. Past the byte budget, events are dropped and counted per
//! shard, with the time range and topics they covered, so that a gap entry can say so once
//! Redis takes writes again. Gap and lifecycle records are never dropped: they are small, and
//! losing one would lose the account of a loss.

use crate::entry::Record;
use parking_lot::{Condvar, Mutex};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// A record on its way to a shard's stream.
#[derive(Clone, Debug)]
pub struct Pending {
    /// The shard whose stream it goes to.
    pub shard: u32,
    /// The record.
    pub record: Record,
    weight: usize,
}

impl Pending {
    /// Bytes counted for it against the budget.
    pub fn weight(&self) -> usize {
        self.weight
    }
}

/// Events dropped for one shard since its last drop gap was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Drops {
    /// How many.
    pub count: u64,
    /// When the first of them was received.
    pub first: SystemTime,
    /// When the last of them was received.
    pub last: SystemTime,
    /// Their subscription topics.
    pub topics: BTreeSet<String>,
}

/// The records waiting for Redis, and the events dropped past the budget.
#[derive(Debug)]
pub struct Buffer {
    queue: VecDeque<Pending>,
    /// Bytes of the queued and the in-flight records.
    bytes: usize,
    budget: usize,
    /// The batches taken out and not yet acknowledged, oldest first: per batch, its shards
    /// with the oldest receive time of their events in it (`None`: only gap or lifecycle
    /// records).
    in_flight: VecDeque<BTreeMap<u32, Option<SystemTime>>>,
    drops: BTreeMap<u32, Drops>,
    dropped_total: u64,
}

impl Buffer {
    /// An empty buffer holding at most `budget` bytes of events.
    pub fn new(budget: usize) -> Buffer {
        Buffer {
            queue: VecDeque::new(),
            bytes: 0,
            budget,
            in_flight: VecDeque::new(),
            drops: BTreeMap::new(),
            dropped_total: 0,
        }
    }

    /// Queues an event record for `shard` (of subscription topic `subscription`); past the
    /// budget it is dropped and counted instead (→ false).
    pub fn push_event(&mut self, shard: u32, subscription: &str, record: Record) -> bool {
        let weight = record.weight();
        if self.bytes + weight > self.budget {
            let at = record.received_at().unwrap_or_else(SystemTime::now);
            let drops = self.drops.entry(shard).or_insert_with(|| Drops {
                count: 0,
                first: at,
                last: at,
                topics: BTreeSet::new(),
            });
            drops.count += 1;
            drops.first = drops.first.min(at);
            drops.last = drops.last.max(at);
            if !drops.topics.contains(subscription) {
                drops.topics.insert(subscription.to_owned());
            }
            self.dropped_total += 1;
            return false;
        }
        self.bytes += weight;
        self.queue.push_back(Pending {
            shard,
            record,
            weight,
        });
        true
    }

    /// Queues a gap or lifecycle record, whatever the budget.
    pub fn push_forced(&mut self, shard: u32, record: Record) {
        let weight = record.weight();
        self.bytes += weight;
        self.queue.push_back(Pending {
            shard,
            record,
            weight,
        });
    }

    /// Takes up to `max` records out, oldest first, as one batch; they stay counted until
    /// [`Self::ack`] or [`Self::requeue`]. An empty answer is no batch.
    pub fn take(&mut self, max: usize) -> Vec<Pending> {
        let n = self.queue.len().min(max);
        let batch: Vec<Pending> = self.queue.drain(..n).collect();
        if batch.is_empty() {
            return batch;
        }
        let mut shards: BTreeMap<u32, Option<SystemTime>> = BTreeMap::new();
        for p in &batch {
            let oldest = shards.entry(p.shard).or_insert(None);
            if let Some(at) = p.record.received_at() {
                *oldest = Some(oldest.map_or(at, |o| o.min(at)));
            }
        }
        self.in_flight.push_back(shards);
        batch
    }

    /// Redis acknowledged (or the writer gave up on) records weighing `bytes`: the oldest
    /// batch in flight is done (what of it is not acknowledged, the caller puts back with
    /// [`Self::requeue`] once the batches taken after it are back).
    pub fn ack(&mut self, bytes: usize) {
        self.bytes = self.bytes.saturating_sub(bytes);
        self.in_flight.pop_front();
    }

    /// Puts records taken out back in front, in their order (Redis did not take them): the
    /// newest batch in flight, or what is left of the oldest one after its [`Self::ack`].
    /// To put back several batches, put back the newest first.
    pub fn requeue(&mut self, batch: Vec<Pending>) {
        for p in batch.into_iter().rev() {
            self.queue.push_front(p);
        }
        self.in_flight.pop_back();
    }

    /// Forgets the queued records of `shard` (its lease is lost: the next holder's gap covers
    /// them); returns how many events were among them.
    pub fn discard_shard(&mut self, shard: u32) -> u64 {
        let mut events = 0;
        let mut freed = 0;
        self.queue.retain(|p| {
            if p.shard != shard {
                return true;
            }
            freed += p.weight;
            events += u64::from(p.record.received_at().is_some());
            false
        });
        self.bytes -= freed;
        self.drops.remove(&shard);
        events
    }

    /// The drops of `shard` not yet reported, taken (the caller writes the gap entry).
    pub fn take_drops(&mut self, shard: u32) -> Option<Drops> {
        self.drops.remove(&shard)
    }

    /// Shards with drops not yet reported.
    pub fn shards_with_drops(&self) -> Vec<u32> {
        self.drops.keys().copied().collect()
    }

    /// The moment before which every event of `shard` handed over is in Redis or reported:
    /// the receive time of its oldest event queued, in flight or dropped unreported, else
    /// `now`.
    pub fn watermark(&self, shard: u32, now: SystemTime) -> SystemTime {
        let queued = self
            .queue
            .iter()
            .filter(|p| p.shard == shard)
            .filter_map(|p| p.record.received_at());
        let in_flight = self
            .in_flight
            .iter()
            .filter_map(|batch| batch.get(&shard).copied().flatten());
        let dropped = self.drops.get(&shard).map(|d| d.first);
        queued
            .chain(in_flight)
            .chain(dropped)
            .fold(now, SystemTime::min)
    }

    /// [`Self::watermark`] of every shard with something waiting, in one pass over the queue
    /// (shards absent: nothing waits, their watermark is `now`).
    pub fn watermarks(&self) -> BTreeMap<u32, SystemTime> {
        let mut oldest: BTreeMap<u32, SystemTime> = BTreeMap::new();
        let in_flight = self
            .in_flight
            .iter()
            .flatten()
            .filter_map(|(shard, at)| at.map(|at| (*shard, at)));
        let queued = self
            .queue
            .iter()
            .filter_map(|p| p.record.received_at().map(|at| (p.shard, at)));
        let dropped = self.drops.iter().map(|(shard, d)| (*shard, d.first));
        for (shard, at) in in_flight.chain(queued).chain(dropped) {
            let entry = oldest.entry(shard).or_insert(at);
            *entry = (*entry).min(at);
        }
        oldest
    }

    /// Whether a record of `shard` is queued or in flight.
    pub fn holds(&self, shard: u32) -> bool {
        self.in_flight
            .iter()
            .any(|batch| batch.contains_key(&shard))
            || self.queue.iter().any(|p| p.shard == shard)
    }

    /// Bytes held (queued and in flight).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Records queued (not in flight).
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Events dropped since the start.
    pub fn dropped_total(&self) -> u64 {
        self.dropped_total
    }

    /// The byte budget.
    pub fn budget(&self) -> usize {
        self.budget
    }
}

/// A [`Buffer`] shared between the callbacks that fill it and the writer thread that empties
/// it.
#[derive(Debug)]
pub struct Intake {
    buffer: Mutex<Buffer>,
    ready: Condvar,
}

impl Intake {
    /// An empty intake with a budget of `budget` bytes.
    pub fn new(budget: usize) -> Arc<Intake> {
        Arc::new(Intake {
            buffer: Mutex::new(Buffer::new(budget)),
            ready: Condvar::new(),
        })
    }

    /// Runs `f` on the buffer under its lock, then wakes the writer if it waits for records.
    pub fn with<T>(&self, f: impl FnOnce(&mut Buffer) -> T) -> T {
        let mut buffer = self.buffer.lock();
        let result = f(&mut buffer);
        let ready = !buffer.is_empty();
        drop(buffer);
        if ready {
            self.ready.notify_one();
        }
        result
    }

    /// Waits up to `timeout` for records, then takes up to `max` of them.
    pub fn take(&self, max: usize, timeout: Duration) -> Vec<Pending> {
        let mut buffer = self.buffer.lock();
        if buffer.is_empty() {
            self.ready.wait_for(&mut buffer, timeout);
        }
        buffer.take(max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn event(ms: u64, body_len: usize) -> Record {
        Record::Event {
            topic: "t".into(),
            body: "x".repeat(body_len),
            correlation_id: None,
            snapshot: false,
            received_at: UNIX_EPOCH + Duration::from_millis(ms),
        }
    }

    #[test]
    fn events_past_the_budget_are_dropped_and_counted_with_their_range() {
        let one = event(0, 100).weight();
        let mut b = Buffer::new(one * 3);
        for ms in 0..5 {
            b.push_event(ms as u32 % 2, "sub", event(ms, 100));
        }
        assert_eq!(b.len(), 3);
        assert_eq!(b.bytes(), one * 3);
        assert_eq!(b.dropped_total(), 2);
        // Events 3 (shard 1) and 4 (shard 0) were dropped.
        let d0 = b.take_drops(0).unwrap();
        assert_eq!(d0.count, 1);
        assert_eq!(d0.first, UNIX_EPOCH + Duration::from_millis(4));
        assert_eq!(d0.topics.iter().collect::<Vec<_>>(), ["sub"]);
        assert!(b.take_drops(0).is_none(), "taken once");
        assert_eq!(b.shards_with_drops(), [1]);
    }

    #[test]
    fn a_shard_is_held_while_any_of_its_records_is_in_flight() {
        let mut b = Buffer::new(1 << 20);
        b.push_forced(
            3,
            Record::Lifecycle {
                event: "released".into(),
                message: String::new(),
            },
        );
        let batch = b.take(10);
        assert!(b.is_empty());
        assert!(
            b.holds(3),
            "a lifecycle record in flight counts: a release must wait for it"
        );
        b.ack(batch.iter().map(Pending::weight).sum());
        assert!(!b.holds(3));
    }

    #[test]
    fn a_second_batch_in_flight_keeps_its_watermark_after_the_first_is_acknowledged() {
        let now = UNIX_EPOCH + Duration::from_secs(100);
        let mut b = Buffer::new(1 << 20);
        for ms in [1_000, 2_000, 3_000] {
            b.push_event(0, "s", event(ms, 1));
        }
        let first = b.take(1);
        let second = b.take(1);
        assert_eq!(
            b.watermark(0, now),
            UNIX_EPOCH + Duration::from_millis(1_000)
        );
        b.ack(first.iter().map(Pending::weight).sum());
        assert_eq!(
            b.watermark(0, now),
            UNIX_EPOCH + Duration::from_millis(2_000),
            "the second batch is still in flight"
        );
        assert!(b.holds(0));
        // The second batch back, then the rest: order kept, nothing in flight.
        b.requeue(second);
        let all = b.take(10);
        let times: Vec<_> = all
            .iter()
            .map(|p| p.record.received_at().unwrap())
            .collect();
        assert_eq!(
            times,
            [2_000, 3_000].map(|ms| UNIX_EPOCH + Duration::from_millis(ms))
        );
        b.ack(all.iter().map(Pending::weight).sum());
        assert!(!b.holds(0));
        assert_eq!(b.watermark(0, now), now);

        // A failed first batch with a second in flight: the newest goes back first.
        for ms in [4_000, 5_000] {
            b.push_event(0, "s", event(ms, 1));
        }
        let first = b.take(1);
        let second = b.take(1);
        b.requeue(second);
        b.requeue(first);
        assert!(!b.watermarks().is_empty());
        let again = b.take(10);
        assert_eq!(
            again
                .iter()
                .map(|p| p.record.received_at().unwrap())
                .collect::<Vec<_>>(),
            [4_000, 5_000].map(|ms| UNIX_EPOCH + Duration::from_millis(ms))
        );
    }

    #[test]
    fn gap_and_lifecycle_records_ignore_the_budget() {
        let mut b = Buffer::new(0);
        assert!(!b.push_event(0, "s", event(0, 1)));
        b.push_forced(
            0,
            Record::Lifecycle {
                event: "acquired".into(),
                message: String::new(),
            },
        );
        assert_eq!(b.len(), 1);
    }

    #[test]
    fn bytes_stay_counted_until_acknowledged_and_requeue_keeps_order() {
        let mut b = Buffer::new(1 << 20);
        for ms in 0..4 {
            b.push_event(0, "s", event(ms, 10));
        }
        let total = b.bytes();
        let batch = b.take(3);
        assert_eq!(b.len(), 1);
        assert_eq!(b.bytes(), total, "in flight still counted");
        b.requeue(batch);
        let again = b.take(10);
        let times: Vec<_> = again
            .iter()
            .map(|p| p.record.received_at().unwrap())
            .collect();
        let expected: Vec<_> = (0..4)
            .map(|ms| UNIX_EPOCH + Duration::from_millis(ms))
            .collect();
        assert_eq!(times, expected);
        let weight: usize = again.iter().map(Pending::weight).sum();
        b.ack(weight);
        assert_eq!(b.bytes(), 0);
    }

    #[test]
    fn watermark_is_the_oldest_event_not_yet_in_redis() {
        let now = UNIX_EPOCH + Duration::from_secs(100);
        let mut b = Buffer::new(event(0, 1).weight() * 2);
        assert_eq!(b.watermark(0, now), now);
        b.push_event(0, "s", event(5_000, 1));
        b.push_event(1, "s", event(1_000, 1));
        assert_eq!(
            b.watermark(0, now),
            UNIX_EPOCH + Duration::from_millis(5_000)
        );
        let batch = b.take(1);
        assert_eq!(
            b.watermark(0, now),
            UNIX_EPOCH + Duration::from_millis(5_000),
            "in flight"
        );
        b.ack(batch.iter().map(Pending::weight).sum());
        assert_eq!(b.watermark(0, now), now);
        // A drop holds the watermark back until its gap is taken.
        b.push_event(0, "s", event(7_000, 1));
        b.push_event(0, "s", event(8_000, 1));
        assert_eq!(
            b.watermark(0, now),
            UNIX_EPOCH + Duration::from_millis(7_000)
        );
        let all = b.watermarks();
        assert_eq!(all[&0], UNIX_EPOCH + Duration::from_millis(7_000));
        assert_eq!(all[&1], UNIX_EPOCH + Duration::from_millis(1_000));
        b.discard_shard(0);
        assert_eq!(b.watermark(0, now), now);
        assert!(!b.watermarks().contains_key(&0));
        assert_eq!(
            b.watermark(1, now),
            UNIX_EPOCH + Duration::from_millis(1_000)
        );
    }
}
