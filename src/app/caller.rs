//! Callers.

use super::*;

impl Authz {
    /// Who makes an admin call: an operator (no actor named) or an actor, authorized for `op`
    /// with its own, fully consistent, permissions.
    pub(super) async fn caller(
        &self,
        tenant_id: &TenantId,
        by: &By,
        op: AdminOp,
    ) -> Result<Caller> {
        let By::Actor(actor) = by else {
            return Ok(Caller::Operator);
        };
        let (subject, _) = self
            .store
            .subject(tenant_id, actor, Consistency::Full)
            .await?;
        let caller = Caller::Actor {
            id: actor.clone(),
            subject,
        };
        caller.check(|a| rules::authorize(&self.catalog, a, op))?;
        Ok(caller)
    }

    /// Hands a write to the store with the caller's context: the store decides `rule` for an
    /// actor inside the write.
    pub(super) async fn commit(
        &self,
        tenant_id: &TenantId,
        caller: &Caller,
        mode: WriteMode,
        rule: Rule,
        write: Write<'_>,
    ) -> Result<Committed<crate::store::Written>> {
        Ok(self
            .store
            .write(tenant_id, &caller.ctx(mode, rule), write)
            .await?)
    }

    /// A permission key as the caller may name it: internal ones do not exist for actors.
    pub(super) fn visible_permission(
        &self,
        caller: &Caller,
        field: &str,
        key: &str,
    ) -> Result<PermId> {
        match self.catalog.resolve(key) {
            Some(p) if caller.is_actor() && self.catalog.permission(p).internal => Err(
                Error::Concealed(Box::new(Self::unknown_permission(field, key))),
            ),
            _ => self.permission(field, key),
        }
    }

    pub(super) fn visible_permissions(
        &self,
        caller: &Caller,
        field: &str,
        keys: &[String],
    ) -> Result<PermSet> {
        validate::list_len(field, keys.len())?;
        keys.iter()
            .map(|k| self.visible_permission(caller, field, k))
            .collect()
    }

    /// Internal system groups do not exist for actors.
    pub(super) fn hidden_from(&self, caller: &Caller, key: &str) -> bool {
        caller.is_actor() && self.catalog.group(key).is_some_and(|g| g.internal)
    }

    /// An internal group, to an actor: "does not exist", counted as a refusal.
    pub(super) fn no_group(key: &str) -> Error {
        Error::Concealed(Box::new(Error::Store(
            crate::store::StoreError::GroupNotFound(key.to_owned()),
        )))
    }

    /// A user as the caller may see it: actors see no internal groups or permissions.
    pub(super) fn user_view(&self, caller: &Caller, mut user: UserInfo) -> UserInfo {
        if caller.is_actor() {
            user.groups.retain(|g| !self.hidden_from(caller, g));
            user.direct
                .difference_with(self.catalog.internal_permissions());
            user.scoped
                .retain(|s| !self.catalog.permission(s.permission).internal);
        }
        user
    }

    /// The grants a group gives, for the delegation rule.
    pub(super) async fn group_grants(
        &self,
        tenant_id: &TenantId,
        key: &str,
    ) -> Result<Arc<GroupGrants>> {
        match self.catalog.group(key) {
            Some(g) => Ok(g.grants.clone()),
            None => {
                let info = self.store.records().get_group(tenant_id, key).await?;
                Ok(Arc::new(GroupGrants {
                    key: info.def.key,
                    permissions: info.def.permissions,
                    scoped: info.def.scoped,
                }))
            }
        }
    }
}

/// Who makes an admin call, as the application knows it: an operator, or an actor with its
/// subject when the call needed it.
pub(super) enum Caller {
    Operator,
    Actor { id: UserId, subject: Subject },
}

impl Caller {
    /// Who makes an admin write: its rights are decided by the store inside the write itself
    /// (`WriteCtx::rule`), never before it, so no subject is read here.
    pub(super) fn writer(by: &By) -> Caller {
        match by {
            By::Operator => Caller::Operator,
            By::Actor(id) => Caller::Actor {
                id: id.clone(),
                subject: Subject::default(),
            },
        }
    }

    pub(super) fn is_actor(&self) -> bool {
        matches!(self, Caller::Actor { .. })
    }

    /// What the store records about the caller, the rule it decides for an actor inside the
    /// write, and whether to commit.
    pub(super) fn ctx(&self, mode: WriteMode, rule: Rule) -> WriteCtx {
        WriteCtx {
            actor: match self {
                Caller::Operator => None,
                Caller::Actor { id, .. } => Some(id.as_str().to_owned()),
            },
            rule,
            dry_run: mode == WriteMode::DryRun,
        }
    }

    /// Applies a rule to an actor; operators pass.
    pub(super) fn check(&self, rule: impl FnOnce(&Actor<'_>) -> Result<(), Refusal>) -> Result<()> {
        match self {
            Caller::Operator => Ok(()),
            Caller::Actor { id, subject } => rule(&Actor {
                user_id: id,
                subject,
            })
            .map_err(Error::Refused),
        }
    }
}
