//! ISO base media (MP4) output for what KVS hands out as MP4: whole clips
//! (GetClip: one progressive file, `moov` before `mdat`) and fragmented MP4
//! for HLS and DASH (an init segment, then one `moof`+`mdat` per KVS
//! fragment).
//!
//! Input is what the Matroska side already has: the tracks ([`TrackInfo`],
//! whose CodecPrivate is exactly the `avcC`/`hvcC`/AudioSpecificConfig an MP4
//! sample entry carries) and frames in decode order with presentation
//! timestamps. Decode times are the sorted presentation times of the
//! fragment's frames, so B-frame streams keep their presentation order
//! through signed composition offsets.
//!
//! Written here rather than with a crate: the maintained MP4 crates either
//! write progressive files only (no `moof`), or are box toolkits that would
//! still need all of this layout logic; what KVS needs is a few dozen boxes for
//! H.264/H.265 + AAC/G.711, with payloads passed through as [`Bytes`] without
//! a copy. Conformance is checked with ffprobe/ffmpeg in the tests.

use bytes::Bytes;

use crate::codec::Codec;
use crate::mkv::types::{ParsedFrame, TrackInfo};

/// Why media cannot be written as MP4 (each maps to the service's exception).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Mp4Error {
    /// A track's codec has no MP4 mapping here (`UnsupportedStreamMediaTypeException`).
    #[error(
        "track {track}: codec {codec_id} is not supported in MP4 (H.264, H.265, AAC and G.711 are)"
    )]
    UnsupportedCodec {
        /// Matroska track number.
        track: u64,
        /// Its CodecID.
        codec_id: String,
    },
    /// A track needs CodecPrivate and has none (`MissingCodecPrivateDataException`).
    #[error("track {track}: no CodecPrivate")]
    MissingCodecPrivate {
        /// Matroska track number.
        track: u64,
    },
    /// A track's CodecPrivate is not what its codec needs (`InvalidCodecPrivateDataException`).
    #[error("track {track}: bad CodecPrivate: {reason}")]
    InvalidCodecPrivate {
        /// Matroska track number.
        track: u64,
        /// What was wrong.
        reason: String,
    },
}

/// What a track carries: its ISO-BMFF handler (`hdlr`: `vide` or `soun`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handler {
    /// Pictures.
    Video,
    /// Sound.
    Audio,
}

/// One MP4 track, made from a Matroska track.
#[derive(Debug, Clone)]
pub struct Mp4Track {
    /// The Matroska track number its frames carry.
    pub mkv_number: u64,
    /// MP4 track id (1-based, in input order).
    pub id: u32,
    /// Video or audio.
    pub kind: Handler,
    /// Media time units per second (90 kHz for video, the sample rate for audio).
    pub timescale: u32,
    /// Picture size (0 for audio).
    pub width: u16,
    /// Picture height (0 for audio).
    pub height: u16,
    /// Fallback duration of a last sample, in `timescale` units.
    default_duration: u32,
    /// The `stsd` sample entry box.
    entry: Vec<u8>,
}

/// One sample, in its track's time units.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// MP4 track id.
    pub track: u32,
    /// Decode time.
    pub dts: u64,
    /// Until the next sample's decode time.
    pub duration: u32,
    /// Presentation time minus decode time.
    pub cto: i32,
    /// A sync sample.
    pub key: bool,
    /// The frame (length-prefixed NAL units for video).
    pub data: Bytes,
}

/// Writes a box: size, type, then whatever `body` writes.
fn bx(out: &mut Vec<u8>, kind: &[u8; 4], body: impl FnOnce(&mut Vec<u8>)) {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(kind);
    body(out);
    let size = (out.len() - at) as u32;
    out[at..at + 4].copy_from_slice(&size.to_be_bytes());
}

/// Writes a full box (version and flags first).
fn full(
    out: &mut Vec<u8>,
    kind: &[u8; 4],
    version: u8,
    flags: u32,
    body: impl FnOnce(&mut Vec<u8>),
) {
    bx(out, kind, |o| {
        o.push(version);
        o.extend_from_slice(&flags.to_be_bytes()[1..]);
        body(o);
    });
}

fn u16be(o: &mut Vec<u8>, v: u16) {
    o.extend_from_slice(&v.to_be_bytes());
}
fn u32be(o: &mut Vec<u8>, v: u32) {
    o.extend_from_slice(&v.to_be_bytes());
}
fn u64be(o: &mut Vec<u8>, v: u64) {
    o.extend_from_slice(&v.to_be_bytes());
}

const MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

/// An MPEG-4 descriptor tag and length (the 4-byte length form, always valid).
fn descriptor(o: &mut Vec<u8>, tag: u8, body: &[u8]) {
    o.push(tag);
    let n = body.len() as u32;
    o.extend_from_slice(&[
        0x80 | ((n >> 21) & 0x7f) as u8,
        0x80 | ((n >> 14) & 0x7f) as u8,
        0x80 | ((n >> 7) & 0x7f) as u8,
        (n & 0x7f) as u8,
    ]);
    o.extend_from_slice(body);
}

fn visual_entry(kind: &[u8; 4], w: u16, h: u16, config: &[u8; 4], private: &[u8]) -> Vec<u8> {
    let mut e = Vec::new();
    bx(&mut e, kind, |o| {
        o.extend_from_slice(&[0; 6]);
        u16be(o, 1); // data reference index
        o.extend_from_slice(&[0; 16]);
        u16be(o, w);
        u16be(o, h);
        u32be(o, 0x0048_0000);
        u32be(o, 0x0048_0000);
        u32be(o, 0);
        u16be(o, 1); // frame count
        o.extend_from_slice(&[0; 32]); // compressor name
        u16be(o, 0x0018);
        o.extend_from_slice(&[0xff, 0xff]);
        bx(o, config, |c| c.extend_from_slice(private));
    });
    e
}

fn audio_entry(
    kind: &[u8; 4],
    channels: u16,
    rate: u32,
    extra: impl FnOnce(&mut Vec<u8>),
) -> Vec<u8> {
    let mut e = Vec::new();
    bx(&mut e, kind, |o| {
        o.extend_from_slice(&[0; 6]);
        u16be(o, 1);
        o.extend_from_slice(&[0; 8]);
        u16be(o, channels);
        u16be(o, 16);
        o.extend_from_slice(&[0; 4]);
        // 16.16 fixed point; rates above 65535 Hz do not fit the field.
        u32be(o, (rate.min(65_535)) << 16);
        extra(o);
    });
    e
}

impl Mp4Track {
    /// The MP4 tracks for a fragment's Matroska tracks, in order.
    pub fn from_mkv(tracks: &[TrackInfo]) -> Result<Vec<Mp4Track>, Mp4Error> {
        tracks
            .iter()
            .enumerate()
            .map(|(i, t)| Self::one(t, i as u32 + 1))
            .collect()
    }

    fn one(t: &TrackInfo, id: u32) -> Result<Mp4Track, Mp4Error> {
        let track = t.number;
        let private = || -> Result<&Bytes, Mp4Error> {
            t.codec_private
                .as_ref()
                .filter(|p| !p.is_empty())
                .ok_or(Mp4Error::MissingCodecPrivate { track })
        };
        let bad = |reason: &str| Mp4Error::InvalidCodecPrivate {
            track,
            reason: reason.into(),
        };
        let (w, h) = t.video.as_ref().map_or((0, 0), |v| {
            (
                u16::try_from(v.pixel_width).unwrap_or(u16::MAX),
                u16::try_from(v.pixel_height).unwrap_or(u16::MAX),
            )
        });
        let fps_default = |ts: u32| {
            t.default_duration_ns
                .map_or(ts / 25, |d| {
                    (u128::from(d) * u128::from(ts) / 1_000_000_000) as u32
                })
                .max(1)
        };
        let video = |kind: &[u8; 4], config: &[u8; 4], p: &Bytes| Mp4Track {
            mkv_number: track,
            id,
            kind: Handler::Video,
            timescale: 90_000,
            width: w,
            height: h,
            default_duration: fps_default(90_000),
            entry: visual_entry(kind, w, h, config, p),
        };
        let audio = |timescale: u32, default_duration: u32, entry: Vec<u8>| Mp4Track {
            mkv_number: track,
            id,
            kind: Handler::Audio,
            timescale,
            width: 0,
            height: 0,
            default_duration,
            entry,
        };
        match t.codec() {
            Codec::H264 => {
                let p = private()?;
                if p.len() < 7 || p[0] != 1 {
                    return Err(bad("not an AVCDecoderConfigurationRecord"));
                }
                Ok(video(b"avc1", b"avcC", p))
            }
            Codec::H265 => {
                let p = private()?;
                if p.len() < 23 || p[0] != 1 {
                    return Err(bad("not an HEVCDecoderConfigurationRecord"));
                }
                Ok(video(b"hvc1", b"hvcC", p))
            }
            Codec::Aac => {
                let asc = private()?;
                if asc.len() < 2 {
                    return Err(bad("AudioSpecificConfig shorter than 2 bytes"));
                }
                let a = t.audio.as_ref();
                let rate = a.map_or(0, |a| a.sampling_frequency as u32);
                let rate = if rate == 0 { aac_rate(asc) } else { rate };
                if rate == 0 {
                    return Err(bad("no sampling frequency"));
                }
                let channels = a.map_or(2, |a| a.channels.clamp(1, 8) as u16);
                let mut dcd = vec![0x40, 0x15, 0, 0, 0];
                dcd.extend_from_slice(&[0; 8]); // max / average bit rate unknown
                descriptor(&mut dcd, 0x05, asc);
                let mut es = vec![0, 0, 0];
                descriptor(&mut es, 0x04, &dcd);
                descriptor(&mut es, 0x06, &[0x02]);
                let entry = audio_entry(b"mp4a", channels, rate, |o| {
                    full(o, b"esds", 0, 0, |b| descriptor(b, 0x03, &es));
                });
                Ok(audio(rate, 1024, entry))
            }
            Codec::G711 => {
                let p = private()?;
                if p.len() < 16 {
                    return Err(bad("WAVEFORMATEX shorter than 16 bytes"));
                }
                let tag = u16::from_le_bytes([p[0], p[1]]);
                let channels = u16::from_le_bytes([p[2], p[3]]).max(1);
                let rate = u32::from_le_bytes([p[4], p[5], p[6], p[7]]);
                let kind = match tag {
                    6 => b"alaw",
                    7 => b"ulaw",
                    _ => {
                        return Err(Mp4Error::UnsupportedCodec {
                            track,
                            codec_id: format!("A_MS/ACM format {tag}"),
                        })
                    }
                };
                if rate == 0 {
                    return Err(bad("sampling rate 0"));
                }
                Ok(audio(
                    rate,
                    rate / 50,
                    audio_entry(kind, channels, rate, |_| {}),
                ))
            }
            _ => Err(Mp4Error::UnsupportedCodec {
                track,
                codec_id: t.codec_id.clone(),
            }),
        }
    }
}

/// The sampling rate an AudioSpecificConfig names (0 when it uses an escape).
fn aac_rate(asc: &[u8]) -> u32 {
    let idx = ((asc[0] & 0x07) << 1) | (asc[1] >> 7);
    crate::codec::aac::SAMPLE_RATES
        .get(usize::from(idx))
        .copied()
        .unwrap_or(0)
}

/// Samples of `frames` (decode order) for `tracks`, in the tracks' time
/// units counted from `base_ns`. Frames of other tracks, and frames before
/// `base_ns`, are left out. `end_ns`, when known, is where the last sample of
/// each track ends (the next fragment's start).
pub fn samples<'a>(
    tracks: &[Mp4Track],
    frames: impl IntoIterator<Item = &'a ParsedFrame>,
    base_ns: i64,
    end_ns: Option<i64>,
) -> Vec<Sample> {
    let mut per: Vec<Vec<(i64, bool, Bytes)>> = vec![Vec::new(); tracks.len()];
    for f in frames {
        if let Some(i) = tracks.iter().position(|t| t.mkv_number == f.track) {
            if f.timestamp_ns >= base_ns {
                per[i].push((f.timestamp_ns - base_ns, f.key, f.payload.clone()));
            }
        }
    }
    let mut out = Vec::new();
    for (t, frames) in tracks.iter().zip(per) {
        let units =
            |ns: i64| -> i64 { (i128::from(ns) * i128::from(t.timescale) / 1_000_000_000) as i64 };
        let pts: Vec<i64> = frames.iter().map(|(ns, ..)| units(*ns)).collect();
        let mut dts = pts.clone();
        dts.sort_unstable();
        let end = end_ns.map(|e| units(e - base_ns));
        let n = frames.len();
        let mut last = i64::from(t.default_duration);
        for (i, (_, key, data)) in frames.into_iter().enumerate() {
            let duration = if i + 1 < n {
                dts[i + 1] - dts[i]
            } else {
                end.map_or(last, |e| e - dts[i])
            }
            .clamp(1, i64::from(u32::MAX));
            last = duration;
            out.push(Sample {
                track: t.id,
                dts: dts[i].max(0) as u64,
                duration: duration as u32,
                cto: (pts[i] - dts[i]).clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32,
                key: key || t.kind == Handler::Audio,
                data,
            });
        }
    }
    out
}

fn ftyp(out: &mut Vec<u8>, major: &[u8; 4], minor: u32, compatible: &[&[u8; 4]]) {
    bx(out, b"ftyp", |o| {
        o.extend_from_slice(major);
        u32be(o, minor);
        for c in compatible {
            o.extend_from_slice(*c);
        }
    });
}

fn mvhd(o: &mut Vec<u8>, duration_ms: u64, next_id: u32) {
    full(o, b"mvhd", 1, 0, |b| {
        u64be(b, 0);
        u64be(b, 0);
        u32be(b, 1000);
        u64be(b, duration_ms);
        u32be(b, 0x0001_0000);
        u16be(b, 0x0100);
        b.extend_from_slice(&[0; 10]);
        MATRIX.iter().for_each(|m| u32be(b, *m));
        b.extend_from_slice(&[0; 24]);
        u32be(b, next_id);
    });
}

/// A track box; `tables` writes the sample tables after `stsd`.
fn trak(o: &mut Vec<u8>, t: &Mp4Track, duration: u64, tables: impl FnOnce(&mut Vec<u8>)) {
    let movie_ms = duration * 1000 / u64::from(t.timescale.max(1));
    bx(o, b"trak", |o| {
        full(o, b"tkhd", 1, 3, |b| {
            u64be(b, 0);
            u64be(b, 0);
            u32be(b, t.id);
            u32be(b, 0);
            u64be(b, movie_ms);
            b.extend_from_slice(&[0; 8]);
            u16be(b, 0);
            u16be(b, 0);
            u16be(b, if t.kind == Handler::Audio { 0x0100 } else { 0 });
            u16be(b, 0);
            MATRIX.iter().for_each(|m| u32be(b, *m));
            u32be(b, u32::from(t.width) << 16);
            u32be(b, u32::from(t.height) << 16);
        });
        bx(o, b"mdia", |o| {
            full(o, b"mdhd", 1, 0, |b| {
                u64be(b, 0);
                u64be(b, 0);
                u32be(b, t.timescale);
                u64be(b, duration);
                u16be(b, 0x55c4); // "und"
                u16be(b, 0);
            });
            let (handler, name): (&[u8; 4], &[u8]) = match t.kind {
                Handler::Video => (b"vide", b"VideoHandler\0"),
                Handler::Audio => (b"soun", b"SoundHandler\0"),
            };
            full(o, b"hdlr", 0, 0, |b| {
                u32be(b, 0);
                b.extend_from_slice(handler);
                b.extend_from_slice(&[0; 12]);
                b.extend_from_slice(name);
            });
            bx(o, b"minf", |o| {
                match t.kind {
                    Handler::Video => full(o, b"vmhd", 0, 1, |b| b.extend_from_slice(&[0; 8])),
                    Handler::Audio => full(o, b"smhd", 0, 0, |b| b.extend_from_slice(&[0; 4])),
                }
                bx(o, b"dinf", |o| {
                    full(o, b"dref", 0, 0, |b| {
                        u32be(b, 1);
                        full(b, b"url ", 0, 1, |_| {});
                    });
                });
                bx(o, b"stbl", |o| {
                    full(o, b"stsd", 0, 0, |b| {
                        u32be(b, 1);
                        b.extend_from_slice(&t.entry);
                    });
                    tables(o);
                });
            });
        });
    });
}

/// A whole clip as one progressive MP4 (`ftyp`, `moov`, then one `mdat`),
/// as chunks: the boxes, then the sample payloads as they are.
pub fn progressive(tracks: &[Mp4Track], samples: &[Sample]) -> Vec<Bytes> {
    // Payloads go into mdat in the given order, one sample per chunk.
    let mdat_len: u64 = samples.iter().map(|s| s.data.len() as u64).sum();
    let build = |mdat_start: u64| -> Vec<u8> {
        let mut out = Vec::new();
        ftyp(
            &mut out,
            b"isom",
            0x200,
            &[b"isom", b"iso2", b"avc1", b"mp41"],
        );
        let offsets: Vec<u64> = samples
            .iter()
            .scan(mdat_start + 16, |at, s| {
                let here = *at;
                *at += s.data.len() as u64;
                Some(here)
            })
            .collect();
        let duration_of = |t: &Mp4Track| -> u64 {
            samples
                .iter()
                .filter(|s| s.track == t.id)
                .map(|s| u64::from(s.duration))
                .sum()
        };
        let movie_ms = tracks
            .iter()
            .map(|t| duration_of(t) * 1000 / u64::from(t.timescale.max(1)))
            .max()
            .unwrap_or(0);
        bx(&mut out, b"moov", |o| {
            mvhd(o, movie_ms, tracks.len() as u32 + 1);
            for t in tracks {
                let mine: Vec<(usize, &Sample)> = samples
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.track == t.id)
                    .collect();
                trak(o, t, duration_of(t), |o| {
                    // Decode-time deltas, run-length coded.
                    let mut runs: Vec<(u32, u32)> = Vec::new();
                    for (_, s) in &mine {
                        match runs.last_mut() {
                            Some((n, d)) if *d == s.duration => *n += 1,
                            _ => runs.push((1, s.duration)),
                        }
                    }
                    full(o, b"stts", 0, 0, |b| {
                        u32be(b, runs.len() as u32);
                        for (n, d) in &runs {
                            u32be(b, *n);
                            u32be(b, *d);
                        }
                    });
                    if mine.iter().any(|(_, s)| s.cto != 0) {
                        full(o, b"ctts", 1, 0, |b| {
                            u32be(b, mine.len() as u32);
                            for (_, s) in &mine {
                                u32be(b, 1);
                                b.extend_from_slice(&s.cto.to_be_bytes());
                            }
                        });
                    }
                    if mine.iter().any(|(_, s)| !s.key) {
                        let keys: Vec<u32> = mine
                            .iter()
                            .enumerate()
                            .filter(|(_, (_, s))| s.key)
                            .map(|(i, _)| i as u32 + 1)
                            .collect();
                        full(o, b"stss", 0, 0, |b| {
                            u32be(b, keys.len() as u32);
                            keys.iter().for_each(|k| u32be(b, *k));
                        });
                    }
                    full(o, b"stsc", 0, 0, |b| {
                        u32be(b, 1);
                        u32be(b, 1);
                        u32be(b, 1);
                        u32be(b, 1);
                    });
                    full(o, b"stsz", 0, 0, |b| {
                        u32be(b, 0);
                        u32be(b, mine.len() as u32);
                        for (_, s) in &mine {
                            u32be(b, s.data.len() as u32);
                        }
                    });
                    full(o, b"co64", 0, 0, |b| {
                        u32be(b, mine.len() as u32);
                        for (i, _) in &mine {
                            u64be(b, offsets[*i]);
                        }
                    });
                });
            }
        });
        out
    };
    // The box sizes do not depend on the offsets' values: measure, then write.
    let head_len = build(0).len() as u64;
    let mut head = build(head_len);
    head.extend_from_slice(&1u32.to_be_bytes());
    head.extend_from_slice(b"mdat");
    head.extend_from_slice(&(mdat_len + 16).to_be_bytes());
    std::iter::once(Bytes::from(head))
        .chain(samples.iter().map(|s| s.data.clone()))
        .collect()
}

/// The initialization segment of a fragmented MP4 (`ftyp` + `moov` with `mvex`).
pub fn init_segment(tracks: &[Mp4Track]) -> Bytes {
    let mut out = Vec::new();
    ftyp(&mut out, b"iso5", 1, &[b"iso5", b"iso6", b"mp41"]);
    bx(&mut out, b"moov", |o| {
        mvhd(o, 0, tracks.len() as u32 + 1);
        for t in tracks {
            trak(o, t, 0, |o| {
                for kind in [b"stts", b"stsc", b"stco"] {
                    full(o, kind, 0, 0, |b| u32be(b, 0));
                }
                full(o, b"stsz", 0, 0, |b| b.extend_from_slice(&[0; 8]));
            });
        }
        bx(o, b"mvex", |o| {
            for t in tracks {
                full(o, b"trex", 0, 0, |b| {
                    u32be(b, t.id);
                    u32be(b, 1);
                    b.extend_from_slice(&[0; 12]);
                });
            }
        });
    });
    Bytes::from(out)
}

/// One media segment (`moof` + `mdat`) with sequence number `sequence`, as
/// chunks: the boxes, then the sample payloads as they are.
pub fn media_segment(sequence: u32, tracks: &[Mp4Track], samples: &[Sample]) -> Vec<Bytes> {
    let per: Vec<Vec<&Sample>> = tracks
        .iter()
        .map(|t| samples.iter().filter(|s| s.track == t.id).collect())
        .collect();
    let build = |moof_len: u32| -> Vec<u8> {
        let mut out = Vec::new();
        let mut data_at = moof_len + 8;
        bx(&mut out, b"moof", |o| {
            full(o, b"mfhd", 0, 0, |b| u32be(b, sequence));
            for (t, mine) in tracks.iter().zip(&per) {
                let Some(first) = mine.first() else { continue };
                bx(o, b"traf", |o| {
                    full(o, b"tfhd", 0, 0x02_0000, |b| u32be(b, t.id));
                    full(o, b"tfdt", 1, 0, |b| u64be(b, first.dts));
                    full(o, b"trun", 1, 0x000f01, |b| {
                        u32be(b, mine.len() as u32);
                        u32be(b, data_at);
                        for s in mine {
                            u32be(b, s.duration);
                            u32be(b, s.data.len() as u32);
                            u32be(b, if s.key { 0x0200_0000 } else { 0x0101_0000 });
                            b.extend_from_slice(&s.cto.to_be_bytes());
                            data_at += s.data.len() as u32;
                        }
                    });
                });
            }
        });
        out
    };
    let moof_len = build(0).len() as u32;
    let mut head = build(moof_len);
    let mdat_len: usize = per.iter().flatten().map(|s| s.data.len()).sum();
    head.extend_from_slice(&(mdat_len as u32 + 8).to_be_bytes());
    head.extend_from_slice(b"mdat");
    std::iter::once(Bytes::from(head))
        .chain(per.iter().flatten().map(|s| s.data.clone()))
        .collect()
}
