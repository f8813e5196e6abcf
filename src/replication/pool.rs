//! Named threads: the one way georeg runs work in parallel, for the
//! daemon's workers and HTTP threads as for the foreground commands.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::{Scope, ScopedJoinHandle};

use crate::error::{Error, Result};

/// Starts `n` threads named `name-0`, `name-1`... in `scope`, each running
/// `work(i)`.
pub fn spawn<'scope, 'env, F>(
    scope: &'scope Scope<'scope, 'env>,
    n: usize,
    name: &str,
    work: &'scope F,
) -> Result<Vec<ScopedJoinHandle<'scope, ()>>>
where
    F: Fn(usize) + Sync,
{
    (0..n)
        .map(|i| {
            std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn_scoped(scope, move || work(i))
                .map_err(|e| Error::Io { path: format!("thread {name}-{i}").into(), source: e })
        })
        .collect()
}

/// Runs `each` over `items` on up to `workers` threads named `name-N`, and
/// returns when every item is done. `each` decides what to do on shutdown
/// (typically: return at once).
pub fn each<T: Sync>(items: &[T], workers: usize, name: &str, each: impl Fn(&T) + Sync) -> Result<()> {
    let next = AtomicUsize::new(0);
    let work = |_| {
        while let Some(item) = items.get(next.fetch_add(1, Ordering::SeqCst)) {
            each(item);
        }
    };
    std::thread::scope(|s| spawn(s, workers.min(items.len()).max(1), name, &work).map(|_| ()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn each_item_once_on_named_threads() {
        let items: Vec<u32> = (0..100).collect();
        let seen = Mutex::new(Vec::new());
        each(&items, 4, "t", |i| {
            let name = std::thread::current().name().unwrap().to_string();
            assert!(name.starts_with("t-"), "{name}");
            seen.lock().unwrap().push(*i);
        })
        .unwrap();
        let mut seen = seen.into_inner().unwrap();
        seen.sort();
        assert_eq!(seen, items);
        each(&[] as &[u32], 4, "t", |_| unreachable!()).unwrap();
    }
}
