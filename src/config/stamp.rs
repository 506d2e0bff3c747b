//! Which config a running procos applies: a version that counts loads (1 at start, +1 for each
//! reload that was applied), when it was loaded, and a fingerprint of the file's text, so an
//! operator can tell from `/api/status` whether the file on disk is the one in use.
//!
//! The kernel publishes the current stamp on a `tokio::sync::watch` channel ([`StampSender`]);
//! readers (the admin server) hold a [`StampReceiver`].

use std::hash::{Hash, Hasher};
use std::time::SystemTime;

/// The config in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigStamp {
    /// 1 for the config procos started with, +1 for every reload applied.
    pub version: u64,
    /// When this version was loaded.
    pub loaded_at: SystemTime,
    /// 16 hex digits over the file's text: equal texts, equal fingerprints.
    pub fingerprint: String,
}

impl ConfigStamp {
    /// The stamp of `version`, loaded now from `text`.
    pub fn new(version: u64, text: &str) -> Self {
        Self {
            version,
            loaded_at: SystemTime::now(),
            fingerprint: fingerprint(text),
        }
    }
}

/// Sends the current stamp (the kernel, on each applied reload).
pub type StampSender = tokio::sync::watch::Sender<ConfigStamp>;
/// Reads the current stamp.
pub type StampReceiver = tokio::sync::watch::Receiver<ConfigStamp>;

/// A stable 64-bit FNV-1a over the text (std's hasher is not stable across releases).
fn fingerprint(text: &str) -> String {
    struct Fnv(u64);
    impl Hasher for Fnv {
        fn finish(&self) -> u64 {
            self.0
        }
        fn write(&mut self, bytes: &[u8]) {
            for b in bytes {
                self.0 ^= u64::from(*b);
                self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
            }
        }
    }
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    text.hash(&mut h);
    format!("{:016x}", h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_texts_have_equal_fingerprints_and_an_edit_changes_it() {
        let a = ConfigStamp::new(1, "camunda: {url: x}\n");
        let b = ConfigStamp::new(2, "camunda: {url: x}\n");
        let c = ConfigStamp::new(2, "camunda: {url: y}\n");
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_ne!(a.fingerprint, c.fingerprint);
        assert_eq!(a.fingerprint.len(), 16);
    }
}
