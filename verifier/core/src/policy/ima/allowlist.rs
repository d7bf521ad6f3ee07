//! `[ima.allowlist]` held compactly: a fleet's allowlist names hundreds of
//! thousands of files, and every attestation looks each measured file up.
//!
//! Paths are kept one after the other in one buffer and digests in another;
//! a hash table of entry numbers finds a path in one probe. For 1,000,000
//! paths of ~60 bytes with one sha256 digest each this is ~100 MB, against
//! ~300 MB for a `BTreeMap<String, BTreeSet<(String, Vec<u8>)>>`
//! (`BENCHMARKS.md`). Entries keep the order they were added in (the policy
//! file's, sorted by path), which is the order [`Allowlist::iter`] gives.

use std::hash::BuildHasher;

/// A digest algorithm an allowlist may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DigestAlg {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl DigestAlg {
    pub const ALL: [DigestAlg; 4] = [
        DigestAlg::Sha1,
        DigestAlg::Sha256,
        DigestAlg::Sha384,
        DigestAlg::Sha512,
    ];

    /// The kernel's name for it (`hash_algo_name[]`), as IMA logs it.
    pub fn name(self) -> &'static str {
        match self {
            DigestAlg::Sha1 => "sha1",
            DigestAlg::Sha256 => "sha256",
            DigestAlg::Sha384 => "sha384",
            DigestAlg::Sha512 => "sha512",
        }
    }

    pub fn digest_len(self) -> usize {
        match self {
            DigestAlg::Sha1 => 20,
            DigestAlg::Sha256 => 32,
            DigestAlg::Sha384 => 48,
            DigestAlg::Sha512 => 64,
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }
}

/// One path's entry: where its path and its digests end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    path_end: u32,
    digests_end: u32,
}

/// Why an allowlist cannot hold more.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllowlistError {
    #[error("the allowlist's paths or digests exceed 4 GiB")]
    TooLarge,
    #[error("`{0}` is listed twice")]
    Duplicate(String),
}

/// Path → allowed digests.
#[derive(Clone, Default)]
pub struct Allowlist {
    paths: Vec<u8>,
    entries: Vec<Entry>,
    /// Each digest: its algorithm and where its bytes end in `digest_bytes`.
    digests: Vec<(DigestAlg, u32)>,
    digest_bytes: Vec<u8>,
    table: hashbrown::HashTable<u32>,
    hasher: std::hash::RandomState,
}

impl PartialEq for Allowlist {
    fn eq(&self, other: &Self) -> bool {
        self.paths == other.paths
            && self.entries == other.entries
            && self.digests == other.digests
            && self.digest_bytes == other.digest_bytes
    }
}
impl Eq for Allowlist {}

impl std::fmt::Debug for Allowlist {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Allowlist({} paths, {} digests)",
            self.entries.len(),
            self.digests.len()
        )
    }
}

/// The digests allowed for one path.
#[derive(Clone, Copy)]
pub struct Digests<'a> {
    list: &'a Allowlist,
    from: usize,
    to: usize,
}

impl<'a> Digests<'a> {
    /// Each digest: the algorithm and its bytes.
    pub fn iter(&self) -> impl Iterator<Item = (DigestAlg, &'a [u8])> + 'a {
        let list = self.list;
        (self.from..self.to).map(move |i| list.digest(i))
    }

    /// Whether `alg` (the kernel's name) and `digest` are allowed.
    pub fn allows(&self, alg: &str, digest: &[u8]) -> bool {
        self.iter().any(|(a, d)| a.name() == alg && d == digest)
    }

    pub fn len(&self) -> usize {
        self.to - self.from
    }

    pub fn is_empty(&self) -> bool {
        self.from == self.to
    }
}

fn to_u32(n: usize) -> Result<u32, AllowlistError> {
    u32::try_from(n).map_err(|_| AllowlistError::TooLarge)
}

impl Allowlist {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `path` with `digests` (each `(alg, bytes)` of the alg's length).
    pub fn insert(
        &mut self,
        path: &str,
        digests: impl IntoIterator<Item = (DigestAlg, Vec<u8>)>,
    ) -> Result<(), AllowlistError> {
        if self.get(path).is_some() {
            return Err(AllowlistError::Duplicate(path.to_string()));
        }
        let mut sorted: Vec<(DigestAlg, Vec<u8>)> = digests.into_iter().collect();
        sorted.sort();
        sorted.dedup();
        self.paths.extend_from_slice(path.as_bytes());
        for (alg, bytes) in sorted {
            self.digest_bytes.extend_from_slice(&bytes);
            self.digests.push((alg, to_u32(self.digest_bytes.len())?));
        }
        let index = to_u32(self.entries.len())?;
        self.entries.push(Entry {
            path_end: to_u32(self.paths.len())?,
            digests_end: to_u32(self.digests.len())?,
        });
        let hash = self.hasher.hash_one(path.as_bytes());
        let (entries, paths, hasher) = (&self.entries, &self.paths, &self.hasher);
        self.table.insert_unique(hash, index, |i| {
            hasher.hash_one(path_of(entries, paths, *i as usize))
        });
        Ok(())
    }

    /// The digests allowed for `path`, if it is listed.
    pub fn get(&self, path: &str) -> Option<Digests<'_>> {
        let hash = self.hasher.hash_one(path.as_bytes());
        let found = self.table.find(hash, |i| {
            path_of(&self.entries, &self.paths, *i as usize) == path.as_bytes()
        })?;
        Some(self.digests_of(*found as usize))
    }

    pub fn contains_key(&self, path: &str) -> bool {
        self.get(path).is_some()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every path and its digests, in the order they were added.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Digests<'_>)> {
        (0..self.entries.len()).map(move |i| {
            let path = path_of(&self.entries, &self.paths, i);
            // Paths were added from `&str`.
            (
                std::str::from_utf8(path).unwrap_or_default(),
                self.digests_of(i),
            )
        })
    }

    /// The paths, in the order they were added.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.iter().map(|(p, _)| p)
    }

    /// Bytes held (buffers and table), for the memory figures.
    pub fn heap_bytes(&self) -> usize {
        self.paths.capacity()
            + self.entries.capacity() * std::mem::size_of::<Entry>()
            + self.digests.capacity() * std::mem::size_of::<(DigestAlg, u32)>()
            + self.digest_bytes.capacity()
            + self.table.capacity() * (std::mem::size_of::<u32>() + 1)
    }

    fn digests_of(&self, i: usize) -> Digests<'_> {
        let from = match i.checked_sub(1) {
            Some(p) => self.entries.get(p).map_or(0, |e| e.digests_end as usize),
            None => 0,
        };
        let to = self.entries.get(i).map_or(from, |e| e.digests_end as usize);
        Digests {
            list: self,
            from,
            to,
        }
    }

    fn digest(&self, i: usize) -> (DigestAlg, &[u8]) {
        let (alg, end) = self
            .digests
            .get(i)
            .copied()
            .unwrap_or((DigestAlg::Sha256, 0));
        let end = end as usize;
        let start = end.saturating_sub(alg.digest_len());
        (alg, self.digest_bytes.get(start..end).unwrap_or_default())
    }
}

fn path_of<'a>(entries: &[Entry], paths: &'a [u8], i: usize) -> &'a [u8] {
    let start = match i.checked_sub(1) {
        Some(p) => entries.get(p).map_or(0, |e| e.path_end as usize),
        None => 0,
    };
    let end = entries.get(i).map_or(start, |e| e.path_end as usize);
    paths.get(start..end).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn finds_each_path_with_its_digests_and_keeps_the_order() {
        let mut a = Allowlist::new();
        a.insert("/a", [(DigestAlg::Sha256, vec![1; 32])]).unwrap();
        a.insert(
            "/b",
            [
                (DigestAlg::Sha1, vec![2; 20]),
                (DigestAlg::Sha256, vec![3; 32]),
            ],
        )
        .unwrap();
        a.insert("/c", []).unwrap();
        assert!(a.get("/a").unwrap().allows("sha256", &[1; 32]));
        assert!(!a.get("/a").unwrap().allows("sha1", &[1; 20]));
        let b = a.get("/b").unwrap();
        assert_eq!(b.len(), 2);
        assert!(b.allows("sha1", &[2; 20]) && b.allows("sha256", &[3; 32]));
        assert!(a.get("/c").unwrap().is_empty());
        assert!(a.get("/d").is_none() && a.get("").is_none() && a.get("/a/").is_none());
        assert_eq!(a.keys().collect::<Vec<_>>(), ["/a", "/b", "/c"]);
        assert_eq!(
            a.insert("/b", []),
            Err(AllowlistError::Duplicate("/b".into()))
        );
        let mut same = Allowlist::new();
        same.insert("/a", [(DigestAlg::Sha256, vec![1; 32])])
            .unwrap();
        assert_ne!(a, same);
    }

    #[test]
    fn a_hundred_thousand_paths_are_all_found() {
        let mut a = Allowlist::new();
        for i in 0..100_000u32 {
            a.insert(
                &format!("/usr/lib/f{i}"),
                [(DigestAlg::Sha256, vec![(i % 251) as u8; 32])],
            )
            .unwrap();
        }
        for i in (0..100_000u32).step_by(997) {
            assert!(a
                .get(&format!("/usr/lib/f{i}"))
                .unwrap()
                .allows("sha256", &[(i % 251) as u8; 32]));
        }
        assert!(a.get("/usr/lib/f100000").is_none());
    }
}
