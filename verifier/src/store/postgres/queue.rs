//! Group commit for verdicts (see [`VerdictQueue`]).

use super::rows::json_text;
use crate::store::{HistoryRecord, Logs, StoreError, StoredEvidence, TokenRecord, VerdictWrite};
use assay_core::verify::ImaProgress;

/// A [`VerdictWrite`] that owns its logs and token, so that whichever
/// caller writes a batch can write the others' verdicts too.
pub(super) struct OwnedVerdict {
    pub(super) record: HistoryRecord,
    pub(super) evidence: Option<StoredEvidence>,
    pub(super) logs: Logs,
    pub(super) clock: Option<String>,
    pub(super) passed_at: Option<i64>,
    pub(super) token: Option<(String, TokenRecord)>,
    /// The node's IMA state: None unchanged, Some(None) dropped, else its JSON.
    pub(super) ima_state: Option<Option<String>>,
}

impl From<VerdictWrite<'_>> for OwnedVerdict {
    fn from(w: VerdictWrite<'_>) -> Self {
        OwnedVerdict {
            record: w.record,
            evidence: w.evidence,
            logs: w.logs.map(<[u8]>::to_vec),
            clock: w.clock.as_ref().map(json_text),
            passed_at: w.passed_at,
            token: w.token.map(|(t, r)| (t.to_string(), r)),
            ima_state: match &w.ima_state {
                ImaProgress::Unchanged => None,
                ImaProgress::Clear => Some(None),
                ImaProgress::Set(s) => Some(Some(json_text(s))),
            },
        }
    }
}

/// Group commit for verdicts. The chain head's row lock is held until the
/// append's commit has flushed the WAL, so one verdict per transaction would
/// run the whole service at one WAL flush per attestation. Instead a caller
/// that finds no batch being written writes every verdict waiting (its own
/// among them) in one transaction, and each caller returns once the
/// transaction holding its verdict committed.
#[derive(Default)]
pub(super) struct VerdictQueue {
    state: std::sync::Mutex<QueueState>,
    done: std::sync::Condvar,
}

#[derive(Default)]
struct QueueState {
    next_ticket: u64,
    waiting: Vec<(u64, OwnedVerdict)>,
    written: std::collections::HashMap<u64, Result<HistoryRecord, StoreError>>,
    writing: bool,
}

/// Most verdicts in one transaction.
const MAX_BATCH: usize = 64;

impl VerdictQueue {
    pub(super) fn write(
        &self,
        v: OwnedVerdict,
        write_batch: impl Fn(&[OwnedVerdict]) -> Result<Vec<HistoryRecord>, StoreError>,
    ) -> Result<HistoryRecord, StoreError> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let ticket = st.next_ticket;
        st.next_ticket += 1;
        st.waiting.push((ticket, v));
        loop {
            if let Some(r) = st.written.remove(&ticket) {
                return r;
            }
            if st.writing {
                st = self.done.wait(st).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            // Nobody is writing and ours is not written: it is waiting. Write
            // the oldest waiting verdicts (ours among the first MAX_BATCH
            // whenever it was queued before them).
            st.writing = true;
            let n = st.waiting.len().min(MAX_BATCH);
            let batch: Vec<(u64, OwnedVerdict)> = st.waiting.drain(..n).collect();
            drop(st);
            let mut written = Written {
                queue: self,
                tickets: batch.iter().map(|(t, _)| *t).collect(),
                results: Vec::new(),
            };
            let start = std::time::Instant::now();
            written.results = write_each_on_failure(batch, &write_batch);
            crate::metrics::store_commit("postgres", n, start.elapsed());
            drop(written);
            st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// A batch being written. Dropped (also if its writer unwinds), it
/// publishes every ticket's result — an error for any it has none for —
/// and clears the `writing` mark under one lock, then wakes the waiters.
struct Written<'a> {
    queue: &'a VerdictQueue,
    tickets: Vec<u64>,
    results: Vec<(u64, Result<HistoryRecord, StoreError>)>,
}

impl Drop for Written<'_> {
    fn drop(&mut self) {
        let mut st = self.queue.state.lock().unwrap_or_else(|p| p.into_inner());
        st.written.extend(self.results.drain(..));
        for t in &self.tickets {
            st.written.entry(*t).or_insert_with(|| {
                Err(StoreError::Postgres(
                    "the transaction writing this verdict was abandoned".into(),
                ))
            });
        }
        st.writing = false;
        self.queue.done.notify_all();
    }
}

/// Writes a batch in one transaction; if that fails, each verdict in a
/// transaction of its own, so one bad write fails only its own caller.
fn write_each_on_failure(
    batch: Vec<(u64, OwnedVerdict)>,
    write_batch: &impl Fn(&[OwnedVerdict]) -> Result<Vec<HistoryRecord>, StoreError>,
) -> Vec<(u64, Result<HistoryRecord, StoreError>)> {
    let (tickets, verdicts): (Vec<u64>, Vec<OwnedVerdict>) = batch.into_iter().unzip();
    let one = |v: &OwnedVerdict| {
        write_batch(std::slice::from_ref(v)).and_then(|recs| {
            recs.into_iter()
                .next()
                .ok_or_else(|| StoreError::Postgres("a verdict written without its record".into()))
        })
    };
    if verdicts.len() > 1 {
        // Committed: never written again (a ticket without a record, which
        // append_in does not leave, gets an error from `Written`).
        if let Ok(recs) = write_batch(&verdicts) {
            return tickets.into_iter().zip(recs.into_iter().map(Ok)).collect();
        }
    }
    tickets.into_iter().zip(verdicts.iter().map(one)).collect()
}

#[cfg(test)]
mod tests {
    //! The group-commit queue's hand-over logic, apart from PostgreSQL (the
    //! storage suite runs it against a real server).
    use super::*;

    fn verdict(node: &str) -> OwnedVerdict {
        OwnedVerdict {
            record: HistoryRecord {
                seq: 0,
                node_id: node.into(),
                time_unix: 0,
                passed: true,
                claims: Vec::new(),
                policy_name: String::new(),
                policy_digest: String::new(),
                evidence_digest: String::new(),
                prev_hash: String::new(),
                kind: String::new(),
                policy_version: 0,
            },
            evidence: None,
            logs: Logs::default(),
            clock: None,
            passed_at: None,
            token: None,
            ima_state: None,
        }
    }

    /// 16 threads × 25 verdicts; the writer refuses any batch holding a
    /// "bad" node (so batches holding one are retried verdict by verdict)
    /// and numbers the rest in order, as the chain would.
    #[test]
    fn every_caller_gets_its_own_result_and_a_refusal_stays_its_own() {
        let q = VerdictQueue::default();
        let seq = std::sync::atomic::AtomicU64::new(0);
        let batches = std::sync::Mutex::new(Vec::new());
        let write = |b: &[OwnedVerdict]| {
            batches.lock().unwrap().push(b.len());
            // A transaction takes a while: the others queue meanwhile.
            std::thread::sleep(std::time::Duration::from_millis(1));
            if b.iter().any(|v| v.record.node_id.starts_with("bad")) {
                return Err(StoreError::Postgres("refused".into()));
            }
            Ok(b.iter()
                .map(|v| HistoryRecord {
                    seq: seq.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1,
                    ..v.record.clone()
                })
                .collect())
        };
        let results = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|sc| {
            for t in 0..16 {
                let (q, write, results) = (&q, &write, &results);
                sc.spawn(move || {
                    for i in 0..25 {
                        let node = if t == 3 && i % 5 == 0 {
                            format!("bad-{i}")
                        } else {
                            format!("t{t}-{i}")
                        };
                        let r = q.write(verdict(&node), write);
                        results.lock().unwrap().push((node, r));
                    }
                });
            }
        });
        let results = results.into_inner().unwrap();
        let mut seqs = Vec::new();
        for (node, r) in &results {
            match r {
                Ok(rec) => {
                    assert_eq!(&rec.node_id, node);
                    seqs.push(rec.seq);
                }
                Err(_) => assert!(node.starts_with("bad"), "{node} refused"),
            }
        }
        assert_eq!(results.iter().filter(|r| r.1.is_err()).count(), 5);
        seqs.sort_unstable();
        seqs.dedup();
        assert_eq!(seqs.len(), 395, "one seq per written verdict");
        let b = batches.into_inner().unwrap();
        assert!(b.iter().all(|n| (1..=MAX_BATCH).contains(n)));
        assert!(
            b.iter().any(|n| *n > 1),
            "some verdicts shared a batch: {b:?}"
        );
    }

    /// A writer that unwinds fails its batch's callers; the queue goes on.
    #[test]
    fn a_writer_that_panics_fails_its_batch_and_the_queue_goes_on() {
        let q = VerdictQueue::default();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            q.write(
                verdict("a"),
                |_: &[OwnedVerdict]| -> Result<Vec<HistoryRecord>, StoreError> {
                    panic!("writer died")
                },
            )
        }));
        assert!(r.is_err(), "the panic reaches the writing caller");
        let rec = q
            .write(verdict("b"), |b: &[OwnedVerdict]| {
                Ok(b.iter().map(|v| v.record.clone()).collect())
            })
            .unwrap();
        assert_eq!(rec.node_id, "b");
    }
}
