//! The part pictures the pages show: the stored image itself, and a small
//! JPEG of it for lists (the inbox, the verdict list, the line view's
//! strip), made on first request and kept beside the images so that a list
//! of 50 parts loads 50 small files instead of 50 camera frames.
//!
//! Only a content address (a sha256 the store knows and still keeps) is
//! served; the file path always comes from the database.

use std::path::Path;

use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::auth::caller;
use crate::respond::Refusal;
use crate::Web;

/// The longer side of a thumbnail, in pixels: sharp on a 2× screen at the
/// 120 px the lists show.
pub const THUMBNAIL_SIDE: u32 = 240;

/// `GET /images/{sha}`: the picture as stored.
pub(crate) async fn image(
    State(web): State<Web>,
    headers: HeaderMap,
    UrlPath(sha): UrlPath<String>,
) -> Result<Response, Refusal> {
    let Some(path) = kept_image(&web, &headers, &sha).await? else {
        return Ok(sign_in_first());
    };
    let bytes = tokio::fs::read(&path)
        .await
        .map_err(|_| Refusal::NotFound("image file is gone".into()))?;
    let mime = if path.ends_with(".jpg") || path.ends_with(".jpeg") {
        "image/jpeg"
    } else {
        "image/png"
    };
    Ok(picture(mime, bytes))
}

/// `GET /images/{sha}/thumb`: a JPEG at most [`THUMBNAIL_SIDE`] on its
/// longer side.
pub(crate) async fn thumbnail(
    State(web): State<Web>,
    headers: HeaderMap,
    UrlPath(sha): UrlPath<String>,
) -> Result<Response, Refusal> {
    let Some(path) = kept_image(&web, &headers, &sha).await? else {
        return Ok(sign_in_first());
    };
    let cached = web.store.thumbnail_file(&sha.to_ascii_lowercase());
    if let Ok(bytes) = tokio::fs::read(&cached).await {
        return Ok(picture("image/jpeg", bytes));
    }
    let bytes = tokio::task::spawn_blocking(move || make_thumbnail(Path::new(&path), &cached))
        .await
        .map_err(Refusal::internal)??;
    Ok(picture("image/jpeg", bytes))
}

/// A picture is not a page: no redirect to sign in.
fn sign_in_first() -> Response {
    (StatusCode::UNAUTHORIZED, "sign in first").into_response()
}

fn picture(mime: &'static str, bytes: Vec<u8>) -> Response {
    (
        [
            (header::CONTENT_TYPE, mime),
            (header::CACHE_CONTROL, "private, max-age=86400"),
        ],
        bytes,
    )
        .into_response()
}

/// The kept image's file for a signed-in caller; `None` when nobody is
/// signed in.
async fn kept_image(web: &Web, headers: &HeaderMap, sha: &str) -> Result<Option<String>, Refusal> {
    if caller(web, headers)
        .await
        .map_err(Refusal::internal)?
        .is_none()
    {
        return Ok(None);
    }
    let gone = || Refusal::NotFound("no such image".into());
    if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(gone());
    }
    web.store
        .image_file(&sha.to_ascii_lowercase())
        .await
        .map_err(Refusal::internal)?
        .ok_or_else(gone)
        .map(Some)
}

/// Decodes the stored image, scales it down and keeps the JPEG at `cached`
/// (written aside and renamed, so a half-written thumbnail is never
/// served).
fn make_thumbnail(image: &Path, cached: &Path) -> Result<Vec<u8>, Refusal> {
    let bytes = std::fs::read(image).map_err(|_| Refusal::NotFound("image file is gone".into()))?;
    let decoded = image::load_from_memory(&bytes)
        .map_err(|e| Refusal::Internal(format!("{}: {e}", image.display())))?;
    let small = decoded.thumbnail(THUMBNAIL_SIDE, THUMBNAIL_SIDE).to_rgb8();
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 80)
        .encode_image(&small)
        .map_err(Refusal::internal)?;
    if let Some(dir) = cached.parent() {
        let aside = cached.with_extension("part");
        let kept = std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(&aside, &jpeg))
            .and_then(|()| std::fs::rename(&aside, cached));
        if let Err(e) = kept {
            // Served all the same; made again next time.
            tracing::warn!(path = %cached.display(), error = %e, "thumbnail not kept");
        }
    }
    Ok(jpeg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thumbnail_is_a_small_jpeg_kept_for_next_time() {
        let dir = std::env::temp_dir().join(format!("thumb-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let png = dir.join("part.png");
        image::RgbImage::from_fn(1200, 600, |x, _| image::Rgb([(x % 256) as u8, 90, 30]))
            .save(&png)
            .unwrap();
        let cached = dir.join("thumbs").join("abc.jpg");
        let jpeg = make_thumbnail(&png, &cached).unwrap();
        let small = image::load_from_memory(&jpeg).unwrap();
        assert_eq!(
            (small.width(), small.height()),
            (THUMBNAIL_SIDE, THUMBNAIL_SIDE / 2)
        );
        assert_eq!(std::fs::read(&cached).unwrap(), jpeg, "kept for next time");
        assert!(!cached.with_extension("part").exists());
        std::fs::write(&png, b"not a picture").unwrap();
        assert!(matches!(
            make_thumbnail(&png, &dir.join("other.jpg")),
            Err(Refusal::Internal(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
