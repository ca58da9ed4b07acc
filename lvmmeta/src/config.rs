//! libdm's config language, the syntax of LVM metadata text and lvm.conf:
//!
//! ```text
//! # comment to end of line
//! key = 42                      integers (may be negative; a leading 0 means octal, as strtoll)
//! key = -1.5                    floats
//! key = "with \"escapes\""      strings; 'single quoted' has no escapes; bare words too
//! key = [ "a", 1, 2.5 ]         lists, mixed types allowed, commas optional between strings
//! section { key = 1 sub { } }   nested sections
//! a/b = 1                       a path key: same as a { b = 1 }
//! ```
//!
//! Parsing follows libdm's tokeniser (libdm-config.c) closely, in the mode lvm2 uses for metadata
//! (no merging of duplicate keys: they stay separate nodes and lookups take the first). Text ends
//! at the first NUL byte. The tree keeps key order, so writing it back preserves it.

use std::fmt::Write as _;

use crate::error::{Error, Result};

#[derive(Clone, Debug, PartialEq)]
pub enum Scalar {
    Int(i64),
    Float(f64),
    Str(String),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Scalar(Scalar),
    /// `[ ... ]`, possibly empty.
    Array(Vec<Scalar>),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    Section(Vec<Node>),
    Value(Value),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub key: String,
    pub item: Item,
}

impl Node {
    pub fn value(key: &str, v: Value) -> Node {
        Node { key: key.to_string(), item: Item::Value(v) }
    }
    pub fn int(key: &str, v: i64) -> Node {
        Node::value(key, Value::Scalar(Scalar::Int(v)))
    }
    pub fn str(key: &str, v: &str) -> Node {
        Node::value(key, Value::Scalar(Scalar::Str(v.to_string())))
    }
    pub fn str_list(key: &str, v: &[String]) -> Node {
        Node::value(key, Value::Array(v.iter().map(|s| Scalar::Str(s.clone())).collect()))
    }
    pub fn section(key: &str, children: Vec<Node>) -> Node {
        Node { key: key.to_string(), item: Item::Section(children) }
    }
    pub fn children(&self) -> Option<&[Node]> {
        match &self.item {
            Item::Section(c) => Some(c),
            Item::Value(_) => None,
        }
    }
    pub fn as_value(&self) -> Option<&Value> {
        match &self.item {
            Item::Value(v) => Some(v),
            Item::Section(_) => None,
        }
    }
}

/// Lookups in a list of sibling nodes. As in libdm, the first node with the key wins.
pub trait Lookup {
    fn find(&self, key: &str) -> Option<&Node>;
    fn section(&self, key: &str) -> Option<&[Node]> {
        self.find(key).and_then(Node::children)
    }
    fn value(&self, key: &str) -> Option<&Value> {
        self.find(key).and_then(Node::as_value)
    }
    fn scalar(&self, key: &str) -> Option<&Scalar> {
        match self.value(key)? {
            Value::Scalar(s) => Some(s),
            // libdm returns the first element of a list to single-value lookups.
            Value::Array(a) => a.first(),
        }
    }
    fn str(&self, key: &str) -> Option<&str> {
        match self.scalar(key)? {
            Scalar::Str(s) => Some(s),
            _ => None,
        }
    }
    fn int(&self, key: &str) -> Option<i64> {
        match self.scalar(key)? {
            Scalar::Int(i) => Some(*i),
            _ => None,
        }
    }
    /// A list value; a single scalar counts as a one-element list, as in libdm.
    fn list(&self, key: &str) -> Option<Vec<&Scalar>> {
        match self.value(key)? {
            Value::Scalar(s) => Some(vec![s]),
            Value::Array(a) => Some(a.iter().collect()),
        }
    }
}

impl Lookup for [Node] {
    fn find(&self, key: &str) -> Option<&Node> {
        self.iter().find(|n| n.key == key)
    }
}

impl Lookup for Vec<Node> {
    fn find(&self, key: &str) -> Option<&Node> {
        self.as_slice().find(key)
    }
}

// ---------------------------------------------------------------------------------------------
// Parser

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tok {
    SectionB,
    SectionE,
    ArrayB,
    ArrayE,
    Comma,
    Eq,
    Int,
    Float,
    /// "..." with backslash escapes
    StrEscaped,
    /// '...'
    Str,
    /// an unquoted word where a value is expected
    StrBare,
    Ident,
    Eof,
}

/// Deepest section nesting accepted. lvm2 metadata uses about five levels; the limit keeps a
/// hostile or corrupt text from overflowing the stack of the recursive parser (and of the code
/// that walks or drops the tree).
pub const MAX_SECTION_DEPTH: usize = 64;

struct Parser<'a> {
    /// Sections currently open around the token.
    depth: usize,
    text: &'a [u8],
    /// current token [tb, te)
    tb: usize,
    te: usize,
    t: Tok,
    line: usize,
    /// The value being read is creation_time's (repaired when out of range, as libdm does).
    in_creation_time: bool,
    /// The whole text, when it is valid UTF-8 (nearly always): tokens are sliced from it
    /// without validating each again.
    utf8: Option<&'a str>,
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

impl<'a> Parser<'a> {
    fn err(&self, reason: impl Into<String>) -> Error {
        Error::Parse { line: self.line, byte: self.tb + 1, reason: reason.into() }
    }

    fn at(&self, i: usize) -> u8 {
        self.text.get(i).copied().unwrap_or(0)
    }

    fn eat_space(&mut self) {
        loop {
            let c = self.at(self.te);
            if c == b'#' {
                while self.te < self.text.len() && !matches!(self.at(self.te), b'\n' | 0) {
                    self.te += 1;
                }
            } else if !is_space(c) || self.te >= self.text.len() {
                break;
            }
            while self.te < self.text.len() && is_space(self.at(self.te)) {
                if self.at(self.te) == b'\n' {
                    self.line += 1;
                }
                self.te += 1;
            }
        }
        self.tb = self.te;
    }

    fn next(&mut self) -> Result<()> {
        let prev = self.t;
        self.tb = self.te;
        self.eat_space();
        if self.tb >= self.text.len() || self.at(self.tb) == 0 {
            self.t = Tok::Eof;
            return Ok(());
        }
        // Digits start a number only where a value may follow; elsewhere they begin a key.
        let values_allowed = matches!(prev, Tok::Eq | Tok::ArrayB | Tok::Comma);
        let mut te = self.tb;
        let c = self.at(te);
        self.t = match c {
            b'{' => Tok::SectionB,
            b'}' => Tok::SectionE,
            b'[' => Tok::ArrayB,
            b']' => Tok::ArrayE,
            b',' => Tok::Comma,
            b'=' => Tok::Eq,
            _ => Tok::Ident,
        };
        match c {
            b'{' | b'}' | b'[' | b']' | b',' | b'=' => te += 1,
            b'"' => {
                te += 1;
                while te < self.text.len() && self.at(te) != 0 && self.at(te) != b'"' {
                    if self.at(te) == b'\\' && te + 1 < self.text.len() && self.at(te + 1) != 0 {
                        te += 1;
                    }
                    te += 1;
                }
                if self.at(te) != b'"' {
                    return Err(self.err("unterminated string"));
                }
                te += 1;
                self.t = Tok::StrEscaped;
            }
            b'\'' => {
                te += 1;
                while te < self.text.len() && self.at(te) != 0 && self.at(te) != b'\'' {
                    te += 1;
                }
                if self.at(te) != b'\'' {
                    return Err(self.err("unterminated string"));
                }
                te += 1;
                self.t = Tok::Str;
            }
            b'.' | b'0'..=b'9' | b'+' | b'-' if values_allowed => {
                let mut float = c == b'.';
                te += 1;
                while te < self.text.len() {
                    let d = self.at(te);
                    if d.is_ascii_digit() || (d == b'.' && !float) {
                        float |= d == b'.';
                        te += 1;
                    } else {
                        break;
                    }
                }
                self.t = if float { Tok::Float } else { Tok::Int };
            }
            _ => {
                while te < self.text.len() {
                    let d = self.at(te);
                    if d == 0 || is_space(d) || matches!(d, b'#' | b'=' | b'{' | b'}') {
                        break;
                    }
                    te += 1;
                }
                self.t = if values_allowed { Tok::StrBare } else { Tok::Ident };
            }
        }
        self.te = te;
        Ok(())
    }

    fn tok_str(&self) -> Result<&'a str> {
        // Tokens end at ASCII bytes, so they are char boundaries of valid text.
        if let Some(t) = self.utf8.and_then(|t| t.get(self.tb..self.te)) {
            return Ok(t);
        }
        std::str::from_utf8(&self.text[self.tb..self.te]).map_err(|_| self.err("text is not valid UTF-8"))
    }

    fn expect(&mut self, t: Tok) -> Result<()> {
        if self.t != t {
            return Err(self.err(format!("unexpected token (expected {t:?}, found {:?})", self.t)));
        }
        self.next()
    }

    /// The text of a quoted token without its quotes, unescaped for "...".
    fn string_token(&self) -> Result<String> {
        let raw = self.tok_str()?;
        let inner = &raw[1..raw.len() - 1];
        Ok(if self.t == Tok::StrEscaped && inner.as_bytes().contains(&b'\\') {
            unescape(inner)
        } else {
            inner.to_string()
        })
    }

    fn file(&mut self) -> Result<Vec<Node>> {
        let mut nodes = vec![];
        while self.t != Tok::Eof {
            self.section(&mut nodes)?;
        }
        Ok(nodes)
    }

    fn section(&mut self, parent: &mut Vec<Node>) -> Result<()> {
        let key = match self.t {
            Tok::StrEscaped | Tok::Str => self.string_token()?,
            Tok::Ident => self.tok_str()?.to_string(),
            _ => return Err(self.err(format!("unexpected token (expected a key, found {:?})", self.t))),
        };
        if key.is_empty() {
            return Err(self.err("empty section identifier"));
        }
        self.next()?;
        // "a/b" is a path: every part but the last becomes a section holding the next.
        let (parts, key) =
            if key.as_bytes().contains(&b'/') { split_path(&key).map_err(|e| self.err(e))? } else { (vec![], key) };
        let last = key.as_str();
        if self.depth + parts.len() + 1 > MAX_SECTION_DEPTH {
            return Err(self.err(format!("sections nested deeper than {MAX_SECTION_DEPTH} levels")));
        }
        let item = if self.t == Tok::SectionB {
            self.next()?;
            self.depth += parts.len() + 1;
            let mut children = vec![];
            while self.t != Tok::SectionE {
                if self.t == Tok::Eof {
                    return Err(self.err(format!("section \"{last}\" not closed")));
                }
                self.section(&mut children)?;
            }
            self.depth -= parts.len() + 1;
            self.expect(Tok::SectionE)?;
            Item::Section(children)
        } else {
            self.expect(Tok::Eq)?;
            self.in_creation_time = last == "creation_time";
            Item::Value(self.value()?)
        };
        let mut node = Node { key, item };
        for p in parts.into_iter().rev() {
            node = Node { key: p, item: Item::Section(vec![node]) };
        }
        parent.push(node);
        Ok(())
    }

    fn value(&mut self) -> Result<Value> {
        if self.t != Tok::ArrayB {
            return Ok(Value::Scalar(self.scalar()?));
        }
        self.next()?;
        let mut items = vec![];
        while self.t != Tok::ArrayE {
            items.push(self.scalar()?);
            if self.t == Tok::Comma {
                self.next()?;
            }
        }
        self.next()?;
        Ok(Value::Array(items))
    }

    fn scalar(&mut self) -> Result<Scalar> {
        let s = match self.t {
            Tok::Int => {
                let text = self.tok_str()?;
                match parse_int(text) {
                    Some(i) => Scalar::Int(i),
                    // lvm2 < 2.02.169 on 32-bit could write a bad creation_time; libdm repairs it.
                    None if self.in_creation_time => Scalar::Int(1_527_120_000),
                    None => return Err(self.err(format!("integer {text} out of range"))),
                }
            }
            Tok::Float => Scalar::Float(parse_float(self.tok_str()?)),
            Tok::StrEscaped | Tok::Str => Scalar::Str(self.string_token()?),
            Tok::StrBare => Scalar::Str(self.tok_str()?.to_string()),
            t => return Err(self.err(format!("expected a value, found {t:?}"))),
        };
        self.next()?;
        Ok(s)
    }
}

/// A key path "a/b/c" as its leading parts and its last one. As in libdm, runs of slashes
/// count as one and leading ones are ignored; a trailing one leaves an empty last part.
fn split_path(key: &str) -> std::result::Result<(Vec<String>, String), String> {
    if key.ends_with('/') {
        return Err(format!("empty component in key path \"{key}\""));
    }
    let mut parts: Vec<String> = key.split('/').filter(|p| !p.is_empty()).map(str::to_string).collect();
    let last = parts.pop().expect("a key not ending in a slash has a last part");
    Ok((parts, last))
}

/// strtoll(text, NULL, 0) on a token of an optional sign and digits.
fn parse_int(text: &str) -> Option<i64> {
    let (neg, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let (radix, digits) = if digits.len() > 1 && digits.starts_with('0') { (8, &digits[1..]) } else { (10, digits) };
    // strtoll stops at the first digit invalid for the base.
    let valid = digits.bytes().take_while(|d| (*d as char).is_digit(radix)).count();
    let digits = &digits[..valid];
    if digits.is_empty() {
        return Some(0);
    }
    let mag = u64::from_str_radix(digits, radix).ok()?;
    if neg {
        if mag <= i64::MAX as u64 + 1 {
            Some((mag as i64).wrapping_neg())
        } else {
            None
        }
    } else {
        i64::try_from(mag).ok()
    }
}

/// strtod on a token like "1.5", ".5", "-1.", "."; what strtod cannot convert is 0.
fn parse_float(text: &str) -> f64 {
    text.parse::<f64>().unwrap_or_else(|_| if text.starts_with('-') { -0.0 } else { 0.0 })
}

/// Undoes `\"` and `\\`; any other backslash stays, as in libdm.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' && matches!(chars.peek(), Some('"') | Some('\\')) {
            out.push(chars.next().unwrap());
        } else {
            out.push(c);
        }
    }
    out
}

/// Parses config text. Stops at the first NUL (metadata text is NUL-terminated).
pub fn parse(text: &[u8]) -> Result<Vec<Node>> {
    let text = &text[..text.iter().position(|&c| c == 0).unwrap_or(text.len())];
    let utf8 = std::str::from_utf8(text).ok();
    let mut p = Parser { depth: 0, text, tb: 0, te: 0, t: Tok::SectionE, line: 1, in_creation_time: false, utf8 };
    p.next()?;
    p.file()
}

// ---------------------------------------------------------------------------------------------
// Writer

/// How nested sections are indented.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// One tab per level, as lvm2 writes backup files and `lvmconfig`.
    Tabs,
    /// No indentation, as lvm2 writes metadata text into the mda.
    Flat,
}

/// `"text"` with `"` and `\` escaped, as lvm2 writes strings.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

pub fn format_scalar(s: &Scalar) -> String {
    match s {
        Scalar::Int(i) => i.to_string(),
        // printf("%f"), as libdm writes floats.
        Scalar::Float(f) => format!("{f:.6}"),
        Scalar::Str(s) => quote(s),
    }
}

/// `[a, b]` or a single scalar.
pub fn format_value(v: &Value) -> String {
    match v {
        Value::Scalar(s) => format_scalar(s),
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(format_scalar).collect();
            format!("[{}]", inner.join(", "))
        }
    }
}

/// A key as it must appear so that it reads back the same.
fn format_key(k: &str) -> String {
    let needs_quotes = k.is_empty()
        || k.starts_with(['[', ']', ',', '\'', '"'])
        || k.chars().any(|c| c.is_ascii_whitespace() || matches!(c, '#' | '"' | '!' | '=' | '{' | '}' | '\x0b'));
    if needs_quotes {
        quote(k)
    } else {
        k.to_string()
    }
}

/// Appends `nodes` at nesting `level`.
pub fn write_nodes(out: &mut String, nodes: &[Node], level: usize, style: Style) {
    let indent = match style {
        Style::Tabs => "\t".repeat(level),
        Style::Flat => String::new(),
    };
    for n in nodes {
        match &n.item {
            Item::Section(children) => {
                let _ = writeln!(out, "{indent}{} {{", format_key(&n.key));
                write_nodes(out, children, level + 1, style);
                let _ = writeln!(out, "{indent}}}");
            }
            Item::Value(v) => {
                let _ = writeln!(out, "{indent}{} = {}", format_key(&n.key), format_value(v));
            }
        }
    }
}

/// The whole tree as text.
pub fn write(nodes: &[Node], style: Style) -> String {
    let mut out = String::new();
    write_nodes(&mut out, nodes, 0, style);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Vec<Node> {
        parse(s.as_bytes()).unwrap()
    }

    #[test]
    fn grammar() {
        let t = p(r#"
            # a comment
            a = 1  b = -2 c = +3 d = 010  # octal, as strtoll
            f = 1.5 g = .25 h = -2.
            s = "x\"y\\z\n" q = 'it s' bare = word
            l = [ "a", 1, -2.5, 'b' ] e = [] one = [7]
            sec { inner { k = "v" } k2 = 3 }
            x/y/z = 5
            "quoted key" = 1
            strs = ["a" "b"]
            trailing = [1, 2, ]
        "#);
        assert_eq!(t.int("a"), Some(1));
        assert_eq!(t.int("b"), Some(-2));
        assert_eq!(t.int("c"), Some(3));
        assert_eq!(t.int("d"), Some(8));
        assert_eq!(t.scalar("f"), Some(&Scalar::Float(1.5)));
        assert_eq!(t.scalar("g"), Some(&Scalar::Float(0.25)));
        assert_eq!(t.scalar("h"), Some(&Scalar::Float(-2.0)));
        assert_eq!(t.str("s"), Some("x\"y\\z\\n"));
        assert_eq!(t.str("bare"), Some("word"));
        assert_eq!(
            t.value("l"),
            Some(&Value::Array(vec![
                Scalar::Str("a".into()),
                Scalar::Int(1),
                Scalar::Float(-2.5),
                Scalar::Str("b".into())
            ]))
        );
        assert_eq!(t.value("e"), Some(&Value::Array(vec![])));
        assert_eq!(t.value("one"), Some(&Value::Array(vec![Scalar::Int(7)])));
        assert_eq!(t.section("sec").unwrap().section("inner").unwrap().str("k"), Some("v"));
        assert_eq!(t.section("x").unwrap().section("y").unwrap().int("z"), Some(5));
        assert_eq!(t.int("quoted key"), Some(1));
        assert_eq!(t.list("strs").unwrap().len(), 2);
        assert_eq!(t.list("trailing").unwrap().len(), 2);
    }

    #[test]
    fn key_paths() {
        let t = p("a//b = 1 //c = 2 d/e { f = 3 }");
        assert_eq!(t.section("a").unwrap().int("b"), Some(1), "runs of slashes count as one");
        assert_eq!(t.int("c"), Some(2), "leading slashes are ignored");
        assert_eq!(t.section("d").unwrap().section("e").unwrap().int("f"), Some(3));
        for bad in ["a/ = 1", "/ = 1", "a// { }"] {
            let e = parse(bad.as_bytes()).unwrap_err().to_string();
            assert!(e.contains("empty component"), "{bad}: {e}");
        }
        // Not UTF-8 in a comment is fine; in a token it is an error.
        assert_eq!(parse(b"# \xff\nk = 1").unwrap().int("k"), Some(1));
        assert!(parse(b"k = \"\xff\"").unwrap_err().to_string().contains("UTF-8"));
    }

    #[test]
    fn single_quotes_and_duplicates() {
        let t = p("q = 'a\\b' k = 1 k = 2");
        assert_eq!(t.str("q"), Some("a\\b"));
        assert_eq!(t.int("k"), Some(1), "first of duplicates wins, both kept");
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn stops_at_nul() {
        let t = parse(b"a = 1\n\0garbage {{{").unwrap();
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        assert!(parse("a{".repeat(50_000).as_bytes()).is_err());
        assert!(parse(format!("{}x=1", "a/".repeat(200)).as_bytes()).is_err(), "paths nest too");
        let ok = format!("{}x=1{}", "a{".repeat(MAX_SECTION_DEPTH - 1), "}".repeat(MAX_SECTION_DEPTH - 1));
        assert!(parse(ok.as_bytes()).is_ok());
        let deep = format!("{}x=1{}", "a{".repeat(MAX_SECTION_DEPTH), "}".repeat(MAX_SECTION_DEPTH));
        assert!(parse(deep.as_bytes()).is_err());
    }

    #[test]
    fn errors() {
        for bad in [
            "a = ",
            "a = [1 2]",
            "a { b = 1",
            "a = \"open",
            "= 1",
            "a = 1 }",
            "\"\" = 1",
            "a = 99999999999999999999",
            "a b",
        ] {
            assert!(matches!(parse(bad.as_bytes()), Err(Error::Parse { .. })), "{bad:?} should fail");
        }
        assert_eq!(p("creation_time = 99999999999999999999").int("creation_time"), Some(1_527_120_000));
    }

    #[test]
    fn writer_styles() {
        let t = p("a = 1 s { b = \"x\" l = [1, \"y\"] e = [] f = 0.5 }");
        assert_eq!(write(&t, Style::Tabs), "a = 1\ns {\n\tb = \"x\"\n\tl = [1, \"y\"]\n\te = []\n\tf = 0.500000\n}\n");
        assert_eq!(write(&t, Style::Flat), "a = 1\ns {\nb = \"x\"\nl = [1, \"y\"]\ne = []\nf = 0.500000\n}\n");
        let odd = vec![Node::int("has space", 1), Node::int("#x", 2), Node::str("k", "q\"\\")];
        assert_eq!(parse(write(&odd, Style::Tabs).as_bytes()).unwrap(), odd);
    }

    #[test]
    fn int_edges() {
        assert_eq!(parse_int("-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_int("9223372036854775808"), None);
        assert_eq!(parse_int("-"), Some(0));
        assert_eq!(parse_int("09"), Some(0));
    }
}
