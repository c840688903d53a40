//! Shadow data: new per-object data a patch attaches to existing guest
//! objects, as livepatch's shadow variables do. An object is whatever the
//! guest uses to name it (typically an address in linear memory); a key
//! names the field. Values are 64-bit.

use std::collections::HashMap;

/// (object, key) → value.
#[derive(Debug, Default)]
pub struct Shadow {
    map: HashMap<(u64, u64), i64>,
}

impl Shadow {
    /// The value attached to `obj` under `key`.
    pub fn get(&self, obj: u64, key: u64) -> Option<i64> {
        self.map.get(&(obj, key)).copied()
    }

    /// Attach (or replace) a value; returns the previous one.
    pub fn set(&mut self, obj: u64, key: u64, value: i64) -> Option<i64> {
        self.map.insert((obj, key), value)
    }

    /// Detach a value; returns it.
    pub fn remove(&mut self, obj: u64, key: u64) -> Option<i64> {
        self.map.remove(&(obj, key))
    }

    /// Detach every value under `key` (what a post-unpatch callback does
    /// when the patch that introduced the field goes away).
    pub fn remove_key(&mut self, key: u64) -> usize {
        let before = self.map.len();
        self.map.retain(|(_, k), _| *k != key);
        before - self.map.len()
    }

    /// Number of attached values.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether nothing is attached.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}
