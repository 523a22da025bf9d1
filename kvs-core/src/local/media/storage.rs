//! The fragment store: what each stream holds (on disk with a data dir).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::Notify;

use crate::ebml::writer;
use crate::mkv::ids;
use crate::protocol::ingest::IngestedFragment;

use super::epoch_secs;

/// A stored fragment: the GetMedia document without the trailing service
/// tags (`MILLIS_BEHIND_NOW`, `CONTINUATION_TOKEN`, added when it is sent).
///
/// With a data directory only the newest fragments of a stream (the live
/// edge, [`MediaStore::memory_fragments`]) keep their document in memory;
/// the others are read from their file when asked for ([`Stored::doc`]),
/// so memory does not grow with what is stored.
#[derive(Debug)]
pub(crate) struct Stored {
    pub number: String,
    pub producer_ms: u64,
    pub server_ms: u64,
    /// The document ([`Stored::doc`]) while it is held in memory.
    memory: std::sync::Mutex<Option<Vec<Bytes>>>,
    /// Where it is saved, and where its service Tags lie in the file.
    file: Option<(std::path::PathBuf, Option<(usize, usize)>)>,
    /// Size of the Cluster, bytes.
    pub size: u64,
    /// How long its media plays, ms: first frame to the end of the last
    /// ([`IngestedFragment::media_ms`]) — ListFragments'
    /// `FragmentLengthInMilliseconds`, HLS `EXTINF`, DASH `d`, the
    /// fragment's span on the timeline.
    pub media_ms: u64,
}

impl Stored {
    /// The document: `[0]` the EBML header, Segment, header elements and
    /// the producer's Tags that came before the Cluster; `[1]` the service's
    /// Tags in front of the Cluster, GetMedia spelling ([`Lead::GetMedia`]);
    /// then the Cluster and the producer's Tags that followed it. (A
    /// fragment saved by an older version whose service Tags cannot be found
    /// is one chunk.) From memory, or read from its file.
    ///
    /// Errors: the file cannot be read (expired and deleted meanwhile, say).
    pub(crate) fn doc(&self) -> std::io::Result<Vec<Bytes>> {
        if let Some(d) = self
            .memory
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
        {
            return Ok(d.clone());
        }
        let Some((path, at)) = &self.file else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("fragment {} is no longer held", self.number),
            ));
        };
        let data = Bytes::from(std::fs::read(path)?);
        let lead = lead_tags(
            Lead::GetMedia,
            &self.number,
            self.server_ms,
            self.producer_ms,
        );
        Ok(split_doc(data, *at, &lead))
    }

    /// Drops the in-memory copy of a fragment that is saved; whether it was
    /// held.
    fn evict(&self) -> bool {
        if self.file.is_none() {
            return false;
        }
        self.memory
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
            .is_some()
    }

    /// The index line that describes it (`index.jsonl`).
    fn index_line(&self) -> Value {
        let (lead_at, lead_len) = self
            .file
            .as_ref()
            .and_then(|(_, at)| *at)
            .map_or((Value::Null, Value::Null), |(a, l)| (a.into(), l.into()));
        serde_json::json!({"number": self.number, "producer_ms": self.producer_ms,
            "server_ms": self.server_ms, "size": self.size, "media_ms": self.media_ms,
            "lead_at": lead_at, "lead_len": lead_len})
    }
}

/// Fragments of one stream, with a wake-up for live readers.
#[derive(Debug, Default)]
pub(crate) struct Media {
    pub fragments: Vec<Arc<Stored>>,
    /// Bytes of the Clusters held (the memory cap without a data
    /// directory).
    held: u64,
    /// The newest PERSISTED ACKs: fragment number, when (epoch ms) and how
    /// long after the fragment's last byte (the console shows them).
    pub acks: std::collections::VecDeque<(String, u64, std::time::Duration)>,
    /// Fragments being ingested (one per PutMedia connection at most), in
    /// the order they started.
    pub live: Vec<Arc<Live>>,
    pub notify: Arc<Notify>,
}

/// A fragment being ingested: what live GetMedia readers are sent while
/// its blocks arrive.
#[derive(Debug)]
pub(crate) struct Live {
    pub number: String,
    pub server_ms: u64,
    state: std::sync::Mutex<LiveState>,
    notify: Arc<Notify>,
}

/// How far a [`Live`] fragment has come.
#[derive(Debug, Default)]
pub(crate) struct LiveState {
    /// The GetMedia document so far: prefix, the service's Tags, then the
    /// Cluster as it arrives (the first parts of [`Stored::doc`]).
    pub parts: Vec<Bytes>,
    pub end: Option<LiveEnd>,
}

/// How a [`Live`] fragment ended.
#[derive(Debug, Clone)]
pub(crate) enum LiveEnd {
    /// Complete and stored: the rest of its document follows.
    Stored(Arc<Stored>),
    /// The producer broke off inside it, or it was refused: not stored.
    Abandoned,
}

impl Live {
    /// The parts from `from` on, and the end if it came.
    pub(crate) fn since(&self, from: usize) -> (Vec<Bytes>, Option<LiveEnd>) {
        let st = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (
            st.parts
                .get(from..)
                .map(<[Bytes]>::to_vec)
                .unwrap_or_default(),
            st.end.clone(),
        )
    }

    /// More of the Cluster arrived.
    pub(crate) fn append(&self, parts: Vec<Bytes>) {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .parts
            .extend(parts);
        self.notify.notify_waiters();
    }

    /// Ends it (the first end stands).
    fn end(&self, end: LiveEnd) {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .end
            .get_or_insert(end);
        self.notify.notify_waiters();
    }
}

/// The stored document's first two parts: the EBML header, Segment, the
/// header elements and the producer's Tags before the Cluster; then the
/// service's Tags in front of the Cluster.
fn doc_head(
    header: &[u8],
    tags: &[Bytes],
    number: &str,
    server_ms: u64,
    producer_ms: u64,
) -> (Bytes, Bytes) {
    let mut prefix = Vec::with_capacity(header.len() + 512);
    writer::ebml_header(&mut prefix, "matroska", 2);
    writer::master_unknown(&mut prefix, ids::SEGMENT);
    prefix.extend_from_slice(header);
    for t in tags {
        prefix.extend_from_slice(t);
    }
    let lead = lead_tags(Lead::GetMedia, number, server_ms, producer_ms);
    (Bytes::from(prefix), Bytes::from(lead))
}

/// Fragments of every stream.
#[derive(Debug, Default)]
pub(crate) struct MediaStore {
    pub streams: std::sync::Mutex<HashMap<String, Media>>,
    counter: std::sync::atomic::AtomicU64,
    /// Where fragments are written (with `--data-dir`).
    dir: Option<std::path::PathBuf>,
    /// Fragments received over all connections (for the error-ack fault).
    pub(super) received: std::sync::atomic::AtomicU64,
    /// PutMedia connections so far (for the scheduled faults).
    pub(super) put_connections: std::sync::atomic::AtomicU64,
    /// Open PutMedia (`true`) and GetMedia (`false`) connections per stream.
    connections: std::sync::Mutex<HashMap<(String, bool), usize>>,
    /// With a data directory: the newest fragments per stream whose
    /// documents stay in memory (the live edge); older ones are read from
    /// disk.
    pub(crate) memory_fragments: usize,
    /// Without a data directory: the Cluster bytes held per stream; beyond
    /// it the oldest fragments expire first (0: no cap).
    pub(crate) max_memory_bytes: u64,
    /// Index files are appended and rewritten one at a time.
    index_lock: std::sync::Mutex<()>,
}

/// One open PutMedia or GetMedia connection of a stream, counted until dropped.
#[derive(Debug)]
pub(crate) struct ConnectionSlot {
    store: Arc<MediaStore>,
    key: (String, bool),
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut c = self
            .store
            .connections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = c.get_mut(&self.key) {
            *n = n.saturating_sub(1);
        }
    }
}

impl MediaStore {
    /// Counts a new PutMedia (`put`) or GetMedia connection of `stream`, or
    /// refuses it when `limit` are open already.
    pub(crate) fn open_connection(
        self: &Arc<Self>,
        stream: &str,
        put: bool,
        limit: usize,
    ) -> Option<ConnectionSlot> {
        let key = (stream.to_owned(), put);
        let mut c = self
            .connections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = c.entry(key.clone()).or_default();
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(ConnectionSlot {
            store: self.clone(),
            key,
        })
    }
}

/// The spellings of the service's Tags in front of a fragment's Cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lead {
    /// GetMedia (its model and the real captures):
    /// `AWS_KINESISVIDEO_SERVER_TIMESTAMP`, `…_PRODUCER_TIMESTAMP`.
    GetMedia,
    /// GetMediaForFragmentList (the kinesis-video-archived-media model):
    /// `AWS_KINESISVIDEO_SERVER_SIDE_TIMESTAMP`, `…_PRODUCER_SIDE_TIMESTAMP`.
    FragmentList,
}

/// The service's Tags element in front of a fragment's Cluster.
pub(super) fn lead_tags(lead: Lead, number: &str, server_ms: u64, producer_ms: u64) -> Vec<u8> {
    let (server, producer) = match lead {
        Lead::GetMedia => (
            crate::mkv::fragment::TAG_SERVER_TIMESTAMP,
            crate::mkv::fragment::TAG_PRODUCER_TIMESTAMP,
        ),
        Lead::FragmentList => (
            crate::mkv::fragment::TAG_SERVER_SIDE_TIMESTAMP,
            crate::mkv::fragment::TAG_PRODUCER_SIDE_TIMESTAMP,
        ),
    };
    let mut out = Vec::new();
    tags_element(
        &mut out,
        &[
            (crate::mkv::fragment::TAG_FRAGMENT_NUMBER, number.to_owned()),
            (server, epoch_secs(server_ms)),
            (producer, epoch_secs(producer_ms)),
        ],
    );
    out
}

/// Splits a saved document into [prefix, service Tags, rest] (see
/// [`Stored::doc`]), at the position the index recorded or, for documents
/// saved before it was recorded, where the service Tags are found.
fn split_doc(doc: Bytes, at: Option<(usize, usize)>, lead: &[u8]) -> Vec<Bytes> {
    let at = at
        .filter(|&(a, l)| a.checked_add(l).and_then(|e| doc.get(a..e)) == Some(lead))
        .or_else(|| memchr::memmem::find(&doc, lead).map(|a| (a, lead.len())));
    match at {
        Some((a, l)) => vec![doc.slice(..a), doc.slice(a..a + l), doc.slice(a + l..)],
        None => {
            tracing::warn!("saved fragment without its service tags; served as saved");
            vec![doc]
        }
    }
}

/// One `Tags` element holding these SimpleTags.
pub(super) fn tags_element(out: &mut Vec<u8>, tags: &[(&str, String)]) {
    writer::master(out, ids::TAGS, |t| {
        writer::master(t, ids::TAG, |tag| {
            for (name, value) in tags {
                writer::master(tag, ids::SIMPLE_TAG, |st| {
                    writer::string(st, ids::TAG_NAME, name);
                    writer::string(st, ids::TAG_STRING, value);
                });
            }
        });
    });
}

impl MediaStore {
    /// The memory bounds ([`MediaStore::memory_fragments`],
    /// [`MediaStore::max_memory_bytes`]).
    pub(crate) fn with_limits(mut self, memory_fragments: usize, max_memory_bytes: u64) -> Self {
        self.memory_fragments = memory_fragments.max(1);
        self.max_memory_bytes = max_memory_bytes;
        self
    }

    /// A fresh 47-digit fragment number, increasing.
    pub(crate) fn next_number(&self) -> String {
        let n = self
            .counter
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1;
        format!("9134385233318{:034}", n)
    }

    /// A store that writes every fragment under `dir` before it counts as
    /// stored, and starts with what an earlier run left there.
    pub(crate) fn open(dir: &std::path::Path) -> std::io::Result<Self> {
        let store = Self {
            dir: Some(dir.to_owned()),
            ..Self::default()
        };
        let media = dir.join("media");
        std::fs::create_dir_all(&media)?;
        let mut max = 0u64;
        let mut streams = store
            .streams
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for entry in std::fs::read_dir(&media)? {
            let entry = entry?;
            let Some(name) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("s-"))
                .map(str::to_owned)
            else {
                continue;
            };
            let index =
                std::fs::read_to_string(entry.path().join("index.jsonl")).unwrap_or_default();
            let m = streams.entry(name).or_default();
            for line in index.lines().filter(|l| !l.trim().is_empty()) {
                let v: Value = serde_json::from_str(line)
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
                let number = v["number"].as_str().unwrap_or_default().to_owned();
                max = max.max(number.get(13..).and_then(|n| n.parse().ok()).unwrap_or(0));
                // An entry whose file is gone expired just before a stop.
                let path = entry.path().join(format!("{number}.mkv"));
                if !path.exists() {
                    continue;
                }
                let producer_ms = v["producer_ms"].as_u64().unwrap_or(0);
                let server_ms = v["server_ms"].as_u64().unwrap_or(0);
                let at = v["lead_at"]
                    .as_u64()
                    .zip(v["lead_len"].as_u64())
                    .map(|(a, l)| (a as usize, l as usize));
                m.fragments.push(Arc::new(Stored {
                    memory: std::sync::Mutex::new(None),
                    file: Some((path, at)),
                    number,
                    producer_ms,
                    server_ms,
                    size: v["size"].as_u64().unwrap_or(0),
                    // Indexes written before media_ms was kept: the
                    // first-to-last-frame duration.
                    media_ms: v["media_ms"]
                        .as_u64()
                        .or_else(|| v["duration_ms"].as_u64())
                        .unwrap_or(0),
                }));
            }
        }
        drop(streams);
        store
            .counter
            .store(max, std::sync::atomic::Ordering::SeqCst);
        Ok(store)
    }

    fn stream_dir(&self, stream: &str) -> Option<std::path::PathBuf> {
        self.dir
            .as_ref()
            .map(|d| d.join("media").join(format!("s-{stream}")))
    }

    /// Stores a fragment and wakes live readers. A `durable` fragment (a
    /// stream with retention) is written to disk first with `--data-dir`;
    /// others live only in memory, for live readers.
    pub(crate) fn store(
        &self,
        stream: &str,
        number: String,
        producer_ms: u64,
        server_ms: u64,
        f: &IngestedFragment,
        durable: bool,
    ) -> std::io::Result<()> {
        let size: usize = f.cluster.iter().map(Bytes::len).sum();
        let (prefix, lead) = doc_head(&f.header, &f.tags, &number, server_ms, producer_ms);
        let (lead_at, lead_len) = (prefix.len(), lead.len());
        // The Cluster is kept as received, not copied into the prefix; the
        // producer's Tags that followed it come after it.
        let doc: Vec<Bytes> = [prefix, lead]
            .into_iter()
            .chain(f.cluster.iter().cloned())
            .chain(f.trailing_tags.iter().cloned())
            .collect();
        let mut file = None;
        if let Some(dir) = self.stream_dir(stream).filter(|_| durable) {
            use std::io::Write;
            std::fs::create_dir_all(&dir)?;
            let path = dir.join(format!("{number}.mkv"));
            let mut out = std::fs::File::create(&path)?;
            for part in &doc {
                out.write_all(part)?;
            }
            out.sync_all()?;
            file = Some((path, Some((lead_at, lead_len))));
        }
        let stored = Arc::new(Stored {
            number,
            producer_ms,
            server_ms,
            memory: std::sync::Mutex::new(Some(doc)),
            file,
            size: size as u64,
            media_ms: f.media_ms,
        });
        if let Some(dir) = self.stream_dir(stream).filter(|_| stored.file.is_some()) {
            use std::io::Write;
            let _guard = self
                .index_lock
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut index = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("index.jsonl"))?;
            index.write_all(format!("{}\n", stored.index_line()).as_bytes())?;
            index.sync_all()?;
        }
        let mut streams = self
            .streams
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let m = streams.entry(stream.to_owned()).or_default();
        m.fragments.push(stored.clone());
        m.held += stored.size;
        if stored.file.is_some() {
            // The live edge stays in memory; older documents are on disk.
            let older = m.fragments.len().saturating_sub(self.memory_fragments);
            for f in m.fragments[..older].iter().rev() {
                if !f.evict() {
                    break;
                }
                m.held = m.held.saturating_sub(f.size);
            }
        } else if self.max_memory_bytes > 0 && durable {
            // Without a data directory: the oldest go first past the cap.
            let mut expired = 0;
            while m.held > self.max_memory_bytes && m.fragments.len() > 1 {
                let f = m.fragments.remove(0);
                m.held = m.held.saturating_sub(f.size);
                expired += 1;
            }
            if expired > 0 {
                tracing::warn!(
                    stream,
                    expired,
                    cap = self.max_memory_bytes,
                    "oldest fragments expired: the stream's memory cap is reached (give a data directory to keep them)"
                );
            }
        }
        // Live readers that had its first parts get the rest.
        if let Some(i) = m.live.iter().position(|l| l.number == stored.number) {
            m.live.remove(i).end(LiveEnd::Stored(stored));
        }
        m.notify.notify_waiters();
        Ok(())
    }

    /// A fragment's Cluster started: live readers are sent its head, then
    /// its blocks as they arrive ([`Live::append`]), until it is stored
    /// ([`Self::store`]) or abandoned ([`Self::abandon`]).
    pub(crate) fn begin_live(
        &self,
        stream: &str,
        number: &str,
        producer_ms: u64,
        server_ms: u64,
        header: &[u8],
        tags: &[Bytes],
    ) -> Arc<Live> {
        let (prefix, lead) = doc_head(header, tags, number, server_ms, producer_ms);
        let mut streams = self
            .streams
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let m = streams.entry(stream.to_owned()).or_default();
        let live = Arc::new(Live {
            number: number.to_owned(),
            server_ms,
            state: std::sync::Mutex::new(LiveState {
                parts: vec![prefix, lead],
                end: None,
            }),
            notify: m.notify.clone(),
        });
        m.live.push(live.clone());
        m.notify.notify_waiters();
        live
    }

    /// A fragment being ingested will not be stored (the producer broke off
    /// inside it, or it was refused).
    pub(crate) fn abandon(&self, stream: &str, live: &Arc<Live>) {
        if let Some(m) = self
            .streams
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_mut(stream)
        {
            m.live.retain(|l| !Arc::ptr_eq(l, live));
        }
        live.end(LiveEnd::Abandoned);
    }

    /// Drops the oldest fragments of a stream beyond `keep` (the live buffer
    /// of streams without retention).
    pub(crate) fn trim(&self, stream: &str, keep: usize) {
        if let Some(m) = self
            .streams
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_mut(stream)
        {
            let excess = m.fragments.len().saturating_sub(keep);
            if excess > 0 {
                for f in m.fragments.drain(..excess) {
                    m.held = m.held.saturating_sub(f.size);
                }
            }
        }
    }

    /// Expires a stream's fragments ingested before `cutoff_ms` (server
    /// time, epoch ms): gone from memory, from ListFragments and every
    /// read, and from disk (files and index). Returns how many went.
    pub(crate) fn expire(&self, stream: &str, cutoff_ms: u64) -> usize {
        let (gone, kept): (Vec<Arc<Stored>>, Vec<Value>) = {
            let mut streams = self
                .streams
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let Some(m) = streams.get_mut(stream) else {
                return 0;
            };
            if !m.fragments.iter().any(|f| f.server_ms < cutoff_ms) {
                return 0;
            }
            let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut m.fragments)
                .into_iter()
                .partition(|f| f.server_ms < cutoff_ms);
            m.fragments = kept;
            for f in &gone {
                if f.memory
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .is_some()
                {
                    m.held = m.held.saturating_sub(f.size);
                }
            }
            let lines = m
                .fragments
                .iter()
                .filter(|f| f.file.is_some())
                .map(|f| f.index_line())
                .collect();
            (gone, lines)
        };
        if let Some(dir) = self.stream_dir(stream) {
            let _guard = self
                .index_lock
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // The index first (an entry without its file is skipped at
            // start), then the files.
            let text: String = kept.iter().map(|l| format!("{l}\n")).collect();
            let tmp = dir.join("index.jsonl.tmp");
            let written = std::fs::write(&tmp, text)
                .and_then(|()| std::fs::rename(&tmp, dir.join("index.jsonl")));
            if let Err(e) = written {
                tracing::error!(stream, error = %e, "cannot rewrite the fragment index");
            }
            for f in &gone {
                if let Some((path, _)) = &f.file {
                    let _ = std::fs::remove_file(path);
                }
            }
        }
        tracing::debug!(
            stream,
            expired = gone.len(),
            "fragments past retention expired"
        );
        gone.len()
    }

    /// Records a PERSISTED ACK: `latency` from the fragment's last byte.
    pub(crate) fn note_ack(&self, stream: &str, number: &str, latency: std::time::Duration) {
        let mut streams = self
            .streams
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let acks = &mut streams.entry(stream.to_owned()).or_default().acks;
        if acks.len() == 32 {
            acks.pop_front();
        }
        acks.push_back((number.to_owned(), super::now_ms(), latency));
    }

    /// Forgets a deleted stream's fragments (and their files).
    pub(crate) fn remove(&self, stream: &str) {
        if let Some(m) = self
            .streams
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(stream)
        {
            m.notify.notify_waiters();
        }
        if let Some(dir) = self.stream_dir(stream) {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
