//! Cerbos, modelled the way its documentation models RBAC with per-user exceptions, on one
//! tenant of the seeded database:
//!
//! - one resource policy (`account`) with a rule per group: the catalog's groups by their key,
//!   the tenant's custom groups as roles `TENANT_GROUP`; the request carries the user's groups
//!   as roles (Cerbos takes roles from the caller's identity, it keeps no membership data);
//! - one principal policy per user with direct grants (principal `TENANT_USER`), which Cerbos
//!   consults before the resource policy: the documented way to give one principal more than
//!   its roles.
//!
//! So Cerbos answers the question authz answers (groups and direct grants), not a role-only
//! one; [`cerbos_answers`] asks it every (user, permission) of the tenant to prove it.

use authz_core::Catalog;
use std::path::Path;
use std::process::Command;

/// A user of the modelled tenant: its groups (catalog and custom) and direct grants.
#[derive(Clone, Debug)]
pub struct TenantUser {
    pub id: String,
    pub groups: Vec<String>,
    pub direct: Vec<String>,
}

/// One tenant as stored: its custom groups with their permissions, and its users.
#[derive(Clone, Debug)]
pub struct Tenant {
    pub id: String,
    pub custom: Vec<(String, Vec<String>)>,
    pub users: Vec<TenantUser>,
}

impl Tenant {
    /// Reads a tenant of the seeded database.
    pub async fn load(client: &tokio_postgres::Client, tenant: &str) -> Tenant {
        let custom = client
            .query(
                "SELECT group_key, permissions FROM groups WHERE tenant_id = $1 ORDER BY 1",
                &[&tenant],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, Vec<String>>(1)))
            .collect();
        let users = client
            .query(
                "SELECT user_id, direct, ARRAY(SELECT group_key FROM memberships m \
                 WHERE m.tenant_id = u.tenant_id AND m.user_id = u.user_id ORDER BY 1) \
                 FROM users u WHERE tenant_id = $1 ORDER BY 1",
                &[&tenant],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| TenantUser {
                id: r.get(0),
                direct: r.get(1),
                groups: r.get(2),
            })
            .collect();
        Tenant {
            id: tenant.to_owned(),
            custom,
            users,
        }
    }

    pub fn user(&self, id: &str) -> &TenantUser {
        self.users.iter().find(|u| u.id == id).unwrap()
    }

    /// Cerbos's principal id for a user of this tenant.
    pub fn principal(&self, user: &str) -> String {
        format!("{}_{user}", self.id)
    }

    /// The roles a request for `user` carries: catalog groups by key, custom groups prefixed
    /// with the tenant.
    pub fn roles(&self, catalog: &Catalog, user: &TenantUser) -> Vec<String> {
        user.groups
            .iter()
            .map(|g| {
                if catalog.group(g).is_some() {
                    g.clone()
                } else {
                    format!("{}_{g}", self.id)
                }
            })
            .collect()
    }
}

fn list(items: &[String]) -> String {
    items
        .iter()
        .map(|i| format!("\"{i}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Writes the policies into `dir`: the resource policy and one principal policy per user with
/// direct grants. Returns how many principal policies were written.
pub fn write_cerbos_policies(catalog: &Catalog, tenant: &Tenant, dir: &Path) -> usize {
    std::fs::create_dir_all(dir).unwrap();
    let mut rules = String::new();
    let mut rule = |role: &str, perms: &[String]| {
        if perms.is_empty() {
            return;
        }
        rules.push_str(&format!(
            "    - actions: [{}]\n      effect: EFFECT_ALLOW\n      roles: [\"{role}\"]\n",
            list(perms)
        ));
    };
    for g in catalog.groups().iter().filter(|g| !g.internal) {
        let perms: Vec<String> = g
            .grants
            .permissions
            .iter()
            .map(|p| catalog.key(p).to_owned())
            .collect();
        rule(&g.key, &perms);
    }
    for (g, perms) in &tenant.custom {
        rule(&format!("{}_{g}", tenant.id), perms);
    }
    std::fs::write(
        dir.join("account.yaml"),
        format!(
            "apiVersion: api.cerbos.dev/v1\nresourcePolicy:\n  version: default\n  resource: account\n  rules:\n{rules}"
        ),
    )
    .unwrap();
    let mut n = 0;
    for u in tenant.users.iter().filter(|u| !u.direct.is_empty()) {
        let actions: String = u
            .direct
            .iter()
            .map(|p| format!("        - action: \"{p}\"\n          effect: EFFECT_ALLOW\n"))
            .collect();
        std::fs::write(
            dir.join(format!("principal_{}.yaml", tenant.principal(&u.id))),
            format!(
                "apiVersion: api.cerbos.dev/v1\nprincipalPolicy:\n  principal: \"{}\"\n  version: default\n  rules:\n    - resource: account\n      actions:\n{actions}",
                tenant.principal(&u.id)
            ),
        )
        .unwrap();
        n += 1;
    }
    n
}

/// Cerbos's answers, over its HTTP API, for one user and each of `perms` (requests of at most
/// 50 actions of one resource, Cerbos's default limit).
pub fn cerbos_answers(
    http_port: u16,
    tenant: &Tenant,
    roles: &[String],
    user: &str,
    perms: &[String],
) -> Vec<bool> {
    perms
        .chunks(50)
        .flat_map(|chunk| cerbos_request(http_port, tenant, roles, user, chunk))
        .collect()
}

fn cerbos_request(
    http_port: u16,
    tenant: &Tenant,
    roles: &[String],
    user: &str,
    perms: &[String],
) -> Vec<bool> {
    let json = format!(
        "{{\"requestId\":\"x\",\"principal\":{{\"id\":\"{}\",\"policyVersion\":\"default\",\"roles\":[{}]}},\
         \"resources\":[{{\"actions\":[{}],\"resource\":{{\"kind\":\"account\",\"policyVersion\":\"default\",\"id\":\"{}\"}}}}]}}",
        tenant.principal(user),
        list(roles),
        list(perms),
        tenant.id
    );
    let out = Command::new("curl")
        .args(["-s", "--noproxy", "*", "-X", "POST", "-d", &json])
        .arg(format!("http://127.0.0.1:{http_port}/api/check/resources"))
        .output()
        .unwrap();
    // protojson may put spaces around separators: compare without whitespace.
    let answer: String = String::from_utf8_lossy(&out.stdout)
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    perms
        .iter()
        .map(|p| {
            if answer.contains(&format!("\"{p}\":\"EFFECT_ALLOW\"")) {
                true
            } else {
                assert!(
                    answer.contains(&format!("\"{p}\":\"EFFECT_DENY\"")),
                    "Cerbos gave no answer for {p}: {answer}"
                );
                false
            }
        })
        .collect()
}

/// authz's answers for the same user and permissions, by one BatchCheck.
pub async fn authz_answers(
    channel: tonic::transport::Channel,
    tenant: &str,
    user: &str,
    perms: &[String],
) -> Vec<bool> {
    use authz::grpc::pb;
    let mut client = pb::authz_service_client::AuthzServiceClient::new(channel);
    let results = client
        .batch_check(pb::BatchCheckRequest {
            tenant_id: tenant.to_owned(),
            items: perms
                .iter()
                .map(|p| pb::BatchCheckItem {
                    user_id: user.to_owned(),
                    target: Some(pb::batch_check_item::Target::Permission(p.clone())),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    results
        .iter()
        .map(|r| {
            assert!(r.error.is_none(), "authz could not decide: {:?}", r.error);
            r.allowed
        })
        .collect()
}

/// The sentence the gRPC report opens with when Cerbos ran.
pub fn cerbos_note(tenant: &str, compared: usize, principals: usize) -> String {
    format!(
        "Cerbos holds tenant `{tenant}`: one resource policy with a rule per group (catalog \
         groups and the tenant's custom groups as roles) and {principals} principal policies for \
         the users with direct grants; each request carries the user's groups as roles. Before \
         any load, Cerbos and authz were asked every (user, permission) pair of the tenant \
         ({compared} checks) and gave the same answers.\n\n"
    )
}
