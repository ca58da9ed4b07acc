//! Command-line parsing with lvm2's conventions: long options with `--opt value` or
//! `--opt=value`, short options with the value attached or separate (`-ay`, `-L 10G`, `-L10G`),
//! flags that may be grouped (`-fy`), options anywhere among the positional arguments.
//!
//! This is a small parser of its own rather than clap: lvm2's grammar has options whose short
//! letter means different things per command (`-l` is `--extents` for lvcreate and
//! `--maxlogicalvolumes` for vgcreate), values that begin with `-` (`-L -4M`), a repeated
//! flag that counts (`-ff`) and its own error wording, which lvtool's tests compare with
//! lvm2's. Options are typed instead: every option is an [`O`], a command lists the ones it
//! accepts, a lookup names an [`O`] (a misspelled option does not compile), and looking up an
//! option the command does not declare panics in debug builds (the command tests run those).

use std::collections::BTreeMap;

/// Every option any command knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum O {
    // Every command.
    Config,
    Devices,
    Driverloaded,
    Quiet,
    /// lvm2's -d raises the level of its log file and syslog, which are off by default;
    /// lvtool has neither, so -d changes nothing, as in lvm2's default configuration.
    Debug,
    Yes,
    Help,
    Nolocking,
    // Refused by every command (lvm2 accepts them; lvtool has nothing they could change).
    Verbose,
    Lockopt,
    // Per command.
    Force,
    Size,
    Extents,
    Name,
    Activate,
    /// lvcreate's `-Z y|n`.
    Zero,
    /// pvcreate's `-Z y|n` (wiping the first sectors): refused.
    PvZero,
    Wipesignatures,
    Addtag,
    Refresh,
    LockStart,
    LockStop,
    Uuid,
    Physicalextentsize,
    Shared,
    Locktype,
    Maxlogicalvolumes,
    Maxphysicalvolumes,
    LockRepair,
    Options,
    Sort,
    Units,
    Nosuffix,
    Noheadings,
    Separator,
    Reportformat,
    /// `-a`: lvs lists hidden LVs, vgs all VGs, lvdisplay hidden LVs.
    All,
    /// pvs `-a` (devices that are not PVs): refused.
    PvsAll,
    Segments,
    /// Shared VGs are always reported (lvm2 without lvmlockd needs `--shared` for that).
    ReportShared,
    /// Foreign VGs are always reported: lvtool has no system ID to skip them by.
    Foreign,
    Aligned,
    Colon,
}

/// How an option is spelled and whether it takes a value.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    pub short: Option<char>,
    pub long: &'static str,
    pub value: bool,
}

const fn flag(short: Option<char>, long: &'static str) -> Spec {
    Spec { short, long, value: false }
}

const fn val(short: Option<char>, long: &'static str) -> Spec {
    Spec { short, long, value: true }
}

impl O {
    pub const fn spec(self) -> Spec {
        match self {
            O::Config => val(None, "config"),
            O::Devices => val(None, "devices"),
            O::Driverloaded => val(None, "driverloaded"),
            O::Quiet => flag(Some('q'), "quiet"),
            O::Debug => flag(Some('d'), "debug"),
            O::Yes => flag(Some('y'), "yes"),
            O::Help => flag(Some('h'), "help"),
            O::Nolocking => flag(None, "nolocking"),
            O::Verbose => flag(Some('v'), "verbose"),
            O::Lockopt => val(None, "lockopt"),
            O::Force => flag(Some('f'), "force"),
            O::Size => val(Some('L'), "size"),
            O::Extents => val(Some('l'), "extents"),
            O::Name => val(Some('n'), "name"),
            O::Activate => val(Some('a'), "activate"),
            O::Zero | O::PvZero => val(Some('Z'), "zero"),
            O::Wipesignatures => val(Some('W'), "wipesignatures"),
            O::Addtag => val(None, "addtag"),
            O::Refresh => flag(None, "refresh"),
            O::LockStart => flag(None, "lock-start"),
            O::LockStop => flag(None, "lock-stop"),
            O::Uuid => val(Some('u'), "uuid"),
            O::Physicalextentsize => val(Some('s'), "physicalextentsize"),
            O::Shared | O::ReportShared => flag(None, "shared"),
            O::Locktype => val(None, "locktype"),
            O::Maxlogicalvolumes => val(Some('l'), "maxlogicalvolumes"),
            O::Maxphysicalvolumes => val(Some('p'), "maxphysicalvolumes"),
            O::LockRepair => flag(None, "lock-repair"),
            O::Options => val(Some('o'), "options"),
            O::Sort => val(Some('O'), "sort"),
            O::Units => val(None, "units"),
            O::Nosuffix => flag(None, "nosuffix"),
            O::Noheadings => flag(None, "noheadings"),
            O::Separator => val(None, "separator"),
            O::Reportformat => val(None, "reportformat"),
            O::All | O::PvsAll => flag(Some('a'), "all"),
            O::Segments => flag(None, "segments"),
            O::Foreign => flag(None, "foreign"),
            O::Aligned => flag(None, "aligned"),
            O::Colon => flag(Some('c'), "colon"),
        }
    }
}

/// Options every command accepts.
pub const GLOBAL: &[O] = &[O::Config, O::Devices, O::Driverloaded, O::Quiet, O::Debug, O::Yes, O::Help, O::Nolocking];

/// Options every command refuses with a message (lvm2 knows them; lvtool does not do them).
pub const GLOBAL_REFUSED: &[O] = &[O::Verbose, O::Lockopt];

/// What a command accepts and what it refuses by name.
#[derive(Clone, Copy, Debug)]
pub struct OptSet {
    pub accepted: &'static [O],
    pub refused: &'static [O],
}

impl OptSet {
    pub const fn new(accepted: &'static [O], refused: &'static [O]) -> OptSet {
        OptSet { accepted, refused }
    }
    /// Every option this command recognises: accepted first, then refused.
    pub fn all(&self) -> impl Iterator<Item = (O, bool)> + '_ {
        let acc = self.accepted.iter().chain(GLOBAL).map(|&o| (o, true));
        acc.chain(self.refused.iter().chain(GLOBAL_REFUSED).map(|&o| (o, false)))
    }
    pub fn accepts(&self, o: O) -> bool {
        self.accepted.contains(&o) || GLOBAL.contains(&o)
    }
}

/// Parsed arguments: options (every occurrence, in order) and positionals.
#[derive(Debug, Default)]
pub struct Args {
    opts: BTreeMap<O, Vec<String>>,
    pub pos: Vec<String>,
    /// The options the command declared (empty: not checked, as in unit tests of helpers).
    declared: Vec<O>,
}

impl Args {
    /// A lookup of an option the command does not accept is a bug: it could never be set.
    fn check(&self, o: O) {
        debug_assert!(
            self.declared.is_empty() || self.declared.contains(&o) || GLOBAL.contains(&o),
            "option {o:?} looked up but not declared for this command"
        );
    }
    pub fn has(&self, o: O) -> bool {
        self.check(o);
        self.opts.contains_key(&o)
    }
    /// The last value given for `o`.
    pub fn get(&self, o: O) -> Option<&str> {
        self.check(o);
        self.opts.get(&o).and_then(|v| v.last()).map(String::as_str)
    }
    pub fn all(&self, o: O) -> &[String] {
        self.check(o);
        self.opts.get(&o).map_or(&[], Vec::as_slice)
    }
}

/// Parses `argv` (without the command name) against the command's options and [`GLOBAL`].
pub fn parse(argv: &[String], set: &OptSet) -> Result<Args, String> {
    let find_long = |n: &str| set.all().find(|(o, _)| o.spec().long == n);
    let find_short = |c: char| set.all().find(|(o, _)| o.spec().short == Some(c));
    let refuse = |o: O| format!("option --{} is not supported by lvtool", o.spec().long);
    let mut a = Args { declared: set.accepted.to_vec(), ..Args::default() };
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
            let (o, ok) = find_long(name).ok_or_else(|| format!("unrecognized option '--{name}'"))?;
            if !ok {
                return Err(refuse(o));
            }
            let v = if o.spec().value {
                match inline {
                    Some(v) => v,
                    None => it.next().cloned().ok_or_else(|| format!("option '--{name}' requires an argument"))?,
                }
            } else if inline.is_some() {
                return Err(format!("option '--{name}' doesn't allow an argument"));
            } else {
                String::new()
            };
            a.opts.entry(o).or_default().push(v);
            continue;
        }
        // Short options: a group of flags, possibly ending in one that takes the rest as value.
        let chars: Vec<char> = arg[1..].chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            let (o, ok) = find_short(c).ok_or_else(|| format!("invalid option -- '{c}'"))?;
            if !ok {
                return Err(refuse(o));
            }
            if o.spec().value {
                let rest: String = chars[i + 1..].iter().collect();
                let v = if rest.is_empty() {
                    it.next().cloned().ok_or_else(|| format!("option requires an argument -- '{c}'"))?
                } else {
                    rest
                };
                a.opts.entry(o).or_default().push(v);
                break;
            }
            a.opts.entry(o).or_default().push(String::new());
            i += 1;
        }
    }
    Ok(a)
}

/// Checks one command's option set: no long name or short letter recognised twice.
pub fn check_set(name: &str, set: &OptSet) -> Result<(), String> {
    let all: Vec<(O, bool)> = set.all().collect();
    for (i, (a, _)) in all.iter().enumerate() {
        for (b, _) in &all[i + 1..] {
            let (sa, sb) = (a.spec(), b.spec());
            if a == b || sa.long == sb.long || (sa.short.is_some() && sa.short == sb.short) {
                return Err(format!("{name}: options {a:?} and {b:?} clash"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn lvm_style() {
        let set = OptSet::new(&[O::Size, O::Name, O::Activate, O::Shared, O::Force], &[]);
        let a = parse(&s(&["-L10G", "vg", "-n", "lv", "-ay", "--devices=/dev/a", "--devices", "/dev/b", "-fy"]), &set)
            .unwrap();
        assert_eq!(a.get(O::Size), Some("10G"));
        assert_eq!(a.get(O::Name), Some("lv"));
        assert_eq!(a.get(O::Activate), Some("y"));
        assert_eq!(a.all(O::Devices), ["/dev/a", "/dev/b"]);
        assert!(a.has(O::Force) && a.has(O::Yes));
        assert_eq!(a.pos, ["vg"]);
        assert!(parse(&s(&["--bogus"]), &set).is_err());
        assert!(parse(&s(&["-L"]), &set).is_err());
        assert!(parse(&s(&["--shared=1"]), &set).is_err());
        assert_eq!(parse(&s(&["-L", "-4M"]), &set).unwrap().get(O::Size), Some("-4M"));
    }

    #[test]
    fn refused_options_say_so() {
        let set = OptSet::new(&[O::Units], &[O::Colon]);
        for argv in [&["-v"][..], &["--verbose"], &["--lockopt", "skipgl"], &["-c"], &["--colon"]] {
            let e = parse(&s(argv), &set).unwrap_err();
            assert!(e.contains("is not supported by lvtool"), "{argv:?}: {e}");
        }
        assert_eq!(parse(&s(&["-x"]), &set).unwrap_err(), "invalid option -- 'x'");
    }

    // The check is a debug assertion: release builds do not carry it.
    #[cfg(debug_assertions)]
    #[test]
    #[should_panic(expected = "not declared")]
    fn undeclared_lookup_is_a_bug() {
        let a = parse(&s(&["vg"]), &OptSet::new(&[O::Units], &[])).unwrap();
        let _ = a.has(O::Force);
    }
}
