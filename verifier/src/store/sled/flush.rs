//! Group commit for sled's flushes.

use std::sync::Mutex;

use crate::store::StoreError;

/// Group commit: a caller's writes are durable once a flush that started
/// after they were made has finished. One caller flushes for everyone who
/// asked before it started; those who ask meanwhile wait for the next.
#[derive(Default)]
pub(super) struct GroupFlush {
    /// (flushes asked for, asked-for count the last finished flush covers, flushing now)
    state: Mutex<(u64, u64, bool)>,
    done: std::sync::Condvar,
}

impl GroupFlush {
    pub(super) fn flush(&self, db: &::sled::Db) -> Result<(), StoreError> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.0 += 1;
        let mine = st.0;
        loop {
            if st.1 >= mine {
                return Ok(());
            }
            if !st.2 {
                st.2 = true;
                let covers = st.0;
                let writers = covers - st.1;
                drop(st);
                let start = std::time::Instant::now();
                let r = db.flush();
                crate::metrics::store_commit("sled", writers as usize, start.elapsed());
                st = self.state.lock().unwrap_or_else(|p| p.into_inner());
                st.2 = false;
                if r.is_ok() {
                    st.1 = st.1.max(covers);
                }
                self.done.notify_all();
                r?;
            } else {
                st = self.done.wait(st).unwrap_or_else(|p| p.into_inner());
            }
        }
    }
}
