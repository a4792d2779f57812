//! API keys: format, generation, parsing and hashing.
//!
//! A key is `am_` followed by 43 base62 characters holding 32 random bytes and 6 base62
//! characters of CRC-32 checksum over those bytes. The checksum lets us refuse typos and
//! random junk without a database lookup, and lets secret scanners recognize our keys. The
//! server stores only the SHA-256 of the whole key (looked up by equality on an index: with
//! 256 random bits a fast hash is enough; a slow KDF would only add a DoS lever) and a short
//! display prefix.

use rand::RngCore;

const PREFIX: &str = "am_";
const SECRET_BYTES: usize = 32;
const SECRET_CHARS: usize = 43; // ceil(256 / log2(62))
const CHECK_CHARS: usize = 6; // ceil(32 / log2(62))
const KEY_LEN: usize = PREFIX.len() + SECRET_CHARS + CHECK_CHARS;
/// Characters of a key shown in listings and logs of key management (never the whole key).
pub const DISPLAY_PREFIX_LEN: usize = PREFIX.len() + 8;

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Why a string is not a well-formed key. Deliberately carries no detail: every malformed
/// key gets the same answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed API key")]
pub struct MalformedKey;

/// A well-formed API key (the secret). Its `Debug` form is redacted so it cannot leak into logs.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKey({}…)", self.display_prefix())
    }
}

impl ApiKey {
    /// A new random key.
    pub fn generate() -> Self {
        let mut secret = [0u8; SECRET_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        let mut text = String::with_capacity(KEY_LEN);
        text.push_str(PREFIX);
        text.push_str(&base62(&secret, SECRET_CHARS));
        text.push_str(&base62(&crc32(&secret).to_be_bytes(), CHECK_CHARS));
        ApiKey(text)
    }

    /// Parses a key presented by a client: prefix, length, alphabet and checksum.
    pub fn parse(text: &str) -> Result<Self, MalformedKey> {
        if text.len() != KEY_LEN || !text.starts_with(PREFIX) {
            return Err(MalformedKey);
        }
        let body = &text.as_bytes()[PREFIX.len()..];
        let (secret_text, check_text) = body.split_at(SECRET_CHARS);
        let secret = unbase62::<SECRET_BYTES>(secret_text).ok_or(MalformedKey)?;
        let check = unbase62::<4>(check_text).ok_or(MalformedKey)?;
        if u32::from_be_bytes(check) != crc32(&secret) {
            return Err(MalformedKey);
        }
        Ok(ApiKey(text.to_owned()))
    }

    /// The secret text, to be shown to its owner exactly once.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Hex SHA-256 of the key: what the store keeps and looks up.
    pub fn hash(&self) -> String {
        crate::digest::sha256_hex(self.0.as_bytes())
    }

    /// The first characters of the key, to tell keys apart in listings.
    pub fn display_prefix(&self) -> &str {
        &self.0[..DISPLAY_PREFIX_LEN]
    }
}

/// Fixed-width big-endian base62 of `bytes`.
fn base62(bytes: &[u8], width: usize) -> String {
    let mut digits = Vec::with_capacity(width);
    let mut number = bytes.to_vec();
    for _ in 0..width {
        // Long division of the big-endian number by 62; the remainder is the next digit.
        let mut rem = 0u32;
        for byte in number.iter_mut() {
            let acc = (rem << 8) | u32::from(*byte);
            *byte = (acc / 62) as u8;
            rem = acc % 62;
        }
        digits.push(ALPHABET[rem as usize]);
    }
    digits.reverse();
    String::from_utf8(digits).expect("base62 alphabet is ASCII")
}

/// Inverse of [`base62`]; `None` for a character outside the alphabet or an overflow.
fn unbase62<const N: usize>(text: &[u8]) -> Option<[u8; N]> {
    let mut number = [0u8; N];
    for &c in text {
        let digit = ALPHABET.iter().position(|&a| a == c)? as u32;
        // number = number * 62 + digit, big-endian.
        let mut carry = digit;
        for byte in number.iter_mut().rev() {
            let acc = u32::from(*byte) * 62 + carry;
            *byte = acc as u8;
            carry = acc >> 8;
        }
        if carry != 0 {
            return None;
        }
    }
    Some(number)
}

/// CRC-32 (IEEE), bitwise: keys are short, so no table is needed.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_and_differ() {
        let a = ApiKey::generate();
        let b = ApiKey::generate();
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), KEY_LEN);
        assert_eq!(ApiKey::parse(a.expose()).unwrap(), a);
        assert_eq!(a.hash().len(), 64);
        assert!(!format!("{a:?}").contains(&a.expose()[DISPLAY_PREFIX_LEN..]));
    }

    #[test]
    fn checksum_catches_a_changed_character() {
        let key = ApiKey::generate();
        let mut text = key.expose().to_owned().into_bytes();
        let i = PREFIX.len() + 5;
        text[i] = if text[i] == b'a' { b'b' } else { b'a' };
        assert_eq!(
            ApiKey::parse(std::str::from_utf8(&text).unwrap()),
            Err(MalformedKey)
        );
        assert!(ApiKey::parse("am_short").is_err());
        assert!(ApiKey::parse(&"x".repeat(KEY_LEN)).is_err());
        assert!(ApiKey::parse(&format!("am_{}", "!".repeat(KEY_LEN - 3))).is_err());
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }
}
