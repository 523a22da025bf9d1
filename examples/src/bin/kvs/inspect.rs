//! `kvs inspect FILE [--json]`.

use std::io::Read;
use std::path::Path;

use bytes::Bytes;
use kvs_core::mkv::summary::Summary;
use kvs_core::mkv::{Event, Parser, ParserConfig};
use serde_json::{json, Map, Value};

pub fn run(file: &Path, as_json: bool) -> Result<(), String> {
    let mut f = std::fs::File::open(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let mut parser = Parser::new(ParserConfig::default());
    let mut summary = Summary::default();
    let mut buf = vec![0u8; 1 << 20];
    let mut timecode_scale = None;
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| format!("{}: {e}", file.display()))?;
        if n == 0 {
            parser.finish();
        } else {
            parser.push(Bytes::copy_from_slice(&buf[..n]));
        }
        loop {
            match parser.next_event() {
                Ok(Some(ev)) => {
                    if let Event::Info(i) = &ev {
                        timecode_scale.get_or_insert(i.timecode_scale);
                    }
                    summary.add(&ev);
                }
                Ok(None) => break,
                Err(e) => {
                    summary.error = Some(e);
                    break;
                }
            }
        }
        if n == 0 || summary.error.is_some() {
            break;
        }
    }
    if let Some(e) = &summary.error {
        if !e.is_truncated() {
            let elementary = file.extension().and_then(|x| x.to_str()).is_some_and(|x| {
                ["h264", "264", "h265", "265", "hevc"].contains(&x.to_ascii_lowercase().as_str())
            });
            let hint = if elementary {
                " (an Annex-B elementary stream: kvs mux makes it Matroska, kvs put uploads it)"
            } else {
                ""
            };
            return Err(format!("{}: {e}{hint}", file.display()));
        }
    }
    if summary.documents == 0 && summary.segments == 0 && summary.clusters == 0 {
        return Err(format!(
            "{}: no Matroska data (no EBML header, Segment or Cluster)",
            file.display()
        ));
    }
    if as_json {
        let mut tracks = Map::new();
        for (n, t) in &summary.tracks {
            tracks.insert(
                n.to_string(),
                json!({
                    "codec_id": t.codec_id,
                    "frames": t.frames,
                    "frame_bytes": t.frame_bytes,
                    "keyframes": t.keyframes,
                    "first_ts_ns": t.first_ts_ns,
                    "last_ts_ns": t.last_ts_ns,
                }),
            );
        }
        let tags: Vec<Value> = summary
            .tags
            .iter()
            .map(|(n, v)| json!({"name": n, "value": v}))
            .collect();
        let out = json!({
            "documents": summary.documents,
            "segments": summary.segments,
            "clusters": summary.clusters,
            "truncated": summary.truncated(),
            "tracks": tracks,
            "tags": tags,
        });
        println!("{out}");
    } else {
        println!("{}", file.display());
        println!(
            "  {} document(s), {} segment(s), {} cluster(s), timecode scale {} ns",
            summary.documents,
            summary.segments,
            summary.clusters,
            timecode_scale.unwrap_or(1_000_000)
        );
        for (n, t) in &summary.tracks {
            let ms =
                |v: Option<i64>| v.map_or("-".to_owned(), |ns| format!("{:.3}s", ns as f64 / 1e9));
            println!(
                "  track {n}: {} — {} frames ({} key), {} bytes, {} → {}",
                if t.codec_id.is_empty() {
                    "?"
                } else {
                    &t.codec_id
                },
                t.frames,
                t.keyframes,
                t.frame_bytes,
                ms(t.first_ts_ns),
                ms(t.last_ts_ns)
            );
        }
        if !summary.tags.is_empty() {
            println!("  {} tag(s)", summary.tags.len());
            for (n, v) in summary.tags.iter().take(20) {
                println!("    {n} = {v:?}");
            }
            if summary.tags.len() > 20 {
                println!("    …");
            }
        }
        if let Some(e) = &summary.error {
            println!("  truncated: {e}");
        }
    }
    Ok(())
}
