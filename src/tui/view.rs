//! Drawing: a pure function of the [`App`] state.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table, TableState, Tabs};
use ratatui::Frame;
use std::sync::Arc;

use super::body::{body_lines, BodyView};
use super::state::{App, Detail, PromptKind, Screen, Tab};
use super::text::LaidOutText;
use crate::capture::StoredFlow;
use crate::flow::{printable_line, Flow, ShownClient};
use crate::headless::HumanSize;
use crate::kinvey::{self, ErrorClass, KinveySummary};
use crate::redact::{form_body_fields, form_fields, query_of};

/// Rows of flows the list shows in a terminal area of this size.
pub fn list_page(area: Rect) -> usize {
    // Status bar, prompt line and the table's header row.
    usize::from(area.height.saturating_sub(3)).max(1)
}

/// Draws the whole UI.
pub fn draw(frame: &mut Frame<'_>, app: &App) {
    let width = usize::from(frame.area().width);
    // A prompt's error and a message are wrapped whole: what to do often comes last.
    let bottom_rows = bottom_text(app, width).len().clamp(1, 8) as u16;
    let [main, status, bottom] = Layout::vertical([
        Constraint::Min(1),
        Constraint::Length(1),
        Constraint::Length(bottom_rows),
    ])
    .areas(frame.area());
    match &app.screen {
        Screen::List => draw_list(frame, main, app),
        Screen::Detail(detail) => {
            let [tabs, body] =
                Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(main);
            let make_titles = |short: bool| -> Vec<String> {
                Tab::ALL
                    .iter()
                    .enumerate()
                    .map(|(i, t)| {
                        let title = if short { t.short_title() } else { t.title() };
                        format!("{} {title}", i + 1)
                    })
                    .collect()
            };
            // Each title is padded by a cell on both sides, with a divider between.
            let room = |titles: &[String]| -> usize {
                titles.iter().map(|t| t.chars().count() + 3).sum::<usize>()
            };
            let selected = Tab::ALL.iter().position(|t| *t == detail.tab);
            // Which flow is open, on every tab (`]` and `[` change it).
            let mut view = format!("flow {} · v body: {} ", detail.id, detail.body_view.name());
            let width = usize::from(tabs.width);
            let mut titles = make_titles(false);
            // Narrow: the body view's name goes first, then the titles get shorter, so
            // that every tab stays in sight.
            if room(&titles) + view.chars().count() > width {
                view.clear();
                if room(&titles) > width {
                    titles = make_titles(true);
                }
            }
            let [tabs, view_area] = Layout::horizontal([
                Constraint::Min(1),
                Constraint::Length(view.chars().count() as u16),
            ])
            .areas(tabs);
            frame.render_widget(
                Tabs::new(titles)
                    .select(selected)
                    .highlight_style(Style::new().add_modifier(Modifier::REVERSED)),
                tabs,
            );
            frame.render_widget(
                Paragraph::new(view).style(Style::new().fg(Color::DarkGray)),
                view_area,
            );
            let width = usize::from(body.width);
            let text = match detail.flow() {
                Some(_) => detail.text(width),
                None => {
                    LaidOutText::new(vec![format!("loading flow {} ...", detail.id)], width).into()
                }
            };
            let term = detail.search.as_deref().map(str::to_lowercase);
            draw_text(frame, body, &text, detail.scroll, term.as_deref());
        }
        Screen::Help { scroll } => {
            let width = usize::from(main.width);
            let text = LaidOutText::new(help_lines(width), width);
            draw_text(frame, main, &text, *scroll, None)
        }
        Screen::KinveySummary { rows, selected } => {
            let header = Row::new(["COUNT", "CLASS", "ERROR"])
                .style(Style::new().add_modifier(Modifier::BOLD));
            let table_rows = rows.iter().map(|row| {
                Row::new(vec![
                    Cell::from(row.count.to_string()),
                    Cell::from(Span::styled(row.badge.clone(), badge_style(&row.badge))),
                    Cell::from(row.error.clone()),
                ])
            });
            let title = if rows.is_empty() {
                " Kinvey errors: none in the view ".to_owned()
            } else {
                " Kinvey errors in the view — Enter lists those flows, q goes back ".to_owned()
            };
            let table = Table::new(
                table_rows,
                [
                    Constraint::Length(6),
                    Constraint::Length(7),
                    Constraint::Fill(1),
                ],
            )
            .header(header)
            .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
            .block(Block::new().borders(Borders::TOP).title(title));
            // Scrolled so that the selected row is always on screen.
            let mut state = TableState::new().with_selected(Some(*selected));
            frame.render_stateful_widget(table, main, &mut state);
        }
        Screen::Report { id, text, scroll } => {
            let lines: Vec<String> = match text {
                Some(text) => text.lines().map(str::to_owned).collect(),
                None if app.is_in_flight(*id) => vec![format!(
                    "flow {id} is still under way: its support report is made once it has ended"
                )],
                None => vec![format!("making the support report of flow {id} ...")],
            };
            let [title, body] =
                Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(main);
            frame.render_widget(
                Paragraph::new(format!(
                    "Support report of flow {id} (redacted; select and copy it) — q goes back"
                ))
                .style(Style::new().add_modifier(Modifier::BOLD)),
                title,
            );
            let text = LaidOutText::new(lines, usize::from(body.width));
            draw_text(frame, body, &text, *scroll, None);
        }
    }
    frame.render_widget(
        Paragraph::new(status_line(app, width))
            .style(Style::new().bg(Color::Blue).fg(Color::White)),
        status,
    );
    frame.render_widget(Paragraph::new(bottom_text(app, width)), bottom);
}

/// The status bar, `width` cells wide: what changes first (counts, filter), then where
/// things are. Where it does not fit, files are named without their directories, then
/// the CA is left out, then `? help` moves up behind the counts, so that it stays in
/// sight.
fn status_line(app: &App, width: usize) -> String {
    use unicode_width::UnicodeWidthStr;
    let file = |path: &std::path::Path, whole: bool| match (whole, path.file_name()) {
        (false, Some(name)) => name.to_string_lossy().into_owned(),
        _ => path.display().to_string(),
    };
    let filter_text = app.filter.as_ref().map(|f| f.text().to_owned());
    let line = |whole_paths: bool, with_ca: bool, help_first: bool, filter: Option<&str>| {
        let mut parts = vec![format!("flows {}/{}", app.view.len(), app.flows.len())];
        if help_first {
            parts.push("? help".into());
        }
        if let Some(filter) = filter {
            parts.push(format!("filter {filter}"));
        }
        if app.follow {
            parts.push("follow".into());
        }
        if let Some(listen) = app.source.listen {
            parts.push(format!("proxy http://{listen}"));
        }
        parts.push(match &app.source.har {
            Some(har) => format!("HAR {}", file(har, whole_paths)),
            None => format!("capture {}", file(&app.source.capture, whole_paths)),
        });
        if let (Some(ca), true) = (&app.source.ca, with_ca) {
            parts.push(format!("CA {}", file(ca, whole_paths)));
        }
        if !help_first {
            parts.push("? help".into());
        }
        format!(" kinspect │ {}", parts.join(" │ "))
    };
    let filter = filter_text.as_deref();
    if let Some(fits) = [(true, true), (false, true), (false, false)]
        .into_iter()
        .map(|(whole_paths, with_ca)| line(whole_paths, with_ca, false, filter))
        .find(|line| line.width() <= width)
    {
        return fits;
    }
    let narrow = line(false, false, true, filter);
    // Still too wide: the filter (which the user typed) is cut before the proxy's
    // address (which a device needs) goes past the edge.
    match filter {
        Some(filter) if narrow.width() > width => {
            let room = filter.width().saturating_sub(narrow.width() - width).max(9);
            line(false, false, true, Some(&cut_with_ellipsis(filter, room)))
        }
        _ => narrow,
    }
}

/// A prompt's error (or a message) as shown `width` cells wide: its first line wrapped
/// between words; the input and caret lines under it (a filter's) as they are, aligned
/// to each other.
fn error_lines(error: &str, width: usize) -> Vec<String> {
    let mut lines = error.lines();
    let mut shown = lines.next().map_or_else(Vec::new, |m| wrap_words(m, width));
    shown.extend(lines.map(str::to_owned));
    shown
}

/// A prompt's input as shown in `width` cells, `▏` at the cursor: all of it when it
/// fits; else the cursor stays in view and `…` marks the text cut off.
fn prompt_window(before: &str, after: &str, width: usize) -> String {
    use unicode_width::UnicodeWidthStr;
    let room = width.saturating_sub(1);
    let (wide_before, wide_after) = (before.width(), after.width());
    if wide_before + wide_after <= room {
        format!("{before}▏{after}")
    } else if wide_before < room {
        let shown = fitting(after, room - wide_before - 1, false);
        format!("{before}▏{shown}…")
    } else {
        let shown = fitting(before, room.saturating_sub(1), true);
        format!("…{shown}▏")
    }
}

/// The graphemes of `text` (from its end when `from_end`) that fit in `room` cells.
fn fitting(text: &str, room: usize, from_end: bool) -> String {
    use unicode_segmentation::UnicodeSegmentation;
    use unicode_width::UnicodeWidthStr;
    let mut graphemes: Vec<&str> = text.graphemes(true).collect();
    if from_end {
        graphemes.reverse();
    }
    let mut used = 0;
    let mut kept: Vec<&str> = graphemes
        .into_iter()
        .take_while(|g| {
            used += g.width();
            used <= room
        })
        .collect();
    if from_end {
        kept.reverse();
    }
    kept.concat()
}

/// `text` in at most `width` cells: whole when it fits, else its start and `…`.
fn cut_with_ellipsis(text: &str, width: usize) -> String {
    match unicode_width::UnicodeWidthStr::width(text) <= width {
        true => text.to_owned(),
        false => format!("{}…", fitting(text, width.saturating_sub(1), false)),
    }
}

/// The key hints that fit in `width` columns, whole, in their order: one that does not
/// fit is left out rather than cut.
fn hints_within<'a>(hints: impl Iterator<Item = &'a &'a str>, width: usize) -> String {
    use unicode_width::UnicodeWidthStr;
    let mut line = String::new();
    for hint in hints {
        let gap = if line.is_empty() { 0 } else { 2 };
        if line.width() + gap + hint.width() > width {
            break;
        }
        if gap > 0 {
            line.push_str("  ");
        }
        line.push_str(hint);
    }
    line
}

/// What `q` asks in the list while kinspect is proxying.
const QUIT_QUESTION: &str = "stop the proxy and quit? y / n (Q quits at once)";

fn bottom_text(app: &App, width: usize) -> Vec<Line<'static>> {
    if let Some(prompt) = &app.prompt {
        let label = match prompt.kind {
            PromptKind::Filter => "filter",
            PromptKind::RequestId => "request id",
            PromptKind::Search => "search",
        };
        let (before, after) = prompt.input.split_at(prompt.cursor);
        let room = width.saturating_sub(label.len() + 2);
        let shown = prompt_window(before, after, room);
        let mut lines = vec![Line::from(format!("{label}: {shown}"))];
        if let Some(error) = &prompt.error {
            lines.extend(
                error_lines(error, width)
                    .into_iter()
                    .map(|l| Line::styled(l, Style::new().fg(Color::Red))),
            );
        }
        return lines;
    }
    if app.asking_to_quit {
        return vec![Line::styled(
            QUIT_QUESTION,
            Style::new().add_modifier(Modifier::BOLD),
        )];
    }
    // Sending requests again needs the running proxy.
    let live = app.source.listen.is_some();
    match &app.message {
        Some(message) => error_lines(message, width)
            .into_iter()
            .map(Line::from)
            .collect(),
        None => {
            // `? help` is on the status bar above the list.
            let hints: &[&str] = match app.screen {
                Screen::List => &[
                    "Enter details",
                    "f filter",
                    "q quit",
                    "i request id",
                    "K Kinvey errors",
                    "r report",
                    "R resend",
                    "e edit+send",
                    "E export HAR",
                    "F follow",
                    "z clear",
                ],
                Screen::Detail(_) => &[
                    "Tab/←→ tabs",
                    "j/k scroll",
                    "? help",
                    "q back",
                    "/ search",
                    "n/N next/prev match",
                    "v body",
                    "r report",
                    "R resend",
                    "e edit+send",
                    "c copy as curl",
                    "w save body",
                    "]/[ next/prev flow",
                ],
                Screen::KinveySummary { .. } => &["j/k move", "Enter list those flows", "q back"],
                _ => &["j/k scroll", "q back"],
            };
            let shown = hints
                .iter()
                .filter(|hint| live || !matches!(**hint, "R resend" | "e edit+send"));
            vec![Line::styled(
                hints_within(shown, width),
                Style::new().fg(Color::DarkGray),
            )]
        }
    }
}

/// Scrolls `text` into `area` by screen rows, highlighting lines containing `term`.
/// Only the rows on screen are made.
fn draw_text(
    frame: &mut Frame<'_>,
    area: Rect,
    text: &LaidOutText,
    scroll: usize,
    term: Option<&str>,
) {
    let height = usize::from(area.height);
    let highlight = Style::new().bg(Color::Yellow).fg(Color::Black);
    let top = scroll.min(text.last_scroll(height));
    let first = text.line_at(top);
    let mut skip = top - text.starts.get(first).copied().unwrap_or(0);
    let mut rows: Vec<Line<'_>> = Vec::with_capacity(height);
    for line in text.lines.iter().skip(first) {
        if rows.len() >= height {
            break;
        }
        let style = match term {
            Some(term) if !term.is_empty() && line.to_lowercase().contains(term) => highlight,
            _ => Style::new(),
        };
        let room = height - rows.len();
        let chunks = text
            .rows_of_line(line)
            .skip(std::mem::take(&mut skip))
            .take(room);
        rows.extend(chunks.map(|row| match row.indent {
            0 => Line::styled(row.text, style),
            indent => Line::from(vec![
                Span::raw(" ".repeat(indent)),
                Span::styled(row.text, style),
            ]),
        }));
    }
    frame.render_widget(Paragraph::new(rows), area);
}

fn status_style(flow: &Flow) -> Style {
    match (flow.status(), &flow.error) {
        (_, Some(_)) => Style::new().fg(Color::Magenta),
        (Some(s), None) if s >= 500 => Style::new().fg(Color::Red),
        (Some(s), None) if s >= 400 => Style::new().fg(Color::Yellow),
        (Some(s), None) if s >= 300 => Style::new().fg(Color::Cyan),
        (Some(_), None) => Style::new().fg(Color::Green),
        (None, None) => Style::new().fg(Color::DarkGray),
    }
}

fn class_color(class: ErrorClass) -> Color {
    match class {
        ErrorClass::Retry => Color::Yellow,
        ErrorClass::Fix => Color::LightBlue,
        ErrorClass::Stop => Color::Red,
    }
}

fn badge_style(badge: &str) -> Style {
    let class = match badge.trim_start_matches('?') {
        "RETRY" => ErrorClass::Retry,
        "STOP" => ErrorClass::Stop,
        _ => ErrorClass::Fix,
    };
    let style = Style::new()
        .fg(class_color(class))
        .add_modifier(Modifier::BOLD);
    if badge.starts_with('?') {
        style.add_modifier(Modifier::ITALIC)
    } else {
        style
    }
}

/// The time of day of `at` (UTC) with milliseconds, as the list and the detail show it.
pub fn clock(at: std::time::SystemTime) -> String {
    const FORMAT: &[time::format_description::FormatItem<'static>] =
        time::macros::format_description!("[hour]:[minute]:[second].[subsecond digits:3]");
    time::OffsetDateTime::from(at)
        .format(FORMAT)
        .unwrap_or_default()
}

fn path_of(flow: &Flow) -> &str {
    let url = flow.request.url.as_str();
    match url.find("://") {
        Some(i) => url[i + 3..].find('/').map_or("/", |p| &url[i + 3 + p..]),
        None => url,
    }
}

/// The HOST column's text: the host, with its port unless the scheme's own (two local
/// servers on one host are told apart).
fn shown_host(flow: &Flow) -> String {
    let default = match flow.scheme.as_str() {
        "https" | "wss" => 443,
        _ => 80,
    };
    match (flow.port, flow.host.contains(':')) {
        (port, _) if port == default || port == 0 => flow.host.clone(),
        (port, true) => format!("[{}]:{port}", flow.host),
        (port, false) => format!("{}:{port}", flow.host),
    }
}

/// The response's media type in the TYPE column's four cells: a subtype that fits as it
/// is, a structured suffix (`vnd.kinvey+json` is json), or a short name for the common
/// long ones (`plain` is text, `octet-stream` bin).
fn short_type(flow: &Flow) -> String {
    let content_type = flow
        .response
        .as_ref()
        .and_then(|r| r.headers.get("content-type"))
        .unwrap_or_default();
    let essence = content_type.split(';').next().unwrap_or("").trim();
    let (kind, subtype) = essence.split_once('/').unwrap_or(("", essence));
    let subtype = subtype.to_ascii_lowercase();
    let short = match subtype.as_str() {
        "plain" => "text",
        "octet-stream" => "bin",
        "javascript" | "x-javascript" | "ecmascript" => "js",
        "x-www-form-urlencoded" => "form",
        "form-data" => "form",
        "event-stream" => "sse",
        "svg+xml" => "svg",
        "jpeg" => "jpg",
        "x-icon" | "vnd.microsoft.icon" => "ico",
        "x-ndjson" | "ndjson" | "jsonl" => "json",
        "x-protobuf" | "protobuf" | "x-google-protobuf" => "pb",
        "grpc" | "grpc+proto" => "grpc",
        "markdown" => "md",
        _ => match subtype.rsplit_once('+') {
            Some((_, suffix)) => return suffix.chars().take(4).collect(),
            None if subtype.chars().count() <= 4 => return subtype,
            // woff2, x-www-something: the type says more than a cut subtype.
            None if kind.eq_ignore_ascii_case("font") => "font",
            None => return subtype.trim_start_matches("x-").chars().take(4).collect(),
        },
    };
    short.to_owned()
}

/// What a flow's KINVEY cell names after its badge and marks: its error, else its first
/// anomaly's or warning's code.
fn kinvey_cell_text(kinvey: &KinveySummary) -> Option<&str> {
    match (kinvey.class, &kinvey.error) {
        (Some(_), Some(error)) => Some(error),
        _ => kinvey
            .anomalies
            .iter()
            .chain(&kinvey.warnings)
            .next()
            .map(|finding| finding.code.as_str()),
    }
}

/// Columns a flow's KINVEY cell takes ([`kinvey_cell`]), without drawing it: the badge
/// (6) and a space, two marks and a space, then the text.
pub(super) fn kinvey_cell_width(kinvey: &KinveySummary) -> usize {
    kinvey_cell_text(kinvey).map_or(0, |text| {
        KINVEY_MARKS_WIDTH + unicode_width::UnicodeWidthStr::width(text)
    })
}

/// The list's KINVEY cell: the class badge, ⚑ when the flow has an anomaly and ⚠ when
/// it drew a behaviour warning (each mark in its own column, so rows line up), then the
/// error's name, or, without an error, the first anomaly's or warning's code.
pub(super) fn kinvey_cell(kinvey: &KinveySummary) -> Line<'static> {
    let flagged = if kinvey.anomalies.is_empty() {
        " "
    } else {
        "⚑"
    };
    let warned = if kinvey.warnings.is_empty() {
        " "
    } else {
        "⚠"
    };
    let Some(text) = kinvey_cell_text(kinvey) else {
        return Line::raw("");
    };
    let (badge, text, style) = match kinvey.badge() {
        Some(badge) if kinvey.error.is_some() => {
            let style = badge_style(&badge);
            (badge, text.to_owned(), style)
        }
        // An anomaly's or warning's code: `retry_without_backoff` read as words.
        _ => (
            String::new(),
            text.replace('_', " "),
            Style::new().fg(Color::DarkGray),
        ),
    };
    Line::from(vec![
        Span::styled(format!("{badge:<6} "), style),
        Span::styled(flagged, Style::new().fg(Color::Yellow)),
        Span::styled(warned, Style::new().fg(Color::Red)),
        Span::raw(" "),
        Span::raw(text),
    ])
}

/// [`kinvey_cell`] in `width` columns: a name that does not fit ends in `…`, so that a
/// cut one is not taken for another (`KinveyInternalErrorRetry` and `…Stop` cut alike).
fn kinvey_cell_within(kinvey: &KinveySummary, width: u16) -> Line<'static> {
    let mut cell = kinvey_cell(kinvey);
    let width = usize::from(width);
    if cell.width() <= width {
        return cell;
    }
    if let Some(text) = cell.spans.last_mut() {
        let room = width.saturating_sub(KINVEY_MARKS_WIDTH);
        text.content = cut_with_ellipsis(&text.content, room).into();
    }
    cell
}

/// Columns of a KINVEY cell before its text: the badge (6) and a space, two marks and a
/// space.
const KINVEY_MARKS_WIDTH: usize = 10;

/// A column of the flow list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    Id,
    Time,
    Method,
    Host,
    Path,
    Status,
    Type,
    Size,
    Duration,
    Kinvey,
}

impl Column {
    const ALL: [Column; 10] = [
        Column::Id,
        Column::Time,
        Column::Method,
        Column::Host,
        Column::Path,
        Column::Status,
        Column::Type,
        Column::Size,
        Column::Duration,
        Column::Kinvey,
    ];

    /// Left out first, in this order, when the terminal is too narrow for every column.
    const DROPPED_FIRST: [Column; 6] = [
        Column::Type,
        Column::Duration,
        Column::Time,
        Column::Size,
        Column::Host,
        Column::Id,
    ];

    fn title(self) -> &'static str {
        match self {
            Column::Id => "ID",
            Column::Time => "TIME",
            Column::Method => "METHOD",
            Column::Host => "HOST",
            Column::Path => "PATH",
            Column::Status => "STATUS",
            Column::Type => "TYPE",
            Column::Size => "SIZE",
            Column::Duration => "DUR",
            Column::Kinvey => "KINVEY",
        }
    }

    /// Its width when ids have `id_digits` digits; the path's is the least it gets (it
    /// takes what the others leave).
    fn width(self, id_digits: u16) -> u16 {
        match self {
            Column::Id => id_digits.max(2),
            Column::Time => 12,
            // CONNECT, OPTIONS
            Column::Method => 7,
            Column::Host => 16,
            Column::Path => 24,
            Column::Status => 7,
            Column::Type => 4,
            // `99.9 KiB`, `999 KiB`
            Column::Size => 8,
            // `999ms`, `59.9s`, `59m59s`
            Column::Duration => 6,
            // Badge and marks (10), and the longest error name in the dictionary
            // (IndirectCollectionAccessDisallowed, 34).
            Column::Kinvey => 44,
        }
    }
}

/// Columns of the KINVEY column's width given up before any other column is left out.
const KINVEY_GIVES_FIRST: u16 = 12;

/// The columns shown in `width` terminal columns when ids have `id_digits` digits and the
/// widest KINVEY cell takes `kinvey_cells`, with the KINVEY column's width and the least
/// the path gets: the least useful columns are left out rather than every column cut to
/// nonsense.
fn list_columns(width: u16, id_digits: u16, kinvey_cells: u16) -> (Vec<Column>, u16, u16) {
    // The KINVEY column is as wide as its widest cell (its title's width when no flow
    // has one: plain traffic leaves the room to the others).
    let full = Column::Kinvey
        .width(id_digits)
        .min(kinvey_cells.max(Column::Kinvey.title().len() as u16));
    // Each column is followed by one column of spacing.
    let needed = |shown: &[Column]| {
        shown
            .iter()
            .map(|&c| match c {
                Column::Kinvey => full + 1,
                c => c.width(id_digits) + 1,
            })
            .sum::<u16>()
    };
    let mut shown = Column::ALL.to_vec();
    // TYPE and DUR go before an error name is cut; then the KINVEY column gives up the
    // room only the longest names need (most are under 22 characters), then the other
    // columns go, then it narrows further.
    for dropped in [Column::Type, Column::Duration] {
        if needed(&shown) > width {
            shown.retain(|c| *c != dropped);
        }
    }
    let given = needed(&shown)
        .saturating_sub(width)
        .min(KINVEY_GIVES_FIRST)
        .min(full.saturating_sub(12));
    for dropped in Column::DROPPED_FIRST {
        if needed(&shown) - given <= width {
            break;
        }
        shown.retain(|c| *c != dropped);
    }
    let short = needed(&shown).saturating_sub(width);
    let kinvey = full.saturating_sub(short).max(full.min(12));
    // Narrower still (a phone's terminal): the path gives way before STATUS is cut.
    let still_short = short - (full - kinvey);
    let path = Column::Path
        .width(id_digits)
        .saturating_sub(still_short)
        .max(MIN_PATH);
    (shown, kinvey, path)
}

/// The least of the path shown, however narrow the terminal.
const MIN_PATH: u16 = 8;

fn draw_list(frame: &mut Frame<'_>, area: Rect, app: &App) {
    let page = usize::from(area.height.saturating_sub(1)).max(1);
    let offset = super::state::list_top(app.top, app.selected, app.view.len(), page);
    let id_digits = app.largest_id.to_string().len() as u16;
    let kinvey_cells = u16::try_from(app.kinvey_cell_width).unwrap_or(u16::MAX);
    let (columns, kinvey_width, path_width) = list_columns(area.width, id_digits, kinvey_cells);
    let header = Row::new(columns.iter().map(|c| c.title()))
        .style(Style::new().add_modifier(Modifier::BOLD));
    let rows = app
        .view
        .iter()
        .enumerate()
        .skip(offset)
        .take(page)
        .map(|(position, &index)| {
            let StoredFlow { flow, kinvey } = &*app.flows[index];
            let style = if position == app.selected {
                status_style(flow).add_modifier(Modifier::REVERSED)
            } else {
                status_style(flow)
            };
            let cell = |column: Column| match column {
                Column::Id => Cell::from(flow.id.to_string()),
                Column::Time => Cell::from(clock(flow.started_at)),
                Column::Method => Cell::from(flow.request.method.clone()),
                Column::Host => Cell::from(shown_host(flow)),
                Column::Path => Cell::from(match flow.replay_of {
                    // Sent again from the UI: marked as mitmproxy marks a replay.
                    Some(_) => format!("↻ {}", path_of(flow)),
                    None => path_of(flow).to_owned(),
                }),
                Column::Status => Cell::from(status_cell(flow)),
                Column::Type => Cell::from(short_type(flow)),
                Column::Size => Cell::from(
                    HumanSize(flow.response.as_ref().map_or(0, |r| r.body.wire_size)).to_string(),
                ),
                Column::Duration => Cell::from(match app.is_in_flight(flow.id) {
                    // Still running: for as long as it has been.
                    true => short_duration(
                        app.clock
                            .duration_since(flow.started_at)
                            .unwrap_or_default(),
                    ),
                    false => short_duration(flow.duration()),
                }),
                Column::Kinvey => Cell::from(kinvey_cell_within(kinvey, kinvey_width)),
            };
            Row::new(columns.iter().map(|&c| cell(c))).style(style)
        });
    // The path takes what the other columns leave.
    let widths = columns.iter().map(|&c| match c {
        Column::Path => Constraint::Min(path_width),
        Column::Kinvey => Constraint::Length(kinvey_width),
        _ => Constraint::Length(c.width(id_digits)),
    });
    frame.render_widget(Table::new(rows, widths).header(header), area);
}

/// A flow's STATUS cell: the status, what failed, or `...` while under way.
fn status_cell(flow: &Flow) -> String {
    match (&flow.response, &flow.error) {
        // The origin's answer, then a failure (a body or a WebSocket that broke off).
        (Some(r), Some(_)) if !r.from_proxy => format!("{} err", r.status),
        (_, Some(e)) => status_label(e.kind).to_owned(),
        (Some(r), None) => r.status.to_string(),
        (None, None) => "...".to_owned(),
    }
}

/// A failed flow's error kind in the STATUS column's seven characters.
fn status_label(kind: crate::flow::FlowErrorKind) -> &'static str {
    use crate::flow::FlowErrorKind as Kind;
    match kind {
        Kind::Protocol => "proto",
        Kind::ClientAbort => "aborted",
        Kind::ClientTls => "cli-tls",
        Kind::BadRequest => "bad-req",
        other => other.as_str(),
    }
}

/// A duration in at most six characters: `999ms`, `9.99s`, `59.9s`, `59m59s`, `99h59m`,
/// `100h`, up to `99999h` (eleven years).
fn short_duration(d: std::time::Duration) -> String {
    let ms = d.as_millis();
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..10_000 => format!("{}.{:02}s", ms / 1000, ms % 1000 / 10),
        10_000..60_000 => format!("{}.{}s", ms / 1000, ms % 1000 / 100),
        60_000..3_600_000 => format!("{}m{:02}s", ms / 60_000, ms % 60_000 / 1000),
        3_600_000..360_000_000 => format!("{}h{:02}m", ms / 3_600_000, ms % 3_600_000 / 60_000),
        _ => format!("{}h", ms / 3_600_000),
    }
}

fn header_lines(lines: &mut Vec<String>, headers: &crate::flow::Headers) {
    lines.extend(
        headers
            .iter()
            .map(|h| format!("{}: {}", h.name, h.value_lossy())),
    );
}

/// True for a flow whose connection was relayed after its head (a tunnel, a switched
/// protocol such as a WebSocket): its "bodies" are the bytes relayed, never kept.
fn is_relayed(flow: &Flow) -> bool {
    flow.kind == crate::flow::FlowKind::Tunnel || flow.status() == Some(101)
}

fn relayed_line(bytes: u64, from: &str) -> String {
    format!(
        "({} relayed {from}; a relayed connection's bytes are not kept as a body)",
        HumanSize(bytes)
    )
}

/// The fields of a query string or form body, decoded, as a section under `title` with
/// the names aligned; nothing when there are none.
fn field_lines(
    lines: &mut Vec<String>,
    title: &str,
    fields: impl Iterator<Item = (String, String)>,
) {
    let fields: Vec<(String, String)> = fields
        .map(|(name, value)| (printable_line(&name).into(), printable_line(&value).into()))
        .collect();
    if fields.is_empty() {
        return;
    }
    let width = fields
        .iter()
        .map(|(name, _)| name.chars().count())
        .max()
        .unwrap_or(0)
        .min(MAX_ALIGNED_NAME);
    lines.push(String::new());
    lines.push(title.to_owned());
    lines.extend(
        fields
            .iter()
            .map(|(name, value)| format!("  {name:<width$}  {value}")),
    );
}

/// Field names longer than this are not padded to: values start past them.
const MAX_ALIGNED_NAME: usize = 24;

fn millis(d: Option<std::time::Duration>) -> String {
    d.map_or_else(
        || "-".to_owned(),
        |d| format!("{:.3} ms", d.as_secs_f64() * 1000.0),
    )
}

/// Where the text of a labelled line starts (see [`labelled_lines`]): a label of at
/// most 12 columns and a space.
pub const LABEL_COLUMN: usize = 13;

/// `text` under `label`, a line of its own for each of its lines (a Business Logic stack
/// trace in `debug`), indented under the first; tabs as spaces. Laid out, the rows of a
/// long one hang under its text ([`LABEL_COLUMN`]).
fn labelled_lines(lines: &mut Vec<String>, label: &str, text: &str) {
    for (i, line) in text.lines().enumerate() {
        let label = if i == 0 { label } else { "" };
        lines.push(format!("{label:<12} {}", line.replace('\t', "    ")));
    }
    if text.lines().next().is_none() {
        lines.push(format!("{label:<12} "));
    }
}

/// True for an HTTP/1 request whose head gives its body no length: it has none.
fn declares_no_body(request: &crate::flow::RequestRecord) -> bool {
    request.version != crate::flow::HttpVersion::Http2
        && request.headers.get("transfer-encoding").is_none()
        && request
            .headers
            .get("content-length")
            .is_none_or(|length| length.trim() == "0")
}

/// The text of one detail tab of a fully loaded flow.
pub fn detail_lines(stored: &StoredFlow, tab: Tab, view: BodyView) -> Vec<String> {
    let flow = &stored.flow;
    let mut lines = Vec::new();
    // Neither a response nor an error: listed while under way, as it started.
    let under_way = flow.response.is_none() && flow.error.is_none();
    const UNDER_WAY: &str = "(under way: shown once the exchange ends)";
    match tab {
        Tab::Request => {
            let request = &flow.request;
            lines.push(format!(
                "{} {} {}",
                request.method,
                request.url,
                request.version.as_str()
            ));
            if let Some(original) = flow.replay_of {
                lines.push(format!(
                    "(↻ flow {original}'s request, sent again from kinspect)"
                ));
            }
            header_lines(&mut lines, &request.headers);
            field_lines(
                &mut lines,
                "Query (decoded)",
                form_fields(query_of(&request.url)),
            );
            if let Some(fields) = form_body_fields(&request.body, &request.headers) {
                let title = match request.body.truncated {
                    true => "Form (decoded; cut at --max-body, its last field left out)",
                    false => "Form (decoded)",
                };
                field_lines(&mut lines, title, fields.into_iter());
            }
            lines.push(String::new());
            match under_way {
                // HTTP/1 says whether a request has a body in its head (RFC 9112 §6.3).
                true if declares_no_body(request) => lines.push("(no body)".into()),
                true => lines.push(format!("body {UNDER_WAY}")),
                false if is_relayed(flow) => {
                    lines.push(relayed_line(request.body.wire_size, "from the client"))
                }
                false => lines.extend(body_lines(&request.body, &request.headers, view)),
            }
        }
        Tab::Response => {
            // What went wrong, where it is looked for first (Timing & TLS says it too).
            if let Some(error) = &flow.error {
                lines.push(error_line(error));
                lines.push(String::new());
            }
            match &flow.response {
                Some(response) => {
                    let by = if response.from_proxy {
                        "  (made by kinspect)"
                    } else {
                        ""
                    };
                    let reason = http::StatusCode::from_u16(response.status)
                        .ok()
                        .and_then(|s| s.canonical_reason())
                        .map(|r| format!(" {r}"))
                        .unwrap_or_default();
                    lines.push(format!(
                        "{} {}{reason}{by}",
                        response.version.as_str(),
                        response.status
                    ));
                    header_lines(&mut lines, &response.headers);
                    lines.push(String::new());
                    match is_relayed(flow) {
                        true => {
                            lines.push(relayed_line(response.body.wire_size, "from the server"))
                        }
                        false => lines.extend(body_lines(&response.body, &response.headers, view)),
                    }
                    if let Some(log) = &flow.websocket {
                        lines.push(String::new());
                        lines.extend(super::messages::message_lines(log, view));
                    }
                }
                None if under_way => lines.push(format!("no response yet {UNDER_WAY}")),
                None => lines.push("(no response)".into()),
            }
        }
        Tab::Kinvey => {
            let analysis = kinvey::analyze(flow);
            lines.push(format!(
                "Request ID   {}",
                analysis.request_id.as_deref().unwrap_or("(none)")
            ));
            lines.push(format!(
                "API version  {}",
                analysis.api_version.as_deref().unwrap_or("(not sent)")
            ));
            if !analysis.is_kinvey() {
                lines.push(String::new());
                lines.push(
                    "Not a Kinvey exchange: no X-Kinvey-Request-ID and no Kinvey error body."
                        .into(),
                );
            }
            let primary = analysis.listed_error(&stored.kinvey);
            for error in &analysis.errors {
                lines.push(String::new());
                let at = error
                    .index
                    .map(|i| format!(" (batch element {i})"))
                    .unwrap_or_default();
                // The one the flow is listed by; a batch's other elements in their order.
                let heading = match primary.is_some_and(|p| std::ptr::eq(p, error)) {
                    true => "Error",
                    false => "Also",
                };
                lines.push(format!(
                    "{heading:<12} {} {}{at}",
                    error.badge(),
                    error.trimmed_name()
                ));
                lines.push(format!("Status       {}", error.status));
                labelled_lines(
                    &mut lines,
                    "Description",
                    error.description.as_deref().unwrap_or("(none)"),
                );
                labelled_lines(
                    &mut lines,
                    "Debug",
                    error.debug.as_deref().unwrap_or("(none)"),
                );
                lines.push(format!("What to do   {}", error.next_step()));
                lines.push(format!("In kinspect  {}", keys_for(error.class)));
            }
            if !analysis.anomalies.is_empty() {
                lines.push(String::new());
                lines.push("Anomalies".into());
                lines.extend(
                    analysis
                        .anomalies
                        .iter()
                        .map(|a| format!("  ⚑ {}", a.message())),
                );
            }
            if !stored.kinvey.warnings.is_empty() {
                lines.push(String::new());
                lines.push("Client behaviour".into());
                lines.extend(
                    stored
                        .kinvey
                        .warnings
                        .iter()
                        .map(|w| format!("  ⚠ {}", w.message)),
                );
            }
        }
        Tab::Timing => {
            let t = &flow.timings;
            lines.push(format!(
                "Started      {}",
                crate::flow::utc_timestamp(flow.started_at)
            ));
            if under_way {
                lines.push(format!("Timings      {UNDER_WAY}"));
            } else {
                lines.push(format!("Blocked      {}", millis(t.blocked)));
                lines.push(format!("DNS          {}", millis(t.dns)));
                lines.push(format!("Connect      {}", millis(t.connect)));
                lines.push(format!("  of it TLS  {}", millis(t.ssl)));
                lines.push(format!("Send         {}", millis(Some(t.send))));
                lines.push(format!("Wait         {}", millis(Some(t.wait))));
                lines.push(format!("Receive      {}", millis(Some(t.receive))));
                lines.push(format!("Total        {}", millis(Some(t.total()))));
            }
            lines.push(String::new());
            lines.push(format!("Client       {}", ShownClient(flow.client_known())));
            lines.push(format!(
                "Server       {}:{}{}",
                flow.host,
                flow.port,
                flow.server_ip
                    .map(|ip| format!(" ({ip})"))
                    .unwrap_or_default()
            ));
            for (label, tls) in [
                ("Client TLS", &flow.client_tls),
                ("Server TLS", &flow.server_tls),
            ] {
                lines.push(match tls {
                    Some(tls) => format!(
                        "{label:<12} {} ALPN {} SNI {}",
                        tls.version.as_deref().unwrap_or("?"),
                        tls.alpn.as_deref().unwrap_or("-"),
                        tls.sni.as_deref().unwrap_or("-")
                    ),
                    None => format!("{label:<12} (none)"),
                });
            }
            if let Some(error) = &flow.error {
                lines.push(String::new());
                lines.push(error_line(error));
            }
        }
    }
    lines
}

/// A flow's error as its detail shows it.
fn error_line(error: &crate::flow::FlowError) -> String {
    format!("Error        [{}] {}", error.kind.as_str(), error.message)
}

impl Detail {
    /// The text of the tab shown, laid out `width` columns wide (none before the flow
    /// is loaded). A tab's lines are made once per flow, tab and body view, and laid out
    /// once per width: decoding and indenting a body of megabytes for every key and
    /// every frame took a tenth of a second each.
    pub fn text(&self, width: usize) -> Arc<LaidOutText> {
        let shown = (self.tab, self.body_view);
        self.text_cache.laid_out(shown, width, || {
            self.flow().map_or_else(Vec::new, |flow| {
                detail_lines(flow, self.tab, self.body_view)
            })
        })
    }
}

/// The keys that do what a Kinvey error of `class` asks for.
fn keys_for(class: ErrorClass) -> &'static str {
    match class {
        ErrorClass::Retry => "R sends the request again (while kinspect is proxying)",
        ErrorClass::Fix => {
            "e changes the request in your editor, then sends it (while kinspect is proxying)"
        }
        ErrorClass::Stop => "r makes the report to send to Kinvey support",
    }
}

/// The help screen's lines for a screen `width` columns wide: descriptions wrapped
/// between words, their further lines under the description column.
pub fn help_lines(width: usize) -> Vec<String> {
    const KEYS: &[(&str, &str)] = &[
        ("j k ↓ ↑", "move / scroll"),
        ("g G", "first / last"),
        ("PgUp PgDn", "a page up / down"),
        ("Enter", "open the flow's detail"),
        (
            "Tab ← → 1-4",
            "detail tabs: Request, Response, Kinvey, Timing & TLS",
        ),
        ("/ n N", "search in the detail, next / previous match"),
        (
            "v",
            "in the detail: bodies pretty (JSON indented), as text as sent, or in hex",
        ),
        (
            "w",
            "in the detail: save the body shown (Request tab: the request's) to a file",
        ),
        (
            "c",
            "in the detail: copy the request as a curl command to the clipboard",
        ),
        (
            "] [",
            "in the detail: the next / previous flow, on the same tab",
        ),
        ("f", "filter the list (empty to clear; / in the list too)"),
        ("F", "follow new flows on / off"),
        ("i", "jump to a request id (whole or a prefix)"),
        (
            "K",
            "Kinvey errors in the view, by name and class; Enter lists them",
        ),
        ("r", "support report of the flow (redacted)"),
        (
            "R",
            "send the flow's request again through the proxy (a new flow)",
        ),
        (
            "e",
            "change the flow's request in $VISUAL / $EDITOR, then send it (a new flow)",
        ),
        (
            "E",
            "export the view as a redacted HAR file (current directory)",
        ),
        ("z", "clear the view (the capture keeps everything)"),
        ("?", "this help"),
        (
            "q Esc / Q Ctrl-C",
            "back (q in the list: quit, asked first while proxying) / quit at once",
        ),
        (
            "← → Home End",
            "in a prompt: move the cursor (also Ctrl-A, Ctrl-E)",
        ),
        (
            "Ctrl-W Ctrl-U Ctrl-K",
            "in a prompt: delete the word before the cursor / all before it / all from it",
        ),
    ];
    const BADGES: &[(&str, &str)] = &[
        ("RETRY", "transient: re-send with backoff"),
        (
            "FIX",
            "change the request (or config / Business Logic), then re-send",
        ),
        (
            "STOP",
            "permanent: do not re-send; contact support with the request ID",
        ),
        (
            "?RETRY ?FIX ?STOP",
            "name not in Kinvey's dictionary; classed by status",
        ),
        ("⚑ ⚠", "Kinvey anomaly; client-behaviour warning"),
    ];
    let mut lines = Vec::new();
    let section = |title: &str, entries: &[(&str, &str)], lines: &mut Vec<String>| {
        if !lines.is_empty() {
            lines.push(String::new());
        }
        lines.extend(wrap_words(title, width));
        for (key, meaning) in entries {
            let first = format!("  {key:<20} ");
            let indent = " ".repeat(first.chars().count());
            let mut wrapped = wrap_words(meaning, width.saturating_sub(indent.len()));
            if wrapped.is_empty() {
                wrapped.push(String::new());
            }
            for (i, part) in wrapped.into_iter().enumerate() {
                let lead = if i == 0 {
                    first.as_str()
                } else {
                    indent.as_str()
                };
                lines.push(format!("{lead}{part}").trim_end().to_owned());
            }
        }
    };
    section("Keys", KEYS, &mut lines);
    section("Badges", BADGES, &mut lines);
    section(
        "Filter expressions (mitmproxy's syntax; ! before &, & before |; a bare word is ~u)",
        crate::filter::OPERATORS,
        &mut lines,
    );
    lines
}

/// `text` broken between words into lines of at most `width` cells (at least 10; a
/// longer word stands alone), runs of spaces folded: for the help and prompts, which
/// indent what follows. Text views wrap their lines as they are (`text::row_ends`).
fn wrap_words(text: &str, width: usize) -> Vec<String> {
    use unicode_width::UnicodeWidthStr;
    let width = width.max(10);
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        if !line.is_empty() && line.width() + 1 + word.width() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinvey::Finding;

    fn text(line: &Line<'_>) -> String {
        line.spans.iter().map(|s| s.content.as_ref()).collect()
    }

    #[test]
    fn key_hints_that_do_not_fit_are_left_out_whole() {
        let hints = ["Enter details", "f filter", "z clear"];
        assert_eq!(
            hints_within(hints.iter(), 80),
            "Enter details  f filter  z clear"
        );
        assert_eq!(hints_within(hints.iter(), 30), "Enter details  f filter");
        assert_eq!(hints_within(hints.iter(), 5), "");
    }

    #[test]
    fn the_status_bar_keeps_help_in_sight_at_any_width() {
        use unicode_width::UnicodeWidthStr;
        let mut app = App::new(crate::tui::state::SourceInfo {
            listen: Some("127.0.0.1:8080".parse().unwrap()),
            capture: "/home/ada/.kinspect/captures/2026-11-25T00-06-02Z.db".into(),
            ca: Some("/home/ada/.kinspect/kinspect-ca.pem".into()),
            ..Default::default()
        });
        app.filter = Some(crate::filter::Filter::parse("~k & !~u simulate & ~c 5xx").unwrap());
        for width in [60, 80, 100, 120, 160, 240] {
            let line = status_line(&app, width);
            let shown: String = line
                .chars()
                .scan(0, |used, c| {
                    *used += unicode_width::UnicodeWidthChar::width(c).unwrap_or(0);
                    (*used <= width).then_some(c)
                })
                .collect();
            assert!(shown.contains("? help"), "{width}: {line}");
            if line.width() <= width {
                assert!(line.ends_with("? help"), "{width}: {line}");
            }
        }
        assert!(status_line(&app, 240).contains("/home/ada/.kinspect/captures/"));
        // Narrow: the filter is cut before the proxy's address goes past the edge.
        let narrow = status_line(&app, 100);
        let proxy = narrow.find("proxy http://127.0.0.1:8080 ").unwrap();
        assert!(narrow[..proxy].contains("filter ~k & !~u…"), "{narrow}");
        assert!(narrow[..proxy].width() + 27 <= 100, "{narrow}");
    }

    #[test]
    fn the_list_shows_ports_that_are_not_the_schemes_and_short_media_types() {
        let client = "127.0.0.1:5000".parse().unwrap();
        let flow = |url: &str, content_type: &str| {
            let mut flow = Flow::exchange(1, client, "GET", url, Some(200));
            if let Some(response) = flow.response.as_mut() {
                response.headers = [("Content-Type", content_type)].into_iter().collect();
            }
            flow
        };
        let hosts = [
            ("https://baas.kinvey.com/a", "baas.kinvey.com"),
            ("http://127.0.0.1:18081/a", "127.0.0.1:18081"),
            ("https://127.0.0.1:18444/a", "127.0.0.1:18444"),
            ("http://[::1]:8080/a", "[::1]:8080"),
            ("http://localhost/a", "localhost"),
        ];
        for (url, shown) in hosts {
            assert_eq!(shown_host(&flow(url, "")), shown, "{url}");
        }
        let types = [
            ("application/json; charset=utf-8", "json"),
            ("text/plain", "text"),
            ("application/octet-stream", "bin"),
            ("application/vnd.kinvey+json", "json"),
            ("image/svg+xml", "svg"),
            ("text/html", "html"),
            ("application/x-www-form-urlencoded", "form"),
            ("font/woff2", "font"),
            ("application/x-shockwave-flash", "shoc"),
            ("", ""),
        ];
        for (content_type, shown) in types {
            let f = flow("https://baas.kinvey.com/a", content_type);
            assert_eq!(short_type(&f), shown, "{content_type}");
        }
    }

    #[test]
    fn the_help_wraps_between_words_under_its_description_column() {
        for width in [60, 80, 120] {
            for line in help_lines(width) {
                assert!(
                    unicode_width::UnicodeWidthStr::width(line.as_str()) <= width,
                    "{width}: {line:?}"
                );
            }
        }
        let narrow = help_lines(60);
        let at = narrow.iter().position(|l| l.starts_with("  K ")).unwrap();
        assert_eq!(
            &narrow[at..at + 2],
            [
                "  K                    Kinvey errors in the view, by name",
                "                       and class; Enter lists them",
            ]
        );
        assert!(
            narrow.contains(&"Badges".to_owned()),
            "headings at the margin"
        );
    }

    #[test]
    fn a_filter_error_wraps_its_message_and_keeps_the_caret_under_the_input() {
        let error =
            "column 4: unknown operator ~zz; the operators are ~m ~u ~d ~c ~h ~b\n~k ~zz\n   ^";
        assert_eq!(
            error_lines(error, 40),
            [
                "column 4: unknown operator ~zz; the",
                "operators are ~m ~u ~d ~c ~h ~b",
                "~k ~zz",
                "   ^"
            ]
        );
    }

    #[test]
    fn a_long_prompt_keeps_its_cursor_in_view() {
        assert_eq!(prompt_window("~c 5", "xx", 20), "~c 5▏xx");
        // The end cut off after the cursor...
        assert_eq!(prompt_window("~k ", "& ~c 5xx", 8), "~k ▏& ~…");
        // ...or the start before it, the cursor at the right edge.
        assert_eq!(prompt_window("word01 word02", "", 8), "…word02▏");
        // Two cells for a wide character; an accent stays with its letter.
        assert_eq!(prompt_window("日本日本", "", 6), "…日本▏");
        assert_eq!(prompt_window("abcde\u{301}", "", 4), "…de\u{301}▏");
        assert_eq!(prompt_window("", "", 0), "▏");
    }

    #[test]
    fn text_scrolled_into_a_wrapped_line_starts_at_that_row() {
        let text = LaidOutText::new(vec!["a".repeat(10), "b".into(), String::new()], 4);
        assert_eq!(
            (text.starts.as_slice(), text.rows),
            ([0, 3, 4].as_slice(), 5)
        );
        let shown = |scroll: usize, height: u16| {
            let backend = ratatui::backend::TestBackend::new(4, height);
            let mut terminal = ratatui::Terminal::new(backend).unwrap();
            terminal
                .draw(|f| draw_text(f, f.area(), &text, scroll, Some("b")))
                .unwrap();
            let buffer = terminal.backend().buffer().clone();
            (0..height)
                .map(|y| (0..4).map(|x| buffer[(x, y)].symbol()).collect::<String>())
                .collect::<Vec<_>>()
        };
        assert_eq!(shown(1, 3), ["aaaa", "aa  ", "b   "]);
        assert_eq!(shown(0, 2), ["aaaa", "aaaa"]);
        // Never past the last screenful.
        assert_eq!(shown(9, 2), ["b   ", "    "]);
        assert_eq!(shown(0, 9)[..5], ["aaaa", "aaaa", "aa  ", "b   ", "    "]);
    }

    #[test]
    fn a_detail_lays_its_text_out_once_per_flow_tab_and_width() {
        use crate::tui::state::Detail;
        let client = "127.0.0.1:5000".parse().unwrap();
        let flow = crate::flow::Flow::exchange(1, client, "GET", "http://a.test/", Some(200));
        let stored = StoredFlow {
            flow,
            kinvey: KinveySummary::default(),
        };
        let mut detail = Detail::new(1, None, Tab::Request, None);
        assert!(detail.text(80).lines.is_empty(), "nothing before the flow");
        detail.set_flow(Box::new(stored.clone()));
        let first = detail.text(80);
        assert_eq!(
            *first.lines,
            detail_lines(&stored, Tab::Request, BodyView::Pretty)
        );
        assert!(Arc::ptr_eq(&first, &detail.text(80)), "kept");
        let narrow = detail.text(40);
        assert_eq!(narrow.width, 40, "laid out again for a new width");
        assert!(
            Arc::ptr_eq(&first.lines, &narrow.lines),
            "from the same lines"
        );
        detail.tab = Tab::Timing;
        assert_eq!(
            *detail.text(40).lines,
            detail_lines(&stored, Tab::Timing, BodyView::Pretty)
        );
        detail.tab = Tab::Request;
        assert!(
            Arc::ptr_eq(&first.lines, &detail.text(40).lines),
            "made once per tab"
        );
        let mut finished = stored.clone();
        finished.flow.response.as_mut().unwrap().status = 503;
        detail.tab = Tab::Response;
        let before = detail.text(40);
        detail.set_flow(Box::new(finished));
        assert!(before.lines[0].ends_with("200 OK"), "{:?}", before.lines);
        assert!(detail.text(40).lines[0].ends_with("503 Service Unavailable"));
    }

    #[test]
    fn the_list_fills_a_page_that_grew_and_keeps_the_selection_in_one_that_shrank() {
        // 26 flows, the top row at 11 on a page of 15 rows (the last rows, 11 to 25).
        assert_eq!(crate::tui::state::list_top(11, 13, 26, 15), 11);
        // Grown to 40 rows: every flow fits.
        assert_eq!(crate::tui::state::list_top(11, 13, 26, 40), 0);
        // Shrunk to 2 rows below the selection: it stays in view.
        assert_eq!(crate::tui::state::list_top(11, 13, 26, 2), 12);
        assert_eq!(crate::tui::state::list_top(0, 0, 0, 10), 0);
    }

    #[test]
    fn an_answer_that_broke_off_is_marked_in_the_status_column() {
        let client = "127.0.0.1:5000".parse().unwrap();
        let mut flow = Flow::exchange(1, client, "GET", "https://a.test/ws", None);
        assert_eq!(status_cell(&flow), "...");
        flow.response = Some(crate::flow::ResponseRecord {
            status: 101,
            version: crate::flow::HttpVersion::Http11,
            headers: Default::default(),
            body: Default::default(),
            from_proxy: false,
        });
        assert_eq!(status_cell(&flow), "101");
        flow.error = Some(crate::flow::FlowError {
            kind: crate::flow::FlowErrorKind::Protocol,
            message: "the switched connection broke".into(),
        });
        assert_eq!(status_cell(&flow), "101 err");
        assert!(status_cell(&flow).len() <= usize::from(Column::Status.width(2)));
    }

    #[test]
    fn the_response_tab_says_what_went_wrong_first() {
        let client = "127.0.0.1:5000".parse().unwrap();
        let mut flow = Flow::exchange(1, client, "GET", "https://a.test/", None);
        flow.error = Some(crate::flow::FlowError {
            kind: crate::flow::FlowErrorKind::ClientTls,
            message: "the client rejected kinspect's certificate".into(),
        });
        let stored = StoredFlow {
            flow,
            kinvey: KinveySummary::default(),
        };
        let lines = detail_lines(&stored, Tab::Response, BodyView::Pretty);
        assert_eq!(
            lines,
            [
                "Error        [client_tls] the client rejected kinspect's certificate",
                "",
                "(no response)"
            ]
        );
    }

    #[test]
    fn the_request_tab_lists_query_and_form_fields_decoded() {
        let client = "127.0.0.1:5000".parse().unwrap();
        let url = "http://a.test/p?q=a%20b&flag&long_parameter_name=1+2&nl=x%0Ay#frag";
        let mut flow = crate::flow::Flow::exchange(1, client, "POST", url, Some(200));
        let mut map = http::HeaderMap::new();
        map.insert(
            "content-type",
            "application/x-www-form-urlencoded; charset=utf-8"
                .parse()
                .unwrap(),
        );
        flow.request.headers = crate::flow::Headers::from_map(&map);
        flow.request.body = crate::flow::CapturedBody::whole(&b"user=ann&password=s%3Dcret"[..]);
        let mut stored = StoredFlow {
            flow,
            kinvey: KinveySummary::default(),
        };
        let lines = detail_lines(&stored, Tab::Request, BodyView::Pretty);
        let at = |text: &str| lines.iter().position(|l| l == text);
        let query = at("Query (decoded)").expect("a query section");
        assert_eq!(
            lines[query + 1..query + 5],
            [
                "  q                    a b",
                "  flag                 ",
                "  long_parameter_name  1 2",
                "  nl                   x\\u{a}y",
            ]
        );
        let form = at("Form (decoded)").expect("a form section");
        assert_eq!(
            lines[form + 1..form + 3],
            ["  user      ann", "  password  s=cret"]
        );
        assert!(
            form > query && at("user=ann&password=s%3Dcret") > Some(form),
            "{lines:?}"
        );
        // A form in another charset than UTF-8: escaped and raw bytes alike.
        let mut latin1 = stored.clone();
        let mut map = http::HeaderMap::new();
        map.insert(
            "content-type",
            "application/x-www-form-urlencoded; charset=ISO-8859-1"
                .parse()
                .unwrap(),
        );
        latin1.flow.request.headers = crate::flow::Headers::from_map(&map);
        latin1.flow.request.body =
            crate::flow::CapturedBody::whole(&b"name=caf%E9&raw=\xe9t\xe9"[..]);
        let lines = detail_lines(&latin1, Tab::Request, BodyView::Pretty);
        let form = lines.iter().position(|l| l == "Form (decoded)").unwrap();
        assert_eq!(lines[form + 1..form + 3], ["  name  café", "  raw   été"]);
        let entry = crate::har::har_entry(&latin1, Default::default(), &mut 0);
        assert_eq!(entry["request"]["postData"]["params"][1]["value"], "été");
        // A form cut at --max-body leaves its last field out: it may be cut too.
        stored.flow.request.body.truncated = true;
        stored.flow.request.body.bytes = "user=ann&password=s%3Dcr".into();
        let lines = detail_lines(&stored, Tab::Request, BodyView::Pretty);
        let form = lines
            .iter()
            .position(|l| l.starts_with("Form (decoded; cut"))
            .unwrap();
        assert_eq!(lines[form + 1], "  user  ann");
        assert!(!lines[form + 2].contains("password"), "{lines:?}");
        // A body of another type has no form section; a URL without a query no query.
        stored.flow.request.url = "http://a.test/p".into();
        stored.flow.request.headers = crate::flow::Headers::default();
        let lines = detail_lines(&stored, Tab::Request, BodyView::Pretty);
        assert!(!lines.iter().any(|l| l.contains("(decoded)")), "{lines:?}");
    }

    #[test]
    fn a_flow_under_way_says_so_instead_of_no_body_and_zero_timings() {
        let client = "127.0.0.1:5000".parse().unwrap();
        let mut flow = crate::flow::Flow::exchange(1, client, "POST", "http://a.test/", None);
        flow.request.headers = [("Content-Length", "5")].into_iter().collect();
        let mut stored = StoredFlow {
            flow,
            kinvey: KinveySummary::default(),
        };
        for tab in Tab::ALL {
            let lines = detail_lines(&stored, tab, BodyView::Pretty);
            if tab != Tab::Kinvey {
                assert!(
                    lines.iter().any(|l| l.contains("under way")),
                    "{tab:?}: {lines:?}"
                );
            }
            assert!(!lines.iter().any(|l| l.contains("(no body)")), "{lines:?}");
        }
        // An HTTP/1.1 head with no length has no body, under way or not; over HTTP/2
        // only the stream's end tells.
        stored.flow.request.headers = Default::default();
        let lines = detail_lines(&stored, Tab::Request, BodyView::Pretty);
        assert_eq!(lines.last().map(String::as_str), Some("(no body)"));
        stored.flow.request.version = crate::flow::HttpVersion::Http2;
        let lines = detail_lines(&stored, Tab::Request, BodyView::Pretty);
        assert!(lines.last().unwrap().contains("under way"), "{lines:?}");
    }

    #[test]
    fn a_multi_line_description_and_debug_keep_their_lines_in_the_kinvey_tab() {
        let client = "127.0.0.1:5000".parse().unwrap();
        let url = "https://baas.kinvey.com/rpc/kid_x/custom/op";
        let mut flow = crate::flow::Flow::exchange(1, client, "POST", url, Some(400));
        let response = flow.response.as_mut().unwrap();
        response.headers = [("Content-Type", "application/json")].into_iter().collect();
        response.body = crate::flow::CapturedBody::whole(
            r#"{"error":"BLRuntimeError","description":"line1\nline2","debug":"at a()\r\n\tat b()"}"#,
        );
        let stored = StoredFlow {
            flow,
            kinvey: KinveySummary::default(),
        };
        let lines = detail_lines(&stored, Tab::Kinvey, BodyView::Pretty);
        let shown = lines.join("\n");
        assert!(
            shown.contains("Description  line1\n             line2"),
            "{shown}"
        );
        assert!(
            shown.contains("Debug        at a()\n                 at b()"),
            "{shown}"
        );
    }

    #[test]
    fn error_kinds_fit_the_status_column() {
        for kind in crate::flow::FlowErrorKind::ALL {
            let label = status_label(kind);
            assert!(
                label.len() <= usize::from(Column::Status.width(4)),
                "{label}"
            );
        }
    }

    #[test]
    fn durations_fit_their_column() {
        let shown: Vec<String> = [0, 999, 1_000, 9_999, 10_000, 59_999, 60_000, 120_001]
            .into_iter()
            .chain([
                3_599_999,
                3_600_000,
                359_999_999,
                360_000_000,
                359_996_400_000,
            ])
            .map(|ms| short_duration(std::time::Duration::from_millis(ms)))
            .collect();
        assert_eq!(
            shown,
            [
                "0ms", "999ms", "1.00s", "9.99s", "10.0s", "59.9s", "1m00s", "2m00s", "59m59s",
                "1h00m", "99h59m", "100h", "99999h"
            ]
        );
        assert!(shown
            .iter()
            .all(|s| s.len() <= usize::from(Column::Duration.width(4))));
        let size = HumanSize(1024 * 1024 - 1).to_string();
        assert!(size.len() <= usize::from(Column::Size.width(4)), "{size}");
    }

    #[test]
    fn the_id_column_is_as_wide_as_the_largest_id() {
        let (columns, _, _) = list_columns(128, 4, 30);
        assert_eq!(columns.len(), 10);
        let (columns, _, _) = list_columns(128, 6, 30);
        assert!(
            !columns.contains(&Column::Type),
            "two more digits take its room"
        );
        assert_eq!(Column::Id.width(6), 6);
        assert_eq!(Column::Id.width(1), 2, "the title fits");
    }

    #[test]
    fn narrow_terminals_leave_columns_out_instead_of_cutting_them_all() {
        // Every column, the longest error name whole, and room for the path.
        let (all, kinvey, _) = list_columns(160, 4, 60);
        assert_eq!((all.len(), kinvey), (10, 44));
        // TYPE and DUR go, then the KINVEY column gives up what only long names need.
        let (columns, kinvey, _) = list_columns(120, 4, 44);
        assert!(!columns.contains(&Column::Type) && !columns.contains(&Column::Duration));
        assert!(columns.contains(&Column::Time) && columns.contains(&Column::Size));
        assert_eq!(kinvey, 34);
        // The demo's widest cell (`RETRY ⚑ ⚠ KinveyInternalErrorRetry`) on 120 columns:
        // whole, TYPE and DUR left out for it.
        let (columns, kinvey, _) = list_columns(120, 2, 34);
        assert!(!columns.contains(&Column::Type) && !columns.contains(&Column::Duration));
        assert_eq!(kinvey, 34);
        let (columns, kinvey, _) = list_columns(60, 4, 44);
        assert_eq!(
            columns,
            [Column::Method, Column::Path, Column::Status, Column::Kinvey]
        );
        assert_eq!(kinvey, 18, "the badge and the start of the name still fit");
    }

    #[test]
    fn the_kinvey_column_is_as_wide_as_its_widest_cell() {
        // Plain traffic on 80 columns: the title's width; the host and the size kept.
        let (columns, kinvey, _) = list_columns(80, 2, 0);
        assert_eq!(kinvey, 6);
        assert!(columns.contains(&Column::Host) && columns.contains(&Column::Size));
        let (all, kinvey, _) = list_columns(110, 2, 0);
        assert_eq!((all.len(), kinvey), (10, 6));
        // Short error names take what they need, and give up nothing before the others.
        let (all, kinvey, _) = list_columns(125, 2, 24);
        assert_eq!((all.len(), kinvey), (10, 24));
        // A phone's terminal: METHOD, PATH, STATUS and KINVEY, the path narrower so that
        // STATUS (`200 err`, `bad-req`) stays whole.
        let (columns, kinvey, path) = list_columns(44, 2, 0);
        assert_eq!(
            columns,
            [Column::Method, Column::Path, Column::Status, Column::Kinvey]
        );
        assert_eq!(8 + (path + 1) + 8 + (kinvey + 1), 44);
        assert_eq!(list_columns(20, 2, 0).2, MIN_PATH);
    }

    #[test]
    fn a_kinvey_cell_cut_to_its_column_ends_in_an_ellipsis() {
        let retry = KinveySummary {
            error: Some("KinveyInternalErrorRetry".into()),
            class: Some(crate::kinvey::ErrorClass::Retry),
            known: true,
            ..KinveySummary::default()
        };
        let whole = text(&kinvey_cell_within(&retry, 34));
        assert!(whole.ends_with("KinveyInternalErrorRetry"), "{whole}");
        let cut = kinvey_cell_within(&retry, 20);
        assert_eq!(cut.width(), 20);
        assert!(text(&cut).ends_with(" KinveyInt…"), "{}", text(&cut));
        // Too narrow for any of the name: the mark alone says there is one.
        assert!(text(&kinvey_cell_within(&retry, 11)).ends_with('…'));
    }

    #[test]
    fn the_kinvey_cell_marks_anomalies_and_warnings_with_or_without_an_error() {
        let finding = |code: &str| Finding {
            code: code.into(),
            message: String::new(),
        };
        let warned_ok = KinveySummary {
            warnings: vec![finding("retry_without_backoff")],
            ..KinveySummary::default()
        };
        assert_eq!(
            text(&kinvey_cell(&warned_ok)),
            "        ⚠ retry without backoff"
        );
        let flagged_error = KinveySummary {
            error: Some("QuotaExceeded".into()),
            class: Some(ErrorClass::Retry),
            known: false,
            anomalies: vec![finding("unknown_name")],
            ..KinveySummary::default()
        };
        assert_eq!(
            text(&kinvey_cell(&flagged_error)),
            "?RETRY ⚑  QuotaExceeded"
        );
        assert_eq!(text(&kinvey_cell(&KinveySummary::default())), "");
    }
}
