use super::*;
use proptest::prelude::*;
use serde_json::json;

fn labels(pairs: &[(&str, &str)]) -> Map<String, Value> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), Value::String((*v).to_owned()))).collect()
}

fn req(key: &str, op: Operator, values: &[&str]) -> Requirement {
    Requirement {
        key: key.into(),
        operator: op,
        values: values.iter().map(|v| (*v).into()).collect(),
    }
}

fn parsed(input: &str) -> Vec<Requirement> {
    match Selector::parse(input) {
        Ok(s) => s.requirements,
        Err(e) => panic!("{input:?} should parse: {e}"),
    }
}

#[test]
fn lexer_tokens_from_upstream() {
    let cases: &[(&str, Token)] = &[
        ("", Token::EndOfString),
        (",", Token::Comma),
        ("notin", Token::NotIn),
        ("in", Token::In),
        ("=", Token::Equals),
        ("==", Token::DoubleEquals),
        (">", Token::GreaterThan),
        ("<", Token::LessThan),
        ("!", Token::DoesNotExist),
        ("!=", Token::NotEquals),
        ("(", Token::OpenPar),
        (")", Token::ClosedPar),
        ("~", Token::Identifier),
        ("||", Token::Identifier),
    ];
    for (input, want) in cases {
        let mut lexer = Lexer { s: input.as_bytes(), pos: 0 };
        let (token, literal) = lexer.lex();
        assert_eq!(token, *want, "{input:?}");
        if *want != Token::EndOfString {
            assert_eq!(literal, *input);
        }
    }
}

#[test]
fn lexer_sequences_from_upstream() {
    use Token::*;
    let cases: &[(&str, &[Token])] = &[
        ("key in ( value )", &[Identifier, In, OpenPar, Identifier, ClosedPar]),
        ("key notin ( value )", &[Identifier, NotIn, OpenPar, Identifier, ClosedPar]),
        (
            "key in ( value1, value2 )",
            &[Identifier, In, OpenPar, Identifier, Comma, Identifier, ClosedPar],
        ),
        ("key", &[Identifier]),
        ("!key", &[DoesNotExist, Identifier]),
        ("()", &[OpenPar, ClosedPar]),
        ("x in (),y", &[Identifier, In, OpenPar, ClosedPar, Comma, Identifier]),
        ("== != (), = notin", &[DoubleEquals, NotEquals, OpenPar, ClosedPar, Comma, Equals, NotIn]),
        ("key>2", &[Identifier, GreaterThan, Identifier]),
        ("key<1", &[Identifier, LessThan, Identifier]),
    ];
    for (input, want) in cases {
        let parser = Parser::new(input);
        let got: Vec<Token> = parser.items.iter().map(|(t, _)| *t).collect();
        let mut want = want.to_vec();
        want.push(EndOfString);
        assert_eq!(got, want, "{input:?}");
    }
}

#[test]
fn good_and_bad_strings_from_upstream() {
    for good in
        ["x=a,y=b,z=c", "", "x!=a,y=b", "x=", "x= ", "x=,z= ", "x= ,z= ", "!x", "x>1", "x>1,z<5"]
    {
        assert!(Selector::parse(good).is_ok(), "{good:?}");
    }
    for bad in ["x=a||y=b", "x==a==b", "!x=a", "x<a"] {
        assert!(Selector::parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn set_selector_parser_from_upstream() {
    use Operator::*;
    let cases: Vec<(&str, Vec<Requirement>)> = vec![
        ("", vec![]),
        ("\rx", vec![req("x", Exists, &[])]),
        (
            "this-is-a-dns.domain.com/key-with-dash",
            vec![req("this-is-a-dns.domain.com/key-with-dash", Exists, &[])],
        ),
        (
            "this-is-another-dns.domain.com/key-with-dash in (so,what)",
            vec![req("this-is-another-dns.domain.com/key-with-dash", In, &["so", "what"])],
        ),
        (
            "0.1.2.domain/99 notin (10.10.100.1, tick.tack.clock)",
            vec![req("0.1.2.domain/99", NotIn, &["10.10.100.1", "tick.tack.clock"])],
        ),
        ("foo  in\t (abc)", vec![req("foo", In, &["abc"])]),
        ("x notin\n (abc)", vec![req("x", NotIn, &["abc"])]),
        ("x  notin\t\t\t(abc,def)", vec![req("x", NotIn, &["abc", "def"])]),
        ("x in (abc,def)", vec![req("x", In, &["abc", "def"])]),
        ("x in (abc,)", vec![req("x", In, &["", "abc"])]),
        ("x in ()", vec![req("x", In, &[""])]),
        (
            "x notin (abc,,def),bar,z in (),w",
            vec![
                req("bar", Exists, &[]),
                req("w", Exists, &[]),
                req("x", NotIn, &["", "abc", "def"]),
                req("z", In, &[""]),
            ],
        ),
        ("x,y in (a)", vec![req("x", Exists, &[]), req("y", In, &["a"])]),
        ("x=a", vec![req("x", Equals, &["a"])]),
        ("x>1", vec![req("x", GreaterThan, &["1"])]),
        ("x<7", vec![req("x", LessThan, &["7"])]),
        ("x=a,y!=b", vec![req("x", Equals, &["a"]), req("y", NotEquals, &["b"])]),
        (
            "x=a,y!=b,z in (h,i,j)",
            vec![
                req("x", Equals, &["a"]),
                req("y", NotEquals, &["b"]),
                req("z", In, &["h", "i", "j"]),
            ],
        ),
        ("x notin ( )", vec![req("x", NotIn, &[""])]),
        ("x notin (, a)", vec![req("x", NotIn, &["", "a"])]),
        ("a ", vec![req("a", Exists, &[])]),
        ("a in (x,y,notin, z,in)", vec![req("a", In, &["in", "notin", "x", "y", "z"])]),
        ("notin=in", vec![req("notin", Equals, &["in"])]),
    ];
    for (input, want) in cases {
        assert_eq!(parsed(input), want, "{input:?}");
    }
    for bad in [
        "x=a||y=b",
        "x,,y",
        ",x,y",
        "x nott in (y)",
        "a in (xyz),",
        "a in (xyz)b notin ()",
        "a in (xyz abc)",
        "a notin(",
        "a (",
        "(",
    ] {
        assert!(Selector::parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn to_string_from_upstream() {
    let cases = [
        ("x in (abc,def),y notin (jkl),z", "x in (abc,def),y notin (jkl),z"),
        ("x notin (abc,def),y!=jkl,!z", "x notin (abc,def),y!=jkl,!z"),
        ("x notin (abc),y in (jkl,mno),z notin ()", "x notin (abc),y in (jkl,mno),z notin ()"),
        ("x=abc,y==jkl,z!=a,z", "x=abc,y==jkl,z!=a,z"),
        ("x>2,y<8,z", "x>2,y<8,z"),
        ("  z ,  y in (b , a, b) ", "y in (a,b),z"),
    ];
    for (input, want) in cases {
        let s = Selector::parse(input).map(|s| s.to_string());
        assert_eq!(s.as_deref(), Ok(want), "{input:?}");
    }
}

#[test]
fn matching_from_upstream() {
    let yes: &[(&str, &[(&str, &str)])] = &[
        ("", &[("x", "y")]),
        ("x=y", &[("x", "y")]),
        ("x=y,z=w", &[("x", "y"), ("z", "w")]),
        ("x!=y,z!=w", &[("x", "z"), ("z", "a")]),
        ("notin=in", &[("notin", "in")]),
        ("x", &[("x", "z")]),
        ("!x", &[("y", "z")]),
        ("x>1", &[("x", "2")]),
        ("x<1", &[("x", "0")]),
        ("x in (a,b)", &[("x", "b")]),
        ("x notin (a,b)", &[("y", "b")]),
        ("x in ()", &[("x", "")]),
        ("x!=y", &[]),
    ];
    for (sel, set) in yes {
        let s = Selector::parse(sel).unwrap_or_else(|e| panic!("{sel}: {e}"));
        assert!(s.matches(&labels(set)), "{sel} should match {set:?}");
    }
    let no: &[(&str, &[(&str, &str)])] = &[
        ("x=z", &[]),
        ("x=y", &[("x", "z")]),
        ("x=y,z=w", &[("x", "w"), ("z", "w")]),
        ("x!=y,z!=w", &[("x", "z"), ("z", "w")]),
        ("x", &[("y", "z")]),
        ("!x", &[("x", "z")]),
        ("x>1", &[("x", "0")]),
        ("x<1", &[("x", "2")]),
        ("x>1", &[("x", "a")]),
        ("x>1", &[]),
        ("x notin (a,b)", &[("x", "a")]),
    ];
    for (sel, set) in no {
        let s = Selector::parse(sel).unwrap_or_else(|e| panic!("{sel}: {e}"));
        assert!(!s.matches(&labels(set)), "{sel} should not match {set:?}");
    }
}

#[test]
fn matches_object_reads_metadata_labels() {
    let s = Selector::parse("app=web,tier notin (db)").unwrap_or_default();
    assert!(s.matches_object(&json!({"metadata": {"labels": {"app": "web"}}})));
    assert!(!s.matches_object(&json!({"metadata": {"labels": {"app": "web", "tier": "db"}}})));
    assert!(!s.matches_object(&json!({"metadata": {}})));
    assert!(Selector::everything().matches_object(&json!({})));
    assert!(!Selector::nothing().matches_object(&json!({})));
}

#[test]
fn parse_error_messages() {
    let cases = [
        ("x==a==b", "found '==', expected: ',' or 'end of string'"),
        ("!x=a", "found '=', expected: ',' or 'end of string'"),
        ("x,,y", "found ',', expected: identifier after ','"),
        (",x", "found ',', expected: !, identifier, or 'end of string'"),
        ("a in (xyz),", "found '', expected: identifier after ','"),
        (
            "x nott in (y)",
            "unable to parse requirement: found 'nott', expected: in, notin, =, ==, !=, gt, lt",
        ),
        ("a notin(", "unable to parse requirement: found '', expected: ',', ')' or identifier"),
        ("a in (xyz abc)", "unable to parse requirement: found 'abc', expected: ',' or ')'"),
        ("a in x", "unable to parse requirement: found 'x' expected: '('"),
        ("a in (x,=)", "unable to parse requirement: found '=', expected: ',', or identifier"),
        ("a=(", "unable to parse requirement: found '(', expected: identifier"),
        ("!", "unable to parse requirement: found '', expected: identifier"),
        (
            "x<a",
            "unable to parse requirement: values[0]: Invalid value: \"a\": for 'Gt', 'Lt' operators, the value must be an integer",
        ),
        (
            "x>",
            "unable to parse requirement: values[0]: Invalid value: \"\": for 'Gt', 'Lt' operators, the value must be an integer",
        ),
        (
            "a=-b",
            "unable to parse requirement: values[0][a]: Invalid value: \"-b\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
        ),
        (
            "a/b/c",
            "unable to parse requirement: <nil>: Invalid value: \"a/b/c\": a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
        ),
    ];
    for (input, want) in cases {
        assert_eq!(Selector::parse(input), Err(SelectorError::Parse(want.to_owned())), "{input:?}");
    }
    let two = Selector::parse("x>-b").err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        two.starts_with("unable to parse requirement: [values[0]: Invalid value: \"-b\": for 'Gt'"),
        "{two}"
    );
    assert!(two.contains(", values[0][x]: Invalid value: \"-b\": a valid label"), "{two}");
}

#[test]
fn nul_byte_behaves_like_upstream() {
    // A NUL ends an identifier; at the start of a token it reads as the end of input.
    assert_eq!(
        parsed("a=b,c\0"),
        vec![req("a", Operator::Equals, &["b"]), req("c", Operator::Exists, &[])]
    );
    assert_eq!(parsed("a \0 junk"), vec![req("a", Operator::Exists, &[])]);
    assert!(Selector::parse("a\0b").is_err());
}

#[test]
fn label_selector_conversion() {
    let s = Selector::from_label_selector(&json!({
        "matchLabels": {"app": "web"},
        "matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["fe", "be"]},
            {"key": "env", "operator": "NotIn", "values": ["prod"]},
            {"key": "canary", "operator": "DoesNotExist"},
            {"key": "team", "operator": "Exists", "values": []}
        ]
    }));
    let s = s.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.to_string(), "app=web,!canary,env notin (prod),team,tier in (be,fe)");
    assert!(s.matches(&labels(&[("app", "web"), ("tier", "fe"), ("team", "a")])));
    assert!(!s.matches(&labels(&[("app", "web"), ("tier", "fe")])));

    assert_eq!(Selector::from_label_selector(&Value::Null), Ok(Selector::nothing()));
    assert_eq!(Selector::from_label_selector(&json!({})), Ok(Selector::everything()));
    assert!(Selector::from_label_selector(&json!({})).is_ok_and(|s| s.is_empty()));

    let err = |v: Value| Selector::from_label_selector(&v).err().map(|e| e.to_string());
    assert_eq!(
        err(json!({"matchExpressions": [{"key": "a", "operator": "Foo"}]})).as_deref(),
        Some("\"Foo\" is not a valid label selector operator")
    );
    assert_eq!(
        err(json!({"matchExpressions": [{"key": "a", "operator": "In"}]})).as_deref(),
        Some(
            "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty"
        )
    );
    assert_eq!(
        err(
            json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x", "y"]}]})
        )
        .as_deref(),
        Some(
            "values: Invalid value: []string{\"x\", \"y\"}: values set must be empty for exists and does not exist"
        )
    );
    assert_eq!(
        err(json!({"matchLabels": {"a b": "c"}})).as_deref(),
        Some(
            "key: Invalid value: \"a b\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
        )
    );
    let long = "v".repeat(64);
    assert_eq!(
        err(json!({"matchLabels": {"a": long}})),
        Some(format!(
            "values[0][a]: Invalid value: \"{long}\": must be no more than 63 characters"
        ))
    );
    assert!(matches!(
        Selector::from_label_selector(&json!({"matchLabels": {"a": 1}})),
        Err(SelectorError::Malformed(_))
    ));
    assert!(matches!(Selector::from_label_selector(&json!([])), Err(SelectorError::Malformed(_))));
}

#[test]
fn requirement_constructor_and_exact_match() {
    assert!(Requirement::new("x", Operator::Equals, vec![]).is_err());
    assert!(Requirement::new("x", Operator::GreaterThan, vec!["1".into(), "2".into()]).is_err());
    let s = Selector::everything().with(req("b", Operator::In, &["1"])).with(req(
        "a",
        Operator::Equals,
        &["2"],
    ));
    assert_eq!(s.to_string(), "a=2,b in (1)");
    assert_eq!(s.requires_exact_match("b"), Some("1"));
    assert_eq!(s.requires_exact_match("c"), None);
    let from = Selector::from_labels(&labels(&[("b", "2"), ("a", "1")]));
    assert_eq!(from.to_string(), "a=1,b=2");
}

fn key_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9]([-A-Za-z0-9_.]{0,10}[A-Za-z0-9])?",
        "[a-z0-9]{1,6}(\\.[a-z0-9]{1,6}){0,2}/[A-Za-z0-9]([-A-Za-z0-9_.]{0,10}[A-Za-z0-9])?",
        Just("in".to_owned()),
        Just("notin".to_owned()),
    ]
}

fn value_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[A-Za-z0-9]([-A-Za-z0-9_.]{0,10}[A-Za-z0-9])?",
        Just("in".to_owned()),
    ]
}

fn requirement_strategy() -> impl Strategy<Value = Requirement> {
    let set = prop::collection::btree_set(value_strategy(), 1..4);
    (key_strategy(), 0..9u8, set, 0..1000u32).prop_map(|(key, op, set, n)| {
        let one = || vec![set.iter().next().cloned().unwrap_or_default()];
        let (operator, values) = match op {
            0 => (Operator::In, set.iter().cloned().collect()),
            1 => (Operator::NotIn, set.iter().cloned().collect()),
            2 => (Operator::Equals, one()),
            3 => (Operator::DoubleEquals, one()),
            4 => (Operator::NotEquals, one()),
            5 => (Operator::Exists, vec![]),
            6 => (Operator::DoesNotExist, vec![]),
            7 => (Operator::GreaterThan, vec![n.to_string()]),
            _ => (Operator::LessThan, vec![n.to_string()]),
        };
        Requirement { key, operator, values }
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn parse_never_panics(input in "\\PC{0,40}") {
        let _ = Selector::parse(&input);
    }

    #[test]
    fn parse_never_panics_on_selector_like_input(input in "[a-z!=<>(), \t\0-]{0,30}") {
        if let Ok(s) = Selector::parse(&input) {
            // Whatever parses prints to something that parses back to the same selector.
            prop_assert_eq!(Selector::parse(&s.to_string()), Ok(s));
        }
    }

    #[test]
    fn display_round_trips(reqs in prop::collection::vec(requirement_strategy(), 0..5)) {
        let mut selector = Selector::everything();
        for r in reqs {
            selector = selector.with(r);
        }
        let text = selector.to_string();
        prop_assert_eq!(Selector::parse(&text), Ok(selector), "{}", text);
    }
}
