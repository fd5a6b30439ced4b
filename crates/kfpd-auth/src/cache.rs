//! A short-lived memory of authorization decisions, in front of any
//! [`Authorizer`] (and of reviewed tokens, see [`Memory`]): a page of the UI makes several requests with the same identity,
//! namespace and verb, and each would otherwise cost a SubjectAccessReview.
//! Allowed and denied answers are both kept for `ttl`; errors are never kept.
//! The memory is bounded: at `capacity` the oldest decision goes first. Callers
//! missing the same key at once wait for one fetch instead of each making one
//! (a page's burst of requests, a wide loop's pods starting together).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{Access, Authorizer, Error, Identity, Resource, Verb};

/// The default time a decision is kept: short, so a revoked role binding takes
/// effect within seconds.
pub const DEFAULT_TTL: Duration = Duration::from_secs(5);
/// The default number of decisions kept.
pub const DEFAULT_CAPACITY: usize = 10_000;

/// Everything a decision depends on.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    user: String,
    groups: Vec<String>,
    namespace: String,
    resource: Resource,
    verb: Verb,
    name: Option<String>,
}

impl Key {
    fn new(who: &Identity, access: &Access<'_>) -> Key {
        Key {
            user: who.user.clone(),
            groups: who.groups.clone(),
            namespace: access.namespace.to_string(),
            resource: access.resource,
            verb: access.verb,
            name: access.name.map(str::to_string),
        }
    }
}

/// Values kept for a fixed time, at most `capacity` of them, the oldest dropped
/// first. Used for authorization decisions and for reviewed tokens.
pub struct Memory<K, V> {
    ttl: Duration,
    capacity: usize,
    inner: Mutex<Entries<K, V>>,
    /// One gate per key being fetched: the fetcher holds it, the others queue on it
    /// and then find the value. Removed by the last one through.
    fetching: Mutex<HashMap<K, Arc<tokio::sync::Mutex<()>>>>,
}

struct Entries<K, V> {
    values: HashMap<K, (V, Instant)>,
    /// Insertion order; with one TTL for all, also the order of expiry. An entry
    /// whose time differs from the map's was replaced and is skipped.
    order: VecDeque<(K, Instant)>,
}

impl<K: Hash + Eq + Clone, V: Clone> Memory<K, V> {
    pub fn new(ttl: Duration, capacity: usize) -> Memory<K, V> {
        Memory {
            ttl,
            capacity: capacity.max(1),
            inner: Mutex::new(Entries {
                values: HashMap::new(),
                order: VecDeque::new(),
            }),
            fetching: Mutex::new(HashMap::new()),
        }
    }

    /// The value kept for `key`, else what `fetch` answers (kept when it is `Ok`).
    /// Concurrent misses of one key make one fetch; when it fails, the next caller
    /// in line fetches again (errors are never kept).
    pub async fn get_or_fetch<E, F, Fut>(&self, key: K, fetch: F) -> Result<V, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        if let Some(value) = self.get(&key) {
            return Ok(value);
        }
        if !self.enabled() {
            return fetch().await;
        }
        let gate = Arc::clone(lock(&self.fetching).entry(key.clone()).or_default());
        let turn = gate.lock().await;
        let result = match self.get(&key) {
            Some(value) => Ok(value),
            None => fetch()
                .await
                .inspect(|value| self.insert(key.clone(), value.clone())),
        };
        drop(turn);
        let mut fetching = lock(&self.fetching);
        // Held by the map and by this caller only: nobody is waiting any more.
        let last = fetching
            .get(&key)
            .is_some_and(|held| Arc::ptr_eq(held, &gate) && Arc::strong_count(held) == 2);
        if last {
            fetching.remove(&key);
        }
        result
    }

    /// Whether anything is kept at all (a zero TTL keeps nothing).
    pub fn enabled(&self) -> bool {
        !self.ttl.is_zero()
    }

    /// The value stored for `key` less than `ttl` ago.
    pub fn get(&self, key: &K) -> Option<V> {
        let entries = self.lock();
        let (value, stored) = entries.values.get(key)?;
        (stored.elapsed() < self.ttl).then(|| value.clone())
    }

    pub fn insert(&self, key: K, value: V) {
        if !self.enabled() {
            return;
        }
        let now = Instant::now();
        let mut entries = self.lock();
        // Drop expired values, and the oldest ones while full.
        while let Some((oldest, stored)) = entries.order.front() {
            let expired = now.duration_since(*stored) >= self.ttl;
            if !expired && entries.values.len() < self.capacity {
                break;
            }
            if entries.values.get(oldest).map(|(_, at)| at) == Some(stored) {
                let oldest = oldest.clone();
                entries.values.remove(&oldest);
            }
            entries.order.pop_front();
        }
        entries.values.insert(key.clone(), (value, now));
        entries.order.push_back((key, now));
    }

    /// How many values are held (expired ones until the next insert).
    pub fn len(&self) -> usize {
        self.lock().values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries<K, V>> {
        lock(&self.inner)
    }
}

/// An [`Authorizer`] that remembers the decisions of another.
pub struct Cached<A> {
    inner: A,
    memory: Memory<Key, bool>,
}

impl<A: Authorizer> Cached<A> {
    pub fn new(inner: A, ttl: Duration, capacity: usize) -> Cached<A> {
        Cached {
            inner,
            memory: Memory::new(ttl, capacity),
        }
    }

    pub fn inner(&self) -> &A {
        &self.inner
    }

    /// How many decisions are held now (expired ones until the next insert).
    pub fn len(&self) -> usize {
        self.memory.len()
    }

    pub fn is_empty(&self) -> bool {
        self.memory.is_empty()
    }
}

#[async_trait::async_trait]
impl<A: Authorizer> Authorizer for Cached<A> {
    async fn authorize(&self, who: &Identity, access: &Access<'_>) -> Result<bool, Error> {
        if !self.memory.enabled() {
            return self.inner.authorize(who, access).await;
        }
        let key = Key::new(who, access);
        self.memory
            .get_or_fetch(key, || self.inner.authorize(who, access))
            .await
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Allows namespaces starting with "team-", counting its calls; "broken" fails,
    /// "slow" answers (denied) after a moment.
    #[derive(Default)]
    struct Counting {
        calls: AtomicUsize,
    }

    #[async_trait::async_trait]
    impl Authorizer for Counting {
        async fn authorize(&self, _who: &Identity, access: &Access<'_>) -> Result<bool, Error> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if access.namespace == "slow" || access.namespace == "slow-broken" {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if access.namespace == "slow-broken" {
                return Err(Error::Unavailable("down".into()));
            }
            if access.namespace == "broken" {
                return Err(Error::Unavailable("down".into()));
            }
            Ok(access.namespace.starts_with("team-"))
        }
    }

    fn alice() -> Identity {
        Identity {
            user: "alice".into(),
            groups: vec!["g".into()],
        }
    }

    fn access(namespace: &str) -> Access<'_> {
        Access {
            namespace,
            resource: Resource::Runs,
            verb: Verb::Get,
            name: None,
        }
    }

    fn calls(cache: &Cached<Counting>) -> usize {
        cache.inner().calls.load(Ordering::SeqCst)
    }

    #[tokio::test]
    async fn decisions_are_kept_per_identity_and_access() {
        let cache = Cached::new(Counting::default(), Duration::from_secs(60), 100);
        assert!(cache.authorize(&alice(), &access("team-a")).await.unwrap());
        assert!(cache.authorize(&alice(), &access("team-a")).await.unwrap());
        assert!(!cache.authorize(&alice(), &access("other")).await.unwrap());
        assert!(!cache.authorize(&alice(), &access("other")).await.unwrap());
        assert_eq!(calls(&cache), 2);

        // Another group, verb or name is another decision.
        let mut other_groups = alice();
        other_groups.groups.push("admins".into());
        cache
            .authorize(&other_groups, &access("team-a"))
            .await
            .unwrap();
        let mut delete = access("team-a");
        delete.verb = Verb::Delete;
        cache.authorize(&alice(), &delete).await.unwrap();
        let mut named = access("team-a");
        named.name = Some("run-1");
        cache.authorize(&alice(), &named).await.unwrap();
        assert_eq!(calls(&cache), 5);
    }

    #[tokio::test]
    async fn errors_are_not_kept() {
        let cache = Cached::new(Counting::default(), Duration::from_secs(60), 100);
        for _ in 0..2 {
            assert!(cache.authorize(&alice(), &access("broken")).await.is_err());
        }
        assert_eq!(calls(&cache), 2);
        assert!(cache.is_empty());
    }

    #[tokio::test]
    async fn decisions_expire_after_the_ttl() {
        let cache = Cached::new(Counting::default(), Duration::from_millis(50), 100);
        cache.authorize(&alice(), &access("team-a")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(80)).await;
        cache.authorize(&alice(), &access("team-a")).await.unwrap();
        assert_eq!(calls(&cache), 2);
        // The expired entry was replaced, not duplicated.
        assert_eq!(cache.len(), 1);
    }

    #[tokio::test]
    async fn the_memory_is_bounded_and_drops_the_oldest_first() {
        let cache = Cached::new(Counting::default(), Duration::from_secs(60), 3);
        let namespaces: Vec<String> = (0..10).map(|i| format!("team-{i}")).collect();
        for namespace in &namespaces {
            cache.authorize(&alice(), &access(namespace)).await.unwrap();
        }
        assert_eq!(cache.len(), 3);
        assert_eq!(calls(&cache), 10);
        // The newest are kept, the oldest asked again.
        cache.authorize(&alice(), &access("team-9")).await.unwrap();
        assert_eq!(calls(&cache), 10);
        cache.authorize(&alice(), &access("team-0")).await.unwrap();
        assert_eq!(calls(&cache), 11);
    }

    #[tokio::test]
    async fn concurrent_misses_of_one_decision_make_one_call() {
        let cache = Cached::new(Counting::default(), Duration::from_secs(60), 100);
        let who = alice();
        let slow = access("slow");
        let asks = (0..20).map(|_| cache.authorize(&who, &slow));
        let answers = futures::future::join_all(asks).await;
        assert!(answers.iter().all(|answer| matches!(answer, Ok(false))));
        assert_eq!(calls(&cache), 1);
        assert!(cache.memory.fetching.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn after_a_failed_fetch_the_next_caller_in_line_asks_again() {
        let cache = Cached::new(Counting::default(), Duration::from_secs(60), 100);
        let who = alice();
        let broken = access("slow-broken");
        let asks = (0..3).map(|_| cache.authorize(&who, &broken));
        let answers = futures::future::join_all(asks).await;
        assert!(answers.iter().all(Result::is_err));
        assert_eq!(calls(&cache), 3);
        assert!(cache.is_empty());
        assert!(cache.memory.fetching.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_zero_ttl_keeps_nothing() {
        let cache = Cached::new(Counting::default(), Duration::ZERO, 100);
        cache.authorize(&alice(), &access("team-a")).await.unwrap();
        cache.authorize(&alice(), &access("team-a")).await.unwrap();
        assert_eq!(calls(&cache), 2);
    }
}
