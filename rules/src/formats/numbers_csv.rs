//! Numbers CSV: phone numbers and number prefixes, one per row.
//!
//! The first line that is neither blank nor a `#` comment is the header. Columns, in any order,
//! names case-insensitive:
//!
//! | column      | required | meaning                                                        |
//! |-------------|----------|----------------------------------------------------------------|
//! | `number`    | yes      | the number or prefix as written (`+86 138 0013 8000`, `95566`) |
//! | `kind`      | no       | `number` (exact, the default) or `prefix`                      |
//! | `action`    | no       | `allow`, `tag`, `warn`, `block`                                |
//! | `category`  | no       | e.g. `impersonating-police`                                    |
//! | `direction` | no       | `caller`, `callee` or `both`                                   |
//! | `ingress`   | no       | a trunk name, or `international`                               |
//! | `expires`   | no       | `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM:SSZ` or unix seconds           |
//! | `id`        | no       | the rule's own id (kept in verdicts and appeals)               |
//! | `note`      | no       | free text, ignored                                             |
//!
//! An empty cell takes the file's default (its `# dragnet:` directive, else the caller's options).
//! A row may have fewer cells than the header (the missing ones are empty) but not more.
//!
//! Quoting follows RFC 4180 §2: a field in double quotes may hold commas, line breaks and `""` for
//! one quote; spaces around a field are trimmed. A line whose first non-blank character is `#` is a
//! comment. An unknown column is an error naming it, and so is a missing `number` column; header
//! errors stop the file even in lenient mode, since no row can be read without the header.
//!
//! ```text
//! # dragnet: category=impersonating-police expires=2027-01-01
//! number,kind,direction,note
//! +86 10 8888 0000,number,caller,"reported 3 times, 2025-05"
//! +8617100,prefix,,virtual operator range
//! ```

use super::{parse_expiry, Ctx};
use crate::formats::LineError;
use crate::rule::{Action, Direction, Kind, Origin, RuleSpec};
use std::borrow::Cow;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Col {
    Number,
    Kind,
    Action,
    Category,
    Direction,
    Ingress,
    Expires,
    Id,
    Note,
}

impl Col {
    fn parse(name: &str) -> Option<Col> {
        Some(match name.to_ascii_lowercase().as_str() {
            "number" => Col::Number,
            "kind" => Col::Kind,
            "action" => Col::Action,
            "category" => Col::Category,
            "direction" => Col::Direction,
            "ingress" => Col::Ingress,
            "expires" => Col::Expires,
            "id" => Col::Id,
            "note" => Col::Note,
            _ => return None,
        })
    }
}

const COLUMNS: &str = "number, kind, action, category, direction, ingress, expires, id, note";

/// What one step of the record reader found.
enum Item<'a> {
    Blank,
    Comment(&'a str),
    /// A record; its fields are in the caller's buffer.
    Record,
}

/// An RFC 4180 record reader over the whole text that keeps line numbers. Fields borrow the text
/// unless they hold a `""` escape.
struct Reader<'a> {
    text: &'a str,
    pos: usize,
    /// 1-based number of the line `pos` is on.
    line: u32,
}

impl<'a> Reader<'a> {
    fn byte(&self, i: usize) -> Option<u8> {
        self.text.as_bytes().get(i).copied()
    }

    /// Move past the end of the current line.
    fn skip_line(&mut self) {
        let b = self.text.as_bytes();
        match b
            .get(self.pos..)
            .and_then(|rest| rest.iter().position(|&c| c == b'\n'))
        {
            Some(n) => {
                self.pos += n + 1;
                self.line = self.line.saturating_add(1);
            }
            None => self.pos = b.len(),
        }
    }

    /// Read the next item starting at a line start. `Err((line, reason))` leaves the reader at the
    /// start of the next line.
    fn next(
        &mut self,
        fields: &mut Vec<Cow<'a, str>>,
    ) -> Option<Result<(u32, Item<'a>), (u32, String)>> {
        let text = self.text;
        let b = text.as_bytes();
        if self.pos >= b.len() {
            return None;
        }
        let start_line = self.line;
        let mut i = self.pos;
        while matches!(self.byte(i), Some(b' ' | b'\t')) {
            i += 1;
        }
        match self.byte(i) {
            None | Some(b'\n') => {
                self.skip_line();
                return Some(Ok((start_line, Item::Blank)));
            }
            Some(b'\r') if matches!(self.byte(i + 1), None | Some(b'\n')) => {
                self.skip_line();
                return Some(Ok((start_line, Item::Blank)));
            }
            Some(b'#') => {
                let end = b[i..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map_or(b.len(), |n| i + n);
                let comment = text.get(i + 1..end).unwrap_or("");
                self.skip_line();
                return Some(Ok((start_line, Item::Comment(comment))));
            }
            _ => {}
        }
        fields.clear();
        let mut i = self.pos;
        loop {
            // One field starting at `i`.
            while matches!(self.byte(i), Some(b' ' | b'\t')) {
                i += 1;
            }
            if self.byte(i) == Some(b'"') {
                let open_line = self.line;
                let content_start = i + 1;
                let mut j = content_start;
                let mut escaped = false;
                loop {
                    match self.byte(j) {
                        None => {
                            self.pos = b.len();
                            return Some(Err((
                                open_line,
                                format!(
                                    "a quoted field opened on line {open_line} is never closed"
                                ),
                            )));
                        }
                        Some(b'"') if self.byte(j + 1) == Some(b'"') => {
                            escaped = true;
                            j += 2;
                        }
                        Some(b'"') => break,
                        Some(b'\n') => {
                            self.line = self.line.saturating_add(1);
                            j += 1;
                        }
                        Some(_) => j += 1,
                    }
                }
                let raw = text.get(content_start..j).unwrap_or("");
                fields.push(if escaped {
                    Cow::Owned(raw.replace("\"\"", "\""))
                } else {
                    Cow::Borrowed(raw)
                });
                i = j + 1;
                while matches!(self.byte(i), Some(b' ' | b'\t')) {
                    i += 1;
                }
                match self.byte(i) {
                    Some(b',') => i += 1,
                    None => {
                        self.pos = i;
                        return Some(Ok((start_line, Item::Record)));
                    }
                    Some(b'\n') => {
                        self.pos = i;
                        self.skip_line();
                        return Some(Ok((start_line, Item::Record)));
                    }
                    Some(b'\r') if matches!(self.byte(i + 1), None | Some(b'\n')) => {
                        self.pos = i;
                        self.skip_line();
                        return Some(Ok((start_line, Item::Record)));
                    }
                    Some(_) => {
                        let line = self.line;
                        self.pos = i;
                        self.skip_line();
                        return Some(Err((
                            line,
                            format!(
                                "text after the closing quote of field {}: a quoted field must end at a comma or at the end of the line",
                                fields.len()
                            ),
                        )));
                    }
                }
            } else {
                let rest = b.get(i..).unwrap_or(&[]);
                let n = rest
                    .iter()
                    .position(|&c| c == b',' || c == b'\n')
                    .unwrap_or(rest.len());
                fields.push(Cow::Borrowed(text.get(i..i + n).unwrap_or("")));
                i += n;
                match self.byte(i) {
                    Some(b',') => i += 1,
                    Some(_) => {
                        self.pos = i;
                        self.skip_line();
                        return Some(Ok((start_line, Item::Record)));
                    }
                    None => {
                        self.pos = i;
                        return Some(Ok((start_line, Item::Record)));
                    }
                }
            }
        }
    }
}

pub(crate) fn parse(text: &str, ctx: &mut Ctx) -> Result<(), LineError> {
    let mut reader = Reader {
        text,
        pos: 0,
        line: 1,
    };
    let mut fields: Vec<Cow<'_, str>> = Vec::with_capacity(16);
    let mut cols: Option<Vec<Col>> = None;
    while let Some(item) = reader.next(&mut fields) {
        let (line, item) = match item {
            Ok(x) => x,
            Err((line, reason)) => {
                if cols.is_none() {
                    return Err(ctx.error(line, format!("in the header: {reason}")));
                }
                ctx.bad(line, reason)?;
                continue;
            }
        };
        match item {
            Item::Blank => {}
            Item::Comment(c) => ctx.comment(line, c)?,
            Item::Record => match &cols {
                None => cols = Some(header(&fields).map_err(|r| ctx.error(line, r))?),
                Some(cols) => {
                    if let Err(reason) = row(ctx, cols, &fields, line) {
                        ctx.bad(line, reason)?;
                    }
                }
            },
        }
    }
    Ok(())
}

fn header(fields: &[Cow<'_, str>]) -> Result<Vec<Col>, String> {
    let mut cols = Vec::with_capacity(fields.len());
    for (i, f) in fields.iter().enumerate() {
        let name = f.trim();
        if name.is_empty() {
            return Err(format!(
                "column {} of the header has no name (columns: {COLUMNS})",
                i + 1
            ));
        }
        let col = Col::parse(name).ok_or_else(|| {
            format!("unknown column `{name}` in the header (columns: {COLUMNS}); the first line that is not a comment must be the header")
        })?;
        if cols.contains(&col) {
            return Err(format!("column `{name}` appears twice in the header"));
        }
        cols.push(col);
    }
    if !cols.contains(&Col::Number) {
        return Err(format!(
            "the header has no `number` column (columns: {COLUMNS})"
        ));
    }
    Ok(cols)
}

// The `parse` functions of `rule.rs` lower-case into a new `String`; at 10^7 rows the three
// allocations per row are a third of the parse time, so the spellings a CSV really uses are
// matched in place first.

fn number_kind(v: &str) -> Option<Kind> {
    if v.eq_ignore_ascii_case("number") {
        return Some(Kind::Number);
    }
    if v.eq_ignore_ascii_case("prefix") {
        return Some(Kind::NumberPrefix);
    }
    Kind::parse(v).filter(|k| k.is_number())
}

fn parse_action(v: &str) -> Option<Action> {
    [Action::Block, Action::Allow, Action::Warn, Action::Tag]
        .into_iter()
        .find(|a| v.eq_ignore_ascii_case(a.as_str()))
        .or_else(|| Action::parse(v))
}

fn parse_direction(v: &str) -> Option<Direction> {
    [Direction::Both, Direction::Caller, Direction::Callee]
        .into_iter()
        .find(|d| v.eq_ignore_ascii_case(d.as_str()))
        .or_else(|| Direction::parse(v))
}

fn row(ctx: &mut Ctx, cols: &[Col], fields: &[Cow<'_, str>], line: u32) -> Result<(), String> {
    if fields.len() > cols.len() {
        return Err(format!(
            "the row has {} fields but the header names {} columns (quote a field that holds a comma)",
            fields.len(),
            cols.len()
        ));
    }
    let d = &ctx.defaults;
    let mut number: &str = "";
    let mut kind = Kind::Number;
    let mut action = d.action;
    let mut category: Option<&str> = None;
    let mut direction: Direction = d.direction;
    let mut ingress: Option<&str> = None;
    let mut expires = d.expires;
    let mut id: Option<&str> = None;
    for (col, f) in cols.iter().zip(fields) {
        let v = f.trim();
        if v.is_empty() {
            continue;
        }
        match col {
            Col::Number => number = v,
            Col::Kind => {
                kind = match number_kind(v) {
                    Some(k) => k,
                    None => return Err(format!("kind `{v}` is not `number` or `prefix`")),
                }
            }
            Col::Action => {
                action = parse_action(v)
                    .ok_or_else(|| format!("action `{v}` is not one of allow, tag, warn, block"))?;
            }
            Col::Category => category = Some(v),
            Col::Direction => {
                direction = parse_direction(v)
                    .ok_or_else(|| format!("direction `{v}` is not one of caller, callee, both"))?;
            }
            Col::Ingress => ingress = Some(v),
            Col::Expires => expires = Some(parse_expiry(v)?),
            Col::Id => id = Some(v),
            Col::Note => {}
        }
    }
    if number.is_empty() {
        return Err("the `number` cell is empty".into());
    }
    let spec = RuleSpec {
        id: id.map(str::to_string),
        kind,
        pattern: number.to_string(),
        action,
        category: category.map_or_else(|| d.category.clone(), str::to_string),
        source: d.source.clone(),
        direction,
        ingress: ingress.map_or_else(|| d.ingress.clone(), |s| Some(s.to_string())),
        expires,
        dns: None,
        origin: Origin {
            file: Arc::clone(&ctx.file),
            line,
        },
    };
    ctx.push(spec);
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use crate::formats::{parse_source, Format, SourceOptions};
    use crate::rule::{Action, Direction, Kind};

    fn opts(lenient: bool) -> SourceOptions {
        let mut o = SourceOptions::new(Format::NumbersCsv, "cn-fraud");
        o.lenient = lenient;
        o
    }

    const GOOD: &str = include_str!("../../testdata/formats/numbers-good.csv");
    const BAD: &str = include_str!("../../testdata/formats/numbers-bad.csv");

    #[test]
    fn golden_good() {
        let p = parse_source(GOOD, "numbers-good.csv", &opts(false)).unwrap();
        let got: Vec<_> = p
            .rules
            .iter()
            .map(|r| {
                (
                    r.origin.line,
                    r.pattern.as_str(),
                    r.kind,
                    r.action,
                    r.category.as_str(),
                    r.direction,
                    r.ingress.as_deref(),
                    r.expires,
                    r.id.as_deref(),
                )
            })
            .collect();
        let police = "impersonating-police";
        let exp = Some(1_798_761_600); // 2027-01-01, from the directive
        assert_eq!(
            got,
            vec![
                (
                    5,
                    "+86 10 8888 0000",
                    Kind::Number,
                    Action::Block,
                    police,
                    Direction::Caller,
                    None,
                    exp,
                    Some("cn-2025-0001")
                ),
                (
                    6,
                    "+8617100",
                    Kind::NumberPrefix,
                    Action::Warn,
                    "virtual-operator",
                    Direction::Both,
                    None,
                    exp,
                    None
                ),
                (
                    8,
                    "+44 20 7946 0000",
                    Kind::Number,
                    Action::Block,
                    police,
                    Direction::Caller,
                    Some("international"),
                    Some(1_767_225_600),
                    Some("uk-1")
                ),
                (
                    9,
                    "95566",
                    Kind::Number,
                    Action::Allow,
                    "bank",
                    Direction::Callee,
                    None,
                    exp,
                    Some("bank \"BOC\" hotline")
                ),
                (
                    12,
                    "+86 21 5555 0101",
                    Kind::Number,
                    Action::Tag,
                    police,
                    Direction::Both,
                    None,
                    exp,
                    None
                ),
                (
                    13,
                    "+8613900000000",
                    Kind::Number,
                    Action::Block,
                    police,
                    Direction::Caller,
                    None,
                    exp,
                    None
                ),
            ]
        );
        assert!(p.skipped.is_empty() && p.notes.is_empty());
        assert!(p.rules.iter().all(|r| r.source == "cn-fraud"));
    }

    #[test]
    fn golden_bad_strict_stops_at_first() {
        let e = parse_source(BAD, "numbers-bad.csv", &opts(false)).unwrap_err();
        assert_eq!(e.file, "numbers-bad.csv");
        assert_eq!(e.line, 3);
        assert!(e.reason.contains("kind `range`"), "{e}");
    }

    #[test]
    fn golden_bad_lenient_reports_every_line() {
        let p = parse_source(BAD, "numbers-bad.csv", &opts(true)).unwrap();
        let lines: Vec<u32> = p.skipped.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![3, 4, 5, 6, 7, 8, 10, 12], "{:#?}", p.skipped);
        let reasons: Vec<&str> = p.skipped.iter().map(|e| e.reason.as_str()).collect();
        for (r, needle) in reasons.iter().zip([
            "kind `range`",
            "action `drop`",
            "direction `up`",
            "February 2026 has 28 days",
            "`number` cell is empty",
            "6 fields but the header names 5",
            "text after the closing quote",
            "never closed",
        ]) {
            assert!(r.contains(needle), "{r} !~ {needle}");
        }
        let good: Vec<(u32, &str)> = p
            .rules
            .iter()
            .map(|r| (r.origin.line, r.pattern.as_str()))
            .collect();
        assert_eq!(good, vec![(2, "+8613800000001"), (9, "+8613800000009")]);
    }

    #[test]
    fn header_errors() {
        for (text, needle) in [
            ("number,colour\n1\n", "unknown column `colour`"),
            ("+8613800000000\n", "unknown column `+8613800000000`"),
            ("kind,action\nprefix,block\n", "no `number` column"),
            ("number,Number\n", "appears twice"),
            ("number,,kind\n", "column 2 of the header has no name"),
            ("\"number\n", "never closed"),
        ] {
            // Header errors stop the file even in lenient mode.
            let e = parse_source(text, "h.csv", &opts(true)).unwrap_err();
            assert!(e.reason.contains(needle), "{text:?}: {e}");
            assert_eq!(e.line, 1);
        }
    }

    #[test]
    fn quoting_and_multiline_fields() {
        let text = "id,number,note\n\"a,1\",\"+86 138\",\"two\nlines, with \"\"quotes\"\"\"\n  x , 110 ,\n";
        let p = parse_source(text, "q.csv", &opts(false)).unwrap();
        assert_eq!(p.rules.len(), 2);
        assert_eq!(p.rules[0].id.as_deref(), Some("a,1"));
        assert_eq!(p.rules[0].pattern, "+86 138");
        assert_eq!(p.rules[0].origin.line, 2);
        // The quoted line break moved the next row to line 4.
        assert_eq!(p.rules[1].origin.line, 4);
        assert_eq!(p.rules[1].pattern, "110");
        assert_eq!(p.rules[1].id.as_deref(), Some("x"));
    }

    #[test]
    fn header_case_order_and_short_rows() {
        let text = "# only a comment\n\nNOTE , Number,KIND\nhello\nhi,12345,Prefix\n";
        let p = parse_source(text, "c.csv", &opts(false)).unwrap_err();
        assert_eq!(p.line, 4);
        assert!(p.reason.contains("`number` cell is empty"));
        let text = "NOTE , Number,KIND\nhi,12345,Prefix\nyo,678\n";
        let p = parse_source(text, "c.csv", &opts(false)).unwrap();
        assert_eq!(p.rules[0].kind, Kind::NumberPrefix);
        assert_eq!(p.rules[1].kind, Kind::Number);
        assert_eq!(p.rules[1].pattern, "678");
    }

    #[test]
    fn no_trailing_newline_and_comment_rows() {
        let text = "number\n#+861\n  # also a comment\n+862";
        let p = parse_source(text, "c.csv", &opts(false)).unwrap();
        assert_eq!(p.rules.len(), 1);
        assert_eq!(p.rules[0].pattern, "+862");
        assert_eq!(p.rules[0].origin.line, 4);
    }

    #[test]
    fn directive_between_header_and_rows() {
        let text = "number\n# dragnet: action=tag direction=callee\n+861\n";
        let p = parse_source(text, "c.csv", &opts(false)).unwrap();
        assert_eq!(p.rules[0].action, Action::Tag);
        assert_eq!(p.rules[0].direction, Direction::Callee);
        let text = "number\n+861\n# dragnet: action=tag\n";
        assert!(parse_source(text, "c.csv", &opts(true)).is_err());
    }
}
