//! Inline reference images (`image: "data:image/...;base64,..."`): the
//! data URL and the image header inside it are read without a panic,
//! whatever they hold.
#![no_main]

use base64::Engine;
use kikaku_edge::images::api::inline::check;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // As text: the data URL itself.
    let _ = check(&String::from_utf8_lossy(data));
    // As the image bytes of a well-formed data URL, under each type.
    let b64 = base64::engine::general_purpose::STANDARD.encode(data);
    for ty in ["png", "jpeg", "webp", "gif", "bmp", "tiff"] {
        let _ = check(&format!("data:image/{ty};base64,{b64}"));
    }
});
