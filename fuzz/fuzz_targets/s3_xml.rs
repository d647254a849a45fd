//! S3's XML request bodies as the endpoint reads them (DeleteObjects,
//! CompleteMultipartUpload, backend error documents): any bytes give an
//! answer, and text the gateway escapes reads back as itself.
#![no_main]

use kikaku_edge::s3_xml::{escape, groups_at, texts_at};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = texts_at(data, &["Delete", "Object", "Key"]);
    let _ = texts_at(data, &["Error", "Code"]);
    let _ = groups_at(
        data,
        &["CompleteMultipartUpload", "Part"],
        &["PartNumber", "ETag", "ChecksumCRC32"],
    );
    // Round trip: an object key (XML 1.0 text: no control characters but
    // tab and newline; a CR would be normalised) written escaped reads back.
    if let Ok(key) = std::str::from_utf8(data) {
        if key
            .chars()
            .all(|c| c == '\t' || c == '\n' || (c >= ' ' && c != '\u{7f}'))
        {
            let doc = format!(
                "<Delete><Object><Key>{}</Key></Object></Delete>",
                escape(key)
            );
            let keys = texts_at(doc.as_bytes(), &["Delete", "Object", "Key"]).expect("well-formed");
            let want: Vec<String> = if key.is_empty() {
                vec![]
            } else {
                vec![key.to_string()]
            };
            assert_eq!(keys, want, "{doc}");
        }
    }
});
