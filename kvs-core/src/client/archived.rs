//! Archived media: ListFragments (every page, time-range selectors) and
//! GetMediaForFragmentList (parsed through the fragment assembler).

use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::{json, Value};

use super::control::{ApiName, KvsClient, StreamId};
use super::error::ClientError;
use crate::mkv::fragment::{Fragment, FragmentAssembler};

/// One entry of ListFragments.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
#[non_exhaustive]
pub struct FragmentInfo {
    /// Fragment number.
    pub fragment_number: String,
    /// Size of the fragment, bytes.
    pub fragment_size_in_bytes: u64,
    /// Producer timestamp, epoch seconds.
    pub producer_timestamp: f64,
    /// Server timestamp, epoch seconds.
    pub server_timestamp: f64,
    /// Duration, ms.
    pub fragment_length_in_milliseconds: u64,
}

/// Which timestamps a ListFragments range applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FragmentSelector {
    /// Producer timestamps in `[start_ms, end_ms]`.
    Producer {
        /// Range start, ms since the epoch.
        start_ms: u64,
        /// Range end, ms since the epoch.
        end_ms: u64,
    },
    /// Server timestamps in `[start_ms, end_ms]`.
    Server {
        /// Range start, ms since the epoch.
        start_ms: u64,
        /// Range end, ms since the epoch.
        end_ms: u64,
    },
}

impl KvsClient {
    /// ListFragments, every page, optionally in a time range.
    pub async fn list_fragments(
        &self,
        stream: impl Into<StreamId>,
        selector: Option<FragmentSelector>,
    ) -> Result<Vec<FragmentInfo>, ClientError> {
        let stream = stream.into();
        let base = self
            .get_data_endpoint(stream.clone(), ApiName::ListFragments)
            .await?;
        #[derive(Deserialize)]
        struct Out {
            #[serde(rename = "Fragments", default)]
            fragments: Vec<FragmentInfo>,
            #[serde(rename = "NextToken", default)]
            next: Option<String>,
        }
        let mut all = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut body = json!({"MaxResults": 1000});
            stream.add_to(&mut body);
            if let Some(sel) = selector {
                let (kind, a, b) = match sel {
                    FragmentSelector::Producer { start_ms, end_ms } => {
                        ("PRODUCER_TIMESTAMP", start_ms, end_ms)
                    }
                    FragmentSelector::Server { start_ms, end_ms } => {
                        ("SERVER_TIMESTAMP", start_ms, end_ms)
                    }
                };
                body["FragmentSelector"] = json!({"FragmentSelectorType": kind, "TimestampRange": {"StartTimestamp": a as f64 / 1000.0, "EndTimestamp": b as f64 / 1000.0}});
            }
            if let Some(t) = &token {
                body["NextToken"] = Value::from(t.as_str());
            }
            let out: Out = self
                .call(
                    "ListFragments",
                    base.trim_end_matches('/'),
                    "/listFragments",
                    body,
                )
                .await?;
            all.extend(out.fragments);
            match out.next.filter(|t| !t.is_empty()) {
                Some(t) if token.as_deref() != Some(&t) => token = Some(t),
                _ => return Ok(all),
            }
        }
    }

    /// GetMediaForFragmentList: the named fragments, in the order asked.
    pub async fn get_media_for_fragment_list(
        &self,
        stream: impl Into<StreamId>,
        numbers: &[String],
    ) -> Result<Vec<Fragment>, ClientError> {
        let mut body = self
            .open_json(
                &stream.into(),
                ApiName::GetMediaForFragmentList,
                "/getMediaForFragmentList",
                json!({"Fragments": numbers}),
            )
            .await?;
        let mut asm = FragmentAssembler::default();
        let mut out = Vec::new();
        let decode = |e: crate::mkv::fragment::FragmentError| ClientError::Decode {
            operation: "GetMediaForFragmentList",
            reason: e.to_string(),
        };
        loop {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        asm.push(data);
                    }
                }
                Some(Err(e)) => return Err(ClientError::Transport(super::http::error_chain(&e))),
                None => {
                    asm.finish();
                    while let Some(f) = asm.next_fragment().map_err(decode)? {
                        out.push(f);
                    }
                    return Ok(out);
                }
            }
            while let Some(f) = asm.next_fragment().map_err(decode)? {
                out.push(f);
            }
        }
    }
}
