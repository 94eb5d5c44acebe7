//! The per-installation governor: keeps content-creating calls (comments, reviews, reactions,
//! pull requests: POST/PATCH/PUT/DELETE that make something a person sees) under GitHub's
//! documented secondary limits, by default 80 a minute and 500 an hour, by *waiting* for the next
//! free slot rather than failing.
//!
//! Why our own sliding window and not the `governor` crate: GitHub states both limits as counts
//! per window ("no more than 80 content-generating requests per minute and no more than 500 per
//! hour"), two windows have to hold at once, and the waits must run on tokio's clock
//! (`tokio::time::Instant`/`sleep_until`) so that tests drive them with `tokio::time::pause()`.
//! A window is a queue of grant times; that is all the state there is, so it stays small.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

/// How many content-creating calls one installation may make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GovernorLimits {
    /// In any 60-second window (GitHub: 80).
    pub per_minute: u32,
    /// In any hour (GitHub: 500).
    pub per_hour: u32,
}

impl Default for GovernorLimits {
    fn default() -> Self {
        Self {
            per_minute: 80,
            per_hour: 500,
        }
    }
}

/// Who a governor is for: an App installation, or the one personal token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GovernorKey {
    Installation(u64),
    PersonalToken,
}

/// One installation's window of recent grants.
#[derive(Debug)]
pub struct Governor {
    limits: GovernorLimits,
    /// Grant times of the last hour, oldest first. A tokio mutex, held across the wait, so that
    /// callers are served in the order they arrived (it is fair) and one sleeper at a time.
    grants: tokio::sync::Mutex<VecDeque<Instant>>,
}

impl Governor {
    pub fn new(limits: GovernorLimits) -> Self {
        Self {
            limits,
            grants: tokio::sync::Mutex::new(VecDeque::new()),
        }
    }

    /// Waits until one more content-creating call fits in both windows, records it and returns
    /// how long it waited.
    pub async fn acquire(&self) -> Duration {
        let started = Instant::now();
        let mut grants = self.grants.lock().await;
        loop {
            let now = Instant::now();
            match next_slot(&mut grants, now, self.limits) {
                None => {
                    grants.push_back(now);
                    let waited = now.saturating_duration_since(started);
                    if !waited.is_zero() {
                        metrics::counter!("github_governor_waits_total").increment(1);
                        metrics::histogram!("github_governor_wait_seconds")
                            .record(waited.as_secs_f64());
                    }
                    return waited;
                }
                Some(at) => tokio::time::sleep_until(at).await,
            }
        }
    }
}

/// When the next call may go out, or `None` if it may go now. Forgets grants older than an hour.
fn next_slot(
    grants: &mut VecDeque<Instant>,
    now: Instant,
    limits: GovernorLimits,
) -> Option<Instant> {
    while grants
        .front()
        .is_some_and(|t| now.saturating_duration_since(*t) >= HOUR)
    {
        grants.pop_front();
    }
    let mut earliest: Option<Instant> = None;
    let per_hour = limits.per_hour.max(1) as usize;
    if grants.len() >= per_hour {
        // The call that would be one too many in the hour leaves the window an hour after it.
        let oldest_counted = grants[grants.len() - per_hour];
        earliest = Some(oldest_counted + HOUR);
    }
    let per_minute = limits.per_minute.max(1) as usize;
    let in_last_minute = grants
        .iter()
        .rev()
        .take_while(|t| now.saturating_duration_since(**t) < MINUTE)
        .count();
    if in_last_minute >= per_minute {
        let oldest_counted = grants[grants.len() - per_minute];
        let at = oldest_counted + MINUTE;
        earliest = Some(earliest.map_or(at, |e| e.max(at)));
    }
    earliest.filter(|at| *at > now)
}

/// The governors of every installation, made on first use.
#[derive(Debug)]
pub struct Governors {
    limits: GovernorLimits,
    by_key: Mutex<HashMap<GovernorKey, Arc<Governor>>>,
}

impl Governors {
    pub fn new(limits: GovernorLimits) -> Self {
        Self {
            limits,
            by_key: Mutex::new(HashMap::new()),
        }
    }

    pub fn limits(&self) -> GovernorLimits {
        self.limits
    }

    pub fn for_key(&self, key: GovernorKey) -> Arc<Governor> {
        // A poisoned lock only means another thread panicked while inserting; the map is intact.
        let mut map = self.by_key.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(key)
            .or_insert_with(|| Arc::new(Governor::new(self.limits)))
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_minute: u32, per_hour: u32) -> GovernorLimits {
        GovernorLimits {
            per_minute,
            per_hour,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_is_spread_over_minutes_by_waiting() {
        let governor = Governor::new(limits(80, 500));
        let start = Instant::now();
        let mut grants = Vec::new();
        for _ in 0..200 {
            governor.acquire().await;
            grants.push(Instant::now() - start);
        }
        // 80 at once, the next 80 a minute later, the rest two minutes in.
        assert_eq!(grants[79], Duration::ZERO);
        assert_eq!(grants[80], MINUTE);
        assert_eq!(grants[159], MINUTE);
        assert_eq!(grants[160], 2 * MINUTE);
        assert_eq!(grants[199], 2 * MINUTE);
        assert_windows_hold(&grants, limits(80, 500));
    }

    #[tokio::test(start_paused = true)]
    async fn the_hourly_limit_holds_too() {
        let governor = Governor::new(limits(80, 500));
        let start = Instant::now();
        let mut grants = Vec::new();
        for _ in 0..600 {
            governor.acquire().await;
            grants.push(Instant::now() - start);
        }
        // 500 fit in the first hour (80 a minute: minutes 0..6), the 501st waits for the first
        // grant to leave the hour.
        assert_eq!(grants[499], 6 * MINUTE);
        assert_eq!(grants[500], HOUR);
        assert_windows_hold(&grants, limits(80, 500));
    }

    #[tokio::test(start_paused = true)]
    async fn installations_have_their_own_windows() {
        let governors = Governors::new(limits(2, 10));
        let start = Instant::now();
        for _ in 0..2 {
            governors
                .for_key(GovernorKey::Installation(1))
                .acquire()
                .await;
        }
        governors
            .for_key(GovernorKey::Installation(2))
            .acquire()
            .await;
        assert_eq!(Instant::now(), start, "other installation did not wait");
        let waited = governors
            .for_key(GovernorKey::Installation(1))
            .acquire()
            .await;
        assert_eq!(waited, MINUTE);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_all_get_a_slot() {
        let governor = Arc::new(Governor::new(limits(5, 100)));
        let start = Instant::now();
        let tasks: Vec<_> = (0..12)
            .map(|_| {
                let g = governor.clone();
                tokio::spawn(async move {
                    g.acquire().await;
                    Instant::now() - start
                })
            })
            .collect();
        let mut grants = Vec::new();
        for t in tasks {
            grants.push(t.await.unwrap());
        }
        grants.sort();
        assert_eq!(grants.iter().filter(|d| **d == Duration::ZERO).count(), 5);
        assert_eq!(grants.iter().filter(|d| **d == MINUTE).count(), 5);
        assert_eq!(grants.iter().filter(|d| **d == 2 * MINUTE).count(), 2);
        assert_windows_hold(&grants, limits(5, 100));
    }

    /// Every window of a minute (and of an hour) starting at a grant holds at most the limit.
    fn assert_windows_hold(grants: &[Duration], limits: GovernorLimits) {
        for (i, start) in grants.iter().enumerate() {
            let in_minute = grants[i..].iter().filter(|t| **t < *start + MINUTE).count();
            assert!(
                in_minute <= limits.per_minute as usize,
                "minute from {start:?}: {in_minute}"
            );
            let in_hour = grants[i..].iter().filter(|t| **t < *start + HOUR).count();
            assert!(
                in_hour <= limits.per_hour as usize,
                "hour from {start:?}: {in_hour}"
            );
        }
    }
}
