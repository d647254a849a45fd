//! Reference images sent inline as `data:image/<fmt>;base64,...`: checked
//! from their header only (format, dimensions), never decoded to pixels.

use base64::Engine;

/// Formats Ark accepts, as written (lower-case) in the data URL.
pub const FORMATS: [&str; 6] = ["jpeg", "png", "webp", "bmp", "tiff", "gif"];
pub const MAX_BYTES: usize = 10 * 1024 * 1024;
pub const MAX_PIXELS: u64 = 36_000_000;
pub const MIN_SIDE: usize = 14;

/// Why an inline image is refused (the caller prefixes the field path).
pub fn check(data_url: &str) -> Result<(), String> {
    let rest = data_url
        .strip_prefix("data:image/")
        .ok_or("must be an http(s) URL or data:image/<format>;base64,...")?;
    let (fmt, payload) = rest
        .split_once(";base64,")
        .ok_or("must be data:image/<format>;base64,<data>")?;
    if !FORMATS.contains(&fmt) {
        return Err(format!(
            "format {fmt:?} is not supported; use lower-case jpeg, png, webp, bmp, tiff or gif"
        ));
    }
    // Reject oversized data before spending memory decoding it.
    if payload.len() / 4 * 3 > MAX_BYTES + 3 {
        return Err(format!("is larger than {} MB", MAX_BYTES >> 20));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(payload.trim_end())
        .map_err(|e| format!("is not valid base64 ({e})"))?;
    if bytes.len() > MAX_BYTES {
        return Err(format!("is larger than {} MB", MAX_BYTES >> 20));
    }
    let actual = imagesize::image_type(&bytes)
        .ok()
        .and_then(format_name)
        .ok_or("is not a readable JPEG, PNG, WEBP, BMP, TIFF or GIF image")?;
    if actual != fmt {
        return Err(format!("is declared as {fmt} but the data is {actual}"));
    }
    let dim = imagesize::blob_size(&bytes)
        .map_err(|_| "has an unreadable or truncated header".to_string())?;
    let (w, h) = (dim.width, dim.height);
    if w <= MIN_SIDE || h <= MIN_SIDE {
        return Err(format!(
            "is {w}x{h}; width and height must be > {MIN_SIDE} px"
        ));
    }
    if (w as u64) * (h as u64) > MAX_PIXELS {
        return Err(format!(
            "is {w}x{h}; at most {MAX_PIXELS} pixels are allowed"
        ));
    }
    if !crate::images::api::models::aspect_ok(w as u32, h as u32) {
        return Err(format!(
            "is {w}x{h}; the aspect ratio must be within [1/16, 16]"
        ));
    }
    Ok(())
}

fn format_name(t: imagesize::ImageType) -> Option<&'static str> {
    use imagesize::ImageType::*;
    Some(match t {
        Jpeg => "jpeg",
        Png => "png",
        Webp => "webp",
        Bmp => "bmp",
        Tiff => "tiff",
        Gif => "gif",
        _ => return None,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A real JPEG of the given size as a data URL.
    pub fn jpeg_url(w: u32, h: u32) -> String {
        let jpeg = crate::standins::ark_sim::jpeg::encode(w, h);
        format!(
            "data:image/jpeg;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(&jpeg)
        )
    }

    #[test]
    fn good_jpeg_passes() {
        assert_eq!(check(&jpeg_url(64, 48)), Ok(()));
    }

    #[test]
    fn each_rule_refuses() {
        let e = |s: &str| check(s).unwrap_err();
        assert!(e("data:image/JPEG;base64,AAAA").contains("lower-case"));
        assert!(e("data:image/svg;base64,AAAA").contains("not supported"));
        assert!(e("data:image/png;base64,!!!!").contains("base64"));
        assert!(e("data:image/jpeg,rawdata").contains("base64"));
        assert!(e(&jpeg_url(64, 48).replace("image/jpeg", "image/png")).contains("declared as png"));
        assert!(e(&jpeg_url(14, 100)).contains("> 14"));
        assert!(e(&jpeg_url(400, 20)).contains("aspect"));
        let big = format!("data:image/jpeg;base64,{}", "A".repeat(15 << 20));
        assert!(e(&big).contains("larger than 10 MB"));
        // A truncated image: the magic bytes are there, the header is not.
        let mut url = jpeg_url(64, 48);
        url.truncate("data:image/jpeg;base64,".len() + 16);
        assert!(check(&url).is_err());
    }
}
