//! Errors of the streaming Matroska parser.

use super::ids;

/// Why the parser stopped. Every variant names the stream offset it refers to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The input does not start with an EBML header or a Segment.
    #[error("not Matroska: byte {offset} holds element ID {id:#x}, not an EBML header")]
    NotMatroska {
        /// Offset of the first element.
        offset: u64,
        /// The ID found there.
        id: u32,
    },
    /// An element ID whose first byte is zero or that is wider than 4 bytes.
    #[error("malformed element ID at byte {offset}")]
    BadId {
        /// Offset of the element.
        offset: u64,
    },
    /// A size field whose first byte is zero.
    #[error("malformed element size at byte {offset}")]
    BadSize {
        /// Offset of the element.
        offset: u64,
    },
    /// An element larger than the configured limit for its kind.
    #[error("{} (ID {id:#x}) at byte {offset} declares {size} bytes, over the {limit}-byte limit", ids::name(*id))]
    TooLarge {
        /// Offset of the element.
        offset: u64,
        /// Its ID.
        id: u32,
        /// Its declared size.
        size: u64,
        /// The limit in force.
        limit: u64,
    },
    /// Unknown size on an element that must have a known size.
    #[error("{} (ID {id:#x}) at byte {offset} has unknown size; only Segment and Cluster may", ids::name(*id))]
    UnknownSizeNotAllowed {
        /// Offset of the element.
        offset: u64,
        /// Its ID.
        id: u32,
    },
    /// A child that ends after its parent does.
    #[error("{} (ID {id:#x}) at byte {offset} ends at byte {end}, past its parent's end at byte {parent_end}", ids::name(*id))]
    OverflowsParent {
        /// Offset of the child.
        offset: u64,
        /// Its ID.
        id: u32,
        /// Where the child would end.
        end: u64,
        /// Where the parent ends.
        parent_end: u64,
    },
    /// Nesting deeper than the configured limit.
    #[error("elements nested deeper than {limit} levels at byte {offset}")]
    TooDeep {
        /// Offset of the element that went too deep.
        offset: u64,
        /// The limit in force.
        limit: usize,
    },
    /// More tags or tracks than the configured limit.
    #[error("more than {limit} {what} in the element at byte {offset}")]
    TooMany {
        /// Offset of the containing element.
        offset: u64,
        /// What was counted.
        what: &'static str,
        /// The limit in force.
        limit: usize,
    },
    /// A Block or SimpleBlock whose header or lacing does not fit its body.
    #[error("bad block at byte {offset}: {reason}")]
    BadBlock {
        /// Offset of the block element.
        offset: u64,
        /// What was wrong.
        reason: &'static str,
    },
    /// A value element with an impossible body (an integer over 8 bytes…).
    #[error("bad {what} at byte {offset}")]
    BadValue {
        /// Offset of the element.
        offset: u64,
        /// Which value.
        what: &'static str,
    },
    /// An element the schema does not allow here (strict mode only).
    #[error("unexpected element ID {id:#x} at byte {offset} inside {}", ids::name(*parent))]
    Unexpected {
        /// Offset of the element.
        offset: u64,
        /// Its ID.
        id: u32,
        /// The ID of the element it sits in (0 at top level).
        parent: u32,
    },
    /// A CRC-32 element that does not match its parent's data (strict mode only).
    #[error("CRC-32 mismatch in {} at byte {offset}", ids::name(*id))]
    CrcMismatch {
        /// Offset of the checked element.
        offset: u64,
        /// Its ID.
        id: u32,
    },
    /// The input ended inside an element. Everything before it was delivered.
    #[error("truncated at byte {offset}: {} (ID {id:#x}) needs {needed} bytes, {available} present", ids::name(*id))]
    Truncated {
        /// Offset of the element the input ended in.
        offset: u64,
        /// Its ID (0 when the input ended inside an element header).
        id: u32,
        /// Bytes of that element's body needed.
        needed: u64,
        /// Bytes of it present.
        available: u64,
    },
}

impl ParseError {
    /// The stream offset the error refers to.
    pub fn offset(&self) -> u64 {
        match *self {
            Self::NotMatroska { offset, .. }
            | Self::BadId { offset }
            | Self::BadSize { offset }
            | Self::TooLarge { offset, .. }
            | Self::UnknownSizeNotAllowed { offset, .. }
            | Self::OverflowsParent { offset, .. }
            | Self::TooDeep { offset, .. }
            | Self::TooMany { offset, .. }
            | Self::BadBlock { offset, .. }
            | Self::BadValue { offset, .. }
            | Self::Unexpected { offset, .. }
            | Self::CrcMismatch { offset, .. }
            | Self::Truncated { offset, .. } => offset,
        }
    }

    /// True for [`ParseError::Truncated`]: the bytes so far were fine but ended early.
    pub fn is_truncated(&self) -> bool {
        matches!(self, Self::Truncated { .. })
    }
}
