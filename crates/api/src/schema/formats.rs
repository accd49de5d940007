//! The string `format`s upstream checks in custom resources (kube-openapi's `strfmt.Default`
//! registry, as apiextensions-apiserver 1.35 allows them), each as its Go validator decides.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::LazyLock;

use regex::Regex;

/// The formats upstream validates, with go-openapi's name normalisation (dashes dropped).
const SUPPORTED: &[&str] = &[
    "bsonobjectid",
    "uri",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "cidr",
    "mac",
    "uuid",
    "uuid3",
    "uuid4",
    "uuid5",
    "isbn",
    "isbn10",
    "isbn13",
    "creditcard",
    "ssn",
    "hexcolor",
    "rgbcolor",
    "byte",
    "password",
    "date",
    "duration",
    "datetime",
    "k8sshortname",
    "k8slongname",
];

fn normalized(format: &str) -> String {
    format.replace('-', "")
}

/// The `format` upstream keeps for a node of `types` (it blanks the ones it does not support).
pub(super) fn supported(format: &str, types: &[String]) -> Option<String> {
    if format.is_empty() {
        return None;
    }
    let single = match types {
        [one] => one.as_str(),
        _ => "",
    };
    let kept = match single {
        "" | "string" => SUPPORTED.contains(&normalized(format).as_str()),
        "integer" => matches!(format, "int32" | "int64"),
        "number" => matches!(format, "float" | "double"),
        _ => false,
    };
    kept.then(|| format.to_owned())
}

/// Whether the format registry has a validator for `format` (integer and number formats are
/// range checks, not registry formats).
pub(super) fn known(format: &str) -> bool {
    SUPPORTED.contains(&normalized(format).as_str())
}

fn regex(pattern: &str) -> Option<Regex> {
    Regex::new(pattern).ok()
}

fn matches(re: &LazyLock<Option<Regex>>, s: &str) -> bool {
    re.as_ref().is_some_and(|re| re.is_match(s))
}

static HOSTNAME: LazyLock<Option<Regex>> = LazyLock::new(|| {
    regex(
        r"^([a-zA-Z0-9\p{S}\p{L}]((-?[a-zA-Z0-9\p{S}\p{L}]{0,62})?)|([a-zA-Z0-9\p{S}\p{L}](([a-zA-Z0-9\-\p{S}\p{L}]{0,61}[a-zA-Z0-9\p{S}\p{L}])?)(\.)){1,}([a-zA-Z\p{L}]){2,63})$",
    )
});
static CREDIT_CARD: LazyLock<Option<Regex>> = LazyLock::new(|| {
    regex(
        r"^(?:4[0-9]{12}(?:[0-9]{3})?|5[1-5][0-9]{14}|6(?:011|5[0-9][0-9])[0-9]{12}|3[47][0-9]{13}|3(?:0[0-5]|[68][0-9])[0-9]{11}|(?:2131|1800|35[0-9]{3})[0-9]{11})$",
    )
});
static RGB_COLOR: LazyLock<Option<Regex>> = LazyLock::new(|| {
    let part = r"[\t\n\x0C\r ]*(0|[1-9][0-9]?|1[0-9][0-9]?|2[0-4][0-9]|25[0-5])[\t\n\x0C\r ]*";
    regex(&format!(r"^rgb\({part},{part},{part}\)$"))
});
static TIME_OF_DAY: LazyLock<Option<Regex>> = LazyLock::new(|| {
    regex(r"^([0-9]{2}):([0-9]{2}):([0-9]{2})(.[0-9]+)?(z|([+-][0-9]{2}:[0-9]{2}))$")
});
static DURATION_PART: LazyLock<Option<Regex>> =
    LazyLock::new(|| regex(r"(([0-9]+)[\t\n\x0C\r ]*([A-Za-zµ]+))"));

/// Whether `s` is a valid `format` (formats without a validator pass, as upstream).
pub(super) fn validates(format: &str, s: &str) -> bool {
    match normalized(format).as_str() {
        "bsonobjectid" => s.len() == 24 && s.bytes().all(|b| b.is_ascii_hexdigit()),
        "uri" => is_request_uri(s),
        "email" => is_email(s),
        "hostname" => {
            matches(&HOSTNAME, s) && s.len() <= 255 && s.split('.').all(|label| label.len() <= 63)
        }
        "ipv4" => parse_ip_sloppy(s).is_some() && s.contains('.'),
        "ipv6" => s.parse::<IpAddr>().is_ok() && s.contains(':'),
        "cidr" => is_cidr(s),
        "mac" => is_mac(s),
        "uuid" => is_uuid(s, None),
        "uuid3" => is_uuid(s, Some(b'3')),
        "uuid4" => is_uuid(s, Some(b'4')),
        "uuid5" => is_uuid(s, Some(b'5')),
        "isbn" => is_isbn10(s) || is_isbn13(s),
        "isbn10" => is_isbn10(s),
        "isbn13" => is_isbn13(s),
        "creditcard" => is_credit_card(s),
        "ssn" => is_ssn(s),
        "hexcolor" => {
            let hex = s.strip_prefix('#').unwrap_or(s);
            matches!(hex.len(), 3 | 6) && hex.bytes().all(|b| b.is_ascii_hexdigit())
        }
        "rgbcolor" => matches(&RGB_COLOR, s),
        "byte" => is_base64(s),
        "date" => is_date(s),
        "datetime" => is_date_time(s),
        "duration" => is_duration(s),
        "k8sshortname" => s.len() <= 63 && is_short_name(s),
        "k8slongname" => s.len() <= 253 && s.split('.').all(is_short_name),
        _ => true,
    }
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`
fn is_short_name(s: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = s.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(&first), Some(&last)) => {
            alnum(first) && alnum(last) && bytes.iter().all(|&b| alnum(b) || b == b'-')
        }
        _ => false,
    }
}

/// Go's `url.ParseRequestURI` succeeding: an absolute URI or an absolute path.
fn is_request_uri(s: &str) -> bool {
    if s.is_empty() || s.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return false;
    }
    if s == "*" {
        return true;
    }
    // The scheme: a letter, then letters, digits, `+`, `-`, `.`, up to a `:`.
    let mut rest = s;
    let mut has_scheme = false;
    for (i, c) in s.char_indices() {
        match c {
            'a'..='z' | 'A'..='Z' => {}
            '0'..='9' | '+' | '-' | '.' if i > 0 => {}
            ':' => {
                if i == 0 {
                    return false;
                }
                has_scheme = true;
                rest = &s[i + 1..];
                break;
            }
            _ => break,
        }
    }
    let rest = rest.split_once('?').map_or(rest, |(path, _)| path);
    if !rest.starts_with('/') {
        // `scheme:opaque` is fine; a relative path is not a request URI.
        return has_scheme;
    }
    let path = match rest.strip_prefix("//") {
        Some(authority_and_path) if has_scheme => {
            let (authority, path) = match authority_and_path.find('/') {
                Some(i) => authority_and_path.split_at(i),
                None => (authority_and_path, ""),
            };
            if !valid_authority(authority) {
                return false;
            }
            path
        }
        _ => rest,
    };
    valid_escapes(path)
}

fn valid_authority(authority: &str) -> bool {
    let host = match authority.rfind('@') {
        Some(i) => {
            let user = &authority[..i];
            let user_ok =
                user.chars().all(|c| c.is_ascii_alphanumeric() || "-._:~!$&'()*+,;=%@".contains(c));
            if !user_ok || !valid_escapes(user) {
                return false;
            }
            &authority[i + 1..]
        }
        None => authority,
    };
    let (name, port) = if let Some(bracketed) = host.strip_prefix('[') {
        let Some(end) = bracketed.rfind(']') else { return false };
        (&bracketed[..end], &bracketed[end + 1..])
    } else {
        match host.rfind(':') {
            Some(i) => (&host[..i], &host[i..]),
            None => (host, ""),
        }
    };
    let port_ok = port.is_empty()
        || port.strip_prefix(':').is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()));
    let name_ok = name.chars().all(|c| {
        !c.is_ascii() || c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:[]<>\"%".contains(c)
    });
    port_ok && name_ok && valid_escapes(name)
}

/// Every `%` starts two hex digits.
fn valid_escapes(s: &str) -> bool {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = |j: usize| bytes.get(j).is_some_and(u8::is_ascii_hexdigit);
            if !hex(i + 1) || !hex(i + 2) {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

/// `net/mail.ParseAddress` succeeding, for the common shapes: `local@domain` or
/// `Display Name <local@domain>`, with dot-atom or quoted local parts.
fn is_email(s: &str) -> bool {
    let s = s.trim_matches([' ', '\t']);
    let address = match (s.rfind('<'), s.strip_suffix('>')) {
        (Some(open), Some(inner)) => {
            let name = s[..open].trim();
            let quoted = name.len() >= 2 && name.starts_with('"') && name.ends_with('"');
            if !quoted && !name.split_whitespace().all(is_atom) {
                return false;
            }
            &inner[open + 1..]
        }
        _ => s,
    };
    let Some((local, domain)) = address.rsplit_once('@') else { return false };
    let local_ok =
        is_dot_atom(local) || (local.len() >= 2 && local.starts_with('"') && local.ends_with('"'));
    let domain_ok = is_dot_atom(domain)
        || (domain.starts_with('[') && domain.ends_with(']') && domain.len() >= 2);
    local_ok && domain_ok
}

fn is_atom(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| {
            !c.is_ascii() || c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c)
        })
}

fn is_dot_atom(s: &str) -> bool {
    s.split('.').all(is_atom)
}

/// The IPv4 parser Go had before 1.17 (leading zeros allowed), which Kubernetes keeps.
fn parse_ipv4_sloppy(s: &str) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = s.split('.');
    for octet in &mut octets {
        let part = parts.next()?;
        if part.is_empty() || part.len() > 10 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *octet = u8::try_from(part.parse::<u32>().ok()?).ok()?;
    }
    parts.next().is_none().then(|| Ipv4Addr::from(octets))
}

fn parse_ip_sloppy(s: &str) -> Option<IpAddr> {
    if let Some(v4) = parse_ipv4_sloppy(s) {
        return Some(IpAddr::V4(v4));
    }
    if s.contains(':') {
        // An embedded IPv4 tail may have leading zeros too.
        if let Some(i) = s.rfind(':')
            && s[i + 1..].contains('.')
        {
            let v4 = parse_ipv4_sloppy(&s[i + 1..])?;
            let head = format!("{}{}", &s[..=i], v4);
            return head.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
        }
        return s.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    None
}

fn is_cidr(s: &str) -> bool {
    let Some((ip, bits)) = s.split_once('/') else { return false };
    let Some(ip) = parse_ip_sloppy(ip) else { return false };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    !bits.is_empty()
        && bits.len() <= 8
        && bits.bytes().all(|b| b.is_ascii_digit())
        && bits.parse::<u32>().is_ok_and(|n| n <= max)
}

/// `net.ParseMAC`: 6, 8 or 20 octets as `xx:xx:..`, `xx-xx-..` or `xxxx.xxxx.xxxx`.
fn is_mac(s: &str) -> bool {
    let bytes = s.as_bytes();
    if bytes.len() < 14 {
        return false;
    }
    let hex = |b: &[u8]| b.iter().all(u8::is_ascii_hexdigit);
    let octets_ok = |n: usize| matches!(n, 6 | 8 | 20);
    if bytes[2] == b':' || bytes[2] == b'-' {
        let separator = bytes[2];
        if !(bytes.len() + 1).is_multiple_of(3) || !octets_ok((bytes.len() + 1) / 3) {
            return false;
        }
        bytes.chunks(3).all(|chunk| hex(&chunk[..2]) && (chunk.len() == 2 || chunk[2] == separator))
    } else if bytes[4] == b'.' {
        if !(bytes.len() + 1).is_multiple_of(5) || !octets_ok(2 * (bytes.len() + 1) / 5) {
            return false;
        }
        bytes.chunks(5).all(|chunk| hex(&chunk[..4]) && (chunk.len() == 4 || chunk[4] == b'.'))
    } else {
        false
    }
}

/// `(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?V[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$`, the variant
/// nibble checked for versions 4 and 5 only, as upstream's patterns do.
fn is_uuid(s: &str, version: Option<u8>) -> bool {
    let mut rest = s.as_bytes();
    for (group, len) in [8usize, 4, 4, 4, 12].into_iter().enumerate() {
        let Some(digits) = rest.get(..len) else { return false };
        if !digits.iter().all(u8::is_ascii_hexdigit) {
            return false;
        }
        if group == 2 && version.is_some_and(|v| digits[0] != v) {
            return false;
        }
        if group == 3
            && matches!(version, Some(b'4' | b'5'))
            && !matches!(digits[0].to_ascii_lowercase(), b'8' | b'9' | b'a' | b'b')
        {
            return false;
        }
        rest = &rest[len..];
        if group < 4 {
            rest = rest.strip_prefix(b"-").unwrap_or(rest);
        }
    }
    rest.is_empty()
}

/// govalidator's sanitising: whitespace and dashes dropped.
fn isbn_digits(s: &str) -> Vec<u8> {
    s.bytes().filter(|b| !matches!(b, b'\t' | b'\n' | b'\x0C' | b'\r' | b' ' | b'-')).collect()
}

fn is_isbn10(s: &str) -> bool {
    let d = isbn_digits(s);
    if d.len() != 10
        || !d[..9].iter().all(u8::is_ascii_digit)
        || !(d[9].is_ascii_digit() || d[9] == b'X')
    {
        return false;
    }
    let mut sum: u32 = (0..9).map(|i| (i as u32 + 1) * u32::from(d[i] - b'0')).sum();
    sum += 10 * if d[9] == b'X' { 10 } else { u32::from(d[9] - b'0') };
    sum.is_multiple_of(11)
}

fn is_isbn13(s: &str) -> bool {
    let d = isbn_digits(s);
    if d.len() != 13 || !d.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let sum: u32 = (0..12).map(|i| if i % 2 == 0 { 1 } else { 3 } * u32::from(d[i] - b'0')).sum();
    u32::from(d[12] - b'0') == (10 - sum % 10) % 10
}

fn is_credit_card(s: &str) -> bool {
    let digits: String = s.chars().filter(char::is_ascii_digit).collect();
    if !matches(&CREDIT_CARD, &digits) {
        return false;
    }
    let mut sum = 0;
    for (i, d) in digits.bytes().rev().enumerate() {
        let mut n = u32::from(d - b'0');
        if i % 2 == 1 {
            n *= 2;
            if n >= 10 {
                n = n % 10 + 1;
            }
        }
        sum += n;
    }
    sum % 10 == 0
}

fn is_ssn(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    b.len() == 11
        && digits(0..3)
        && matches!(b[3], b'-' | b' ')
        && digits(4..6)
        && matches!(b[6], b'-' | b' ')
        && digits(7..11)
}

/// govalidator's base64: groups of four, `=` padding only at the end.
fn is_base64(s: &str) -> bool {
    let alphabet = |b: &u8| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/';
    if s.is_empty() || !s.len().is_multiple_of(4) {
        return false;
    }
    let body = s.strip_suffix("==").or_else(|| s.strip_suffix('=')).unwrap_or(s);
    body.bytes().all(|b| alphabet(&b))
}

/// `time.Parse("2006-01-02", s)`.
fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let number = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = &b[r];
        part.iter()
            .all(u8::is_ascii_digit)
            .then(|| part.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0')))
    };
    let (Some(year), Some(month), Some(day)) = (number(0..4), number(5..7), number(8..10)) else {
        return false;
    };
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&day)
}

/// strfmt's `IsDateTime`: a date, `t`, and a time of day with a zone, compared as text.
fn is_date_time(s: &str) -> bool {
    if s.len() < 4 {
        return false;
    }
    let lower = s.to_lowercase();
    let parts: Vec<&str> = lower.split('t').collect();
    if parts.len() < 2 || !is_date(parts[0]) {
        return false;
    }
    let Some(re) = TIME_OF_DAY.as_ref() else { return false };
    let Some(m) = re.captures(parts[1]) else { return false };
    let field = |i: usize| m.get(i).map_or("", |g| g.as_str());
    field(1) <= "23" && field(2) <= "59" && field(3) <= "59"
}

/// strfmt's `ParseDuration`: Go's `time.ParseDuration`, or else any `<n> <unit>` inside.
fn is_duration(s: &str) -> bool {
    if go_duration(s) {
        return true;
    }
    const UNITS: &[&[&str]] = &[
        &["ns", "nano"],
        &["us", "µs", "micro"],
        &["ms", "milli"],
        &["s", "sec"],
        &["m", "min"],
        &["h", "hr", "hour"],
        &["d", "day"],
        &["w", "wk", "week"],
    ];
    let Some(re) = DURATION_PART.as_ref() else { return false };
    let mut ok = false;
    for m in re.captures_iter(s) {
        let factor = m.get(2).map_or("", |g| g.as_str());
        if factor.parse::<i64>().is_err() {
            return false;
        }
        let unit = m.get(3).map_or(String::new(), |g| g.as_str().trim().to_lowercase());
        for variants in UNITS {
            let last = variants.len() - 1;
            for (i, variant) in variants.iter().enumerate() {
                if (i == last && unit.starts_with(variant)) || variant.eq_ignore_ascii_case(&unit) {
                    ok = true;
                }
            }
        }
    }
    ok
}

/// Go's `time.ParseDuration` succeeding: `[-+]` then `<decimal><unit>` pairs, or `0`.
fn go_duration(s: &str) -> bool {
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    if s == "0" {
        return true;
    }
    if s.is_empty() {
        return false;
    }
    let mut rest = s;
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let whole = rest.bytes().take_while(u8::is_ascii_digit).count();
        let mut used = whole;
        let mut fraction = 0;
        if rest[used..].starts_with('.') {
            used += 1;
            fraction = rest[used..].bytes().take_while(u8::is_ascii_digit).count();
            used += fraction;
        }
        if whole == 0 && fraction == 0 {
            return false;
        }
        let Ok(value) = rest[..used].parse::<f64>() else { return false };
        rest = &rest[used..];
        let unit_len = rest.find(|c: char| c == '.' || c.is_ascii_digit()).unwrap_or(rest.len());
        let nanos: f64 = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return false,
        };
        rest = &rest[unit_len..];
        total += value * nanos;
    }
    // Go refuses what overflows int64 nanoseconds.
    total <= 9_223_372_036_854_775_807.0
}
