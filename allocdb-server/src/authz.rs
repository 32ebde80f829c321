//! What each client role may ask. Decided per request by the session before the replica sees
//! it, so a refused request changes nothing and costs the log nothing.

use allocdb_client::ClientRole;
use allocdb_core::Command;
use allocdb_vsr::ClientOperation;

use crate::tls::Principal;

/// Whether `principal` may make `operation`.
///
/// `application`: register a session, reserve, reserve-any, activate, renew, release and reads. `operator`: also
/// create resources (and with them pools), revoke and reclaim. `expire` is internal for
/// everyone; it is let through so the replica answers it `invalid`, as it always has.
pub fn allowed(principal: Principal, operation: &ClientOperation) -> bool {
    let role = match principal {
        Principal::Insecure | Principal::Client(ClientRole::Operator) => return true,
        Principal::Replica(_) => return false,
        Principal::Client(role) => role,
    };
    assert_eq!(role, ClientRole::Application);
    match operation {
        ClientOperation::Read { .. } => true,
        ClientOperation::Write(request) => match request.command {
            Command::Reserve { .. }
            | Command::ReserveAny { .. }
            | Command::Activate { .. }
            | Command::Renew { .. }
            | Command::Release { .. }
            | Command::RegisterSession { .. }
            | Command::Expire { .. } => true,
            Command::CreateResource { .. } | Command::Revoke { .. } | Command::Reclaim { .. } => {
                false
            }
        },
    }
}

/// Whether `principal` may ask for the replica's status.
pub fn may_read_status(principal: Principal) -> bool {
    matches!(
        principal,
        Principal::Insecure | Principal::Client(ClientRole::Operator)
    )
}

#[cfg(test)]
mod tests {
    use super::{allowed, may_read_status};
    use crate::tls::Principal;
    use allocdb_client::ClientRole;
    use allocdb_core::{Bundle, Command, LeaseId, Request};
    use allocdb_vsr::{ClientOperation, Query};

    #[test]
    fn roles_allow_exactly_their_commands() {
        let lease = LeaseId(1);
        let commands = [
            (
                Command::CreateResource {
                    resource: 1,
                    pool: None,
                },
                false,
            ),
            (
                Command::Reserve {
                    resources: Bundle::EMPTY,
                    holder: 1,
                    ttl_slots: 1,
                },
                true,
            ),
            (
                Command::ReserveAny {
                    pool: 1,
                    count: 1,
                    holder: 1,
                    ttl_slots: 1,
                },
                true,
            ),
            (
                Command::Activate {
                    lease,
                    holder: 1,
                    epoch: 1,
                    ttl_slots: None,
                },
                true,
            ),
            (
                Command::Renew {
                    lease,
                    holder: 1,
                    epoch: 1,
                    ttl_slots: 1,
                },
                true,
            ),
            (
                Command::Release {
                    lease,
                    holder: 1,
                    epoch: 1,
                },
                true,
            ),
            (Command::Revoke { lease }, false),
            (Command::Reclaim { lease }, false),
            (
                Command::Expire {
                    lease,
                    deadline_slot: 1,
                },
                true,
            ),
        ];
        let application = Principal::Client(ClientRole::Application);
        let operator = Principal::Client(ClientRole::Operator);
        for (command, application_may) in commands {
            let write = ClientOperation::Write(Request {
                operation_id: 1,
                command,
            });
            assert_eq!(allowed(application, &write), application_may, "{command:?}");
            assert!(allowed(operator, &write), "{command:?}");
            assert!(allowed(Principal::Insecure, &write), "{command:?}");
            assert!(!allowed(Principal::Replica(0), &write), "{command:?}");
        }
        let read = ClientOperation::Read {
            query: Query::Lease(lease),
            min_op: 0,
        };
        assert!(allowed(application, &read) && allowed(operator, &read));
        assert!(may_read_status(operator) && may_read_status(Principal::Insecure));
        assert!(!may_read_status(application) && !may_read_status(Principal::Replica(1)));
    }
}
