//! Log segments: files of back-to-back records, named by their first op, and the scan that
//! validates one during recovery.
//!
//! File `log-<first op, 20 digits>`: records (see [`crate::record`]) with no padding. A segment
//! is never larger than `WalConfig::segment_bytes_max`; a new one is started (after syncing
//! the previous one) when the next record would not fit.

use allocdb_core::Op;

use crate::checksum::Checksum;
use crate::record::{RECORD_HEADER_SIZE, RecordHeader};

const NAME_PREFIX: &str = "log-";

/// The file name of the segment whose first record is `first_op`.
pub fn segment_file_name(first_op: Op) -> String {
    format!("{NAME_PREFIX}{first_op:020}")
}

/// The first op of a segment file name, or `None` for any other name.
pub fn parse_segment_file_name(name: &str) -> Option<Op> {
    let digits = name.strip_prefix(NAME_PREFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Where a scan stopped before the end of the bytes, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScanFailure {
    /// Byte offset of the record that failed.
    pub offset: u64,
    /// The op expected there.
    pub op: Op,
    /// What failed.
    pub reason: &'static str,
    /// True when the record itself is intact but does not follow its predecessor: that is
    /// never a torn write.
    pub out_of_sequence: bool,
}

/// The result of scanning one segment.
#[derive(Debug, Default)]
pub struct Scan {
    /// Valid records in order, with their offsets.
    pub records: Vec<(RecordHeader, u64)>,
    /// Set when a record failed before the end of the bytes.
    pub failure: Option<ScanFailure>,
}

/// What a scan checks each record against.
#[derive(Clone, Copy, Debug)]
pub struct ScanContext {
    /// The cluster every record must carry.
    pub cluster_id: u128,
    /// The largest body allowed.
    pub body_bytes_max: u32,
    /// The op of the first record.
    pub first_op: Op,
    /// The checksum the first record's parent must equal, when known.
    pub parent: Option<Checksum>,
}

/// Validates the record starting at `offset`: header, cluster, length bound, body.
///
/// # Errors
/// What failed.
pub fn parse_record(
    bytes: &[u8],
    offset: usize,
    cluster_id: u128,
    body_bytes_max: u32,
) -> Result<RecordHeader, &'static str> {
    let rest = &bytes[offset.min(bytes.len())..];
    let header = RecordHeader::decode(rest)?;
    if header.cluster_id != cluster_id {
        return Err("cluster id differs");
    }
    if header.body_len > body_bytes_max {
        return Err("body length above the limit");
    }
    let body_start = RECORD_HEADER_SIZE as usize;
    let body_end = body_start + header.body_len as usize;
    if rest.len() < body_end {
        return Err("body truncated");
    }
    if !header.matches_body(&rest[body_start..body_end]) {
        return Err("body checksum mismatch");
    }
    Ok(header)
}

/// Scans `bytes` (a whole segment) record by record, checking the op sequence and the chain.
pub fn scan_segment(bytes: &[u8], context: ScanContext) -> Scan {
    let mut scan = Scan::default();
    let mut offset = 0_usize;
    let mut op = context.first_op;
    let mut parent = context.parent;
    // Bounded: every iteration consumes at least a header's worth of bytes or stops.
    while offset < bytes.len() {
        let failure = |reason, out_of_sequence| ScanFailure {
            offset: offset as u64,
            op,
            reason,
            out_of_sequence,
        };
        let header = match parse_record(bytes, offset, context.cluster_id, context.body_bytes_max) {
            Ok(header) => header,
            Err(reason) => {
                scan.failure = Some(failure(reason, false));
                break;
            }
        };
        if header.op != op {
            scan.failure = Some(failure("op out of sequence", true));
            break;
        }
        if parent.is_some_and(|parent| parent != header.parent) {
            scan.failure = Some(failure("parent checksum breaks the hash chain", true));
            break;
        }
        scan.records.push((header, offset as u64));
        offset += usize::try_from(header.record_len()).expect("bounded by the segment length");
        op += 1;
        parent = Some(header.checksum);
    }
    debug_assert!(scan.failure.is_some() || offset == bytes.len());
    scan
}

/// True when some valid record (of this cluster) starts after `offset`: evidence that a
/// failure at `offset` is damage inside the log, not a torn tail.
pub fn valid_record_after(
    bytes: &[u8],
    offset: u64,
    cluster_id: u128,
    body_bytes_max: u32,
) -> bool {
    let magic = b"ADBR";
    let start = usize::try_from(offset).map_or(bytes.len(), |offset| offset + 1);
    let header_size = RECORD_HEADER_SIZE as usize;
    (start..bytes.len().saturating_sub(header_size - 1)).any(|candidate| {
        bytes[candidate..].starts_with(magic)
            && parse_record(bytes, candidate, cluster_id, body_bytes_max).is_ok()
    })
}

/// What the headers of a segment tell about the last op it held, reading past records whose
/// header is intact but whose body is damaged (the header's own crc32c vouches for its
/// length, op and checksum).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegmentHead {
    /// No complete record.
    Empty,
    /// The last complete record (op, chain checksum). A damaged record after it with nothing
    /// valid beyond is a torn tail: never synced, so never acknowledged.
    Head(Op, Checksum),
    /// A damaged header with valid records after it hides how much the segment held.
    Unknown,
}

/// The head of the log `bytes` once held (see [`SegmentHead`]).
pub fn head_past_damage(bytes: &[u8], cluster_id: u128, body_bytes_max: u32) -> SegmentHead {
    let mut head = SegmentHead::Empty;
    let mut offset = 0_usize;
    while offset < bytes.len() {
        let header = match RecordHeader::decode(&bytes[offset..]) {
            Ok(header) if header.cluster_id == cluster_id && header.body_len <= body_bytes_max => {
                header
            }
            _ if valid_record_after(bytes, offset as u64, cluster_id, body_bytes_max) => {
                return SegmentHead::Unknown;
            }
            _ => return head,
        };
        if let SegmentHead::Head(op, _) = head {
            if header.op != op + 1 {
                return SegmentHead::Unknown;
            }
        }
        let end = offset + usize::try_from(header.record_len()).expect("bounded by body_bytes_max");
        if end > bytes.len() {
            return head;
        }
        let body = &bytes[offset + RECORD_HEADER_SIZE as usize..end];
        let later_valid = || valid_record_after(bytes, offset as u64, cluster_id, body_bytes_max);
        if header.matches_body(body) || later_valid() {
            head = SegmentHead::Head(header.op, header.checksum);
        } else {
            // A damaged body with nothing valid after it: a torn tail.
            return head;
        }
        offset = end;
    }
    head
}

#[cfg(test)]
mod tests {
    use super::valid_record_after;
    use super::{ScanContext, parse_segment_file_name, scan_segment, segment_file_name};
    use crate::checksum::root_checksum;
    use crate::record::RecordHeader;

    fn log(ops: u64) -> Vec<u8> {
        let mut bytes = Vec::new();
        let mut parent = root_checksum(1);
        for op in 1..=ops {
            let body = vec![u8::try_from(op).unwrap(); 10];
            let header = RecordHeader::new(1, 0, op, op, parent, &body);
            header.encode(&mut bytes);
            bytes.extend_from_slice(&body);
            parent = header.checksum;
        }
        bytes
    }

    #[test]
    fn the_head_is_read_past_a_damaged_body_but_not_past_a_damaged_header() {
        use super::{SegmentHead, head_past_damage};
        let bytes = log(3);
        let record = bytes.len() / 3;
        let last = RecordHeader::decode(&bytes[2 * record..]).unwrap();
        let head = SegmentHead::Head(3, last.checksum);
        assert_eq!(head_past_damage(&bytes, 1, 100), head);
        assert_eq!(head_past_damage(&[], 1, 100), SegmentHead::Empty);
        // A rotted body of record 2: its header still tells op and length.
        let mut body_rot = bytes.clone();
        body_rot[record + 100] ^= 1;
        assert_eq!(head_past_damage(&body_rot, 1, 100), head);
        // A rotted header of record 2, a valid record after it: unknown.
        let mut header_rot = bytes.clone();
        header_rot[record + 40] ^= 1;
        assert_eq!(head_past_damage(&header_rot, 1, 100), SegmentHead::Unknown);
        // A torn last record (half written): the head is the record before it.
        let torn = &bytes[..bytes.len() - 4];
        let second = RecordHeader::decode(&bytes[record..]).unwrap();
        assert_eq!(
            head_past_damage(torn, 1, 100),
            SegmentHead::Head(2, second.checksum)
        );
    }

    #[test]
    fn names_round_trip() {
        assert_eq!(parse_segment_file_name(&segment_file_name(9)), Some(9));
        assert_eq!(parse_segment_file_name("log-9"), None);
        assert_eq!(parse_segment_file_name("superblock"), None);
    }

    #[test]
    fn scan_checks_sequence_and_chain() {
        let bytes = log(3);
        let context = ScanContext {
            cluster_id: 1,
            body_bytes_max: 100,
            first_op: 1,
            parent: Some(root_checksum(1)),
        };
        let scan = scan_segment(&bytes, context);
        assert_eq!(scan.records.len(), 3);
        assert!(scan.failure.is_none());
        let wrong_first = scan_segment(
            &bytes,
            ScanContext {
                first_op: 2,
                ..context
            },
        );
        assert!(wrong_first.failure.unwrap().out_of_sequence);
        let wrong_parent = scan_segment(
            &bytes,
            ScanContext {
                parent: Some(5),
                ..context
            },
        );
        assert!(wrong_parent.failure.unwrap().out_of_sequence);
        let small_limit = scan_segment(
            &bytes,
            ScanContext {
                body_bytes_max: 9,
                ..context
            },
        );
        assert_eq!(
            small_limit.failure.unwrap().reason,
            "body length above the limit"
        );
        assert!(valid_record_after(&bytes, 0, 1, 100));
        assert!(!valid_record_after(&bytes, 2 * 106, 1, 100));
        assert!(!valid_record_after(&bytes, 0, 2, 100));
    }
}
