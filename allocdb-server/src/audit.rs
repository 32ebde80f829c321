//! The double-allocation audit used by `allocdb demo` and the cluster tests.
//!
//! Clients record every lease they were granted and the log position `(op, index)` at which
//! they released it. Lease ids are log positions too (`op << 32 | index`), so for each
//! resource the grants can be put in log order. Then, for every two consecutive grants A, B
//! of one resource, A must have ended before B began: either A's release is logged before B's
//! grant, or A was not released by its client and is terminal (expired) by the end. And at the
//! end at most one lease per resource is live: the last one granted, the one the resource
//! names. Anything else is a resource granted to two live leases at once.
//!
//! The final states are read from one state of the cluster: every read reports the op it was
//! answered at, and the audit counts only a set of reads that all report the same op (see
//! [`Audit::check`]), so an expiry committed between two reads cannot pass for a double
//! allocation.

use std::collections::BTreeMap;
use std::time::Duration;

use allocdb_client::{Client, ClientError};
use allocdb_core::{LeaseId, Op, ResourceId, ResultCode};

/// One lease a client was granted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The lease (its id is its grant position).
    pub lease: LeaseId,
    /// Who holds it.
    pub holder: u128,
    /// Its resources.
    pub resources: Vec<ResourceId>,
    /// Where its release was logged, if its holder released it.
    pub released_at: Option<(Op, u32)>,
    /// The release's answer was a retry (the first attempt's reply was lost, e.g. in a
    /// failover): the release took effect at some position *at or before* `released_at`,
    /// which is where the retry was answered, so `released_at` is only an upper bound.
    pub release_retried: bool,
}

/// How many times [`Audit::check`] reads everything again before giving up on finding one
/// op at which the cluster stood still (with [`CONSISTENT_READ_PAUSE`] between attempts, at
/// least 8 s: several times the demo's 1.5 s lease TTL, after which no expiry is left).
pub const CONSISTENT_READ_ATTEMPTS_MAX: u32 = 40;
/// The pause between two attempts.
pub const CONSISTENT_READ_PAUSE: Duration = Duration::from_millis(200);

/// Every grant seen, in the order recorded.
#[derive(Debug, Default)]
pub struct Audit {
    grants: Vec<Grant>,
}

/// A lease's state at the end, as far as the audit cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinalLease {
    /// Still holds its resources.
    Live,
    /// Released, expired, revoked, or retired from history.
    Terminal,
}

/// Every audited lease's and resource's state, read by one attempt of [`Audit::check`].
struct AuditState {
    finals: BTreeMap<LeaseId, FinalLease>,
    owners: BTreeMap<ResourceId, Option<LeaseId>>,
    /// The lowest and highest op the answers reported: equal when they all read one state.
    op_min: Op,
    op_max: Op,
}

impl AuditState {
    fn saw(&mut self, op: Op) {
        self.op_min = self.op_min.min(op);
        self.op_max = self.op_max.max(op);
    }
}

/// What [`Audit::check`] found.
#[derive(Debug, Default)]
pub struct Findings {
    /// Each double allocation, described.
    pub violations: Vec<String>,
    /// Leases audited.
    pub leases_checked: usize,
    /// Resources audited.
    pub resources_checked: usize,
    /// The op every final state was read at (0 when the states were given, not read).
    pub read_at_op: Op,
    /// How many times everything was read to find one op (0 when not read).
    pub read_attempts: u32,
}

impl Audit {
    /// Records a grant; the handle to record its release with.
    pub fn grant(&mut self, grant: Grant) -> usize {
        assert_ne!(grant.lease.0, 0, "a grant has a lease");
        self.grants.push(grant);
        self.grants.len() - 1
    }

    /// Records that grant `handle` was released, answered at log position `position`;
    /// `retry` when the answer was a retry of an earlier execution.
    pub fn released(&mut self, handle: usize, position: (Op, u32), retry: bool) {
        let grant = &mut self.grants[handle];
        assert!(grant.released_at.is_none(), "released once");
        assert!(
            position > lease_position(grant.lease),
            "a release is logged after its grant"
        );
        grant.released_at = Some(position);
        grant.release_retried = retry;
    }

    /// The grants recorded.
    pub fn grants(&self) -> &[Grant] {
        &self.grants
    }

    /// Reads every lease's and resource's final state through `client`, all from one state of
    /// the cluster (one op), then audits.
    ///
    /// # Errors
    /// A read failed for a reason other than the lease having retired, or the cluster kept
    /// changing for [`CONSISTENT_READ_ATTEMPTS_MAX`] attempts.
    pub async fn check(&self, client: &Client) -> Result<Findings, String> {
        let (state, attempts) = self.read_one_state(client).await?;
        let mut findings = self.check_against(&state.finals, &state.owners);
        findings.read_at_op = state.op_max;
        findings.read_attempts = attempts;
        Ok(findings)
    }

    /// Reads every audited lease and resource so that all answers come from the state at one
    /// op. A primary answers a read from its state at its commit point, which it reports, and
    /// expiries keep committing while the audit reads (the demo leaves leases to expire): two
    /// reads that report different ops may straddle an expiry, and a lease read live with its
    /// resource read free would look like a double allocation. So every read of an attempt
    /// asks for the same `min_op` and the attempt counts only when every answer reports the
    /// same op; otherwise the whole attempt is repeated from the highest op seen, after a
    /// pause. Expiries stop once the abandoned leases' deadlines have passed, so an attempt
    /// soon finds the cluster still.
    async fn read_one_state(&self, client: &Client) -> Result<(AuditState, u32), String> {
        let mut min_op: Op = 0;
        for attempt in 1..=CONSISTENT_READ_ATTEMPTS_MAX {
            let state = self.read_state(client, min_op).await?;
            assert!(state.op_min <= state.op_max);
            if state.op_min < min_op {
                // The cluster's answer, not our invariant: report it, do not assert it.
                return Err(format!(
                    "a read asked for state at op {min_op} or later was answered at op {}",
                    state.op_min
                ));
            }
            if state.op_min == state.op_max {
                return Ok((state, attempt));
            }
            tracing::debug!(
                attempt,
                op_min = state.op_min,
                op_max = state.op_max,
                "audit reads straddled a commit; reading again"
            );
            min_op = state.op_max;
            tokio::time::sleep(CONSISTENT_READ_PAUSE).await;
        }
        Err(format!(
            "the audit found no single op at which to read all {} leases and their resources in \
             {CONSISTENT_READ_ATTEMPTS_MAX} attempts: the cluster kept committing",
            self.grants.len()
        ))
    }

    /// One attempt: every resource and lease read at once with `min_op` (the client coalesces
    /// them into frames and bounds how many are in flight).
    async fn read_state(&self, client: &Client, min_op: Op) -> Result<AuditState, String> {
        let asked = (min_op > 0).then_some(min_op);
        let resource_reads: Vec<_> = self
            .resources()
            .into_iter()
            .map(|resource| {
                let client = client.clone();
                tokio::spawn(async move { (resource, client.get_resource(resource, asked).await) })
            })
            .collect();
        let lease_reads: Vec<_> = self
            .grants
            .iter()
            .map(|grant| {
                let (client, lease) = (client.clone(), grant.lease);
                tokio::spawn(async move { (lease, client.get_lease(lease, asked).await) })
            })
            .collect();
        let mut state = AuditState {
            finals: BTreeMap::new(),
            owners: BTreeMap::new(),
            op_min: Op::MAX,
            op_max: min_op,
        };
        for read in resource_reads {
            let (resource, read) = read
                .await
                .map_err(|error| format!("resource read task: {error}"))?;
            let read = read.map_err(|error| format!("reading resource {resource}: {error}"))?;
            state.saw(read.op);
            state.owners.insert(resource, read.value.lease);
        }
        for read in lease_reads {
            let (lease, read) = read
                .await
                .map_err(|error| format!("lease read task: {error}"))?;
            let (op, final_lease) = match read {
                Ok(read) if read.value.state.is_live() => (read.op, FinalLease::Live),
                Ok(read) => (read.op, FinalLease::Terminal),
                Err(ClientError::Rejected {
                    code: ResultCode::LeaseRetired,
                    op,
                }) => (op, FinalLease::Terminal),
                Err(error) => return Err(format!("reading lease {}: {error}", lease.0)),
            };
            state.saw(op);
            state.finals.insert(lease, final_lease);
        }
        if state.op_min == Op::MAX {
            // Nothing to read: an empty audit is consistent at the op asked for.
            state.op_min = min_op;
        }
        Ok(state)
    }

    fn resources(&self) -> Vec<ResourceId> {
        let mut resources: Vec<ResourceId> = self
            .grants
            .iter()
            .flat_map(|grant| grant.resources.iter().copied())
            .collect();
        resources.sort_unstable();
        resources.dedup();
        resources
    }

    /// The audit proper, given each lease's final state and each resource's final lease.
    pub fn check_against(
        &self,
        finals: &BTreeMap<LeaseId, FinalLease>,
        owners: &BTreeMap<ResourceId, Option<LeaseId>>,
    ) -> Findings {
        let mut by_resource: BTreeMap<ResourceId, Vec<&Grant>> = BTreeMap::new();
        for grant in &self.grants {
            for resource in &grant.resources {
                by_resource.entry(*resource).or_default().push(grant);
            }
        }
        let mut violations = Vec::new();
        for (resource, grants) in &mut by_resource {
            grants.sort_by_key(|grant| lease_position(grant.lease));
            for pair in grants.windows(2) {
                let (a, b) = (pair[0], pair[1]);
                check_pair(*resource, a, b, finals, &mut violations);
            }
            let last = grants.last().expect("an entry has a grant");
            let owner = owners.get(resource).copied().flatten();
            let last_live = finals.get(&last.lease) == Some(&FinalLease::Live);
            if last_live && owner != Some(last.lease) {
                violations.push(format!(
                    "resource {resource}: lease {} is live but the resource names {owner:?}",
                    last.lease.0
                ));
            }
            if let Some(owner) = owner {
                let known_earlier = grants[..grants.len() - 1].iter().any(|g| g.lease == owner);
                if known_earlier {
                    violations.push(format!(
                        "resource {resource}: held by lease {} although lease {} was granted it later",
                        owner.0, last.lease.0
                    ));
                }
            }
        }
        Findings {
            violations,
            leases_checked: self.grants.len(),
            resources_checked: by_resource.len(),
            read_at_op: 0,
            read_attempts: 0,
        }
    }
}

/// A before B on one resource: A must have ended before B's grant.
fn check_pair(
    resource: ResourceId,
    a: &Grant,
    b: &Grant,
    finals: &BTreeMap<LeaseId, FinalLease>,
    violations: &mut Vec<String>,
) {
    let b_granted = lease_position(b.lease);
    match a.released_at {
        Some(released) if released < b_granted => {}
        // Only an upper bound: the release may have been logged before B's grant. What can
        // still be checked is that A ended.
        Some(_) if a.release_retried && finals.get(&a.lease) == Some(&FinalLease::Terminal) => {}
        Some(released) => violations.push(format!(
            "resource {resource}: lease {} granted at {b_granted:?} while lease {} held it \
             until its release at {released:?}",
            b.lease.0, a.lease.0
        )),
        None if finals.get(&a.lease) == Some(&FinalLease::Terminal) => {}
        None => violations.push(format!(
            "resource {resource}: leases {} and {} are both live",
            a.lease.0, b.lease.0
        )),
    }
}

/// A lease's grant position `(op, index)` in the log.
pub fn lease_position(lease: LeaseId) -> (Op, u32) {
    (lease.op(), lease.index())
}

#[cfg(test)]
mod tests {
    use super::{Audit, FinalLease, Grant};
    use allocdb_core::LeaseId;
    use std::collections::BTreeMap;

    fn grant(op: u64, resources: &[u128], released_at: Option<(u64, u32)>) -> Grant {
        Grant {
            lease: LeaseId::from_position(op, 0),
            holder: op.into(),
            resources: resources.to_vec(),
            released_at,
            release_retried: false,
        }
    }

    fn audit(grants: &[Grant]) -> Audit {
        let mut audit = Audit::default();
        for g in grants {
            audit.grant(g.clone());
        }
        audit
    }

    #[test]
    fn a_correct_history_passes() {
        // Seat 1: leased at op 1, released at op 3, leased again at op 4 (still live).
        // Seats 2 and 3: a bundle at op 2 that expired; seat 2 leased again at op 6.
        let grants = [
            grant(1, &[1], Some((3, 0))),
            grant(2, &[2, 3], None),
            grant(4, &[1], None),
            grant(6, &[2], Some((7, 1))),
        ];
        let finals = BTreeMap::from([
            (grants[0].lease, FinalLease::Terminal),
            (grants[1].lease, FinalLease::Terminal),
            (grants[2].lease, FinalLease::Live),
            (grants[3].lease, FinalLease::Terminal),
        ]);
        let owners = BTreeMap::from([(1, Some(grants[2].lease)), (2, None), (3, None)]);
        let findings = audit(&grants).check_against(&finals, &owners);
        assert_eq!(findings.violations, Vec::<String>::new());
        assert_eq!(
            (findings.leases_checked, findings.resources_checked),
            (4, 3)
        );
    }

    #[test]
    fn a_retried_release_is_only_an_upper_bound() {
        // Lease A's release was answered as a retry at op 9, after B's grant at op 4: the
        // release itself may have been logged before op 4. Fine if A ended...
        let mut grants = [grant(1, &[1], Some((9, 0))), grant(4, &[1], None)];
        grants[0].release_retried = true;
        let owners = BTreeMap::from([(1, Some(grants[1].lease))]);
        let ended = BTreeMap::from([
            (grants[0].lease, FinalLease::Terminal),
            (grants[1].lease, FinalLease::Live),
        ]);
        let found = audit(&grants).check_against(&ended, &owners).violations;
        assert_eq!(found, Vec::<String>::new());
        // ...a violation if A is still live (the release cannot have happened).
        let live = BTreeMap::from([
            (grants[0].lease, FinalLease::Live),
            (grants[1].lease, FinalLease::Live),
        ]);
        let found = audit(&grants).check_against(&live, &owners).violations;
        assert_eq!(found.len(), 1, "{found:?}");
        // Without the retry flag the same answer position is a double allocation.
        grants[0].release_retried = false;
        let found = audit(&grants).check_against(&ended, &owners).violations;
        assert_eq!(found.len(), 1, "{found:?}");
    }

    /// The checker catches a broken allocator: each history below is what a double
    /// allocation would look like to clients.
    #[test]
    fn double_allocations_are_caught() {
        // Granted again before the first holder released it.
        let early = [grant(1, &[1], Some((5, 0))), grant(4, &[1], Some((6, 0)))];
        let finals = BTreeMap::from([
            (early[0].lease, FinalLease::Terminal),
            (early[1].lease, FinalLease::Terminal),
        ]);
        let owners = BTreeMap::from([(1, None)]);
        let found = audit(&early).check_against(&finals, &owners).violations;
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("while lease"));

        // Two leases on one seat both live at the end.
        let both = [grant(1, &[1, 2], None), grant(2, &[2], None)];
        let finals = BTreeMap::from([
            (both[0].lease, FinalLease::Live),
            (both[1].lease, FinalLease::Live),
        ]);
        let owners = BTreeMap::from([(1, Some(both[0].lease)), (2, Some(both[1].lease))]);
        let found = audit(&both).check_against(&finals, &owners).violations;
        assert!(found.iter().any(|v| v.contains("both live")), "{found:?}");

        // The resource still names an older lease than the last grant.
        let stale = [grant(1, &[9], None), grant(3, &[9], None)];
        let finals = BTreeMap::from([
            (stale[0].lease, FinalLease::Terminal),
            (stale[1].lease, FinalLease::Live),
        ]);
        let owners = BTreeMap::from([(9, Some(stale[0].lease))]);
        let found = audit(&stale).check_against(&finals, &owners).violations;
        assert_eq!(found.len(), 2, "{found:?}");
    }
}
