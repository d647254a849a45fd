//! Multipart forms as `/s3/upload` and the upload API read them: the scan
//! that finds where the `file` field's data starts (for one streamed PUT)
//! agrees with the form parser (multer, with the gateway's limits). (A size
//! predicted from Content-Length that the form then belies is caught at
//! run time: the PUT is broken off, tests/storage_api.rs.)
#![no_main]

use bytes::Bytes;
use futures_util::stream;
use kikaku_edge::storage::form_put::{file_data_at, Scan};
use libfuzzer_sys::fuzz_target;

/// The fields in order: name, data.
fn parse(form: &[u8], boundary: &str) -> Option<Vec<(String, Vec<u8>)>> {
    let body = stream::iter(
        form.chunks(509)
            .map(|c| Ok::<Bytes, std::io::Error>(Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    );
    let limits = multer::SizeLimit::new()
        .per_field(1 << 16)
        .for_field("file", u64::MAX);
    let mut mp = multer::Multipart::with_constraints(
        body,
        boundary,
        multer::Constraints::new().size_limit(limits),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut fields = Vec::new();
        while let Some(mut f) = mp.next_field().await.ok()? {
            let name = f.name().unwrap_or_default().to_string();
            let mut data = Vec::new();
            while let Some(c) = f.chunk().await.ok()? {
                data.extend_from_slice(&c);
            }
            fields.push((name, data));
        }
        Some(fields)
    })
}

fuzz_target!(|input: &[u8]| {
    let Some((&n, rest)) = input.split_first() else {
        return;
    };
    let n = (n as usize % 24 + 1).min(rest.len());
    let (boundary, form) = rest.split_at(n);
    let Ok(boundary) = std::str::from_utf8(boundary) else {
        return;
    };
    if !boundary
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"'()+_,-./:=?".contains(&b))
    {
        return;
    }
    let scan = file_data_at(form, boundary);
    let Scan::File(Some(at)) = scan else { return };
    let Some(fields) = parse(form, boundary) else {
        return;
    };
    let Some(file) = fields.iter().position(|(name, _)| name == "file") else {
        return;
    };
    // The first `file` field's data starts where the scan said.
    let data = &fields[file].1;
    assert_eq!(
        &form[at..at + data.len()],
        &data[..],
        "the scan put the file at {at}"
    );
});
