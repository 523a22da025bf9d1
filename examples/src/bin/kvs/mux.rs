//! `kvs mux INPUT -o OUT.mkv [--fps N] [--audio FILE.aac]`.

use std::io::Write;
use std::path::Path;

use bytes::Bytes;
use kvs_core::codec::aac;
use kvs_core::codec::annexb::VideoCodec;
use kvs_core::mkv::mux::{mux_annexb, AacInput};

fn read(p: &Path) -> Result<Bytes, String> {
    std::fs::read(p)
        .map(Bytes::from)
        .map_err(|e| format!("{}: {e}", p.display()))
}

pub fn run(input: &Path, output: &Path, fps: f64, audio: Option<&Path>) -> Result<(), String> {
    let ext = input
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let codec = match ext.as_str() {
        "h264" | "264" => VideoCodec::H264,
        "h265" | "265" | "hevc" => VideoCodec::H265,
        _ => {
            return Err(format!(
                "{}: expected a .h264/.264 or .h265/.hevc Annex-B file",
                input.display()
            ))
        }
    };
    let video = read(input)?;
    let audio = match audio {
        Some(p) => {
            let data = read(p)?;
            let (header, frames) =
                aac::split_adts(&data).map_err(|e| format!("{}: {e}", p.display()))?;
            Some(AacInput { header, frames })
        }
        None => None,
    };
    let out = mux_annexb(codec, &video, fps, audio.as_ref())
        .map_err(|e| format!("{}: {e}", input.display()))?;
    let mut f = std::io::BufWriter::new(
        std::fs::File::create(output).map_err(|e| format!("{}: {e}", output.display()))?,
    );
    for c in &out.chunks {
        f.write_all(c)
            .map_err(|e| format!("{}: {e}", output.display()))?;
    }
    f.flush()
        .map_err(|e| format!("{}: {e}", output.display()))?;
    eprintln!(
        "{}: {} fragments, {} video frames, {} audio frames",
        output.display(),
        out.fragments,
        out.video_frames,
        out.audio_frames
    );
    Ok(())
}
