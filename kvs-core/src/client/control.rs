//! The control-plane client: streams, tags, retention and data endpoints.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use bytes::Bytes;
use http_body_util::Full;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use super::endpoint::{control_plane, is_loopback_url, Variant};
use super::error::ClientError;
use super::http::Transport;
use super::retry::RetryPolicy;
use crate::auth::sigv4::SignedBody;

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// AWS region of the streams.
    pub region: String,
    /// Control-plane URL; `None` resolves it from the region.
    pub endpoint: Option<String>,
    /// FIPS / dual-stack endpoint variant (with no explicit endpoint).
    pub variant: Variant,
    /// Where credentials come from.
    pub credentials: SharedCredentialsProvider,
    /// Retries of throttled, 5xx and failed-connection calls.
    pub retry: RetryPolicy,
    /// Time limit of one attempt.
    pub timeout: Duration,
    /// Allow plain `http://` to hosts that are not loopback.
    pub allow_http: bool,
    /// How long a GetDataEndpoint answer is reused (default 40 minutes).
    pub endpoint_ttl: Duration,
    /// Largest response body read (default 16 MiB).
    pub max_response_bytes: usize,
    /// The tokio runtime the client's background tasks (a producer's
    /// driver, a consumer's reader, a PutMedia ACK reader) run on. `None`
    /// (default): the runtime the client is created in, else the one a
    /// task is started from; with neither, starting one is
    /// [`ClientError::NoRuntime`], never a panic.
    pub runtime: Option<tokio::runtime::Handle>,
}

impl ClientConfig {
    /// Settings from an AWS SDK configuration (see
    /// [`crate::auth::aws_config::load`]): its region, its credentials
    /// provider and, when set, its endpoint URL.
    #[cfg(feature = "aws-config")]
    pub fn from_sdk_config(sdk: &aws_config::SdkConfig) -> Result<Self, ClientError> {
        let region = sdk
            .region()
            .ok_or_else(|| ClientError::Config("the AWS configuration names no region".into()))?;
        let creds = sdk.credentials_provider().ok_or_else(|| {
            ClientError::Config("the AWS configuration has no credentials provider".into())
        })?;
        let mut cfg = Self::new(region.as_ref(), creds);
        cfg.endpoint = sdk.endpoint_url().map(str::to_owned);
        Ok(cfg)
    }

    /// Settings for `region` with `credentials` and the defaults (those of
    /// [`Default`]: endpoint from the region, standard variant, 4 attempts
    /// from 100 ms, 10 s per attempt, HTTPS only off loopback, data
    /// endpoints reused 40 minutes, bodies up to 16 MiB, the caller's
    /// runtime).
    pub fn new(region: impl Into<String>, credentials: impl ProvideCredentials + 'static) -> Self {
        Self {
            region: region.into(),
            endpoint: None,
            variant: Variant::default(),
            credentials: SharedCredentialsProvider::new(credentials),
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(10),
            allow_http: false,
            endpoint_ttl: Duration::from_secs(40 * 60),
            max_response_bytes: 16 << 20,
            runtime: None,
        }
    }

    /// Uses this control-plane URL (a local endpoint, a VPC endpoint …).
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// Uses this retry policy.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Runs the client's background tasks on this tokio runtime.
    pub fn runtime(mut self, handle: tokio::runtime::Handle) -> Self {
        self.runtime = Some(handle);
        self
    }
}

impl Default for ClientConfig {
    /// Settings as the AWS SDKs find them without being told: the region
    /// from [`crate::auth::default_region`] (environment, then the shared
    /// config file) and credentials from [`crate::auth::DefaultChain`]
    /// (environment, then the shared profile files, asked again on every
    /// signing). With no region found the region is empty, and
    /// [`KvsClient::new`] refuses it with [`ClientError::Config`].
    fn default() -> Self {
        Self::new(
            crate::auth::default_region().unwrap_or_default(),
            crate::auth::DefaultChain::new(),
        )
    }
}

/// A stream, by name or by ARN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamId {
    /// `StreamName`.
    Name(String),
    /// `StreamARN`.
    Arn(String),
}

impl From<&str> for StreamId {
    /// Strings starting with `arn:` are ARNs, others names.
    fn from(s: &str) -> Self {
        if s.starts_with("arn:") {
            Self::Arn(s.to_owned())
        } else {
            Self::Name(s.to_owned())
        }
    }
}

impl StreamId {
    pub(crate) fn add_to(&self, body: &mut Value) {
        match self {
            Self::Name(n) => body["StreamName"] = Value::from(n.as_str()),
            Self::Arn(a) => body["StreamARN"] = Value::from(a.as_str()),
        }
    }

    fn key(&self) -> &str {
        match self {
            Self::Name(n) | Self::Arn(n) => n,
        }
    }
}

/// The data-plane APIs GetDataEndpoint resolves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiName {
    /// PutMedia.
    PutMedia,
    /// GetMedia.
    GetMedia,
    /// ListFragments.
    ListFragments,
    /// GetMediaForFragmentList.
    GetMediaForFragmentList,
    /// GetHLSStreamingSessionURL.
    GetHlsStreamingSessionUrl,
    /// GetDASHStreamingSessionURL.
    GetDashStreamingSessionUrl,
    /// GetClip.
    GetClip,
    /// GetImages.
    GetImages,
}

impl ApiName {
    /// The `APIName` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PutMedia => "PUT_MEDIA",
            Self::GetMedia => "GET_MEDIA",
            Self::ListFragments => "LIST_FRAGMENTS",
            Self::GetMediaForFragmentList => "GET_MEDIA_FOR_FRAGMENT_LIST",
            Self::GetHlsStreamingSessionUrl => "GET_HLS_STREAMING_SESSION_URL",
            Self::GetDashStreamingSessionUrl => "GET_DASH_STREAMING_SESSION_URL",
            Self::GetClip => "GET_CLIP",
            Self::GetImages => "GET_IMAGES",
        }
    }
}

/// DescribeStream's `StreamInfo`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
#[non_exhaustive]
pub struct StreamInfo {
    /// Stream name.
    pub stream_name: String,
    /// Stream ARN.
    #[serde(rename = "StreamARN")]
    pub stream_arn: String,
    /// Device name, if set.
    #[serde(default)]
    pub device_name: Option<String>,
    /// Media type, if set.
    #[serde(default)]
    pub media_type: Option<String>,
    /// KMS key id.
    #[serde(default)]
    pub kms_key_id: Option<String>,
    /// Version, for conditional updates.
    #[serde(default)]
    pub version: Option<String>,
    /// `CREATING`, `ACTIVE`, `UPDATING` or `DELETING`.
    #[serde(default)]
    pub status: Option<String>,
    /// Creation time, epoch seconds.
    #[serde(default)]
    pub creation_time: Option<f64>,
    /// Retention in hours (0: not stored).
    #[serde(default)]
    pub data_retention_in_hours: Option<u32>,
}

/// CreateStream's input.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateStream {
    /// Stream name.
    pub stream_name: String,
    /// Retention in hours (0: not stored).
    pub data_retention_in_hours: u32,
    /// Media type, e.g. `video/h264` or `video/h264,audio/aac`.
    pub media_type: Option<String>,
    /// Device name.
    pub device_name: Option<String>,
    /// KMS key id.
    pub kms_key_id: Option<String>,
    /// Stream tags.
    pub tags: HashMap<String, String>,
}

/// Direction of an UpdateDataRetention change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetentionChange {
    /// Add hours.
    Increase,
    /// Remove hours.
    Decrease,
}

/// The control-plane client. Cheap to clone: clones share the connection
/// pool and the data-endpoint cache. Every API taking a client takes
/// `impl Into<Arc<KvsClient>>` (a client or an `Arc` of one).
#[derive(Debug, Clone)]
pub struct KvsClient {
    /// The runtime tasks are spawned on (see [`ClientConfig::runtime`]).
    runtime: Option<tokio::runtime::Handle>,
    pub(crate) cfg: ClientConfig,
    base: String,
    pub(crate) transport: Transport,
    endpoints: Arc<Mutex<EndpointCache>>,
}

/// GetDataEndpoint answers by (stream, API), with when they were fetched.
type EndpointCache = HashMap<(String, ApiName), (String, Instant)>;

impl KvsClient {
    /// The same client (connection pool and endpoint cache shared) with
    /// another retry policy: loops that retry on their own (the producer's
    /// reconnects, the consumer's resumes) call with
    /// [`RetryPolicy::none`], so retries never stack.
    pub fn with_retry(&self, retry: RetryPolicy) -> KvsClient {
        let mut c = self.clone();
        c.cfg.retry = retry;
        c
    }

    /// Starts a background task on the client's runtime (see
    /// [`ClientConfig::runtime`]), else on the runtime this is called from.
    ///
    /// Errors: [`ClientError::NoRuntime`] when there is neither.
    pub fn spawn<F>(&self, task: F) -> Result<tokio::task::JoinHandle<F::Output>, ClientError>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let handle = match &self.runtime {
            Some(h) => h.clone(),
            None => tokio::runtime::Handle::try_current().map_err(|_| ClientError::NoRuntime)?,
        };
        Ok(handle.spawn(task))
    }

    /// A client; fails on an endpoint it will not use (plain `http://` to a
    /// remote host without [`ClientConfig::allow_http`]).
    pub fn new(cfg: ClientConfig) -> Result<Self, ClientError> {
        if cfg.region.trim().is_empty() {
            return Err(ClientError::Config(
                "no AWS region: set one in the configuration, AWS_REGION, or the profile's `region`"
                    .into(),
            ));
        }
        let base = match &cfg.endpoint {
            Some(e) => e.trim_end_matches('/').to_owned(),
            None => control_plane(&cfg.region, cfg.variant)
                .map_err(|e| ClientError::Config(e.to_string()))?,
        };
        check_scheme(&base, cfg.allow_http)?;
        let transport = Transport::new(cfg.timeout, cfg.max_response_bytes);
        Ok(Self {
            runtime: cfg
                .runtime
                .clone()
                .or_else(|| tokio::runtime::Handle::try_current().ok()),
            cfg,
            base,
            transport,
            endpoints: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// The settings it was made with.
    pub fn config(&self) -> &ClientConfig {
        &self.cfg
    }

    /// The control-plane URL in use.
    pub fn endpoint(&self) -> &str {
        &self.base
    }

    /// CreateStream; returns the new stream's ARN.
    pub async fn create_stream(&self, input: &CreateStream) -> Result<String, ClientError> {
        let mut body = json!({"StreamName": input.stream_name, "DataRetentionInHours": input.data_retention_in_hours});
        if let Some(m) = &input.media_type {
            body["MediaType"] = Value::from(m.as_str());
        }
        if let Some(d) = &input.device_name {
            body["DeviceName"] = Value::from(d.as_str());
        }
        if let Some(k) = &input.kms_key_id {
            body["KmsKeyId"] = Value::from(k.as_str());
        }
        if !input.tags.is_empty() {
            body["Tags"] = json!(input.tags);
        }
        #[derive(Deserialize)]
        struct Out {
            #[serde(rename = "StreamARN")]
            arn: String,
        }
        let out: Out = self
            .call("CreateStream", &self.base, "/createStream", body)
            .await?;
        Ok(out.arn)
    }

    /// DescribeStream.
    pub async fn describe_stream(
        &self,
        stream: impl Into<StreamId>,
    ) -> Result<StreamInfo, ClientError> {
        let mut body = json!({});
        stream.into().add_to(&mut body);
        #[derive(Deserialize)]
        struct Out {
            #[serde(rename = "StreamInfo")]
            info: StreamInfo,
        }
        let out: Out = self
            .call("DescribeStream", &self.base, "/describeStream", body)
            .await?;
        Ok(out.info)
    }

    /// ListStreams, every page.
    pub async fn list_streams(&self) -> Result<Vec<StreamInfo>, ClientError> {
        #[derive(Deserialize)]
        struct Out {
            #[serde(rename = "StreamInfoList", default)]
            list: Vec<StreamInfo>,
            #[serde(rename = "NextToken", default)]
            next: Option<String>,
        }
        let mut all = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut body = json!({"MaxResults": 100});
            if let Some(t) = &token {
                body["NextToken"] = Value::from(t.as_str());
            }
            let out: Out = self
                .call("ListStreams", &self.base, "/listStreams", body)
                .await?;
            all.extend(out.list);
            match out.next.filter(|t| !t.is_empty()) {
                Some(t) if token.as_deref() != Some(&t) => token = Some(t),
                _ => return Ok(all),
            }
        }
    }

    /// DeleteStream (by ARN, as the API requires).
    pub async fn delete_stream(
        &self,
        arn: &str,
        current_version: Option<&str>,
    ) -> Result<(), ClientError> {
        let mut body = json!({"StreamARN": arn});
        if let Some(v) = current_version {
            body["CurrentVersion"] = Value::from(v);
        }
        let _: Value = self
            .call("DeleteStream", &self.base, "/deleteStream", body)
            .await?;
        self.endpoints
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|(s, _), _| s != arn);
        Ok(())
    }

    /// UpdateStream: device name and/or media type.
    pub async fn update_stream(
        &self,
        stream: impl Into<StreamId>,
        current_version: &str,
        device_name: Option<&str>,
        media_type: Option<&str>,
    ) -> Result<(), ClientError> {
        let mut body = json!({"CurrentVersion": current_version});
        stream.into().add_to(&mut body);
        if let Some(d) = device_name {
            body["DeviceName"] = Value::from(d);
        }
        if let Some(m) = media_type {
            body["MediaType"] = Value::from(m);
        }
        let _: Value = self
            .call("UpdateStream", &self.base, "/updateStream", body)
            .await?;
        Ok(())
    }

    /// UpdateDataRetention.
    pub async fn update_data_retention(
        &self,
        stream: impl Into<StreamId>,
        current_version: &str,
        change: RetentionChange,
        hours: u32,
    ) -> Result<(), ClientError> {
        let op = match change {
            RetentionChange::Increase => "INCREASE_DATA_RETENTION",
            RetentionChange::Decrease => "DECREASE_DATA_RETENTION",
        };
        let mut body = json!({"CurrentVersion": current_version, "Operation": op, "DataRetentionChangeInHours": hours});
        stream.into().add_to(&mut body);
        let _: Value = self
            .call(
                "UpdateDataRetention",
                &self.base,
                "/updateDataRetention",
                body,
            )
            .await?;
        Ok(())
    }

    /// Sets a stream's data retention to `hours` (0: none kept): looks up
    /// its current retention and version (DescribeStream), then
    /// UpdateDataRetention by the difference. Nothing is sent when it is
    /// already `hours`. Errors: the service's (ResourceNotFound,
    /// VersionMismatch when the stream changed in between,
    /// InvalidArgument past the service's limit of 87,600 hours).
    pub async fn set_data_retention(
        &self,
        stream: impl Into<StreamId>,
        hours: u32,
    ) -> Result<(), ClientError> {
        let stream = stream.into();
        let info = self.describe_stream(stream.clone()).await?;
        let now = info.data_retention_in_hours.unwrap_or(0);
        let version = info.version.unwrap_or_default();
        let (change, by) = match hours.cmp(&now) {
            std::cmp::Ordering::Equal => return Ok(()),
            std::cmp::Ordering::Greater => (RetentionChange::Increase, hours - now),
            std::cmp::Ordering::Less => (RetentionChange::Decrease, now - hours),
        };
        self.update_data_retention(stream, &version, change, by)
            .await
    }

    /// TagStream.
    pub async fn tag_stream(
        &self,
        stream: impl Into<StreamId>,
        tags: &HashMap<String, String>,
    ) -> Result<(), ClientError> {
        let mut body = json!({"Tags": tags});
        stream.into().add_to(&mut body);
        let _: Value = self
            .call("TagStream", &self.base, "/tagStream", body)
            .await?;
        Ok(())
    }

    /// UntagStream.
    pub async fn untag_stream(
        &self,
        stream: impl Into<StreamId>,
        keys: &[&str],
    ) -> Result<(), ClientError> {
        let mut body = json!({"TagKeyList": keys});
        stream.into().add_to(&mut body);
        let _: Value = self
            .call("UntagStream", &self.base, "/untagStream", body)
            .await?;
        Ok(())
    }

    /// ListTagsForStream, every page.
    pub async fn list_tags_for_stream(
        &self,
        stream: impl Into<StreamId>,
    ) -> Result<HashMap<String, String>, ClientError> {
        #[derive(Deserialize)]
        struct Out {
            #[serde(rename = "Tags", default)]
            tags: Option<HashMap<String, String>>,
            #[serde(rename = "NextToken", default)]
            next: Option<String>,
        }
        let stream = stream.into();
        let mut all = HashMap::new();
        let mut token: Option<String> = None;
        loop {
            let mut body = json!({});
            stream.add_to(&mut body);
            if let Some(t) = &token {
                body["NextToken"] = Value::from(t.as_str());
            }
            let out: Out = self
                .call("ListTagsForStream", &self.base, "/listTagsForStream", body)
                .await?;
            all.extend(out.tags.unwrap_or_default());
            match out.next.filter(|t| !t.is_empty()) {
                Some(t) if token.as_deref() != Some(&t) => token = Some(t),
                _ => return Ok(all),
            }
        }
    }

    /// GetDataEndpoint, answered from a per-(stream, API) cache while fresh.
    pub async fn get_data_endpoint(
        &self,
        stream: impl Into<StreamId>,
        api: ApiName,
    ) -> Result<String, ClientError> {
        let stream = stream.into();
        let key = (stream.key().to_owned(), api);
        if let Some((url, at)) = self
            .endpoints
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&key)
        {
            if at.elapsed() < self.cfg.endpoint_ttl {
                return Ok(url.clone());
            }
        }
        let mut body = json!({"APIName": api.as_str()});
        stream.add_to(&mut body);
        #[derive(Deserialize)]
        struct Out {
            #[serde(rename = "DataEndpoint")]
            url: String,
        }
        let out: Out = self
            .call("GetDataEndpoint", &self.base, "/getDataEndpoint", body)
            .await?;
        check_scheme(&out.url, self.cfg.allow_http)?;
        self.endpoints
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key, (out.url.clone(), Instant::now()));
        Ok(out.url)
    }

    /// Drops a cached data endpoint (after `InvalidEndpointException` or a
    /// failed connection), so the next call asks again.
    pub fn forget_data_endpoint(&self, stream: impl Into<StreamId>, api: ApiName) {
        self.endpoints
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&(stream.into().key().to_owned(), api));
    }

    /// One JSON operation with retries.
    pub(crate) async fn call<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        base: &str,
        path: &str,
        body: Value,
    ) -> Result<T, ClientError> {
        let body = Bytes::from(serde_json::to_vec(&body).expect("JSON values serialise"));
        let mut attempt = 0;
        loop {
            match self.once(operation, base, path, body.clone()).await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_retryable() && attempt + 1 < self.cfg.retry.max_attempts => {
                    let wait = self.cfg.retry.backoff().delay(attempt);
                    tracing::debug!(operation, attempt, ?wait, error = %e, "retrying");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn once<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        base: &str,
        path: &str,
        body: Bytes,
    ) -> Result<T, ClientError> {
        let url = format!("{base}{path}");
        let req = self
            .signed(
                &url,
                &[("content-type", "application/json")],
                SignedBody::Bytes(&body),
            )
            .await?
            .body(Full::new(body))
            .map_err(|e| ClientError::Config(format!("bad request for {url}: {e}")))?;
        let resp = self.transport.send(req).await?;
        if !(200..300).contains(&resp.status) {
            let h = |n: &str| resp.headers.get(n).and_then(|v| v.to_str().ok());
            return Err(ClientError::from_response(
                resp.status,
                h("x-amzn-errortype"),
                h("x-amzn-requestid"),
                &resp.body,
            ));
        }
        let body: &[u8] = if resp.body.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &resp.body
        };
        serde_json::from_slice(body).map_err(|e| ClientError::Decode {
            operation,
            reason: e.to_string(),
        })
    }
}

fn check_scheme(url: &str, allow_http: bool) -> Result<(), ClientError> {
    if url.starts_with("https://")
        || (url.starts_with("http://") && (allow_http || is_loopback_url(url)))
    {
        Ok(())
    } else {
        Err(ClientError::Config(format!(
            "refusing {url}: https is required (plain http only for loopback or with allow_http)"
        )))
    }
}
