//! Property tests of the config parser and writer: any tree written in either style parses
//! back to the same tree, and no input makes the parser panic.

use lvtool::config::{self, Item, Node, Scalar, Style, Value};
use proptest::prelude::*;

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-zA-Z_][a-zA-Z0-9_.+-]{0,8}",
        1 => "[0-9][a-z0-9]{0,3}",
        // Keys that must be quoted to read back: spaces, comment and quote characters, ...
        1 => "[a-z #\"!=\\[\\]',{}\\\\]{1,6}",
    ]
    .prop_filter("no empty keys", |k| !k.is_empty())
}

fn scalar() -> impl Strategy<Value = Scalar> {
    prop_oneof![
        any::<i64>().prop_map(Scalar::Int),
        // Floats are written with 6 decimals, as libdm does; these survive that exactly.
        (-1_000_000_000_000i64..1_000_000_000_000).prop_map(|n| Scalar::Float(n as f64 / 1e6)),
        "[^\u{0}]{0,12}".prop_map(Scalar::Str),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![scalar().prop_map(Value::Scalar), prop::collection::vec(scalar(), 0..5).prop_map(Value::Array)]
}

fn node() -> impl Strategy<Value = Node> {
    let leaf = (key(), value()).prop_map(|(k, v)| Node { key: k, item: Item::Value(v) });
    leaf.prop_recursive(3, 40, 5, |inner| {
        (key(), prop::collection::vec(inner, 0..5)).prop_map(|(k, c)| Node { key: k, item: Item::Section(c) })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn write_then_parse_is_identity(tree in prop::collection::vec(node(), 0..6)) {
        for style in [Style::Tabs, Style::Flat] {
            let text = config::write(&tree, style);
            let back = config::parse(text.as_bytes()).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
            prop_assert_eq!(&back, &tree, "{}", text);
        }
    }

    #[test]
    fn parser_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = config::parse(&bytes);
    }

    #[test]
    fn parser_never_panics_on_near_config(text in "[a-z0-9 =\\[\\],{}\"'#.+\\-\n\\\\/]{0,80}") {
        if let Ok(tree) = config::parse(text.as_bytes()) {
            // Whatever parses is written back to text that parses to the same tree.
            let again = config::parse(config::write(&tree, Style::Tabs).as_bytes()).unwrap();
            prop_assert_eq!(again, tree);
        }
    }
}
