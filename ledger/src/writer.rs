//! The group-commit writer the gateway appends through.
//!
//! Appends from every request go through one bounded queue to one writer thread, which
//! commits whatever has queued up as one transaction (group commit): a busy gateway pays
//! one fsync per batch, not per request, and the request path never touches the database.

use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::checkpoint::Signer;
use crate::error::{Error, Result};
use crate::record::Record;
use crate::store::{Store, Target, open_store};

/// When an append counts as done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Durability {
    /// [`Ledger::append`] returns once the block is committed (and, for SQLite, synced):
    /// a response is never sent for a request whose block could still be lost.
    ///
    /// This is the default.
    #[default]
    Sync,
    /// [`Ledger::append`] returns once the block is queued. A crash loses at most the
    /// queued blocks: up to [`Options::queue`] blocks, normally a few milliseconds' worth.
    Async,
}

/// How a [`Ledger`] writes.
#[derive(Debug)]
pub struct Options {
    /// When an append counts as done. By default [`Durability::Sync`].
    pub durability: Durability,
    /// The most blocks committed in one transaction. By default 1024.
    pub max_batch: usize,
    /// The queue's capacity; appends wait when it is full. By default 65,536.
    pub queue: usize,
    /// Signs the chain head every interval while blocks are unsigned (on a timer: a quiet
    /// ledger's tail is signed too) and at shutdown. By default none.
    pub checkpoints: Option<Signer>,
    /// Group commit under load (like PostgreSQL's `commit_delay` and
    /// `commit_siblings`): when a block arrives less than this long after a commit that
    /// several blocks shared, requests are arriving concurrently, so the writer waits
    /// this long for more blocks to share the transaction. Fewer, larger commits and
    /// fewer wake-ups per request, for at most this much added latency, and only under
    /// concurrent load: a lone client's blocks, or an idle writer's, commit at once.
    /// Zero: never wait. By default 200 µs.
    pub commit_delay: Duration,
    /// The writer's name, set as [`Record::gateway`] of every block appended without
    /// one. By default none.
    pub instance: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            durability: Durability::Sync,
            max_batch: 1024,
            queue: 65_536,
            checkpoints: None,
            commit_delay: Duration::from_micros(200),
            instance: None,
        }
    }
}

type Ack = oneshot::Sender<std::result::Result<u64, String>>;

enum Job {
    Append {
        record: String,
        ack: Option<Ack>,
    },
    Flush(oneshot::Sender<()>),
    /// Time to sign the head if a checkpoint is due.
    Tick,
}

/// A handle to the writer thread. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Ledger {
    tx: Mutex<Option<mpsc::Sender<Job>>>,
    durability: Durability,
    instance: Option<String>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Ledger {
    /// Opens `target` and starts the writer thread.
    ///
    /// # Errors
    ///
    /// When the database cannot be opened or set up.
    pub fn open(target: Target, options: Options) -> Result<Self> {
        let (tx, rx) = mpsc::channel(options.queue.max(1));
        let durability = options.durability;
        let instance = options.instance.clone();
        if let Some(signer) = &options.checkpoints {
            tick(tx.downgrade(), signer.interval());
        }
        // The store is opened on the writer thread: the PostgreSQL client blocks, and
        // `open` may be called from inside an async runtime.
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("palisade-ledger".into())
            .spawn(
                move || match open_store(&target, options.durability == Durability::Sync) {
                    Ok(store) => {
                        let _ = ready_tx.send(Ok(()));
                        write_loop(target, store, rx, options);
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                },
            )
            .map_err(|e| Error::Unavailable(e.to_string()))?;
        ready_rx
            .recv()
            .map_err(|_| Error::Unavailable("ledger writer did not start".into()))??;
        Ok(Ledger {
            tx: Mutex::new(Some(tx)),
            durability,
            instance,
            thread: Mutex::new(Some(thread)),
        })
    }

    fn sender(&self) -> Result<mpsc::Sender<Job>> {
        self.tx
            .lock()
            .expect("ledger lock")
            .clone()
            .ok_or_else(|| Error::Unavailable("ledger closed".into()))
    }

    /// Appends `record`. With [`Durability::Sync`], returns its block's sequence number
    /// once committed; with [`Durability::Async`], `None` once queued.
    ///
    /// # Errors
    ///
    /// [`Error::Unavailable`] when the writer has stopped or the commit failed.
    pub async fn append(&self, mut record: Record) -> Result<Option<u64>> {
        let tx = self.sender()?;
        if record.gateway.is_none() {
            record.gateway.clone_from(&self.instance);
        }
        let record = record.to_canonical();
        let closed = |_| Error::Unavailable("ledger writer stopped".into());
        match self.durability {
            Durability::Async => {
                tx.send(Job::Append { record, ack: None })
                    .await
                    .map_err(closed)?;
                Ok(None)
            }
            Durability::Sync => {
                let (ack, done) = oneshot::channel();
                tx.send(Job::Append {
                    record,
                    ack: Some(ack),
                })
                .await
                .map_err(closed)?;
                match done.await {
                    Ok(Ok(seq)) => Ok(Some(seq)),
                    Ok(Err(message)) => Err(Error::Unavailable(message)),
                    Err(_) => Err(Error::Unavailable("ledger writer stopped".into())),
                }
            }
        }
    }

    /// [`Ledger::append`] for callers outside an async runtime.
    ///
    /// # Errors
    ///
    /// As [`Ledger::append`].
    pub fn append_blocking(&self, record: Record) -> Result<Option<u64>> {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .map_err(|e| Error::Unavailable(e.to_string()))?
            .block_on(self.append(record))
    }

    /// Waits until everything appended so far is committed.
    pub async fn flush(&self) {
        let Ok(tx) = self.sender() else { return };
        let (ack, done) = oneshot::channel();
        if tx.send(Job::Flush(ack)).await.is_ok() {
            let _ = done.await;
        }
    }

    /// Commits what is queued, writes a last checkpoint and stops the writer.
    pub fn close(&self) {
        drop(self.tx.lock().expect("ledger lock").take());
        if let Some(thread) = self.thread.lock().expect("ledger lock").take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        self.close();
    }
}

fn write_loop(
    target: Target,
    mut store: Box<dyn Store>,
    mut rx: mpsc::Receiver<Job>,
    mut options: Options,
) {
    let mut batch = Vec::with_capacity(options.max_batch);
    let mut head = store.head().ok().flatten();
    let max_batch = options.max_batch;
    let drain = |batch: &mut Vec<Job>, rx: &mut mpsc::Receiver<Job>| {
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
    };
    // The last commit: when it ended and how many blocks it had. A block arriving
    // within `commit_delay` of a commit that several requests shared means concurrent
    // load, and only then is waiting for company worth its latency (a lone client's
    // blocks come one at a time and never wait).
    let mut last_commit: Option<(Instant, usize)> = None;
    while let Some(job) = rx.blocking_recv() {
        batch.push(job);
        drain(&mut batch, &mut rx);
        let busy =
            last_commit.is_some_and(|(t, blocks)| blocks > 1 && t.elapsed() < options.commit_delay);
        if busy && batch.len() < max_batch {
            std::thread::sleep(options.commit_delay);
            drain(&mut batch, &mut rx);
        }
        let records: Vec<String> = batch
            .iter_mut()
            .filter_map(|j| match j {
                Job::Append { record, .. } => Some(std::mem::take(record)),
                Job::Flush(_) | Job::Tick => None,
            })
            .collect();
        let outcome = if records.is_empty() {
            Ok(Vec::new())
        } else {
            store.append(&records)
        };
        if !records.is_empty() {
            last_commit = Some((Instant::now(), records.len()));
        }
        match outcome {
            Ok(blocks) => {
                let mut seqs = blocks.iter().map(|b| b.seq);
                if let Some(last) = blocks.last() {
                    head = Some((last.seq, last.hash));
                }
                for job in batch.drain(..) {
                    match job {
                        Job::Append { ack, .. } => {
                            let seq = seqs.next().unwrap_or_default();
                            if let Some(ack) = ack {
                                let _ = ack.send(Ok(seq));
                            }
                        }
                        Job::Flush(ack) => {
                            let _ = ack.send(());
                        }
                        Job::Tick => {}
                    }
                }
                if let (Some(signer), Some((seq, hash))) = (options.checkpoints.as_mut(), head)
                    && let Err(e) = signer.maybe_sign(seq, &hash)
                {
                    tracing::error!(error = %e, "ledger checkpoint not written");
                }
            }
            Err(e) => {
                let message = e.to_string();
                tracing::error!(error = %message, blocks = records.len(), "ledger append failed; the batch's requests are refused");
                for job in batch.drain(..) {
                    match job {
                        Job::Append { ack: Some(ack), .. } => {
                            let _ = ack.send(Err(message.clone()));
                        }
                        Job::Append { ack: None, .. } | Job::Tick => {}
                        Job::Flush(ack) => {
                            let _ = ack.send(());
                        }
                    }
                }
                // The connection may be gone (a PostgreSQL restart, say): start afresh.
                std::thread::sleep(Duration::from_millis(50));
                if let Ok(fresh) = open_store(&target, options.durability == Durability::Sync) {
                    store = fresh;
                }
            }
        }
    }
    if let (Some(signer), Some((seq, hash))) = (options.checkpoints.as_mut(), head)
        && let Err(e) = signer.sign(seq, &hash)
    {
        tracing::error!(error = %e, "final ledger checkpoint not written");
    }
}

/// Asks the writer every half `interval` to sign the head if a checkpoint is due, so
/// that blocks never stay unsigned for much longer than `interval`. Holds the queue
/// only while it sends: the writer stops when the [`Ledger`] closes, and so does this.
fn tick(queue: mpsc::WeakSender<Job>, interval: Duration) {
    let every = (interval / 2).max(Duration::from_millis(10));
    let spawned = std::thread::Builder::new()
        .name("palisade-ledger-tick".into())
        .spawn(move || {
            loop {
                std::thread::sleep(every);
                let Some(tx) = queue.upgrade() else { return };
                // A full queue means blocks are arriving: their commit signs.
                if let Err(mpsc::error::TrySendError::Closed(_)) = tx.try_send(Job::Tick) {
                    return;
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "no checkpoint timer: the head is signed only as blocks arrive");
    }
}
