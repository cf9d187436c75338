//! Name resolution.

use super::*;

impl Authz {
    pub(super) fn permission(&self, field: &str, key: &str) -> Result<PermId> {
        if let Some(p) = self.catalog.resolve(key) {
            return Ok(p);
        }
        let hint = authz_core::key::key_from_name(key);
        match self.catalog.resolve(&hint) {
            Some(p) if hint != key => Err(Error::Invalid(format!(
                "{field}: unknown permission `{key}`; did you mean `{}`?",
                self.catalog.key(p)
            ))),
            _ => Err(Self::unknown_permission(field, key)),
        }
    }

    pub(super) fn unknown_permission(field: &str, key: &str) -> Error {
        Error::Invalid(format!(
            "{field}: unknown permission `{key}`; AdminService.ListPermissions lists the catalog's keys"
        ))
    }

    pub(super) fn resource_type(&self, field: &str, key: &str) -> Result<ResourceTypeId> {
        self.catalog.resource_type(key).ok_or_else(|| {
            let known: Vec<&str> = self
                .catalog
                .resource_types()
                .iter()
                .map(|t| t.key.as_str())
                .collect();
            Error::Invalid(format!(
                "{field}: unknown resource type `{key}`; this catalog has: {}",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ))
        })
    }

    pub(super) fn resource(&self, field: &str, r: &ResourceInput) -> Result<ResourceRef> {
        let resource_type = self.resource_type(&format!("{field}.type"), &r.resource_type)?;
        validate::id(&format!("{field}.id"), &r.id)?;
        Ok(ResourceRef {
            resource_type,
            id: r.id.clone(),
        })
    }

    pub(super) fn target<'c>(&'c self, target: Option<&TargetInput>) -> Result<Resolved<'c>> {
        match target {
            None => Err(Error::Invalid(
                "target is required: set one of permission, action or expression".to_owned(),
            )),
            Some(TargetInput::Permission(k)) => Ok(Resolved::Permission(self.permission("permission", k)?)),
            Some(TargetInput::Action(k)) => self.catalog.action(k).map(Resolved::Action).ok_or_else(|| {
                Error::Invalid(format!(
                    "action: unknown action `{k}`; AdminService.ListActions lists the catalog's actions"
                ))
            }),
            Some(TargetInput::Expression(src)) => self
                .catalog
                .parse_expression(src)
                .map(Resolved::Expression)
                .map_err(|e| Error::Invalid(format!("expression: {e}"))),
        }
    }

    /// The system group with this key, or the tenant's custom group reference.
    pub(super) fn group_ref<'k>(&self, key: &'k str) -> GroupRef<'k> {
        match self.catalog.group(key) {
            Some(_) => GroupRef::System(key),
            None => GroupRef::Custom(key),
        }
    }
}
