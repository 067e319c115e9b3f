//! Text to [`Expr`]: a recursive-descent parser over characters, so every error carries
//! the 1-based character column of the offending token.
//!
//! ```text
//! or    := and ('|' and)*
//! and   := unary ('&'? unary)*
//! unary := '!' unary | atom
//! atom  := '(' or ')' | '~' NAME ARG? | WORD
//! ```

use regex::bytes::RegexBuilder as BytesRegexBuilder;
use regex::RegexBuilder;

use super::{BytesPattern, ClassTest, Expr, FilterError, Side, Test, TextPattern, OPERATORS};
use crate::kinvey::ErrorClass;

/// How deep parentheses and `!` may nest (the parser and evaluator recurse).
const MAX_DEPTH: usize = 100;

/// How large the compiled regexes of one filter may be together: what the regex crate
/// allows a single regex by default. Without a shared limit a 1 KB filter of a hundred
/// `~b \w{200}` took 7 s and 1.2 GB to compile.
const REGEX_BUDGET: usize = 10 << 20;

/// The first size limit a regex is compiled with; doubled until the regex fits.
const FIRST_REGEX_LIMIT: usize = 64;

const STATUS_EXPECTED: &str = "~c takes a status, a range like 500-599, or a class like 4xx";
const CLASS_EXPECTED: &str = "~kc takes retry, fix, stop or unknown";

/// Parses a whole filter.
pub(super) fn parse(text: &str) -> Result<Expr, FilterError> {
    let mut parser = Parser {
        chars: text.chars().collect(),
        pos: 0,
        depth: 0,
        regex_budget: REGEX_BUDGET,
    };
    if parser.chars.iter().all(|c| c.is_whitespace()) {
        return Err(FilterError::new(
            1,
            "empty filter: expected an expression such as ~m GET",
        ));
    }
    let expr = parser.or()?;
    match parser.peek_token() {
        (Token::End, _) => Ok(expr),
        (_, column) => Err(FilterError::new(
            column,
            "unexpected ): there is no ( for it to close",
        )),
    }
}

/// What the next token is, decided from its first character(s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    End,
    Open,
    Close,
    Not,
    And,
    Or,
    /// An operator, a quoted string or a bare word.
    Term,
}

/// What an operator does with its argument.
enum Kind {
    /// No argument.
    Flag(Test),
    /// A regex over text.
    Text(fn(TextPattern) -> Test),
    /// A regex over bytes.
    Bytes(fn(BytesPattern) -> Test),
    /// `~c`.
    Status,
    /// `~kc`.
    Class,
}

/// The operator called `name` (without `~`).
fn operator(name: &str) -> Option<Kind> {
    Some(match name {
        "m" => Kind::Text(Test::Method),
        "u" => Kind::Text(Test::Url),
        "d" => Kind::Text(Test::Domain),
        "c" => Kind::Status,
        "h" => Kind::Bytes(|p| Test::Header(Side::Either, p)),
        "hq" => Kind::Bytes(|p| Test::Header(Side::Request, p)),
        "hs" => Kind::Bytes(|p| Test::Header(Side::Response, p)),
        "b" => Kind::Bytes(|p| Test::Body(Side::Either, p)),
        "bq" => Kind::Bytes(|p| Test::Body(Side::Request, p)),
        "bs" => Kind::Bytes(|p| Test::Body(Side::Response, p)),
        "t" => Kind::Text(|p| Test::ContentType(Side::Either, p)),
        "tq" => Kind::Text(|p| Test::ContentType(Side::Request, p)),
        "ts" => Kind::Text(|p| Test::ContentType(Side::Response, p)),
        "e" => Kind::Flag(Test::Error),
        "q" => Kind::Flag(Test::NoResponse),
        "s" => Kind::Flag(Test::HasResponse),
        "src" => Kind::Text(Test::Src),
        "dst" => Kind::Text(Test::Dst),
        "all" => Kind::Flag(Test::All),
        "k" => Kind::Flag(Test::Kinvey),
        "kerr" => Kind::Text(Test::KinveyError),
        "kc" => Kind::Class,
        "rid" => Kind::Text(Test::RequestId),
        "anom" => Kind::Flag(Test::Anomaly),
        "warn" => Kind::Flag(Test::Warning),
        "websocket" => Kind::Flag(Test::WebSocket),
        "replay" => Kind::Flag(Test::Replay),
        _ => return None,
    })
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
    /// Open parentheses and `!`s around the current position.
    depth: usize,
    /// What is left of [`REGEX_BUDGET`].
    regex_budget: usize,
}

impl Parser {
    fn char_at(&self, pos: usize) -> Option<char> {
        self.chars.get(pos).copied()
    }

    fn column(&self) -> usize {
        self.pos + 1
    }

    fn skip_whitespace(&mut self) {
        while self.char_at(self.pos).is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    /// Skips whitespace and classifies the next token, returning its column.
    fn peek_token(&mut self) -> (Token, usize) {
        self.skip_whitespace();
        let token = match self.char_at(self.pos) {
            None => Token::End,
            Some('(') => Token::Open,
            Some(')') => Token::Close,
            Some('!') => Token::Not,
            Some('&') => Token::And,
            Some('|') => Token::Or,
            Some(_) => Token::Term,
        };
        (token, self.column())
    }

    /// After the operator `symbol` at `column`: fails unless a term can start here.
    fn expect_operand(&mut self, symbol: char, column: usize) -> Result<(), FilterError> {
        match self.peek_token() {
            (Token::End, _) => Err(FilterError::new(
                column,
                format!("expected a filter after {symbol}"),
            )),
            (Token::And | Token::Or | Token::Close, found) => Err(FilterError::new(
                found,
                format!(
                    "expected a filter after {symbol}, found {}",
                    self.chars[found - 1]
                ),
            )),
            _ => Ok(()),
        }
    }

    fn enter(&mut self, column: usize) -> Result<(), FilterError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(FilterError::new(
                column,
                format!("too deeply nested: at most {MAX_DEPTH} levels of ( and !"),
            ));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Expr, FilterError> {
        let mut items = vec![self.and()?];
        while let (Token::Or, column) = self.peek_token() {
            self.pos += 1;
            self.expect_operand('|', column)?;
            items.push(self.and()?);
        }
        Ok(if items.len() == 1 {
            items.pop().expect("one item")
        } else {
            Expr::Or(items)
        })
    }

    fn and(&mut self) -> Result<Expr, FilterError> {
        let mut items = vec![self.unary()?];
        loop {
            match self.peek_token() {
                (Token::And, column) => {
                    self.pos += 1;
                    self.expect_operand('&', column)?;
                }
                (Token::Open | Token::Not | Token::Term, _) => {}
                _ => break,
            }
            items.push(self.unary()?);
        }
        Ok(if items.len() == 1 {
            items.pop().expect("one item")
        } else {
            Expr::And(items)
        })
    }

    fn unary(&mut self) -> Result<Expr, FilterError> {
        match self.peek_token() {
            (Token::Not, column) => {
                self.pos += 1;
                self.enter(column)?;
                self.expect_operand('!', column)?;
                let inner = self.unary()?;
                self.depth -= 1;
                Ok(Expr::Not(Box::new(inner)))
            }
            _ => self.atom(),
        }
    }

    fn atom(&mut self) -> Result<Expr, FilterError> {
        match self.peek_token() {
            (Token::Open, column) => {
                self.pos += 1;
                self.enter(column)?;
                match self.peek_token() {
                    (Token::End, _) => {
                        return Err(FilterError::new(
                            column,
                            "unclosed (: expected a filter and )",
                        ))
                    }
                    (Token::Close, found) => {
                        return Err(FilterError::new(
                            found,
                            "empty parentheses: expected a filter inside",
                        ))
                    }
                    _ => self.expect_operand('(', column)?,
                }
                let inner = self.or()?;
                match self.peek_token() {
                    (Token::Close, _) => self.pos += 1,
                    _ => return Err(FilterError::new(column, "unclosed (: expected )")),
                }
                self.depth -= 1;
                Ok(inner)
            }
            (Token::Close, column) => Err(FilterError::new(
                column,
                "unexpected ): there is no ( for it to close",
            )),
            (Token::And | Token::Or, column) => Err(FilterError::new(
                column,
                format!("expected a filter before {}", self.chars[column - 1]),
            )),
            (Token::End, column) => Err(FilterError::new(column, "expected a filter")),
            (Token::Not, _) => self.unary(),
            (Token::Term, column) if self.char_at(self.pos) == Some('~') => {
                self.operator_term(column)
            }
            (Token::Term, column) => {
                let word = self.argument_text()?;
                Ok(Expr::Test(Test::Url(
                    self.text_pattern(&word, column, "u")?,
                )))
            }
        }
    }

    /// `~NAME` at `column` and its argument.
    fn operator_term(&mut self, column: usize) -> Result<Expr, FilterError> {
        self.pos += 1;
        let start = self.pos;
        while self.char_at(self.pos).is_some_and(|c| c.is_alphanumeric()) {
            self.pos += 1;
        }
        let name: String = self.chars[start..self.pos].iter().collect();
        let Some(kind) = operator(&name) else {
            let known: Vec<&str> = OPERATORS
                .iter()
                .filter_map(|(syntax, _)| syntax.split(' ').next())
                .filter(|op| op.starts_with('~'))
                .collect();
            let what = if name.is_empty() {
                "~ must be followed by an operator name".to_owned()
            } else {
                format!("unknown operator ~{name}")
            };
            return Err(FilterError::new(
                column,
                format!("{what}; operators are {}", known.join(" ")),
            ));
        };
        let test = match kind {
            Kind::Flag(test) => test,
            Kind::Text(make) => {
                let (arg, at) = self.argument(column, &name, "a regex")?;
                make(self.text_pattern(&arg, at, &name)?)
            }
            Kind::Bytes(make) => {
                let (arg, at) = self.argument(column, &name, "a regex")?;
                make(self.bytes_pattern(&arg, at, &name)?)
            }
            Kind::Status => {
                let (arg, at) = self.argument_or(column, STATUS_EXPECTED)?;
                let (low, high) = status(&arg, at)?;
                Test::Status { low, high }
            }
            Kind::Class => {
                let (arg, at) = self.argument_or(column, CLASS_EXPECTED)?;
                Test::KinveyClass(class(&arg, at)?)
            }
        };
        Ok(Expr::Test(test))
    }

    /// The argument of `~name` (at `column`), which takes `what`.
    fn argument(
        &mut self,
        column: usize,
        name: &str,
        what: &str,
    ) -> Result<(String, usize), FilterError> {
        self.argument_or(column, &format!("~{name} takes {what}"))
    }

    /// The argument of the operator at `column`; `expected` says what it takes.
    fn argument_or(
        &mut self,
        column: usize,
        expected: &str,
    ) -> Result<(String, usize), FilterError> {
        self.skip_whitespace();
        let at = self.column();
        let Some(first) = self.char_at(self.pos) else {
            return Err(FilterError::new(column, expected));
        };
        let next = self.char_at(self.pos + 1);
        let found = match first {
            '&' | '|' | '!' | ')' => Some(first.to_string()),
            '~' if next.is_some_and(char::is_alphabetic) => {
                let name: String = self.chars[self.pos + 1..]
                    .iter()
                    .take_while(|c| c.is_alphanumeric())
                    .collect();
                Some(format!("~{name}"))
            }
            _ => None,
        };
        if let Some(found) = found {
            return Err(FilterError::new(
                at,
                format!("{expected}, found {found} (quote an argument that starts with it)"),
            ));
        }
        Ok((self.argument_text()?, at))
    }

    /// A quoted string or an unquoted word at the current position (not whitespace).
    fn argument_text(&mut self) -> Result<String, FilterError> {
        match self.char_at(self.pos) {
            Some(quote @ ('"' | '\'')) => self.quoted(quote),
            _ => Ok(self.unquoted()),
        }
    }

    /// `'...'` or `"..."`: a backslash before the quote character escapes it; `\\` is
    /// kept as is (so a regex can end in an escaped backslash); other backslashes are
    /// kept for the regex.
    fn quoted(&mut self, quote: char) -> Result<String, FilterError> {
        let column = self.column();
        self.pos += 1;
        let mut out = String::new();
        loop {
            match self.char_at(self.pos) {
                None => {
                    return Err(FilterError::new(
                        column,
                        format!("unterminated quote: expected a closing {quote}"),
                    ))
                }
                Some(c) if c == quote => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some('\\') => match self.char_at(self.pos + 1) {
                    Some(c) if c == quote => {
                        out.push(quote);
                        self.pos += 2;
                    }
                    Some('\\') => {
                        out.push_str("\\\\");
                        self.pos += 2;
                    }
                    _ => {
                        out.push('\\');
                        self.pos += 1;
                    }
                },
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    /// An unquoted word: up to whitespace, a `)` it did not open, or a `&`/`|` followed
    /// by whitespace, `~`, `!` or the end.
    fn unquoted(&mut self) -> String {
        let start = self.pos;
        let mut open = 0usize;
        while let Some(c) = self.char_at(self.pos) {
            match c {
                c if c.is_whitespace() => break,
                '(' => open += 1,
                ')' if open == 0 => break,
                ')' => open -= 1,
                '&' | '|'
                    if self
                        .char_at(self.pos + 1)
                        .is_none_or(|n| n.is_whitespace() || n == '~' || n == '!') =>
                {
                    break
                }
                _ => {}
            }
            self.pos += 1;
        }
        self.chars[start..self.pos].iter().collect()
    }
}

/// The one line of a regex error that says what is wrong.
fn regex_problem(error: &regex::Error) -> String {
    match error {
        regex::Error::Syntax(text) => text
            .lines()
            .rev()
            .find_map(|line| line.strip_prefix("error: "))
            .unwrap_or_else(|| text.lines().next().unwrap_or("syntax error"))
            .to_owned(),
        regex::Error::CompiledTooBig(limit) => {
            format!("the compiled regex is larger than {limit} bytes")
        }
        other => other.to_string(),
    }
}

fn invalid_regex(name: &str, column: usize, error: &regex::Error) -> FilterError {
    FilterError::new(
        column,
        format!("~{name} takes a regex: {}", regex_problem(error)),
    )
}

impl Parser {
    fn text_pattern(
        &mut self,
        source: &str,
        column: usize,
        name: &str,
    ) -> Result<TextPattern, FilterError> {
        self.compile(column, name, |limit| {
            RegexBuilder::new(source)
                .case_insensitive(true)
                .size_limit(limit)
                .build()
                .map(TextPattern)
        })
    }

    fn bytes_pattern(
        &mut self,
        source: &str,
        column: usize,
        name: &str,
    ) -> Result<BytesPattern, FilterError> {
        self.compile(column, name, |limit| {
            BytesRegexBuilder::new(source)
                .case_insensitive(true)
                .size_limit(limit)
                .build()
                .map(BytesPattern)
        })
    }

    /// Builds the argument of `~name` (at `column`) with `build(size_limit)` from what is
    /// left of the filter's regex budget. Doubling limits from [`FIRST_REGEX_LIMIT`] are
    /// tried in turn and the first that fits is charged to the budget. A try that does not
    /// fit stops building at its limit, but each try parses the regex again: all tries
    /// together cost 3 to 6 times one plain build (0.4 ms for `kinvey`, 0.2 s for
    /// `\w{200}` in a release build).
    fn compile<P>(
        &mut self,
        column: usize,
        name: &str,
        build: impl Fn(usize) -> Result<P, regex::Error>,
    ) -> Result<P, FilterError> {
        let mut limit = FIRST_REGEX_LIMIT;
        loop {
            let allowed = limit.min(self.regex_budget);
            match build(allowed) {
                Ok(pattern) => {
                    self.regex_budget -= allowed;
                    return Ok(pattern);
                }
                Err(regex::Error::CompiledTooBig(_)) if allowed < self.regex_budget => {
                    limit = limit.saturating_mul(2);
                }
                Err(regex::Error::CompiledTooBig(_)) if self.regex_budget < REGEX_BUDGET => {
                    return Err(FilterError::new(
                        column,
                        format!(
                            "~{name} takes a regex: the filter's regexes together compile to \
                             more than {REGEX_BUDGET} bytes; use fewer or simpler ones"
                        ),
                    ));
                }
                Err(e) => return Err(invalid_regex(name, column, &e)),
            }
        }
    }
}

/// `~c`'s argument as an inclusive range: `404`, `500-599` or `4xx`.
fn status(arg: &str, column: usize) -> Result<(u16, u16), FilterError> {
    let bad = || FilterError::new(column, STATUS_EXPECTED);
    let code = |text: &str| -> Result<u16, FilterError> {
        let bytes = text.as_bytes();
        if bytes.len() == 3 && bytes.iter().all(u8::is_ascii_digit) && bytes[0] != b'0' {
            text.parse().map_err(|_| bad())
        } else {
            Err(bad())
        }
    };
    let bytes = arg.as_bytes();
    if bytes.len() == 3 && (b'1'..=b'9').contains(&bytes[0]) && arg[1..].eq_ignore_ascii_case("xx")
    {
        let low = u16::from(bytes[0] - b'0') * 100;
        return Ok((low, low + 99));
    }
    if let Some((low, high)) = arg.split_once('-') {
        let (low, high) = (code(low)?, code(high)?);
        if low > high {
            return Err(FilterError::new(
                column,
                format!("~c range {arg} is backwards: write {high}-{low}"),
            ));
        }
        return Ok((low, high));
    }
    code(arg).map(|c| (c, c))
}

/// `~kc`'s argument.
fn class(arg: &str, column: usize) -> Result<ClassTest, FilterError> {
    Ok(match arg.to_ascii_lowercase().as_str() {
        "retry" => ClassTest::Class(ErrorClass::Retry),
        "fix" => ClassTest::Class(ErrorClass::Fix),
        "stop" => ClassTest::Class(ErrorClass::Stop),
        "unknown" => ClassTest::Unknown,
        _ => return Err(FilterError::new(column, CLASS_EXPECTED)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Expr {
        parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    /// The error's column and message.
    fn err(text: &str) -> (usize, String) {
        match parse(text) {
            Ok(expr) => panic!("{text:?} parsed as {expr:?}"),
            Err(e) => (e.column, e.message),
        }
    }

    fn pattern(source: &str) -> TextPattern {
        TextPattern(regex::Regex::new(source).unwrap())
    }

    fn url(source: &str) -> Expr {
        Expr::Test(Test::Url(pattern(source)))
    }

    fn method(source: &str) -> Expr {
        Expr::Test(Test::Method(pattern(source)))
    }

    fn status(low: u16, high: u16) -> Expr {
        Expr::Test(Test::Status { low, high })
    }

    fn and(items: Vec<Expr>) -> Expr {
        Expr::And(items)
    }

    fn or(items: Vec<Expr>) -> Expr {
        Expr::Or(items)
    }

    fn not(inner: Expr) -> Expr {
        Expr::Not(Box::new(inner))
    }

    /// The regex source of a one-operator filter.
    fn source(text: &str) -> String {
        match ok(text) {
            Expr::Test(
                Test::Method(p)
                | Test::Url(p)
                | Test::Domain(p)
                | Test::ContentType(_, p)
                | Test::Src(p)
                | Test::Dst(p)
                | Test::KinveyError(p)
                | Test::RequestId(p),
            ) => p.0.as_str().to_owned(),
            Expr::Test(Test::Header(_, p) | Test::Body(_, p)) => p.0.as_str().to_owned(),
            other => panic!("{text:?} parsed as {other:?}"),
        }
    }

    // Operators.

    #[test]
    fn each_operator_builds_its_test() {
        let cases: Vec<(&str, Test)> = vec![
            ("~m GET", Test::Method(pattern("GET"))),
            ("~u /items", Test::Url(pattern("/items"))),
            ("~d kinvey", Test::Domain(pattern("kinvey"))),
            (
                "~c 404",
                Test::Status {
                    low: 404,
                    high: 404,
                },
            ),
            ("~t json", Test::ContentType(Side::Either, pattern("json"))),
            (
                "~tq json",
                Test::ContentType(Side::Request, pattern("json")),
            ),
            (
                "~ts json",
                Test::ContentType(Side::Response, pattern("json")),
            ),
            ("~e", Test::Error),
            ("~q", Test::NoResponse),
            ("~s", Test::HasResponse),
            ("~src 10\\.0", Test::Src(pattern("10\\.0"))),
            ("~dst :443", Test::Dst(pattern(":443"))),
            ("~all", Test::All),
            ("~k", Test::Kinvey),
            (
                "~kerr Insufficient",
                Test::KinveyError(pattern("Insufficient")),
            ),
            (
                "~kc retry",
                Test::KinveyClass(ClassTest::Class(ErrorClass::Retry)),
            ),
            ("~rid abc", Test::RequestId(pattern("abc"))),
            ("~anom", Test::Anomaly),
            ("~warn", Test::Warning),
            ("~websocket", Test::WebSocket),
            ("~replay", Test::Replay),
        ];
        for (text, test) in cases {
            assert_eq!(ok(text), Expr::Test(test), "{text}");
        }
    }

    #[test]
    fn header_and_body_operators_pick_their_side() {
        let side = |text: &str| match ok(text) {
            Expr::Test(Test::Header(side, p)) => ("header", side, p.0.as_str().to_owned()),
            Expr::Test(Test::Body(side, p)) => ("body", side, p.0.as_str().to_owned()),
            other => panic!("{other:?}"),
        };
        assert_eq!(side("~h x"), ("header", Side::Either, "x".into()));
        assert_eq!(side("~hq x"), ("header", Side::Request, "x".into()));
        assert_eq!(side("~hs x"), ("header", Side::Response, "x".into()));
        assert_eq!(side("~b x"), ("body", Side::Either, "x".into()));
        assert_eq!(side("~bq x"), ("body", Side::Request, "x".into()));
        assert_eq!(side("~bs x"), ("body", Side::Response, "x".into()));
    }

    #[test]
    fn regexes_are_case_insensitive() {
        let Expr::Test(Test::Method(p)) = ok("~m get") else {
            panic!()
        };
        assert!(p.0.is_match("GET"));
        let Expr::Test(Test::Body(_, p)) = ok("~b NAME") else {
            panic!()
        };
        assert!(p.0.is_match(b"{\"name\":1}"));
        // As the README says: `(?-i)` makes one match case.
        let Expr::Test(Test::KinveyError(p)) = ok("~kerr '(?-i)^BL'") else {
            panic!()
        };
        assert!(p.0.is_match("BLRuntimeError") && !p.0.is_match("BlobNotFound"));
    }

    #[test]
    fn bare_word_is_url() {
        assert_eq!(ok("kinvey"), url("kinvey"));
        assert_eq!(ok("/appdata/.*items"), url("/appdata/.*items"));
        assert_eq!(ok("\"two words\""), url("two words"));
    }

    #[test]
    fn flags_take_no_argument() {
        assert_eq!(
            ok("~e ~q"),
            and(vec![Expr::Test(Test::Error), Expr::Test(Test::NoResponse)])
        );
        assert_eq!(
            ok("~e~q"),
            and(vec![Expr::Test(Test::Error), Expr::Test(Test::NoResponse)])
        );
        assert_eq!(ok("~all x"), and(vec![Expr::Test(Test::All), url("x")]));
    }

    // ~c and ~kc.

    #[test]
    fn status_number_range_and_class() {
        assert_eq!(ok("~c 404"), status(404, 404));
        assert_eq!(ok("~c 500-599"), status(500, 599));
        assert_eq!(ok("~c 404-404"), status(404, 404));
        assert_eq!(ok("~c 4xx"), status(400, 499));
        assert_eq!(ok("~c 4XX"), status(400, 499));
        assert_eq!(ok("~c 1xx"), status(100, 199));
        assert_eq!(ok("~c 9xx"), status(900, 999));
        assert_eq!(ok("~c '5xx'"), status(500, 599));
    }

    #[test]
    fn bad_statuses_point_at_the_argument() {
        for arg in [
            "9x9",
            "0xx",
            "99",
            "1000",
            "abc",
            "500-",
            "-500",
            "500-5xx",
            "4x",
            "40x",
            "4xxx",
            "099",
            "4-5",
            "500--599",
            "x4xx",
            "４０４",
        ] {
            let (column, message) = err(&format!("~c {arg}"));
            assert_eq!(column, 4, "{arg}");
            assert_eq!(
                message, "~c takes a status, a range like 500-599, or a class like 4xx",
                "{arg}"
            );
        }
    }

    #[test]
    fn backwards_range_is_an_error() {
        assert_eq!(
            err("~m GET ~c 599-500"),
            (11, "~c range 599-500 is backwards: write 500-599".into())
        );
    }

    #[test]
    fn missing_status_points_at_c() {
        assert_eq!(
            err("~c"),
            (
                1,
                "~c takes a status, a range like 500-599, or a class like 4xx".into()
            )
        );
        assert_eq!(err("~m GET & (~c)").0, 13);
    }

    #[test]
    fn kinvey_classes() {
        let class = |c| Expr::Test(Test::KinveyClass(c));
        assert_eq!(ok("~kc retry"), class(ClassTest::Class(ErrorClass::Retry)));
        assert_eq!(ok("~kc fix"), class(ClassTest::Class(ErrorClass::Fix)));
        assert_eq!(ok("~kc stop"), class(ClassTest::Class(ErrorClass::Stop)));
        assert_eq!(ok("~kc unknown"), class(ClassTest::Unknown));
        assert_eq!(ok("~kc STOP"), class(ClassTest::Class(ErrorClass::Stop)));
        assert_eq!(ok("~kc 'Fix'"), class(ClassTest::Class(ErrorClass::Fix)));
    }

    #[test]
    fn unknown_kinvey_class_is_an_error() {
        let expected = "~kc takes retry, fix, stop or unknown".to_owned();
        assert_eq!(err("~kc maybe"), (5, expected.clone()));
        assert_eq!(err("~kc"), (1, expected.clone()));
        assert_eq!(err("~kc retr"), (5, expected.clone()));
        assert_eq!(err("~k ~kc  fixes"), (9, expected));
    }

    // Precedence, adjacency, parentheses.

    #[test]
    fn and_binds_tighter_than_or() {
        assert_eq!(
            ok("a | b & c"),
            or(vec![url("a"), and(vec![url("b"), url("c")])])
        );
        assert_eq!(
            ok("a & b | c"),
            or(vec![and(vec![url("a"), url("b")]), url("c")])
        );
        assert_eq!(
            ok("a & b | c & d"),
            or(vec![
                and(vec![url("a"), url("b")]),
                and(vec![url("c"), url("d")])
            ])
        );
    }

    #[test]
    fn not_binds_tightest() {
        assert_eq!(ok("!a & b"), and(vec![not(url("a")), url("b")]));
        assert_eq!(ok("!a | b"), or(vec![not(url("a")), url("b")]));
        assert_eq!(ok("a & !b"), and(vec![url("a"), not(url("b"))]));
        assert_eq!(ok("! a"), not(url("a")));
        assert_eq!(ok("!!a"), not(not(url("a"))));
        assert_eq!(ok("!~s"), not(Expr::Test(Test::HasResponse)));
    }

    #[test]
    fn adjacent_terms_are_anded() {
        assert_eq!(ok("~m GET ~d kinvey"), ok("~m GET & ~d kinvey"));
        assert_eq!(
            ok("a b | c"),
            or(vec![and(vec![url("a"), url("b")]), url("c")])
        );
        assert_eq!(
            ok("a | b c"),
            or(vec![url("a"), and(vec![url("b"), url("c")])])
        );
        assert_eq!(ok("a !b"), and(vec![url("a"), not(url("b"))]));
        assert_eq!(
            ok("a (b | c)"),
            and(vec![url("a"), or(vec![url("b"), url("c")])])
        );
        assert_eq!(
            ok("a b & c d"),
            and(vec![url("a"), url("b"), url("c"), url("d")])
        );
    }

    #[test]
    fn parentheses_group() {
        assert_eq!(
            ok("(a | b) c"),
            and(vec![or(vec![url("a"), url("b")]), url("c")])
        );
        assert_eq!(ok("!(a | b)"), not(or(vec![url("a"), url("b")])));
        assert_eq!(ok("((a))"), url("a"));
        assert_eq!(
            ok("(~m GET | ~m POST) & !(~c 2xx)"),
            and(vec![
                or(vec![method("GET"), method("POST")]),
                not(status(200, 299))
            ])
        );
        assert_eq!(ok("(a)(b)"), and(vec![url("a"), url("b")]));
    }

    #[test]
    fn whitespace_is_free() {
        assert_eq!(ok("  ~m\tGET \n "), method("GET"));
        assert_eq!(ok("a&b"), url("a&b"));
        assert_eq!(ok("(a)|(b)"), or(vec![url("a"), url("b")]));
        assert_eq!(ok("!(a)&!(b)"), and(vec![not(url("a")), not(url("b"))]));
    }

    // Unquoted arguments.

    #[test]
    fn pipes_inside_an_argument_are_regex_alternation() {
        assert_eq!(ok("~m GET|POST"), method("GET|POST"));
        assert_eq!(ok("~u a&b=c"), url("a&b=c"));
    }

    #[test]
    fn operator_after_and_or_ends_an_argument() {
        assert_eq!(
            ok("~c 404|~c 500"),
            or(vec![status(404, 404), status(500, 500)])
        );
        assert_eq!(
            ok("~m GET&~d x"),
            and(vec![method("GET"), Expr::Test(Test::Domain(pattern("x")))])
        );
        assert_eq!(ok("~m GET| ~m PUT"), or(vec![method("GET"), method("PUT")]));
        assert_eq!(
            ok("~m GET|!~m PUT"),
            or(vec![method("GET"), not(method("PUT"))])
        );
        assert_eq!(ok("a|!b"), or(vec![url("a"), not(url("b"))]));
    }

    #[test]
    fn parentheses_inside_an_argument_are_regex_groups() {
        assert_eq!(ok("~u /users/(\\d+)"), url("/users/(\\d+)"));
        assert_eq!(ok("~u (a|b)"), url("(a|b)"));
        assert_eq!(ok("(~u /a/(b|c))"), url("/a/(b|c)"));
        assert_eq!(ok("(~m GET)"), method("GET"));
        assert_eq!(ok("(~c 404)"), status(404, 404));
    }

    #[test]
    fn tilde_inside_an_argument_is_literal() {
        assert_eq!(source("~u /~user/"), "/~user/");
        assert_eq!(source("~u ~"), "~");
        assert_eq!(source("~u ~1"), "~1");
        assert_eq!(source("~u it's"), "it's");
        assert_eq!(source("~u a\"b"), "a\"b");
    }

    // Quoting.

    #[test]
    fn quotes_include_spaces() {
        assert_eq!(
            source("~h \"content-type: application/json\""),
            "content-type: application/json"
        );
        assert_eq!(
            source("~kerr 'Insufficient Credentials'"),
            "Insufficient Credentials"
        );
        assert_eq!(source("~b '& | ! ( ) ~m'"), "& | ! ( ) ~m");
        assert_eq!(source("~u ''"), "");
    }

    #[test]
    fn backslash_escapes_the_quote_character() {
        assert_eq!(source(r#"~b "say \"hi\"""#), r#"say "hi""#);
        assert_eq!(source(r"~b 'it\'s'"), "it's");
        assert_eq!(source(r#"~b 'say "hi"'"#), r#"say "hi""#);
        assert_eq!(source(r#"~b "it's""#), "it's");
    }

    #[test]
    fn other_backslashes_stay_for_the_regex() {
        assert_eq!(source(r#"~u "\d+ \.json""#), r"\d+ \.json");
        assert_eq!(source(r#"~u "a\'""#), r"a\'");
        assert_eq!(source(r#"~u "a\\""#), r"a\\");
        assert_eq!(
            source(r#"~u "a\\" ~m GET"#.split(" ~m").next().unwrap()),
            r"a\\"
        );
        assert_eq!(
            ok(r#"~u "a\\" ~m GET"#),
            and(vec![url(r"a\\"), method("GET")])
        );
    }

    #[test]
    fn quoted_term_is_followed_by_more_terms() {
        assert_eq!(ok("'a b'|c"), or(vec![url("a b"), url("c")]));
        assert_eq!(
            ok("~m 'GET'~d x"),
            and(vec![method("GET"), Expr::Test(Test::Domain(pattern("x")))])
        );
    }

    #[test]
    fn unterminated_quote_points_at_the_quote() {
        assert_eq!(
            err("~u 'abc"),
            (4, "unterminated quote: expected a closing '".into())
        );
        assert_eq!(
            err(r#"~m GET "a\""#),
            (8, "unterminated quote: expected a closing \"".into())
        );
    }

    // Errors.

    #[test]
    fn empty_input() {
        let expected = (
            1,
            "empty filter: expected an expression such as ~m GET".to_owned(),
        );
        assert_eq!(err(""), expected);
        assert_eq!(err("   \t"), expected);
    }

    #[test]
    fn unknown_operators_point_at_the_tilde() {
        let (column, message) = err("~zz");
        assert_eq!(column, 1);
        assert!(
            message.starts_with("unknown operator ~zz; operators are ~m ~u ~d ~c"),
            "{message}"
        );
        assert!(
            message.ends_with("~anom ~warn ~websocket ~replay"),
            "{message}"
        );
        assert_eq!(err("~m GET & ~zz x").0, 10);
        assert_eq!(
            err("~mGET").1.split(';').next().unwrap(),
            "unknown operator ~mGET"
        );
        assert_eq!(
            err("~a").1.split(';').next().unwrap(),
            "unknown operator ~a"
        );
        assert_eq!(
            err("~M GET").1.split(';').next().unwrap(),
            "unknown operator ~M"
        );
    }

    #[test]
    fn lone_tilde_is_an_error() {
        assert_eq!(err("a ~").0, 3);
        assert!(err("~")
            .1
            .starts_with("~ must be followed by an operator name"));
        assert_eq!(err("~ x").0, 1);
    }

    #[test]
    fn missing_arguments() {
        assert_eq!(err("~m"), (1, "~m takes a regex".into()));
        assert_eq!(err("~m GET & ~hs  "), (10, "~hs takes a regex".into()));
        assert_eq!(
            err("~m & ~d x"),
            (
                4,
                "~m takes a regex, found & (quote an argument that starts with it)".into()
            )
        );
        assert_eq!(
            err("~u ~d x"),
            (
                4,
                "~u takes a regex, found ~d (quote an argument that starts with it)".into()
            )
        );
        assert_eq!(err("(~kerr)").0, 7);
        assert_eq!(err("~b | x").0, 4);
        assert_eq!(err("~rid !x").0, 6);
        assert_eq!(err("~c & ~m GET").1.split(',').count(), 4);
    }

    #[test]
    fn invalid_regexes_point_at_the_argument() {
        assert_eq!(
            err("~m GET & ~d ["),
            (13, "~d takes a regex: unclosed character class".into())
        );
        assert_eq!(err("~u a("), (4, "~u takes a regex: unclosed group".into()));
        assert_eq!(err("~h '*'").0, 4);
        assert_eq!(err("~bs x{2,1}").0, 5);
        assert_eq!(
            err("a["),
            (1, "~u takes a regex: unclosed character class".into())
        );
        assert_eq!(err("x 'a)'").0, 3);
    }

    #[test]
    fn unclosed_parenthesis_points_at_it() {
        assert_eq!(err("~m GET & (~d x"), (10, "unclosed (: expected )".into()));
        assert_eq!(err("(("), (2, "unclosed (: expected a filter and )".into()));
        assert_eq!(err("(a | (b)"), (1, "unclosed (: expected )".into()));
        assert_eq!(err("~u (a"), (4, "~u takes a regex: unclosed group".into()));
    }

    #[test]
    fn stray_close_parenthesis() {
        let expected = "unexpected ): there is no ( for it to close".to_owned();
        assert_eq!(err("~m GET)"), (7, expected.clone()));
        assert_eq!(err(")"), (1, expected.clone()));
        assert_eq!(err("(a))"), (4, expected.clone()));
        assert_eq!(err("a | b )"), (7, expected));
    }

    #[test]
    fn empty_parentheses() {
        assert_eq!(
            err("a ( )"),
            (5, "empty parentheses: expected a filter inside".into())
        );
    }

    #[test]
    fn dangling_operators() {
        assert_eq!(err("~m GET &"), (8, "expected a filter after &".into()));
        assert_eq!(err("~m GET |"), (8, "expected a filter after |".into()));
        assert_eq!(err("~m GET|"), (7, "expected a filter after |".into()));
        assert_eq!(err("!"), (1, "expected a filter after !".into()));
        assert_eq!(err("a !"), (3, "expected a filter after !".into()));
        assert_eq!(
            err("~m GET & | ~d x"),
            (10, "expected a filter after &, found |".into())
        );
        assert_eq!(
            err("a | & b"),
            (5, "expected a filter after |, found &".into())
        );
        assert_eq!(err("!)"), (2, "expected a filter after !, found )".into()));
        assert_eq!(err("!&a"), (2, "expected a filter after !, found &".into()));
        assert_eq!(
            err("(~m GET &)"),
            (10, "expected a filter after &, found )".into())
        );
        assert_eq!(
            err("(| a)"),
            (2, "expected a filter after (, found |".into())
        );
        assert_eq!(
            err("a && b"),
            (4, "expected a filter after &, found &".into())
        );
    }

    #[test]
    fn leading_binary_operators() {
        assert_eq!(err("& ~m GET"), (1, "expected a filter before &".into()));
        assert_eq!(err("  | x"), (3, "expected a filter before |".into()));
    }

    #[test]
    fn nesting_is_limited() {
        let deep = |n: usize| format!("{}x{}", "(".repeat(n), ")".repeat(n));
        assert_eq!(ok(&deep(MAX_DEPTH)), url("x"));
        let (column, message) = err(&deep(MAX_DEPTH + 1));
        assert_eq!(column, MAX_DEPTH + 1);
        assert!(message.starts_with("too deeply nested"), "{message}");
        let nots = format!("{}x", "!".repeat(10_000));
        assert_eq!(err(&nots).0, MAX_DEPTH + 1);
    }

    #[test]
    fn long_flat_expressions_parse() {
        let text = vec!["a"; 10_000].join(" | ");
        let Expr::Or(items) = ok(&text) else { panic!() };
        assert_eq!(items.len(), 10_000);
    }

    #[test]
    fn regexes_share_a_size_budget() {
        // Found while fuzzing (slow runs): each \w{50} compiles to 2 to 4 MB, so a short
        // filter could hold gigabytes of regexes. The third one here no longer fits.
        ok(r"~b \w{50} ~u \w{50}");
        let (column, message) = err(r"~b \w{50} ~u \w{50} ~h \w{50}");
        assert_eq!(column, 24);
        assert_eq!(
            message,
            format!(
                "~h takes a regex: the filter's regexes together compile to more than \
                 {REGEX_BUDGET} bytes; use fewer or simpler ones"
            )
        );
    }

    #[test]
    fn a_regex_too_big_on_its_own_says_so() {
        assert_eq!(
            err(r"~u \w{1000}"),
            (
                4,
                format!("~u takes a regex: the compiled regex is larger than {REGEX_BUDGET} bytes")
            )
        );
        let (column, message) = err(r"~m GET ~u \w{1000}");
        assert_eq!(column, 11);
        assert!(message.contains("regexes together compile"), "{message}");
    }
}
