//! One result code per operating condition. Programmer errors are assertions, not codes.

/// The outcome class of a command or query. Exactly one code per condition, so a client can
/// react precisely. The numeric values are part of the wire and log formats: never reuse one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum ResultCode {
    /// The command took effect (or the query found its target).
    Ok = 0,
    /// `create_resource` for an id that already exists.
    AlreadyExists = 1,
    /// No free row in the resource table.
    ResourceTableFull = 2,
    /// The named resource does not exist.
    ResourceNotFound = 3,
    /// A named resource is held by a live lease.
    ResourceBusy = 4,
    /// The named pool does not exist (no resource was ever created in it).
    PoolNotFound = 5,
    /// The pool has fewer free members than requested.
    PoolExhausted = 6,
    /// No free row in the pool table.
    PoolTableFull = 7,
    /// A bundle (or `reserve_any` count) is empty or larger than `bundle_size_max`.
    BundleTooLarge = 8,
    /// A bundle names the same resource twice.
    BundleDuplicateResource = 9,
    /// A TTL is zero or larger than `ttl_slots_max`.
    TtlOutOfRange = 10,
    /// No free row in the lease table.
    LeaseTableFull = 11,
    /// No free row in the lease-member table.
    MemberTableFull = 12,
    /// No lease with this id is known, and the id is not one the cluster could have issued
    /// and since forgotten (see `LeaseRetired`).
    LeaseNotFound = 13,
    /// The lease existed but has left the lease history; its outcome is no longer queryable.
    LeaseRetired = 14,
    /// No longer returned: a full operation table retires its oldest application key instead
    /// (a later retry of that key is answered `operation_expired`). Kept so the value is never
    /// reused.
    OperationTableFull = 15,
    /// The operation id was already used, inside the dedupe window, for a different command.
    OperationConflict = 16,
    /// The lease is not in a state that allows this command.
    InvalidState = 17,
    /// The holder does not match the lease's holder.
    HolderMismatch = 18,
    /// The epoch does not match the lease's current epoch (the caller was fenced off).
    StaleEpoch = 19,
    /// `slot + ttl` does not fit in a slot.
    SlotOverflow = 20,
    /// The operation id cannot be used for this command: 0 on a client write (0 is reserved
    /// for internal commands and `register_session`), a non-zero id on `register_session` or
    /// `expire`, a session key with request number 0, or an application key that claims an op
    /// the cluster has not reached.
    InvalidOperationId = 21,
    /// A holder command (`activate`, `renew`, `release`) names a live lease whose deadline
    /// has passed: the lease is due to expire and is never extended or ended by its holder.
    LeaseExpired = 22,
    /// The write's session is no longer kept (the least recently used session was evicted to
    /// make room for a new one, or the id was never registered): nothing was executed now.
    /// The client registers again; its unanswered writes of that session are indefinite.
    SessionEvicted = 23,
    /// The write's request number is older than every answer its session keeps: it was
    /// answered before (or given up by its client) and is never executed again.
    RequestStale = 24,
    /// An application key older than every key the cluster still remembers, and not among
    /// them: nothing was executed now, and whether a first submission executed must be read
    /// from the state. Keys made by the client library after the retry window began are never
    /// refused this way.
    OperationExpired = 25,
}

impl ResultCode {
    /// Every code, in numeric order.
    pub const ALL: [ResultCode; 26] = [
        ResultCode::Ok,
        ResultCode::AlreadyExists,
        ResultCode::ResourceTableFull,
        ResultCode::ResourceNotFound,
        ResultCode::ResourceBusy,
        ResultCode::PoolNotFound,
        ResultCode::PoolExhausted,
        ResultCode::PoolTableFull,
        ResultCode::BundleTooLarge,
        ResultCode::BundleDuplicateResource,
        ResultCode::TtlOutOfRange,
        ResultCode::LeaseTableFull,
        ResultCode::MemberTableFull,
        ResultCode::LeaseNotFound,
        ResultCode::LeaseRetired,
        ResultCode::OperationTableFull,
        ResultCode::OperationConflict,
        ResultCode::InvalidState,
        ResultCode::HolderMismatch,
        ResultCode::StaleEpoch,
        ResultCode::SlotOverflow,
        ResultCode::InvalidOperationId,
        ResultCode::LeaseExpired,
        ResultCode::SessionEvicted,
        ResultCode::RequestStale,
        ResultCode::OperationExpired,
    ];

    /// The code's stable `snake_case` name, as printed by the CLI and used in the docs.
    pub fn name(self) -> &'static str {
        match self {
            ResultCode::Ok => "ok",
            ResultCode::AlreadyExists => "already_exists",
            ResultCode::ResourceTableFull => "resource_table_full",
            ResultCode::ResourceNotFound => "resource_not_found",
            ResultCode::ResourceBusy => "resource_busy",
            ResultCode::PoolNotFound => "pool_not_found",
            ResultCode::PoolExhausted => "pool_exhausted",
            ResultCode::PoolTableFull => "pool_table_full",
            ResultCode::BundleTooLarge => "bundle_too_large",
            ResultCode::BundleDuplicateResource => "bundle_duplicate_resource",
            ResultCode::TtlOutOfRange => "ttl_out_of_range",
            ResultCode::LeaseTableFull => "lease_table_full",
            ResultCode::MemberTableFull => "member_table_full",
            ResultCode::LeaseNotFound => "lease_not_found",
            ResultCode::LeaseRetired => "lease_retired",
            ResultCode::OperationTableFull => "operation_table_full",
            ResultCode::OperationConflict => "operation_conflict",
            ResultCode::InvalidState => "invalid_state",
            ResultCode::HolderMismatch => "holder_mismatch",
            ResultCode::StaleEpoch => "stale_epoch",
            ResultCode::SlotOverflow => "slot_overflow",
            ResultCode::InvalidOperationId => "invalid_operation_id",
            ResultCode::LeaseExpired => "lease_expired",
            ResultCode::SessionEvicted => "session_evicted",
            ResultCode::RequestStale => "request_stale",
            ResultCode::OperationExpired => "operation_expired",
        }
    }

    /// Whether the operation's key alone decided the answer: nothing ran now, and the answer
    /// says nothing about an earlier execution under the same key (`invalid_operation_id`,
    /// `operation_conflict`, `session_evicted`, `request_stale`, `operation_expired`). Every
    /// other code of a write is the outcome of one execution.
    pub fn is_key_refusal(self) -> bool {
        matches!(
            self,
            ResultCode::InvalidOperationId
                | ResultCode::OperationConflict
                | ResultCode::SessionEvicted
                | ResultCode::RequestStale
                | ResultCode::OperationExpired
        )
    }

    /// Decodes a code from its numeric value; `None` for a value no code uses.
    pub fn from_u8(value: u8) -> Option<ResultCode> {
        ResultCode::ALL.get(usize::from(value)).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::ResultCode;

    #[test]
    fn numeric_values_round_trip_and_names_are_unique() {
        let mut names: Vec<&str> = Vec::new();
        for (index, code) in ResultCode::ALL.iter().enumerate() {
            assert_eq!(usize::from(*code as u8), index);
            assert_eq!(ResultCode::from_u8(*code as u8), Some(*code));
            assert!(!names.contains(&code.name()));
            names.push(code.name());
        }
        assert_eq!(
            ResultCode::from_u8(u8::try_from(ResultCode::ALL.len()).unwrap()),
            None
        );
        assert_eq!(ResultCode::from_u8(u8::MAX), None);
    }
}
