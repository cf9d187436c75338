//! The expression parser on arbitrary text, against the Maestra catalog's names; whatever
//! parses must evaluate consistently.
#![no_main]

use authz_core::{Catalog, FlagId, PermId};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn catalog() -> &'static Catalog {
    static C: OnceLock<Catalog> = OnceLock::new();
    C.get_or_init(|| {
        Catalog::from_toml(include_str!("../../catalogs/maestra.toml")).expect("catalog")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let c = catalog();
    let Ok(expr) = c.parse_expression(text) else {
        return;
    };
    // Every flag it tests is one the catalog declares.
    assert!(expr.flags().iter().all(|f| f.index() < c.context_flags().len()));
    // Decide over a pseudo-random half of the permissions and flags, seeded by the input.
    let seed = data.iter().fold(0u64, |h, b| h.rotate_left(5) ^ u64::from(*b));
    let has = |p: PermId| (seed >> (p.index() % 61)) & 1 == 1;
    let flag = |f: FlagId| (seed >> (f.index() % 61 + 1)) & 1 == 1;
    let out = expr.evaluate(&has, &flag);
    assert_eq!(out.allowed, expr.holds(&has, &flag));
    if out.allowed {
        assert!(out.missing.is_empty() && out.failed_parts.is_empty());
    } else {
        // Granting what is reported missing must make it pass, unless a flag or a negation
        // failed (then nothing is reported missing).
        let fixed = |p: PermId| has(p) || out.missing.contains(&p);
        if !out.missing.is_empty() {
            assert!(expr.holds(&fixed, &flag), "{text:?}: missing {:?}", out.missing);
        }
    }
    assert!(expr.permissions().iter().all(|p| p.index() < c.permissions().len()));
});
