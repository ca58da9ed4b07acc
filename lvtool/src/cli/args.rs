//! Command-line parsing with lvm2's conventions: long options with `--opt value` or
//! `--opt=value`, short options with the value attached or separate (`-ay`, `-L 10G`, `-L10G`),
//! flags that may be grouped (`-fy`), options anywhere among the positional arguments.

use std::collections::BTreeMap;

/// One option a command accepts: short letter, long name, whether it takes a value.
#[derive(Clone, Copy, Debug)]
pub struct Opt {
    pub short: Option<char>,
    pub long: &'static str,
    pub value: bool,
}

pub const fn flag(short: Option<char>, long: &'static str) -> Opt {
    Opt { short, long, value: false }
}

pub const fn val(short: Option<char>, long: &'static str) -> Opt {
    Opt { short, long, value: true }
}

/// Options every command accepts.
pub const GLOBAL: &[Opt] = &[
    val(None, "config"),
    val(None, "devices"),
    val(None, "driverloaded"),
    flag(Some('v'), "verbose"),
    flag(Some('q'), "quiet"),
    flag(Some('d'), "debug"),
    flag(Some('y'), "yes"),
    flag(Some('f'), "force"),
    flag(Some('h'), "help"),
    flag(None, "nolocking"),
    val(None, "lockopt"),
];

/// Parsed arguments: options by long name (every occurrence, in order) and positionals.
#[derive(Debug, Default)]
pub struct Args {
    pub opts: BTreeMap<&'static str, Vec<String>>,
    pub pos: Vec<String>,
}

impl Args {
    pub fn has(&self, long: &str) -> bool {
        self.opts.contains_key(long)
    }
    /// The last value given for `long`.
    pub fn get(&self, long: &str) -> Option<&str> {
        self.opts.get(long).and_then(|v| v.last()).map(String::as_str)
    }
    pub fn all(&self, long: &str) -> &[String] {
        self.opts.get(long).map_or(&[], Vec::as_slice)
    }
}

/// Parses `argv` (without the command name) against the command's options and [`GLOBAL`].
pub fn parse(argv: &[String], cmd_opts: &[Opt]) -> Result<Args, String> {
    let find_long = |n: &str| cmd_opts.iter().chain(GLOBAL).find(|o| o.long == n).copied();
    let find_short = |c: char| cmd_opts.iter().chain(GLOBAL).find(|o| o.short == Some(c)).copied();
    let mut a = Args::default();
    let mut it = argv.iter();
    let mut only_pos = false;
    while let Some(arg) = it.next() {
        if only_pos || arg == "-" || !arg.starts_with('-') {
            a.pos.push(arg.clone());
            continue;
        }
        if arg == "--" {
            only_pos = true;
            continue;
        }
        if let Some(long) = arg.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            let o = find_long(name).ok_or_else(|| format!("unrecognized option '--{name}'"))?;
            let v = if o.value {
                match inline {
                    Some(v) => v,
                    None => it.next().cloned().ok_or_else(|| format!("option '--{name}' requires an argument"))?,
                }
            } else if inline.is_some() {
                return Err(format!("option '--{name}' doesn't allow an argument"));
            } else {
                String::new()
            };
            a.opts.entry(o.long).or_default().push(v);
            continue;
        }
        // Short options: a group of flags, possibly ending in one that takes the rest as value.
        let chars: Vec<char> = arg[1..].chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            let o = find_short(c).ok_or_else(|| format!("invalid option -- '{c}'"))?;
            if o.value {
                let rest: String = chars[i + 1..].iter().collect();
                let v = if rest.is_empty() {
                    it.next().cloned().ok_or_else(|| format!("option requires an argument -- '{c}'"))?
                } else {
                    rest
                };
                a.opts.entry(o.long).or_default().push(v);
                break;
            }
            a.opts.entry(o.long).or_default().push(String::new());
            i += 1;
        }
    }
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn lvm_style() {
        let opts = [val(Some('L'), "size"), val(Some('n'), "name"), val(Some('a'), "activate"), flag(None, "shared")];
        let a = parse(&s(&["-L10G", "vg", "-n", "lv", "-ay", "--devices=/dev/a", "--devices", "/dev/b", "-fy"]), &opts)
            .unwrap();
        assert_eq!(a.get("size"), Some("10G"));
        assert_eq!(a.get("name"), Some("lv"));
        assert_eq!(a.get("activate"), Some("y"));
        assert_eq!(a.all("devices"), ["/dev/a", "/dev/b"]);
        assert!(a.has("force") && a.has("yes"));
        assert_eq!(a.pos, ["vg"]);
        assert!(parse(&s(&["--bogus"]), &opts).is_err());
        assert!(parse(&s(&["-L"]), &opts).is_err());
        assert!(parse(&s(&["--shared=1"]), &opts).is_err());
        assert_eq!(parse(&s(&["-L", "-4M"]), &opts).unwrap().get("size"), Some("-4M"));
    }
}
