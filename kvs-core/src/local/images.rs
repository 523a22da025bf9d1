//! GetImages on the local endpoint: pictures decoded from stored H.264
//! fragments (the `openh264` crate), scaled if asked (bilinear, here: the
//! one small function no crate is needed for), and encoded as JPEG
//! (`jpeg-encoder`) or PNG (`png`), base64 in the JSON answer.
//!
//! A timestamp with no fragment around it gets `NO_MEDIA`; one whose media
//! cannot give a picture (audio only, H.265 — which this endpoint does not
//! decode — or a picture that fails to decode) gets `MEDIA_ERROR`, as the
//! service answers for media it cannot extract an image from.
//!
//! Decoding needs a C codec (openh264), so it sits behind the `images`
//! feature: an endpoint built without it (what tests of other APIs need)
//! validates GetImages requests the same way and answers `MEDIA_ERROR`
//! (with a warning) where it would have decoded a picture.

use std::sync::Arc;

#[cfg(feature = "images")]
use base64::Engine as _;
#[cfg(feature = "images")]
use bytes::Bytes;
use serde_json::{json, Value};

use super::media::Stored;
use super::playback::parse;
use super::store::{ApiError, StreamMeta};
use crate::client::ServiceException;
use crate::mkv::fragment::Fragment;

/// Images per answer page (the service's).
const PAGE: usize = 25;

fn bad(m: impl Into<String>) -> ApiError {
    ApiError::new(ServiceException::InvalidArgument, m)
}

/// A request's output settings.
#[cfg_attr(not(feature = "images"), allow(dead_code))]
struct Output {
    png: bool,
    quality: u8,
    size: Option<(usize, usize)>,
}

/// GetImages: one image (or error) per sampling instant in the range.
pub(crate) fn get_images(
    meta: &StreamMeta,
    fragments: &[Arc<Stored>],
    req: &Value,
) -> Result<Value, ApiError> {
    // Duplicates resolved as for every playback path.
    let fragments: Vec<Arc<Stored>> = super::playback::playable(fragments.iter())
        .into_iter()
        .cloned()
        .collect();
    let fragments = &fragments[..];
    if meta.retention_hours == 0 {
        return Err(ApiError::new(
            ServiceException::NoDataRetention,
            format!(
                "GetImages needs a stream that retains data; {} has a retention of 0",
                meta.name
            ),
        ));
    }
    let by_server = match req.get("ImageSelectorType").and_then(Value::as_str) {
        Some("PRODUCER_TIMESTAMP") => false,
        Some("SERVER_TIMESTAMP") => true,
        _ => {
            return Err(bad(
                "ImageSelectorType must be PRODUCER_TIMESTAMP or SERVER_TIMESTAMP",
            ))
        }
    };
    let ts = |k: &str| super::media::epoch_ms(req.get(k), k);
    let (start, end) = (ts("StartTimestamp")?, ts("EndTimestamp")?);
    if end < start || end - start > 300_000 {
        return Err(bad(
            "EndTimestamp must be after StartTimestamp and at most 300 seconds later",
        ));
    }
    let interval = match req.get("SamplingInterval") {
        None | Some(Value::Null) => 3000,
        Some(v) => v
            .as_u64()
            .filter(|i| *i >= 200)
            .ok_or_else(|| bad("SamplingInterval must be at least 200 ms"))?,
    };
    let png = match req.get("Format").and_then(Value::as_str) {
        Some("JPEG") => false,
        Some("PNG") => true,
        _ => return Err(bad("Format must be JPEG or PNG")),
    };
    let quality = match req
        .get("FormatConfig")
        .and_then(|c| c.get("JPEGQuality"))
        .and_then(Value::as_str)
    {
        None => 80,
        Some(q) => q
            .parse::<u8>()
            .ok()
            .filter(|q| (1..=100).contains(q))
            .ok_or_else(|| bad("FormatConfig.JPEGQuality must be 1 to 100"))?,
    };
    let dim = |k: &str, max: u64| -> Result<Option<usize>, ApiError> {
        match req.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .filter(|p| (1..=max).contains(p))
                .map(|p| Some(p as usize))
                .ok_or_else(|| bad(format!("{k} must be 1 to {max}"))),
        }
    };
    let size = match (dim("WidthPixels", 3840)?, dim("HeightPixels", 2160)?) {
        (Some(w), Some(h)) => Some((w, h)),
        (None, None) => None,
        _ => {
            return Err(ApiError::new(
                ServiceException::Other("ValidationException".into()),
                "WidthPixels and HeightPixels go together",
            ))
        }
    };
    let max = match req.get("MaxResults") {
        None | Some(Value::Null) => 100,
        Some(v) => v
            .as_u64()
            .filter(|m| (1..=100).contains(m))
            .ok_or_else(|| bad("MaxResults must be 1 to 100"))? as usize,
    };
    let skip = match req.get("NextToken").and_then(Value::as_str) {
        None => 0,
        Some(t) => t.parse::<usize>().map_err(|_| bad("invalid NextToken"))?,
    };
    let instants: Vec<u64> = (0..)
        .map(|i| start + i * interval)
        .take_while(|t| *t <= end)
        .take(max)
        .collect();
    let page: Vec<u64> = instants.iter().copied().skip(skip).take(PAGE).collect();
    let out = Output { png, quality, size };
    let time = |f: &Stored| {
        if by_server {
            f.server_ms
        } else {
            f.producer_ms
        }
    };
    // The fragment on screen at an instant: the newest that starts at or
    // before it, until the next one starts or a second after its last frame.
    let holder = |t: u64| -> Option<usize> {
        let k = fragments.iter().rposition(|f| time(f) <= t)?;
        let end = time(&fragments[k]) + fragments[k].media_ms + 1000;
        let next = fragments.get(k + 1).map_or(u64::MAX, |n| time(n));
        (t < end.min(next).max(time(&fragments[k]) + 1)).then_some(k)
    };
    // Decode each fragment once, for every instant it holds.
    let mut images = Vec::new();
    let mut i = 0;
    while i < page.len() {
        let t = page[i];
        let Some(k) = holder(t) else {
            images.push(json!({"TimeStamp": t as f64 / 1000.0, "Error": "NO_MEDIA"}));
            i += 1;
            continue;
        };
        let mut wanted = vec![t];
        while i + wanted.len() < page.len() && holder(page[i + wanted.len()]) == Some(k) {
            wanted.push(page[i + wanted.len()]);
        }
        let base = time(&fragments[k]);
        let pictures = parse(&fragments[k])
            .ok()
            .and_then(|f| pictures(&f, base, &wanted, &out));
        for (j, t) in wanted.iter().enumerate() {
            images.push(match pictures.as_ref().and_then(|p| p[j].clone()) {
                Some(img) => json!({"TimeStamp": *t as f64 / 1000.0, "ImageContent": img}),
                None => json!({"TimeStamp": *t as f64 / 1000.0, "Error": "MEDIA_ERROR"}),
            });
        }
        i += wanted.len();
    }
    let mut answer = json!({"Images": images});
    if skip + PAGE < instants.len() {
        answer["NextToken"] = Value::from((skip + PAGE).to_string());
    }
    Ok(answer)
}

/// Without the `images` feature there is no decoder: no picture.
#[cfg(not(feature = "images"))]
fn pictures(_: &Fragment, _: u64, _: &[u64], _: &Output) -> Option<Vec<Option<String>>> {
    tracing::warn!(
        "GetImages: this endpoint was built without the images feature (no H.264 decoder)"
    );
    None
}

/// The encoded picture shown at each wanted instant (ms on the same clock
/// as `base`, the fragment's start); `None` when the fragment has no H.264
/// video to give.
#[cfg(feature = "images")]
fn pictures(f: &Fragment, base: u64, wanted: &[u64], out: &Output) -> Option<Vec<Option<String>>> {
    let track = f
        .tracks
        .iter()
        .find(|t| t.codec() == crate::codec::Codec::H264)?;
    let (headers, length_size) =
        crate::codec::annexb::record_parameter_sets(track.codec_private.as_deref()?, false)?;
    let cluster_ms = i128::from(f.cluster_timecode?) * i128::from(f.timecode_scale) / 1_000_000;
    let mut decoder = openh264::decoder::Decoder::new().ok()?;
    decoder.decode(&headers).ok()?;
    let mut result = vec![None; wanted.len()];
    let frames: Vec<_> = f
        .frames
        .iter()
        .filter(|x| x.track == track.number)
        .collect();
    for (n, frame) in frames.iter().enumerate() {
        let at = |fr: &crate::mkv::types::ParsedFrame| {
            (i128::from(base) + i128::from(fr.timestamp_ns) / 1_000_000 - cluster_ms).max(0) as u64
        };
        let shown_from = at(frame);
        let shown_until = frames.get(n + 1).map_or(u64::MAX, |x| at(x));
        let annexb = crate::codec::annexb::to_annexb(&frame.payload, length_size).ok()?;
        let Ok(Some(yuv)) = decoder.decode(&annexb) else {
            continue;
        };
        for (j, t) in wanted.iter().enumerate() {
            // The picture on screen at t; before the first picture, the first.
            let first_and_early = n == 0 && *t < shown_from;
            if result[j].is_none() && ((shown_from..shown_until).contains(t) || first_and_early) {
                result[j] = encode(&yuv, out);
            }
        }
    }
    Some(result)
}

#[cfg(feature = "images")]
fn encode(yuv: &openh264::decoder::DecodedYUV<'_>, out: &Output) -> Option<String> {
    use openh264::formats::YUVSource;
    let (w, h) = yuv.dimensions();
    let mut rgb = vec![0u8; yuv.rgb8_len()];
    yuv.write_rgb8(&mut rgb);
    let (rgb, w, h) = match out.size {
        Some((tw, th)) if (tw, th) != (w, h) => (scale(&rgb, w, h, tw, th), tw, th),
        _ => (rgb, w, h),
    };
    let mut bytes = Vec::new();
    if out.png {
        let mut enc = png::Encoder::new(&mut bytes, w as u32, h as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        enc.write_header().ok()?.write_image_data(&rgb).ok()?;
    } else {
        jpeg_encoder::Encoder::new(&mut bytes, out.quality)
            .encode(
                &rgb,
                u16::try_from(w).ok()?,
                u16::try_from(h).ok()?,
                jpeg_encoder::ColorType::Rgb,
            )
            .ok()?;
    }
    Some(base64::engine::general_purpose::STANDARD.encode(Bytes::from(bytes)))
}

/// Bilinear scaling of packed RGB.
#[cfg(feature = "images")]
fn scale(src: &[u8], w: usize, h: usize, tw: usize, th: usize) -> Vec<u8> {
    let mut out = vec![0u8; tw * th * 3];
    let fx = w as f32 / tw as f32;
    let fy = h as f32 / th as f32;
    for y in 0..th {
        let sy = ((y as f32 + 0.5) * fy - 0.5).clamp(0.0, (h - 1) as f32);
        let (y0, wy) = (sy as usize, sy.fract());
        let y1 = (y0 + 1).min(h - 1);
        for x in 0..tw {
            let sx = ((x as f32 + 0.5) * fx - 0.5).clamp(0.0, (w - 1) as f32);
            let (x0, wx) = (sx as usize, sx.fract());
            let x1 = (x0 + 1).min(w - 1);
            for c in 0..3 {
                let p = |xx: usize, yy: usize| f32::from(src[(yy * w + xx) * 3 + c]);
                let top = p(x0, y0) * (1.0 - wx) + p(x1, y0) * wx;
                let bottom = p(x0, y1) * (1.0 - wx) + p(x1, y1) * wx;
                out[(y * tw + x) * 3 + c] = (top * (1.0 - wy) + bottom * wy).round() as u8;
            }
        }
    }
    out
}
