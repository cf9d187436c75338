//! Callers.

use super::*;

impl Authz {
    /// Who makes an admin call: an operator (no actor named) or an actor, authorized for `op`
    /// with its own, fully consistent, permissions.
    pub(super) async fn caller(
        &self,
        tenant_id: &str,
        actor_user_id: &str,
        op: AdminOp,
    ) -> Result<Caller> {
        validate::id("tenant_id", tenant_id)?;
        if actor_user_id.is_empty() {
            return Ok(Caller::Operator);
        }
        validate::id("actor_user_id", actor_user_id)?;
        let (subject, _) = self
            .store
            .subject(tenant_id, actor_user_id, Consistency::Full)
            .await?;
        let caller = Caller::Actor {
            id: actor_user_id.to_owned(),
            subject,
        };
        caller.check(|a| rules::authorize(&self.catalog, a, op))?;
        Ok(caller)
    }

    /// Who makes an admin write: an operator (no actor named) or an actor, whose rights the
    /// store decides inside the write itself (`WriteCtx::rule`), never before it.
    pub(super) fn writer(tenant_id: &str, actor_user_id: &str) -> Result<Caller> {
        validate::id("tenant_id", tenant_id)?;
        if !actor_user_id.is_empty() {
            validate::id("actor_user_id", actor_user_id)?;
        }
        Ok(Caller::actor_marker(actor_user_id))
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
        tenant_id: &str,
        key: &str,
    ) -> Result<Arc<GroupGrants>> {
        match self.catalog.group(key) {
            Some(g) => Ok(g.grants.clone()),
            None => {
                let info = self.store.get_group(tenant_id, key).await?;
                Ok(Arc::new(GroupGrants {
                    key: info.def.key,
                    permissions: info.def.permissions,
                    scoped: info.def.scoped,
                }))
            }
        }
    }
}
