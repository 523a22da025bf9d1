//! Inputs shared by the benchmarks: a 1080p-sized H.264 stream (large
//! frames) and a real small-frame audio+video file, plus helpers; and the
//! producer scale run ([`scale`]) behind `kvs bench-producers`, and the
//! frame latency run ([`latency`]) behind `kvs latency`.

pub mod latency;
pub mod scale;

use bytes::Bytes;
use kvs_core::ebml::writer;
use kvs_core::mkv::ids;

/// A local endpoint started in-process with `cfg`, a client of it, and the
/// synthetic H.264 video track (1280x720) the real-time runs put.
pub async fn local_setup(
    cfg: kvs_core::local::LocalConfig,
) -> Result<
    (
        kvs_core::local::LocalEndpoint,
        std::sync::Arc<kvs_core::client::KvsClient>,
        kvs_core::mkv::builder::TrackConfig,
    ),
    String,
> {
    use kvs_core::client::{ClientConfig, KvsClient};
    let ep = kvs_core::local::LocalEndpoint::start(cfg)
        .await
        .map_err(|e| e.to_string())?;
    let creds = kvs_core::auth::Credentials::new("a", "b", None, None, "bench");
    let client = KvsClient::new(ClientConfig::new("us-east-1", creds).endpoint(ep.url()))
        .map_err(|e| e.to_string())?;
    let video = kvs_core::mkv::builder::TrackConfig::video(
        1,
        "V_MPEG4/ISO/AVC",
        Bytes::from_static(&[1, 0x64, 0, 0x28, 0xff, 0xe1, 0, 0]),
        1280,
        720,
    );
    Ok((ep, std::sync::Arc::new(client), video))
}

/// A seeded generator (`fastrand`), so every run measures the same input.
pub struct Rng(fastrand::Rng);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Self(fastrand::Rng::with_seed(seed))
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        self.0.u64(..)
    }

    /// `n` bytes in 1..=255 (never zero, so no accidental start codes).
    pub fn nonzero_bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| (self.next_u64() % 255) as u8 + 1).collect()
    }
}

/// The SPS/PPS of the 1080p High-profile stream in the producer vectors.
pub const SPS_1080P: &[u8] = &[
    0x67, 0x64, 0x00, 0x28, 0xac, 0x2b, 0x40, 0x3c, 0x01, 0x13, 0xf2, 0xe0, 0x2d, 0x40, 0x80, 0x80,
    0x90, 0x00, 0x00, 0x3e, 0x80, 0x00, 0x0c, 0x35, 0x08, 0xf4, 0xaa,
];
/// PPS matching [`SPS_1080P`].
pub const PPS_1080P: &[u8] = &[0x68, 0xee, 0x3c, 0xb0];

/// One video frame of the synthetic 1080p stream.
pub struct VideoFrame {
    /// Presentation time, ms.
    pub ms: i64,
    /// Key frame.
    pub key: bool,
    /// Annex-B access unit (SPS+PPS+IDR on key frames).
    pub annexb: Bytes,
    /// The same access unit in AVCC form.
    pub avcc: Bytes,
}

/// 10 s of 1080p30 at about 8 Mbit/s: a 160 KB key frame every second,
/// 28 KB in between (sizes of a real 1080p camera stream, bytes random).
pub fn frames_1080p() -> Vec<VideoFrame> {
    let mut rng = Rng::new(1080);
    (0..300)
        .map(|i| {
            let key = i % 30 == 0;
            let mut nals: Vec<Vec<u8>> = Vec::new();
            if key {
                nals.push(SPS_1080P.to_vec());
                nals.push(PPS_1080P.to_vec());
            }
            let mut slice = vec![if key { 0x65 } else { 0x41 }, 0x88];
            slice.extend(rng.nonzero_bytes(if key { 160_000 } else { 28_000 }));
            nals.push(slice);
            let mut annexb = Vec::new();
            let mut avcc = Vec::new();
            for n in &nals {
                annexb.extend_from_slice(&[0, 0, 0, 1]);
                annexb.extend_from_slice(n);
                avcc.extend_from_slice(&(n.len() as u32).to_be_bytes());
                avcc.extend_from_slice(n);
            }
            VideoFrame {
                ms: i * 1000 / 30,
                key,
                annexb: Bytes::from(annexb),
                avcc: Bytes::from(avcc),
            }
        })
        .collect()
}

/// A conventional Matroska file (known sizes everywhere, one Cluster per
/// second) holding `frames`, readable by every peer parser.
pub fn mkv_known_sizes(frames: &[VideoFrame]) -> Bytes {
    let mut seg = Vec::new();
    writer::master(&mut seg, ids::INFO, |b| {
        writer::uint(b, ids::TIMECODE_SCALE, 1_000_000);
        writer::string(b, ids::MUXING_APP, "kvs-benches");
        writer::string(b, ids::WRITING_APP, "kvs-benches");
        writer::float(b, ids::DURATION, 10_000.0);
    });
    writer::master(&mut seg, ids::TRACKS, |b| {
        writer::master(b, ids::TRACK_ENTRY, |e| {
            writer::uint(e, ids::TRACK_NUMBER, 1);
            writer::uint(e, ids::TRACK_UID, 1);
            writer::uint(e, ids::TRACK_TYPE, 1);
            writer::string(e, ids::CODEC_ID, "V_MPEG4/ISO/AVC");
            let cp = kvs_core::codec::h264::avcc_record(
                &[Bytes::from_static(SPS_1080P)],
                &[Bytes::from_static(PPS_1080P)],
            )
            .expect("valid parameter sets");
            writer::element(e, ids::CODEC_PRIVATE, &cp);
            writer::master(e, ids::VIDEO, |v| {
                writer::uint(v, ids::PIXEL_WIDTH, 1920);
                writer::uint(v, ids::PIXEL_HEIGHT, 1080);
            });
        });
    });
    for gop in frames.chunks(30) {
        let base = gop[0].ms;
        writer::master(&mut seg, ids::CLUSTER, |c| {
            writer::uint(c, ids::TIMECODE, base as u64);
            for f in gop {
                let mut block = vec![0x81];
                block.extend_from_slice(&((f.ms - base) as i16).to_be_bytes());
                block.push(if f.key { 0x80 } else { 0 });
                block.extend_from_slice(&f.avcc);
                writer::element(c, ids::SIMPLE_BLOCK, &block);
            }
        });
    }
    let mut out = Vec::new();
    writer::ebml_header(&mut out, "matroska", 4);
    writer::element(&mut out, ids::SEGMENT, &seg);
    Bytes::from(out)
}

/// A real small-frame audio+video file from the shared vectors
/// (`vogels_480.mkv`: 909 H.264 frames, 1425 AAC frames), if present.
pub fn small_av() -> Option<Bytes> {
    let dir = std::env::var_os("KVS_VECTORS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors")
        });
    std::fs::read(dir.join("kvs-parser-java/vogels_480.mkv"))
        .ok()
        .map(Bytes::from)
}

/// A `Read` that hands out at most `chunk` bytes per call, the way a socket does.
pub struct ChunkReader<'a> {
    data: &'a [u8],
    chunk: usize,
}

impl<'a> ChunkReader<'a> {
    /// A reader over `data` in pieces of `chunk` bytes.
    pub fn new(data: &'a [u8], chunk: usize) -> Self {
        Self { data, chunk }
    }
}

impl std::io::Read for ChunkReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.chunk).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}
