//! Audit.

use super::*;

impl Authz {
    /// Audit events, newest first, with the next page token.
    pub async fn list_audit(
        &self,
        tenant_id: &TenantId,
        by: &By,
        filter: AuditFilter,
    ) -> Result<(Vec<Change>, String)> {
        let caller = self.caller(tenant_id, by, AdminOp::ViewAudit).await?;
        if let Some(t) = &filter.target {
            validate::id("filter_target", t)?;
            if !["group:", "user:", "users:"]
                .iter()
                .any(|p| t.starts_with(p))
            {
                return Err(Error::Invalid(format!(
                    "filter_target {t:?} names no target: use group:<key> or user:<id>"
                )));
            }
        }
        if let (Some(since), Some(until)) = (filter.since, filter.until) {
            if since > until {
                return Err(Error::Invalid(
                    "since is after until: no event can match; swap them".to_owned(),
                ));
            }
        }
        let size = filter.page.size();
        let before_revision = match filter.page.after() {
            None => None,
            Some(t) => Some(validate::revision_token(t).ok_or_else(|| {
                Error::Invalid("page_token is not one this server issued; pass next_page_token from the previous response".to_owned())
            })?),
        };
        let query = crate::store::AuditQuery {
            actor: filter.actor.map(UserId::into_string),
            target: filter.target,
            since: filter.since,
            until: filter.until,
            before_revision,
            limit: size + 1,
        };
        let mut events = self.store.records().audit(tenant_id, &query).await?;
        let more = events.len() > size;
        events.truncate(size);
        let next = validate::next_page_token(
            events.last().map(|e| e.revision.to_string()).as_deref(),
            more,
        );
        if caller.is_actor() {
            events.retain(|e| {
                !e.target
                    .strip_prefix("group:")
                    .is_some_and(|g| self.hidden_from(&caller, g))
            });
            for e in &mut events {
                self.scrub(&mut e.before);
                self.scrub(&mut e.after);
            }
        }
        Ok((events, next))
    }

    /// Removes internal groups and permissions from an audit snapshot.
    fn scrub(&self, v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Array(items) => items.retain(|i| {
                i.as_str().is_none_or(|s| {
                    let key = s.split('@').next().unwrap_or(s);
                    let internal_perm = self
                        .catalog
                        .resolve(key)
                        .is_some_and(|p| self.catalog.permission(p).internal);
                    let internal_group = self.catalog.group(s).is_some_and(|g| g.internal);
                    !internal_perm && !internal_group
                })
            }),
            serde_json::Value::Object(map) => {
                map.retain(|k, _| !self.catalog.group(k).is_some_and(|g| g.internal));
                for value in map.values_mut() {
                    self.scrub(value);
                }
            }
            _ => {}
        }
    }
}
