//! Named locks held by running jobs, so that two jobs that must not overlap never
//! do (a policy's fulls and diffs; a folder; a copy source; a verified target).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// The locks held in this process.
#[derive(Debug, Clone, Default)]
pub struct LockSet {
    held: Arc<Mutex<HashSet<String>>>,
}

/// Locks taken together; released when dropped.
#[derive(Debug)]
pub struct LockGuard {
    set: LockSet,
    names: Vec<String>,
}

impl LockSet {
    /// Takes all of `names`, or none when one is held.
    pub fn try_acquire(&self, names: &[String]) -> Option<LockGuard> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if names.iter().any(|n| held.contains(n)) {
            return None;
        }
        held.extend(names.iter().cloned());
        Some(LockGuard {
            set: self.clone(),
            names: names.to_vec(),
        })
    }

    /// Whether none of `names` is held.
    pub fn all_free(&self, names: &[String]) -> bool {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        names.iter().all(|n| !held.contains(n))
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let mut held = self.set.held.lock().unwrap_or_else(|p| p.into_inner());
        for n in &self.names {
            held.remove(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_is_refused_until_its_guard_drops() {
        let set = LockSet::default();
        let a = vec!["data/p".to_string()];
        let g = set.try_acquire(&a).unwrap();
        assert!(set.try_acquire(&a).is_none());
        assert!(set.try_acquire(&["log/p".to_string()]).is_some());
        drop(g);
        assert!(set.try_acquire(&a).is_some());
    }
}
