//! In-process decisions: our check against cedar-policy and casbin on the same RBAC data (the
//! Maestra catalog's groups as roles, its permissions as actions, 1–3 groups per user, direct
//! grants for one user in five), same queries, same run. Each peer is modelled the way its
//! documentation models RBAC (see `docs/benchmarks.md`, "How the peers are modelled").

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use authz_bench::DataSet;
use authz_core::decide::{Query, Target, decide};
use casbin::prelude::*;
use cedar_policy::{
    Authorizer, Context, Decision, Entities, Entity, EntityId, EntityTypeName, EntityUid,
    PolicySet, Request, RestrictedExpression,
};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::collections::{HashMap, HashSet};
use std::hint::black_box;
use std::str::FromStr;

const USERS: usize = 1000;
const QUERIES: usize = 4096;

fn uid(ty: &str, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(EntityTypeName::from_str(ty).unwrap(), EntityId::new(id))
}

fn decisions(c: &mut Criterion) {
    let data = DataSet::generate(USERS, QUERIES);
    let expected: Vec<bool> = data
        .queries
        .iter()
        .map(|&(u, p)| data.expected(u, p))
        .collect();
    let allowed = expected.iter().filter(|a| **a).count();
    eprintln!("{QUERIES} queries, {allowed} allowed");

    // Ours: subjects as the cache hands them to a check.
    let subjects: Vec<_> = data.users.iter().map(|u| data.subject(u)).collect();
    let ours = |i: usize| {
        let (u, p) = data.queries[i];
        let q = Query {
            target: Target::Permission(p),
            resource: None,
            context: |_: &str| None,
            explain: false,
        };
        decide(&data.catalog, &subjects[u], &q).is_ok_and(|d| d.allowed)
    };

    // Cedar, as its documentation models RBAC: users are members of their groups (entity
    // hierarchy), a group's permissions are an action group, direct grants are a set attribute
    // of the user; one policy per group and one for direct grants.
    let policies = PolicySet::from_str(&data.cedar_policies()).unwrap();
    assert_eq!(
        policies.policies().count(),
        authz_bench::visible_groups(&data.catalog).len() + 1
    );
    let mut entities: Vec<Entity> = authz_bench::visible_groups(&data.catalog)
        .iter()
        .flat_map(|g| {
            [
                Entity::with_uid(uid("Group", g)),
                Entity::with_uid(uid("Action", &format!("group:{g}"))),
            ]
        })
        .collect();
    entities.extend(data.cedar_action_parents().iter().map(|(action, parents)| {
        let parents: HashSet<EntityUid> = parents.iter().map(|p| uid("Action", p)).collect();
        Entity::new_no_attrs(uid("Action", action), parents)
    }));
    entities.extend(data.users.iter().map(|u| {
        let parents: HashSet<EntityUid> = u.groups.iter().map(|g| uid("Group", g)).collect();
        let direct = RestrictedExpression::new_set(
            u.direct
                .iter()
                .map(|p| RestrictedExpression::new_entity_uid(uid("Action", data.key(*p)))),
        );
        Entity::new(
            uid("User", &u.id),
            HashMap::from([("direct".to_owned(), direct)]),
            parents,
        )
        .unwrap()
    }));
    let entities = Entities::from_entities(entities, None).unwrap();
    let authorizer = Authorizer::new();
    let resource = uid("Resource", "any");
    let requests: Vec<Request> = data
        .queries
        .iter()
        .map(|&(u, p)| {
            Request::new(
                uid("User", &data.users[u].id),
                uid("Action", data.key(p)),
                resource.clone(),
                Context::empty(),
                None,
            )
            .unwrap()
        })
        .collect();
    let cedar = |i: usize| {
        authorizer
            .is_authorized(&requests[i], &policies, &entities)
            .decision()
            == Decision::Allow
    };

    // casbin: its RBAC model, groups as roles held by the default role manager, direct grants
    // as p lines of the user, the equality matcher with the action compared first; and the
    // same with the role link looked up first, for comparison.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let build = |model: &'static str| {
        rt.block_on(async {
            let model = DefaultModel::from_str(model).await.unwrap();
            let mut e = Enforcer::new(model, MemoryAdapter::default())
                .await
                .unwrap();
            let (p, g) = data.casbin_rules();
            e.add_policies(p).await.unwrap();
            e.add_grouping_policies(g).await.unwrap();
            e
        })
    };
    let (enforcer, role_first) = (
        build(DataSet::CASBIN_MODEL),
        build(DataSet::CASBIN_MODEL_ROLE_FIRST),
    );
    let casbin_queries: Vec<(String, String)> = data
        .queries
        .iter()
        .map(|&(u, p)| (data.users[u].id.clone(), data.key(p).to_owned()))
        .collect();
    let casbin = |i: usize| enforcer.enforce(casbin_queries[i].clone()).unwrap();
    let casbin_role_first = |i: usize| role_first.enforce(casbin_queries[i].clone()).unwrap();

    // Same answers from every engine before anything is timed.
    for (i, want) in expected.iter().enumerate() {
        assert_eq!(ours(i), *want, "ours, query {i}");
        assert_eq!(cedar(i), *want, "cedar, query {i}");
        assert_eq!(casbin(i), *want, "casbin, query {i}");
        assert_eq!(
            casbin_role_first(i),
            *want,
            "casbin (role first), query {i}"
        );
    }

    let mut group = c.benchmark_group("decision");
    group.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    group.bench_function(BenchmarkId::new("authz", USERS), |b| {
        b.iter(|| {
            i = (i + 1) % QUERIES;
            black_box(ours(black_box(i)))
        })
    });
    group.bench_function(BenchmarkId::new("cedar-policy", USERS), |b| {
        b.iter(|| {
            i = (i + 1) % QUERIES;
            black_box(cedar(black_box(i)))
        })
    });
    group.bench_function(BenchmarkId::new("casbin", USERS), |b| {
        b.iter(|| {
            i = (i + 1) % QUERIES;
            black_box(casbin(black_box(i)))
        })
    });
    group.bench_function(BenchmarkId::new("casbin-role-first", USERS), |b| {
        b.iter(|| {
            i = (i + 1) % QUERIES;
            black_box(casbin_role_first(black_box(i)))
        })
    });
    group.finish();
}

criterion_group!(benches, decisions);
criterion_main!(benches);
