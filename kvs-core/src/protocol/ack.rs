//! PutMedia acknowledgements: the JSON objects the service streams back on
//! the PutMedia response, one per fragment event.
//!
//! [`AckDecoder`] is a push decoder: feed response-body bytes in any
//! chunking, take ACKs out. It splits the stream into top-level JSON objects
//! itself (string- and escape-aware brace matching), so it does not care
//! whether ACKs arrive one per chunk, several per chunk or cut across chunks,
//! and it skips the whitespace and newlines the service uses as separators
//! and keep-alives. Each object is then decoded with `serde_json`.

use serde_json::Value;

use super::errors::ServiceErrorCode;

/// One acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ack {
    /// The service started receiving the fragment.
    Buffering {
        /// The fragment's cluster timecode as sent.
        fragment_timecode: u64,
        /// The service's fragment number.
        fragment_number: String,
    },
    /// The service received the whole fragment.
    Received {
        /// The fragment's cluster timecode as sent.
        fragment_timecode: u64,
        /// The service's fragment number.
        fragment_number: String,
    },
    /// The fragment is stored durably (streams with retention > 0).
    Persisted {
        /// The fragment's cluster timecode as sent.
        fragment_timecode: u64,
        /// The service's fragment number.
        fragment_number: String,
    },
    /// The service rejected the fragment (or the session) and ends the session.
    Error {
        /// The fragment's cluster timecode, when the service names it.
        fragment_timecode: Option<u64>,
        /// The fragment number, when the service names it.
        fragment_number: Option<String>,
        /// The numeric error.
        code: ServiceErrorCode,
        /// The symbolic error as sent, if any.
        error_code: Option<String>,
    },
    /// Keep-alive while no data flows.
    Idle,
    /// An event type this version does not know (kept so a newer service
    /// does not break the session).
    Other {
        /// The `EventType` value.
        event_type: String,
    },
}

impl Ack {
    /// The compact JSON line the service sends for this ACK (keys in the
    /// service's order, `\n` terminated).
    pub fn to_json_line(&self) -> String {
        let ok = |t: &str, tc: &u64, n: &str| {
            format!(
                "{{\"EventType\":\"{t}\",\"FragmentTimecode\":{tc},\"FragmentNumber\":{}}}\n",
                Value::from(n)
            )
        };
        match self {
            Self::Buffering {
                fragment_timecode,
                fragment_number,
            } => ok("BUFFERING", fragment_timecode, fragment_number),
            Self::Received {
                fragment_timecode,
                fragment_number,
            } => ok("RECEIVED", fragment_timecode, fragment_number),
            Self::Persisted {
                fragment_timecode,
                fragment_number,
            } => ok("PERSISTED", fragment_timecode, fragment_number),
            Self::Error {
                fragment_timecode,
                fragment_number,
                code,
                error_code,
            } => {
                let mut s = String::from("{\"EventType\":\"ERROR\"");
                if let Some(tc) = fragment_timecode {
                    s.push_str(&format!(",\"FragmentTimecode\":{tc}"));
                }
                if let Some(n) = fragment_number {
                    s.push_str(&format!(",\"FragmentNumber\":{}", Value::from(n.as_str())));
                }
                s.push_str(&format!(",\"ErrorId\":{}", code.id()));
                if let Some(c) = error_code.as_deref().or(code.name()) {
                    s.push_str(&format!(",\"ErrorCode\":{}", Value::from(c)));
                }
                s.push_str("}\n");
                s
            }
            Self::Idle => "{\"EventType\":\"IDLE\"}\n".to_owned(),
            Self::Other { event_type } => {
                format!("{{\"EventType\":{}}}\n", Value::from(event_type.as_str()))
            }
        }
    }
}

/// Why the ACK stream could not be decoded. Offsets count response-body bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AckError {
    /// A byte outside any JSON object that is not whitespace (an HTML error
    /// page, a proxy's banner …).
    #[error("unexpected byte {byte:#04x} at byte {offset} of the ACK stream (not a JSON object)")]
    Garbage {
        /// Offset of the byte.
        offset: u64,
        /// The byte.
        byte: u8,
    },
    /// An object longer than the configured limit.
    #[error("ACK at byte {offset} is longer than {limit} bytes")]
    TooLong {
        /// Offset of the object's `{`.
        offset: u64,
        /// The limit in force.
        limit: usize,
    },
    /// An object that is not valid JSON or lacks what an ACK needs.
    #[error("malformed ACK at byte {offset}: {reason}")]
    Malformed {
        /// Offset of the object's `{`.
        offset: u64,
        /// What was wrong.
        reason: String,
    },
    /// The body ended inside an object.
    #[error("ACK stream ended inside the object at byte {offset}")]
    Truncated {
        /// Offset of the object's `{`.
        offset: u64,
    },
}

impl AckError {
    /// The offset in the response body the error refers to.
    pub fn offset(&self) -> u64 {
        match self {
            Self::Garbage { offset, .. }
            | Self::TooLong { offset, .. }
            | Self::Malformed { offset, .. }
            | Self::Truncated { offset } => *offset,
        }
    }
}

/// Push decoder for the PutMedia response body.
#[derive(Debug)]
pub struct AckDecoder {
    buf: Vec<u8>,
    /// Scan position within `buf`.
    pos: usize,
    /// Stream offset of `buf[0]`.
    base: u64,
    depth: u32,
    in_string: bool,
    escaped: bool,
    /// Start of the object being scanned, within `buf`.
    start: Option<usize>,
    max_len: usize,
    failed: Option<AckError>,
}

impl Default for AckDecoder {
    fn default() -> Self {
        Self::new(4096)
    }
}

impl AckDecoder {
    /// A decoder that refuses ACK objects longer than `max_len` bytes (the
    /// service's are under 300; the AWS producers allow 1024).
    pub fn new(max_len: usize) -> Self {
        Self {
            buf: Vec::new(),
            pos: 0,
            base: 0,
            depth: 0,
            in_string: false,
            escaped: false,
            start: None,
            max_len,
            failed: None,
        }
    }

    /// Feeds response-body bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next ACK, `None` when more bytes are needed. After an error every
    /// call returns it again.
    pub fn next_ack(&mut self) -> Option<Result<Ack, AckError>> {
        if let Some(e) = &self.failed {
            return Some(Err(e.clone()));
        }
        let r = self.scan();
        if let Some(Err(e)) = &r {
            self.failed = Some(e.clone());
        }
        r
    }

    /// Declares the end of the body: an object cut short is an error.
    pub fn finish(&mut self) -> Result<(), AckError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        match self.start {
            Some(s) => {
                let e = AckError::Truncated {
                    offset: self.base + s as u64,
                };
                self.failed = Some(e.clone());
                Err(e)
            }
            None => Ok(()),
        }
    }

    fn scan(&mut self) -> Option<Result<Ack, AckError>> {
        while self.pos < self.buf.len() {
            let b = self.buf[self.pos];
            let at = self.pos;
            self.pos += 1;
            match self.start {
                None => match b {
                    b'{' => {
                        self.start = Some(at);
                        self.depth = 1;
                    }
                    b' ' | b'\t' | b'\r' | b'\n' | 0 => {}
                    _ => {
                        return Some(Err(AckError::Garbage {
                            offset: self.base + at as u64,
                            byte: b,
                        }))
                    }
                },
                Some(start) => {
                    if self.pos - start > self.max_len {
                        return Some(Err(AckError::TooLong {
                            offset: self.base + start as u64,
                            limit: self.max_len,
                        }));
                    }
                    if self.in_string {
                        if self.escaped {
                            self.escaped = false;
                        } else if b == b'\\' {
                            self.escaped = true;
                        } else if b == b'"' {
                            self.in_string = false;
                        }
                        continue;
                    }
                    match b {
                        b'"' => self.in_string = true,
                        b'{' | b'[' => self.depth += 1,
                        b'}' | b']' => {
                            self.depth -= 1;
                            if self.depth == 0 {
                                let offset = self.base + start as u64;
                                let ack = decode(&self.buf[start..self.pos], offset);
                                self.start = None;
                                self.compact();
                                return Some(ack);
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        if self.start.is_none() {
            self.compact();
        }
        None
    }

    /// Drops consumed bytes so the buffer holds at most one partial ACK.
    fn compact(&mut self) {
        let keep_from = self.start.unwrap_or(self.pos);
        if keep_from > 0 {
            self.buf.drain(..keep_from);
            self.base += keep_from as u64;
            self.pos -= keep_from;
            if let Some(s) = self.start.as_mut() {
                *s -= keep_from;
            }
        }
    }
}

fn decode(obj: &[u8], offset: u64) -> Result<Ack, AckError> {
    let bad = |reason: String| AckError::Malformed { offset, reason };
    let v: Value = serde_json::from_slice(obj).map_err(|e| bad(e.to_string()))?;
    let event = v
        .get("EventType")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("no EventType".into()))?;
    let timecode = match v.get("FragmentTimecode") {
        None | Some(Value::Null) => None,
        Some(t) => Some(
            t.as_u64()
                .ok_or_else(|| bad(format!("FragmentTimecode {t} is not an unsigned integer")))?,
        ),
    };
    let number = match v.get("FragmentNumber") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            Some(s.clone())
        }
        Some(Value::Number(n)) if n.is_u64() => Some(n.to_string()),
        Some(n) => return Err(bad(format!("FragmentNumber {n} is not a decimal number"))),
    };
    let ok = |name: &str| -> Result<(u64, String), AckError> {
        Ok((
            timecode.ok_or_else(|| bad(format!("{name} without FragmentTimecode")))?,
            number
                .clone()
                .ok_or_else(|| bad(format!("{name} without FragmentNumber")))?,
        ))
    };
    Ok(match event {
        "BUFFERING" => {
            let (fragment_timecode, fragment_number) = ok(event)?;
            Ack::Buffering {
                fragment_timecode,
                fragment_number,
            }
        }
        "RECEIVED" => {
            let (fragment_timecode, fragment_number) = ok(event)?;
            Ack::Received {
                fragment_timecode,
                fragment_number,
            }
        }
        "PERSISTED" => {
            let (fragment_timecode, fragment_number) = ok(event)?;
            Ack::Persisted {
                fragment_timecode,
                fragment_number,
            }
        }
        "ERROR" => {
            let error_code = v
                .get("ErrorCode")
                .and_then(Value::as_str)
                .map(str::to_owned);
            let id = v
                .get("ErrorId")
                .and_then(Value::as_u64)
                .and_then(|n| u32::try_from(n).ok());
            let code = match (
                id,
                error_code.as_deref().and_then(ServiceErrorCode::from_name),
            ) {
                (Some(n), _) => ServiceErrorCode::from_id(n),
                (None, Some(c)) => c,
                (None, None) => {
                    return Err(bad("ERROR without a usable ErrorId or ErrorCode".into()))
                }
            };
            Ack::Error {
                fragment_timecode: timecode,
                fragment_number: number,
                code,
                error_code,
            }
        }
        "IDLE" => Ack::Idle,
        other => Ack::Other {
            event_type: other.to_owned(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn all(data: &[u8]) -> Vec<Result<Ack, AckError>> {
        let mut d = AckDecoder::default();
        d.push(data);
        let mut out = Vec::new();
        while let Some(a) = d.next_ack() {
            let stop = a.is_err();
            out.push(a);
            if stop {
                break;
            }
        }
        out
    }

    #[test]
    fn observed_wire_acks() {
        let wire = concat!(
            "{\"EventType\":\"BUFFERING\",\"FragmentTimecode\":1677613819540,\"FragmentNumber\":\"91343852333182006801812051225829315333083406205\"}\n",
            "\n  \r\n",
            "{\"EventType\":\"RECEIVED\",\"FragmentTimecode\":1724246973453,\"FragmentNumber\":\"91343852333185793492032379873796542235411021491\"}",
            "{\"EventType\":\"PERSISTED\",\"FragmentTimecode\":1678912146652,\"FragmentNumber\":\"91343852333181432407537343124013320836967052581\"}\n",
            "{\"EventType\":\"ERROR\",\"FragmentTimecode\":1677613819540,\"FragmentNumber\":\"9134385233318\",\"ErrorId\":4002,\"ErrorCode\":\"MAX_FRAGMENT_DURATION_REACHED\"}\n",
            "{\"EventType\":\"IDLE\"}\n",
            "{\"EventType\":\"FUTURE\",\"Extra\":{\"a\":[1,\"}\"]}}\n",
        );
        let acks: Vec<Ack> = all(wire.as_bytes())
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(acks.len(), 6);
        assert_eq!(
            acks[0],
            Ack::Buffering {
                fragment_timecode: 1_677_613_819_540,
                fragment_number: "91343852333182006801812051225829315333083406205".into()
            }
        );
        match &acks[3] {
            Ack::Error {
                code,
                fragment_timecode: Some(1_677_613_819_540),
                ..
            } => {
                assert_eq!(*code, ServiceErrorCode::MaxFragmentDurationReached);
                assert!(!code.is_retryable());
            }
            a => panic!("{a:?}"),
        }
        assert_eq!(acks[4], Ack::Idle);
        assert_eq!(
            acks[5],
            Ack::Other {
                event_type: "FUTURE".into()
            }
        );
    }

    #[test]
    fn bad_streams_get_typed_errors() {
        assert_eq!(
            all(b"<html>503</html>")[0],
            Err(AckError::Garbage {
                offset: 0,
                byte: b'<'
            })
        );
        assert!(matches!(
            all(b"\n{\"EventType\":\"RECEIVED\"}")[0],
            Err(AckError::Malformed { offset: 1, .. })
        ));
        assert!(matches!(
            all(b"{\"EventType\":}")[0],
            Err(AckError::Malformed { .. })
        ));
        assert!(matches!(
            all(b"{\"NoType\":1}")[0],
            Err(AckError::Malformed { .. })
        ));
        assert!(matches!(
            all(b"{\"EventType\":\"ERROR\"}")[0],
            Err(AckError::Malformed { .. })
        ));
        let long = format!("{{\"EventType\":\"IDLE\",\"x\":\"{}\"}}", "a".repeat(5000));
        assert_eq!(
            all(long.as_bytes())[0],
            Err(AckError::TooLong {
                offset: 0,
                limit: 4096
            })
        );
        let mut d = AckDecoder::default();
        d.push(b"{\"EventType\":\"IDL");
        assert!(d.next_ack().is_none());
        assert_eq!(d.finish(), Err(AckError::Truncated { offset: 0 }));
    }

    fn ack_strategy() -> impl Strategy<Value = Ack> {
        let num = "[1-9][0-9]{0,46}";
        prop_oneof![
            (any::<u64>(), num).prop_map(|(t, n)| Ack::Buffering {
                fragment_timecode: t,
                fragment_number: n
            }),
            (any::<u64>(), num).prop_map(|(t, n)| Ack::Received {
                fragment_timecode: t,
                fragment_number: n
            }),
            (any::<u64>(), num).prop_map(|(t, n)| Ack::Persisted {
                fragment_timecode: t,
                fragment_number: n
            }),
            (
                proptest::option::of(any::<u64>()),
                proptest::option::of(num),
                3000u32..6000
            )
                .prop_map(|(t, n, id)| {
                    let code = ServiceErrorCode::from_id(id);
                    Ack::Error {
                        fragment_timecode: t,
                        fragment_number: n,
                        code,
                        error_code: code.name().map(str::to_owned),
                    }
                }),
            Just(Ack::Idle),
        ]
    }

    proptest! {
        #[test]
        fn encode_then_decode_at_any_split(acks in prop::collection::vec(ack_strategy(), 0..20), cuts in prop::collection::vec(any::<usize>(), 0..30), ws in "[ \r\n]{0,3}") {
            let wire: String = acks.iter().map(|a| format!("{}{ws}", a.to_json_line())).collect();
            let bytes = wire.as_bytes();
            let mut ends: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
            ends.sort_unstable();
            ends.push(bytes.len());
            let mut d = AckDecoder::new(1024);
            let mut got = Vec::new();
            let mut start = 0;
            for e in ends {
                d.push(&bytes[start..e]);
                start = e;
                while let Some(a) = d.next_ack() {
                    got.push(a.unwrap());
                }
            }
            prop_assert!(d.finish().is_ok());
            prop_assert_eq!(got, acks);
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..512)) {
            let mut d = AckDecoder::new(256);
            d.push(&data);
            for _ in 0..64 {
                if d.next_ack().is_none() { break; }
            }
            let _ = d.finish();
        }
    }
}
