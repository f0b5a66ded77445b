//! The shard planner: from the live bridge processes and the current lease holders, which
//! shards this process should acquire and which it should release. Pure: no Redis, no clock.
//!
//! Every process runs the same plan on the same view, with no coordinator: the members, sorted
//! by bridge id, each get `shards / members` shards, and the first `shards % members` of them
//! one more (their quota). A process holding more than its quota releases the extra shards; a
//! process holding fewer acquires free shards (no lease) in an order of its own (rendezvous
//! hashing on its id, so that two processes starting together mostly try different shards).
//! Acquisition itself is arbitrated by Redis (`SET NX`): the plan only proposes. Shards of a
//! process that died stay held until their lease expires, then are free.

use std::collections::BTreeSet;

/// What one process should do now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Shards to release (held by this process, beyond its quota), lowest preference first.
    pub release: Vec<u32>,
    /// Every free shard, in this process's order of preference: acquire them in this order
    /// until [`Plan::missing`] succeeded (others may win some of them: `SET NX` decides).
    pub acquire: Vec<u32>,
    /// How many shards this process lacks to reach its quota.
    pub missing: usize,
    /// This process's quota.
    pub quota: usize,
}

/// Plans for process `me` among `members` (the live processes; `me` counts even if missing),
/// given `holders[shard]`, the holder of each shard's lease (`None`: free).
pub fn plan(me: &str, members: &[String], holders: &[Option<String>]) -> Plan {
    let shards = holders.len();
    let mut live: BTreeSet<&str> = members.iter().map(String::as_str).collect();
    live.insert(me);
    let rank = live.iter().position(|m| *m == me).unwrap_or(0);
    let count = live.len();
    let quota = shards / count + usize::from(rank < shards % count);

    let mut mine: Vec<u32> = (0..shards as u32)
        .filter(|s| holders[*s as usize].as_deref() == Some(me))
        .collect();
    let mut result = Plan {
        quota,
        ..Plan::default()
    };
    if mine.len() > quota {
        // Keep the shards this process prefers most: the same ranking as acquisition, so a
        // process does not release a shard it would then want back.
        mine.sort_by_key(|s| std::cmp::Reverse(preference(me, *s)));
        result.release = mine.split_off(quota);
        result.release.reverse();
    } else if mine.len() < quota {
        let mut free: Vec<u32> = (0..shards as u32)
            .filter(|s| holders[*s as usize].is_none())
            .collect();
        free.sort_by_key(|s| std::cmp::Reverse(preference(me, *s)));
        result.missing = quota - mine.len();
        result.acquire = free;
    }
    result
}

/// Rendezvous weight of `shard` for process `me` (FNV-1a of the id, then the shard number).
fn preference(me: &str, shard: u32) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in me.bytes().chain(shard.to_le_bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    // FNV's low bits mix poorly for the last bytes: finish with a multiply-xorshift.
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^ (hash >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("bridge-{i}")).collect()
    }

    /// Runs the plan for every member in turn, applying releases and successful acquisitions
    /// (first come, first served, as `SET NX`), until nothing changes; returns the holders.
    fn settle(members: &[String], mut holders: Vec<Option<String>>) -> Vec<Option<String>> {
        for _round in 0..10 {
            let mut changed = false;
            for me in members {
                let p = plan(me, members, &holders);
                for s in p.release {
                    holders[s as usize] = None;
                    changed = true;
                }
                let mut got = 0;
                for s in p.acquire {
                    if got == p.missing {
                        break;
                    }
                    if holders[s as usize].is_none() {
                        holders[s as usize] = Some(me.clone());
                        got += 1;
                        changed = true;
                    }
                }
            }
            if !changed {
                return holders;
            }
        }
        panic!("the plan did not settle in 10 rounds");
    }

    fn counts(members: &[String], holders: &[Option<String>]) -> Vec<usize> {
        members
            .iter()
            .map(|m| holders.iter().filter(|h| h.as_deref() == Some(m)).count())
            .collect()
    }

    #[test]
    fn one_process_takes_every_shard() {
        let p = plan("a", &[], &vec![None; 64]);
        assert_eq!(p.quota, 64);
        assert_eq!(p.acquire.len(), 64);
        assert_eq!(p.missing, 64);
        assert!(p.release.is_empty());
    }

    #[test]
    fn three_processes_split_64_shards_21_21_22() {
        let members = ids(3);
        let holders = settle(&members, vec![None; 64]);
        assert!(holders.iter().all(Option::is_some));
        let mut c = counts(&members, &holders);
        c.sort();
        assert_eq!(c, [21, 21, 22]);
    }

    #[test]
    fn a_new_process_gets_its_share_from_the_others() {
        let two = ids(2);
        let holders = settle(&two, vec![None; 64]);
        assert_eq!(counts(&two, &holders), [32, 32]);
        let three = ids(3);
        // The old ones release down to their quota; the newcomer takes the freed shards.
        let p0 = plan(&three[0], &three, &holders);
        assert_eq!(p0.release.len(), 32 - p0.quota);
        let holders2 = settle(&three, holders.clone());
        let mut c = counts(&three, &holders2);
        c.sort();
        assert_eq!(c, [21, 21, 22]);
        // Only the shards that had to move moved.
        let moved = holders
            .iter()
            .zip(&holders2)
            .filter(|(a, b)| a != b)
            .count();
        assert!(moved <= 22, "{moved} shards moved");
    }

    #[test]
    fn shards_of_a_dead_process_wait_for_lease_expiry_then_go_to_the_living() {
        let three = ids(3);
        let holders = settle(&three, vec![None; 64]);
        let living: Vec<String> = three[..2].to_vec();
        // The dead process's leases still run: nothing to acquire yet for the others beyond
        // free shards (there are none).
        for me in &living {
            assert!(plan(me, &living, &holders).acquire.is_empty());
        }
        // When the shards come free, each living process lists all of them, wanting 11 or 10:
        // if the other wins a race, it goes on down its list.
        let freed: Vec<Option<String>> = holders
            .iter()
            .map(|h| h.clone().filter(|h| *h != three[2]))
            .collect();
        let p = plan(&living[0], &living, &freed);
        assert_eq!(
            p.acquire.len(),
            freed.iter().filter(|h| h.is_none()).count()
        );
        assert_eq!(p.missing, 32 - counts(&living[..1], &freed)[0]);
        // Expired: its shards are free, and the two living take all of them.
        let expired: Vec<Option<String>> = holders
            .iter()
            .map(|h| h.clone().filter(|h| *h != three[2]))
            .collect();
        let after = settle(&living, expired);
        assert!(after.iter().all(Option::is_some));
        assert_eq!(counts(&living, &after), [32, 32]);
    }

    #[test]
    fn quotas_sum_to_the_shard_count() {
        for members in 1..=10 {
            let m = ids(members);
            for shards in [1usize, 7, 64, 100] {
                let total: usize = m
                    .iter()
                    .map(|me| plan(me, &m, &vec![None; shards]).quota)
                    .sum();
                assert_eq!(total, shards);
            }
        }
    }

    #[test]
    fn more_processes_than_shards_leave_some_idle() {
        let m = ids(5);
        let holders = settle(&m, vec![None; 3]);
        let mut c = counts(&m, &holders);
        c.sort();
        assert_eq!(c, [0, 0, 1, 1, 1]);
    }
}
