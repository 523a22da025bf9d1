//! Faults the endpoint injects, for tests of clients under failure.

/// Faults the endpoint injects, for tests of clients under failure.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    /// Cut every PutMedia, GetMedia and GetMediaForFragmentList connection
    /// after this many body bytes (request bytes for PutMedia, response
    /// bytes for the others).
    pub drop_after_bytes: Option<u64>,
    /// Answer the K-th fragment received by the endpoint (counted over all
    /// connections, from 1) with an ERROR ACK of this code instead of
    /// RECEIVED; that fragment is not stored and the session ends.
    pub error_ack: Option<(crate::protocol::ServiceErrorCode, u64)>,
    /// Wait this long before sending each ACK.
    pub ack_delay: std::time::Duration,
    /// Answer this fraction of control-plane calls with the service's
    /// throttling error (`ClientLimitExceededException`).
    pub throttle: f64,
    /// Cut the k-th PutMedia connection (from 0, counted since the endpoint
    /// started) after `drop_schedule[k]` body bytes; later ones are not cut.
    pub drop_schedule: Vec<u64>,
    /// The first this many PutMedia connections get no ACKs at all (the
    /// fragments are stored).
    pub silent_connections: u64,
    /// Every GetMedia response stops after N fragments with the service's
    /// error chunk of this id (`AWS_KINESISVIDEO_ERROR_ID`, with its
    /// `ERROR_CODE` and the next fragment's number), as the service does
    /// when it cannot go on (GetMedia API reference): `(N, id)`.
    pub get_media_error: Option<(usize, u64)>,
}

impl Faults {
    /// Adds a fault from its `kvs local --fault` spelling:
    /// `drop-after-bytes=N`, `error-ack=CODE@K`, `ack-delay-ms=N`, `throttle=P`,
    /// `get-media-error=ID@N`.
    pub fn apply(&mut self, spec: &str) -> Result<(), String> {
        let (name, value) = spec
            .split_once('=')
            .ok_or_else(|| format!("fault {spec:?} is not NAME=VALUE"))?;
        let bad = || {
            let form = match name {
                "drop-after-bytes" => "drop-after-bytes=N (bytes)",
                "error-ack" => "error-ack=CODE@K (e.g. 4006@2: the 2nd fragment gets ERROR 4006)",
                "ack-delay-ms" => "ack-delay-ms=N (milliseconds)",
                "get-media-error" => "get-media-error=ID@N (e.g. 4500@2: GetMedia stops after 2 fragments with error 4500)",
                _ => "throttle=P (a fraction, 0 to 1)",
            };
            format!("bad value in fault {spec:?}; expected {form}")
        };
        match name {
            "drop-after-bytes" => self.drop_after_bytes = Some(value.parse().map_err(|_| bad())?),
            "error-ack" => {
                let (code, k) = value.split_once('@').ok_or_else(bad)?;
                let k: u64 = k.parse().map_err(|_| bad())?;
                if k == 0 {
                    return Err(bad());
                }
                self.error_ack = Some((crate::protocol::ServiceErrorCode::from_id(code.parse().map_err(|_| bad())?), k));
            }
            "get-media-error" => {
                let (id, n) = value.split_once('@').ok_or_else(bad)?;
                self.get_media_error = Some((n.parse().map_err(|_| bad())?, id.parse().map_err(|_| bad())?));
            }
            "ack-delay-ms" => self.ack_delay = std::time::Duration::from_millis(value.parse().map_err(|_| bad())?),
            "throttle" => {
                let p: f64 = value.parse().map_err(|_| bad())?;
                if !(0.0..=1.0).contains(&p) {
                    return Err(bad());
                }
                self.throttle = p;
            }
            _ => return Err(format!("unknown fault {name:?} (known: drop-after-bytes, error-ack, ack-delay-ms, throttle, get-media-error)")),
        }
        Ok(())
    }
}
