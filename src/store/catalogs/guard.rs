//! The guard every cache load and write consults: the newest record's id, checked.

use super::*;

/// What a replica may serve, kept in step with the database's newest catalog record.
pub struct CatalogGuard {
    own: Arc<Catalog>,
    /// The newest record id checked; loads and writes that see it go ahead without a look.
    verified: AtomicI64,
    serving: AtomicBool,
    state: RwLock<GuardState>,
}

#[derive(Default)]
pub(super) struct GuardState {
    /// Why this replica serves nothing.
    refusal: Option<String>,
    /// Why this replica makes no writes: the database records a newer, compatible catalog (a
    /// rollout is under way). Admin rules are decided with the newest catalog's groups, and
    /// new system group keys stay free, so writes go to updated replicas.
    behind: Option<String>,
}

impl CatalogGuard {
    pub fn new(own: Arc<Catalog>) -> Self {
        Self {
            own,
            // 0: no record. A database that records none is read with this catalog.
            verified: AtomicI64::new(0),
            serving: AtomicBool::new(true),
            state: RwLock::new(GuardState::default()),
        }
    }

    /// True while the replica's catalog agrees with the database's.
    pub fn serving(&self) -> bool {
        self.serving.load(Ordering::Acquire)
    }

    /// Why the replica does not serve, when it does not.
    pub fn refusal(&self) -> Option<String> {
        if self.serving() {
            return None;
        }
        self.state.read().ok().and_then(|s| s.refusal.clone())
    }

    /// The id of the newest record checked.
    pub fn verified(&self) -> i64 {
        self.verified.load(Ordering::Acquire)
    }

    /// Why this replica must not write, when it must not: it serves nothing, or it is one
    /// compatible step behind the database's catalog.
    pub fn write_refusal(&self) -> Option<String> {
        self.state
            .read()
            .ok()
            .and_then(|s| s.refusal.clone().or_else(|| s.behind.clone()))
    }

    pub(super) fn set(&self, id: i64, refusal: Option<String>, behind: Option<String>) {
        if let Ok(mut s) = self.state.write() {
            match (&refusal, &s.refusal) {
                (Some(r), None) => tracing::error!(
                    reason = %r,
                    "catalog incompatible with the database's: not serving"
                ),
                (None, Some(_)) => tracing::info!(
                    record = id,
                    "catalog agrees with the database's again: serving"
                ),
                _ => {}
            }
            self.serving.store(refusal.is_none(), Ordering::Release);
            s.refusal = refusal;
            s.behind = behind;
        }
        self.verified.store(id, Ordering::Release);
    }

    /// UNAVAILABLE with the reason while this replica must not serve.
    pub fn serves(&self) -> Result<()> {
        match self.refusal() {
            None => Ok(()),
            Some(r) => Err(StoreError::CatalogMismatch(r)),
        }
    }

    /// Compares this replica's catalog with record `id` and serves or stops accordingly. A
    /// replica serves a record that is its own catalog or a compatible successor of it (a
    /// rolling update in progress, this replica not yet updated).
    pub async fn check(&self, tx: &Transaction<'_>, id: i64) -> Result<()> {
        if id == 0 {
            self.set(0, None, None);
            return Ok(());
        }
        let rec = record_by_id(tx, id).await?;
        if rec.fingerprint == self.own.fingerprint {
            self.set(id, None, None);
            return Ok(());
        }
        let recorded = match rec.catalog() {
            Ok(c) => c,
            Err(e) => {
                self.set(id, Some(e), None);
                return Ok(());
            }
        };
        // The record is authoritative: this replica may serve it only when the record keeps
        // every meaning this replica's catalog gives (a compatible successor). A record that
        // is a predecessor was applied on purpose after this replica started (a rollback).
        match successor(&self.own, &rec, &recorded) {
            Ok(()) => self.set(
                id,
                None,
                Some(format!(
                    "this replica serves catalog {}, one compatible step behind the database's {} (a rollout is under way): it answers checks and reads, but admin writes go to replicas on the recorded catalog",
                    describe(&self.own),
                    rec.describe()
                )),
            ),
            Err(report) => self.set(
                id,
                Some(format!(
                    "this replica serves catalog {}, but the database now records {}, which is incompatible with it:\n{report}\nroll this replica onto the recorded catalog",
                    describe(&self.own),
                    rec.describe()
                )),
                None,
            ),
        }
        Ok(())
    }
}

/// Whether a replica on `own` may go on serving data recorded under `rec` (`recorded`, its
/// catalog): `rec` must keep every meaning `own` gives. A record `catalog apply` made has
/// rewritten stored keys to its own names, so it must also name every permission as `own`
/// does. `Err` holds why not.
pub(super) fn successor(
    own: &Catalog,
    rec: &Recorded,
    recorded: &Catalog,
) -> std::result::Result<(), String> {
    let ahead = evolve::compare(Some(own), recorded, None, &Mappings::default());
    if !ahead.compatible() {
        return Err(ahead.report());
    }
    let renamed: Vec<&str> = ahead
        .changes
        .iter()
        .filter(|c| c.kind == "permission_renamed")
        .map(|c| c.detail.as_str())
        .collect();
    if rec.how == "apply" && !renamed.is_empty() {
        return Err(format!(
            "  - `catalog apply` rewrote stored keys to the recorded catalog's names, which this catalog does not know: {}",
            renamed.join("; ")
        ));
    }
    Ok(())
}
