//! `kvs mux INPUT -o OUT.mkv [--fps N] [--audio FILE.aac]`.

use std::io::Write;
use std::path::Path;

pub fn run(input: &Path, output: &Path, fps: f64, audio: Option<&Path>) -> Result<(), String> {
    let out = crate::media::mux_file(input, fps, audio)?;
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
