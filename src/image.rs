//! Images: what the bytes really are, how big they are, and the renditions each scheme needs.
//!
//! This module is the only maker of a [`Rendition`]: validated image bytes together with their hash, format and
//! size. A rendition's hash is computed from exactly the bytes it holds, so a codec that advertises
//! `rendition.hash()` for `rendition.bytes()` keeps the rule every reader checks (Gajim and Dino drop an avatar
//! whose SHA-1 differs from the advertised one).
//!
//! Order of checks on untrusted bytes: byte size, magic bytes (a vCard TYPE is only a hint, XEP-0153 §6: the
//! bytes win), header dimensions without decoding, the pixel budget (decompression bombs), and only then a
//! decode bounded by an allocation limit.

use std::io::Cursor;
use std::sync::Arc;

use image::{DynamicImage, ImageReader, Limits, imageops::FilterType};
use serde::Deserialize;

use crate::avatar::AvatarHash;

/// The image formats the schemes carry (XEP-0008: GIF, JPEG, PNG; XEP-0153 and XEP-0084 add anything, WebP seen
/// from Conversations).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageFormat {
    /// `image/png`, the one format XEP-0084 requires.
    Png,
    /// `image/jpeg`.
    Jpeg,
    /// `image/gif` (first frame is used when transcoding).
    Gif,
    /// `image/webp` (Conversations until 2018).
    Webp,
}

impl ImageFormat {
    /// Recognises the format from the first bytes of the file, whatever label came with it.
    pub fn sniff(bytes: &[u8]) -> Option<Self> {
        match bytes {
            [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n', ..] => Some(Self::Png),
            [0xff, 0xd8, 0xff, ..] => Some(Self::Jpeg),
            [b'G', b'I', b'F', b'8', b'7' | b'9', b'a', ..] => Some(Self::Gif),
            [b'R', b'I', b'F', b'F', _, _, _, _, b'W', b'E', b'B', b'P', ..] => Some(Self::Webp),
            _ => None,
        }
    }

    /// The IANA media type, as every scheme writes it.
    pub fn mime(self) -> &'static str {
        match self {
            Self::Png => "image/png",
            Self::Jpeg => "image/jpeg",
            Self::Gif => "image/gif",
            Self::Webp => "image/webp",
        }
    }

    /// Whether XEP-0008 readers can show it (the spec allows GIF, JPEG and PNG).
    fn legacy_readable(self) -> bool {
        !matches!(self, Self::Webp)
    }

    fn codec(self) -> image::ImageFormat {
        match self {
            Self::Png => image::ImageFormat::Png,
            Self::Jpeg => image::ImageFormat::Jpeg,
            Self::Gif => image::ImageFormat::Gif,
            Self::Webp => image::ImageFormat::WebP,
        }
    }
}

/// Every size budget of the image pipeline; each is a config key under `[limits]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImageLimits {
    /// Largest image accepted from any scheme, in bytes (Prosody's component stanza limit is 512 KiB).
    pub max_input_bytes: usize,
    /// Largest width × height decoded (eimp uses 25 Mpx); checked from the header before any decoding.
    pub max_pixels: u64,
    /// Largest side, in pixels, of the PNG published to XEP-0084 (bigger images are scaled down).
    pub pep_max_side: u32,
    /// Largest PNG published to XEP-0084, in bytes (the base64 of it must fit a stanza).
    pub pep_max_bytes: usize,
    /// Largest side of the rendition served to XEP-0008 readers (XEP-0008: 32 to 64 px).
    pub legacy_max_side: u32,
    /// Largest rendition served to XEP-0008 readers, in bytes (XEP-0008: "less than eight kilobytes").
    pub legacy_max_bytes: usize,
}

impl Default for ImageLimits {
    fn default() -> Self {
        Self {
            max_input_bytes: 512 * 1024,
            max_pixels: 16 * 1024 * 1024,
            pep_max_side: 512,
            pep_max_bytes: 256 * 1024,
            legacy_max_side: 64,
            legacy_max_bytes: 8 * 1024 - 1,
        }
    }
}

/// Why bytes were not accepted as an avatar or could not be turned into a rendition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    /// Zero bytes.
    #[error("the image is empty")]
    Empty,
    /// Over [`ImageLimits::max_input_bytes`].
    #[error("the image is {size} bytes, over the {limit}-byte limit")]
    TooLarge {
        /// Bytes received.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The magic bytes are not PNG, JPEG, GIF or WebP.
    #[error("not a PNG, JPEG, GIF or WebP image (first bytes {0:02x?})")]
    UnknownFormat(Vec<u8>),
    /// The header could not be read: a truncated or corrupt file.
    #[error("unreadable {format:?} header: {reason}")]
    BadHeader {
        /// The sniffed format.
        format: ImageFormat,
        /// What the decoder said.
        reason: String,
    },
    /// Width × height over [`ImageLimits::max_pixels`]: a decompression bomb, refused before decoding.
    #[error("{width}×{height} px is over the {limit}-pixel budget")]
    TooManyPixels {
        /// Width from the header.
        width: u32,
        /// Height from the header.
        height: u32,
        /// The configured budget.
        limit: u64,
    },
    /// The header was fine but the pixel data was not (truncated, corrupt).
    #[error("undecodable {format:?} image: {reason}")]
    Decode {
        /// The sniffed format.
        format: ImageFormat,
        /// What the decoder said.
        reason: String,
    },
    /// No size and encoding fit the byte budget (a pathological image).
    #[error("no rendition of at most {max_side} px fits {budget} bytes")]
    NoFit {
        /// The side the search started from.
        max_side: u32,
        /// The byte budget.
        budget: usize,
    },
    /// The encoder failed (should not happen for in-memory buffers).
    #[error("encoding failed: {0}")]
    Encode(String),
}

/// Validated image bytes with their hash, real format and dimensions. Cheap to clone.
///
/// Only this module builds one, from bytes it has decoded successfully within the limits.
#[derive(Clone, PartialEq, Eq)]
pub struct Rendition {
    bytes: Arc<[u8]>,
    hash: AvatarHash,
    format: ImageFormat,
    width: u32,
    height: u32,
}

/// A rendition whose format is PNG: what XEP-0084 requires for the data node and the metadata item id.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PngRendition(Rendition);

impl std::ops::Deref for PngRendition {
    type Target = Rendition;
    fn deref(&self) -> &Rendition {
        &self.0
    }
}

impl std::fmt::Debug for Rendition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Rendition({}, {}, {}×{}, {} bytes)",
            self.hash,
            self.format.mime(),
            self.width,
            self.height,
            self.bytes.len()
        )
    }
}

/// An original and the two renditions the gateway derives from it (the PNG for XEP-0084 and the vCard, the small
/// one for XEP-0008 readers), made with at most one decode. This is the CPU-heavy step of a conversion: the engine
/// asks for it as a job and the shell runs it off the link's thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transcoded {
    /// The validated original.
    pub original: Rendition,
    /// What XEP-0084 gets (the original itself when it already qualifies).
    pub png: PngRendition,
    /// What XEP-0008 readers get (likewise).
    pub legacy: Rendition,
}

impl Transcoded {
    /// Validates untrusted bytes (as [`Rendition::from_bytes`]) and derives both renditions from the same decode.
    pub fn from_bytes(bytes: impl Into<Arc<[u8]>>, limits: &ImageLimits) -> Result<Self, ImageError> {
        let (original, image) = Rendition::decode(bytes.into(), limits)?;
        Self::derive(original, image, limits)
    }

    fn derive(original: Rendition, image: DynamicImage, limits: &ImageLimits) -> Result<Self, ImageError> {
        let mut pixels = Some(image);
        let png = original.png_with(limits, &mut pixels)?;
        let legacy = original.legacy_with(limits, &mut pixels)?;
        Ok(Self { original, png, legacy })
    }
}

impl Rendition {
    /// Validates untrusted bytes: size, magic bytes, header, pixel budget, then a full bounded decode.
    pub fn from_bytes(bytes: impl Into<Arc<[u8]>>, limits: &ImageLimits) -> Result<Self, ImageError> {
        Ok(Self::decode(bytes.into(), limits)?.0)
    }

    /// Bytes this gateway validated before it stored them, read back: the hash must still be `expected` (a
    /// corrupted or foreign blob is refused), the format and size come from the header; no pixel is decoded.
    pub fn from_stored(bytes: impl Into<Arc<[u8]>>, expected: AvatarHash) -> Result<Self, ImageError> {
        let bytes = bytes.into();
        let hash = AvatarHash::of(&bytes);
        if hash != expected {
            return Err(ImageError::Decode {
                format: ImageFormat::Png,
                reason: format!("stored bytes hash to {hash}"),
            });
        }
        let format = ImageFormat::sniff(&bytes)
            .ok_or_else(|| ImageError::UnknownFormat(bytes.iter().take(8).copied().collect()))?;
        let (width, height) = ImageReader::with_format(Cursor::new(&bytes[..]), format.codec())
            .into_dimensions()
            .map_err(|e| ImageError::BadHeader { format, reason: e.to_string() })?;
        Ok(Self { bytes, hash, format, width, height })
    }

    /// The image bytes, exactly as they are served.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The shared buffer, for storing without copying.
    pub fn shared_bytes(&self) -> Arc<[u8]> {
        Arc::clone(&self.bytes)
    }

    /// SHA-1 of [`Self::bytes`].
    pub fn hash(&self) -> AvatarHash {
        self.hash
    }

    /// The format the bytes really are.
    pub fn format(&self) -> ImageFormat {
        self.format
    }

    /// `self.format().mime()`.
    pub fn mime(&self) -> &'static str {
        self.format.mime()
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// The PNG for XEP-0084: these very bytes when they are a PNG within the PEP budgets (so the hash survives and
    /// every scheme can share it), otherwise a transcoded, downscaled PNG.
    pub fn to_png(&self, limits: &ImageLimits) -> Result<PngRendition, ImageError> {
        self.png_with(limits, &mut None)
    }

    fn png_with(&self, limits: &ImageLimits, pixels: &mut Option<DynamicImage>) -> Result<PngRendition, ImageError> {
        let fits = |r: &Rendition| r.longest_side() <= limits.pep_max_side && r.bytes.len() <= limits.pep_max_bytes;
        if self.format == ImageFormat::Png && fits(self) {
            return Ok(PngRendition(self.clone()));
        }
        let png =
            shrink_until(self.pixels(limits, pixels)?, limits.pep_max_side, limits.pep_max_bytes, &[Encoding::Png])?;
        Ok(PngRendition(png))
    }

    /// The rendition XEP-0008 readers get: at most `legacy_max_side` px and `legacy_max_bytes`, in GIF, JPEG or
    /// PNG. These very bytes when they already qualify; otherwise downscaled (never upscaled) and re-encoded,
    /// stepping the size down until the byte budget holds.
    pub fn to_legacy(&self, limits: &ImageLimits) -> Result<Rendition, ImageError> {
        self.legacy_with(limits, &mut None)
    }

    fn legacy_with(&self, limits: &ImageLimits, pixels: &mut Option<DynamicImage>) -> Result<Rendition, ImageError> {
        if self.format.legacy_readable()
            && self.longest_side() <= limits.legacy_max_side
            && self.bytes.len() <= limits.legacy_max_bytes
        {
            return Ok(self.clone());
        }
        shrink_until(
            self.pixels(limits, pixels)?,
            limits.legacy_max_side,
            limits.legacy_max_bytes,
            &[Encoding::Png, Encoding::Jpeg(85), Encoding::Jpeg(60)],
        )
    }

    /// This rendition as the PNG type, when it is one.
    pub fn as_png(&self) -> Option<PngRendition> {
        (self.format == ImageFormat::Png).then(|| PngRendition(self.clone()))
    }

    fn longest_side(&self) -> u32 {
        self.width.max(self.height)
    }

    /// The decoded pixels, decoded on first use and kept in `pixels` for the next rendition.
    fn pixels<'a>(
        &self,
        limits: &ImageLimits,
        pixels: &'a mut Option<DynamicImage>,
    ) -> Result<&'a DynamicImage, ImageError> {
        let image = match pixels.take() {
            Some(image) => image,
            None => Self::decode(Arc::clone(&self.bytes), limits)?.1,
        };
        Ok(pixels.insert(image))
    }

    fn decode(bytes: Arc<[u8]>, limits: &ImageLimits) -> Result<(Self, DynamicImage), ImageError> {
        if bytes.is_empty() {
            return Err(ImageError::Empty);
        }
        if bytes.len() > limits.max_input_bytes {
            return Err(ImageError::TooLarge { size: bytes.len(), limit: limits.max_input_bytes });
        }
        let format = ImageFormat::sniff(&bytes)
            .ok_or_else(|| ImageError::UnknownFormat(bytes.iter().take(8).copied().collect()))?;
        let reader = || ImageReader::with_format(Cursor::new(&bytes[..]), format.codec());
        let (width, height) =
            reader().into_dimensions().map_err(|e| ImageError::BadHeader { format, reason: e.to_string() })?;
        if u64::from(width) * u64::from(height) > limits.max_pixels {
            return Err(ImageError::TooManyPixels { width, height, limit: limits.max_pixels });
        }
        // zune-jpeg (behind `image`, strict mode off) fills a cut-off scan with grey instead of failing, so a
        // truncated JPEG would otherwise become a "valid" half-grey avatar.
        if format == ImageFormat::Jpeg && !jpeg_reaches_eoi(&bytes) {
            return Err(ImageError::Decode { format, reason: "truncated: no end-of-image marker".into() });
        }
        let mut reader = reader();
        let mut bounds = Limits::default();
        // The decoder's own guard, in case the header lied: RGBA at the pixel budget, plus slack for codec state.
        bounds.max_alloc = Some(limits.max_pixels.saturating_mul(4).saturating_add(16 << 20));
        reader.limits(bounds);
        let image = reader.decode().map_err(|e| ImageError::Decode { format, reason: e.to_string() })?;
        let hash = AvatarHash::of(&bytes);
        Ok((Self { bytes, hash, format, width, height }, image))
    }

    /// Wraps bytes this module has just encoded itself.
    fn encoded(bytes: Vec<u8>, format: ImageFormat, width: u32, height: u32) -> Self {
        let hash = AvatarHash::of(&bytes);
        Self { bytes: bytes.into(), hash, format, width, height }
    }
}

/// Walks a JPEG's marker segments (skipping each by its length, so an EXIF thumbnail's own EOI is not mistaken
/// for ours) and its entropy-coded scans, and says whether the top-level end-of-image marker is reached. Bytes
/// after EOI and stray bytes between segments are tolerated, as decoders do. Never indexes out of bounds.
fn jpeg_reaches_eoi(bytes: &[u8]) -> bool {
    let at = |i: usize| bytes.get(i).copied();
    let mut pos = 2; // after SOI
    while pos < bytes.len() {
        if at(pos) != Some(0xff) {
            pos += 1; // garbage between segments
            continue;
        }
        let Some(marker) = at(pos + 1) else { return false };
        match marker {
            0xd9 => return true,
            // fill byte, or markers without a length (TEM, RSTn, a stray SOI)
            0xff => pos += 1,
            0x01 | 0xd0..=0xd8 => pos += 2,
            _ => {
                let (Some(hi), Some(lo)) = (at(pos + 2), at(pos + 3)) else { return false };
                pos += 2 + usize::from(u16::from_be_bytes([hi, lo]));
                if marker == 0xda {
                    // Entropy-coded data runs to the next marker other than a stuffed 0xff00 or an RSTn.
                    while pos < bytes.len() {
                        match (at(pos), at(pos + 1)) {
                            (Some(0xff), Some(0x00 | 0xd0..=0xd7)) => pos += 2,
                            (Some(0xff), Some(_)) => break,
                            _ => pos += 1,
                        }
                    }
                }
            }
        }
    }
    false
}

#[derive(Clone, Copy)]
enum Encoding {
    Png,
    Jpeg(u8),
}

/// Scales `image` to fit `max_side` (never up), then tries each encoding in turn; while none fits `budget` bytes,
/// steps the side down by a quarter. Gives up below 8 px, but an image already smaller than that still gets its
/// one try at its own size (a 5×3 JPEG must still get a PNG).
fn shrink_until(
    image: &DynamicImage,
    max_side: u32,
    budget: usize,
    encodings: &[Encoding],
) -> Result<Rendition, ImageError> {
    let mut side = max_side.min(image.width().max(image.height()));
    let floor = side.clamp(1, 8);
    while side >= floor {
        let scaled = if image.width().max(image.height()) > side {
            image.resize(side, side, FilterType::Triangle)
        } else {
            image.clone()
        };
        for &encoding in encodings {
            let rendition = encode(&scaled, encoding)?;
            if rendition.bytes.len() <= budget {
                return Ok(rendition);
            }
        }
        side = side * 3 / 4;
    }
    Err(ImageError::NoFit { max_side, budget })
}

fn encode(image: &DynamicImage, encoding: Encoding) -> Result<Rendition, ImageError> {
    use image::ImageEncoder;
    use image::codecs::{jpeg::JpegEncoder, png::PngEncoder};
    let mut out = Vec::new();
    let (width, height) = (image.width(), image.height());
    let format = match encoding {
        Encoding::Png => {
            let rgba = image.to_rgba8();
            PngEncoder::new_with_quality(
                &mut out,
                image::codecs::png::CompressionType::Default,
                image::codecs::png::FilterType::Adaptive,
            )
            .write_image(&rgba, width, height, image::ExtendedColorType::Rgba8)
            .map_err(|e| ImageError::Encode(e.to_string()))?;
            ImageFormat::Png
        }
        Encoding::Jpeg(quality) => {
            // JPEG has no alpha: flatten onto white, as avatars are usually shown on light backgrounds.
            let rgb = flatten_on_white(image);
            JpegEncoder::new_with_quality(&mut out, quality)
                .write_image(&rgb, width, height, image::ExtendedColorType::Rgb8)
                .map_err(|e| ImageError::Encode(e.to_string()))?;
            ImageFormat::Jpeg
        }
    };
    Ok(Rendition::encoded(out, format, width, height))
}

fn flatten_on_white(image: &DynamicImage) -> image::RgbImage {
    let rgba = image.to_rgba8();
    image::RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let [r, g, b, a] = rgba.get_pixel(x, y).0;
        let blend = |c: u8| ((u16::from(c) * u16::from(a) + 255 * (255 - u16::from(a))) / 255) as u8;
        image::Rgb([blend(r), blend(g), blend(b)])
    })
}
