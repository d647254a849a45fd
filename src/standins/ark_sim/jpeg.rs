//! Real JPEGs (or PNGs, for `output_format: png`) of any size, encoded once
//! per size and format and cached, so a 4K batch costs one encode, not
//! fifteen.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use image::codecs::jpeg::JpegEncoder;
use image::{ImageBuffer, Rgb};
use parking_lot::Mutex;

/// One cell per size; concurrent requests for a new size wait for one encode.
type Cells = HashMap<(u32, u32, bool), Arc<tokio::sync::OnceCell<Bytes>>>;

#[derive(Default)]
pub struct JpegCache {
    cells: Mutex<Cells>,
}

impl JpegCache {
    pub async fn get(&self, w: u32, h: u32) -> Bytes {
        self.get_as(w, h, false).await
    }

    /// A JPEG, or a PNG when `png`.
    pub async fn get_as(&self, w: u32, h: u32, png: bool) -> Bytes {
        let cell = self.cells.lock().entry((w, h, png)).or_default().clone();
        cell.get_or_init(|| async move {
            tokio::task::spawn_blocking(move || if png { encode_png(w, h) } else { encode(w, h) })
                .await
                .unwrap_or_default()
        })
        .await
        .clone()
    }
}

/// A diagonal gradient.
fn gradient(w: u32, h: u32) -> ImageBuffer<Rgb<u8>, Vec<u8>> {
    ImageBuffer::from_fn(w, h, |x, y| {
        let r = (x * 255 / w.max(1)) as u8;
        let g = (y * 255 / h.max(1)) as u8;
        Rgb([r, g, 160u8])
    })
}

/// The gradient as a PNG.
pub fn encode_png(w: u32, h: u32) -> Bytes {
    let mut out = std::io::Cursor::new(Vec::new());
    if let Err(e) = gradient(w, h).write_to(&mut out, image::ImageFormat::Png) {
        log::error!("sim-ark: PNG encode {w}x{h} failed: {e}");
    }
    Bytes::from(out.into_inner())
}

/// The gradient as a JPEG, quality 80.
pub fn encode(w: u32, h: u32) -> Bytes {
    let img = gradient(w, h);
    let mut out = Vec::new();
    let mut enc = JpegEncoder::new_with_quality(&mut out, 80);
    if let Err(e) = enc.encode_image(&img) {
        log::error!("sim-ark: JPEG encode {w}x{h} failed: {e}");
    }
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jpegs_have_the_requested_size_and_are_cached() {
        let cache = JpegCache::default();
        let a = cache.get(64, 48).await;
        assert_eq!(&a[..3], &[0xFF, 0xD8, 0xFF], "JPEG magic");
        let dim = imagesize::blob_size(&a).unwrap();
        assert_eq!((dim.width, dim.height), (64, 48));
        let b = cache.get(64, 48).await;
        assert_eq!(a.as_ptr(), b.as_ptr(), "second call is the cached buffer");
        let p = cache.get_as(64, 48, true).await;
        assert_eq!(&p[..8], b"\x89PNG\r\n\x1a\n", "PNG magic");
        let dim = imagesize::blob_size(&p).unwrap();
        assert_eq!((dim.width, dim.height), (64, 48));
    }
}
