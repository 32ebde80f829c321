//! Where a replica puts its outputs: messages to peers and replies to clients.

use crate::message::{Message, Reply};

/// A message addressed to one replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// The destination replica.
    pub to: u8,
    /// The message.
    pub message: Message,
}

/// A caller-owned, bounded output buffer. The driver drains it after every call into the
/// replica. When full, further outputs are dropped and counted: every message is
/// best-effort (the protocol retransmits), and a dropped reply makes the client retry.
#[derive(Debug)]
pub struct Outbox {
    /// Messages to peers, in the order produced.
    pub messages: Vec<Envelope>,
    /// Replies to clients, in the order produced.
    pub replies: Vec<Reply>,
    messages_max: usize,
    replies_max: usize,
    dropped: u64,
}

impl Outbox {
    /// An outbox holding at most `messages_max` messages and `replies_max` replies.
    pub fn new(messages_max: u32, replies_max: u32) -> Outbox {
        let messages_max = usize::try_from(messages_max).expect("u32 fits in usize");
        let replies_max = usize::try_from(replies_max).expect("u32 fits in usize");
        Outbox {
            messages: Vec::with_capacity(messages_max),
            replies: Vec::with_capacity(replies_max),
            messages_max,
            replies_max,
            dropped: 0,
        }
    }

    /// Queues `message` for replica `to` (dropped when full).
    pub fn send(&mut self, to: u8, message: Message) {
        if self.messages.len() < self.messages_max {
            self.messages.push(Envelope { to, message });
        } else {
            self.dropped += 1;
        }
        assert!(self.messages.len() <= self.messages_max);
    }

    /// Queues a client reply (dropped when full).
    pub fn reply(&mut self, reply: Reply) {
        if self.replies.len() < self.replies_max {
            self.replies.push(reply);
        } else {
            self.dropped += 1;
        }
        assert!(self.replies.len() <= self.replies_max);
    }

    /// Outputs dropped because the outbox was full, since it was created.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty() && self.replies.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::Outbox;
    use crate::message::{Message, Reply, ReplyBody};

    #[test]
    fn bounded_and_counts_drops() {
        let mut outbox = Outbox::new(1, 1);
        outbox.send(1, Message::StartViewChange { view: 1 });
        outbox.send(2, Message::StartViewChange { view: 1 });
        let reply = Reply {
            client_id: 1,
            request_id: 1,
            body: ReplyBody::Overloaded,
        };
        outbox.reply(reply);
        outbox.reply(reply);
        assert_eq!(outbox.messages.len(), 1);
        assert_eq!(outbox.replies.len(), 1);
        assert_eq!(outbox.dropped(), 2);
    }
}
