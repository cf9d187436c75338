//! Grants and restrictions.

use super::*;

impl Authz {
    fn grants(
        &self,
        caller: &Caller,
        permissions: &[String],
        resource: Option<&ResourceInput>,
    ) -> Result<Grants> {
        if permissions.is_empty() {
            return Err(Error::Invalid(
                "permissions must name at least one permission".to_owned(),
            ));
        }
        let set = self.visible_permissions(caller, "permissions", permissions)?;
        Ok(match resource {
            None => Grants::Unscoped(set),
            Some(r) => {
                let resource = self.resource("resource", r)?;
                Grants::Scoped(
                    set.iter()
                        .map(|permission| ScopedGrant {
                            permission,
                            resource: resource.clone(),
                        })
                        .collect(),
                )
            }
        })
    }

    /// Grants `permissions` to a user (`Direction::Add`), unscoped or on `resource`, or revokes
    /// them (`Direction::Remove`).
    pub async fn change_grants(
        &self,
        tenant_id: &TenantId,
        call: &AdminCall,
        user_id: &UserId,
        direction: Direction,
        permissions: &[String],
        resource: Option<&ResourceInput>,
    ) -> Result<Committed<()>> {
        let caller = Caller::writer(&call.by);
        let grants = self.grants(&caller, permissions, resource)?;
        let (effect, write) = match direction {
            Direction::Add => {
                let (permissions, scoped) = match &grants {
                    Grants::Unscoped(set) => (set.clone(), Vec::new()),
                    Grants::Scoped(list) => (PermSet::new(), list.clone()),
                };
                let effect = Effect::Give {
                    user: user_id.to_string(),
                    permissions,
                    scoped,
                };
                let grants = &grants;
                (effect, Write::Grant { user_id, grants })
            }
            Direction::Remove => {
                let effect = Effect::TakeFrom {
                    users: vec![user_id.to_string()],
                };
                let grants = &grants;
                (effect, Write::Revoke { user_id, grants })
            }
        };
        let rule = Rule::new(AdminOp::EditUsers, effect);
        Ok(self
            .commit(tenant_id, &caller, call.mode, rule, write)
            .await?
            .nothing())
    }

    pub async fn set_restrictions(
        &self,
        tenant_id: &TenantId,
        call: &AdminCall,
        user_id: &UserId,
        resource_type: &str,
        resource_ids: &[String],
        clear: bool,
    ) -> Result<Committed<()>> {
        let t = self.resource_type("resource_type", resource_type)?;
        let ids = match (clear, resource_ids.is_empty()) {
            (true, true) => None,
            (true, false) => {
                return Err(Error::Invalid(
                    "clear is set and resource_ids is not empty; send one or the other".to_owned(),
                ));
            }
            (false, true) => {
                return Err(Error::Invalid(
                    "resource_ids is empty; list the resources the user is limited to, or set clear to lift the restriction".to_owned(),
                ));
            }
            (false, false) => {
                validate::ids("resource_ids", resource_ids)?;
                Some(resource_ids.iter().cloned().collect::<BTreeSet<_>>())
            }
        };
        let caller = Caller::writer(&call.by);
        // Limiting takes access away and lifting gives it back: an actor must hold everything
        // the user holds, and an actor limited on the type limits only within its own list.
        let rule = Rule::new(
            AdminOp::RestrictUsers,
            Effect::Restrict {
                user: user_id.to_string(),
                resource_type: t,
                ids: ids.clone(),
            },
        );
        Ok(self
            .commit(
                tenant_id,
                &caller,
                call.mode,
                rule,
                Write::SetRestriction {
                    user_id,
                    resource_type: t,
                    ids,
                },
            )
            .await?
            .nothing())
    }
}
