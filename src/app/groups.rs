//! Groups.

use super::*;

impl Authz {
    fn system_view(&self, g: &authz_core::catalog::SystemGroup, member_count: u64) -> GroupView {
        GroupView {
            def: GroupDef {
                key: g.key.clone(),
                name: g.name.clone(),
                description: g.description.clone(),
                permissions: g.grants.permissions.clone(),
                scoped: Vec::new(),
            },
            system: true,
            internal: g.internal,
            version: 0,
            member_count,
        }
    }

    /// A group as the caller may see it: actors see no internal permissions or scoped grants.
    fn group_for(&self, caller: &Caller, mut view: GroupView) -> GroupView {
        if caller.is_actor() {
            let internal = self.catalog.internal_permissions();
            view.def.permissions.difference_with(internal);
            view.def.scoped.retain(|g| !internal.contains(g.permission));
        }
        view
    }

    fn custom_view(info: GroupInfo) -> GroupView {
        GroupView {
            def: info.def,
            system: false,
            internal: false,
            version: info.version,
            member_count: info.member_count,
        }
    }

    fn scoped_grants(
        &self,
        caller: &Caller,
        field: &str,
        grants: &[(String, ResourceInput)],
    ) -> Result<Vec<ScopedGrant>> {
        validate::list_len(field, grants.len())?;
        let mut out: Vec<ScopedGrant> = grants
            .iter()
            .map(|(p, r)| {
                Ok(ScopedGrant {
                    permission: self.visible_permission(
                        caller,
                        &format!("{field}.permission"),
                        p,
                    )?,
                    resource: self.resource(&format!("{field}.resource"), r)?,
                })
            })
            .collect::<Result<_>>()?;
        out.sort();
        out.dedup();
        Ok(out)
    }

    fn read_only(&self, key: &str) -> Result<()> {
        if self.catalog.group(key).is_some() {
            return Err(Error::Precondition(format!(
                "group `{key}` is a system group from the catalog and can't be changed or deleted; duplicate it into a custom group instead"
            )));
        }
        Ok(())
    }

    fn new_group_key(&self, field: &str, key: &str) -> Result<()> {
        validate::group_key(field, key)?;
        if self.catalog.group(key).is_some() {
            return Err(Error::AlreadyExists(format!(
                "group `{key}` is a system group in every tenant; choose another key"
            )));
        }
        Ok(())
    }

    fn group_name(field: &str, name: &str) -> Result<()> {
        if name.trim().is_empty() {
            return Err(Error::Invalid(format!("{field} is required")));
        }
        validate::text(field, name)
    }

    pub async fn create_group(
        &self,
        tenant_id: &TenantId,
        call: &AdminCall,
        group: &GroupInput,
    ) -> Result<Committed<GroupView>> {
        self.new_group_key("group.key", &group.key)?;
        Self::group_name("group.name", &group.name)?;
        validate::text("group.description", &group.description)?;
        let caller = Caller::writer(&call.by);
        let def = GroupDef {
            key: group.key.clone(),
            name: group.name.clone(),
            description: group.description.clone(),
            permissions: self.visible_permissions(
                &caller,
                "group.permissions",
                &group.permissions,
            )?,
            scoped: self.scoped_grants(&caller, "group.scoped_grants", &group.scoped_grants)?,
        };
        let rule = Rule::new(
            AdminOp::EditGroups,
            Effect::NewGroup {
                permissions: def.permissions.clone(),
                scoped: def.scoped.clone(),
                members_of: None,
            },
        );
        self.group_write(
            tenant_id,
            &caller,
            call.mode,
            rule,
            Write::CreateGroup { def },
        )
        .await
    }

    pub async fn get_group(
        &self,
        tenant_id: &TenantId,
        by: &By,
        key: &GroupKey,
    ) -> Result<GroupView> {
        let caller = self.caller(tenant_id, by, AdminOp::ViewGroups).await?;
        if self.hidden_from(&caller, key) {
            return Err(Self::no_group(key));
        }
        let view = match self.catalog.group(key) {
            Some(g) => {
                let members = self.store.records().member_count(tenant_id, key).await?;
                self.system_view(g, members)
            }
            None => Self::custom_view(self.store.records().get_group(tenant_id, key).await?),
        };
        Ok(self.group_for(&caller, view))
    }

    /// System and custom groups together, sorted by key.
    pub async fn list_groups(
        &self,
        tenant_id: &TenantId,
        by: &By,
        page: &Paging,
    ) -> Result<(Vec<GroupView>, String)> {
        let caller = self.caller(tenant_id, by, AdminOp::ViewGroups).await?;
        let custom = self.store.records().list_groups(tenant_id, &page.0).await?;
        let mut system: Vec<&authz_core::catalog::SystemGroup> = self
            .catalog
            .groups()
            .iter()
            .filter(|g| !self.hidden_from(&caller, &g.key))
            .filter(|g| page.after().is_none_or(|a| g.key.as_str() > a))
            .collect();
        system.sort_by(|a, b| a.key.cmp(&b.key));
        let mut merged: Vec<GroupView> = Vec::with_capacity(page.size() + 1);
        for g in system {
            let members = self.store.records().member_count(tenant_id, &g.key).await?;
            merged.push(self.system_view(g, members));
        }
        merged.extend(custom.items.into_iter().map(Self::custom_view));
        merged.sort_by(|a, b| a.def.key.cmp(&b.def.key));
        // Custom groups after the page's last custom one exist when the store said so; system
        // groups past the cut exist when the merge is longer than the page.
        let more = custom.more || merged.len() > page.size();
        merged.truncate(page.size());
        let next = validate::next_page_token(merged.last().map(|g| g.def.key.as_str()), more);
        Ok((
            merged
                .into_iter()
                .map(|g| self.group_for(&caller, g))
                .collect(),
            next,
        ))
    }

    pub async fn update_group(
        &self,
        tenant_id: &TenantId,
        call: &AdminCall,
        key: &GroupKey,
        group: &GroupInput,
        mask: &[String],
        expected_version: Option<u64>,
    ) -> Result<Committed<GroupView>> {
        if self.hidden_from(&Caller::writer(&call.by), key) {
            return Err(Self::no_group(key));
        }
        self.read_only(key)?;
        if !group.key.is_empty() && group.key != key.as_str() {
            return Err(Error::Invalid(format!(
                "group.key `{}` is not group_key `{key}`: a group's key cannot change; leave group.key empty or send the same key",
                group.key
            )));
        }
        if mask.is_empty() {
            return Err(Error::Invalid(
                "update_mask is required: list the fields to change (name, description, permissions, scoped_grants) or \"*\"".to_owned(),
            ));
        }
        let caller = Caller::writer(&call.by);
        let mut patch = GroupPatch::default();
        for path in mask {
            let all = path == "*";
            match path.as_str() {
                "*" | "name" | "description" | "permissions" | "scoped_grants" => {}
                "key" => {
                    return Err(Error::Invalid(
                        "update_mask: a group's key can't be changed; duplicate the group under a new key instead".to_owned(),
                    ));
                }
                other => {
                    return Err(Error::Invalid(format!(
                        "update_mask: unknown field `{other}`; use name, description, permissions, scoped_grants or \"*\""
                    )));
                }
            }
            if all || path == "name" {
                Self::group_name("group.name", &group.name)?;
                patch.name = Some(group.name.clone());
            }
            if all || path == "description" {
                validate::text("group.description", &group.description)?;
                patch.description = Some(group.description.clone());
            }
            if all || path == "permissions" {
                patch.permissions = Some(self.visible_permissions(
                    &caller,
                    "group.permissions",
                    &group.permissions,
                )?);
            }
            if all || path == "scoped_grants" {
                patch.scoped = Some(self.scoped_grants(
                    &caller,
                    "group.scoped_grants",
                    &group.scoped_grants,
                )?);
            }
        }
        // An actor may only put into the group what it holds: the store checks what the change
        // adds against the group as it is inside the write.
        let rule = Rule::new(
            AdminOp::EditGroups,
            Effect::EditGroup {
                group: key.to_string(),
                permissions: patch.permissions.clone(),
                scoped: patch.scoped.clone(),
            },
        );
        self.group_write(
            tenant_id,
            &caller,
            call.mode,
            rule,
            Write::UpdateGroup {
                key,
                patch,
                expected_version,
            },
        )
        .await
    }

    pub async fn delete_group(
        &self,
        tenant_id: &TenantId,
        call: &AdminCall,
        key: &GroupKey,
        expected_version: Option<u64>,
    ) -> Result<Committed<()>> {
        if self.hidden_from(&Caller::writer(&call.by), key) {
            return Err(Self::no_group(key));
        }
        self.read_only(key)?;
        let caller = Caller::writer(&call.by);
        let rule = Rule::new(AdminOp::EditGroups, Effect::Nothing);
        Ok(self
            .commit(
                tenant_id,
                &caller,
                call.mode,
                rule,
                Write::DeleteGroup {
                    key,
                    expected_version,
                },
            )
            .await?
            .nothing())
    }

    pub async fn duplicate_group(
        &self,
        tenant_id: &TenantId,
        call: &AdminCall,
        d: &DuplicateInput,
    ) -> Result<Committed<GroupView>> {
        self.new_group_key("new_key", &d.new_key)?;
        if !d.new_name.is_empty() {
            Self::group_name("new_name", &d.new_name)?;
        }
        let caller = Caller::writer(&call.by);
        if self.hidden_from(&caller, &d.source_group_key) {
            return Err(Self::no_group(&d.source_group_key));
        }
        // An actor copies what it can see of the source: never its internal permissions.
        let source = self.group_for(
            &caller,
            self.get_group(tenant_id, &By::Operator, &d.source_group_key)
                .await?,
        );
        let def = GroupDef {
            key: d.new_key.clone(),
            name: if d.new_name.is_empty() {
                format!("{} (copy)", source.def.name)
            } else {
                d.new_name.clone()
            },
            description: source.def.description.clone(),
            permissions: if d.copy_permissions {
                source.def.permissions.clone()
            } else {
                PermSet::new()
            },
            scoped: if d.copy_scoped_grants {
                source.def.scoped.clone()
            } else {
                Vec::new()
            },
        };
        // Copying members assigns them the new group, so the actor must hold what it gives,
        // within its reach of each member, and may edit users.
        let members_of = d.copy_members.then_some(d.source_group_key.as_str());
        let mut rule = Rule::new(
            AdminOp::EditGroups,
            Effect::NewGroup {
                permissions: def.permissions.clone(),
                scoped: def.scoped.clone(),
                members_of: members_of.map(str::to_owned),
            },
        );
        if d.copy_members {
            rule.ops.push(AdminOp::EditUsers);
        }
        self.group_write(
            tenant_id,
            &caller,
            call.mode,
            rule,
            Write::DuplicateGroup { def, members_of },
        )
        .await
    }

    /// Adds users to a group (`Direction::Add`) or removes them from it: the group as the
    /// caller may name it, the rule the store decides inside the write.
    pub async fn change_members(
        &self,
        tenant_id: &TenantId,
        call: &AdminCall,
        key: &GroupKey,
        user_ids: &UserIds,
        direction: Direction,
    ) -> Result<Committed<()>> {
        let caller = Caller::writer(&call.by);
        if self.hidden_from(&caller, key) {
            return Err(Self::no_group(key));
        }
        let group = self.group_ref(key);
        let users = user_ids.to_vec();
        let (effect, write) = match direction {
            Direction::Add => (
                Effect::Assign {
                    group: key.to_string(),
                    users,
                },
                Write::AddMembers { group, user_ids },
            ),
            Direction::Remove => (
                Effect::TakeFrom { users },
                Write::RemoveMembers { group, user_ids },
            ),
        };
        let rule = Rule::new(AdminOp::EditUsers, effect);
        Ok(self
            .commit(tenant_id, &caller, call.mode, rule, write)
            .await?
            .nothing())
    }

    /// A write that returns a custom group, shown as the caller may see it.
    async fn group_write(
        &self,
        tenant_id: &TenantId,
        caller: &Caller,
        mode: WriteMode,
        rule: Rule,
        write: Write<'_>,
    ) -> Result<Committed<GroupView>> {
        Ok(self
            .commit(tenant_id, caller, mode, rule, write)
            .await?
            .group()?
            .map(|info| self.group_for(caller, Self::custom_view(info))))
    }
}
