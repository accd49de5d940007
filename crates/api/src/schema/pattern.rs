//! `pattern`s are Go (RE2) regular expressions. The `regex` crate reads nearly the same syntax;
//! the differences that change what matches are translated away here: Go's `\d`, `\w`, `\s`
//! and `\b` are ASCII-only, `[` and `&&`/`--`/`~~` inside a class are literals, `{` that starts no
//! valid repeat is a literal, and `\Q...\E` quotes. Go's refusals the crate does not make (stacked
//! repetitions `a**`, counts over 1000) are made here, and the crate's errors are reworded as
//! Go's `error parsing regexp: <what>: `<where>``.

use std::fmt;

use regex::Regex;

/// A compiled `pattern`, with its source for messages.
#[derive(Debug, Clone)]
pub(super) struct Pattern {
    pub(super) source: String,
    regex: Regex,
}

impl Pattern {
    pub(super) fn new(source: &str) -> Result<Pattern, GoRegexError> {
        let translated = translate(source)?;
        let regex = Regex::new(&translated).map_err(|e| reword(source, &translated, &e))?;
        Ok(Pattern { source: source.to_owned(), regex })
    }

    pub(super) fn is_match(&self, s: &str) -> bool {
        self.regex.is_match(s)
    }
}

/// Go's `regexp/syntax.Error`.
#[derive(Debug)]
pub(super) struct GoRegexError {
    code: &'static str,
    expr: String,
}

impl fmt::Display for GoRegexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error parsing regexp: {}: `{}`", self.code, self.expr)
    }
}

fn error(code: &'static str, expr: &str) -> GoRegexError {
    GoRegexError { code, expr: expr.to_owned() }
}

const DIGIT: &str = "0-9";
const WORD: &str = "0-9A-Za-z_";
const SPACE: &str = "\\t\\n\\x0C\\r ";

/// The ASCII class a Perl escape stands for in Go: (ranges, negated).
fn perl_class(c: char) -> Option<(&'static str, bool)> {
    match c {
        'd' => Some((DIGIT, false)),
        'D' => Some((DIGIT, true)),
        'w' => Some((WORD, false)),
        'W' => Some((WORD, true)),
        's' => Some((SPACE, false)),
        'S' => Some((SPACE, true)),
        _ => None,
    }
}

/// Go's `{n}`, `{n,}`, `{n,m}` at the start of `rest`: (length, min, max); `None` when `{` is a
/// literal there. Counts over 1000 are -1, as Go's parser keeps them, to be refused.
fn repeat_at(rest: &str) -> Option<(usize, i64, Option<i64>)> {
    let body = rest.strip_prefix('{')?;
    let number = |s: &str| -> Option<(i64, usize)> {
        let len = s.bytes().take_while(u8::is_ascii_digit).count();
        let digits = s.get(..len)?;
        if len == 0 || (len >= 2 && digits.starts_with('0')) {
            return None;
        }
        let value = if len > 8 { -1 } else { digits.parse::<i64>().ok()? };
        Some((value, len))
    };
    let (min, used) = number(body)?;
    let after = body.get(used..)?;
    if let Some(after) = after.strip_prefix('}') {
        return Some((rest.len() - after.len(), min, Some(min)));
    }
    let after = after.strip_prefix(',')?;
    if let Some(after) = after.strip_prefix('}') {
        return Some((rest.len() - after.len(), min, None));
    }
    let (max, used) = number(after)?;
    let after = after.get(used..)?.strip_prefix('}')?;
    Some((rest.len() - after.len(), min, Some(max)))
}

/// Rewrites Go syntax as the `regex` crate's with Go's meaning.
fn translate(source: &str) -> Result<String, GoRegexError> {
    let mut out = String::with_capacity(source.len() + 16);
    // Where the repetition operator just read started, for Go's `a**` refusal.
    let mut last_repeat: Option<usize> = None;
    let mut i = 0;
    while let Some(c) = source.get(i..).and_then(|r| r.chars().next()) {
        let rest = &source[i..];
        match c {
            '\\' => {
                last_repeat = None;
                let Some(next) = rest[1..].chars().next() else {
                    return Err(error("trailing backslash at end of expression", ""));
                };
                if next == '<' || next == '>' {
                    return Err(error("invalid escape sequence", &rest[..2]));
                }
                if let Some((ranges, negated)) = perl_class(next) {
                    out.push_str(if negated { "[^" } else { "[" });
                    out.push_str(ranges);
                    out.push(']');
                    i += 2;
                } else if next == 'b' || next == 'B' {
                    out.push_str(if next == 'b' { "(?-u:\\b)" } else { "(?-u:\\B)" });
                    i += 2;
                } else if next == 'Q' {
                    let quoted = &rest[2..];
                    let (literal, used) = match quoted.find("\\E") {
                        Some(end) => (&quoted[..end], 2 + end + 2),
                        None => (quoted, rest.len()),
                    };
                    out.push_str(&regex::escape(literal));
                    i += used;
                } else {
                    let len = escape_len(rest);
                    out.push_str(&rest[..len]);
                    i += len;
                }
            }
            '[' => {
                last_repeat = None;
                i += translate_class(rest, &mut out)?;
            }
            '*' | '+' | '?' | '{' => {
                let (len, count) = if c == '{' {
                    match repeat_at(rest) {
                        Some((len, min, max)) => (len, Some((min, max))),
                        None => {
                            last_repeat = None;
                            out.push_str("\\{");
                            i += 1;
                            continue;
                        }
                    }
                } else {
                    (1, None)
                };
                let lazy = rest[len..].starts_with('?');
                let end = i + len + usize::from(lazy);
                if let Some(start) = last_repeat {
                    return Err(error("invalid nested repetition operator", &source[start..end]));
                }
                if let Some((min, max)) = count
                    && (!(0..=1000).contains(&min)
                        || max.is_some_and(|m| !(0..=1000).contains(&m) || m < min))
                {
                    return Err(error("invalid repeat count", &source[i..i + len]));
                }
                out.push_str(&source[i..end]);
                last_repeat = Some(i);
                i = end;
            }
            _ => {
                last_repeat = None;
                out.push(c);
                i += c.len_utf8();
            }
        }
    }
    Ok(out)
}

/// The length of the escape at the start of `rest` (`\x{..}`, `\p{..}`, `\pL`, `\.`).
fn escape_len(rest: &str) -> usize {
    let mut chars = rest.char_indices().skip(1);
    let Some((_, kind)) = chars.next() else { return rest.len() };
    let after = 1 + kind.len_utf8();
    if matches!(kind, 'x' | 'p' | 'P') && rest[after..].starts_with('{') {
        return rest[after..].find('}').map_or(rest.len(), |end| after + end + 1);
    }
    if matches!(kind, 'p' | 'P') {
        return rest[after..].chars().next().map_or(after, |c| after + c.len_utf8());
    }
    after
}

/// Translates the class at the start of `rest`; returns its length in `rest`.
fn translate_class(rest: &str, out: &mut String) -> Result<usize, GoRegexError> {
    out.push('[');
    let mut i = 1;
    if rest[i..].starts_with('^') {
        out.push('^');
        i += 1;
    }
    let mut first = true;
    let mut previous = '\0';
    loop {
        let Some(c) = rest[i..].chars().next() else {
            return Err(error("missing closing ]", rest));
        };
        match c {
            ']' if !first => {
                out.push(']');
                return Ok(i + 1);
            }
            '\\' => {
                let Some(next) = rest[i + 1..].chars().next() else {
                    return Err(error("trailing backslash at end of expression", ""));
                };
                if let Some((ranges, negated)) = perl_class(next) {
                    if negated {
                        out.push_str("[^");
                        out.push_str(ranges);
                        out.push(']');
                    } else {
                        out.push_str(ranges);
                    }
                    i += 2;
                } else {
                    let len = escape_len(&rest[i..]);
                    out.push_str(&rest[i..i + len]);
                    i += len;
                }
            }
            '[' if rest[i..].starts_with("[:") && rest[i + 2..].contains(":]") => {
                let end = rest[i + 2..].find(":]").map_or(1, |e| e + 4);
                out.push_str(&rest[i..i + end]);
                i += end;
            }
            '[' | ']' | '&' | '~' => {
                out.push('\\');
                out.push(c);
                i += 1;
            }
            '-' if previous == '-' => {
                out.push_str("\\-");
                i += 1;
            }
            c => {
                out.push(c);
                i += c.len_utf8();
            }
        }
        first = false;
        previous = c;
    }
}

/// The `regex` crate's refusal as Go words it.
fn reword(source: &str, translated: &str, e: &regex::Error) -> GoRegexError {
    let text = e.to_string();
    let what = text.lines().rev().find_map(|l| l.strip_prefix("error: ")).unwrap_or(text.as_str());
    let span = caret_span(&text, translated).unwrap_or_default();
    let (code, expr) = match what {
        "unclosed group" => ("missing closing )", source.to_owned()),
        "unopened group" => ("unexpected )", source.to_owned()),
        "unclosed character class" => ("missing closing ]", span),
        "repetition operator missing expression" => {
            ("missing argument to repetition operator", span)
        }
        "unrecognized escape sequence" | "backreferences are not supported" => {
            ("invalid escape sequence", span)
        }
        w if w.starts_with("invalid character class range") || w.contains("Unicode") => {
            ("invalid character class range", span)
        }
        w if w.starts_with("look-around") || w.contains("flag") => {
            ("invalid or unsupported Perl syntax", span)
        }
        w if w.contains("capture group") || w.contains("group name") => {
            ("invalid named capture", span)
        }
        w if w.contains("nest limit") => ("expression nests too deeply", span),
        w if w.contains("repetition") || w.contains("decimal") => ("invalid repeat count", span),
        _ if matches!(e, regex::Error::CompiledTooBig(_)) => {
            ("expression too large", source.to_owned())
        }
        other => {
            return GoRegexError { code: "invalid regular expression", expr: other.to_owned() };
        }
    };
    GoRegexError { code, expr }
}

/// The text the crate's error points at (`^^^` under a one-line pattern).
fn caret_span(message: &str, translated: &str) -> Option<String> {
    if translated.contains('\n') {
        return None;
    }
    // "regex parse error:", the pattern, then the carets, each indented by four spaces.
    let line = message.lines().nth(2)?;
    if !line.trim_start().starts_with('^') || line.trim().chars().any(|c| c != '^') {
        return None;
    }
    let start = line.find('^')?.checked_sub(4)?;
    let len = line[start + 4..].chars().take_while(|&c| c == '^').count();
    Some(translated.chars().skip(start).take(len).collect())
}
