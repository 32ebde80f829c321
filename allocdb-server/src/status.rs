//! Asking a replica where it stands: the `status_request` / `status_reply` exchange.

use allocdb_vsr::frame::{self, ErrorBody, FrameKind, FrameLimits, StatusReply};
use serde_json::json;
use tokio::time::Duration;

use crate::frame_io::{self, FrameReader, ReadError};
use allocdb_client::tls::{self, Transport};

/// [`probe_over`] plaintext, for a replica that runs `--insecure` (tests, local tools).
///
/// # Errors
/// As [`probe_over`].
pub async fn probe(
    address: &str,
    cluster_id: u128,
    timeout: Duration,
) -> Result<StatusReply, String> {
    probe_over(&Transport::Plain, address, 0, cluster_id, timeout).await
}

/// Connects to replica `index` at `address` over `transport` (TLS needs the operator role's
/// certificate), asks for its status, and returns the answer.
///
/// # Errors
/// A description of what failed (connect, timeout, an error frame, a malformed answer).
pub async fn probe_over(
    transport: &Transport,
    address: &str,
    index: u8,
    cluster_id: u128,
    timeout: Duration,
) -> Result<StatusReply, String> {
    probe_checked(transport, address, index, cluster_id, timeout)
        .await
        .map_err(|error| error.message)
}

/// Why a probe got no status, and, when the TLS handshake failed on a certificate of another
/// replica of the CA, which replica that is (a misordered address list).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeError {
    /// What failed.
    pub message: String,
    /// The replica the certificate presented names instead of the one dialled.
    pub misplaced: Option<tls::MisplacedReplica>,
    /// The other side does not speak this probe's transport: a TLS record answered our
    /// plaintext, or no TLS record our TLS (most likely a replica in the other mode).
    pub transport_mismatch: bool,
}

/// [`probe_over`], telling a misplaced replica's certificate apart from other failures.
///
/// # Errors
/// As [`probe_over`].
pub async fn probe_checked(
    transport: &Transport,
    address: &str,
    index: u8,
    cluster_id: u128,
    timeout: Duration,
) -> Result<StatusReply, ProbeError> {
    let failed = |message: String| ProbeError {
        message,
        misplaced: None,
        transport_mismatch: false,
    };
    let server_name = if cluster_id == 0 {
        tls::replica_name_any_cluster(index)
    } else {
        tls::replica_name(cluster_id, index)
    };
    let exchange = async {
        let stream = transport
            .connect(address, &server_name)
            .await
            .map_err(|e| ProbeError {
                message: format!("connect: {e}"),
                misplaced: tls::MisplacedReplica::of(&e),
                transport_mismatch: tls::is_plaintext_peer(&e),
            })?;
        let (mut read, mut write) = tokio::io::split(stream);
        let mut bytes = Vec::new();
        frame::write_frame(&mut bytes, FrameKind::StatusRequest, cluster_id, |_| {});
        frame_io::write_all(&mut write, &bytes)
            .await
            .map_err(|e| failed(format!("send: {e}")))?;
        let mut reader = FrameReader::new(FrameLimits::client(cluster_id));
        let (header, body) = reader.read_frame(&mut read).await.map_err(|e| ProbeError {
            transport_mismatch: matches!(&e, ReadError::Frame(f) if f.is_tls_record()),
            ..failed(e.to_string())
        })?;
        match header.kind {
            FrameKind::StatusReply => StatusReply::decode(&body).map_err(|e| failed(e.to_string())),
            FrameKind::Error => Err(failed(ErrorBody::decode(&body).map_or_else(
                |e| e.to_string(),
                |b| format!("{}: {}", b.code.name(), b.message),
            ))),
            kind => Err(failed(format!("unexpected {} frame", kind.name()))),
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or_else(|_| Err(failed(format!("no answer within {timeout:?}"))))
}

/// One JSON line describing replica `index` at `address`.
pub fn json_line(index: usize, address: &str, answer: &Result<StatusReply, String>) -> String {
    let line = match answer {
        Ok(status) => json!({
            "replica": index,
            "address": address,
            "role": status.role.name(),
            "view": status.view,
            "op": status.op,
            "commit": status.commit,
            "applied": status.applied,
            "config_mismatch": (!status.config_mismatch.is_empty())
                .then_some(status.config_mismatch.as_str()),
        }),
        Err(error) => json!({
            "replica": index,
            "address": address,
            "role": "unreachable",
            "view": null,
            "op": null,
            "commit": null,
            "applied": null,
            "config_mismatch": null,
            "error": error,
        }),
    };
    line.to_string()
}

/// `text` as a JSON string literal.
pub fn json_string(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

#[cfg(test)]
mod tests {
    use super::{json_line, json_string};
    use allocdb_vsr::frame::{Role, StatusReply};

    #[test]
    fn lines_are_json_with_the_documented_fields() {
        let status = StatusReply {
            replica_index: 0,
            replica_count: 1,
            role: Role::Primary,
            view: 2,
            op: 9,
            commit: 8,
            applied: 7,
            config_mismatch: String::new(),
        };
        assert_eq!(
            json_line(0, "127.0.0.1:1", &Ok(status.clone())),
            r#"{"replica":0,"address":"127.0.0.1:1","role":"primary","view":2,"op":9,"commit":8,"applied":7,"config_mismatch":null}"#
        );
        let mismatched = StatusReply {
            config_mismatch: "peer 2's address list is [\"b\"], ours is [a]".to_string(),
            ..status
        };
        assert!(
            json_line(0, "h:1", &Ok(mismatched))
                .ends_with(r#""config_mismatch":"peer 2's address list is [\"b\"], ours is [a]"}"#),
        );
        let line = json_line(1, "h:2", &Err("connect: \"refused\"".to_string()));
        assert!(
            line.contains(r#""role":"unreachable""#) && line.contains(r#"\"refused\""#),
            "{line}"
        );
        assert_eq!(json_string("a\u{1}b"), "\"a\\u0001b\"");
    }
}
