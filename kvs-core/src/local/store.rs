//! The local endpoint's stream registry and control-plane semantics,
//! without HTTP: each operation takes the request JSON and returns the
//! response JSON or the service's exception.

use std::collections::{BTreeMap, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::client::ServiceException;

/// An exception to send back, with its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The exception.
    pub exception: ServiceException,
    /// The message.
    pub message: String,
}

impl ApiError {
    /// An error of this kind.
    pub fn new(exception: ServiceException, message: impl Into<String>) -> Self {
        Self {
            exception,
            message: message.into(),
        }
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self::new(ServiceException::InvalidArgument, message)
    }

    fn not_found() -> Self {
        Self::new(
            ServiceException::ResourceNotFound,
            "The requested stream is not found or not active.",
        )
    }

    /// The HTTP status the service uses for this exception.
    pub fn status(&self) -> u16 {
        match self.exception {
            ServiceException::ResourceNotFound
            | ServiceException::StreamEdgeConfigurationNotFound => 404,
            ServiceException::NotAuthorized | ServiceException::AccessDenied => 403,
            ServiceException::Other(ref n) if n == "InternalFailure" => 500,
            ServiceException::Other(ref n)
                if matches!(
                    n.as_str(),
                    "MissingAuthenticationTokenException"
                        | "IncompleteSignatureException"
                        | "InvalidSignatureException"
                        | "UnrecognizedClientException"
                ) =>
            {
                403
            }
            _ => 400,
        }
    }
}

/// One stream's metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamMeta {
    /// Name.
    pub name: String,
    /// ARN.
    pub arn: String,
    /// Device name.
    pub device_name: Option<String>,
    /// Media type.
    pub media_type: Option<String>,
    /// KMS key id.
    pub kms_key_id: String,
    /// Version token.
    pub version: String,
    /// Creation time, epoch seconds.
    pub creation_time: f64,
    /// Retention, hours.
    pub retention_hours: u32,
    /// Stream tags.
    pub tags: BTreeMap<String, String>,
}

impl StreamMeta {
    fn info(&self) -> Value {
        json!({
            "DeviceName": self.device_name,
            "StreamName": self.name,
            "StreamARN": self.arn,
            "MediaType": self.media_type,
            "KmsKeyId": self.kms_key_id,
            "Version": self.version,
            "Status": "ACTIVE",
            "CreationTime": self.creation_time,
            "DataRetentionInHours": self.retention_hours,
        })
    }
}

/// The registry of streams.
#[derive(Debug)]
pub struct Registry {
    region: String,
    account: String,
    streams: BTreeMap<String, StreamMeta>,
    counter: u64,
}

const MAX_TAGS: usize = 50;
const MAX_RETENTION: u32 = 87_600;

fn str_field<'a>(v: &'a Value, k: &str) -> Result<Option<&'a str>, ApiError> {
    match v.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::invalid(format!("{k} must be a string"))),
    }
}

fn valid_name(n: &str) -> bool {
    (1..=256).contains(&n.len())
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
}

fn valid_tags(tags: &BTreeMap<String, String>) -> Result<(), ApiError> {
    for (k, v) in tags {
        if k.is_empty() || k.len() > 128 || v.len() > 256 || k.starts_with("aws:") {
            return Err(ApiError::invalid(format!("invalid tag {k:?}")));
        }
    }
    Ok(())
}

fn tag_map(v: &Value, k: &str) -> Result<Option<BTreeMap<String, String>>, ApiError> {
    match v.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| {
                v.as_str()
                    .map(|s| (k.clone(), s.to_owned()))
                    .ok_or_else(|| ApiError::invalid("tag values must be strings"))
            })
            .collect::<Result<_, _>>()
            .map(Some),
        Some(_) => Err(ApiError::invalid(format!("{k} must be a map"))),
    }
}

impl Registry {
    /// An empty registry for `region` and `account`.
    pub fn new(region: impl Into<String>, account: impl Into<String>) -> Self {
        Self {
            region: region.into(),
            account: account.into(),
            streams: BTreeMap::new(),
            counter: 0,
        }
    }

    /// The stream a request names (`StreamName` or `StreamARN`).
    pub fn find(&self, req: &Value) -> Result<&StreamMeta, ApiError> {
        match (str_field(req, "StreamName")?, str_field(req, "StreamARN")?) {
            (Some(_), Some(_)) => Err(ApiError::invalid(
                "specify either StreamName or StreamARN, not both",
            )),
            (Some(n), None) => self.streams.get(n).ok_or_else(ApiError::not_found),
            (None, Some(a)) => {
                if !a.starts_with("arn:") {
                    return Err(ApiError::new(
                        ServiceException::InvalidResourceFormat,
                        format!("invalid ARN {a}"),
                    ));
                }
                self.streams
                    .values()
                    .find(|s| s.arn == a)
                    .ok_or_else(ApiError::not_found)
            }
            (None, None) => Err(ApiError::invalid("StreamName or StreamARN is required")),
        }
    }

    fn find_mut(&mut self, req: &Value) -> Result<&mut StreamMeta, ApiError> {
        let name = self.find(req)?.name.clone();
        Ok(self.streams.get_mut(&name).expect("found above"))
    }

    fn new_version(&mut self) -> String {
        self.counter += 1;
        (0..20).map(|_| fastrand::alphanumeric()).collect()
    }

    fn check_version(s: &StreamMeta, req: &Value, required: bool) -> Result<(), ApiError> {
        match str_field(req, "CurrentVersion")? {
            Some(v) if v != s.version => Err(ApiError::new(
                ServiceException::VersionMismatch,
                "The version of the stream is not the latest.",
            )),
            None if required => Err(ApiError::invalid("CurrentVersion is required")),
            _ => Ok(()),
        }
    }

    /// Looks a stream up by name.
    pub fn get(&self, name: &str) -> Option<&StreamMeta> {
        self.streams.get(name)
    }

    /// Runs a control-plane operation by its path name (`createStream` …).
    pub fn handle(&mut self, op: &str, req: &Value, own_url: &str) -> Result<Value, ApiError> {
        match op {
            "createStream" => self.create(req),
            "describeStream" => Ok(json!({"StreamInfo": self.find(req)?.info()})),
            "listStreams" => self.list(req),
            "deleteStream" => self.delete(req),
            "updateStream" => self.update(req),
            "updateDataRetention" => self.retention(req),
            "tagStream" => self.tag(req),
            "untagStream" => self.untag(req),
            "listTagsForStream" => Ok(json!({"Tags": self.find(req)?.tags})),
            "getDataEndpoint" => {
                self.find(req)?;
                let api = str_field(req, "APIName")?
                    .ok_or_else(|| ApiError::invalid("APIName is required"))?;
                const APIS: [&str; 8] = [
                    "PUT_MEDIA",
                    "GET_MEDIA",
                    "LIST_FRAGMENTS",
                    "GET_MEDIA_FOR_FRAGMENT_LIST",
                    "GET_HLS_STREAMING_SESSION_URL",
                    "GET_DASH_STREAMING_SESSION_URL",
                    "GET_CLIP",
                    "GET_IMAGES",
                ];
                if !APIS.contains(&api) {
                    return Err(ApiError::invalid(format!("invalid APIName {api}")));
                }
                Ok(json!({"DataEndpoint": own_url}))
            }
            _ => Err(ApiError::new(
                ServiceException::Other("UnknownOperationException".into()),
                format!("unknown operation {op}"),
            )),
        }
    }

    fn create(&mut self, req: &Value) -> Result<Value, ApiError> {
        let name = str_field(req, "StreamName")?
            .ok_or_else(|| ApiError::invalid("StreamName is required"))?;
        if !valid_name(name) {
            return Err(ApiError::invalid(format!("invalid stream name {name:?}")));
        }
        if self.streams.contains_key(name) {
            return Err(ApiError::new(
                ServiceException::ResourceInUse,
                format!("The stream {name} already exists."),
            ));
        }
        let retention = match req.get("DataRetentionInHours") {
            None | Some(Value::Null) => 0,
            Some(v) => v
                .as_u64()
                .filter(|h| *h <= u64::from(MAX_RETENTION))
                .ok_or_else(|| ApiError::invalid("DataRetentionInHours must be 0 to 87600"))?
                as u32,
        };
        let tags = tag_map(req, "Tags")?.unwrap_or_default();
        if tags.len() > MAX_TAGS {
            return Err(ApiError::new(
                ServiceException::TagsPerResourceExceededLimit,
                "more than 50 tags",
            ));
        }
        valid_tags(&tags)?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let arn = format!(
            "arn:aws:kinesisvideo:{}:{}:stream/{name}/{}",
            self.region,
            self.account,
            now.as_millis()
        );
        let meta = StreamMeta {
            name: name.to_owned(),
            arn: arn.clone(),
            device_name: str_field(req, "DeviceName")?.map(str::to_owned),
            media_type: str_field(req, "MediaType")?.map(str::to_owned),
            kms_key_id: str_field(req, "KmsKeyId")?.map_or_else(
                || {
                    format!(
                        "arn:aws:kms:{}:{}:alias/aws/kinesisvideo",
                        self.region, self.account
                    )
                },
                str::to_owned,
            ),
            version: self.new_version(),
            creation_time: now.as_millis() as f64 / 1000.0,
            retention_hours: retention,
            tags,
        };
        self.streams.insert(name.to_owned(), meta);
        Ok(json!({"StreamARN": arn}))
    }

    fn list(&self, req: &Value) -> Result<Value, ApiError> {
        let max = match req.get("MaxResults") {
            None | Some(Value::Null) => 10_000,
            Some(v) => v
                .as_u64()
                .filter(|m| (1..=10_000).contains(m))
                .ok_or_else(|| ApiError::invalid("MaxResults must be 1 to 10000"))?
                as usize,
        };
        let start = match str_field(req, "NextToken")? {
            None => 0,
            Some(t) => t
                .parse::<usize>()
                .map_err(|_| ApiError::invalid("invalid NextToken"))?,
        };
        let prefix = match req.get("StreamNameCondition") {
            Some(c) if !c.is_null() => {
                if str_field(c, "ComparisonOperator")?.unwrap_or("BEGINS_WITH") != "BEGINS_WITH" {
                    return Err(ApiError::invalid("ComparisonOperator must be BEGINS_WITH"));
                }
                str_field(c, "ComparisonValue")?.unwrap_or("").to_owned()
            }
            _ => String::new(),
        };
        let all: Vec<&StreamMeta> = self
            .streams
            .values()
            .filter(|s| s.name.starts_with(&prefix))
            .collect();
        let page: Vec<Value> = all.iter().skip(start).take(max).map(|s| s.info()).collect();
        let mut out = json!({"StreamInfoList": page});
        if start + max < all.len() {
            out["NextToken"] = Value::from((start + max).to_string());
        }
        Ok(out)
    }

    fn delete(&mut self, req: &Value) -> Result<Value, ApiError> {
        let arn = str_field(req, "StreamARN")?
            .ok_or_else(|| ApiError::invalid("StreamARN is required"))?;
        let s = self.find(&json!({"StreamARN": arn}))?;
        Self::check_version(s, req, false)?;
        let name = s.name.clone();
        self.streams.remove(&name);
        Ok(json!({}))
    }

    fn update(&mut self, req: &Value) -> Result<Value, ApiError> {
        let version = self.new_version();
        let s = self.find_mut(req)?;
        Self::check_version(s, req, true)?;
        if let Some(d) = str_field(req, "DeviceName")? {
            s.device_name = Some(d.to_owned());
        }
        if let Some(m) = str_field(req, "MediaType")? {
            s.media_type = Some(m.to_owned());
        }
        s.version = version;
        Ok(json!({}))
    }

    fn retention(&mut self, req: &Value) -> Result<Value, ApiError> {
        let version = self.new_version();
        let s = self.find_mut(req)?;
        Self::check_version(s, req, true)?;
        let hours = req
            .get("DataRetentionChangeInHours")
            .and_then(Value::as_u64)
            .filter(|h| *h >= 1)
            .ok_or_else(|| ApiError::invalid("DataRetentionChangeInHours must be at least 1"))?
            as u32;
        let new = match str_field(req, "Operation")? {
            Some("INCREASE_DATA_RETENTION") => s
                .retention_hours
                .checked_add(hours)
                .filter(|h| *h <= MAX_RETENTION),
            Some("DECREASE_DATA_RETENTION") => s.retention_hours.checked_sub(hours),
            _ => {
                return Err(ApiError::invalid(
                    "Operation must be INCREASE_DATA_RETENTION or DECREASE_DATA_RETENTION",
                ))
            }
        };
        s.retention_hours =
            new.ok_or_else(|| ApiError::invalid("data retention would leave 0 to 87600 hours"))?;
        s.version = version;
        Ok(json!({}))
    }

    fn tag(&mut self, req: &Value) -> Result<Value, ApiError> {
        let tags = tag_map(req, "Tags")?
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ApiError::invalid("Tags is required"))?;
        valid_tags(&tags)?;
        let s = self.find_mut(req)?;
        let mut merged = s.tags.clone();
        merged.extend(tags);
        if merged.len() > MAX_TAGS {
            return Err(ApiError::new(
                ServiceException::TagsPerResourceExceededLimit,
                "more than 50 tags",
            ));
        }
        s.tags = merged;
        Ok(json!({}))
    }

    fn untag(&mut self, req: &Value) -> Result<Value, ApiError> {
        let keys: Vec<String> = req
            .get("TagKeyList")
            .and_then(Value::as_array)
            .filter(|a| !a.is_empty() && a.len() <= MAX_TAGS)
            .ok_or_else(|| ApiError::invalid("TagKeyList must hold 1 to 50 keys"))?
            .iter()
            .map(|k| {
                k.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| ApiError::invalid("tag keys must be strings"))
            })
            .collect::<Result<_, _>>()?;
        let s = self.find_mut(req)?;
        for k in keys {
            s.tags.remove(&k);
        }
        Ok(json!({}))
    }

    /// The registry as JSON (for `--data-dir`).
    pub fn to_json(&self) -> Value {
        let streams: Vec<Value> = self
            .streams
            .values()
            .map(|s| {
                json!({"name": s.name, "arn": s.arn, "device_name": s.device_name, "media_type": s.media_type,
                       "kms_key_id": s.kms_key_id, "version": s.version, "creation_time": s.creation_time,
                       "retention_hours": s.retention_hours, "tags": s.tags})
            })
            .collect();
        json!({"streams": streams})
    }

    /// Restores what [`Registry::to_json`] wrote.
    pub fn load_json(&mut self, v: &Value) -> Result<(), String> {
        for s in v["streams"].as_array().ok_or("no streams list")? {
            let text = |k: &str| s[k].as_str().map(str::to_owned);
            let name = text("name").ok_or("stream without a name")?;
            let meta = StreamMeta {
                name: name.clone(),
                arn: text("arn").ok_or("stream without an ARN")?,
                device_name: text("device_name"),
                media_type: text("media_type"),
                kms_key_id: text("kms_key_id").unwrap_or_default(),
                version: text("version").unwrap_or_default(),
                creation_time: s["creation_time"].as_f64().unwrap_or(0.0),
                retention_hours: s["retention_hours"].as_u64().unwrap_or(0) as u32,
                tags: s["tags"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                            .collect()
                    })
                    .unwrap_or_default(),
            };
            self.streams.insert(name, meta);
        }
        Ok(())
    }

    /// Every stream, for inspection.
    pub fn streams(&self) -> HashMap<String, StreamMeta> {
        self.streams
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}
