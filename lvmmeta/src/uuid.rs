//! LVM identifiers: 32 characters from a 64-character alphabet (generated ones use only the first
//! 62), stored bare in labels and printed in groups 6-4-4-4-4-4-6 in text metadata.

use std::fmt;
use std::io::Read;

use crate::error::{Error, Result};

pub const ID_LEN: usize = 32;
const ALPHABET: &[u8; 64] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ!#";
const GROUPS: [usize; 7] = [6, 4, 4, 4, 4, 4, 6];

/// `ALPHABET.contains(&c)`, without the search (ids are checked for every LV of every read).
fn in_alphabet(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'!' || c == b'#'
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Uuid([u8; ID_LEN]);

impl Uuid {
    /// A new random id from /dev/urandom, as `id_create` makes them (byte modulo 62).
    pub fn generate() -> Result<Uuid> {
        let mut raw = [0u8; ID_LEN];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut raw))
            .map_err(|e| Error::io("/dev/urandom", "read", e))?;
        // The modulo bias is lvm2's too; ids only need to be unique, not uniform.
        Ok(Uuid(raw.map(|b| ALPHABET[(b % 62) as usize])))
    }

    /// The 32 bare characters, as found in a label.
    pub fn from_bytes(raw: &[u8]) -> Result<Uuid> {
        let bad = |reason| Error::InvalidUuid { text: String::from_utf8_lossy(raw).into_owned(), reason };
        let raw: [u8; ID_LEN] = raw.try_into().map_err(|_| bad("not 32 characters"))?;
        if !raw.iter().all(|&c| in_alphabet(c)) {
            return Err(bad("invalid character"));
        }
        Ok(Uuid(raw))
    }

    /// Parses the text form; like lvm2, every dash is ignored wherever it is.
    pub fn parse(text: &str) -> Result<Uuid> {
        let mut bare = [0u8; ID_LEN];
        let mut n = 0;
        for c in text.bytes().filter(|&c| c != b'-') {
            if n == ID_LEN {
                n += 1;
                break;
            }
            bare[n] = c;
            n += 1;
        }
        if n != ID_LEN {
            return Err(Error::InvalidUuid { text: text.to_string(), reason: "not 32 characters" });
        }
        Uuid::from_bytes(&bare).map_err(|_| Error::InvalidUuid { text: text.to_string(), reason: "invalid character" })
    }

    pub fn as_bytes(&self) -> &[u8; ID_LEN] {
        &self.0
    }

    /// The 32 characters without dashes (labels, DM UUIDs).
    pub fn bare(&self) -> &str {
        std::str::from_utf8(&self.0).expect("alphabet is ASCII")
    }
}

impl fmt::Display for Uuid {
    /// The dashed form; ids starting with '#' are printed bare, as lvm2 does.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0[0] == b'#' {
            return f.write_str(self.bare());
        }
        let mut pos = 0;
        for (i, len) in GROUPS.iter().enumerate() {
            if i > 0 {
                f.write_str("-")?;
            }
            f.write_str(&self.bare()[pos..pos + len])?;
            pos += len;
        }
        Ok(())
    }
}

impl fmt::Debug for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Uuid({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_print() {
        let u = Uuid::parse("U0TsMr-HeRj-Zx8D-heeL-Dgpt-sDtV-bpI5lW").unwrap();
        assert_eq!(u.bare(), "U0TsMrHeRjZx8DheeLDgptsDtVbpI5lW");
        assert_eq!(u.to_string(), "U0TsMr-HeRj-Zx8D-heeL-Dgpt-sDtV-bpI5lW");
        assert_eq!(Uuid::parse(u.bare()).unwrap(), u);
    }

    #[test]
    fn alphabet_check_is_the_alphabet() {
        for c in 0..=255u8 {
            assert_eq!(in_alphabet(c), ALPHABET.contains(&c), "byte {c}");
        }
    }

    #[test]
    fn rejects_bad_ids() {
        assert!(Uuid::parse("U0TsMr-HeRj").is_err());
        // 33 characters, and far too many.
        assert!(Uuid::parse("U0TsMr-HeRj-Zx8D-heeL-Dgpt-sDtV-bpI5lWx").is_err());
        assert!(Uuid::parse(&"a".repeat(100)).is_err());
        assert!(Uuid::parse("U0TsMr-HeRj-Zx8D-heeL-Dgpt-sDtV-bpI5l*").is_err());
        assert!(Uuid::parse("U0TsMr-HeRj-Zx8D-heeL-Dgpt-sDtV-bpI5lWW").is_err());
    }

    #[test]
    fn generated_ids_use_base62() {
        for _ in 0..20 {
            let u = Uuid::generate().unwrap();
            assert!(u.bare().bytes().all(|c| c.is_ascii_alphanumeric()));
            assert_eq!(Uuid::parse(&u.to_string()).unwrap(), u);
        }
        assert_ne!(Uuid::generate().unwrap(), Uuid::generate().unwrap());
    }
}
