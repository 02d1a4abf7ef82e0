//! The toxics of one proxy, published to its live connections.
//!
//! The set is a `watch` channel of [`Chains`] (one ordered list per stream). API calls edit it
//! under the channel's own lock, which makes "name is free, then insert" atomic; connections hold
//! receivers, take a snapshot per chunk and are woken by every change, so a toxic added, updated
//! or removed acts on connections that are already open, as in Toxiproxy. New toxics go to the
//! end of their stream's chain, which is the order data passes through them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::watch;

use super::{NewToxic, Stream, Toxic, ToxicKind, ToxicPatch};
use crate::error::Error;

/// One snapshot of a proxy's toxics: each stream's chain, in the order data passes through it.
#[derive(Debug, Clone, Default)]
pub struct Chains {
    upstream: Vec<Arc<Toxic>>,
    downstream: Vec<Arc<Toxic>>,
}

impl Chains {
    /// The chain of one stream.
    pub fn chain(&self, stream: Stream) -> &[Arc<Toxic>] {
        match stream {
            Stream::Upstream => &self.upstream,
            Stream::Downstream => &self.downstream,
        }
    }

    fn chain_mut(&mut self, stream: Stream) -> &mut Vec<Arc<Toxic>> {
        match stream {
            Stream::Upstream => &mut self.upstream,
            Stream::Downstream => &mut self.downstream,
        }
    }

    /// All toxics, upstream chain first, as Toxiproxy's `GetToxicArray` lists them.
    pub fn all(&self) -> impl Iterator<Item = &Arc<Toxic>> {
        self.upstream.iter().chain(self.downstream.iter())
    }

    /// The toxic with this name, in either stream.
    pub fn find(&self, name: &str) -> Option<&Arc<Toxic>> {
        self.all().find(|t| t.name == name)
    }

    /// Extension: whether a `connect_timeout` toxic is installed (on either stream).
    pub fn blocks_handshakes(&self) -> bool {
        self.all().any(|t| t.kind == ToxicKind::ConnectTimeout)
    }

    fn position(&self, name: &str) -> Option<(Stream, usize)> {
        [Stream::Upstream, Stream::Downstream]
            .into_iter()
            .find_map(|s| Some((s, self.chain(s).iter().position(|t| t.name == name)?)))
    }
}

/// A proxy's toxics. Cheap to share: wrap in `Arc`.
#[derive(Debug)]
pub struct ToxicSet {
    tx: watch::Sender<Chains>,
    /// Sequence number of the next accepted connection (targeting's `first` counts these).
    next_conn: AtomicU64,
}

impl Default for ToxicSet {
    fn default() -> Self {
        ToxicSet {
            tx: watch::Sender::new(Chains::default()),
            next_conn: AtomicU64::new(0),
        }
    }
}

impl ToxicSet {
    /// A receiver for a new connection: it sees the current chains and every later change.
    pub fn subscribe(&self) -> watch::Receiver<Chains> {
        self.tx.subscribe()
    }

    /// Numbers a newly accepted connection: 0, 1, 2, ... over the proxy's life.
    pub fn next_conn_seq(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::SeqCst)
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Chains {
        self.tx.borrow().clone()
    }

    /// Installs a new toxic at the end of its stream's chain.
    pub fn add(&self, new: NewToxic) -> Result<Arc<Toxic>, Error> {
        let mut result = Err(Error::ToxicAlreadyExists);
        self.tx.send_if_modified(|chains| {
            if chains.find(new.name()).is_some() {
                return false;
            }
            // Read under the channel's lock: a connection numbered from here on is "after" it.
            let first_seq = self.next_conn.load(Ordering::SeqCst);
            result = new.build(first_seq).map(Arc::new);
            match &result {
                Ok(toxic) => {
                    chains.chain_mut(toxic.stream).push(toxic.clone());
                    true
                }
                Err(_) => false,
            }
        });
        result
    }

    /// Applies `patch` to the named toxic, in place in its chain.
    pub fn update(&self, name: &str, patch: ToxicPatch) -> Result<Arc<Toxic>, Error> {
        let mut result = Err(Error::ToxicNotFound);
        self.tx.send_if_modified(|chains| {
            let Some((stream, i)) = chains.position(name) else {
                return false;
            };
            let slot = &mut chains.chain_mut(stream)[i];
            result = slot.patched(patch).map(Arc::new);
            match &result {
                Ok(toxic) => {
                    *slot = toxic.clone();
                    true
                }
                Err(_) => false,
            }
        });
        result
    }

    /// Removes the named toxic.
    pub fn remove(&self, name: &str) -> Result<(), Error> {
        let mut found = false;
        self.tx.send_if_modified(|chains| {
            let Some((stream, i)) = chains.position(name) else {
                return false;
            };
            chains.chain_mut(stream).remove(i);
            found = true;
            true
        });
        if found {
            Ok(())
        } else {
            Err(Error::ToxicNotFound)
        }
    }

    /// Removes every toxic (what `POST /reset` does to each proxy).
    pub fn clear(&self) {
        self.tx.send_if_modified(|chains| {
            let had_any = chains.all().next().is_some();
            *chains = Chains::default();
            had_any
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(body: &str) -> NewToxic {
        NewToxic::from_json(body.as_bytes()).unwrap()
    }

    #[test]
    fn names_are_unique_across_streams_and_order_is_kept() {
        let set = ToxicSet::default();
        set.add(new(r#"{"name":"a","type":"noop","stream":"upstream"}"#))
            .unwrap();
        set.add(new(r#"{"name":"b","type":"noop"}"#)).unwrap();
        set.add(new(r#"{"name":"c","type":"noop","stream":"upstream"}"#))
            .unwrap();
        let dup = set.add(new(r#"{"name":"a","type":"noop"}"#));
        assert!(matches!(dup, Err(Error::ToxicAlreadyExists)));
        let names: Vec<_> = set.snapshot().all().map(|t| t.name.clone()).collect();
        assert_eq!(names, ["a", "c", "b"]);
    }

    #[test]
    fn update_keeps_identity_and_bumps_revision() {
        let set = ToxicSet::default();
        let before = set
            .add(new(r#"{"type":"limit_data","attributes":{"bytes":5}}"#))
            .unwrap();
        let patch = ToxicPatch::from_json(br#"{"attributes":{"bytes":9}}"#).unwrap();
        let after = set.update("limit_data_downstream", patch).unwrap();
        assert_eq!((after.uid, after.rev), (before.uid, before.rev + 1));
        assert!(matches!(set.remove("nope"), Err(Error::ToxicNotFound)));
        set.clear();
        assert!(set.snapshot().find("limit_data_downstream").is_none());
    }
}
