//! Import.

use super::*;

impl Authz {
    /// Validates every row, then applies them all in one write or none; the store decides the
    /// admin rules per row inside that write. A refused import lists each row's problems.
    pub async fn import_users(
        &self,
        tenant_id: &TenantId,
        call: &AdminCall,
        rows: &[ImportInput],
    ) -> Result<Committed<usize>> {
        if rows.is_empty() {
            return Err(Error::Invalid(
                "rows is empty; send at least one user".to_owned(),
            ));
        }
        validate::list_len("rows", rows.len())?;
        let caller = Caller::writer(&call.by);
        let mut groups: HashMap<String, std::result::Result<Arc<GroupGrants>, String>> =
            HashMap::new();
        let mut seen: HashMap<&str, usize> = HashMap::new();
        let mut problems: Vec<String> = Vec::new();
        let mut concealed = false;
        let mut valid: Vec<ImportRow> = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            let mut errors: Vec<String> = Vec::new();
            let mut note = |e: Error, errors: &mut Vec<String>| {
                concealed |= matches!(e, Error::Concealed(_));
                errors.push(e.to_string());
            };
            if let Err(e) = validate::id("user_id", &row.user_id) {
                note(e, &mut errors);
            } else if let Some(first) = seen.insert(&row.user_id, i + 1) {
                note(
                    Error::Invalid(format!("user `{}` is also in row {first}", row.user_id)),
                    &mut errors,
                );
            }
            for (field, text) in [("display_name", &row.display_name), ("email", &row.email)] {
                if let Err(e) = validate::text(field, text) {
                    note(e, &mut errors);
                }
            }
            for key in &row.group_keys {
                if let Err(e) = validate::group_key("group_keys", key) {
                    note(e, &mut errors);
                    continue;
                }
                if !groups.contains_key(key) {
                    let found = if self.hidden_from(&caller, key) {
                        Err(format!("group `{key}` does not exist in this tenant"))
                    } else {
                        self.group_grants(tenant_id, key)
                            .await
                            .map_err(|e| e.to_string())
                    };
                    groups.insert(key.clone(), found);
                }
                if let Some(Err(msg)) = groups.get(key) {
                    let missing = Error::Invalid(msg.clone());
                    if self.hidden_from(&caller, key) {
                        note(Error::Concealed(Box::new(missing)), &mut errors);
                    } else {
                        note(missing, &mut errors);
                    }
                }
            }
            let direct = match self.visible_permissions(&caller, "permissions", &row.permissions) {
                Ok(set) => set,
                Err(e) => {
                    note(e, &mut errors);
                    PermSet::new()
                }
            };
            if errors.is_empty() {
                valid.push(ImportRow {
                    user_id: row.user_id.clone(),
                    display_name: row.display_name.clone(),
                    email: row.email.clone(),
                    groups: row.group_keys.clone(),
                    direct,
                });
            } else {
                problems.push(format!(
                    "row {} (`{}`): {}",
                    i + 1,
                    row.user_id,
                    errors.join("; ")
                ));
            }
        }
        if !problems.is_empty() {
            const SHOWN: usize = 20;
            let more = problems.len().saturating_sub(SHOWN);
            let mut msg = format!(
                "import refused, nothing applied: {} of {} rows have problems: {}",
                problems.len(),
                rows.len(),
                problems[..problems.len().min(SHOWN)].join(" | ")
            );
            if more > 0 {
                msg.push_str(&format!(" | and {more} more"));
            }
            // Naming an internal group or permission reads as "does not exist", and counts as
            // a refused attempt.
            let refused = Error::Invalid(msg);
            return Err(if concealed {
                Error::Concealed(Box::new(refused))
            } else {
                refused
            });
        }
        // Delegation and reach are decided per row by the store, inside the write.
        let rule = Rule::new(
            AdminOp::EditUsers,
            Effect::Import {
                rows: valid
                    .iter()
                    .map(|r| ImportGrant {
                        user_id: r.user_id.clone(),
                        groups: r.groups.clone(),
                        direct: r.direct.clone(),
                        profile: !r.display_name.is_empty() || !r.email.is_empty(),
                    })
                    .collect(),
            },
        );
        let done = self
            .commit(
                tenant_id,
                &caller,
                call.mode,
                rule,
                Write::ImportUsers { rows: &valid },
            )
            .await?;
        Ok(done.map(|_| valid.len()))
    }
}
