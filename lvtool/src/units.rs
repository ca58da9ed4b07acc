//! Sizes as lvm2 reads them from the command line (`-L 10G`, `-L +1.5t`, `-l 50%FREE`) and
//! prints them (`--units`, libdm's `dm_size_to_string`): every internal size is in 512-byte
//! sectors, as in the metadata.

use std::fmt;

/// How sizes are printed: lvm2's `--units` letter. Only [`Units::parse`] makes one from a letter,
/// so every value holds a letter the formatting knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Units {
    /// One of `hHrR` (human), `bBsS`, `kmgtpe` (powers of 1024), `KMGTPE` (powers of 1000).
    letter: char,
    /// `--nosuffix`: drop the unit letter (human units keep it, as in lvm2).
    suffix: bool,
}

impl Default for Units {
    /// lvm.conf's default `units = "r"`: human, with `<` when the shown value was rounded up.
    fn default() -> Self {
        Units { letter: 'r', suffix: true }
    }
}

/// How much text goes after the number: reports use one letter, displays a short word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SuffixStyle {
    /// `12.00m` (reports).
    Unit,
    /// `12.00 MiB` (vgdisplay, lvdisplay, messages).
    Short,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Base {
    Human1024,
    Human1000,
    Fixed(u64),
}

impl Units {
    /// Parses a `--units` argument (one letter, as lvm2 accepts in strict mode).
    pub fn parse(s: &str) -> Option<Units> {
        let mut c = s.chars();
        let (Some(l), None) = (c.next(), c.next()) else { return None };
        "hHrRbBsSkmgtpeKMGTPE".contains(l).then_some(Units { letter: l, suffix: true })
    }

    /// The same units, printed without the unit letter (`--nosuffix`) or with it.
    pub fn with_suffix(self, suffix: bool) -> Units {
        Units { suffix, ..self }
    }

    pub fn letter(self) -> char {
        self.letter
    }

    fn base(self) -> Base {
        match self.letter {
            'h' | 'r' => Base::Human1024,
            'H' | 'R' => Base::Human1000,
            'b' | 'B' => Base::Fixed(1),
            's' | 'S' => Base::Fixed(512),
            c => {
                let si = c.is_ascii_uppercase();
                let k: u64 = if si { 1000 } else { 1024 };
                let n = "kmgtpe".find(c.to_ascii_lowercase()).expect("checked in parse") as u32 + 1;
                Base::Fixed(k.pow(n))
            }
        }
    }

    /// A size given in 512-byte sectors, as lvm2 prints it.
    pub fn format(self, sectors: u64, style: SuffixStyle) -> String {
        const BIN: [(&str, &str); 7] =
            [("e", " EiB"), ("p", " PiB"), ("t", " TiB"), ("g", " GiB"), ("m", " MiB"), ("k", " KiB"), ("b", " B")];
        const SI: [(&str, &str); 7] =
            [("E", " EB"), ("P", " PB"), ("T", " TB"), ("G", " GB"), ("M", " MB"), ("K", " kB"), ("B", " B ")];
        let pick = |t: (&'static str, &'static str)| if style == SuffixStyle::Unit { t.0 } else { t.1 };
        let base = self.base();
        // The suffix a fixed unit prints: its letter's entry in lvm2's tables.
        let fixed_suffix = |letter: char| -> &'static str {
            match letter {
                'b' | 'B' => pick(("B", " B ")),
                's' | 'S' => pick(("S", " Se")),
                c if c.is_ascii_uppercase() => pick(SI["EPTGMK".find(c).unwrap()]),
                c => pick(BIN["eptgmk".find(c).unwrap()]),
            }
        };
        if sectors == 0 {
            let s = match base {
                Base::Fixed(_) if self.suffix => fixed_suffix(self.letter),
                Base::Fixed(_) => "",
                _ => pick((" ", "   ")),
            };
            return format!("0{s}");
        }
        let bytes = sectors as u128 * 512;
        let (divisor, suffix, prefix) = match base {
            Base::Fixed(f) => (f as u128, if self.suffix { fixed_suffix(self.letter) } else { "" }, ""),
            Base::Human1024 | Base::Human1000 => {
                let k: u128 = if base == Base::Human1000 { 1000 } else { 1024 };
                let table = if base == Base::Human1000 { &SI } else { &BIN };
                let mut unit = k.pow(6);
                let mut s = 0;
                while s < 6 && bytes < unit {
                    unit /= k;
                    s += 1;
                }
                let mut prefix = "";
                if s < 6 && matches!(self.letter, 'r' | 'R') {
                    // lvm2 marks a value whose 2-decimal form was rounded up with '<'.
                    let d = 100.0 * bytes as f64 / unit as f64;
                    if d.floor() != d.round_ties_even() {
                        prefix = "<";
                    }
                }
                (unit, pick(table[s]), prefix)
            }
        };
        let precision = match suffix.trim().chars().next().map(|c| c.to_ascii_uppercase()) {
            Some('B') | Some('S') => 0,
            _ if matches!(base, Base::Fixed(1) | Base::Fixed(512)) => 0,
            _ => 2,
        };
        format!("{prefix}{:.*}{suffix}", precision, bytes as f64 / divisor as f64)
    }
}

/// Sign of a relative size argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sign {
    None,
    Plus,
    Minus,
}

/// What a `-l` percentage is relative to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PercentOf {
    Vg,
    Free,
    Pvs,
    Origin,
}

/// A parsed `-L` (sectors) or `-l` (extents or a percentage) argument.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SizeArg {
    pub sign: Sign,
    /// Sectors for `-L`, extents for `-l` without a percentage, the percentage otherwise.
    pub value: u64,
    pub percent: Option<PercentOf>,
}

/// Why a size argument was rejected; lvm2's messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SizeError(pub String);

impl fmt::Display for SizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn split_sign(s: &str) -> Result<(Sign, &str), SizeError> {
    let (sign, rest) = match s.as_bytes().first() {
        Some(b'+') => (Sign::Plus, &s[1..]),
        Some(b'-') => (Sign::Minus, &s[1..]),
        _ => (Sign::None, s),
    };
    if rest.starts_with(['+', '-']) {
        return Err(SizeError("Multiple sign symbols detected.".into()));
    }
    Ok((sign, rest))
}

/// Leading decimal number (digits and one '.') and the rest, as strtod would split it.
fn split_number(s: &str) -> Result<(f64, &str), SizeError> {
    if !s.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        return Err(SizeError("Size requires number argument.".into()));
    }
    let end = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let v: f64 = s[..end].parse().map_err(|_| SizeError("Can't parse size argument.".into()))?;
    Ok((v, &s[end..]))
}

/// Parses lvm2's `--size`: a number with an optional unit (`bskmgtpe`, either case, powers of
/// 1024; MiB when none), optionally signed. Bytes must be a multiple of 512.
pub fn parse_size(s: &str) -> Result<SizeArg, SizeError> {
    let (sign, rest) = split_sign(s)?;
    let (v, unit) = split_number(rest)?;
    let sectors = match unit.to_ascii_lowercase().as_str() {
        "" => v * 2048.0,
        "s" => v,
        "b" => {
            let b = v as u64;
            if !b.is_multiple_of(512) {
                let up = b + 512 - b % 512;
                return Err(SizeError(format!("Size is not a multiple of 512. Try using {} or {}.", up - 512, up)));
            }
            v / 512.0
        }
        u if u.len() == 1 && "kmgtpe".contains(u) => {
            let i = "kmgtpe".find(u).unwrap() as i32;
            v * 1024f64.powi(i) * 2.0
        }
        _ => return Err(SizeError("Can't parse size argument.".into())),
    };
    if sectors >= (u64::MAX >> 9) as f64 {
        return Err(SizeError("Size is too big (>=16EiB).".into()));
    }
    Ok(SizeArg { sign, value: sectors as u64, percent: None })
}

/// Parses lvm2's `--extents`: a count, or a percentage of `VG`, `FREE`, `PVS` or `ORIGIN`.
pub fn parse_extents(s: &str) -> Result<SizeArg, SizeError> {
    let (sign, rest) = split_sign(s)?;
    let (v, tail) = split_number(rest)?;
    let percent = match tail {
        "" => None,
        t if t.starts_with('%') => Some(match t[1..].to_ascii_uppercase().as_str() {
            "VG" => PercentOf::Vg,
            "FREE" => PercentOf::Free,
            "PVS" => PercentOf::Pvs,
            "ORIGIN" => PercentOf::Origin,
            _ => return Err(SizeError("Specified %type is unknown.".into())),
        }),
        _ => return Err(SizeError("Can't parse size argument.".into())),
    };
    if v >= u32::MAX as f64 {
        return Err(SizeError("Size is too big.".into()));
    }
    Ok(SizeArg { sign, value: v as u64, percent })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(l: char) -> Units {
        Units::parse(&l.to_string()).expect("a --units letter")
    }

    /// Values printed by real lvm2 2.03.16 for the same sizes.
    #[test]
    fn formats_like_lvm2() {
        let mib = 2048;
        assert_eq!(u('r').format(492 * mib, SuffixStyle::Unit), "492.00m");
        assert_eq!(u('H').format(492 * mib, SuffixStyle::Unit), "515.90M");
        assert_eq!(u('k').format(492 * mib, SuffixStyle::Unit), "503808.00k");
        assert_eq!(u('s').format(492 * mib, SuffixStyle::Unit), "1007616S");
        assert_eq!(u('b').format(492 * mib, SuffixStyle::Unit), "515899392B");
        assert_eq!(u('t').format(12 * mib, SuffixStyle::Unit), "0.00t");
        assert_eq!(u('m').with_suffix(false).format(12 * mib, SuffixStyle::Unit), "12.00");
        assert_eq!(u('b').with_suffix(false).format(32768, SuffixStyle::Unit), "16777216");
        assert_eq!(u('r').format(0, SuffixStyle::Unit), "0 ");
        assert_eq!(u('r').format(0, SuffixStyle::Short), "0   ");
        assert_eq!(u('r').format(12 * mib, SuffixStyle::Short), "12.00 MiB");
        assert_eq!(u('r').format(8192, SuffixStyle::Short), "4.00 MiB");
        // 2043 MiB is more than 1.99g: lvm2 prints <2.00g with 'r', 2.00g with 'h'.
        assert_eq!(u('r').format(2043 * mib, SuffixStyle::Unit), "<2.00g");
        assert_eq!(u('h').format(2043 * mib, SuffixStyle::Unit), "2.00g");
        assert_eq!(u('r').format(1, SuffixStyle::Unit), "512b");
    }

    #[test]
    fn parses_sizes_like_lvm2() {
        assert_eq!(parse_size("10").unwrap(), SizeArg { sign: Sign::None, value: 20480, percent: None });
        assert_eq!(parse_size("+10G").unwrap().value, 10 << 21);
        assert_eq!(parse_size("+10g").unwrap().sign, Sign::Plus);
        assert_eq!(parse_size("-4M").unwrap(), SizeArg { sign: Sign::Minus, value: 8192, percent: None });
        assert_eq!(parse_size("1.5k").unwrap().value, 3);
        assert_eq!(parse_size("1024b").unwrap().value, 2);
        assert_eq!(parse_size("8s").unwrap().value, 8);
        assert!(parse_size("100b").unwrap_err().0.contains("multiple of 512"));
        assert!(parse_size("++1").is_err());
        assert!(parse_size("x").is_err());
        assert!(parse_size("10q").is_err());
        assert!(parse_size("20000000e").is_err());
        assert_eq!(parse_extents("+100%FREE").unwrap().percent, Some(PercentOf::Free));
        assert_eq!(
            parse_extents("50%vg").unwrap(),
            SizeArg { sign: Sign::None, value: 50, percent: Some(PercentOf::Vg) }
        );
        assert_eq!(parse_extents("12").unwrap().value, 12);
        assert!(parse_extents("12%X").is_err());
    }
}
