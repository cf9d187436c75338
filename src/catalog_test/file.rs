//! The test file format: fixtures, cases and the admin operations a case can ask, as TOML
//! with each item's line.

use super::*;

// ---- The file format ----

/// The structs of the file format, each field visible to the runner; a key the format does not
/// know is an error, so a misspelt expectation never passes silently.
macro_rules! file_format {
    ($($(#[$attr:meta])* struct $name:ident {
        $($(#[$fattr:meta])* $field:ident: $ty:ty),* $(,)?
    })*) => {
        $(
            $(#[$attr])*
            #[derive(Deserialize)]
            #[serde(deny_unknown_fields)]
            pub(super) struct $name {
                $($(#[$fattr])* pub(super) $field: $ty),*
            }
        )*
    };
}

file_format! {
    struct TestFile {
        /// The `name` of the catalog the file is written for; checked when given.
        catalog: Option<String>,
        #[serde(default)]
        custom_groups: Vec<Spanned<GroupFixture>>,
        #[serde(default)]
        users: Vec<Spanned<UserFixture>>,
        #[serde(default)]
        checks: Vec<Spanned<CheckCase>>,
        #[serde(default)]
        effective: Vec<Spanned<EffectiveCase>>,
        #[serde(default)]
        admin_calls: Vec<Spanned<AdminCase>>,
    }

    struct GroupFixture {
        key: String,
        /// Defaults to the key.
        name: Option<String>,
        #[serde(default)]
        description: String,
        #[serde(default)]
        permissions: Vec<String>,
        /// Scoped grants, `permission@type:id`.
        #[serde(default)]
        scoped: Vec<String>,
    }

    struct UserFixture {
        id: String,
        #[serde(default)]
        status: Status,
        /// System and custom groups.
        #[serde(default)]
        groups: Vec<String>,
        /// Unscoped direct grants.
        #[serde(default)]
        permissions: Vec<String>,
        /// Scoped direct grants, `permission@type:id`.
        #[serde(default)]
        scoped: Vec<String>,
        /// Resource type → the only resources of that type the user may use.
        #[serde(default)]
        restrictions: BTreeMap<String, Vec<String>>,
    }

    struct CheckCase {
        name: Option<String>,
        user: String,
        permission: Option<String>,
        action: Option<String>,
        expression: Option<String>,
        /// `type:id`.
        resource: Option<String>,
        #[serde(default)]
        context: BTreeMap<String, bool>,
        allowed: Option<bool>,
        /// The exact missing permissions (any order).
        missing: Option<Vec<String>>,
        denied_by_restriction: Option<bool>,
        /// The check is answered with an error whose message contains this.
        error: Option<String>,
    }

    struct EffectiveCase {
        name: Option<String>,
        user: String,
        /// The exact set of unscoped effective permissions.
        permissions: Option<Vec<String>>,
        #[serde(default)]
        includes: Vec<String>,
        #[serde(default)]
        excludes: Vec<String>,
        /// The exact set of roles.
        roles: Option<Vec<String>>,
        /// The exact set of scoped grants, `permission@type:id`.
        scoped: Option<Vec<String>>,
    }

    struct AdminCase {
        name: Option<String>,
        actor: String,
        /// Refused (or not) by the admin rules.
        refused: Option<bool>,
        /// With `refused = true`: text the refusal contains.
        reason: Option<String>,
        /// The call fails, for whatever reason, with a message containing this.
        error: Option<String>,
        grant_permissions: Option<GrantOp>,
        revoke_permissions: Option<GrantOp>,
        create_group: Option<CreateGroupOp>,
        update_group: Option<UpdateGroupOp>,
        delete_group: Option<GroupOp>,
        duplicate_group: Option<DuplicateGroupOp>,
        add_group_members: Option<MembersOp>,
        remove_group_members: Option<MembersOp>,
        set_user_status: Option<StatusOp>,
        set_restrictions: Option<RestrictOp>,
        upsert_user: Option<ProfileOp>,
        import_users: Option<ImportOp>,
        get_user: Option<UserOp>,
        list_users: Option<ListUsersOp>,
        get_group: Option<GroupOp>,
        list_groups: Option<NoOperands>,
        list_audit_events: Option<NoOperands>,
    }

    struct GrantOp {
        user: String,
        permissions: Vec<String>,
        /// `type:id`: the grant is scoped to this resource.
        resource: Option<String>,
    }

    struct CreateGroupOp {
        key: String,
        name: Option<String>,
        #[serde(default)]
        description: String,
        #[serde(default)]
        permissions: Vec<String>,
        #[serde(default)]
        scoped: Vec<String>,
    }

    struct UpdateGroupOp {
        group: String,
        name: Option<String>,
        description: Option<String>,
        permissions: Option<Vec<String>>,
        scoped: Option<Vec<String>>,
    }

    struct GroupOp {
        group: String,
    }

    struct DuplicateGroupOp {
        group: String,
        new_key: String,
        #[serde(default)]
        new_name: String,
        #[serde(default)]
        copy_permissions: bool,
        #[serde(default)]
        copy_scoped_grants: bool,
        #[serde(default)]
        copy_members: bool,
    }

    struct MembersOp {
        group: String,
        users: Vec<String>,
    }

    struct StatusOp {
        user: String,
        status: Status,
    }

    struct RestrictOp {
        user: String,
        resource_type: String,
        #[serde(default)]
        ids: Vec<String>,
        #[serde(default)]
        clear: bool,
    }

    struct ProfileOp {
        user: String,
        #[serde(default)]
        display_name: String,
        #[serde(default)]
        email: String,
    }

    struct ImportOp {
        rows: Vec<ImportRow>,
    }

    struct ImportRow {
        user: String,
        #[serde(default)]
        display_name: String,
        #[serde(default)]
        email: String,
        #[serde(default)]
        groups: Vec<String>,
        #[serde(default)]
        permissions: Vec<String>,
    }

    struct UserOp {
        user: String,
    }

    struct ListUsersOp {
        group: Option<String>,
    }

    struct NoOperands {}
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

/// The one operation an admin case names.
pub(super) enum Op<'a> {
    Grants(Direction, &'a GrantOp),
    CreateGroup(&'a CreateGroupOp),
    UpdateGroup(&'a UpdateGroupOp),
    DeleteGroup(&'a GroupOp),
    DuplicateGroup(&'a DuplicateGroupOp),
    Members(Direction, &'a MembersOp),
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
            grant_permissions => |g| Op::Grants(Direction::Add, g),
            revoke_permissions => |g| Op::Grants(Direction::Remove, g),
            create_group => Op::CreateGroup,
            update_group => Op::UpdateGroup,
            delete_group => Op::DeleteGroup,
            duplicate_group => Op::DuplicateGroup,
            add_group_members => |m| Op::Members(Direction::Add, m),
            remove_group_members => |m| Op::Members(Direction::Remove, m),
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
