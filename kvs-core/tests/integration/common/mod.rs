//! Setup shared by the local-endpoint tests: the bundled clip, a client,
//! an endpoint with a stream, and a PutMedia upload that collects the ACKs.
#![cfg(feature = "local")]
#![allow(dead_code)] // each test file uses its own subset

use std::path::PathBuf;

use bytes::Bytes;
use kvs_core::auth::Credentials;
use kvs_core::client::{
    ClientConfig, ClientError, CreateStream, KvsClient, PutMediaOptions, StreamId, TimecodeType,
};
use kvs_core::codec::aac;
use kvs_core::codec::annexb::VideoCodec;
use kvs_core::local::{LocalConfig, LocalEndpoint};
use kvs_core::mkv::builder::{FragmentBuilder, FrameIn, Payload, StreamConfig, TrackConfig};
use kvs_core::mkv::mux::{mux_annexb, AacInput};
use kvs_core::protocol::Ack;

/// The bundled 8 s clip muxed at 25 fps (4 fragments), with its AAC track if asked.
pub fn clip(with_audio: bool) -> Bytes {
    let media = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/media");
    let video = Bytes::from(std::fs::read(media.join("clip.h264")).unwrap());
    let audio = with_audio.then(|| {
        let (header, frames) =
            aac::split_adts(&Bytes::from(std::fs::read(media.join("clip.aac")).unwrap())).unwrap();
        AacInput { header, frames }
    });
    Bytes::from(
        mux_annexb(VideoCodec::H264, &video, 25.0, audio.as_ref())
            .unwrap()
            .chunks
            .concat(),
    )
}

/// A stream header followed by one single-frame fragment at `timecode`.
pub fn one_frame_stream(timecode: i64, payload: &'static [u8]) -> Bytes {
    let mut b = FragmentBuilder::new(StreamConfig::new(vec![TrackConfig::video(
        1,
        "V_MPEG4/ISO/AVC",
        Bytes::from_static(&[1]),
        8,
        8,
    )]))
    .unwrap();
    let mut chunks = vec![b.header()];
    b.fragment(
        &[FrameIn {
            track: 1,
            timecode,
            key: true,
            payload: Payload::Raw(Bytes::from_static(payload)),
        }],
        &[],
        &mut chunks,
    )
    .unwrap();
    Bytes::from(chunks.concat())
}

/// A client of `url` with throwaway keys.
pub fn client(url: &str) -> KvsClient {
    KvsClient::new(
        ClientConfig::new("us-east-1", Credentials::new("a", "b", None, None, "test"))
            .endpoint(url),
    )
    .unwrap()
}

/// An endpoint with `cfg` and one stream `name` of `retention_hours`.
pub async fn endpoint_with_stream(
    cfg: LocalConfig,
    name: &str,
    retention_hours: u32,
) -> (LocalEndpoint, KvsClient) {
    let ep = LocalEndpoint::start(cfg).await.unwrap();
    let c = client(ep.url());
    c.create_stream(&CreateStream {
        stream_name: name.into(),
        data_retention_in_hours: retention_hours,
        ..CreateStream::default()
    })
    .await
    .unwrap();
    (ep, c)
}

/// Uploads `data` in 16 KiB pieces on one PutMedia connection; returns the
/// ACKs and the error that ended the ACK stream, if any.
pub async fn put_all(
    c: &KvsClient,
    stream: &str,
    data: &Bytes,
    timecode_type: TimecodeType,
    producer_start_ms: u64,
) -> (Vec<Ack>, Option<ClientError>) {
    let opts = PutMediaOptions {
        stream: StreamId::from(stream),
        timecode_type,
        producer_start: crate::support::at_ms(producer_start_ms),
    };
    let mut s = c.put_media(&opts).await.unwrap();
    for piece in data.chunks(16_384) {
        if s.send(Bytes::copy_from_slice(piece)).await.is_err() {
            break;
        }
    }
    s.finish();
    let mut acks = Vec::new();
    while let Some(a) = s.next_ack().await {
        match a {
            Ok(a) => acks.push(a),
            Err(e) => return (acks, Some(e)),
        }
    }
    (acks, None)
}

/// Uploads the bundled clip with audio (4 fragments, RELATIVE timecodes)
/// at `producer_start_ms`, and checks every fragment was PERSISTED.
pub async fn put_clip(c: &KvsClient, stream: &str, producer_start_ms: u64) {
    let (acks, err) = put_all(
        c,
        stream,
        &clip(true),
        TimecodeType::Relative,
        producer_start_ms,
    )
    .await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(persisted(&acks).len(), 4, "{acks:?}");
}

/// The fragment timecodes of the PERSISTED ACKs, in order.
pub fn persisted(acks: &[Ack]) -> Vec<u64> {
    acks.iter()
        .filter_map(|a| {
            if let Ack::Persisted {
                fragment_timecode, ..
            } = a
            {
                Some(*fragment_timecode)
            } else {
                None
            }
        })
        .collect()
}

/// The fragment numbers of the PERSISTED ACKs, in order.
pub fn persisted_numbers(acks: &[Ack]) -> Vec<String> {
    acks.iter()
        .filter_map(|a| {
            if let Ack::Persisted {
                fragment_number, ..
            } = a
            {
                Some(fragment_number.clone())
            } else {
                None
            }
        })
        .collect()
}

/// A plain GET on loopback: status and body.
pub async fn http_get(url: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let mut tcp = tokio::net::TcpStream::connect(host).await.unwrap();
    tcp.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    tcp.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text[9..12].parse().unwrap();
    let body = text.split_once("\r\n\r\n").unwrap().1.to_owned();
    (status, body)
}
