//! Per-camera geometry: a camera mounted sideways or looking through a
//! mirror delivers frames the model must see upright. Rotation and flip are
//! applied once, before the region of interest and before storage, so the
//! stored image, the boxes in the verdict and the model's view all agree.

use firmware_config::Flip;
use image::{imageops, RgbImage};

/// Whether `rotate` and `flip` change anything.
pub fn is_identity(rotate: u16, flip: Flip) -> bool {
    rotate.is_multiple_of(360) && flip == Flip::None
}

/// Rotates clockwise by `rotate` degrees (0, 90, 180, 270), then mirrors.
pub fn orient(img: &RgbImage, rotate: u16, flip: Flip) -> RgbImage {
    let rotated = match rotate % 360 {
        90 => imageops::rotate90(img),
        180 => imageops::rotate180(img),
        270 => imageops::rotate270(img),
        _ => img.clone(),
    };
    match flip {
        Flip::None => rotated,
        Flip::Horizontal => imageops::flip_horizontal(&rotated),
        Flip::Vertical => imageops::flip_vertical(&rotated),
        Flip::Both => imageops::rotate180(&rotated),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    /// 3x2 image whose pixels are numbered 0..6 row by row.
    fn numbered() -> RgbImage {
        RgbImage::from_fn(3, 2, |x, y| Rgb([(y * 3 + x) as u8, 0, 0]))
    }

    fn values(img: &RgbImage) -> (u32, u32, Vec<u8>) {
        (
            img.width(),
            img.height(),
            img.pixels().map(|p| p[0]).collect(),
        )
    }

    #[test]
    fn rotations_and_flips_move_pixels_where_a_mounted_camera_expects() {
        let img = numbered();
        // 0 1 2        3 0
        // 3 4 5  ->90  4 1
        //              5 2
        assert_eq!(
            values(&orient(&img, 90, Flip::None)),
            (2, 3, vec![3, 0, 4, 1, 5, 2])
        );
        assert_eq!(
            values(&orient(&img, 180, Flip::None)),
            (3, 2, vec![5, 4, 3, 2, 1, 0])
        );
        assert_eq!(
            values(&orient(&img, 270, Flip::None)),
            (2, 3, vec![2, 5, 1, 4, 0, 3])
        );
        assert_eq!(
            values(&orient(&img, 0, Flip::Horizontal)),
            (3, 2, vec![2, 1, 0, 5, 4, 3])
        );
        assert_eq!(
            values(&orient(&img, 0, Flip::Vertical)),
            (3, 2, vec![3, 4, 5, 0, 1, 2])
        );
        assert_eq!(
            values(&orient(&img, 90, Flip::Horizontal)),
            (2, 3, vec![0, 3, 1, 4, 2, 5])
        );
        assert!(is_identity(0, Flip::None) && !is_identity(90, Flip::None));
    }
}
