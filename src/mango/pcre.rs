//! `$regex`: PCRE-compatible matching on top of `fancy-regex`.
//!
//! CouchDB runs `re:run(Value, Pattern, [{capture, none}])` with a pattern compiled by
//! `re:compile(Pattern)` with no options: an **unanchored search**, PCRE syntax, and **byte
//! mode** (no `unicode` flag): `.` matches one byte, `\w \d \s` are ASCII-only.
//!
//! To reproduce byte mode, both the pattern and non-ASCII subjects are rewritten so that every
//! byte of their UTF-8 encoding becomes the character U+0000..U+00FF with the same value
//! (a Latin-1 view). `(*UTF8)`/`(*UTF)` at the start of the pattern switches to code point mode,
//! as in PCRE. A translation pass maps PCRE-only syntax onto `fancy-regex`:
//! `\d \D \w \W \s \S` -> ASCII classes; `\h \H \v \V \R` -> PCRE's (horizontal/vertical
//! whitespace) meaning; `\Q...\E` quoting; `\Z`; octal `\0nn`; `$` -> "end or before a final
//! newline" (unless the pattern sets `(?m)`); a `[` inside a class is literal; `&&`/`~~`/`--`
//! inside classes are literal; `{` that does not start a valid quantifier is literal;
//! `(?#...)` comments are dropped.
//!
//! Known differences (patterns PCRE accepts that are rejected here with `bad_arg`, or that
//! behave differently): recursion and subroutine calls (`(?R)`, `(?1)`, `(?&name)`, `\g{..}`),
//! backtracking verbs other than the leading `(*UTF8)`/`(*UTF)`/`(*UCP)` (`(*SKIP)`, `(*FAIL)`,
//! `(*CR)` ...), callouts, `\cX`, `\N`, `\X`, `\C`, `(?|...)` branch reset, `(?J)` and other
//! option letters than `imsxU`, variable-length lookbehind (PCRE rejects it too).
//! In byte mode `\b`/`\B` and `(?i)` treat bytes >= 0x80 by their Latin-1 meaning (PCRE's C
//! locale treats them as non-word, caseless-inert). A regex whose backtracking exceeds
//! [`BACKTRACK_LIMIT`] steps on a subject does not match (CouchDB's `re:run` would keep going;
//! its `match_limit` is 10,000,000).

use fancy_regex::{Regex, RegexBuilder};
use std::borrow::Cow;

/// Backtracking steps allowed per match attempt before giving up (treated as no match).
pub const BACKTRACK_LIMIT: usize = 200_000;

/// A compiled `$regex`.
#[derive(Debug, Clone)]
pub struct MangoRegex {
    pub(crate) source: String,
    re: Regex,
    byte_mode: bool,
}

impl PartialEq for MangoRegex {
    fn eq(&self, o: &Self) -> bool {
        self.source == o.source
    }
}

impl MangoRegex {
    pub fn new(pattern: &str) -> Result<MangoRegex, String> {
        let (byte_mode, ucp, rest) = strip_verbs(pattern);
        let translated = translate(rest, byte_mode, ucp)?;
        let re = RegexBuilder::new(&translated)
            .backtrack_limit(BACKTRACK_LIMIT)
            .delegate_size_limit(2 << 20)
            .delegate_dfa_size_limit(4 << 20)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(MangoRegex {
            source: pattern.to_string(),
            re,
            byte_mode,
        })
    }

    pub fn is_match(&self, subject: &str) -> bool {
        let s: Cow<str> = if self.byte_mode && !subject.is_ascii() {
            Cow::Owned(subject.bytes().map(|b| b as char).collect())
        } else {
            Cow::Borrowed(subject)
        };
        self.re.is_match(&s).unwrap_or(false)
    }
}

fn strip_verbs(mut p: &str) -> (bool, bool, &str) {
    let mut byte_mode = true;
    let mut ucp = false;
    loop {
        if let Some(r) = p
            .strip_prefix("(*UTF8)")
            .or_else(|| p.strip_prefix("(*UTF)"))
        {
            byte_mode = false;
            p = r;
        } else if let Some(r) = p.strip_prefix("(*UCP)") {
            ucp = true;
            p = r;
        } else {
            return (byte_mode, ucp, p);
        }
    }
}

fn push_lit(out: &mut String, c: char, byte_mode: bool) {
    if byte_mode && !c.is_ascii() {
        let mut buf = [0u8; 4];
        for b in c.encode_utf8(&mut buf).bytes() {
            out.push(b as char);
        }
    } else {
        out.push(c);
    }
}

fn push_escaped_lit(out: &mut String, c: char, byte_mode: bool) {
    if c.is_ascii() && !c.is_ascii_alphanumeric() && c != ' ' {
        out.push('\\');
        out.push(c);
    } else if c == ' ' {
        out.push_str("\\x20");
    } else {
        push_lit(out, c, byte_mode);
    }
}

const WORD: &str = "0-9A-Za-z_";
const SPACE: &str = "\\t\\n\\x0B\\x0C\\r\\x20";
const HSPACE_B: &str = "\\t\\x20\\xA0";
const HSPACE_U: &str =
    "\\t\\x20\\xA0\\x{1680}\\x{180E}\\x{2000}-\\x{200A}\\x{202F}\\x{205F}\\x{3000}";
const VSPACE_B: &str = "\\n\\x0B\\x0C\\r\\x85";
const VSPACE_U: &str = "\\n\\x0B\\x0C\\r\\x85\\x{2028}\\x{2029}";

/// Class body for a shorthand escape, or None.
fn class_body(c: char, byte_mode: bool, ucp: bool) -> Option<(bool, &'static str)> {
    if ucp && matches!(c, 'd' | 'D' | 'w' | 'W' | 's' | 'S') {
        return None;
    }
    Some(match c {
        'd' => (false, "0-9"),
        'D' => (true, "0-9"),
        'w' => (false, WORD),
        'W' => (true, WORD),
        's' => (false, SPACE),
        'S' => (true, SPACE),
        'h' => (false, if byte_mode { HSPACE_B } else { HSPACE_U }),
        'H' => (true, if byte_mode { HSPACE_B } else { HSPACE_U }),
        'v' => (false, if byte_mode { VSPACE_B } else { VSPACE_U }),
        'V' => (true, if byte_mode { VSPACE_B } else { VSPACE_U }),
        _ => return None,
    })
}

fn sets_multiline(p: &str) -> bool {
    // Conservative: any `(?` flag group that mentions `m` before `)` or `:`.
    let b = p.as_bytes();
    let mut i = 0;
    while i + 1 < b.len() {
        if b[i] == b'\\' {
            i += 2;
            continue;
        }
        if b[i] == b'(' && b[i + 1] == b'?' {
            let mut j = i + 2;
            while j < b.len() && (b[j].is_ascii_alphabetic() || b[j] == b'-') {
                if b[j] == b'm' {
                    return true;
                }
                j += 1;
            }
        }
        i += 1;
    }
    false
}

/// After `\x`, `\p`, `\P`, `\k`: copy a `{...}` argument verbatim.
fn copy_braced(chars: &[char], mut i: usize, esc: char, out: &mut String) -> usize {
    if matches!(esc, 'x' | 'p' | 'P' | 'k') && chars.get(i) == Some(&'{') {
        while i < chars.len() {
            out.push(chars[i]);
            i += 1;
            if chars[i - 1] == '}' {
                break;
            }
        }
    }
    i
}

fn valid_quantifier(chars: &[char], i: usize) -> bool {
    // chars[i] == '{'; PCRE accepts {n}, {n,}, {n,m}.
    let mut j = i + 1;
    let start = j;
    while j < chars.len() && chars[j].is_ascii_digit() {
        j += 1;
    }
    if j == start {
        return false;
    }
    if j < chars.len() && chars[j] == '}' {
        return true;
    }
    if j < chars.len() && chars[j] == ',' {
        j += 1;
        while j < chars.len() && chars[j].is_ascii_digit() {
            j += 1;
        }
        return j < chars.len() && chars[j] == '}';
    }
    false
}

fn translate(p: &str, byte_mode: bool, ucp: bool) -> Result<String, String> {
    let chars: Vec<char> = p.chars().collect();
    let multiline = sets_multiline(p);
    let mut out = String::with_capacity(p.len() + 8);
    let mut i = 0;
    let n = chars.len();
    while i < n {
        let c = chars[i];
        match c {
            '\\' => {
                let Some(&e) = chars.get(i + 1) else {
                    return Err("\\ at end of pattern".into());
                };
                i += 2;
                if e == 'Q' {
                    while i < n && !(chars[i] == '\\' && chars.get(i + 1) == Some(&'E')) {
                        push_escaped_lit(&mut out, chars[i], byte_mode);
                        i += 1;
                    }
                    i = (i + 2).min(n.max(i));
                    continue;
                }
                if e == 'E' {
                    continue;
                }
                if let Some((neg, body)) = class_body(e, byte_mode, ucp) {
                    out.push('[');
                    if neg {
                        out.push('^');
                    }
                    out.push_str(body);
                    out.push(']');
                    continue;
                }
                match e {
                    'R' => out.push_str(if byte_mode {
                        "(?:\\r\\n|[\\n\\x0B\\x0C\\r\\x85])"
                    } else {
                        "(?:\\r\\n|[\\n\\x0B\\x0C\\r\\x85\\x{2028}\\x{2029}])"
                    }),
                    'Z' => out.push_str("(?:\\n?\\z)"),
                    '0' => octal_escape(&chars, &mut i, &mut out),
                    'c' | 'N' | 'X' | 'C' | 'g' => {
                        return Err(format!("unsupported escape \\{e}"));
                    }
                    _ => {
                        out.push('\\');
                        push_lit(&mut out, e, byte_mode);
                        i = copy_braced(&chars, i, e, &mut out);
                    }
                }
            }
            '[' => {
                i = translate_class(&chars, i, &mut out, byte_mode, ucp)?;
            }
            '$' if !multiline => {
                out.push_str("(?:\\n?\\z)");
                i += 1;
            }
            '{' if !valid_quantifier(&chars, i) => {
                out.push_str("\\{");
                i += 1;
            }
            '}' => {
                // A `}` that closes a valid quantifier was copied with it below; others literal.
                out.push_str("\\}");
                i += 1;
            }
            '{' => {
                while i < n && chars[i] != '}' {
                    out.push(chars[i]);
                    i += 1;
                }
                out.push('}');
                i += 1;
            }
            '(' if chars.get(i + 1) == Some(&'?') && chars.get(i + 2) == Some(&'#') => {
                while i < n && chars[i] != ')' {
                    i += 1;
                }
                i += 1;
            }
            '(' if chars.get(i + 1) == Some(&'*') => {
                return Err("unsupported backtracking verb".into());
            }
            _ => {
                push_lit(&mut out, c, byte_mode);
                i += 1;
            }
        }
    }
    Ok(out)
}

/// Translate a PCRE class starting at `chars[start] == '['`; returns the index after it.
fn translate_class(
    chars: &[char],
    start: usize,
    out: &mut String,
    byte_mode: bool,
    ucp: bool,
) -> Result<usize, String> {
    let n = chars.len();
    let mut i = start + 1;
    out.push('[');
    if chars.get(i) == Some(&'^') {
        out.push('^');
        i += 1;
    }
    if chars.get(i) == Some(&']') {
        out.push_str("\\]");
        i += 1;
    }
    loop {
        let Some(&c) = chars.get(i) else {
            return Err("missing terminating ] for character class".into());
        };
        match c {
            ']' => {
                out.push(']');
                return Ok(i + 1);
            }
            '[' if chars.get(i + 1) == Some(&':') => {
                // POSIX class [:name:] / [:^name:]
                let mut j = i + 2;
                while j + 1 < n && !(chars[j] == ':' && chars[j + 1] == ']') {
                    if !(chars[j].is_ascii_alphabetic() || chars[j] == '^') {
                        break;
                    }
                    j += 1;
                }
                if j + 1 < n && chars[j] == ':' && chars[j + 1] == ']' {
                    out.extend(&chars[i..j + 2]);
                    i = j + 2;
                } else {
                    out.push_str("\\[");
                    i += 1;
                }
            }
            '\\' => {
                let Some(&e) = chars.get(i + 1) else {
                    return Err("\\ at end of pattern".into());
                };
                i += 2;
                if let Some((neg, body)) = class_body(e, byte_mode, ucp) {
                    if neg {
                        // Negated shorthand inside a class: use a nested negated class.
                        out.push_str("[^");
                        out.push_str(body);
                        out.push(']');
                    } else {
                        out.push_str(body);
                    }
                    continue;
                }
                match e {
                    'b' => out.push_str("\\x08"),
                    '0' => octal_escape(chars, &mut i, out),
                    'Q' => {
                        while i < n && !(chars[i] == '\\' && chars.get(i + 1) == Some(&'E')) {
                            push_escaped_lit(out, chars[i], byte_mode);
                            i += 1;
                        }
                        i = (i + 2).min(n.max(i));
                    }
                    'E' => {}
                    c if c.is_ascii_alphanumeric() => {
                        out.push('\\');
                        out.push(c);
                        i = copy_braced(chars, i, c, out);
                    }
                    c => push_escaped_lit(out, c, byte_mode),
                }
            }
            '[' | '&' | '~' => {
                out.push('\\');
                out.push(c);
                i += 1;
            }
            '-' if chars.get(i + 1) == Some(&'-') => {
                out.push_str("\\-");
                i += 1;
            }
            c => {
                push_lit(out, c, byte_mode);
                i += 1;
            }
        }
    }
}

/// `\0` followed by up to two more octal digits (PCRE's octal escape), written as `\x{..}`.
/// `i` points just past the `0` and is advanced over the digits consumed.
fn octal_escape(chars: &[char], i: &mut usize, out: &mut String) {
    let mut v: u32 = 0;
    let mut k = 0;
    while k < 2 && *i < chars.len() && ('0'..='7').contains(&chars[*i]) {
        v = v * 8 + (chars[*i] as u32 - '0' as u32);
        *i += 1;
        k += 1;
    }
    out.push_str(&format!("\\x{{{v:X}}}"));
}

#[cfg(test)]
mod tests {
    #[test]
    fn octal_escapes_inside_and_outside_classes() {
        let outside = super::MangoRegex::new("a\\012b").unwrap();
        assert!(outside.is_match("a\nb"));
        assert!(!outside.is_match("a0b"));
        let inside = super::MangoRegex::new("^[\\011\\0]+$").unwrap();
        assert!(inside.is_match("\t\u{0}\t"));
        assert!(!inside.is_match("\t0"));
    }

    use super::*;

    fn m(p: &str, s: &str) -> bool {
        MangoRegex::new(p).unwrap().is_match(s)
    }

    #[test]
    fn basics() {
        assert!(m("ell", "hello"));
        assert!(!m("^ell", "hello"));
        assert!(m("^[0-9a-f]+$", "3a0df5e"));
        assert!(!m("^[0-9a-f]+$", "3a0gf5e"));
        assert!(!m("^[0-9a-f]+$", ""));
        assert!(m("(?i)HELLO", "hello"));
        assert!(m("^a$", "a\n"), "PCRE $ matches before a final newline");
        assert!(!m("^a$", "a\nb"));
        assert!(m("(?m)^b$", "a\nb"));
        assert!(m("(a)\\1", "xaax"));
        assert!(m("foo(?=bar)", "foobar"));
        assert!(m("(?<!x)y", "ay"));
        assert!(m("\\Qa.b\\E", "a.b"));
        assert!(!m("\\Qa.b\\E", "axb"));
        assert!(m("x{", "x{"));
        assert!(m("a{2}", "aa"));
        assert!(m("[a[]", "["));
        assert!(m("[[:digit:]]+", "12"));
        assert!(m("\\Z", ""));
        assert!(m("[\\w]", "_"));
        assert!(m("[^\\W]", "a"));
    }

    #[test]
    fn byte_mode() {
        assert!(!m("^.$", "é"), "byte mode: . is one byte");
        assert!(m("^..$", "é"));
        assert!(m("(*UTF8)^.$", "é"));
        assert!(m("^é$", "é"));
        assert!(m("^[é]+$", "é"));
        assert!(!m("\\w", "é"));
        assert!(m("caf\\xC3\\xA9", "café"));
    }

    #[test]
    fn rejects() {
        assert!(MangoRegex::new("(").is_err());
        assert!(MangoRegex::new("[a").is_err());
        assert!(MangoRegex::new("a\\").is_err());
        assert!(MangoRegex::new("*a").is_err());
    }

    #[test]
    fn hostile_pattern_terminates() {
        let r = MangoRegex::new("^(a+)+\\1$").unwrap();
        let s = "a".repeat(40) + "b";
        let t = std::time::Instant::now();
        assert!(!r.is_match(&s));
        assert!(t.elapsed().as_secs() < 5);
    }
}
