//! Real JPEGs of any size, encoded once per size and cached, so a 4K batch
//! costs one encode, not fifteen.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use image::codecs::jpeg::JpegEncoder;
use image::{ImageBuffer, Rgb};
use parking_lot::Mutex;

/// One cell per size; concurrent requests for a new size wait for one encode.
type Cells = HashMap<(u32, u32), Arc<tokio::sync::OnceCell<Bytes>>>;

#[derive(Default)]
pub struct JpegCache {
    cells: Mutex<Cells>,
}

impl JpegCache {
    pub async fn get(&self, w: u32, h: u32) -> Bytes {
        let cell = self.cells.lock().entry((w, h)).or_default().clone();
        cell.get_or_init(|| async move {
            tokio::task::spawn_blocking(move || encode(w, h))
                .await
                .unwrap_or_default()
        })
        .await
        .clone()
    }
}

/// A diagonal gradient, quality 80.
pub fn encode(w: u32, h: u32) -> Bytes {
    let img = ImageBuffer::from_fn(w, h, |x, y| {
        let r = (x * 255 / w.max(1)) as u8;
        let g = (y * 255 / h.max(1)) as u8;
        Rgb([r, g, 160u8])
    });
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
    }
}
