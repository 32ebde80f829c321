//! Client-facing frames: a byte stream decoded frame by frame, every body by its kind, and
//! every body that decodes re-encoded and decoded again to the same value.
//!
//! Mode byte bit 0: clear, the rest is the raw stream; set, the rest is `kind index` then a
//! body, wrapped in a frame with correct length and checksums.

use allocdb_vsr::frame::{
    self, ClientHello, ErrorBody, FrameKind, FrameLimits, PeerHandshake, StatusReply, Welcome,
};

use crate::CLUSTER_ID;

/// Runs one input.
pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        stream(rest);
    } else {
        let Some((&kind, body)) = rest.split_first() else {
            return;
        };
        let kind = FrameKind::ALL[usize::from(kind) % FrameKind::ALL.len()];
        let mut bytes = Vec::with_capacity(frame::HEADER_BYTES + body.len());
        frame::write_frame(&mut bytes, kind, CLUSTER_ID, |out| {
            out.extend_from_slice(body);
        });
        stream(&bytes);
    }
}

fn stream(mut bytes: &[u8]) {
    let limits = FrameLimits::client(CLUSTER_ID);
    let _ = frame::check_header_prefix(bytes);
    while let Ok(Some(decoded)) = frame::decode_frame(bytes, &limits) {
        body(decoded.header.kind, decoded.body);
        bytes = &bytes[decoded.frame_bytes..];
    }
}

fn body(kind: FrameKind, body: &[u8]) {
    let mut out = Vec::new();
    match kind {
        FrameKind::ClientRequests => {
            let mut requests = Vec::new();
            if frame::decode_requests(body, &mut requests).is_ok() {
                frame::encode_requests(&requests, &mut out);
                let mut again = Vec::new();
                frame::decode_requests(&out, &mut again).expect("re-encoded requests decode");
                assert_eq!(requests, again, "requests survive a round trip");
            }
        }
        FrameKind::ClientReplies => {
            let mut replies = Vec::new();
            if frame::decode_replies(body, &mut replies).is_ok() {
                frame::encode_replies(&replies, &mut out);
                let mut again = Vec::new();
                frame::decode_replies(&out, &mut again).expect("re-encoded replies decode");
                assert_eq!(replies, again, "replies survive a round trip");
            }
        }
        FrameKind::ClientHello => {
            if let Ok(hello) = ClientHello::decode(body) {
                hello.encode(&mut out);
                assert_eq!(ClientHello::decode(&out), Ok(hello));
            }
        }
        FrameKind::ClientWelcome => {
            if let Ok(welcome) = Welcome::decode(body) {
                welcome.encode(&mut out);
                assert_eq!(Welcome::decode(&out), Ok(welcome));
            }
        }
        FrameKind::StatusReply => {
            if let Ok(status) = StatusReply::decode(body) {
                status.encode(&mut out);
                assert_eq!(StatusReply::decode(&out), Ok(status));
            }
        }
        FrameKind::Error => {
            if let Ok(error) = ErrorBody::decode(body) {
                error.encode(&mut out);
                assert_eq!(ErrorBody::decode(&out), Ok(error));
            }
        }
        FrameKind::PeerHandshake => {
            if let Ok(handshake) = PeerHandshake::decode(body) {
                let _ = handshake.check_peer(1, 3);
                handshake.encode(&mut out);
                assert_eq!(PeerHandshake::decode(&out), Ok(handshake));
            }
        }
        FrameKind::PeerMessage | FrameKind::PeerPing | FrameKind::StatusRequest => {}
    }
}
