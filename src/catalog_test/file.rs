//! The test file format: fixtures, cases and the admin operations a case can ask, as TOML
//! with each item's line.

use super::*;

// ---- The file format ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TestFile {
    /// The `name` of the catalog the file is written for; checked when given.
    pub(super) catalog: Option<String>,
    #[serde(default)]
    pub(super) custom_groups: Vec<Spanned<GroupFixture>>,
    #[serde(default)]
    pub(super) users: Vec<Spanned<UserFixture>>,
    #[serde(default)]
    pub(super) checks: Vec<Spanned<CheckCase>>,
    #[serde(default)]
    pub(super) effective: Vec<Spanned<EffectiveCase>>,
    #[serde(default)]
    pub(super) admin_calls: Vec<Spanned<AdminCase>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GroupFixture {
    pub(super) key: String,
    /// Defaults to the key.
    pub(super) name: Option<String>,
    #[serde(default)]
    pub(super) description: String,
    #[serde(default)]
    pub(super) permissions: Vec<String>,
    /// Scoped grants, `permission@type:id`.
    #[serde(default)]
    pub(super) scoped: Vec<String>,
}

#[derive(Deserialize, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(super) enum Status {
    #[default]
    Active,
    Blocked,
}

impl From<Status> for UserStatus {
    fn from(s: Status) -> Self {
        match s {
            Status::Active => UserStatus::Active,
            Status::Blocked => UserStatus::Blocked,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UserFixture {
    pub(super) id: String,
    #[serde(default)]
    pub(super) status: Status,
    /// System and custom groups.
    #[serde(default)]
    pub(super) groups: Vec<String>,
    /// Unscoped direct grants.
    #[serde(default)]
    pub(super) permissions: Vec<String>,
    /// Scoped direct grants, `permission@type:id`.
    #[serde(default)]
    pub(super) scoped: Vec<String>,
    /// Resource type → the only resources of that type the user may use.
    #[serde(default)]
    pub(super) restrictions: BTreeMap<String, Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CheckCase {
    pub(super) name: Option<String>,
    pub(super) user: String,
    pub(super) permission: Option<String>,
    pub(super) action: Option<String>,
    pub(super) expression: Option<String>,
    /// `type:id`.
    pub(super) resource: Option<String>,
    #[serde(default)]
    pub(super) context: BTreeMap<String, bool>,
    pub(super) allowed: Option<bool>,
    /// The exact missing permissions (any order).
    pub(super) missing: Option<Vec<String>>,
    pub(super) denied_by_restriction: Option<bool>,
    /// The check is answered with an error whose message contains this.
    pub(super) error: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EffectiveCase {
    pub(super) name: Option<String>,
    pub(super) user: String,
    /// The exact set of unscoped effective permissions.
    pub(super) permissions: Option<Vec<String>>,
    #[serde(default)]
    pub(super) includes: Vec<String>,
    #[serde(default)]
    pub(super) excludes: Vec<String>,
    /// The exact set of roles.
    pub(super) roles: Option<Vec<String>>,
    /// The exact set of scoped grants, `permission@type:id`.
    pub(super) scoped: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AdminCase {
    pub(super) name: Option<String>,
    pub(super) actor: String,
    /// Refused (or not) by the admin rules.
    pub(super) refused: Option<bool>,
    /// With `refused = true`: text the refusal contains.
    pub(super) reason: Option<String>,
    /// The call fails, for whatever reason, with a message containing this.
    pub(super) error: Option<String>,
    pub(super) grant_permissions: Option<GrantOp>,
    pub(super) revoke_permissions: Option<GrantOp>,
    pub(super) create_group: Option<CreateGroupOp>,
    pub(super) update_group: Option<UpdateGroupOp>,
    pub(super) delete_group: Option<GroupOp>,
    pub(super) duplicate_group: Option<DuplicateGroupOp>,
    pub(super) add_group_members: Option<MembersOp>,
    pub(super) remove_group_members: Option<MembersOp>,
    pub(super) set_user_status: Option<StatusOp>,
    pub(super) set_restrictions: Option<RestrictOp>,
    pub(super) upsert_user: Option<ProfileOp>,
    pub(super) import_users: Option<ImportOp>,
    pub(super) get_user: Option<UserOp>,
    pub(super) list_users: Option<ListUsersOp>,
    pub(super) get_group: Option<GroupOp>,
    pub(super) list_groups: Option<NoOperands>,
    pub(super) list_audit_events: Option<NoOperands>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GrantOp {
    pub(super) user: String,
    pub(super) permissions: Vec<String>,
    /// `type:id`: the grant is scoped to this resource.
    pub(super) resource: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateGroupOp {
    pub(super) key: String,
    pub(super) name: Option<String>,
    #[serde(default)]
    pub(super) description: String,
    #[serde(default)]
    pub(super) permissions: Vec<String>,
    #[serde(default)]
    pub(super) scoped: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UpdateGroupOp {
    pub(super) group: String,
    pub(super) name: Option<String>,
    pub(super) description: Option<String>,
    pub(super) permissions: Option<Vec<String>>,
    pub(super) scoped: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GroupOp {
    pub(super) group: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DuplicateGroupOp {
    pub(super) group: String,
    pub(super) new_key: String,
    #[serde(default)]
    pub(super) new_name: String,
    #[serde(default)]
    pub(super) copy_permissions: bool,
    #[serde(default)]
    pub(super) copy_scoped_grants: bool,
    #[serde(default)]
    pub(super) copy_members: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MembersOp {
    pub(super) group: String,
    pub(super) users: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StatusOp {
    pub(super) user: String,
    pub(super) status: Status,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RestrictOp {
    pub(super) user: String,
    pub(super) resource_type: String,
    #[serde(default)]
    pub(super) ids: Vec<String>,
    #[serde(default)]
    pub(super) clear: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ProfileOp {
    pub(super) user: String,
    #[serde(default)]
    pub(super) display_name: String,
    #[serde(default)]
    pub(super) email: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ImportOp {
    pub(super) rows: Vec<ImportRow>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ImportRow {
    pub(super) user: String,
    #[serde(default)]
    pub(super) display_name: String,
    #[serde(default)]
    pub(super) email: String,
    #[serde(default)]
    pub(super) groups: Vec<String>,
    #[serde(default)]
    pub(super) permissions: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UserOp {
    pub(super) user: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListUsersOp {
    pub(super) group: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NoOperands {}

/// The one operation an admin case names.
pub(super) enum Op<'a> {
    Grant(&'a GrantOp),
    Revoke(&'a GrantOp),
    CreateGroup(&'a CreateGroupOp),
    UpdateGroup(&'a UpdateGroupOp),
    DeleteGroup(&'a GroupOp),
    DuplicateGroup(&'a DuplicateGroupOp),
    AddMembers(&'a MembersOp),
    RemoveMembers(&'a MembersOp),
    SetStatus(&'a StatusOp),
    Restrict(&'a RestrictOp),
    Upsert(&'a ProfileOp),
    Import(&'a ImportOp),
    GetUser(&'a UserOp),
    ListUsers(&'a ListUsersOp),
    GetGroup(&'a GroupOp),
    ListGroups,
    ListAudit,
}

impl AdminCase {
    /// Every operation an admin case may name, with what this case sets for it.
    pub(super) fn slots(&self) -> [(&'static str, Option<Op<'_>>); 17] {
        /// `(field name, the field's operation)`, for each field.
        macro_rules! slots {
            ($($field:ident => $op:expr),* $(,)?) => {
                [$((stringify!($field), self.$field.as_ref().map($op))),*]
            };
        }
        slots![
            grant_permissions => Op::Grant,
            revoke_permissions => Op::Revoke,
            create_group => Op::CreateGroup,
            update_group => Op::UpdateGroup,
            delete_group => Op::DeleteGroup,
            duplicate_group => Op::DuplicateGroup,
            add_group_members => Op::AddMembers,
            remove_group_members => Op::RemoveMembers,
            set_user_status => Op::SetStatus,
            set_restrictions => Op::Restrict,
            upsert_user => Op::Upsert,
            import_users => Op::Import,
            get_user => Op::GetUser,
            list_users => Op::ListUsers,
            get_group => Op::GetGroup,
            list_groups => |_| Op::ListGroups,
            list_audit_events => |_| Op::ListAudit,
        ]
    }

    /// The operations the case names, with their keys.
    pub(super) fn operations(&self) -> Vec<(&'static str, Op<'_>)> {
        self.slots()
            .into_iter()
            .filter_map(|(key, op)| op.map(|op| (key, op)))
            .collect()
    }

    /// The case's operation, once validation has made sure there is exactly one.
    pub(super) fn operation(&self) -> Option<(&'static str, Op<'_>)> {
        self.operations().into_iter().next()
    }
}

/// One expectation of the file.
#[derive(Clone, Copy)]
pub(super) enum Case<'a> {
    Check(&'a CheckCase),
    Effective(&'a EffectiveCase),
    Admin(&'a AdminCase),
}

impl TestFile {
    /// Every case with its line, in the order of the file.
    pub(super) fn cases(&self, lines: &Lines) -> Vec<(usize, Case<'_>)> {
        let mut cases: Vec<(usize, Case<'_>)> = self
            .checks
            .iter()
            .map(|c| (lines.of(c), Case::Check(c.get_ref())))
            .chain(
                self.effective
                    .iter()
                    .map(|c| (lines.of(c), Case::Effective(c.get_ref()))),
            )
            .chain(
                self.admin_calls
                    .iter()
                    .map(|c| (lines.of(c), Case::Admin(c.get_ref()))),
            )
            .collect();
        cases.sort_by_key(|(line, _)| *line);
        cases
    }
}

impl Case<'_> {
    /// The array the case is written in.
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Case::Check(_) => "checks",
            Case::Effective(_) => "effective",
            Case::Admin(_) => "admin_calls",
        }
    }

    /// The case's `name`, or one made of what it asks.
    pub(super) fn name(&self) -> String {
        match self {
            Case::Check(c) => c.name.clone().unwrap_or_else(|| {
                let target = c
                    .action
                    .as_deref()
                    .or(c.permission.as_deref())
                    .or(c.expression.as_deref())
                    .unwrap_or("");
                let mut name = format!("{}: {target}", c.user);
                if let Some(r) = &c.resource {
                    name.push_str(&format!(" on {r}"));
                }
                let set: Vec<&str> = c
                    .context
                    .iter()
                    .filter(|(_, v)| **v)
                    .map(|(k, _)| k.as_str())
                    .collect();
                if !set.is_empty() {
                    name.push_str(&format!(" with {}", set.join(", ")));
                }
                name
            }),
            Case::Effective(c) => c
                .name
                .clone()
                .unwrap_or_else(|| format!("{}: effective permissions", c.user)),
            Case::Admin(c) => c.name.clone().unwrap_or_else(|| {
                let op = c.operations().first().map_or("(no operation)", |(k, _)| *k);
                format!("{}: {op}", c.actor)
            }),
        }
    }

    /// `checks "name"`, for messages.
    pub(super) fn label(&self) -> String {
        format!("{} {:?}", self.kind(), self.name())
    }
}

/// Line numbers of byte offsets.
pub(super) struct Lines {
    pub(super) starts: Vec<usize>,
}

impl Lines {
    pub(super) fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self { starts }
    }

    pub(super) fn of<T>(&self, item: &Spanned<T>) -> usize {
        let at = item.span().start;
        self.starts.partition_point(|s| *s <= at).max(1)
    }
}
