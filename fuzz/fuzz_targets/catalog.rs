//! The catalog loader on arbitrary text: it refuses or yields a catalog whose every part is
//! resolvable.
#![no_main]

use authz_core::Catalog;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(c) = Catalog::from_toml(text) else {
        return;
    };
    for (i, p) in c.permissions().iter().enumerate() {
        assert_eq!(c.resolve(&p.key).map(|id| id.index()), Some(i));
    }
    for g in c.groups() {
        assert!(c.group(&g.key).is_some());
    }
    for a in c.actions() {
        assert!(c.action(&a.key).is_some());
        let _ = a.expr.holds(&|_| true, &|_| true);
    }
});
