//! A listener's open connections, capped in all and per peer address.
//!
//! A new connection beyond a cap takes the place of the connection (of that peer, for
//! the per-peer cap) that has been idle the longest: no request in progress, whether
//! it never sent one, sent part of a head, or waits between requests. That one is
//! closed at once. When every connection under the cap has a request in progress, the
//! new connection is refused (closed without a byte read).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use super::activity::Conn;

#[derive(Debug)]
struct Entry {
    peer: IpAddr,
    conn: Arc<Conn>,
}

#[derive(Debug, Default)]
struct Inner {
    next: u64,
    conns: HashMap<u64, Entry>,
    /// Connections per peer, shed ones excluded.
    peers: HashMap<IpAddr, Vec<u64>>,
    /// Connections in all, shed ones excluded.
    live: usize,
}

/// One listener's connections.
#[derive(Debug)]
pub(crate) struct Table {
    max: usize,
    max_per_peer: usize,
    inner: Mutex<Inner>,
}

/// A connection's place in its table, given up when dropped.
#[derive(Debug)]
pub(crate) struct Ticket {
    table: Arc<Table>,
    id: u64,
}

/// What [`Table::admit`] did.
#[derive(Debug)]
pub(crate) enum Admission {
    /// The connection may stay; `shed` older connections were closed to make room.
    Open { ticket: Ticket, shed: usize },
    /// No room: close it.
    Refused,
}

impl Table {
    pub(crate) fn new(max: usize, max_per_peer: usize) -> Arc<Self> {
        Arc::new(Table {
            max: max.max(1),
            max_per_peer: max_per_peer.max(1),
            inner: Mutex::new(Inner::default()),
        })
    }

    /// Connections open (shed ones that have not closed yet excluded).
    pub(crate) fn open(&self) -> usize {
        self.inner.lock().expect("table lock").live
    }

    /// Admits `conn` from `peer`, shedding idle connections to stay within the caps.
    pub(crate) fn admit(self: &Arc<Self>, peer: IpAddr, conn: Arc<Conn>) -> Admission {
        let mut inner = self.inner.lock().expect("table lock");
        let mut shed = 0;
        let of_peer = inner.peers.get(&peer).map_or(0, Vec::len);
        if of_peer >= self.max_per_peer {
            if !inner.shed_oldest(Some(peer)) {
                return Admission::Refused;
            }
            shed += 1;
        }
        if inner.live >= self.max {
            if !inner.shed_oldest(None) {
                return Admission::Refused;
            }
            shed += 1;
        }
        let id = inner.next;
        inner.next += 1;
        inner.conns.insert(id, Entry { peer, conn });
        inner.peers.entry(peer).or_default().push(id);
        inner.live += 1;
        Admission::Open {
            ticket: Ticket {
                table: self.clone(),
                id,
            },
            shed,
        }
    }
}

impl Inner {
    /// Closes the connection idle the longest (of `peer`, or of anyone). False when
    /// none is idle.
    fn shed_oldest(&mut self, peer: Option<IpAddr>) -> bool {
        let candidates: Box<dyn Iterator<Item = &u64>> = match peer {
            Some(p) => Box::new(self.peers.get(&p).into_iter().flatten()),
            None => Box::new(self.peers.values().flatten()),
        };
        let victim = candidates
            .filter_map(|id| {
                let idle = self.conns.get(id)?.conn.idle_for_shedding()?;
                Some((idle, *id))
            })
            .min();
        let Some((_, id)) = victim else {
            return false;
        };
        let entry = self.conns.get(&id).expect("a listed connection");
        entry.conn.shed();
        let peer = entry.peer;
        self.unlist(peer, id);
        true
    }

    fn unlist(&mut self, peer: IpAddr, id: u64) {
        if let Some(ids) = self.peers.get_mut(&peer) {
            if let Some(at) = ids.iter().position(|x| *x == id) {
                ids.swap_remove(at);
                self.live -= 1;
            }
            if ids.is_empty() {
                self.peers.remove(&peer);
            }
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut inner = self.table.inner.lock().expect("table lock");
        if let Some(entry) = inner.conns.remove(&self.id) {
            inner.unlist(entry.peer, self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admit(t: &Arc<Table>, peer: &str) -> (Option<Ticket>, Arc<Conn>) {
        let conn = Conn::new(tokio::time::Instant::now());
        match t.admit(peer.parse().unwrap(), conn.clone()) {
            Admission::Open { ticket, .. } => (Some(ticket), conn),
            Admission::Refused => (None, conn),
        }
    }

    #[tokio::test]
    async fn the_oldest_idle_connection_makes_room_busy_ones_never_do() {
        let t = Table::new(3, 2);
        let (_a, a) = admit(&t, "10.0.0.1");
        std::thread::sleep(std::time::Duration::from_millis(2));
        let (_b, b) = admit(&t, "10.0.0.1");
        let _busy = b.begin();
        // Per peer: a (idle) makes room; b is busy.
        let (_c, c) = admit(&t, "10.0.0.1");
        assert!(a.is_shed() && !b.is_shed());
        // Per peer again: c is idle, b busy.
        let _busy_c = c.begin();
        let (none, _) = admit(&t, "10.0.0.1");
        assert!(none.is_none(), "every connection of the peer is busy");
        // In all: 2 live (b, c) + one other peer = 3; a fourth takes the idle one.
        let (_d, d) = admit(&t, "10.0.0.2");
        assert_eq!(t.open(), 3);
        let (_e, _) = admit(&t, "10.0.0.3");
        assert!(d.is_shed());
        assert_eq!(t.open(), 3);
        drop(_a);
        drop(_d);
        assert_eq!(t.open(), 3);
    }
}
