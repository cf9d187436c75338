//! Checks.

use super::*;

impl Authz {
    /// The user's subject: from memory when the store can answer at once, else from the
    /// store's (boxed) read.
    async fn subject(
        &self,
        tenant_id: &TenantId,
        user_id: &str,
        consistency: Consistency,
    ) -> Result<(Subject, Revision)> {
        if let Some(found) = self.store.subject_now(tenant_id, user_id, consistency) {
            return Ok(found?);
        }
        Ok(self.store.subject(tenant_id, user_id, consistency).await?)
    }

    /// Validates a check and resolves its names, before any store work.
    fn prepare<'c>(&'c self, input: &CheckInput) -> Result<Prepared<'c>> {
        validate::id("user_id", &input.user_id)?;
        if input.context.len() > MAX_CONTEXT_FLAGS {
            return Err(Error::Invalid(format!(
                "context has {} flags; the limit is {MAX_CONTEXT_FLAGS}",
                input.context.len()
            )));
        }
        // A misspelt flag would silently read as false and could drop a requirement: refuse it.
        if let Some(unknown) = input
            .context
            .keys()
            .find(|k| self.catalog.flag(k).is_none())
        {
            let declared = self.catalog.context_flags().iter().map(|f| f.key.as_str());
            let hint = match authz_core::key::closest(unknown, declared) {
                Some(close) => format!("did you mean `{close}`? "),
                None => String::new(),
            };
            return Err(Error::Invalid(format!(
                "context flag {unknown:?} is not declared in the catalog; {hint}GetCatalog lists the context_flags"
            )));
        }
        let target = self.target(input.target.as_ref())?;
        // Every flag the requirement tests needs a value (sent, or the catalog's default):
        // refused here, before any store work, whoever the user is.
        decide::FlagValues::resolve(&self.catalog, target.as_target(), |k| {
            input.context.get(k).copied()
        })
        .map_err(|e| Error::Invalid(e.to_string()))?;
        let resource = input
            .resource
            .as_ref()
            .map(|r| self.resource("resource", r))
            .transpose()?;
        Ok(Prepared { target, resource })
    }

    fn decide(
        &self,
        subject: &Subject,
        input: &CheckInput,
        prepared: Prepared<'_>,
    ) -> Result<Checked> {
        let query = Query {
            target: prepared.target.as_target(),
            resource: prepared.resource.as_ref(),
            context: |f: &str| input.context.get(f).copied(),
            explain: input.explain,
        };
        let decision = decide::decide(&self.catalog, subject, &query)
            .map_err(|e| Error::Invalid(e.to_string()))?;
        Ok(Checked {
            decision,
            resource: prepared.resource,
        })
    }

    /// [`Authz::check`] as far as it goes without waiting: decided when the store can answer
    /// at once (a cache hit; the store in memory), else the validated check, for
    /// [`Authz::check_read`] to finish.
    pub fn check_now(
        &self,
        tenant_id: &TenantId,
        input: &CheckInput,
        consistency: Consistency,
    ) -> CheckNow<'_> {
        let prepared = match self.prepare(input) {
            Ok(prepared) => prepared,
            Err(e) => return CheckNow::Decided(Err(e)),
        };
        let Some(found) = self
            .store
            .subject_now(tenant_id, &input.user_id, consistency)
        else {
            return CheckNow::Read(PendingCheck(prepared));
        };
        CheckNow::Decided(found.map_err(Error::from).and_then(|(subject, revision)| {
            Ok((self.decide(&subject, input, prepared)?, revision))
        }))
    }

    /// Finishes a check [`Authz::check_now`] could not decide: the store reads the user.
    pub async fn check_read(
        &self,
        tenant_id: &TenantId,
        input: &CheckInput,
        consistency: Consistency,
        pending: PendingCheck<'_>,
    ) -> Result<(Checked, Revision)> {
        let (subject, revision) = self
            .store
            .subject(tenant_id, &input.user_id, consistency)
            .await?;
        Ok((self.decide(&subject, input, pending.0)?, revision))
    }

    pub async fn check(
        &self,
        tenant_id: &TenantId,
        input: &CheckInput,
        consistency: Consistency,
    ) -> Result<(Checked, Revision)> {
        match self.check_now(tenant_id, input, consistency) {
            CheckNow::Decided(decided) => decided,
            CheckNow::Read(pending) => {
                self.check_read(tenant_id, input, consistency, pending)
                    .await
            }
        }
    }

    /// Decides every item; an invalid item gets its own error and the rest still answer.
    /// Each distinct user is loaded once. The revision is the oldest any item was decided at.
    pub async fn batch_check(
        &self,
        tenant_id: &TenantId,
        items: &[CheckInput],
        consistency: Consistency,
    ) -> Result<(Vec<Result<Checked>>, Revision)> {
        if items.is_empty() {
            return Err(Error::Invalid(
                "items is empty; send at least one check".to_owned(),
            ));
        }
        if items.len() > self.max_batch {
            return Err(Error::Invalid(format!(
                "items has {} checks; the limit is {} per BatchCheck: split the batch",
                items.len(),
                self.max_batch
            )));
        }
        let mut subjects: HashMap<&str, (Subject, Revision)> = HashMap::new();
        let mut oldest: Option<Revision> = None;
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let prepared = match self.prepare(item) {
                Ok(p) => p,
                Err(e) => {
                    out.push(Err(e));
                    continue;
                }
            };
            let (subject, revision) = match subjects.entry(item.user_id.as_str()) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => {
                    e.insert(self.subject(tenant_id, &item.user_id, consistency).await?)
                }
            };
            oldest = Some(oldest.map_or(*revision, |o| o.min(*revision)));
            out.push(self.decide(subject, item, prepared));
        }
        let revision = match oldest {
            Some(r) => r,
            None => self.store.records().get_tenant(tenant_id).await?.revision,
        };
        Ok((out, revision))
    }

    /// What GetEffectivePermissions shows of a user, from one snapshot.
    pub async fn effective(
        &self,
        tenant_id: &TenantId,
        user_id: &UserId,
        consistency: Consistency,
    ) -> Result<(Effective, Revision)> {
        let (subject, revision) = self.store.subject(tenant_id, user_id, consistency).await?;
        let state = match &subject.user {
            None => decide::UserState::Unknown,
            Some(_) if !subject.is_active() => decide::UserState::Blocked,
            Some(_) => decide::UserState::Active,
        };
        let user = subject.user.as_deref();
        let view = Effective {
            state,
            permissions: decide::effective_permissions(&subject),
            scoped: decide::scoped_grants(&subject),
            restrictions: user.map(|u| u.restrictions.clone()).unwrap_or_default(),
            groups: subject.groups.iter().map(|g| g.key.clone()).collect(),
            roles: self.roles_of(&subject),
        };
        Ok((view, revision))
    }

    pub async fn allowed_resources(
        &self,
        tenant_id: &TenantId,
        user_id: &UserId,
        permission: &str,
        resource_type: &str,
        consistency: Consistency,
    ) -> Result<(decide::AllowedResources, Revision)> {
        let p = self.permission("permission", permission)?;
        let t = self.resource_type("resource_type", resource_type)?;
        let (subject, revision) = self.store.subject(tenant_id, user_id, consistency).await?;
        Ok((decide::allowed_resources(&subject, p, t), revision))
    }

    /// The roles the catalog derives from a set of effective permissions.
    pub fn roles_of_set(&self, effective: &PermSet) -> Vec<String> {
        self.catalog
            .roles_of(effective)
            .into_iter()
            .map(str::to_owned)
            .collect()
    }

    /// Refuses an `at_least_as_fresh` token newer than the tenant's latest revision.
    pub(super) async fn fresh_enough(
        &self,
        tenant_id: &TenantId,
        consistency: Consistency,
    ) -> Result<()> {
        if let Consistency::AtLeast(_) = consistency {
            let latest = self.store.records().get_tenant(tenant_id).await?.revision;
            crate::store::rules::check_fresh(consistency, latest)?;
        }
        Ok(())
    }

    pub fn roles_of(&self, subject: &Subject) -> Vec<String> {
        self.catalog
            .roles_of(&subject.effective())
            .into_iter()
            .map(str::to_owned)
            .collect()
    }
}
