//! The by-sequence index: which documents changed after a sequence. Entries are runs of
//! (seq, id) pairs ([`codec::Run`]) keyed by their first sequence; a document appears once, at
//! its record's latest `seq`, and a write retires the entries of the sequences it replaces.

use super::writer::Writer;
use super::*;

impl Database {
    /// The changes feed: each document once, at its latest sequence, after `since`.
    pub fn changes(
        &self,
        since: u64,
        descending: bool,
    ) -> impl Iterator<Item = Result<Change>> + '_ {
        // A descending feed starts from the newest change whatever `since` says, as CouchDB.
        let after = if descending { 0 } else { since };
        self.seq_items(after, descending).filter_map(move |item| {
            let res = (|| {
                let (seq, id) = item?;
                // A document updated since this entry was read shows up again at its new seq.
                Ok(self
                    .record(&id)?
                    .filter(|r| r.seq == seq)
                    .map(|record| Change {
                        seq,
                        id,
                        doc: Doc::new(record),
                    }))
            })();
            res.transpose()
        })
    }

    /// The by-sequence index's (seq, id) pairs after `after`, in order (reversed when
    /// `descending`), read run by run ([`codec::Run`]).
    pub(super) fn seq_items(
        &self,
        after: u64,
        descending: bool,
    ) -> impl Iterator<Item = Result<(u64, String)>> + '_ {
        let first = after.saturating_add(1);
        // The run that may hold `first` starts at or before it.
        let start = match self
            .tree
            .range(codec::seq_key(0)..=codec::seq_key(first))
            .next_back()
        {
            Some(Ok((k, _))) => codec::key_seq(&k),
            Some(Err(e)) => Err(e.into()),
            None => Ok(first),
        };
        let (iter, failed): (KvIter, _) = match start {
            Ok(from) => {
                let range = self
                    .tree
                    .range(codec::seq_key(from)..=codec::seq_key(u64::MAX));
                if descending {
                    (Box::new(range.rev()), None)
                } else {
                    (Box::new(range), None)
                }
            }
            Err(e) => (Box::new(std::iter::empty()), Some(Err(e))),
        };
        failed.into_iter().chain(iter.flat_map(move |kv| {
            let run = kv
                .map_err(StoreError::from)
                .and_then(|(k, v)| codec::Run::decode(codec::key_seq(&k)?, &v));
            let items: Vec<Result<(u64, String)>> = match run {
                Ok(mut run) => {
                    run.items.retain(|(seq, _)| *seq > after);
                    if descending {
                        run.items.reverse();
                    }
                    run.items.into_iter().map(Ok).collect()
                }
                Err(e) => vec![Err(e)],
            };
            items
        }))
    }

    /// How many documents changed after `since` (CouchDB's `pending`), exact up to
    /// [`PENDING_EXACT`]; beyond, the number of updates since, an upper bound that is exact
    /// unless a document changed twice. Counting every key made each `_changes` batch of a
    /// large replication cost O(rest of the database): 44% of a source server's CPU.
    pub fn pending(&self, since: u64) -> u64 {
        let n = self.seq_items(since, false).take(PENDING_EXACT + 1).count();
        if n <= PENDING_EXACT {
            n as u64
        } else {
            self.update_seq().saturating_sub(since).max(n as u64)
        }
    }
}

impl<'a> Writer<'a> {
    /// Takes retired sequences out of the runs holding them: each run is rewritten once, or
    /// removed when nothing is left in it.
    pub(super) fn retire_seqs(&self, batch: &mut sled::Batch, mut retired: Vec<u64>) -> Result<()> {
        retired.sort_unstable();
        let mut i = 0;
        while i < retired.len() {
            let seq = retired[i];
            let Some(kv) = self
                .db
                .tree
                .range(codec::seq_key(0)..=codec::seq_key(seq))
                .next_back()
            else {
                i += 1;
                continue;
            };
            let (k, v) = kv?;
            let mut run = codec::Run::decode(codec::key_seq(&k)?, &v)?;
            let last = run.items.last().map_or(0, |(s, _)| *s);
            // Every retired sequence this run holds.
            let mut j = i;
            while j < retired.len() && retired[j] <= last {
                j += 1;
            }
            if j == i {
                // Not in the index (nothing a write leaves behind): nothing to take out.
                i += 1;
                continue;
            }
            let gone = &retired[i..j];
            run.items.retain(|(s, _)| gone.binary_search(s).is_err());
            if run.items.is_empty() {
                batch.remove(k);
            } else {
                batch.insert(k, run.encode());
            }
            i = j;
        }
        Ok(())
    }
}
