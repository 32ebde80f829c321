//! What can go wrong with a call, split by what the caller may conclude.

use allocdb_core::{Op, OperationId, ResultCode};

/// Why a call did not return a value.
///
/// [`ClientError::is_definite`] says whether the outcome is known. Every variant except
/// [`ClientError::Indefinite`] is definite: either the cluster answered, or the request can be
/// shown never to have left this client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientError {
    /// The core refused the command or query with `code`. For a write, the refusal is itself
    /// committed at `op` (a retry with the same operation id returns it again).
    Rejected {
        /// Why.
        code: ResultCode,
        /// The op at which the answer was decided.
        op: Op,
    },
    /// The request can never succeed as written: refused by this client before sending (for
    /// example a bundle over the limit) or answered `invalid` by the cluster; at connect, also
    /// options that cannot work (a replica of another cluster, or every replica of the list
    /// answering in the other transport: TLS against plaintext or the other way round).
    /// Nothing changed.
    Invalid {
        /// What is wrong.
        reason: String,
    },
    /// The write may or may not have executed: the deadline passed after it was sent without
    /// a definite answer, or its session was evicted (`session_evicted`) or its stored answer
    /// forgotten (`request_stale`) after a send whose fate is unknown. Call again with this
    /// operation id to learn which, or read the state.
    ///
    /// What a retry with the id can learn depends on its kind:
    /// * a **session key** (the library numbered the write): while the session is kept and
    ///   the write is among its latest `session_requests_max` numbers (the next
    ///   `session_requests_max` writes of this client), the retry returns the stored answer
    ///   (`retry: true`, at the op where it executed). Later it is refused `request_stale`, or
    ///   `session_evicted` once the session is gone: definite refusals that say nothing about
    ///   the first attempt, but guarantee the write never executes twice;
    /// * an **application key** (from [`crate::Client::new_operation_id`], passed in
    ///   `CallOptions::operation_id`): the outcome is kept for the cluster's dedupe window
    ///   (`dedupe_window_slots`, at most `operations_max` keys) and can be asked for from any
    ///   process; later the retry is refused `operation_expired`, never executed again.
    ///   Use application keys when retries must outlive this client or span a long time.
    Indefinite {
        /// The id to retry with.
        operation_id: OperationId,
    },
    /// The deadline passed without an answer to a read. Reads change nothing: just retry.
    Timeout,
    /// The deadline passed before the request could be sent to any replica: it was not
    /// executed. `reason` is the last connection error seen.
    Unavailable {
        /// The last connection error.
        reason: String,
    },
    /// The cluster refused the request because this client's certificate does not carry a
    /// role that may make it (an `application` client asking to revoke, reclaim or create a
    /// resource), or refused the session itself. Nothing changed.
    Forbidden {
        /// What was refused.
        reason: String,
    },
    /// The address list does not match the cluster: a replica answered at a position other
    /// than its index (the list is in another order), or said the cluster has a different
    /// number of replicas than the list holds. Found at connect, before anything is sent;
    /// retrying cannot help: fix the list (the message names the expected order).
    AddressList {
        /// What is wrong and what the list should be.
        reason: String,
    },
    /// The client's connection task ended (it panicked, or its tokio runtime shut down)
    /// before the call finished. `operation_id` is set for a write that carried an explicit
    /// operation id and may have been sent. A write the library numbered on its session
    /// reports `None` although it, too, may have been sent (its session key is not known
    /// here): read the state before assuming it did not run.
    Closed {
        /// The write's explicit operation id, if it may have been sent.
        operation_id: Option<OperationId>,
    },
}

impl ClientError {
    /// Whether the outcome is known: `false` only when a write may or may not have committed.
    ///
    /// ```
    /// use allocdb_client::{ClientError, ResultCode};
    ///
    /// let busy = ClientError::Rejected { code: ResultCode::ResourceBusy, op: 12 };
    /// assert!(busy.is_definite());
    /// assert_eq!(busy.code(), Some(ResultCode::ResourceBusy));
    /// let unknown = ClientError::Indefinite { operation_id: 99 };
    /// assert!(!unknown.is_definite()); // retry with CallOptions::new().with_operation_id(99)
    /// ```
    pub fn is_definite(&self) -> bool {
        match self {
            ClientError::Indefinite { .. } => false,
            ClientError::Closed { operation_id } => operation_id.is_none(),
            ClientError::Rejected { .. }
            | ClientError::Invalid { .. }
            | ClientError::Forbidden { .. }
            | ClientError::AddressList { .. }
            | ClientError::Timeout
            | ClientError::Unavailable { .. } => true,
        }
    }

    /// The result code when the core refused, else `None`.
    pub fn code(&self) -> Option<ResultCode> {
        match self {
            ClientError::Rejected { code, .. } => Some(*code),
            _ => None,
        }
    }
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Rejected { code, op } => write!(f, "{} (op {op})", code.name()),
            ClientError::Invalid { reason } => write!(f, "invalid request: {reason}"),
            ClientError::Indefinite { operation_id } => write!(
                f,
                "outcome unknown: the deadline passed without a definite answer; \
                 retry with operation id {operation_id} to learn it"
            ),
            ClientError::Forbidden { reason } => write!(f, "forbidden: {reason}"),
            ClientError::AddressList { reason } => write!(f, "{reason}"),
            ClientError::Timeout => write!(f, "read timed out without an answer"),
            ClientError::Unavailable { reason } => {
                write!(f, "no replica could be reached (not executed): {reason}")
            }
            ClientError::Closed { operation_id: None } => write!(f, "client closed"),
            ClientError::Closed {
                operation_id: Some(id),
            } => write!(f, "client closed; outcome of operation {id} unknown"),
        }
    }
}

impl std::error::Error for ClientError {}

#[cfg(test)]
mod tests {
    use super::ClientError;
    use allocdb_core::ResultCode;

    #[test]
    fn only_a_possibly_sent_write_is_indefinite() {
        let cases = [
            (
                ClientError::Rejected {
                    code: ResultCode::ResourceBusy,
                    op: 3,
                },
                true,
            ),
            (ClientError::Invalid { reason: "x".into() }, true),
            (ClientError::Indefinite { operation_id: 9 }, false),
            (ClientError::Forbidden { reason: "x".into() }, true),
            (ClientError::AddressList { reason: "x".into() }, true),
            (ClientError::Timeout, true),
            (
                ClientError::Unavailable {
                    reason: "refused".into(),
                },
                true,
            ),
            (ClientError::Closed { operation_id: None }, true),
            (
                ClientError::Closed {
                    operation_id: Some(4),
                },
                false,
            ),
        ];
        for (error, definite) in cases {
            assert_eq!(error.is_definite(), definite, "{error}");
        }
        assert_eq!(
            ClientError::Rejected {
                code: ResultCode::StaleEpoch,
                op: 1
            }
            .code(),
            Some(ResultCode::StaleEpoch)
        );
        assert!(
            ClientError::Indefinite { operation_id: 77 }
                .to_string()
                .contains("77")
        );
    }
}
