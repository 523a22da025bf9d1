//! MPEG transport stream segments for HLS sessions asked for `MPEG_TS`:
//! H.264 or H.265 video (Annex-B, parameter sets and an access-unit
//! delimiter before every key frame) and AAC audio (ADTS), one PAT and PMT
//! per segment, PCR on the video PID.
//!
//! Hand-written: the format needs only a few fixed tables and the PES/packet
//! framing below, and the maintained Rust TS crates are demuxers. Checked
//! against ffmpeg in the tests.

use bytes::Bytes;

use crate::codec::{annexb, Codec};
use crate::mkv::types::{ParsedFrame, TrackInfo};
use crate::mp4::Mp4Error;

const PACKET: usize = 188;
const PMT_PID: u16 = 0x1000;
const FIRST_PID: u16 = 0x100;

/// One track of a transport stream.
#[derive(Debug, Clone)]
pub struct TsTrack {
    mkv_number: u64,
    pid: u16,
    stream_type: u8,
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    /// Parameter sets (Annex-B) to put before key frames, NAL length size,
    /// and the access-unit delimiter.
    Video {
        headers: Vec<u8>,
        length_size: usize,
        aud: &'static [u8],
    },
    /// The fixed part of the ADTS header.
    Aac {
        profile: u8,
        rate_index: u8,
        channels: u8,
    },
}

impl TsTrack {
    /// The transport-stream tracks for a fragment's Matroska tracks.
    pub fn from_mkv(tracks: &[TrackInfo]) -> Result<Vec<TsTrack>, Mp4Error> {
        let mut out = Vec::new();
        for (i, t) in tracks.iter().enumerate() {
            let track = t.number;
            let private = t
                .codec_private
                .as_deref()
                .filter(|p| !p.is_empty())
                .ok_or(Mp4Error::MissingCodecPrivate { track })?;
            let bad = |reason: &str| Mp4Error::InvalidCodecPrivate {
                track,
                reason: reason.into(),
            };
            let codec = t.codec();
            let (stream_type, kind) = match codec {
                Codec::H264 | Codec::H265 => {
                    let hevc = codec == Codec::H265;
                    let (headers, length_size) = annexb::record_parameter_sets(private, hevc)
                        .ok_or_else(|| bad("cannot read the parameter sets"))?;
                    let aud: &'static [u8] = if hevc {
                        &[0, 0, 0, 1, 0x46, 0x01, 0x50]
                    } else {
                        &[0, 0, 0, 1, 0x09, 0xf0]
                    };
                    (
                        if hevc { 0x24 } else { 0x1b },
                        Kind::Video {
                            headers,
                            length_size,
                            aud,
                        },
                    )
                }
                Codec::Aac => {
                    if private.len() < 2 {
                        return Err(bad("AudioSpecificConfig shorter than 2 bytes"));
                    }
                    let object = private[0] >> 3;
                    let rate_index = ((private[0] & 7) << 1) | (private[1] >> 7);
                    let channels = (private[1] >> 3) & 0x0f;
                    if !(1..=4).contains(&object) || rate_index > 12 {
                        return Err(bad("not an AAC configuration ADTS can carry"));
                    }
                    (
                        0x0f,
                        Kind::Aac {
                            profile: object - 1,
                            rate_index,
                            channels,
                        },
                    )
                }
                _ => {
                    return Err(Mp4Error::UnsupportedCodec {
                        track,
                        codec_id: t.codec_id.clone(),
                    })
                }
            };
            out.push(TsTrack {
                mkv_number: track,
                pid: FIRST_PID + i as u16,
                stream_type,
                kind,
            });
        }
        Ok(out)
    }
}

/// CRC-32/MPEG-2 of the PSI sections.
fn crc32_mpeg2(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04c1_1db7
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// Writes transport packets; continuity counters per PID.
struct Writer {
    out: Vec<u8>,
    cc: Vec<(u16, u8)>,
}

impl Writer {
    fn next_cc(&mut self, pid: u16) -> u8 {
        match self.cc.iter_mut().find(|(p, _)| *p == pid) {
            Some((_, c)) => {
                *c = (*c + 1) & 0x0f;
                *c
            }
            None => {
                self.cc.push((pid, 0));
                0
            }
        }
    }

    /// A payload split into packets; the first starts the unit and may carry
    /// a PCR; the last is padded with adaptation-field stuffing.
    fn packets(&mut self, pid: u16, payload: &[u8], pcr: Option<u64>, psi: bool) {
        let mut rest = payload;
        let mut first = true;
        while first || !rest.is_empty() {
            let cc = self.next_cc(pid);
            let mut header = vec![
                0x47,
                (if first { 0x40 } else { 0 }) | ((pid >> 8) as u8 & 0x1f),
                pid as u8,
                0,
            ];
            let mut adaptation: Vec<u8> = Vec::new();
            if let (true, Some(pcr)) = (first, pcr) {
                // Random access + PCR (27 MHz = base * 300).
                let base = pcr & ((1 << 33) - 1);
                adaptation.push(0x50);
                adaptation.extend_from_slice(&[
                    (base >> 25) as u8,
                    (base >> 17) as u8,
                    (base >> 9) as u8,
                    (base >> 1) as u8,
                    ((base & 1) << 7) as u8 | 0x7e,
                    0,
                ]);
            }
            let pointer = usize::from(first && psi);
            let room = PACKET
                - 4
                - pointer
                - if adaptation.is_empty() {
                    0
                } else {
                    1 + adaptation.len()
                };
            let take = rest.len().min(room);
            if take < room {
                // Stuff: grow (or add) the adaptation field to fill the packet.
                let missing = room - take;
                if adaptation.is_empty() {
                    if missing == 1 {
                        // An adaptation field of length 0 takes one byte.
                        adaptation = Vec::new();
                    } else {
                        adaptation.push(0x00);
                        adaptation.extend(std::iter::repeat_n(0xff, missing - 2));
                    }
                } else {
                    adaptation.extend(std::iter::repeat_n(0xff, missing));
                }
                header[3] = 0x30 | cc;
                self.out.extend_from_slice(&header);
                self.out.push(adaptation.len() as u8);
                self.out.extend_from_slice(&adaptation);
            } else if !adaptation.is_empty() {
                header[3] = 0x30 | cc;
                self.out.extend_from_slice(&header);
                self.out.push(adaptation.len() as u8);
                self.out.extend_from_slice(&adaptation);
            } else {
                header[3] = 0x10 | cc;
                self.out.extend_from_slice(&header);
            }
            if pointer == 1 {
                self.out.push(0);
            }
            self.out.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            first = false;
        }
    }
}

fn section(table_id: u8, id: u16, body: &[u8]) -> Vec<u8> {
    let len = body.len() + 5 + 4;
    let mut s = vec![
        table_id,
        0xb0 | ((len >> 8) as u8 & 0x0f),
        len as u8,
        (id >> 8) as u8,
        id as u8,
        0xc1,
        0,
        0,
    ];
    s.extend_from_slice(body);
    let crc = crc32_mpeg2(&s);
    s.extend_from_slice(&crc.to_be_bytes());
    s
}

fn timestamp(prefix: u8, t: u64) -> [u8; 5] {
    let t = t & ((1 << 33) - 1);
    [
        (prefix << 4) | (((t >> 30) as u8 & 7) << 1) | 1,
        (t >> 22) as u8,
        (((t >> 15) as u8) << 1) | 1,
        (t >> 7) as u8,
        ((t as u8) << 1) | 1,
    ]
}

/// One segment: PAT, PMT, then every frame of `frames` of the given tracks
/// as a PES packet. Times are 90 kHz units counted from `origin_ns`, plus a
/// one-second lead so decode times of reordered pictures stay positive.
pub fn segment(tracks: &[TsTrack], frames: &[ParsedFrame], origin_ns: i64) -> Vec<u8> {
    let mut w = Writer {
        out: Vec::new(),
        cc: Vec::new(),
    };
    w.packets(
        0,
        &section(0, 1, &[0, 1, 0xe0 | (PMT_PID >> 8) as u8, PMT_PID as u8]),
        None,
        true,
    );
    let video_pid = tracks
        .iter()
        .find(|t| matches!(t.kind, Kind::Video { .. }))
        .map_or(tracks.first().map_or(FIRST_PID, |t| t.pid), |t| t.pid);
    let mut pmt = vec![0xe0 | (video_pid >> 8) as u8, video_pid as u8, 0xf0, 0];
    for t in tracks {
        pmt.extend_from_slice(&[
            t.stream_type,
            0xe0 | (t.pid >> 8) as u8,
            t.pid as u8,
            0xf0,
            0,
        ]);
    }
    w.packets(PMT_PID, &section(2, 1, &pmt), None, true);
    let ticks = |ns: i64| ((ns - origin_ns).max(0) as i128 * 9 / 100_000) as u64 + 90_000;
    // Decode times of video: the sorted presentation times, moved back just
    // enough that no picture is decoded after it is shown.
    let video_pts: Vec<u64> = frames
        .iter()
        .filter(|f| {
            tracks
                .iter()
                .any(|t| t.mkv_number == f.track && t.pid == video_pid)
        })
        .map(|f| ticks(f.timestamp_ns))
        .collect();
    let mut video_dts = video_pts.clone();
    video_dts.sort_unstable();
    let shift = video_dts
        .iter()
        .zip(&video_pts)
        .map(|(d, p)| d.saturating_sub(*p))
        .max()
        .unwrap_or(0);
    let mut nth_video = 0;
    for f in frames {
        let Some(t) = tracks.iter().find(|t| t.mkv_number == f.track) else {
            continue;
        };
        let pts = ticks(f.timestamp_ns);
        let mut es = Vec::with_capacity(f.payload.len() + 64);
        let (stream_id, dts) = match &t.kind {
            Kind::Video {
                headers,
                length_size,
                aud,
            } => {
                es.extend_from_slice(aud);
                if f.key {
                    es.extend_from_slice(headers);
                }
                let Ok(annexb) = annexb::to_annexb(&f.payload, *length_size) else {
                    continue;
                };
                es.extend_from_slice(&annexb);
                let dts = video_dts
                    .get(nth_video)
                    .map_or(pts, |d| d.saturating_sub(shift));
                nth_video += 1;
                (0xe0, Some(dts).filter(|d| *d != pts))
            }
            Kind::Aac {
                profile,
                rate_index,
                channels,
            } => {
                let len = f.payload.len() + 7;
                es.extend_from_slice(&[
                    0xff,
                    0xf1,
                    (profile << 6) | (rate_index << 2) | (channels >> 2),
                    ((channels & 3) << 6) | ((len >> 11) as u8 & 3),
                    (len >> 3) as u8,
                    ((len as u8 & 7) << 5) | 0x1f,
                    0xfc,
                ]);
                es.extend_from_slice(&f.payload);
                (0xc0, None)
            }
        };
        let mut pes = vec![0, 0, 1, stream_id];
        let header_len = if dts.is_some() { 10 } else { 5 };
        let pes_len = es.len() + 3 + header_len;
        // Video PES may leave the length open (0) when it does not fit.
        let pes_len = if pes_len > 0xffff { 0 } else { pes_len };
        pes.extend_from_slice(&(pes_len as u16).to_be_bytes());
        pes.push(0x80);
        match dts {
            Some(d) => {
                pes.extend_from_slice(&[0xc0, 10]);
                pes.extend_from_slice(&timestamp(3, pts));
                pes.extend_from_slice(&timestamp(1, d));
            }
            None => {
                pes.extend_from_slice(&[0x80, 5]);
                pes.extend_from_slice(&timestamp(2, pts));
            }
        }
        pes.extend_from_slice(&es);
        let pcr = (t.pid == video_pid).then(|| dts.unwrap_or(pts).saturating_sub(9_000));
        w.packets(t.pid, &pes, pcr, false);
    }
    w.out
}

/// A segment as one chunk.
pub fn segment_bytes(tracks: &[TsTrack], frames: &[ParsedFrame], origin_ns: i64) -> Bytes {
    Bytes::from(segment(tracks, frames, origin_ns))
}
