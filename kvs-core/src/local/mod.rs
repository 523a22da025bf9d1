//! A KVS-compatible endpoint on 127.0.0.1 (feature `local`), for tests,
//! demos and offline development. It answers the control-plane APIs with
//! the service's paths, JSON shapes, error headers and status codes, and
//! names itself as every stream's data endpoint. `/putMedia` checks uploads
//! as the service does ([`crate::protocol::ingest`]) and answers with ACKs; `/getMedia` sends
//! one EBML document per fragment with the service's tags before and after
//! the Cluster, and follows the stream live. Fragments are kept in memory.
//!
//! # Archived media: the request members
//!
//! Every member of GetClip, GetHLSStreamingSessionURL and
//! GetDASHStreamingSessionURL in the archived-media API model, and what the
//! endpoint does with it. A member outside its enumeration or range is
//! refused with `InvalidArgumentException`, as the model says. Every path
//! plays one timeline, producer time since the stream's first fragment
//! (gaps kept as gaps), and drops duplicates with
//! [`crate::timeline::playable`].
//!
//! | API | Member | Status |
//! |---|---|---|
//! | all three | `StreamName`, `StreamARN` | honoured; exactly one of them |
//! | GetClip | `ClipFragmentSelector` | required |
//! | GetClip | `.FragmentSelectorType` | required; `PRODUCER_TIMESTAMP` or `SERVER_TIMESTAMP` selects which timestamp the range compares |
//! | GetClip | `.TimestampRange.StartTimestamp`, `.EndTimestamp` | required; fragments that start inside, end later than start and at most 24 h after it; at most 200 fragments and 100 MB (the service's limits); none → `ResourceNotFoundException` |
//! | HLS, DASH | `PlaybackMode` | honoured: `LIVE` (the newest fragments, growing), `LIVE_REPLAY` (from the start on, growing until its end if one is given), `ON_DEMAND` (the range, ended: `EXT-X-ENDLIST`, a static MPD) |
//! | HLS, DASH | `…FragmentSelector.FragmentSelectorType` | honoured; default `SERVER_TIMESTAMP`; in `LIVE` it sets the time `DisplayFragmentTimestamp` shows and HLS's default `DiscontinuityMode` |
//! | HLS, DASH | `…FragmentSelector.TimestampRange` | required for `LIVE_REPLAY` and `ON_DEMAND`, refused for `LIVE`; fragments that start inside; end required for `ON_DEMAND`, later than start, at most 24 h after it, and in the past for `SERVER_TIMESTAMP` |
//! | HLS | `ContainerFormat` | honoured: `FRAGMENTED_MP4` (default) or `MPEG_TS` segments |
//! | HLS | `DiscontinuityMode` | honoured: `EXT-X-DISCONTINUITY` between every two fragments (`ALWAYS`), nowhere (`NEVER`) or where the timeline has a gap or an overlap of more than 50 ms (`ON_DISCONTINUITY`); default `ALWAYS` for `SERVER_TIMESTAMP`, `NEVER` for `PRODUCER_TIMESTAMP`; `EXT-X-DISCONTINUITY-SEQUENCE` counts those a live playlist moved past |
//! | HLS | `DisplayFragmentTimestamp` | honoured: `ALWAYS` adds `EXT-X-PROGRAM-DATE-TIME` (RFC 3339 UTC) before each segment, producer or server time as the selector says; default `NEVER` |
//! | DASH | `DisplayFragmentTimestamp` | honoured: `ALWAYS` adds `kvs:ts` (RFC 3339 UTC) to each `S` element; default `NEVER` |
//! | DASH | `DisplayFragmentNumber` | honoured: `ALWAYS` adds `kvs:fn` (the fragment number) to each `S` element; default `NEVER`. \[I\] the `kvs` namespace URI is this endpoint's own: the reference names the attributes only |
//! | HLS, DASH | `Expires` | honoured: 300–43,200 s (default 300); later requests with the token → `NotAuthorizedException` |
//! | HLS | `MaxMediaPlaylistFragmentResults` | honoured: 1–5,000; default 5 for `LIVE` and `LIVE_REPLAY`, 1,000 for `ON_DEMAND` |
//! | DASH | `MaxManifestFragmentResults` | honoured: as HLS's |
//!
//! Playlists and manifests: `EXTINF` and DASH `d` are each fragment's own
//! media (its first frame to the end of its video's last frame), not the
//! distance to the next fragment; a DASH `S` carries `t` wherever it does
//! not follow on from the one before (a gap); `CODECS`/`codecs` name every
//! track (`avc1`, `hvc1`, `mp4a`), with `RESOLUTION` and `BANDWIDTH`.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use kvs_core::local::{LocalConfig, LocalEndpoint};
//! let endpoint = LocalEndpoint::start(LocalConfig::default()).await?;
//! println!("KVS endpoint at {}", endpoint.url());
//! endpoint.shutdown().await;
//! # Ok(()) }
//! ```

mod console;
mod images;

mod media;
mod playback;
mod server;
pub mod store;
pub mod verify;

pub use media::Faults;
pub use server::{LocalConfig, LocalEndpoint};
