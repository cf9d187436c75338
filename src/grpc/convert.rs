//! Conversions between protobuf messages and the application's types.

use super::pb;
use crate::app::{Checked, GroupInput, GroupView, ResourceInput};
use crate::error::{Error, Result};
use crate::store::{Consistency, Revision, TenantInfo, UserInfo};
use authz_core::Catalog;
use authz_core::decide::{Explanation, UserState};
use authz_core::model::{ResourceRef, Restriction, ScopedGrant, UserStatus};

pub fn revision(r: Revision) -> String {
    r.to_string()
}

/// The decision enum JSON always shows (proto3 JSON leaves out `allowed: false`).
pub fn decision(allowed: bool) -> pb::Decision {
    if allowed {
        pb::Decision::Allowed
    } else {
        pb::Decision::Denied
    }
}

/// The Watch response's initial metadata: the revision the stream starts after.
pub const WATCH_AFTER_REVISION: &str = "authz-after-revision";

pub fn consistency(c: Option<pb::Consistency>) -> Result<Consistency> {
    use pb::consistency::Requirement;
    Ok(match c.and_then(|c| c.requirement) {
        None | Some(Requirement::MinimizeLatency(_)) => Consistency::MinimizeLatency,
        Some(Requirement::FullyConsistent(true)) => Consistency::Full,
        Some(Requirement::FullyConsistent(false)) => Consistency::MinimizeLatency,
        Some(Requirement::AtLeastAsFresh(token)) => match crate::validate::revision_token(&token) {
            Some(r) if r > 0 => Consistency::AtLeast(r),
            _ => {
                return Err(Error::Invalid(format!(
                    "consistency.at_least_as_fresh {token:?} is not a revision token; pass the `revision` string a write or check returned"
                )));
            }
        },
    })
}

pub fn resource_in(r: Option<pb::Resource>) -> Option<ResourceInput> {
    r.map(|r| ResourceInput {
        resource_type: r.r#type,
        id: r.id,
    })
}

pub fn resource_out(catalog: &Catalog, r: &ResourceRef) -> pb::Resource {
    pb::Resource {
        r#type: catalog.resource_type_key(r.resource_type).to_owned(),
        id: r.id.clone(),
    }
}

pub fn scoped_out(catalog: &Catalog, s: &ScopedGrant) -> pb::ScopedGrant {
    pb::ScopedGrant {
        permission: catalog.key(s.permission).to_owned(),
        resource: Some(resource_out(catalog, &s.resource)),
    }
}

pub fn restriction_out(catalog: &Catalog, r: &Restriction) -> pb::Restriction {
    pb::Restriction {
        resource_type: catalog.resource_type_key(r.resource_type).to_owned(),
        resource_ids: r.ids.iter().cloned().collect(),
    }
}

pub fn missing(catalog: &Catalog, checked: &Checked) -> Vec<String> {
    checked
        .decision
        .missing
        .iter()
        .map(|p| catalog.key(*p).to_owned())
        .collect()
}

pub fn restriction_denial(catalog: &Catalog, checked: &Checked) -> Option<pb::RestrictionDenial> {
    checked
        .decision
        .denied_by_restriction
        .as_ref()
        .map(|d| pb::RestrictionDenial {
            resource_type: catalog.resource_type_key(d.resource_type).to_owned(),
            allowed_ids: d.allowed_ids.clone(),
            allowed_count: i32::try_from(d.allowed_count).unwrap_or(i32::MAX),
        })
}

pub fn user_state(s: UserState) -> &'static str {
    match s {
        UserState::Active => "active",
        UserState::Blocked => "blocked",
        UserState::Unknown => "unknown",
    }
}

pub fn explanation(
    catalog: &Catalog,
    e: &Explanation,
    resource: Option<&ResourceRef>,
) -> pb::Explanation {
    pb::Explanation {
        summary: e.summary.clone(),
        user_status: user_state(e.user).to_owned(),
        permissions: e
            .permissions
            .iter()
            .map(|t| pb::PermissionTrace {
                permission: catalog.key(t.permission).to_owned(),
                held: t.held,
                sources: t
                    .sources
                    .iter()
                    .map(|s| s.render(catalog, resource))
                    .collect(),
            })
            .collect(),
        denied_by_restriction: e
            .denied_by_restriction
            .as_ref()
            .map(|r| resource_out(catalog, r)),
        failed_parts: e.failed_parts.clone(),
    }
}

pub fn timestamp(t: std::time::SystemTime) -> prost_types::Timestamp {
    prost_types::Timestamp::from(t)
}

pub fn tenant(t: TenantInfo) -> pb::Tenant {
    pb::Tenant {
        tenant_id: t.tenant_id,
        display_name: t.display_name,
        create_time: Some(timestamp(t.created_at)),
        revision: revision(t.revision),
    }
}

pub fn status_out(s: UserStatus) -> pb::UserStatus {
    match s {
        UserStatus::Active => pb::UserStatus::Active,
        UserStatus::Blocked => pb::UserStatus::Blocked,
    }
}

pub fn status_in(value: i32) -> Result<Option<UserStatus>> {
    match pb::UserStatus::try_from(value) {
        Ok(pb::UserStatus::Active) => Ok(Some(UserStatus::Active)),
        Ok(pb::UserStatus::Blocked) => Ok(Some(UserStatus::Blocked)),
        Ok(pb::UserStatus::Unspecified) => Ok(None),
        Err(_) => Err(Error::Invalid(format!(
            "status {value} is not a user status; use ACTIVE or BLOCKED"
        ))),
    }
}

pub fn user(catalog: &Catalog, tenant_id: &str, u: UserInfo, roles: Vec<String>) -> pb::User {
    pb::User {
        tenant_id: tenant_id.to_owned(),
        user_id: u.user_id,
        display_name: u.display_name,
        email: u.email,
        status: status_out(u.status).into(),
        group_keys: u.groups,
        direct_permissions: catalog.keys(&u.direct).map(str::to_owned).collect(),
        scoped_grants: u.scoped.iter().map(|s| scoped_out(catalog, s)).collect(),
        restrictions: u
            .restrictions
            .iter()
            .map(|r| restriction_out(catalog, r))
            .collect(),
        roles,
    }
}

pub fn group(catalog: &Catalog, g: GroupView) -> pb::Group {
    pb::Group {
        permissions: catalog
            .keys(&g.def.permissions)
            .map(str::to_owned)
            .collect(),
        scoped_grants: g
            .def
            .scoped
            .iter()
            .map(|s| scoped_out(catalog, s))
            .collect(),
        key: g.def.key,
        name: g.def.name,
        description: g.def.description,
        system: g.system,
        internal: g.internal,
        member_count: i64::try_from(g.member_count).unwrap_or(i64::MAX),
        version: i64::try_from(g.version).unwrap_or(i64::MAX),
    }
}

/// One row of ImportUsers, as sent.
pub fn import_row(row: pb::ImportRow) -> crate::app::ImportInput {
    crate::app::ImportInput {
        user_id: row.user_id,
        display_name: row.display_name,
        email: row.email,
        group_keys: row.group_keys,
        permissions: row.permissions,
    }
}

pub fn group_in(g: Option<pb::Group>) -> GroupInput {
    let g = g.unwrap_or_default();
    GroupInput {
        key: g.key,
        name: g.name,
        description: g.description,
        permissions: g.permissions,
        scoped_grants: g
            .scoped_grants
            .into_iter()
            .map(|s| {
                let r = s.resource.unwrap_or_default();
                (
                    s.permission,
                    ResourceInput {
                        resource_type: r.r#type,
                        id: r.id,
                    },
                )
            })
            .collect(),
    }
}

/// `expected_version` on the wire: 0 means "no check".
pub fn expected_version(v: i64) -> Result<Option<u64>> {
    match v {
        0 => Ok(None),
        v if v < 0 => Err(Error::Invalid(format!(
            "expected_version {v} is negative; versions start at 1"
        ))),
        v => Ok(Some(u64::try_from(v).unwrap_or(0))),
    }
}

/// JSON to a protobuf Struct (objects) or Value, for audit snapshots.
pub fn json_value(v: &serde_json::Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match v {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(*b),
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
        serde_json::Value::String(s) => Kind::StringValue(s.clone()),
        serde_json::Value::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.iter().map(json_value).collect(),
        }),
        serde_json::Value::Object(_) => Kind::StructValue(json_struct(v)),
    };
    prost_types::Value { kind: Some(kind) }
}

pub fn json_struct(v: &serde_json::Value) -> prost_types::Struct {
    prost_types::Struct {
        fields: v
            .as_object()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), json_value(v))).collect())
            .unwrap_or_default(),
    }
}

pub fn time_in(
    field: &str,
    t: Option<prost_types::Timestamp>,
) -> Result<Option<std::time::SystemTime>> {
    t.map(|t| {
        std::time::SystemTime::try_from(t)
            .map_err(|e| Error::Invalid(format!("{field} is not a valid time: {e}")))
    })
    .transpose()
}

pub fn audit_event(c: crate::store::Change) -> pb::AuditEvent {
    pb::AuditEvent {
        revision: revision(c.revision),
        time: Some(timestamp(c.committed_at)),
        operator: c.actor.is_none(),
        actor_user_id: c.actor.unwrap_or_default(),
        operation: c.operation,
        target: c.target,
        before: Some(json_struct(&c.before)),
        after: Some(json_struct(&c.after)),
        tenant_id: c.tenant_id,
    }
}

/// A preview as its caller may see it: to an actor (`hide_internal`), internal permissions
/// are left out, and so is a user whose only change is internal.
pub fn preview(catalog: &Catalog, p: &crate::store::Preview, hide_internal: bool) -> pb::Preview {
    let visible = |id: &authz_core::PermId| !(hide_internal && catalog.permission(*id).internal);
    let keys = |set: &authz_core::PermSet| -> Vec<String> {
        set.iter()
            .filter(visible)
            .map(|id| catalog.key(id).to_owned())
            .collect()
    };
    let scoped = |list: &[ScopedGrant]| -> Vec<pb::ScopedGrant> {
        list.iter()
            .filter(|g| visible(&g.permission))
            .map(|g| scoped_out(catalog, g))
            .collect()
    };
    let ids = |set: &Option<std::collections::BTreeSet<String>>| -> Vec<String> {
        set.iter().flatten().cloned().collect()
    };
    pb::Preview {
        affected_users: p
            .affected_users
            .iter()
            .map(|u| pb::AffectedUser {
                user_id: u.user_id.clone(),
                added: keys(&u.added),
                removed: keys(&u.removed),
                roles_added: u.roles_added.clone(),
                roles_removed: u.roles_removed.clone(),
                scoped_added: scoped(&u.scoped_added),
                scoped_removed: scoped(&u.scoped_removed),
                limits: u
                    .limits
                    .iter()
                    .map(|l| pb::LimitChange {
                        resource_type: catalog.resource_type_key(l.resource_type).to_owned(),
                        limited_before: l.before.is_some(),
                        before_ids: ids(&l.before),
                        limited_after: l.after.is_some(),
                        after_ids: ids(&l.after),
                    })
                    .collect(),
            })
            .filter(|u| {
                !(u.added.is_empty()
                    && u.removed.is_empty()
                    && u.roles_added.is_empty()
                    && u.roles_removed.is_empty()
                    && u.scoped_added.is_empty()
                    && u.scoped_removed.is_empty()
                    && u.limits.is_empty())
            })
            .collect(),
        truncated: p.truncated,
    }
}
