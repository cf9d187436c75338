//! NOTIFY payload decoding on arbitrary text: never a panic, and whatever decodes encodes back
//! to the same notice, or to a coarser one for the same tenant and revision.
#![no_main]

use authz::store::notify::{MAX_PAYLOAD, Notice};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(notice) = Notice::decode(text) else {
        return;
    };
    let encoded = notice.clone().encode();
    let again = Notice::decode(&encoded).expect("an encoded notice decodes");
    assert!(encoded.len() <= MAX_PAYLOAD || notice.t.len() > MAX_PAYLOAD / 2);
    assert_eq!((&again.t, again.r), (&notice.t, notice.r));
    assert!(again == notice || again.au, "{notice:?} became {again:?}");
});
