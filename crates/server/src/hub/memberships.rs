//! The projects each user belongs to, cached on this node, so that a handshake and a
//! `subscribe` need no database round trip: a reconnect storm of 100,000 clients must not be
//! 100,000 membership queries.
//!
//! **Kept current by the log.** Every membership change is a `member.added` / `member.removed`
//! event, and every node sees every one of them (the dispatcher delivers the project room's
//! events; in a cluster the broker's members channel reaches the nodes that do not follow the
//! room). [`Hub::membership_changed`](super::Hub::membership_changed) applies each to the live
//! sessions and to this cache alike, so a removal takes effect at once on every node.
//!
//! **A cold user costs one query,** however many of their connections arrive at once: the
//! first loads, the others wait for it (`OnceCell`). A change that arrives while the load runs is
//! kept and applied on top of what the load read, so a change committed just after the read is
//! not lost; one committed before it is in what the load read, and applying it again is a no-op.
//!
//! **Bounded:** at most `users` entries (beyond, arbitrary entries are forgotten; forgetting is
//! always safe, it costs a later load) and each entry is reloaded after `ttl`, so a change made
//! behind the server's back (SQL by hand) is seen within that time. A cluster node forgets the
//! whole cache when its broker connection comes back, since changes may have been published
//! while it was away.

use crate::domain::{ProjectId, UserId};
use dashmap::DashMap;
use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

/// How much the cache holds.
#[derive(Debug, Clone, Copy)]
pub struct MembershipLimits {
    /// Users cached at most.
    pub users: usize,
    /// How long an entry is trusted before it is read again.
    pub ttl: Duration,
}

impl Default for MembershipLimits {
    fn default() -> Self {
        Self {
            users: 100_000,
            ttl: Duration::from_secs(600),
        }
    }
}

/// The cache; owned by the hub.
pub struct Memberships {
    users: DashMap<UserId, Arc<Entry>>,
    limits: MembershipLimits,
}

/// One user's projects, loaded once.
#[derive(Default)]
struct Entry {
    /// Set when the load finished (the entry's age).
    loaded: OnceCell<Instant>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    projects: HashSet<ProjectId>,
    /// Whether `projects` holds a load's result (changes apply to it).
    ready: bool,
    /// Whether a load runs (changes are kept for it).
    loading: bool,
    /// Changes that arrived while the load ran, in order.
    pending: Vec<(ProjectId, bool)>,
    /// Counts the loads started, so that a load abandoned midway (its request went away) stops
    /// collecting changes without disturbing the load that follows it.
    attempt: u64,
}

/// Ends a load's collecting of changes however the load ends, abandoned included.
struct Loading<'a> {
    state: &'a Mutex<State>,
    attempt: u64,
}

impl Drop for Loading<'_> {
    fn drop(&mut self) {
        let mut state = self.state.lock().expect("never poisoned");
        if state.attempt == self.attempt && !state.ready {
            state.loading = false;
            state.pending.clear();
        }
    }
}

impl Memberships {
    /// An empty cache.
    pub fn new(limits: MembershipLimits) -> Self {
        Self {
            users: DashMap::new(),
            limits,
        }
    }

    /// The user's projects: from the cache, or from `load` (run once for every caller that
    /// asks meanwhile). `load` is called only on a miss; a failed load caches nothing.
    pub async fn get<F, Fut, E>(&self, user: &UserId, load: F) -> Result<HashSet<ProjectId>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<ProjectId>, E>>,
    {
        let entry = self.entry(user);
        entry
            .loaded
            .get_or_try_init(|| async {
                let _loading = {
                    let mut state = entry.state.lock().expect("never poisoned");
                    // Changes seen before this point are in what the load reads.
                    state.pending.clear();
                    state.loading = true;
                    state.attempt += 1;
                    Loading {
                        state: &entry.state,
                        attempt: state.attempt,
                    }
                };
                let projects = load().await;
                let mut state = entry.state.lock().expect("never poisoned");
                state.loading = false;
                let projects = projects?;
                state.projects = projects.into_iter().collect();
                for (project, member) in std::mem::take(&mut state.pending) {
                    apply(&mut state.projects, project, member);
                }
                state.ready = true;
                Ok(Instant::now())
            })
            .await?;
        let projects = entry.state.lock().expect("never poisoned").projects.clone();
        Ok(projects)
    }

    /// The user's projects if they are cached, without loading.
    pub fn peek(&self, user: &UserId) -> Option<HashSet<ProjectId>> {
        let entry = self.users.get(user)?.clone();
        let state = entry.state.lock().expect("never poisoned");
        state.ready.then(|| state.projects.clone())
    }

    /// The user's entry, a fresh one if it has none or it is older than the limit.
    fn entry(&self, user: &UserId) -> Arc<Entry> {
        if let Some(entry) = self.users.get(user) {
            if entry
                .loaded
                .get()
                .is_none_or(|at| at.elapsed() < self.limits.ttl)
            {
                return entry.clone();
            }
        }
        let entry = {
            let mut slot = self.users.entry(user.clone()).or_default();
            if slot
                .loaded
                .get()
                .is_some_and(|at| at.elapsed() >= self.limits.ttl)
            {
                *slot = Arc::default();
            }
            slot.clone()
        };
        self.evict();
        entry
    }

    /// Forgets arbitrary entries beyond the limit.
    fn evict(&self) {
        let mut excess = self.users.len().saturating_sub(self.limits.users);
        if excess > 0 {
            // A little more than needed, so the next insertions do not each pay a pass.
            excess += self.limits.users / 16;
            self.users.retain(|_, _| {
                if excess == 0 {
                    return true;
                }
                excess -= 1;
                false
            });
        }
    }

    /// A membership change, from the log.
    pub fn changed(&self, project: &ProjectId, user: &str, member: bool) {
        let Ok(user) = UserId::parse(user, "user") else {
            return;
        };
        let Some(entry) = self.users.get(&user).map(|e| e.clone()) else {
            return;
        };
        let mut state = entry.state.lock().expect("never poisoned");
        if state.ready {
            apply(&mut state.projects, project.clone(), member);
        } else if state.loading {
            state.pending.push((project.clone(), member));
        }
    }

    /// Forgets everything (changes may have been missed).
    pub fn clear(&self) {
        self.users.clear();
    }

    /// Users cached now.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether no user is cached.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

fn apply(projects: &mut HashSet<ProjectId>, project: ProjectId, member: bool) {
    if member {
        projects.insert(project);
    } else {
        projects.remove(&project);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn user(name: &str) -> UserId {
        UserId::parse(name, "user").unwrap()
    }

    fn project(name: &str) -> ProjectId {
        ProjectId::parse(name).unwrap()
    }

    fn set(names: &[&str]) -> HashSet<ProjectId> {
        names.iter().map(|n| project(n)).collect()
    }

    #[tokio::test]
    async fn a_user_is_loaded_once_for_all_their_connections() {
        let cache = Arc::new(Memberships::new(MembershipLimits::default()));
        let loads = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Notify::new());
        let mut waiting = Vec::new();
        for _ in 0..50 {
            let (cache, loads, gate) = (cache.clone(), loads.clone(), gate.clone());
            waiting.push(tokio::spawn(async move {
                cache
                    .get(&user("alice"), || async move {
                        loads.fetch_add(1, Ordering::SeqCst);
                        gate.notified().await;
                        Ok::<_, ()>(vec![project("p1")])
                    })
                    .await
            }));
        }
        while loads.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        gate.notify_one();
        for w in waiting {
            assert_eq!(w.await.unwrap().unwrap(), set(&["p1"]));
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn changes_apply_to_a_loaded_user_and_to_a_load_in_flight() {
        let cache = Arc::new(Memberships::new(MembershipLimits::default()));
        let got = cache
            .get(&user("alice"), || async {
                Ok::<_, ()>(vec![project("p1")])
            })
            .await
            .unwrap();
        assert_eq!(got, set(&["p1"]));
        cache.changed(&project("p2"), "alice", true);
        cache.changed(&project("p1"), "alice", false);
        let again = cache
            .get(&user("alice"), || async { panic!("cached: no load") })
            .await;
        assert_eq!(again, Ok::<_, ()>(set(&["p2"])));

        // A change committed after the load read the database arrives while it runs: kept.
        let (read, release) = (
            Arc::new(tokio::sync::Notify::new()),
            Arc::new(tokio::sync::Notify::new()),
        );
        let loading = tokio::spawn({
            let (cache, read, release) = (cache.clone(), read.clone(), release.clone());
            async move {
                cache
                    .get(&user("bob"), || async move {
                        read.notify_one();
                        release.notified().await;
                        Ok::<_, ()>(vec![project("p1")])
                    })
                    .await
            }
        });
        read.notified().await;
        cache.changed(&project("p3"), "bob", true);
        cache.changed(&project("p1"), "bob", false);
        release.notify_one();
        assert_eq!(loading.await.unwrap().unwrap(), set(&["p3"]));
        // A change for a user nobody asked about is nothing to keep.
        cache.changed(&project("p3"), "carol", true);
        assert_eq!(cache.len(), 2);
    }

    #[tokio::test]
    async fn an_abandoned_load_keeps_nothing_and_the_next_one_loads() {
        let cache = Memberships::new(MembershipLimits::default());
        let alice = user("alice");
        let abandoned = cache.get(&alice, std::future::pending::<Result<Vec<_>, ()>>);
        assert!(tokio::time::timeout(Duration::from_millis(10), abandoned)
            .await
            .is_err());
        cache.changed(&project("p9"), "alice", true);
        let entry = cache.users.get(&user("alice")).unwrap().clone();
        assert!(
            entry.state.lock().unwrap().pending.is_empty(),
            "nobody collects changes for an abandoned load"
        );
        let got = cache
            .get(&user("alice"), || async {
                Ok::<_, ()>(vec![project("p1")])
            })
            .await;
        assert_eq!(got, Ok(set(&["p1"])));
    }

    #[tokio::test]
    async fn a_failed_load_caches_nothing_and_old_entries_are_read_again() {
        let cache = Memberships::new(MembershipLimits {
            users: 100,
            ttl: Duration::from_millis(30),
        });
        let failed = cache.get(&user("alice"), || async { Err("down") }).await;
        assert_eq!(failed, Err("down"));
        let got = cache
            .get(&user("alice"), || async {
                Ok::<_, &str>(vec![project("p1")])
            })
            .await;
        assert_eq!(got, Ok(set(&["p1"])));
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(40) {
            tokio::task::yield_now().await;
        }
        let reloaded = cache
            .get(&user("alice"), || async {
                Ok::<_, &str>(vec![project("p2")])
            })
            .await;
        assert_eq!(reloaded, Ok(set(&["p2"])), "older than the ttl: read again");
    }

    #[tokio::test]
    async fn the_cache_holds_at_most_its_limit_of_users() {
        let cache = Memberships::new(MembershipLimits {
            users: 64,
            ttl: Duration::from_secs(60),
        });
        for i in 0..1000 {
            cache
                .get(&user(&format!("u{i}")), || async {
                    Ok::<_, ()>(Vec::new())
                })
                .await
                .unwrap();
            assert!(cache.len() <= 65, "{}", cache.len());
        }
        cache.clear();
        assert!(cache.is_empty());
    }
}
