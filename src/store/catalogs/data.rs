//! What a database stores that a catalog gives meaning to, read in one transaction.

use super::*;

/// A map of key uses, the statement that counts them by tenant and key, and its parameters.
type Count<'a> = (
    &'a mut BTreeMap<String, evolve::Uses>,
    &'a str,
    &'a [&'a (dyn ToSql + Sync)],
);

/// Everything stored that a catalog gives meaning to, across tenants. `group_keys`: the system
/// group keys of the catalogs compared, to find custom groups that use one.
pub async fn usage(tx: &Transaction<'_>, group_keys: &[String]) -> Result<Usage> {
    let mut usage = Usage::default();
    let custom: [&(dyn ToSql + Sync); 1] = [&group_keys];
    // Each statement counts the uses of keys by tenant: (tenant, key, uses) rows.
    let counts: [Count<'_>; 4] = [
        (
            &mut usage.permissions,
            "SELECT tenant_id, k, count(*) FROM (
                 SELECT tenant_id, unnest(direct) AS k FROM users
                 UNION ALL SELECT tenant_id, unnest(permissions) FROM groups
                 UNION ALL SELECT tenant_id, permission FROM user_scoped_grants
                 UNION ALL SELECT tenant_id, permission FROM group_scoped_grants) x
             GROUP BY 1, 2",
            &[],
        ),
        (
            &mut usage.system_memberships,
            "SELECT m.tenant_id, m.group_key, count(*) FROM memberships m
             WHERE NOT EXISTS (SELECT 1 FROM groups g
                               WHERE g.tenant_id = m.tenant_id AND g.group_key = m.group_key)
             GROUP BY 1, 2",
            &[],
        ),
        (
            &mut usage.custom_groups,
            "SELECT tenant_id, group_key, 1::bigint FROM groups WHERE group_key = ANY($1)",
            &custom,
        ),
        (
            &mut usage.resource_types,
            "SELECT tenant_id, t, count(*) FROM (
                 SELECT tenant_id, resource_type AS t FROM user_scoped_grants
                 UNION ALL SELECT tenant_id, resource_type FROM group_scoped_grants
                 UNION ALL SELECT tenant_id, resource_type FROM restrictions) x
             GROUP BY 1, 2",
            &[],
        ),
    ];
    for (map, sql, params) in counts {
        for r in tx.all(sql, params).await? {
            let tenant: String = r.get(0);
            let key: String = r.get(1);
            let n: i64 = r.get(2);
            map.entry(key)
                .or_default()
                .add(&tenant, u64::try_from(n).unwrap_or(0));
        }
    }
    Ok(usage)
}

/// One tenant's users and custom groups as stored.
pub async fn tenant_data(tx: &Transaction<'_>, tenant_id: &str) -> Result<TenantData> {
    let users = tx
        .all(
            "SELECT u.user_id, u.status = 'active', u.direct,
                 ARRAY(SELECT m.group_key FROM memberships m
                       WHERE m.tenant_id = u.tenant_id AND m.user_id = u.user_id ORDER BY 1),
                 ARRAY(SELECT s.permission FROM user_scoped_grants s
                       WHERE s.tenant_id = u.tenant_id AND s.user_id = u.user_id ORDER BY s.permission, s.resource_type, s.resource_id),
                 ARRAY(SELECT s.resource_type FROM user_scoped_grants s
                       WHERE s.tenant_id = u.tenant_id AND s.user_id = u.user_id ORDER BY s.permission, s.resource_type, s.resource_id),
                 ARRAY(SELECT s.resource_id FROM user_scoped_grants s
                       WHERE s.tenant_id = u.tenant_id AND s.user_id = u.user_id ORDER BY s.permission, s.resource_type, s.resource_id),
                 ARRAY(SELECT r.resource_type FROM restrictions r
                       WHERE r.tenant_id = u.tenant_id AND r.user_id = u.user_id ORDER BY 1)
             FROM users u WHERE u.tenant_id = $1 ORDER BY u.user_id",
            &[&tenant_id],
        )
        .await?;
    let groups = tx
        .all(
            "SELECT g.group_key, g.permissions,
                 ARRAY(SELECT s.permission FROM group_scoped_grants s
                       WHERE s.tenant_id = g.tenant_id AND s.group_key = g.group_key ORDER BY s.permission, s.resource_type, s.resource_id),
                 ARRAY(SELECT s.resource_type FROM group_scoped_grants s
                       WHERE s.tenant_id = g.tenant_id AND s.group_key = g.group_key ORDER BY s.permission, s.resource_type, s.resource_id),
                 ARRAY(SELECT s.resource_id FROM group_scoped_grants s
                       WHERE s.tenant_id = g.tenant_id AND s.group_key = g.group_key ORDER BY s.permission, s.resource_type, s.resource_id)
             FROM groups g WHERE g.tenant_id = $1 ORDER BY g.group_key",
            &[&tenant_id],
        )
        .await?;
    let triples = |r: &tokio_postgres::Row, at: usize| -> Vec<(String, String, String)> {
        let p: Vec<String> = r.get(at);
        let t: Vec<String> = r.get(at + 1);
        let i: Vec<String> = r.get(at + 2);
        p.into_iter()
            .zip(t)
            .zip(i)
            .map(|((p, t), i)| (p, t, i))
            .collect()
    };
    Ok(TenantData {
        tenant_id: tenant_id.to_owned(),
        users: users
            .iter()
            .map(|r| StoredUser {
                id: r.get(0),
                active: r.get(1),
                direct: r.get(2),
                groups: r.get(3),
                scoped: triples(r, 4),
                restricted: r.get(7),
            })
            .collect(),
        groups: groups
            .iter()
            .map(|r| StoredGroup {
                key: r.get(0),
                permissions: r.get(1),
                scoped: triples(r, 2),
            })
            .collect(),
    })
}

pub(super) async fn tenant_ids(tx: &Transaction<'_>) -> Result<Vec<String>> {
    let rows = tx
        .all("SELECT tenant_id FROM tenants ORDER BY 1", &[])
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The system group keys of the catalogs compared.
pub(super) fn group_keys(old: Option<&Catalog>, new: &Catalog) -> Vec<String> {
    let mut keys: BTreeSet<String> = new.groups().iter().map(|g| g.key.clone()).collect();
    if let Some(o) = old {
        keys.extend(o.groups().iter().map(|g| g.key.clone()));
    }
    keys.into_iter().collect()
}
