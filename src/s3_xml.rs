//! The bits of S3's XML the gateway reads and writes: error documents,
//! ListBuckets, the text of elements at a path, and rewriting backend bucket
//! names back to tenant names inside the few elements that carry them.

use quick_xml::events::Event;
use quick_xml::Reader;

pub const NS: &str = "http://s3.amazonaws.com/doc/2006-03-01/";

pub fn escape(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}

/// `<Error>` as S3 writes it.
pub fn error_document(code: &str, message: &str, resource: &str, request_id: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>{}</Message><Resource>{}</Resource><RequestId>{}</RequestId></Error>",
        escape(code),
        escape(message),
        escape(resource),
        escape(request_id)
    )
}

/// `<Owner>` as listings write it.
pub fn owner(id: &str, name: &str) -> String {
    format!(
        "<Owner><ID>{}</ID><DisplayName>{}</DisplayName></Owner>",
        escape(id),
        escape(name)
    )
}

/// `owner` added to every `<Contents>` of a listing that has none.
pub fn add_owner(xml: &str, owner: &str) -> String {
    let mut out = String::with_capacity(xml.len() + owner.len() * 8);
    let mut rest = xml;
    while let Some(end) = rest.find("</Contents>") {
        let item = &rest[..end];
        out.push_str(item);
        let start = item.rfind("<Contents>").unwrap_or(0);
        if !item[start..].contains("<Owner>") {
            out.push_str(owner);
        }
        out.push_str("</Contents>");
        rest = &rest[end + "</Contents>".len()..];
    }
    out.push_str(rest);
    out
}

/// A ListObjects answer with a `<Marker>`: `marker` is added right after
/// the root element when the backend sent none. (With `encoding-type=url`
/// it is sent encoded, as S3 does.)
pub fn ensure_marker(xml: &str, marker: &str) -> String {
    if xml.contains("<Marker>") || xml.contains("<Marker/>") {
        return xml.to_string();
    }
    let Some(root) = xml.find("<ListBucketResult") else {
        return xml.to_string();
    };
    let Some(end) = xml[root..].find('>').map(|i| root + i + 1) else {
        return xml.to_string();
    };
    let url = xml.contains("<EncodingType>url</EncodingType>");
    let m = if url {
        sigv4::uri_encode(marker.as_bytes(), true)
    } else {
        marker.to_string()
    };
    format!(
        "{}<Marker>{}</Marker>{}",
        &xml[..end],
        escape(&m),
        &xml[end..]
    )
}

/// `ListAllMyBucketsResult` for the tenant's own buckets `(name, created)`;
/// `token`: the continuation token of the next page, when there is one.
pub fn list_buckets(
    owner_id: &str,
    owner_name: &str,
    buckets: &[(String, String)],
    token: Option<&str>,
) -> String {
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListAllMyBucketsResult xmlns=\"{NS}\">{}<Buckets>",
        owner(owner_id, owner_name)
    );
    for (name, created) in buckets {
        out.push_str(&format!(
            "<Bucket><Name>{}</Name><CreationDate>{}</CreationDate></Bucket>",
            escape(name),
            escape(created)
        ));
    }
    out.push_str("</Buckets>");
    if let Some(t) = token {
        out.push_str(&format!(
            "<ContinuationToken>{}</ContinuationToken>",
            escape(t)
        ));
    }
    out.push_str("</ListAllMyBucketsResult>");
    out
}

/// The text of every element at `path` (element names from the root), in
/// document order. `None` when the document is not well-formed XML.
pub fn texts_at(xml: &[u8], path: &[&str]) -> Option<Vec<String>> {
    groups_at(xml, &path[..path.len() - 1], &[path[path.len() - 1]])
        .map(|groups| groups.into_iter().filter_map(|mut g| g.pop()?.1).collect())
}

/// One element's children: `(field, text)` in the order asked for.
pub type Group = Vec<(String, Option<String>)>;

/// For every element at `parent`, the text of each child named in
/// `fields` (`None` when absent). `None` when the XML is not well-formed.
pub fn groups_at(xml: &[u8], parent: &[&str], fields: &[&str]) -> Option<Vec<Group>> {
    let mut reader = Reader::from_reader(xml);
    let mut stack: Vec<String> = Vec::new();
    let mut groups = Vec::new();
    let mut current: Option<Group> = None;
    let mut buf = Vec::new();
    loop {
        // Text inside a child of `parent`, however quick-xml splits it.
        let text: Option<String> = match reader.read_event_into(&mut buf).ok()? {
            Event::Start(e) => {
                stack.push(String::from_utf8_lossy(e.local_name().as_ref()).into_owned());
                if stack == parent {
                    current = Some(fields.iter().map(|f| (f.to_string(), None)).collect());
                }
                None
            }
            Event::End(_) => {
                if stack == parent {
                    groups.extend(current.take());
                }
                stack.pop();
                None
            }
            Event::Text(t) => {
                let raw = t.decode().ok()?;
                Some(quick_xml::escape::unescape(&raw).ok()?.into_owned())
            }
            Event::GeneralRef(r) => {
                let raw = format!("&{};", String::from_utf8_lossy(&r));
                Some(quick_xml::escape::unescape(&raw).ok()?.into_owned())
            }
            Event::CData(t) => Some(String::from_utf8_lossy(&t).into_owned()),
            Event::Eof => break,
            _ => None,
        };
        let in_child = stack.len() == parent.len() + 1 && stack[..parent.len()] == *parent;
        if let (Some(text), true, Some(g)) = (text, in_child, current.as_mut()) {
            let name = &stack[parent.len()];
            if let Some(slot) = g.iter_mut().find(|(f, _)| f == name) {
                slot.1.get_or_insert_with(String::new).push_str(&text);
            }
        }
        buf.clear();
    }
    Some(groups)
}

/// Replace `from` by `to` inside the elements that name buckets
/// (`Name`, `Bucket`, `BucketName`, `Location`, `Resource`), leaving object
/// keys and everything else byte for byte as the backend wrote them.
pub fn rewrite_bucket_names(xml: &str, from: &str, to: &str) -> String {
    const TAGS: &[&str] = &["Name", "Bucket", "BucketName", "Location", "Resource"];
    let mut out = String::with_capacity(xml.len());
    let mut rest = xml;
    'outer: while let Some(lt) = rest.find('<') {
        out.push_str(&rest[..lt]);
        rest = &rest[lt..];
        for tag in TAGS {
            let open = format!("<{tag}>");
            if rest.starts_with(&open) {
                let close = format!("</{tag}>");
                if let Some(end) = rest.find(&close) {
                    let inner = &rest[open.len()..end];
                    out.push_str(&open);
                    out.push_str(&inner.replace(from, to));
                    out.push_str(&close);
                    rest = &rest[end + close.len()..];
                    continue 'outer;
                }
            }
        }
        out.push('<');
        rest = &rest[1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_at_a_path_only() {
        let xml = br#"<?xml version="1.0"?><DeleteResult><Deleted><Key>a&amp;b</Key></Deleted><Error><Key>c</Key><Code>AccessDenied</Code></Error><Deleted><Key>d</Key></Deleted></DeleteResult>"#;
        assert_eq!(
            texts_at(xml, &["DeleteResult", "Deleted", "Key"]).unwrap(),
            vec!["a&b", "d"]
        );
        assert!(texts_at(b"<a><b>", &["a", "b"]).is_some_and(|v| v.is_empty()));
    }

    #[test]
    fn groups_collect_fields() {
        let xml = br#"<ListAllMyBucketsResult xmlns="x"><Buckets><Bucket><Name>kk-1-a</Name><CreationDate>2026</CreationDate></Bucket><Bucket><Name>other</Name></Bucket></Buckets></ListAllMyBucketsResult>"#;
        let g = groups_at(
            xml,
            &["ListAllMyBucketsResult", "Buckets", "Bucket"],
            &["Name", "CreationDate"],
        )
        .unwrap();
        assert_eq!(g.len(), 2);
        assert_eq!(g[0][0].1.as_deref(), Some("kk-1-a"));
        assert_eq!(g[1][1].1, None);
    }

    #[test]
    fn rewriting_touches_bucket_elements_only() {
        let xml = "<ListBucketResult><Name>kk-t-demo</Name><Contents><Key>kk-t-demo/x</Key></Contents></ListBucketResult>";
        assert_eq!(
            rewrite_bucket_names(xml, "kk-t-demo", "demo"),
            "<ListBucketResult><Name>demo</Name><Contents><Key>kk-t-demo/x</Key></Contents></ListBucketResult>"
        );
    }

    #[test]
    fn error_documents_escape() {
        let doc = error_document("AccessDenied", "a<b", "/x&y", "r1");
        assert!(doc.contains("<Message>a&lt;b</Message>"));
        assert!(doc.contains("<Resource>/x&amp;y</Resource>"));
    }
}
