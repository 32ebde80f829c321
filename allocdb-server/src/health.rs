//! `allocdb health`: a probe of a replica's HTTP `/health` endpoint for supervisors that have
//! no shell or HTTP client of their own (a Docker `HEALTHCHECK` in a `FROM scratch` image).
//!
//! It sends one `GET` to the `--metrics` address, bounded by `--timeout` as a whole (connect,
//! send, read), prints the answer's body to stdout, and exits 0 on HTTP 200, 1 on any other
//! HTTP status, 2 when there is no usable answer (connection refused, timeout, not HTTP).

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::duration::parse_duration;
use crate::net;

/// The largest answer read; `/health` bodies are one short line.
const RESPONSE_BYTES_MAX: usize = 64 * 1024;
/// Exit code for HTTP 200.
pub const EXIT_HEALTHY: u8 = 0;
/// Exit code for any other HTTP status (e.g. 503: not ready).
pub const EXIT_UNHEALTHY: u8 = 1;
/// Exit code when no HTTP answer arrived in time.
pub const EXIT_UNREACHABLE: u8 = 2;

/// `allocdb health`: probes a replica's `/health` (or another path) over HTTP.
#[derive(Args, Debug)]
pub struct HealthArgs {
    /// The replica's `--metrics` address (host:port).
    pub address: String,
    /// Give up (exit 2) when the whole exchange takes longer, e.g. `500ms`, `2s`.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// The path to ask: `/health` (ready: caught up) or `/health/live` (alive: not halted).
    #[arg(long, default_value = "/health")]
    pub path: String,
}

/// An HTTP answer: the status code and the body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpAnswer {
    /// The status code.
    pub status: u16,
    /// The body, lossily decoded as UTF-8.
    pub body: String,
}

/// Sends `GET path` to `address` and reads the whole answer within `timeout`.
///
/// # Errors
/// A description of what failed: connect, send, read, timeout, or an answer that is not HTTP.
pub async fn get(address: &str, path: &str, timeout: Duration) -> Result<HttpAnswer, String> {
    let exchange = async {
        let mut stream = net::connect(address)
            .await
            .map_err(|e| format!("connect to {address}: {e}"))?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("send: {e}"))?;
        let mut response = Vec::with_capacity(512);
        let mut chunk = [0_u8; 1024];
        loop {
            let read = stream
                .read(&mut chunk)
                .await
                .map_err(|e| format!("read: {e}"))?;
            if read == 0 {
                break;
            }
            if response.len() + read > RESPONSE_BYTES_MAX {
                return Err(format!("answer longer than {RESPONSE_BYTES_MAX} bytes"));
            }
            response.extend_from_slice(&chunk[..read]);
        }
        parse_response(&response)
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or_else(|_| Err(format!("no answer from {address} within {timeout:?}")))
}

/// Splits an HTTP/1.x response into its status code and body.
///
/// # Errors
/// The bytes do not start with an `HTTP/1.x NNN` status line or have no header end.
pub fn parse_response(bytes: &[u8]) -> Result<HttpAnswer, String> {
    let text = String::from_utf8_lossy(bytes);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("not an HTTP answer ({} bytes, no header end)", bytes.len()))?;
    let status_line = head.lines().next().unwrap_or_default();
    let mut parts = status_line.split_whitespace();
    let version = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(format!("not an HTTP answer: {status_line:?}"));
    }
    let status = code
        .parse::<u16>()
        .ok()
        .filter(|status| (100..=999).contains(status))
        .ok_or_else(|| format!("bad HTTP status line {status_line:?}"))?;
    Ok(HttpAnswer {
        status,
        body: body.to_string(),
    })
}

/// The exit code for a probe's outcome (0 = HTTP 200, 1 = another status, 2 = no answer).
pub fn exit_code(answer: &Result<HttpAnswer, String>) -> u8 {
    match answer {
        Ok(answer) if answer.status == 200 => EXIT_HEALTHY,
        Ok(_) => EXIT_UNHEALTHY,
        Err(_) => EXIT_UNREACHABLE,
    }
}

/// Runs `allocdb health`.
pub fn run(args: &HealthArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return ExitCode::from(EXIT_UNREACHABLE);
        }
    };
    let answer = runtime.block_on(get(&args.address, &args.path, args.timeout));
    match &answer {
        Ok(http) => {
            crate::outln!("{}", http.body.trim_end());
            if http.status != 200 {
                eprintln!("unhealthy: HTTP {} from {}", http.status, args.address);
            }
        }
        Err(error) => eprintln!("error: {error}"),
    }
    ExitCode::from(exit_code(&answer))
}

#[cfg(test)]
mod tests {
    use super::{exit_code, parse_response};

    #[test]
    fn responses_map_to_exit_codes() {
        let ok = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nyes");
        assert_eq!(
            ok.as_ref().map(|a| (a.status, a.body.as_str())),
            Ok((200, "yes"))
        );
        assert_eq!(exit_code(&ok), 0);
        let busy = parse_response(b"HTTP/1.0 503 Service Unavailable\r\n\r\n{}\n");
        assert_eq!(busy.as_ref().map(|a| a.status), Ok(503));
        assert_eq!(exit_code(&busy), 1);
        assert_eq!(
            exit_code(&parse_response(b"HTTP/1.1 404 Not Found\r\n\r\n")),
            1
        );
        for garbage in [
            &b""[..],
            b"HTTP/1.1 200 OK\r\n",
            b"SSH-2.0-OpenSSH\r\n\r\n",
            b"HTTP/1.1 abc OK\r\n\r\n",
            b"HTTP/1.1 20 OK\r\n\r\n",
        ] {
            let answer = parse_response(garbage);
            assert!(answer.is_err(), "{garbage:?} -> {answer:?}");
            assert_eq!(exit_code(&answer), 2);
        }
    }
}
