//! Revision tokens, page tokens and `grpc-timeout` values on arbitrary text: refused with an
//! error or accepted, never a panic; accepted page tokens round-trip.
#![no_main]

use authz::grpc::pb;
use authz::store::Consistency;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let c = authz::grpc::convert::consistency(Some(pb::Consistency {
        requirement: Some(pb::consistency::Requirement::AtLeastAsFresh(text.to_owned())),
    }));
    if let Ok(Consistency::AtLeast(r)) = c {
        // Only the exact text the server writes for a revision is accepted.
        assert!(r > 0);
        assert_eq!(authz::grpc::convert::revision(r), text);
    } else {
        assert!(c.is_err());
    }
    if let Ok(Some(key)) = authz::validate::page_token(text) {
        let token = authz::validate::next_page_token(Some(&key), true);
        assert_eq!(authz::validate::page_token(&token).ok().flatten(), Some(key));
    }
    if let Ok(v) = http::HeaderValue::from_str(text) {
        let mut h = http::HeaderMap::new();
        h.insert("grpc-timeout", v);
        let _ = authz::gate::grpc_timeout(&h);
    }
});
