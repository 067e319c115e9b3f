//! Text laid out in screen rows: text views (a detail's tabs, the help, a report)
//! scroll by screen rows, so that a long URL or header is scrolled through like any
//! other text.

use std::sync::Arc;

/// Lines laid out in screen rows of one width.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LaidOutText {
    /// The lines.
    pub lines: Arc<Vec<String>>,
    /// The screen row each line starts on.
    pub starts: Vec<usize>,
    /// The rows all the lines take.
    pub rows: usize,
    /// The width they are laid out in.
    pub width: usize,
    /// The label column of labelled lines (`Description  text`): their rows after the
    /// first start under their text, this far in (0: none). See [`LaidOutText::hang_of`].
    pub hanging: usize,
}

/// Where the screen rows of `line` end, `width` columns each, measured as the terminal
/// draws them: by grapheme cluster (an emoji with its variation selector, a ZWJ family,
/// a letter with its accent), one that is two columns wide (CJK, most emoji) and does
/// not fit going to the next row. A row ends after its last space when a word does not
/// fit (a word longer than a row is cut); spaces that do not fit hang past its edge, as
/// in a word processor, rather than begin the next. Each end is a byte offset; the last
/// is the line's length. ASCII takes the short way.
/// Rows after the first are `hang` columns narrower (they start that far in).
fn row_ends(line: &str, width: usize, hang: usize) -> impl Iterator<Item = usize> + '_ {
    let first = width.max(1);
    let rest = width.saturating_sub(hang).max(1);
    let ascii = line.is_ascii();
    let mut start = 0;
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        let width = if start == 0 { first } else { rest };
        let end = match ascii {
            true => ascii_row_end(line.as_bytes(), start, width),
            false => row_end(line, start, width),
        };
        start = end;
        done = end == line.len();
        Some(end)
    })
}

/// The end of the row of `width` columns that starts at byte `start` of ASCII `line`.
fn ascii_row_end(line: &[u8], start: usize, width: usize) -> usize {
    let rest = &line[start..];
    if rest.len() <= width {
        return line.len();
    }
    if rest[width] == b' ' {
        let spaces = rest[width..].iter().take_while(|&&b| b == b' ').count();
        return start + width + spaces;
    }
    // After the last space in the row, unless that is its first character.
    match rest[1..width].iter().rposition(|&b| b == b' ') {
        Some(i) => start + i + 2,
        None => start + width,
    }
}

/// [`ascii_row_end`] for any text, by grapheme.
fn row_end(line: &str, start: usize, width: usize) -> usize {
    use unicode_segmentation::UnicodeSegmentation;
    use unicode_width::UnicodeWidthStr;
    let mut columns = 0;
    let mut after_space = None;
    let mut graphemes = line[start..].grapheme_indices(true);
    while let Some((at, grapheme)) = graphemes.next() {
        let wide = grapheme.width();
        if columns + wide > width && columns > 0 {
            if grapheme == " " {
                let word = graphemes.find(|&(_, g)| g != " ").map(|(at, _)| start + at);
                return word.unwrap_or(line.len());
            }
            return start + after_space.unwrap_or(at);
        }
        columns += wide;
        if grapheme == " " && at > 0 {
            after_space = Some(at + 1);
        }
    }
    line.len()
}

/// The screen rows a line of text takes in `width` columns (at least one). A line of no
/// more bytes than `width` fits in one row, as no character takes more columns than it
/// has bytes in UTF-8: only longer lines are measured (laying out 100,000 WebSocket
/// message lines, each with its arrow, took 166 ms by grapheme).
fn rows_of(line: &str, width: usize, hang: usize) -> usize {
    match line.len() <= width.max(1) {
        true => 1,
        false => row_ends(line, width, hang).count(),
    }
}

/// One screen row of a line: its text, `indent` columns in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row<'a> {
    pub indent: usize,
    pub text: &'a str,
}

impl LaidOutText {
    /// Lays `lines` out in rows `width` columns wide.
    pub fn new(lines: Vec<String>, width: usize) -> LaidOutText {
        LaidOutText::shared(Arc::new(lines), width, 0)
    }

    /// Lays out `lines` made before (another width, another time); labelled lines, if
    /// `hanging` is their label column, with a hanging indent.
    pub fn shared(lines: Arc<Vec<String>>, width: usize, hanging: usize) -> LaidOutText {
        let width = width.max(1);
        let mut text = LaidOutText {
            lines: Arc::default(),
            starts: Vec::with_capacity(lines.len()),
            rows: 0,
            width,
            hanging,
        };
        for line in lines.iter() {
            text.starts.push(text.rows);
            text.rows += rows_of(line, width, text.hang_of(line));
        }
        text.lines = lines;
        text
    }

    /// How far in the rows of `line` after its first start: to its text when it is a
    /// labelled line (its label column ends in a space) and the width leaves room for
    /// its text beside the label, else 0.
    fn hang_of(&self, line: &str) -> usize {
        let hang = self.hanging;
        let labelled = hang > 0
            && line.len() > self.width
            && line.as_bytes().get(hang - 1) == Some(&b' ')
            && line.is_char_boundary(hang);
        match labelled && self.width >= hang * 2 {
            true => hang,
            false => 0,
        }
    }

    /// The furthest the text scrolls with `page` rows on screen: its last row at the
    /// bottom.
    pub fn last_scroll(&self, page: usize) -> usize {
        self.rows.saturating_sub(page)
    }

    /// The index of the line shown on screen row `row`.
    pub fn line_at(&self, row: usize) -> usize {
        self.starts
            .partition_point(|&start| start <= row)
            .saturating_sub(1)
    }

    /// The screen rows `line` takes, each at most `width` columns with its indent; an
    /// empty line is one empty row. Made as they are taken: a line of megabytes costs
    /// only the rows shown.
    pub fn rows_of_line<'a>(&self, line: &'a str) -> impl Iterator<Item = Row<'a>> + 'a {
        let hang = self.hang_of(line);
        let mut start = 0;
        row_ends(line, self.width, hang).map(move |end| {
            let indent = if start == 0 { 0 } else { hang };
            let text = &line[start..end];
            start = end;
            Row { indent, text }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts<'a>(text: &LaidOutText, line: &'a str) -> Vec<&'a str> {
        text.rows_of_line(line).map(|row| row.text).collect()
    }

    #[test]
    fn labelled_lines_hang_under_their_text() {
        let lines = vec![
            "Description  The server could not do it. Please retry".to_owned(),
            "             a second line of the same field, long too".to_owned(),
            "a line that is not labelled at all, long".to_owned(),
            "Short        fits".to_owned(),
        ];
        let text = LaidOutText::shared(Arc::new(lines), 30, 13);
        let rows = |i: usize| {
            let line = &text.lines[i];
            text.rows_of_line(line)
                .map(|row| format!("{}{}", " ".repeat(row.indent), row.text))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            rows(0),
            [
                "Description  The server could ",
                "             not do it. Please ",
                "             retry"
            ]
        );
        assert_eq!(rows(1)[1], "             the same field, ");
        assert_eq!(rows(2), ["a line that is not labelled at ", "all, long"]);
        assert_eq!(rows(3), ["Short        fits"]);
        // (Spaces that do not fit hang past the edge.)
        assert!(rows(0)
            .iter()
            .all(|row| row.trim_end().chars().count() <= 30));
        assert_eq!(text.rows, 3 + 3 + 2 + 1);
        // Too narrow to hang beside the label: rows wrap from the edge.
        let narrow = LaidOutText::shared(text.lines.clone(), 20, 13);
        let first: Vec<_> = narrow.rows_of_line(&narrow.lines[0]).collect();
        assert!(first.iter().all(|row| row.indent == 0));
    }

    #[test]
    fn the_short_way_counts_the_rows_the_graphemes_take() {
        let lines = [
            "",
            "→ 12:00:00.123  text      40 B  {\"seq\":1}",
            "日本語のテキスト、とても長い行です",
            "👩‍👩‍👧 family ☺\u{FE0F} café e\u{301}",
            "Ωμέγα Ελληνικά ½ ¼",
        ];
        for line in lines {
            for width in 1..60 {
                assert_eq!(
                    rows_of(line, width, 0),
                    row_ends(line, width, 0).count(),
                    "{line:?} in {width} columns"
                );
            }
        }
    }

    #[test]
    fn lines_are_cut_into_rows_of_the_width() {
        let text = LaidOutText::new(vec!["a".repeat(10), "é".repeat(3), String::new()], 4);
        assert_eq!(
            (text.starts.as_slice(), text.rows),
            ([0, 3, 4].as_slice(), 5)
        );
        let rows: Vec<&str> = text.rows_of_line(&text.lines[0]).map(|r| r.text).collect();
        assert_eq!(rows, ["aaaa", "aaaa", "aa"]);
        assert_eq!(texts(&text, "ééé"), ["ééé"]);
        assert_eq!(texts(&text, ""), [""]);
        assert_eq!(
            (
                text.line_at(0),
                text.line_at(2),
                text.line_at(3),
                text.line_at(9)
            ),
            (0, 0, 1, 2)
        );
        assert_eq!(text.last_scroll(4), 1);
    }

    #[test]
    fn rows_end_between_words() {
        let rows = |line: &str, width| {
            let text = LaidOutText::new(vec![line.to_owned()], width);
            let rows: Vec<String> = text.rows_of_line(line).map(|r| r.text.to_owned()).collect();
            assert_eq!(rows.len(), text.rows, "{line:?} in {width}");
            rows
        };
        assert_eq!(rows("the quick brown fox", 10), ["the quick ", "brown fox"]);
        // Spaces just past the row hang there; a word longer than a row is cut.
        assert_eq!(rows("abcd efgh", 4), ["abcd ", "efgh"]);
        assert_eq!(rows("abcd  efgh  ", 4), ["abcd  ", "efgh  "]);
        assert_eq!(rows("añcd  efgh  ", 4), ["añcd  ", "efgh  "]);
        assert_eq!(rows("a verylongword", 5), ["a ", "veryl", "ongwo", "rd"]);
        assert_eq!(rows(" leading", 4), [" lea", "ding"]);
        assert_eq!(rows("café au lait noir", 8), ["café au ", "lait ", "noir"]);
        assert_eq!(rows("漢字 かな ab", 5), ["漢字 ", "かな ", "ab"]);
    }

    #[test]
    fn wide_characters_take_two_columns_and_never_straddle_rows() {
        let text = LaidOutText::new(vec!["漢字かなab🙂c".into()], 5);
        assert_eq!(texts(&text, &text.lines[0]), ["漢字", "かなa", "b🙂c"]);
        assert_eq!(text.rows, 3);
        // A combining accent stays with its letter; an emoji with its variation
        // selector is two columns, a ZWJ family one emoji.
        assert_eq!(texts(&text, "abcde\u{301}f"), ["abcde\u{301}", "f"]);
        assert_eq!(texts(&text, "abcd❤️e"), ["abcd", "❤️e"]);
        assert_eq!(texts(&text, "ab👨‍👩‍👧cd"), ["ab👨‍👩‍👧c", "d"]);
    }
}
